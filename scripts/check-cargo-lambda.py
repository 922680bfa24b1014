"""Feeds every sample in events/ to ecs-tunnels through cargo-lambda's own emulator
(`cargo lambda watch`) with `cargo lambda invoke --data-file`, against moto server and the
Cloudflare simulator on 127.0.0.1, and prints a table of what each returned. Exits
non-zero if any sample is not accepted. Run it through scripts/check-cargo-lambda.sh, which
installs the tools and builds what is needed.

Accepted means the function recognised the sample and handled it as the README says:
  * ECS task, CloudTrail, tag-change and SQS samples: a response whose outcomes say what
    happened to demo/web: `ready` while it is tagged; the untag sample runs after the tag
    is removed in moto and must tear down (`removed`); the delete-service sample runs
    after that, once the service is deleted in moto, and must end without an error; the
    failed-call and status-only CloudTrail samples must be ignored without any call
    (that is their purpose);
  * schedule samples: the rotation list; the sweep report, complete, having repaired the
    drift made before each sweep sample (the service's DNS record deleted in the simulator);
  * CloudFormation samples: a SUCCESS answer PUT to the ResponseURL (rewritten, in a copy,
    to a local sink) and the same body returned;
  * Secrets Manager samples: the step's result, with ECS_TUNNELS_TOKEN_STORE=secretsmanager
    (a second phase; SecretId rewritten, in a copy, to the secret moto created, and the
    steps sent in protocol order: create, set, test, finish).

cargo-lambda 1.9.2's emulator gives every invocation `Lambda-Runtime-Deadline-Ms: 600000`,
i.e. ten minutes after 1970-01-01: a deadline long past. ecs-tunnels honours deadlines (the
custom-resource door answers FAILED 10 s before it; the sweep stops starting work 15 s
before it), so under the stock emulator the three CloudFormation samples are answered
FAILED ("timed out before finishing") and the two sweep samples start no work (they
report complete=false and leave the drift in place). By default
this script therefore puts a one-header shim between the function and the emulator: it
forwards every Runtime API call unchanged and only rewrites that header to now + 300 s
(the template's Timeout). --no-deadline-fix (or --watch-runs-function, where cargo-lambda
starts the function itself and the shim cannot be inserted) runs without it; those five
samples are then expected to fail exactly that way, and are reported as `emulator` rather
than accepted (the exit status ignores them only if they fail in that expected way).
"""

import argparse
import http.client
import http.server
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
CF_ACCOUNT = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "check-cargo-lambda-token"
CLUSTER, SERVICE = "demo", "web"
TAGS = {"ecs-tunnels:hostname": "web.example.com", "ecs-tunnels:allow-email-domains": "example.com"}
DEADLINE_DEPENDENT = {"cloudformation-create.json", "cloudformation-update.json", "cloudformation-delete.json",
                      "schedule-sweep.json", "schedule-input-sweep.json"}
SM_ORDER = ["createSecret", "setSecret", "testSecret", "finishSecret"]
INVOKE_TIMEOUT = 180

os.environ.update(AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                  AWS_EC2_METADATA_DISABLED="true")
for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)
import boto3  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited early (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


class Processes:
    """Children started in their own process groups; all are stopped on exit."""

    def __init__(self, logdir):
        self.logdir, self.procs = logdir, []

    def start(self, name, argv, env=None, stdout=None):
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout or log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc, sig=signal.SIGINT, grace=10):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def stop_all(self):
        for _, proc in reversed(self.procs):
            self.stop(proc)


class Sink(http.server.ThreadingHTTPServer):
    """Stands in for CloudFormation's pre-signed ResponseURL: records every PUT."""

    def __init__(self):
        self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(h):  # noqa: N805
                body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
                self.received.append((h.path, h.headers.get("Content-Type"), body))
                h.send_response(200)
                h.send_header("Content-Length", "0")
                h.end_headers()

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class DeadlineShim(http.server.ThreadingHTTPServer):
    """Forwards the Runtime API to cargo-lambda's emulator unchanged, except that the
    `Lambda-Runtime-Deadline-Ms` of each invocation becomes now + `timeout_s`."""

    daemon_threads = True

    def __init__(self, upstream_port, timeout_s=300):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def read_body(h):  # noqa: N805
                if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
                    body = b""
                    while True:
                        size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return body
                        body += h.rfile.read(size)
                        h.rfile.readline()
                return h.rfile.read(int(h.headers.get("Content-Length", 0) or 0))

            def forward(h):  # noqa: N805
                body = h.read_body()
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=None)
                headers = {k: v for k, v in h.headers.items()
                           if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
                try:
                    conn.request(h.command, h.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:  # the emulator is stopping
                    h.close_connection = True
                    return
                h.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    if k.lower() == "lambda-runtime-deadline-ms":
                        v = str(int((time.time() + timeout_s) * 1000))
                    h.send_header(k, v)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data)
                conn.close()

            do_GET = do_POST = forward

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address):
        pass  # a connection the function or the emulator dropped while stopping


