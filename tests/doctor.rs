//! `ecs-tunnels doctor`: each way a sidecar can be wired wrong, found in moto's task
//! definitions and IAM roles by the built binary, with its fix, as text and as JSON, with
//! the exit codes the README documents.

mod common;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, NetworkMode, PortMapping, Secret,
};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

const CLUSTER: &str = "demo";
const TUNNEL_TOKEN_VALUE: &str =
    "eyJhIjoiMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYiLCJ0IjoieCIsInMiOiJzZWNyZXQifQ";

/// Runs the CLI with the test environment, AWS through the proxy (which records the
/// calls; the CLI's key is not a function's, so they are not judged).
fn doctor(w: &World, service: &str, json: bool) -> (i32, String, String) {
    let mut env = w.env();
    env.push(("AWS_ENDPOINT_URL".into(), w.aws.endpoint()));
    let mut args = vec!["doctor", "--cluster", CLUSTER, "--service", service];
    if json {
        args.push("--json");
    }
    run(&env, &args)
}

fn run(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `doctor --json`, parsed, with its exit code.
fn doctor_json(w: &World, service: &str) -> (i32, Value) {
    let (code, out, err) = doctor(w, service, true);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{service}: {e}: {out}{err}"));
    (code, v)
}

fn codes(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn token_arn(service: &str) -> String {
    devtools::seed::token_parameter_arn(CLUSTER, service)
}

fn app() -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("app")
        .image("nginx")
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .build()
}

fn secret(value_from: &str) -> Secret {
    Secret::builder()
        .name("TUNNEL_TOKEN")
        .value_from(value_from)
        .build()
        .unwrap()
}

/// The stock sidecar, as the contract asks for it.
fn sidecar(service: &str) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
    ContainerDefinition::builder()
        .name("cloudflared")
        .image("cloudflare/cloudflared:2024.12.0")
        .essential(true)
        .set_command(Some(vec![
            "tunnel".into(),
            "--no-autoupdate".into(),
            "run".into(),
        ]))
        .secrets(secret(&token_arn(service)))
}

/// Seeds `service` (tagged `tags`), then deploys a task definition of its own shape.
async fn deploy(
    w: &World,
    service: &str,
    containers: Vec<ContainerDefinition>,
    role: Option<&str>,
    tags: &[(&str, &str)],
) {
    w.seed(CLUSTER, service, tags).await;
    let ecs = aws_sdk_ecs::Client::new(&w.sdk);
    let td = ecs
        .register_task_definition()
        .family(service)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .set_execution_role_arn(role.map(|r| format!("arn:aws:iam::{ACCOUNT}:role/{r}")))
        .set_container_definitions(Some(containers))
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let arn = td.task_definition().unwrap().task_definition_arn().unwrap();
    ecs.update_service()
        .cluster(CLUSTER)
        .service(service)
        .task_definition(arn)
        .send()
        .await
        .expect("UpdateService");
}

/// An execution role in moto with `inline` policies (name, document), `managed`
/// policies (ARNs; created from `documents` first when given), trusting ECS tasks.
async fn role(w: &World, name: &str, inline: &[(&str, Value)], managed: &[(&str, Option<Value>)]) {
    let iam = aws_sdk_iam::Client::new(&w.sdk);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("CreateRole");
    for (policy, doc) in inline {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(*policy)
            .policy_document(doc.to_string())
            .send()
            .await
            .expect("PutRolePolicy");
    }
    for (arn, doc) in managed {
        let arn = match doc {
            Some(doc) => iam
                .create_policy()
                .policy_name(*arn)
                .policy_document(doc.to_string())
                .send()
                .await
                .expect("CreatePolicy")
                .policy()
                .unwrap()
                .arn()
                .unwrap()
                .to_string(),
            None => arn.to_string(),
        };
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .expect("AttachRolePolicy");
    }
}

fn allow(action: &str, resource: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": resource}]})
}

