"""Lints infra/ templates with cfn-lint twice: as written (SAM-level checks) and after
expanding the SAM transform locally with aws-sam-translator (CloudFormation-level checks
that cfn-lint skips inside AWS::Serverless::* resources: runtimes, architectures,
schedule expressions). Exits non-zero on any finding."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam_expand import expand  # noqa: E402


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("infra").rglob("*.yaml"))
    failed = False
    for path in paths:
        for label, target in (("as written", path), ("expanded", None)):
            if target is None:
                out = Path(tempfile.mkdtemp()) / (path.stem + ".json")
                out.write_text(json.dumps(expand(path), indent=1))
                target = out
            result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(target)], capture_output=True, text=True)
            status = "ok" if result.returncode == 0 else "FAILED"
            print(f"cfn-lint {path} ({label}): {status}")
            if result.returncode != 0:
                failed = True
                print(result.stdout + result.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
