"""Expands a SAM template locally with aws-sam-translator, as CloudFormation would before
creating the stack: short-form intrinsics (!Ref, !Sub, ...) become their long form and
AWS::Serverless::* resources become the CloudFormation resources they stand for (functions,
roles, event source mappings, schedules, permissions). Shared by scripts/lint-template.py
and scripts/expand-template.py."""

import os
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
    """The template at `path`, expanded (returned unchanged if it has no Transform)."""
    # The translator asks boto for a region even though the pseudo parameters are given.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
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