def seed_service(c):
    """The demo service, as devtools/src/seed.rs makes it: Fargate, the stock cloudflared
    sidecar reading TUNNEL_TOKEN from the predictable SSM parameter, tagged for exposure."""
    ecs, ec2 = c("ecs"), c("ec2")
    if not any(x["status"] == "ACTIVE" for x in ecs.describe_clusters(clusters=[CLUSTER])["clusters"]):
        ecs.create_cluster(clusterName=CLUSTER)
    token_arn = f"arn:aws:ssm:{REGION}:123456789012:parameter/ecs-tunnels/{CLUSTER}/{SERVICE}/token"
    td = ecs.register_task_definition(
        family=SERVICE, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        executionRoleArn="arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        containerDefinitions=[
            {"name": "app", "image": "nginx", "essential": True, "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]},
            {"name": "cloudflared", "image": "cloudflare/cloudflared:latest", "essential": True,
             "command": ["tunnel", "--no-autoupdate", "run"], "secrets": [{"name": "TUNNEL_TOKEN", "valueFrom": token_arn}]},
        ])["taskDefinition"]["taskDefinitionArn"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=td, launchType="FARGATE", desiredCount=1,
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group],
                                                                     "assignPublicIp": "DISABLED"}},
                       propagateTags="SERVICE", enableECSManagedTags=True,
                       tags=[{"key": k, "value": v} for k, v in TAGS.items()])


def ssm_order(name):
    """Samples in the order a service lives: create and task events while tagged; the
    CloudFormation Update after its Create and the Delete after that; then the untag and
    the service deletion."""
    if "untag" in name:
        return (3, name)
    if "delete-service" in name:
        return (4, name)
    if name.startswith("cloudformation-"):
        return (2, ["create", "update", "delete"].index(name.split("-")[1].split(".")[0]))
    return (1, name)


