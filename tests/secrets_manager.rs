//! `ECS_TUNNELS_TOKEN_STORE=secretsmanager`: the token lives in a Secrets Manager secret
//! per service, and the binary implements Secrets Manager's four rotation steps, each
//! retried, through the Lambda door against moto (patched for its stale-stage bug) and
//! the simulator.

mod common;
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "ecs-tunnels/demo/web/token";

async fn sm_value(w: &World, stage: &str) -> Option<String> {
    aws_sdk_secretsmanager::Client::new(&w.sdk)
        .get_secret_value()
        .secret_id(SECRET)
        .version_stage(stage)
        .send()
        .await
        .ok()
        .and_then(|o| o.secret_string().map(str::to_string))
}

async fn stages(w: &World) -> std::collections::BTreeMap<String, Vec<String>> {
    let d = aws_sdk_secretsmanager::Client::new(&w.sdk)
        .describe_secret()
        .secret_id(SECRET)
        .send()
        .await
        .unwrap();
    d.version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn connect(w: &World, token: &str) -> Value {
    w.hook(
        reqwest::Method::POST,
        "/connectors",
        Some(json!({"token": token})),
    )
    .await
}

fn step(name: &str, arn: &str, version: &str) -> Value {
    json!({"Step": name, "SecretId": arn, "ClientRequestToken": version, "RotationToken": "0a1b2c3d-0000-1111-2222-333344445555"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_store_and_four_step_rotation() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_TOKEN_STORE".into(), "secretsmanager".into()));
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );

    // The token is in Secrets Manager (not SSM), tagged, and works.
    assert!(w.token_parameter("demo", "web").await.is_none());
    let old = sm_value(&w, "AWSCURRENT").await.expect("secret");
    let old_conn = connect(&w, &old).await;
    assert!(old_conn["client_id"].is_string(), "{old_conn}");
    let sm = aws_sdk_secretsmanager::Client::new(&w.sdk);
    let d = sm.describe_secret().secret_id(SECRET).send().await.unwrap();
    let arn = d.arn().unwrap().to_string();
    assert!(d
        .tags()
        .iter()
        .any(|t| t.key() == Some("ecs-tunnels:owner") && t.value() == Some(OWNER)));
    w.reset_requests().await;
    assert_eq!(
        w.invoke_ok(task_event("demo", "web", false)).await["outcomes"][0]["state"],
        "ready"
    );
    assert_eq!(w.writes().await, 0, "converged");

    // Secrets Manager calls the four steps; every one arrives twice (its retries).
    let version = "9f8e7d6c-0000-1111-2222-333344445555";
    let deployment = w.deployment_id("demo", "web").await;

    // testSecret before setSecret fails clearly.
    for _ in 0..2 {
        let r = w.invoke_ok(step("createSecret", &arn, version)).await;
        assert_eq!(r["step"], "createSecret", "{r}");
    }
    let pending = sm_value(&w, "AWSPENDING").await.expect("pending version");
    assert_ne!(pending, old);
    assert_eq!(
        sm_value(&w, "AWSCURRENT").await.as_deref(),
        Some(old.as_str()),
        "current unchanged by createSecret"
    );
    let early = w.invoke(step("testSecret", &arn, version)).await;
    assert!(
        early.outcome.is_error(),
        "testSecret before setSecret must fail: {:?}",
        early.outcome
    );

    for _ in 0..2 {
        w.invoke_ok(step("setSecret", &arn, version)).await;
    }
    assert!(
        connect(&w, &pending).await["client_id"].is_string(),
        "Cloudflare serves the pending token"
    );
    assert!(
        connect(&w, &old).await["client_id"].is_null(),
        "old token refused for new connections"
    );
    for _ in 0..2 {
        w.invoke_ok(step("testSecret", &arn, version)).await;
    }
    for _ in 0..2 {
        w.invoke_ok(step("finishSecret", &arn, version)).await;
    }
    assert_eq!(
        sm_value(&w, "AWSCURRENT").await.as_deref(),
        Some(pending.as_str()),
        "AWSCURRENT moved"
    );
    let st = stages(&w).await;
    assert_eq!(
        st.get(version),
        Some(&vec!["AWSCURRENT".to_string()]),
        "AWSPENDING removed: {st:?}"
    );
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "service redeployed"
    );
    let tunnel = w.live_tunnels().await.remove(0);
    assert!(
        tunnel["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == old_conn["client_id"]),
        "old connector kept"
    );

    // A reconcile afterwards finds nothing to do; a stray step for an unknown version fails.
    w.reset_requests().await;
    assert_eq!(
        w.invoke_ok(task_event("demo", "web", false)).await["outcomes"][0]["state"],
        "ready"
    );
    assert_eq!(w.writes().await, 0);
    assert!(w
        .invoke(step(
            "setSecret",
            &arn,
            "00000000-0000-0000-0000-000000000000"
        ))
        .await
        .outcome
        .is_error());
    assert!(w
        .invoke(step("rotateEverything", &arn, version))
        .await
        .outcome
        .is_error());

    // The scheduled rotation leaves Secrets Manager stores to Secrets Manager.
    let r = w.invoke_ok(sample("schedule-rotate.json")).await;
    assert!(
        r["rotations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["rotated"] == false),
        "{r}"
    );

    // Teardown deletes the secret.
    w.remove_tags("demo", "web", &["ecs-tunnels:hostname"])
        .await;
    assert_eq!(
        w.invoke_ok(untag_event("demo", "web", &["ecs-tunnels:hostname"]))
            .await["outcomes"][0]["state"],
        "removed"
    );
    assert!(
        sm.describe_secret().secret_id(SECRET).send().await.is_err(),
        "secret deleted"
    );
    let out = w.output();
    for s in [&old, &pending] {
        assert!(!out.contains(s.as_str()), "token leaked into logs");
    }
}

/// The secret's rotation configuration as Secrets Manager describes it.
async fn rotation_of(w: &World) -> (bool, Option<String>, Option<String>) {
    let d = aws_sdk_secretsmanager::Client::new(&w.sdk)
        .describe_secret()
        .secret_id(SECRET)
        .send()
        .await
        .unwrap();
    (
        d.rotation_enabled().unwrap_or(false),
        d.rotation_lambda_arn().map(str::to_string),
        d.rotation_rules()
            .and_then(|r| r.schedule_expression())
            .map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_schedule_is_observed_state_repaired_like_drift() {
    // The rotation schedule is part of what a service should have: set when the secret is
    // made, changed when ecs-tunnels:rotate-every changes, and put back by the next run
    // when it is missing (a RotateSecret that failed once, or removed by hand).
    let mut w = World::start().await;
    // As the template deploys it: the events function knows the rotation function's ARN
    // (and its role may invoke it, which RotateSecret requires).
    let function = w.template_function_arn("SecretsRotationFunction");
    w.extra_env.extend([
        ("ECS_TUNNELS_TOKEN_STORE".into(), "secretsmanager".into()),
        ("ECS_TUNNELS_ROTATION_FUNCTION_ARN".into(), function.clone()),
    ]);
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    assert_eq!(
        rotation_of(&w).await,
        (true, Some(function.clone()), Some("rate(30 days)".into()))
    );

    // A converged service costs no write, the schedule included.
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["changes"], json!([]), "{resp}");

    // rotate-every changes: the schedule follows.
    w.set_tags("demo", "web", &[("ecs-tunnels:rotate-every", "12h")])
        .await;
    let resp = w
        .invoke_ok(tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:rotate-every", "12h")],
        ))
        .await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert_eq!(rotation_of(&w).await.2.as_deref(), Some("rate(12 hours)"));

    // Rotation turned off out of band (or the first RotateSecret failed): the sweep
    // puts it back.
    aws_sdk_secretsmanager::Client::new(&w.sdk)
        .cancel_rotate_secret()
        .secret_id(SECRET)
        .send()
        .await
        .unwrap();
    assert!(!rotation_of(&w).await.0);
    let r = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(r["sweep"]["needed_work"], 1, "{r}");
    assert_eq!(
        rotation_of(&w).await,
        (true, Some(function.clone()), Some("rate(12 hours)".into()))
    );
}

fn tunnel_id_tag(
    d: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
) -> Option<String> {
    d.tags()
        .iter()
        .find(|t| t.key() == Some("ecs-tunnels:tunnel-id"))
        .and_then(|t| t.value().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_sweep_lists_secrets_and_reads_only_the_token_it_verifies() {
    let mut w = World::start().await;
    let function = w.template_function_arn("SecretsRotationFunction");
    w.extra_env.extend([
        ("ECS_TUNNELS_TOKEN_STORE".into(), "secretsmanager".into()),
        ("ECS_TUNNELS_ROTATION_FUNCTION_ARN".into(), function),
    ]);
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let tid = w.live_tunnels().await.remove(0)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sm = aws_sdk_secretsmanager::Client::new(&w.sdk);
    let d = sm.describe_secret().secret_id(SECRET).send().await.unwrap();
    assert_eq!(
        tunnel_id_tag(&d),
        Some(tid.clone()),
        "created with its tunnel id"
    );
    let arn = d.arn().unwrap().to_string();

    // Converged (rotation schedule included, as ListSecrets describes it): one listing,
    // no secret described or read.
    w.aws.clear_calls();
    let r = w.invoke_ok(sample("schedule-sweep.json")).await["sweep"].clone();
    assert_eq!(
        (r["needed_work"].as_u64(), r["converged"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    w.assert_only_verified_tokens_read(&r);
    let calls = w.function_aws_calls();
    assert_eq!(
        calls.get("secretsmanager:ListSecrets"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(
        calls.get("secretsmanager:DescribeSecret"),
        None,
        "{calls:?}"
    );

    // A secret written before the tag existed is read, and only it.
    sm.untag_resource()
        .secret_id(SECRET)
        .tag_keys("ecs-tunnels:tunnel-id")
        .send()
        .await
        .unwrap();
    w.aws.clear_calls();
    let r = w.invoke_ok(sample("schedule-sweep.json")).await["sweep"].clone();
    assert_eq!(r["converged"], 1, "{r}");
    assert_eq!(
        w.token_value_reads(),
        [format!("secretsmanager:GetSecretValue {SECRET}")]
    );

    // Its next write (a rotation by Secrets Manager's four steps) tags it again.
    let version = "5a4b3c2d-0000-1111-2222-333344445555";
    for name in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        w.invoke_ok(step(name, &arn, version)).await;
    }
    let d = sm.describe_secret().secret_id(SECRET).send().await.unwrap();
    assert_eq!(tunnel_id_tag(&d), Some(tid), "tagged by finishSecret");
    w.aws.clear_calls();
    let r = w.invoke_ok(sample("schedule-sweep.json")).await["sweep"].clone();
    assert_eq!(r["converged"], 1, "{r}");
    w.assert_only_verified_tokens_read(&r);
}