/// A customer managed policy like AWS's AmazonECSTaskExecutionRolePolicy (images and
/// logs, no secrets), under a path (moto does not load AWS's own managed policies).
async fn execution_policy(w: &World) -> String {
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*"}]});
    aws_sdk_iam::Client::new(&w.sdk)
        .create_policy()
        .policy_name("ecs-task-execution")
        .path("/service-role/")
        .policy_document(doc.to_string())
        .send()
        .await
        .expect("CreatePolicy")
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

/// The roles of the scenario: one that may read the tokens (a customer managed policy
/// next to AWS's execution policy), one that may not, one explicitly denied, one whose
/// only Allow has a condition.
async fn roles(w: &World) {
    let tokens = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/ecs-tunnels/*");
    let execution = execution_policy(w).await;
    role(
        w,
        "exec-ok",
        &[],
        &[
            (
                "read-tunnel-tokens",
                Some(allow("ssm:GetParameters", &tokens)),
            ),
            (&execution, None),
        ],
    )
    .await;
    role(w, "exec-no-read", &[], &[(&execution, None)]).await;
    role(
        w,
        "exec-denied",
        &[
            ("everything", allow("*", "*")),
            (
                "no-ssm",
                json!({"Version": "2012-10-17", "Statement": [{"Sid": "NoParameters",
                    "Effect": "Deny", "Action": "ssm:Get*", "Resource": "*"}]}),
            ),
        ],
        &[],
    )
    .await;
    role(
        w,
        "exec-conditional",
        &[(
            "tagged-only",
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "ssm:GetParameters", "Resource": tokens,
                "Condition": {"StringEquals": {"aws:ResourceTag/team": "web"}}}]}),
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_sidecar_passes_every_check() {
    let w = World::start().await;
    roles(&w).await;
    deploy(
        &w,
        "web",
        vec![app(), sidecar("web").build()],
        Some("exec-ok"),
        &exposed("web.example.com"),
    )
    .await;
    w.aws.clear_calls();

    let (code, out, err) = doctor(&w, "web", false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("problem"), "{out}");
    for ok in [
        "ok          cloudflared container: cloudflared (cloudflare/cloudflared:2024.12.0)".to_string(),
        format!("ok          TUNNEL_TOKEN: a secret from {}", token_arn("web")),
        "ok          command: runs `cloudflared --no-autoupdate tunnel --no-autoupdate run`".to_string(),
        format!("ok          execution role: arn:aws:iam::{ACCOUNT}:role/exec-ok may ssm:GetParameters on {}", token_arn("web")),
        "ok          origin: http://localhost:8080: container app declares port 8080".to_string(),
        format!("tunnel      ecs-tunnels.{OWNER}.demo.web: not created yet"),
    ] {
        assert!(out.contains(&ok), "missing {ok:?} in:\n{out}");
    }
    // The role's policies were read through IAM's query API: inline, attached customer
    // and AWS managed policies, each at its default version.
    let calls = w.aws.calls_by_operation();
    for op in [
        "iam:GetRole",
        "iam:ListRolePolicies",
        "iam:ListAttachedRolePolicies",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
        "ecs:DescribeTaskDefinition",
    ] {
        assert!(calls.contains_key(op), "{op} in {calls:?}");
    }

    // --json: the diagnosis, the service's counts and the tunnel.
    let (code, v) = doctor_json(&w, "web");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["service"], "demo/web");
    assert_eq!(v["findings"], json!([]));
    assert_eq!(v["passed"].as_array().unwrap().len(), 5, "{v}");
    assert!(v["unjudged"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["desired_count"], 1);
    assert!(v["running_count"].is_i64());
    assert_eq!(v["tunnel"]["name"], format!("ecs-tunnels.{OWNER}.demo.web"));
    assert_eq!(v["tunnel"]["id"], Value::Null);

    // Once exposed and a cloudflared connects with the stored token, doctor says so.
    let (code, out, err) = run(
        &w.env(),
        &["apply", "--cluster", CLUSTER, "--service", "web"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let param = aws_sdk_ssm::Client::new(&w.sdk)
        .get_parameter()
        .name("/ecs-tunnels/demo/web/token")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let token = param.parameter().unwrap().value().unwrap().to_string();
    assert!(w.token_connects(&token).await);
    let (code, out, err) = doctor(&w, "web", false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connected, 1 cloudflared with"), "{out}");
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "the token is never printed"
    );
}

/// A service, its containers, its execution role, and the finding codes doctor must give.
type Case<'a> = (
    &'a str,
    Vec<ContainerDefinition>,
    Option<&'a str>,
    Vec<&'a str>,
);

/// The broken task definitions of the scenario (service, containers, execution role,
/// the codes expected first), shared by the CLI and the Lambda tests.
fn broken_cases() -> Vec<Case<'static>> {
    let ok_role = Some("exec-ok");
    let with_env = |b: aws_sdk_ecs::types::builders::ContainerDefinitionBuilder| {
        b.environment(
            KeyValuePair::builder()
                .name("TUNNEL_TOKEN")
                .value(TUNNEL_TOKEN_VALUE)
                .build(),
        )
    };
    vec![
        ("no-sidecar", vec![app()], ok_role, vec!["no-cloudflared"]),
        (
            "no-secret",
            vec![app(), sidecar("no-secret").set_secrets(None).build()],
            ok_role,
            vec!["token-missing"],
        ),
        (
            "plain-env",
            vec![
                app(),
                with_env(sidecar("plain-env").set_secrets(None)).build(),
            ],
            ok_role,
            vec!["token-plain"],
        ),
        (
            "elsewhere",
            vec![
                app(),
                sidecar("elsewhere")
                    .set_secrets(Some(vec![secret(&token_arn("other"))]))
                    .build(),
            ],
            ok_role,
            vec!["token-elsewhere"],
        ),
        (
            "flag",
            vec![
                app(),
                sidecar("flag")
                    .set_secrets(None)
                    .set_command(Some(
                        [
                            "tunnel",
                            "--no-autoupdate",
                            "run",
                            "--token",
                            TUNNEL_TOKEN_VALUE,
                        ]
                        .map(String::from)
                        .to_vec(),
                    ))
                    .build(),
            ],
            ok_role,
            vec!["token-on-command-line"],
        ),
        (
            "no-command",
            vec![app(), sidecar("no-command").set_command(None).build()],
            ok_role,
            vec!["not-tunnel-run"],
        ),
        (
            "shell",
            vec![
                app(),
                sidecar("shell")
                    .entry_point("sh")
                    .entry_point("-c")
                    .set_command(Some(vec!["cloudflared tunnel run".into()]))
                    .build(),
            ],
            ok_role,
            vec!["entrypoint-override"],
        ),
        (
            "mirror",
            vec![
                app(),
                sidecar("mirror")
                    .name("tunnel")
                    .image(format!(
                        "{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mirror/cloudflared@sha256:0123"
                    ))
                    .set_command(Some(vec!["tunnel".into(), "login".into()]))
                    .build(),
            ],
            ok_role,
            vec!["not-tunnel-run"],
        ),
        (
            "no-role",
            vec![app(), sidecar("no-role").build()],
            None,
            vec!["no-execution-role"],
        ),
        (
            "ghost-role",
            vec![app(), sidecar("ghost-role").build()],
            Some("does-not-exist"),
            vec!["role-missing"],
        ),
        (
            "no-read",
            vec![app(), sidecar("no-read").build()],
            Some("exec-no-read"),
            vec!["role-cannot-read-token"],
        ),
        (
            "denied",
            vec![app(), sidecar("denied").build()],
            Some("exec-denied"),
            vec!["role-cannot-read-token"],
        ),
        (
            "two-wrongs",
            vec![
                app(),
                with_env(sidecar("two-wrongs").set_secrets(None).set_command(None)).build(),
            ],
            None,
            vec!["token-plain", "not-tunnel-run", "no-execution-role"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_sidecar_is_named_with_its_fix() {
    let w = World::start().await;
    roles(&w).await;
    let tags = exposed("x.example.com");
    let cases = broken_cases();
    for (service, containers, role, _) in &cases {
        deploy(&w, service, containers.clone(), *role, &tags).await;
    }
    for (service, _, _, want) in &cases {
        let (code, v) = doctor_json(&w, service);
        assert_eq!(code, 1, "{service}: {v}");
        assert_eq!(codes(&v), *want, "{service}: {v}");
        for f in v["findings"].as_array().unwrap() {
            assert!(
                !f["message"].as_str().unwrap().is_empty()
                    && !f["fix"].as_str().unwrap().is_empty(),
                "{service}: {f}"
            );
        }
        let text = v.to_string();
        assert!(
            !text.contains(TUNNEL_TOKEN_VALUE),
            "{service}: a token printed: {text}"
        );
    }

    // The messages and fixes a person reads.
    let (_, out, _) = doctor(&w, "elsewhere", false);
    assert!(
        out.contains(&format!(
            "TUNNEL_TOKEN in the cloudflared container cloudflared reads {}, not the token ecs-tunnels writes ({})",
            token_arn("other"),
            token_arn("elsewhere")
        )) && out.contains(&format!("fix: set its valueFrom to {}", token_arn("elsewhere"))),
        "{out}"
    );
    let (_, out, err) = doctor(&w, "plain-env", false);
    assert!(out.contains("never rotates"), "{out}");
    assert!(!out.contains(TUNNEL_TOKEN_VALUE) && !err.contains(TUNNEL_TOKEN_VALUE));
    let (_, out, err) = doctor(&w, "flag", false);
    assert!(out.contains("--token <redacted>"), "{out}");
    assert!(!out.contains(TUNNEL_TOKEN_VALUE) && !err.contains(TUNNEL_TOKEN_VALUE));
    let (_, out, _) = doctor(&w, "denied", false);
    assert!(
        out.contains("by inline no-ssm statement NoParameters"),
        "{out}"
    );
    let (_, out, _) = doctor(&w, "no-read", false);
    assert!(
        out.contains(&format!(
            r#"fix: add to the role's policies the statement {{"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "{}"}}"#,
            token_arn("no-read")
        )),
        "{out}"
    );
    let (_, out, _) = doctor(&w, "no-sidecar", false);
    assert!(
        out.contains("not judged  TUNNEL_TOKEN: there is no cloudflared container"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_conditions_and_exit_codes() {
    let w = World::start().await;
    roles(&w).await;
    // An origin port no container declares.
    let mut tags = exposed("p.example.com");
    tags.push(("ecs-tunnels:origin", "http://localhost:9000"));
    deploy(
        &w,
        "port",
        vec![app(), sidecar("port").build()],
        Some("exec-ok"),
        &tags,
    )
    .await;
    let (code, v) = doctor_json(&w, "port");
    assert_eq!(code, 1, "{v}");
    assert_eq!(codes(&v), ["origin-port-not-declared"]);
    assert!(
        v["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("port 9000 on localhost, but no container of the task definition port:2 declares port 9000 (they declare 8080)"),
        "{v}"
    );
    // Another host is not judged; a conditional Allow is not judged either: exit 0.
    let mut tags = exposed("c.example.com");
    tags.push(("ecs-tunnels:origin", "http://api.internal:9000"));
    deploy(
        &w,
        "cond",
        vec![app(), sidecar("cond").build()],
        Some("exec-conditional"),
        &tags,
    )
    .await;
    let (code, out, err) = doctor(&w, "cond", false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not judged  execution role: whether"), "{out}");
    assert!(out.contains("it has a Condition"), "{out}");
    assert!(
        out.contains("not judged  origin: the origin's host api.internal is not localhost"),
        "{out}"
    );

    // A service ECS does not know: 1. Usage errors: 2, before anything is read.
    let (code, _, err) = doctor(&w, "nope", false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no active service demo/nope"), "{err}");
    let (code, _, err) = run(&[], &["doctor", "--service", "web"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cluster"), "{err}");
    let (code, _, _) = run(&[], &["doctor", "--cluster", "demo"]);
    assert_eq!(code, 2);
    // ECS unreachable: 3.
    let mut env = w.env();
    env.push(("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()));
    env.push(("AWS_MAX_ATTEMPTS".into(), "1".into()));
    let (code, _, err) = run(&env, &["doctor", "--cluster", CLUSTER, "--service", "cond"]);
    assert_eq!(code, 3, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_tokens_are_judged_by_their_arn() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_TOKEN_STORE".into(), "secretsmanager".into()));
    let secrets = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecs-tunnels/*");
    role(
        &w,
        "exec-sm",
        &[("read", allow("secretsmanager:GetSecretValue", &secrets))],
        &[],
    )
    .await;
    role(
        &w,
        "exec-ssm-only",
        &[("read", allow("ssm:GetParameters", "*"))],
        &[],
    )
    .await;
    let base = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecs-tunnels/demo");
    let sm_sidecar = |service: &str, value_from: String| {
        sidecar(service)
            .set_secrets(Some(vec![secret(&value_from)]))
            .build()
    };
    let tags = exposed("s.example.com");
    deploy(
        &w,
        "sm",
        vec![
            app(),
            sm_sidecar("sm", format!("{base}/sm/token-AbC123::AWSCURRENT:")),
        ],
        Some("exec-sm"),
        &tags,
    )
    .await;
    deploy(
        &w,
        "ssm",
        vec![app(), sidecar("ssm").build()],
        Some("exec-ssm-only"),
        &tags,
    )
    .await;
    deploy(
        &w,
        "key",
        vec![
            app(),
            sm_sidecar("key", format!("{base}/key/token-AbC123:token::")),
        ],
        Some("exec-sm"),
        &tags,
    )
    .await;

    let (code, v) = doctor_json(&w, "sm");
    assert_eq!(code, 0, "{v}");
    let (code, v) = doctor_json(&w, "ssm");
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        codes(&v),
        ["token-elsewhere", "role-cannot-read-token"],
        "{v}"
    );
    assert!(
        v["findings"][1]["fix"].as_str().unwrap().contains(&format!(
            r#""Action": "secretsmanager:GetSecretValue", "Resource": "{base}/ssm/token-*""#
        )),
        "{v}"
    );
    let (code, v) = doctor_json(&w, "key");
    assert_eq!(code, 1, "{v}");
    assert_eq!(codes(&v), ["token-json-key"], "{v}");
}

/// The same checks, run by the reconcile itself through the Lambda Runtime API: a service
/// whose tasks run but whose tunnel never connects (no simulated cloudflared here) is,
/// after the grace period (0 here), diagnosed in its outcome, its status tag and the log;
/// its hostname stays unpublished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_never_connects_is_diagnosed_in_the_status_tag() {
    let mut w = World::start().await;
    w.extra_env.extend(
        [
            ("ECS_TUNNELS_PUBLISH", "connected"),
            ("ECS_TUNNELS_CONNECT_WAIT", "0s"),
            ("ECS_TUNNELS_CONNECT_GRACE", "0s"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    roles(&w).await;
    w.spawn_function().await;
    // One case of each kind the issue names (the CLI test covers every shape).
    let kinds = [
        "no-sidecar",
        "elsewhere",
        "no-command",
        "no-role",
        "no-read",
    ];
    let mut cases: Vec<Case> = broken_cases()
        .into_iter()
        .filter(|(service, ..)| kinds.contains(service))
        .collect();
    assert_eq!(cases.len(), kinds.len());
    cases.push((
        "port",
        vec![app(), sidecar("port").build()],
        Some("exec-ok"),
        vec!["origin-port-not-declared"],
    ));
    for (service, containers, role, want) in cases {
        let host = format!("{service}.example.com");
        let mut tags = exposed("placeholder.example.com");
        tags[0].1 = Box::leak(host.clone().into_boxed_str());
        if service == "port" {
            tags.push(("ecs-tunnels:origin", "http://localhost:9000"));
        }
        deploy(&w, service, containers, role, &tags).await;
        // Its tasks run (moto counts a service's desired tasks as running once set).
        aws_sdk_ecs::Client::new(&w.sdk)
            .update_service()
            .cluster(CLUSTER)
            .service(service)
            .desired_count(1)
            .send()
            .await
            .expect("UpdateService");
        let r = w.invoke_ok(tag_event(CLUSTER, service, &tags)).await;
        let o = &r["outcomes"][0];
        assert_eq!(o["state"], "error", "{service}: {r}\n{}", w.output());
        assert_eq!(o["error_kind"], "sidecar", "{service}: {r}");
        let found = codes(&o["diagnosis"]);
        assert_eq!(found[..1], want[..], "{service}: {r}");
        let first = o["diagnosis"]["findings"][0]["message"].as_str().unwrap();
        let status = w.service_tags(CLUSTER, service).await["ecs-tunnels:status"].clone();
        assert!(
            status.starts_with("error cloudflared has not connected for 0 min: "),
            "{service}: {status}"
        );
        let said = ecs_tunnels::status::tag_safe(first);
        assert!(
            status.contains(&said[..said.len().min(60)]),
            "{service}: the status says the first finding: {status} / {first}"
        );
        assert!(
            w.dns_records()
                .await
                .iter()
                .all(|d| d["name"] != host.as_str()),
            "{service}: nothing is published"
        );
    }
    assert!(
        w.output()
            .contains("cloudflared has not connected for 0 min: "),
        "the log says it too"
    );
}
