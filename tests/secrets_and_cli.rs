//! No secret in any output, and the CLI (`plan` writes nothing, `apply` does it, exit codes).

mod common;
use base64::Engine;
use common::*;
use devtools::cloudflare_sim::SimOptions;
use serde_json::{json, Value};
use std::process::Command;

/// Every secret of the scenario: the API token, each stored tunnel token and its secret.
fn secrets_in(tokens: &[String]) -> Vec<String> {
    let mut out = vec![API_TOKEN.to_string()];
    for t in tokens {
        out.push(t.clone());
        let decoded: Value =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(t).unwrap())
                .unwrap();
        out.push(decoded["s"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.seed(
        "demo",
        "bad",
        &[("ecs-tunnels:hostname", "bad.example.com")],
    )
    .await;
    let mut seen = String::new();
    let mut tokens = Vec::new();

    seen += &w
        .invoke_ok(task_event("demo", "web", false))
        .await
        .to_string();
    tokens.push(w.token_parameter("demo", "web").await.unwrap().0);
    seen += &w
        .invoke_ok(task_event("demo", "web", false))
        .await
        .to_string();
    seen += &w
        .invoke_ok(task_event("demo", "bad", false))
        .await
        .to_string();
    w.fault(json!({"status": 500, "count": 20})).await;
    seen += &format!(
        "{:?}",
        w.invoke(task_event("demo", "web", false)).await.outcome
    );
    w.clear_faults().await;
    // Token lost: written again from Cloudflare's GET .../token.
    aws_sdk_ssm::Client::new(&w.sdk)
        .delete_parameter()
        .name("/ecs-tunnels/demo/web/token")
        .send()
        .await
        .unwrap();
    seen += &w
        .invoke_ok(task_event("demo", "web", false))
        .await
        .to_string();
    tokens.push(w.token_parameter("demo", "web").await.unwrap().0);
    seen += &format!("{:?}", w.invoke(json!({"not": "an event"})).await.outcome);
    w.remove_tags("demo", "web", &["ecs-tunnels:hostname"])
        .await;
    seen += &w
        .invoke_ok(untag_event("demo", "web", &["ecs-tunnels:hostname"]))
        .await
        .to_string();
    for svc in ["web", "bad"] {
        seen += &format!("{:?}", w.service_tags("demo", svc).await);
    }
    let output = w.output();
    assert!(output.lines().count() > 5, "the function logged: {output}");
    assert!(
        output.contains("change applied"),
        "one line per change is logged"
    );
    for line in output.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }
    seen += &output;
    for secret in secrets_in(&tokens) {
        assert!(!seen.contains(&secret), "a secret leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_everywhere() {
    // One item per page: every list the reconcile reads must follow pages.
    let mut w = World::start_with(SimOptions {
        page_cap: Some(1),
        ..Default::default()
    })
    .await;
    w.spawn_function().await;
    let idp: &'static str = Box::leak(
        w.state().await["identity_providers"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
            .into_boxed_str(),
    );
    for i in 0..3 {
        let host: &'static str = Box::leak(format!("p{i}.example.net").into_boxed_str());
        w.seed(
            "demo",
            &format!("p{i}"),
            &[
                ("ecs-tunnels:hostname", host),
                ("ecs-tunnels:allow-emails", "a@example.com"),
                ("ecs-tunnels:idps", idp),
            ],
        )
        .await;
    }
    for i in 0..3 {
        let resp = w
            .invoke_ok(task_event("demo", &format!("p{i}"), false))
            .await;
        assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    }
    w.reset_requests().await;
    for i in 0..3 {
        w.invoke_ok(task_event("demo", &format!("p{i}"), false))
            .await;
    }
    assert_eq!(w.writes().await, 0, "converged under pagination");
    assert_eq!(w.live_tunnels().await.len(), 3);
    assert_eq!(w.access_apps().await.len(), 3);
}

fn cli(w: &World, args: &[&str]) -> (i32, String, String) {
    let env = w.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cli_with(&env, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_writes_nothing_and_apply_converges() {
    let w = World::start().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.seed(
        "demo",
        "broken",
        &[("ecs-tunnels:hostname", "broken.example.com")],
    )
    .await;
    w.reset_requests().await;

    let (code, out, err) = cli(&w, &["plan", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    for kind in [
        "create_tunnel",
        "create_app",
        "put_config",
        "write_token",
        "create_dns",
    ] {
        assert!(out.contains(kind), "plan lists {kind}: {out}");
    }
    assert_eq!(w.writes().await, 0, "plan wrote to Cloudflare");
    assert!(w.token_parameter("demo", "web").await.is_none());
    assert!(
        !w.service_tags("demo", "web")
            .await
            .contains_key("ecs-tunnels:status"),
        "plan writes no status tag"
    );

    let (code, out, _) = cli(&w, &["plan", "--all", "--json"]);
    assert_eq!(code, 1, "a broken service makes plan --all exit 1: {out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let states: Vec<&str> = v["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"planned") && states.contains(&"error"),
        "{states:?}"
    );

    let (code, out, err) = cli(&w, &["apply", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(w.live_tunnels().await.len(), 1);
    let (code, out, _) = cli(&w, &["plan", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("demo/web: ready") && !out.contains("create_"),
        "converged: {out}"
    );

    let (code, _, err) = cli(&w, &["apply", "--cluster", "demo", "--service", "broken"]);
    assert_eq!(code, 1);
    assert!(!err.contains(API_TOKEN));

    let (code, _, err) = cli(&w, &["plan"]);
    assert_eq!(code, 2, "usage error: {err}");
    let (code, out, _) = cli(&w, &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("plan") && out.contains("apply") && out.contains("sweep"));
}

/// Runs the CLI with exactly `env` (plus PATH).
fn cli_with(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn usage_errors_exit_2_before_any_configuration_is_read() {
    // A usage error is the person's mistake, not a transient failure (3): it exits 2,
    // names the missing argument, and is found before the environment is checked (no
    // CLOUDFLARE_ACCOUNT_ID here) and before anything is called.
    for args in [
        &["plan", "--service", "web"][..],
        &["apply", "--service", "web"],
        &["rotate", "--service", "web"],
        &["rotate"],
    ] {
        let (code, out, err) = cli_with(&[], args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("--cluster") || err.contains("--all"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("CLOUDFLARE_ACCOUNT_ID"), "{args:?}: {err}");
    }
    // Arguments right, environment wrong: also 2 (a misconfigured install), naming it.
    let (code, _, err) = cli_with(&[], &["plan", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CLOUDFLARE_ACCOUNT_ID"), "{err}");
    // clap's own usage errors are 2 as well.
    let (code, _, _) = cli_with(&[], &["plan", "--bogus"]);
    assert_eq!(code, 2);
}
