"""Smoke test of the templates on moto's CloudFormation (no AWS account, no network).

Expands infra/template.yaml with the SAM translator (`expand` from scripts/lint-template.py),
uploads the deployment zip to a moto S3 bucket matching the expanded CodeUri, and creates
the stack `ecs-tunnels` twice from scratch: with the default token store (SSM) and with
TokenStore=secretsmanager. Each time it then creates infra/examples/service-with-tunnel.yaml
as the stack `app`, whose Custom::CloudflareTunnel takes its ServiceToken from the first
stack's export through !ImportValue, answers the custom-resource request moto sends (as
the function would, with the attributes the README documents), and checks the stack and
its outputs resolve. Last, it creates infra/spoke.yaml (organization mode) as one StackSet
instance would, and checks the spoke role's trust and the three forwarding rules. Exits
non-zero on any failure.

Usage (from the repository root, after scripts/setup-python.sh):
    .venv/bin/python scripts/smoke-cloudformation.py [--zip PATH] [--verbose] [--template T] [--example E]
--zip defaults to target/lambda/ecs-tunnels/bootstrap.zip if it exists, else a tiny
placeholder zip: the smoke test is about the template, not the code (moto never runs it).

moto runs in this process (ThreadedMotoServer on 127.0.0.1, a free port) with two local
fixes, each printed when applied:
  * list items that are `!If [cond, x, !Ref AWS::NoValue]` with a false condition are
    dropped, as CloudFormation does (moto 5.2.5 keeps them as null, and IAM then rejects
    the policy with "MalformedPolicyDocument: Syntax errors in policy");
  * invoking a Lambda function (moto does so for a custom resource) records the event
    instead of starting Docker, so this script can answer the request itself.
"""

import argparse
import base64
import hashlib
import http.client
import importlib.util
import io
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
TOKEN_PARAMETER = "/cloudflare/api-token"
# README "Deploy": the budget.
RESERVED = {"EventsFunction": 2, "SweepFunction": 1, "CustomResourceFunction": 1, "SecretsRotationFunction": 1}
# Each function's percentage of the Cloudflare API budget (ECS_TUNNELS_API_SHARE).
SHARE = {"EventsFunction": "55", "SweepFunction": "35", "CustomResourceFunction": "5", "SecretsRotationFunction": "5"}
BUCKET, KEY = "placeholder-bucket", "ecs-tunnels.zip"  # what expand() writes as CodeUri

# Only moto, never a real account: no profile, dummy keys, no instance metadata.
for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(var, None)
os.environ.update(
    AWS_DEFAULT_REGION=REGION,
    AWS_REGION=REGION,
    AWS_ACCESS_KEY_ID="test",
    AWS_SECRET_ACCESS_KEY="test",
    AWS_EC2_METADATA_DISABLED="true",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
)

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto import settings  # noqa: E402
from moto.awslambda import models as lambda_models  # noqa: E402
from moto.cloudformation import parsing  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402


