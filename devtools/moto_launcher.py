"""Start moto's server with local fixes. Usage: python moto_launcher.py -H 127.0.0.1 -p PORT

Embedded into devtools (src/moto.rs) and run with `python -c`.

Fixes applied (each guarded: if moto's internals differ, a warning is printed and moto
runs unpatched):
  * Secrets Manager: UpdateSecretVersionStage moving AWSCURRENT did not update the
    secret's default version, so GetSecretValue without a stage returned the old value
    and a later PutSecretValue left two versions labelled AWSCURRENT.
Request logging (werkzeug's per-request lines and banner) is turned off.
"""

import logging
import sys

try:
    import moto.server  # noqa: F401
except ImportError as exc:  # pragma: no cover - reported by the Rust side
    sys.stderr.write(
        "MOTO_NOT_INSTALLED: cannot import moto.server (%s); "
        "run: pip install 'moto[server]'\n" % exc
    )
    sys.exit(3)


def _patch_secretsmanager():
    try:
        from moto.secretsmanager import models as m

        backend = m.SecretsManagerBackend
        orig = backend.update_secret_version_stage
        if getattr(orig, "_devtools_patched", False):
            return

        def patched(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
            out = orig(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
            if version_stage == "AWSCURRENT" and move_to_version_id:
                secret = self.secrets[secret_id]
                if hasattr(secret, "set_default_version_id"):
                    secret.set_default_version_id(move_to_version_id)
                else:
                    secret.default_version_id = move_to_version_id
            return out

        patched._devtools_patched = True
        backend.update_secret_version_stage = patched
    except Exception as exc:  # pragma: no cover - depends on moto's internals
        sys.stderr.write("moto_launcher: Secrets Manager patch not applied: %r\n" % (exc,))


def _quiet():
    # werkzeug logs every request (and the startup banner) at INFO on the "werkzeug" logger.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv):
    _patch_secretsmanager()
    _quiet()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
