"""Start moto's server with local fixes. Usage: python moto_launcher.py -H 127.0.0.1 -p PORT

Embedded into devtools (src/moto.rs) and run with `python -c`.

Fixes applied (each guarded: if moto's internals differ, a warning is printed and moto
runs unpatched):
  * Secrets Manager: UpdateSecretVersionStage moving AWSCURRENT did not update the
    secret's default version, so GetSecretValue without a stage returned the old value
    and a later PutSecretValue left two versions labelled AWSCURRENT.
  * ECS: UpdateService with forceNewDeployment on a service whose deployment controller
    is CODE_DEPLOY or EXTERNAL is refused, as AWS refuses it (InvalidParameterException
    "Cannot force a new deployment on services with a CODE_DEPLOY deployment controller.
    Use AWS CodeDeploy to trigger a new deployment."; for EXTERNAL, pipe-cd/pipecd#6384).
    moto silently did nothing.
  * ECS: TagResource that would leave a resource with more than 50 tags is refused
    (the documented limit; AWS's exact message is unverified, the code is
    InvalidParameterException). moto accepted any number.
  * ECS: a deleted (INACTIVE) cluster is no longer listed by ListClusters, and
    ListServices / DescribeServices on it answer ClusterNotFoundException ("Cluster not
    found."); DescribeClusters still reports it as INACTIVE. moto kept listing it and
    kept answering for its services. AWS documents only that a deleted cluster turns
    INACTIVE and "might remain discoverable" for a while; this models the state after it
    is no longer discoverable by a listing (ecs-tunnels must handle both).
  * Secrets Manager: RotateSecret keeps RotationRules.ScheduleExpression (moto kept only
    AutomaticallyAfterDays, so rotation stayed disabled) and, like AWS, reports it in
    DescribeSecret with the computed AutomaticallyAfterDays for rate(N days). A rotation
    function that is not a moto Lambda (ours run outside moto) is recorded without being
    invoked: the tests drive the rotation steps themselves.
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


def _patch_ecs():
    try:
        from moto.ecs import models as m
        from moto.ecs.exceptions import InvalidParameterException

        backend = m.EC2ContainerServiceBackend
        orig_update = backend.update_service
        orig_tag = backend.tag_resource
        if getattr(orig_update, "_devtools_patched", False):
            return

        def update_service(self, service_properties):
            if service_properties.get("force_new_deployment"):
                cluster = service_properties.get("cluster", "default")
                name = service_properties.get("service", "").split("/")[-1]
                service = self._get_service(cluster, name)
                controller = (service.deployment_controller or {}).get("type", "ECS")
                if controller == "CODE_DEPLOY":
                    raise InvalidParameterException(
                        "Cannot force a new deployment on services with a CODE_DEPLOY deployment controller. "
                        "Use AWS CodeDeploy to trigger a new deployment."
                    )
                if controller != "ECS":
                    raise InvalidParameterException(
                        "Cannot force a new deployment on services with a %s deployment controller." % controller
                    )
            return orig_update(self, service_properties)

        def tag_resource(self, arn, tags):
            resource = self._get_resource(arn, self._parse_resource_arn(arn))
            keys = {t["key"] for t in (resource.tags or [])} | set(tags)
            if len(keys) > 50:
                raise InvalidParameterException(
                    "Failed to tag the resource: a resource can have at most 50 tags (it would have %d)." % len(keys)
                )
            return orig_tag(self, arn, tags)

        update_service._devtools_patched = True
        backend.update_service = update_service
        backend.tag_resource = tag_resource
    except Exception as exc:  # pragma: no cover - depends on moto's internals
        sys.stderr.write("moto_launcher: ECS patch not applied: %r\n" % (exc,))


def _patch_ecs_deleted_clusters():
    try:
        from moto.ecs import models as m
        from moto.ecs.exceptions import ClusterNotFoundException

        backend = m.EC2ContainerServiceBackend
        orig_list_clusters = backend.list_clusters
        if getattr(orig_list_clusters, "_devtools_patched", False):
            return
        orig_list_services = backend.list_services
        orig_describe_services = backend.describe_services

        def active_cluster(self, name_or_arn):
            cluster = self._get_cluster(name_or_arn or "default")
            if cluster.status == "INACTIVE":
                raise ClusterNotFoundException
            return cluster

        def list_clusters(self):
            return [c.arn for c in self.clusters.values() if c.status != "INACTIVE"]

        def list_services(self, cluster_str, *args, **kwargs):
            active_cluster(self, cluster_str)
            return orig_list_services(self, cluster_str, *args, **kwargs)

        def describe_services(self, cluster_str, service_names_or_arns):
            active_cluster(self, cluster_str)
            return orig_describe_services(self, cluster_str, service_names_or_arns)

        list_clusters._devtools_patched = True
        backend.list_clusters = list_clusters
        backend.list_services = list_services
        backend.describe_services = describe_services
    except Exception as exc:  # pragma: no cover - depends on moto's internals
        sys.stderr.write("moto_launcher: ECS deleted-cluster patch not applied: %r\n" % (exc,))


def _patch_rotation_schedule():
    try:
        import re

        from moto.secretsmanager import models as m

        backend = m.SecretsManagerBackend
        orig = backend.rotate_secret
        if getattr(orig, "_devtools_patched", False):
            return

        def rotate_secret(self, secret_id, client_request_token=None, rotation_lambda_arn=None,
                          rotation_rules=None, rotate_immediately=True):
            from moto.awslambda.utils import get_backend

            lambda_known = True
            if rotation_lambda_arn:
                try:
                    get_backend(self.account_id, self.region_name).get_function(rotation_lambda_arn)
                except Exception:
                    lambda_known = False
            schedule = (rotation_rules or {}).get("ScheduleExpression")
            if lambda_known:
                out = orig(self, secret_id, client_request_token, rotation_lambda_arn,
                           rotation_rules, rotate_immediately)
            else:
                if not self._is_valid_identifier(secret_id):
                    raise m.SecretNotFoundException()
                secret = self.secrets[secret_id]
                secret.rotation_lambda_arn = rotation_lambda_arn
                secret.rotation_requested = True
                days = (rotation_rules or {}).get("AutomaticallyAfterDays")
                if days:
                    secret.auto_rotate_after_days = int(days)
                    secret.rotation_enabled = True
                out = secret.to_short_dict()
            secret = self.secrets[secret_id]
            if schedule:
                secret.rotation_schedule_expression = schedule
                days = re.fullmatch(r"rate\((\d+) days?\)", schedule.strip())
                if days:
                    secret.auto_rotate_after_days = int(days.group(1))
                secret.rotation_enabled = True
            elif (rotation_rules or {}).get("AutomaticallyAfterDays"):
                secret.rotation_schedule_expression = None
            return out

        rotate_secret._devtools_patched = True
        backend.rotate_secret = rotate_secret

        orig_dict = m.FakeSecret.to_dict

        def to_dict(self):
            out = orig_dict(self)
            expr = getattr(self, "rotation_schedule_expression", None)
            if expr and isinstance(out.get("RotationRules"), dict):
                out["RotationRules"]["ScheduleExpression"] = expr
            return out

        m.FakeSecret.to_dict = to_dict
    except Exception as exc:  # pragma: no cover - depends on moto's internals
        sys.stderr.write("moto_launcher: Secrets Manager rotation patch not applied: %r\n" % (exc,))


def _quiet():
    # werkzeug logs every request (and the startup banner) at INFO on the "werkzeug" logger.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv):
    _patch_secretsmanager()
    _patch_ecs()
    _patch_ecs_deleted_clusters()
    _patch_rotation_schedule()
    _quiet()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