def judge(name, ok, payload, sink_put, fixed_deadline):
    """Returns (verdict, detail): verdict is `accepted`, `emulator` (the known failure of
    a deadline-dependent sample under the stock emulator) or `NOT accepted`."""
    err = None if ok else payload
    detail = ""
    good = False
    if name.startswith("cloudformation-"):
        body = json.loads(sink_put[2]) if sink_put else None
        status = body and body.get("Status")
        detail = f"PUT {status}" + (f" ({body.get('Reason')})" if body and status != "SUCCESS" else "") if body else "no PUT"
        if body and sink_put[1]:
            detail += f"; Content-Type {sink_put[1]!r}"
        good = ok and status == "SUCCESS" and not sink_put[1] and payload == body
        if not fixed_deadline and not good and status == "FAILED" and "timed out" in (body.get("Reason") or ""):
            return "emulator", detail
    elif err is not None:
        detail = f"error: {str(err)[:160]}"
    elif name.startswith("secretsmanager-"):
        detail = f"step {payload.get('step')}"
        good = payload.get("step") == name.split("-")[1].split(".")[0]
    elif name.startswith("schedule-") and "sweep" in name:
        s = payload.get("sweep", {})
        detail = ", ".join(f"{k}={s.get(k)}" for k in ("complete", "needed_work", "cloudflare_writes", "remaining"))
        good = s.get("complete") is True and s.get("needed_work", 0) >= 1 and s.get("remaining", 1) == 0
        if not fixed_deadline and s.get("complete") is False:
            return "emulator", detail
    elif name.startswith("schedule-") and "rotate" in name:
        detail = f"rotations={len(payload.get('rotations', []))}"
        good = isinstance(payload.get("rotations"), list)
    else:
        outcomes = payload.get("outcomes", [])
        states = [o.get("state") for o in outcomes]
        detail = f"outcomes {states}" + (f", ignored {payload.get('ignored')}" if payload.get("ignored") else "")
        if name.startswith("cloudtrail-") and ("failed" in name or "status-only" in name):
            good = outcomes == [] and payload.get("cloudflare_calls") == 0  # their purpose: ignored, no call
        elif "untag" in name or "delete-service" in name:
            good = len(outcomes) == 1 and states[0] not in ("ready", "error", None) and not outcomes[0].get("error")
        else:
            good = len(outcomes) == 1 and states[0] == "ready"
    return ("accepted" if good else "NOT accepted"), detail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", help="the function binary (default: cargo-lambda's bootstrap, else target/debug/ecs-tunnels)")
    ap.add_argument("--runner", default="", help="command prefix for the function, e.g. 'chroot /srv/bullseye'")
    ap.add_argument("--sim", required=True, help="path of the built cloudflare-sim binary")
    ap.add_argument("--no-deadline-fix", action="store_true", help="let the function see the emulator's deadline (1970)")
    ap.add_argument("--watch-runs-function", action="store_true",
                    help="plain `cargo lambda watch`: it builds and starts the function with cargo run (no shim possible)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, event copies)")
    args = ap.parse_args()
    fixed = not (args.no_deadline_fix or args.watch_runs_function)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the children on the way out
        signal.signal(sig, lambda *_: sys.exit(143))
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="check-cargo-lambda."))
    procs = Processes(tmp)
    rows, failures = [], []
    try:
        # moto, the simulator and the ResponseURL sink.
        moto_port = free_port()
        moto = procs.start("moto", [sys.executable, "devtools/moto_launcher.py", "-H", "127.0.0.1", "-p", str(moto_port)])
        sim = procs.start("cloudflare-sim", [args.sim, "--port", "0", "--token", CF_TOKEN, "--account-id", CF_ACCOUNT,
                                             "--zone", "example.com"], stdout=subprocess.PIPE)
        sim_url = sim.stdout.readline().decode().strip()
        if not sim_url.startswith("http"):
            raise SystemExit(f"cloudflare-sim did not start (see {tmp}/cloudflare-sim.log)")
        wait_port(moto_port, moto, "moto")
        moto_url = f"http://127.0.0.1:{moto_port}"
        sink = Sink()

        def c(name):
            return boto3.client(name, endpoint_url=moto_url, region_name=REGION)

        def phase(label, store, names, prepare):
            """One `cargo lambda watch` with one function process; invokes `names` in order."""
            port = free_port()
            env = dict(os.environ, AWS_ENDPOINT_URL=moto_url, AWS_REGION=REGION, CLOUDFLARE_ACCOUNT_ID=CF_ACCOUNT,
                       CLOUDFLARE_API_TOKEN=CF_TOKEN, CLOUDFLARE_API_URL=sim_url, ECS_TUNNELS_TOKEN_STORE=store,
                       RUST_LOG="info", ECS_TUNNELS_RETRY_BASE_MS="20",
                       # No cloudflared runs here: publish at once, as before connector-aware
                       # publishing (tests/publish.rs covers the default).
                       ECS_TUNNELS_PUBLISH="immediately")
            watch_args = ["cargo", "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
                          "--ignore-changes"]
            if not args.watch_runs_function:
                watch_args.append("--only-lambda-apis")
            watch = procs.start(f"watch-{label}", watch_args, env=env)
            wait_port(port, watch, "cargo lambda watch")
            function_name = "ecs-tunnels" if args.watch_runs_function else "_"
            fn = None
            if not args.watch_runs_function:
                shim = DeadlineShim(port) if fixed else None
                api_port = shim.server_address[1] if shim else port
                fenv = dict(env, AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{api_port}/.rt", AWS_LAMBDA_FUNCTION_NAME="_",
                            AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256")
                fn = procs.start(f"function-{label}", shlex.split(args.runner) + [args.binary], env=fenv)
            for name in names:
                src = ROOT / "events" / name
                event = json.loads(src.read_text())
                event = prepare(name, event)
                copy = tmp / f"{label}-{name}"
                copy.write_text(json.dumps(event, indent=1))
                before = len(sink.received)
                t0 = time.time()
                invoke = subprocess.Popen(["cargo", "lambda", "invoke", function_name, "--invoke-address", "127.0.0.1",
                                           "--invoke-port", str(port), "--data-file", str(copy), "--output-format", "json"],
                                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                # The emulator holds an invocation until a function answers: stop waiting if
                # the function process is gone (or after INVOKE_TIMEOUT s).
                while invoke.poll() is None and time.time() - t0 < INVOKE_TIMEOUT:
                    if fn is not None and fn.poll() is not None:
                        break
                    time.sleep(0.02)
                if invoke.poll() is None:
                    invoke.kill()
                stdout, stderr = invoke.communicate()
                took = time.time() - t0
                ok = invoke.returncode == 0
                try:
                    payload = json.loads(stdout) if ok else (stderr.strip() or stdout.strip() or "no answer")
                except json.JSONDecodeError:
                    ok, payload = False, stdout.strip()[:300]
                put = next((p for p in sink.received[before:] if name in p[0]), None)
                verdict, detail = judge(name, ok, payload, put, fixed)
                rows.append((name, label, verdict, f"{took:.2f}", detail))
                if verdict == "NOT accepted":
                    failures.append(name)
                if fn is not None and fn.poll() is not None:
                    tail = (tmp / f"function-{label}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    failures.append(f"{label}: the function process exited (status {fn.returncode}): " + " | ".join(tail))
                    break
            if fn is not None:
                procs.stop(fn)
            procs.stop(watch)

        # Phase 1: the SSM store, every sample but the Secrets Manager steps.
        seed_service(c)
        ecs = c("ecs")
        service_arn = f"arn:aws:ecs:{REGION}:123456789012:service/{CLUSTER}/{SERVICE}"

        def cf_api(method, path):
            parts = urllib.parse.urlsplit(sim_url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn.request(method, parts.path + path, headers={"Authorization": f"Bearer {CF_TOKEN}"})
            out = json.loads(conn.getresponse().read() or b"null")
            conn.close()
            return out

        def prepare_ssm(name, event):
            if "sweep" in name:
                # Give the sweep something to repair: remove the service's DNS record.
                zone = cf_api("GET", "/zones?name=example.com")["result"][0]["id"]
                for record in cf_api("GET", f"/zones/{zone}/dns_records?name={TAGS['ecs-tunnels:hostname']}")["result"]:
                    cf_api("DELETE", f"/zones/{zone}/dns_records/{record['id']}")
            if "ResponseURL" in event:
                event["ResponseURL"] = f"http://127.0.0.1:{sink.server_address[1]}/{name}?X-Amz-Signature=0"
            if "untag" in name:
                ecs.untag_resource(resourceArn=service_arn, tagKeys=["ecs-tunnels:hostname"])
            if "delete-service" in name:
                ecs.delete_service(cluster=CLUSTER, service=SERVICE, force=True)
            return event

        all_names = sorted(p.name for p in (ROOT / "events").glob("*.json"))
        sm_names = [f"secretsmanager-{s}.json" for s in SM_ORDER]
        missing = [n for n in all_names if n.startswith("secretsmanager-") and n not in sm_names]
        ssm_names = sorted((n for n in all_names if not n.startswith("secretsmanager-")), key=ssm_order)
        phase("ssm", "ssm", ssm_names, prepare_ssm)

        # Phase 2: the Secrets Manager store. A fresh moto; the service is created again and
        # reconciled (its token goes to Secrets Manager), then the four steps run on it.
        urlopen_post(f"{moto_url}/moto-api/reset")
        seed_service(c)
        secret_arn = {}

        def prepare_sm(name, event):
            if name == "ecs-task-running.json":
                return event
            if not secret_arn:
                secret_arn["v"] = c("secretsmanager").describe_secret(SecretId=f"ecs-tunnels/{CLUSTER}/{SERVICE}/token")["ARN"]
            event["SecretId"] = secret_arn["v"]
            return event

        phase("secretsmanager", "secretsmanager", ["ecs-task-running.json"] + [n for n in sm_names if n in all_names],
              prepare_sm)
        if missing:
            failures.append(f"unexpected Secrets Manager samples: {missing}")
    finally:
        procs.stop_all()

    # The table.
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'sample':{width}}  {'phase':14}  {'verdict':12}  {'s':>5}  returned")
    for name, label, verdict, took, detail in rows:
        print(f"{name:{width}}  {label:14}  {verdict:12}  {took:>5}  {detail}")
    emulator = [r[0] for r in rows if r[2] == "emulator"]
    accepted = [r for r in rows if r[2] == "accepted"]
    print(f"\n{len(accepted)} of {len(rows)} invocations accepted"
          + (f"; {len(emulator)} failed only because cargo-lambda's emulator sends a 1970 deadline: {', '.join(emulator)}"
             if emulator else "")
          + ("" if fixed else " (no deadline fix)")
          + f"; {time.time() - started:.1f} s")
    unexpected = [r[0] for r in rows if r[2] == "emulator" and r[0] not in DEADLINE_DEPENDENT]
    failures += unexpected
    if args.keep:
        print(f"logs and event copies: {tmp}")
    else:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("NOT accepted: " + ", ".join(failures))
        return 1
    return 0


def urlopen_post(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", parts.path)
    conn.getresponse().read()
    conn.close()


if __name__ == "__main__":
    sys.exit(main())
