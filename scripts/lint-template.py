"""Lints infra/ templates with cfn-lint twice: as written (SAM-level checks) and after
expanding the SAM transform locally with aws-sam-translator (CloudFormation-level checks
that cfn-lint skips inside AWS::Serverless::* resources: runtimes, architectures,
schedule expressions). Exits non-zero on any finding."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform


class Loader(yaml.SafeLoader):
    """YAML loader that turns short-form intrinsics (!Ref, !Sub, ...) into dicts."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


Loader.add_multi_constructor("!", _intrinsic)


def expand(path: Path) -> dict:
    template = yaml.load(path.read_text(), Loader=Loader)
    if "Transform" not in template:
        return template
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        code = props.get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and (code is None or isinstance(code, str)):
            props["CodeUri"] = "s3://placeholder-bucket/ecs-tunnels.zip"  # as `sam package` would
    globals_fn = template.get("Globals", {}).get("Function", {})
    if isinstance(globals_fn.get("CodeUri"), str):
        globals_fn["CodeUri"] = "s3://placeholder-bucket/ecs-tunnels.zip"
    policies = mock.Mock(spec=ManagedPolicyLoader)
    policies.load.return_value = {}
    params = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
    return transform(template, params, policies)


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