def _load_expand():
    spec = importlib.util.spec_from_file_location("lint_template", ROOT / "scripts" / "lint-template.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expand


expand = _load_expand()

# ---- moto fixes ---------------------------------------------------------------------------
_clean_json = parsing.clean_json


def _clean_json_dropping_novalue(resource_json, resources_map):
    if isinstance(resource_json, list):
        out = []
        for item in resource_json:
            cleaned = _clean_json_dropping_novalue(item, resources_map)
            if cleaned is None and isinstance(item, dict):
                continue  # an intrinsic that evaluated to AWS::NoValue
            out.append(cleaned)
        return out
    return _clean_json(resource_json, resources_map)


parsing.clean_json = _clean_json_dropping_novalue

INVOCATIONS = []  # (function ARN, event) for every Lambda invoke moto made


def _record_invoke(self, body, request_headers, response_headers):
    INVOCATIONS.append((self.function_arn, json.loads(body) if body else None))
    return json.dumps({})


lambda_models.LambdaFunction.invoke = _record_invoke
# moto builds a custom resource's ResponseURL from the host Docker containers would use,
# probing the Docker socket for it; there is no Docker here, and the URL's path is all
# this script uses.
settings.moto_server_host = lambda: "http://moto.invalid"

# ---- helpers ------------------------------------------------------------------------------
FAILURES = []


def check(ok, what, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
    if not ok:
        FAILURES.append(what + (f": {detail}" if detail else ""))
    return ok


def wait_stack(cfn, name, timeout=30):
    deadline = time.time() + timeout
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            return stack
        time.sleep(0.1)


def params(values):
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def resource_rows(cfn, name):
    rows = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    # moto lists skipped resources (false Condition, unsupported type) as empty rows.
    return [r for r in rows if r.get("LogicalResourceId")]


def placeholder_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\nexit 1\n")
    return buf.getvalue()


def type_table(templates):
    model_map = parsing.get_model_map()
    types = {}
    for label, template in templates:
        for resource in template["Resources"].values():
            types.setdefault(resource["Type"], set()).add(label)
    print("\nresource types in the expanded templates, and moto 5.2.5's CloudFormation support:")
    for t in sorted(types):
        if t.startswith("Custom::"):
            support = "custom resource: moto invokes the ServiceToken function and waits for the response"
        elif t in model_map:
            support = "modelled"
        else:
            support = "NOT SUPPORTED: moto skips it with a warning (nothing is created)"
        print(f"  {t:34s} {', '.join(sorted(types[t])):22s} {support}")
    return [t for t in types if not t.startswith("Custom::") and t not in model_map]


# ---- the scenarios ------------------------------------------------------------------------
def main_stack(c, template, zip_bytes, store):
    cfn = c("cloudformation")
    values = {"CloudflareAccountId": ACCOUNT_ID, "CloudflareApiTokenParameter": TOKEN_PARAMETER}
    if store:
        values["TokenStore"] = store
    t0 = time.time()
    try:
        cfn.create_stack(StackName="ecs-tunnels", TemplateBody=json.dumps(template), Parameters=params(values),
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    except ClientError as e:
        check(False, "CreateStack ecs-tunnels", str(e))
        return None
    stack = wait_stack(cfn, "ecs-tunnels")
    if not check(stack["StackStatus"] == "CREATE_COMPLETE", f"stack ecs-tunnels CREATE_COMPLETE ({time.time() - t0:.2f} s)",
                 f'{stack["StackStatus"]} {stack.get("StackStatusReason")}'):
        return None
    rows = resource_rows(cfn, "ecs-tunnels")
    print(f"  resources created: {len(rows)} "
          f"({', '.join(sorted(r['LogicalResourceId'] for r in rows))})")
    events = cfn.describe_stack_events(StackName="ecs-tunnels")["StackEvents"]
    print("  stack events: " + "; ".join(f'{e["LogicalResourceId"]} {e["ResourceStatus"]}' for e in reversed(events)))
    outputs = {o["OutputKey"]: o for o in stack.get("Outputs", [])}

    lam = c("lambda")
    functions = {f["FunctionName"][len("ecs-tunnels-"):].rsplit("-", 1)[0]: f for f in lam.list_functions()["Functions"]}
    expected = {"EventsFunction", "SweepFunction", "CustomResourceFunction"}
    if store == "secretsmanager":
        expected.add("SecretsRotationFunction")
    check(set(functions) == expected, f"functions {sorted(expected)}", sorted(functions))
    digest = hashlib.sha256(zip_bytes).digest()
    for name, f in sorted(functions.items()):
        ok = (f["Runtime"], f["Handler"], f.get("Architectures")) == ("provided.al2023", "bootstrap", ["x86_64"])
        check(ok, f"{name}: provided.al2023, handler bootstrap, x86_64",
              (f["Runtime"], f["Handler"], f.get("Architectures")))
        check(f["CodeSha256"] == base64.b64encode(digest).decode(), f"{name}: code is s3://{BUCKET}/{KEY}",
              f["CodeSha256"])
        reserved = lam.get_function(FunctionName=f["FunctionName"]).get("Concurrency", {}).get("ReservedConcurrentExecutions")
        check(reserved == RESERVED.get(name), f"{name}: reserved concurrency {RESERVED.get(name)}", reserved)
        env = f.get("Environment", {}).get("Variables", {})
        check(env.get("CLOUDFLARE_ACCOUNT_ID") == ACCOUNT_ID and env.get("CLOUDFLARE_API_TOKEN_PARAMETER") == TOKEN_PARAMETER
              and "CLOUDFLARE_API_TOKEN_SECRET_ARN" not in env and env.get("ECS_TUNNELS_TOKEN_STORE") == (store or "ssm"),
              f"{name}: environment from the parameters", env)
        # (moto keeps a number parameter's value a number; Lambda makes every value a string)
        budget = tuple(str(env.get(k)) for k in ("ECS_TUNNELS_API_BUDGET", "ECS_TUNNELS_API_BUDGET_WINDOW",
                                                 "ECS_TUNNELS_API_SHARE", "ECS_TUNNELS_API_CONCURRENCY"))
        check(budget == ("1200", "5m", SHARE.get(name), str(reserved)),
              f"{name}: API budget 1200 per 5m, share {SHARE.get(name)}%, split between its {reserved} processes", budget)
        rotation = env.get("ECS_TUNNELS_ROTATION_FUNCTION_ARN")
        if name == "SecretsRotationFunction":
            continue
        if store == "secretsmanager":
            check(rotation == functions.get("SecretsRotationFunction", {}).get("FunctionArn"),
                  f"{name}: ECS_TUNNELS_ROTATION_FUNCTION_ARN is the rotation function", rotation)
        else:
            check(rotation is None, f"{name}: no ECS_TUNNELS_ROTATION_FUNCTION_ARN", rotation)

    rules = {r["Name"]: r for r in c("events").list_rules()["Rules"]}
    check(rules.get("ecs-tunnels-sweep", {}).get("ScheduleExpression") == "rate(5 minutes)", "rule ecs-tunnels-sweep: rate(5 minutes)")
    check(rules.get("ecs-tunnels-rotate", {}).get("ScheduleExpression") == "rate(1 hour)", "rule ecs-tunnels-rotate: rate(1 hour)")
    patterns = [json.loads(r["EventPattern"]) for r in rules.values() if r.get("EventPattern")]
    check(len(patterns) == 3, "three event-pattern rules (task state, CloudTrail API call, tag change)", len(patterns))
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    check(len(mappings) == 1 and mappings[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"]
          and mappings[0]["EventSourceArn"] == outputs.get("EventsQueueArn", {}).get("OutputValue"),
          "SQS event source mapping from EventsQueue with ReportBatchItemFailures", mappings)
    if mappings:
        concurrency = mappings[0].get("ScalingConfig", {}).get("MaximumConcurrency")
        check(concurrency == RESERVED["EventsFunction"],
              f"the event source's MaximumConcurrency is the event function's reserved concurrency ({RESERVED['EventsFunction']})",
              concurrency)

    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    token = exports.get("ecs-tunnels-CustomResourceServiceToken")
    check(token is not None and token == functions.get("CustomResourceFunction", {}).get("FunctionArn"),
          "export ecs-tunnels-CustomResourceServiceToken = CustomResourceFunction's ARN", exports)
    return token


def example_stack(c, template, service_token, moto_url):
    cfn, ec2 = c("cloudformation"), c("ec2")
    c("ecs").create_cluster(clusterName="prod")
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    INVOCATIONS.clear()
    t0 = time.time()
    try:
        cfn.create_stack(StackName="app", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"],
                         Parameters=params({"EcsTunnelsStackName": "ecs-tunnels", "Subnets": subnet, "SecurityGroup": group}))
    except ClientError as e:
        check(False, "CreateStack app", str(e))
        return
    waiting = cfn.describe_stacks(StackName="app")["Stacks"][0]["StackStatus"]
    check(waiting == "CREATE_IN_PROGRESS", "stack app waits for the custom resource's answer", waiting)
    deadline = time.time() + 10
    while not INVOCATIONS and time.time() < deadline:
        time.sleep(0.05)
    check(len(INVOCATIONS) == 1, "moto invoked one function for Custom::CloudflareTunnel", INVOCATIONS)
    if not INVOCATIONS:
        return
    arn, event = INVOCATIONS[0]
    check(arn == service_token, "!ImportValue resolved: the invoked function is the export's", arn)
    props = event["ResourceProperties"]
    check(event["RequestType"] == "Create" and event["ResourceType"] == "Custom::CloudflareTunnel"
          and event["LogicalResourceId"] == "Tunnel", "a Create request for Tunnel", event)
    check(props.get("ServiceToken") == service_token and props.get("Hostnames") == ["app.example.com"]
          and props.get("AllowEmailDomains") == ["example.com"] and props.get("Origin") == "http://localhost:8080",
          "request properties as in the template", props)
    # Answer as ecs-tunnels would (README: Fn::GetAtt attributes), at moto's cfnresponse path.
    data = {
        "TunnelId": "6ff42ae2-0000-4000-8000-000000000000",
        "TokenParameterName": "/ecs-tunnels/cfn.app/Tunnel/token",
        "TokenParameterArn": f"arn:aws:ssm:{REGION}:123456789012:parameter/ecs-tunnels/cfn.app/Tunnel/token",
        "Cname": "6ff42ae2-0000-4000-8000-000000000000.cfargotunnel.com",
        "AccessAppId": "a1",
        "AccessAud": "aud-0123",
    }
    body = {"Status": "SUCCESS", "Reason": "smoke test", "PhysicalResourceId": "ecs-tunnels:123456789012-us-east-1:cfn.app/Tunnel",
            "StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": "Tunnel",
            "NoEcho": False, "Data": data}
    # PUT it as the function does: no Content-Type (moto routes a form-encoded PUT to S3), to
    # moto's /cloudformation_<region>/cfnresponse path (its ResponseURL names the host a
    # Docker container would use).
    url = urllib.parse.urlsplit(event["ResponseURL"])
    conn = http.client.HTTPConnection(*urllib.parse.urlsplit(moto_url).netloc.split(":"), timeout=10)
    conn.request("PUT", f"{url.path}?{url.query}", body=json.dumps(body).encode())
    status = conn.getresponse().status
    conn.close()
    check(status == 200, "response PUT accepted by moto", status)
    stack = wait_stack(cfn, "app")
    check(stack["StackStatus"] == "CREATE_COMPLETE", f"stack app CREATE_COMPLETE ({time.time() - t0:.2f} s)",
          f'{stack["StackStatus"]} {stack.get("StackStatusReason")}')
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    check(outputs == {"TunnelId": data["TunnelId"], "Cname": data["Cname"], "AccessAud": data["AccessAud"]},
          "outputs resolve through !GetAtt Tunnel.*", outputs)
    rows = resource_rows(cfn, "app")
    print(f"  resources created: {len(rows)} ({', '.join(sorted(r['LogicalResourceId'] for r in rows))})")
    services = c("ecs").describe_services(cluster="prod", services=["web"])["services"]
    check(len(services) == 1 and services[0]["status"] == "ACTIVE", "ECS service prod/web created", services)
    families = c("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
    if families:
        td = c("ecs").describe_task_definition(taskDefinition=families[-1])["taskDefinition"]
        sidecar = [d for d in td["containerDefinitions"] if d["name"] == "cloudflared"]
        secret = (sidecar[0].get("secrets") or [{}])[0] if sidecar else {}
        # moto evaluates !GetAtt of a custom resource when it creates the dependants, before
        # the answer arrives (real CloudFormation waits), so valueFrom is empty in moto.
        print(f"  note: cloudflared secret in moto's task definition: {secret or 'none'} "
              f"(moto resolves !GetAtt Tunnel.TokenParameterArn before the custom resource answers)")
    cfn.delete_stack(StackName="app")
    gone = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == "app" and s["StackStatus"] != "DELETE_COMPLETE"]
    check(not gone, "stack app deleted", gone)
    delete_events = [e for _, e in INVOCATIONS[1:] if e and e.get("RequestType") == "Delete"]
    print(f"  note: Delete requests moto sent to the custom resource: {len(delete_events)}")


def spoke_stack(c, template):
    """infra/spoke.yaml as one StackSet instance would create it: in the role's region, with
    the hub's outputs as parameters (a hub in another account)."""
    cfn, iam = c("cloudformation"), c("iam")
    hub_roles = ["arn:aws:iam::210987654321:role/ecs-tunnels-EventsFunctionRole-X",
                 "arn:aws:iam::210987654321:role/ecs-tunnels-SweepFunctionRole-Y"]
    bus = "arn:aws:events:us-east-1:210987654321:event-bus/default"
    try:
        cfn.create_stack(StackName="ecs-tunnels-spoke", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"],
                         Parameters=params({"HubAccountId": "210987654321", "HubEventBusArn": bus,
                                            "HubFunctionRoleArns": ",".join(hub_roles), "ExternalId": "ext-1",
                                            "RoleRegion": REGION}))
    except ClientError as e:
        check(False, "CreateStack ecs-tunnels-spoke", str(e))
        return
    stack = wait_stack(cfn, "ecs-tunnels-spoke")
    if not check(stack["StackStatus"] == "CREATE_COMPLETE", "stack ecs-tunnels-spoke CREATE_COMPLETE",
                 f'{stack["StackStatus"]} {stack.get("StackStatusReason")}'):
        return
    role = iam.get_role(RoleName="ecs-tunnels-spoke")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(urllib.parse.unquote(trust)) if isinstance(trust, str) else trust
    statement = trust["Statement"][0]
    check(sorted(statement["Principal"]["AWS"]) == sorted(hub_roles), "the spoke role trusts the hub's function roles only", statement)
    check(statement.get("Condition", {}).get("StringEquals") == {"aws:PrincipalAccount": "210987654321", "sts:ExternalId": "ext-1"},
          "...from the hub account, with the external id", statement)
    check(iam.list_role_policies(RoleName="ecs-tunnels-spoke")["PolicyNames"] == ["ecs-tunnels-spoke"], "the spoke role's policy")
    rules = [r for r in c("events").list_rules()["Rules"] if r.get("EventPattern")]
    targets = [t for r in rules for t in c("events").list_targets_by_rule(Rule=r["Name"])["Targets"]]
    check(len(rules) == 3 and all(t["Arn"] == bus and t.get("RoleArn") for t in targets) and len(targets) == 3,
          "three rules forward to the hub's bus with a role", targets)
    cfn.delete_stack(StackName="ecs-tunnels-spoke")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path, help="deployment zip to upload (default: the cargo-lambda build, else a placeholder)")
    ap.add_argument("--verbose", action="store_true", help="show moto's warnings")
    ap.add_argument("--template", type=Path, default=Path("infra/template.yaml"))
    ap.add_argument("--example", type=Path, default=Path("infra/examples/service-with-tunnel.yaml"))
    ap.add_argument("--spoke", type=Path, default=Path("infra/spoke.yaml"))
    args = ap.parse_args()
    os.chdir(ROOT)
    if not args.verbose:
        warnings.filterwarnings("ignore")
        import logging
        logging.getLogger("moto").setLevel(logging.ERROR)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if args.zip and not args.zip.exists():
        print(f"--zip {args.zip}: no such file")
        return 2
    zip_path = args.zip or Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "lambda/ecs-tunnels/bootstrap.zip"
    zip_bytes = zip_path.read_bytes() if zip_path.exists() else placeholder_zip()
    print(f"code: {zip_path if zip_path.exists() else 'placeholder zip'} ({len(zip_bytes)} bytes)")
    print("moto fixes applied: AWS::NoValue list items dropped; Lambda invokes recorded instead of run in Docker")

    started = time.time()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"

    def c(name):
        return boto3.client(name, endpoint_url=moto_url, region_name=REGION)

    try:
        template = expand(args.template)
        example = expand(args.example)
        unsupported = type_table([("template.yaml", template), ("example", example)])
        for store in (None, "secretsmanager"):
            urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
            print(f"\n== stack ecs-tunnels, TokenStore={store or 'ssm (default)'}")
            c("s3").create_bucket(Bucket=BUCKET)
            c("s3").put_object(Bucket=BUCKET, Key=KEY, Body=zip_bytes)
            c("ssm").put_parameter(Name=TOKEN_PARAMETER, Type="SecureString", Value="placeholder")
            token = main_stack(c, template, zip_bytes, store)
            if token is None:
                continue
            print("== stack app (infra/examples/service-with-tunnel.yaml)")
            example_stack(c, example, token, moto_url)
            c("cloudformation").delete_stack(StackName="ecs-tunnels")
            left = [s for s in c("cloudformation").list_stacks()["StackSummaries"]
                    if s["StackName"] == "ecs-tunnels" and s["StackStatus"] != "DELETE_COMPLETE"]
            check(not left, "stack ecs-tunnels deleted", left)
        urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
        print("\n== stack ecs-tunnels-spoke (infra/spoke.yaml, one StackSet instance)")
        spoke_stack(c, expand(args.spoke))
        if unsupported:
            print(f"\nnot created by moto (unsupported types): {', '.join(sorted(unsupported))}")
    finally:
        server.stop()
    print(f"\n{'FAILED' if FAILURES else 'passed'}: {len(FAILURES)} failure(s), {time.time() - started:.1f} s")
    for f in FAILURES:
        print(f"  - {f}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
