//! Scheduled and manual tunnel-secret rotation (SSM store), through the Lambda door and
//! the CLI, against moto and the simulator: due vs not due, one rotation end to end,
//! crashes at each step repaired by the next run, and the compromised path.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, SystemTime};

const ACCOUNT_ID: &str = "0123456789abcdef0123456789abcdef";

async fn tunnel_of(w: &World, svc: &str) -> Value {
    w.live_tunnels()
        .await
        .into_iter()
        .find(|t| t["name"].as_str().unwrap().ends_with(&format!(".{svc}")))
        .expect("tunnel")
}

async fn connect(w: &World, token: &str) -> Value {
    w.hook(
        reqwest::Method::POST,
        "/connectors",
        Some(json!({"token": token})),
    )
    .await
}

async fn set_param_tags(w: &World, svc: &str, tags: &[(&str, &str)]) {
    let tags: Vec<_> = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_ssm::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .unwrap()
        })
        .collect();
    aws_sdk_ssm::Client::new(&w.sdk)
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(format!("/ecs-tunnels/demo/{svc}/token"))
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

fn days_ago(days: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(days * 86400))
        .to_string()
}

/// Makes the stored token and Cloudflare disagree, as if a run died right after PATCH.
async fn patch_behind_our_back(w: &World, tunnel_id: &str) {
    use base64::Engine;
    let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let r = w
        .cf(
            reqwest::Method::PATCH,
            &format!("/accounts/{ACCOUNT_ID}/cfd_tunnel/{tunnel_id}"),
            Some(json!({"tunnel_secret": secret})),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
}

/// The stored token is the one Cloudflare serves.
async fn assert_token_works(w: &World, svc: &str) {
    let (token, _) = w.token_parameter("demo", svc).await.expect("token");
    let c = connect(w, &token).await;
    assert!(
        c["client_id"].is_string(),
        "{svc}: the stored token is rejected by the tunnel: {c}"
    );
}

/// Ages the rotation mark a killed run left (if it got that far) past its lease, as
/// the time after which no Lambda run can still hold it.
async fn expire_mark(w: &World, svc: &str) {
    let tags = w.token_parameter_tags("demo", svc).await;
    if let Some(mark) = tags.get("ecs-tunnels:rotation") {
        let reason = mark.split(' ').next().unwrap();
        let expired = format!("{reason} {}", minutes_ago(20));
        set_param_tags(w, svc, &[("ecs-tunnels:rotation", &expired)]).await;
    }
}

/// The invariant: the stored token is the one Cloudflare serves, and no marker is left.
async fn assert_token_consistent(w: &World, svc: &str) {
    assert_token_works(w, svc).await;
    let tags = w.token_parameter_tags("demo", svc).await;
    assert!(
        !tags.contains_key("ecs-tunnels:rotation") && !tags.contains_key("ecs-tunnels:redeploy"),
        "{svc}: {tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_rotates_only_what_is_due() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let mut tags_due = exposed("due.example.com");
    tags_due.push(("ecs-tunnels:rotate-every", "7d"));
    w.seed("demo", "due", &tags_due).await;
    w.seed("demo", "fresh", &exposed("fresh.example.com")).await;
    w.seed("demo", "badperiod", &exposed("bad.example.com"))
        .await;
    for s in ["due", "fresh", "badperiod"] {
        assert_eq!(
            w.invoke_ok(task_event("demo", s, false)).await["outcomes"][0]["state"],
            "ready"
        );
    }
    // Tag changed after creation, so creation went through; rotation must now refuse it.
    w.set_tags(
        "demo",
        "badperiod",
        &[("ecs-tunnels:rotate-every", "fortnightly")],
    )
    .await;
    set_param_tags(&w, "due", &[("ecs-tunnels:rotated-at", &days_ago(8))]).await;
    set_param_tags(&w, "fresh", &[("ecs-tunnels:rotated-at", &days_ago(8))]).await; // 8 days < default 30
    let (old_token, old_version) = w.token_parameter("demo", "due").await.unwrap();
    let (_, fresh_version) = w.token_parameter("demo", "fresh").await.unwrap();
    let old_connector = connect(&w, &old_token).await;
    assert!(old_connector["client_id"].is_string());
    let before = tunnel_of(&w, "due").await;
    let deployment = w.deployment_id("demo", "due").await;
    w.reset_requests().await;

    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    let rotations = resp["rotations"].as_array().unwrap();
    let by = |s: &str| {
        rotations
            .iter()
            .find(|r| r["service"]["service"] == s)
            .cloned()
            .unwrap()
    };
    assert_eq!(by("due")["rotated"], true, "{resp}");
    assert_eq!(by("fresh")["rotated"], false);
    assert_eq!(by("fresh")["due"], false);
    let err = by("badperiod")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("ecs-tunnels:rotate-every") && err.contains("fortnightly"),
        "{err}"
    );
    assert_eq!(
        w.writes().await,
        1,
        "one PATCH and nothing else at Cloudflare: {}",
        w.requests().await
    );

    // Secret changed; SSM has a new version with the new token; a new deployment.
    let after = tunnel_of(&w, "due").await;
    assert_eq!(after["id"], before["id"], "same tunnel");
    assert_ne!(after["secret_sha"], before["secret_sha"], "secret rotated");
    let (new_token, new_version) = w.token_parameter("demo", "due").await.unwrap();
    assert_eq!(new_version, old_version + 1);
    assert_ne!(new_token, old_token);
    assert_ne!(
        w.deployment_id("demo", "due").await,
        deployment,
        "service redeployed"
    );
    assert_eq!(
        w.token_parameter("demo", "fresh").await.unwrap().1,
        fresh_version,
        "not-due service untouched"
    );
    let tags = w.token_parameter_tags("demo", "due").await;
    assert_eq!(
        tags.get("ecs-tunnels:rotated-by").map(String::as_str),
        Some("schedule")
    );
    assert_ne!(tags.get("ecs-tunnels:rotated-at"), Some(&days_ago(8)));

    // The old connector stays; a new one with the old token is refused; the new token works.
    let conns = after["connectors"].as_array().unwrap();
    assert!(
        conns.iter().any(|c| c["id"] == old_connector["client_id"]),
        "old connector kept: {conns:?}"
    );
    let refused = connect(&w, &old_token).await;
    assert!(
        refused["client_id"].is_null(),
        "old token must be refused: {refused}"
    );
    assert!(connect(&w, &new_token).await["client_id"].is_string());

    // Nothing is due any more.
    w.reset_requests().await;
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    assert!(
        resp["rotations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["rotated"] == false),
        "{resp}"
    );
    assert_eq!(w.writes().await, 0);
    assert_eq!(
        w.token_parameter("demo", "due").await.unwrap().1,
        new_version,
        "no SSM write when nothing is due"
    );
    assert!(
        !w.output().contains(&new_token) && !w.output().contains(&old_token),
        "tokens never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_rotation_step_is_repaired_by_the_next_run() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    let tid = tunnel_of(&w, "web").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // 1. Died after marking, before PATCH: nothing changed at Cloudflare.
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", "schedule")]).await;
    let v = w.token_parameter("demo", "web").await.unwrap().1;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert_token_consistent(&w, "web").await;
    assert_eq!(
        w.token_parameter("demo", "web").await.unwrap().1,
        v,
        "token matched: not rewritten"
    );

    // 2. Died after PATCH, before the token was stored: the stored token is stale.
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", "schedule")]).await;
    patch_behind_our_back(&w, &tid).await;
    let stale = w.token_parameter("demo", "web").await.unwrap().0;
    assert!(
        connect(&w, &stale).await["client_id"].is_null(),
        "precondition: stale token refused"
    );
    let deployment = w.deployment_id("demo", "web").await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert_token_consistent(&w, "web").await;
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "redeployed with the repaired token"
    );
    assert_eq!(
        w.token_parameter_tags("demo", "web")
            .await
            .get("ecs-tunnels:rotated-by")
            .map(String::as_str),
        Some("schedule")
    );

    // 3. Died after storing, before the redeploy.
    set_param_tags(
        &w,
        "web",
        &[
            ("ecs-tunnels:rotation", "manual"),
            ("ecs-tunnels:redeploy", "pending"),
        ],
    )
    .await;
    let deployment = w.deployment_id("demo", "web").await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert_token_consistent(&w, "web").await;
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "the owed redeploy happened"
    );

    // 3b. A PATCH nobody marked (two rotations raced, or a teardown revoked the secret
    //     and died): the next run still finds the stale token and repairs it.
    patch_behind_our_back(&w, &tid).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert_token_consistent(&w, "web").await;

    // 3c. A compromised rotation that died before its PATCH: the possibly leaked secret
    //     must not survive, so the next run rotates and drops every connection.
    let (leaked, _) = w.token_parameter("demo", "web").await.unwrap();
    assert!(connect(&w, &leaked).await["client_id"].is_string());
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", "compromised")]).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert!(
        connect(&w, &leaked).await["client_id"].is_null(),
        "leaked token refused"
    );
    let t = tunnel_of(&w, "web").await;
    assert_eq!(t["connectors"], json!([]), "every connection dropped: {t}");
    assert_token_consistent(&w, "web").await;
    assert_eq!(
        w.token_parameter_tags("demo", "web")
            .await
            .get("ecs-tunnels:rotated-by")
            .map(String::as_str),
        Some("compromised")
    );

    // 4. A 500 on the PATCH itself: the rotation fails loudly, the next run is clean.
    w.fault(
        json!({"method": "PATCH", "path_contains": "/cfd_tunnel/", "status": 500, "count": 20}),
    )
    .await;
    let out = cli(&w, &["rotate", "--cluster", "demo", "--service", "web"]);
    assert_eq!(out.0, 3, "transient failure exit code: {out:?}");
    w.clear_faults().await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert_token_consistent(&w, "web").await;
    let out = cli(&w, &["rotate", "--cluster", "demo", "--service", "web"]);
    assert_eq!(out.0, 0, "{out:?}");
    assert_token_consistent(&w, "web").await;

    // 5a. Killed right after the PATCH landed and before the token was stored: the
    //     simulator applies the PATCH and holds its answer, the test waits until the new
    //     secret is live at Cloudflare, then kills the process. The stored token is then
    //     refused, and the next run must repair it.
    let spawn_rotate = || {
        Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
            .args(["rotate", "--cluster", "demo", "--service", "web"])
            .env_clear()
            .envs(w.env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    for _ in 0..2 {
        let secret_before = tunnel_of(&w, "web").await["secret_sha"].clone();
        w.fault(json!({"method": "PATCH", "path_contains": "/cfd_tunnel/", "after_ms": 3000, "count": 1})).await;
        let mut child = spawn_rotate();
        let mut patched = false;
        for _ in 0..100 {
            if tunnel_of(&w, "web").await["secret_sha"] != secret_before {
                patched = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(patched, "the rotation reached its PATCH");
        let (stored, _) = w.token_parameter("demo", "web").await.unwrap();
        assert!(
            connect(&w, &stored).await["client_id"].is_null(),
            "killed inside the window: the stored token is stale"
        );
        w.clear_faults().await;
        // The next run repairs the token at once; the killed run's mark is left to it
        // until its lease ends, and finished by the first run after that.
        w.invoke_ok(task_event("demo", "web", false)).await;
        assert_token_works(&w, "web").await;
        expire_mark(&w, "web").await;
        w.invoke_ok(task_event("demo", "web", false)).await;
        assert_token_consistent(&w, "web").await;
    }

    // 5b. Killed at assorted points of a slow rotation: the next run always repairs.
    w.fault(json!({"latency_ms": 150, "count": 100000})).await;
    for kill_ms in [100u64, 250, 400, 600] {
        let mut child = spawn_rotate();
        tokio::time::sleep(Duration::from_millis(kill_ms)).await;
        let _ = child.kill();
        let _ = child.wait();
        w.invoke_ok(task_event("demo", "web", false)).await;
        assert_token_works(&w, "web").await;
        expire_mark(&w, "web").await;
        w.invoke_ok(task_event("demo", "web", false)).await;
        assert_token_consistent(&w, "web").await;
    }
}

fn cli(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
        .args(args)
        .env_clear()
        .envs(w.env())
        .output()
        .expect("cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compromised_rotation_drops_every_connection() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    let (old_token, _) = w.token_parameter("demo", "web").await.unwrap();
    assert!(connect(&w, &old_token).await["client_id"].is_string());
    assert!(connect(&w, &old_token).await["client_id"].is_string());

    let (code, out, err) = cli(&w, &["rotate", "--dry-run", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("demo/web: not due"), "{out}");

    let (code, out, err) = cli(
        &w,
        &[
            "rotate",
            "--cluster",
            "demo",
            "--service",
            "web",
            "--compromised",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("demo/web: rotated"), "{out}");
    let t = tunnel_of(&w, "web").await;
    assert_eq!(
        t["connectors"],
        json!([]),
        "nothing holding the old token stays connected"
    );
    let (new_token, _) = w.token_parameter("demo", "web").await.unwrap();
    assert!(connect(&w, &old_token).await["client_id"].is_null());
    assert!(connect(&w, &new_token).await["client_id"].is_string());
    let tags = w.token_parameter_tags("demo", "web").await;
    assert_eq!(
        tags.get("ecs-tunnels:rotated-by").map(String::as_str),
        Some("compromised")
    );
    assert!(!out.contains(&new_token) && !err.contains(&new_token) && !err.contains(&old_token));
}

fn minutes_ago(minutes: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(minutes * 60))
        .to_string()
}

async fn rotation_mark(w: &World, svc: &str) -> Option<String> {
    w.token_parameter_tags("demo", svc)
        .await
        .get("ecs-tunnels:rotation")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_mark_is_left_to_its_run_until_its_lease_ends() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    let (token, version) = w.token_parameter("demo", "web").await.unwrap();
    assert!(connect(&w, &token).await["client_id"].is_string());
    let secret = tunnel_of(&w, "web").await["secret_sha"].clone();

    // (a) Another Lambda has just marked a compromised rotation and not yet PATCHed: an
    //     event, the sweep, and a manual rotation all leave it to that run.
    let fresh = format!("compromised {}", minutes_ago(0));
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", &fresh)]).await;
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["errors"], json!([]), "{sweep}");
    let (code, out, err) = cli(&w, &["rotate", "--cluster", "demo", "--service", "web"]);
    assert!(
        out.contains("rotation in progress") || err.contains("rotation in progress"),
        "{code} {out}{err}"
    );
    assert_eq!(
        w.writes().await,
        0,
        "no second rotation: {}",
        w.requests().await
    );
    assert_eq!(
        tunnel_of(&w, "web").await["secret_sha"],
        secret,
        "not PATCHed"
    );
    assert_eq!(
        w.token_parameter("demo", "web").await.unwrap(),
        (token.clone(), version),
        "token unchanged"
    );
    assert_eq!(
        rotation_mark(&w, "web").await,
        Some(fresh.clone()),
        "mark kept"
    );
    assert!(connect(&w, &token).await["client_id"].is_string());

    // (a2) That run PATCHed and died before storing the token: with no event coming, the
    //      sweep still repairs the stored token at once, and leaves the mark to the lease.
    let tid = tunnel_of(&w, "web").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    patch_behind_our_back(&w, &tid).await;
    assert!(connect(&w, &token).await["client_id"].is_null());
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["errors"], json!([]), "{sweep}");
    assert_token_works(&w, "web").await;
    assert_eq!(rotation_mark(&w, "web").await, Some(fresh), "mark kept");
    let secret = tunnel_of(&w, "web").await["secret_sha"].clone();
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();

    // (b) The same mark, 20 minutes old: its run is dead (Lambda stops any run after 15
    //     minutes). The event finishes it: the possibly leaked secret is rotated and
    //     every connection dropped.
    let stale = format!("compromised {}", minutes_ago(20));
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", &stale)]).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    let t = tunnel_of(&w, "web").await;
    assert_ne!(t["secret_sha"], secret, "rotated");
    assert_eq!(t["connectors"], json!([]), "every connection dropped: {t}");
    assert!(connect(&w, &token).await["client_id"].is_null());
    assert_token_consistent(&w, "web").await;
    assert_eq!(
        w.token_parameter_tags("demo", "web")
            .await
            .get("ecs-tunnels:rotated-by")
            .map(String::as_str),
        Some("compromised")
    );

    // (c) A mark in the old format (no time) counts as expired.
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();
    let secret = tunnel_of(&w, "web").await["secret_sha"].clone();
    set_param_tags(&w, "web", &[("ecs-tunnels:rotation", "compromised")]).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    assert_ne!(tunnel_of(&w, "web").await["secret_sha"], secret, "rotated");
    assert!(connect(&w, &token).await["client_id"].is_null());
    assert_token_consistent(&w, "web").await;

    // (d) The sweep is the first run after the lease for a mark no event comes for.
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();
    let secret = tunnel_of(&w, "web").await["secret_sha"].clone();
    set_param_tags(
        &w,
        "web",
        &[(
            "ecs-tunnels:rotation",
            &format!("compromised {}", minutes_ago(20)),
        )],
    )
    .await;
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["errors"], json!([]), "{sweep}");
    assert_ne!(tunnel_of(&w, "web").await["secret_sha"], secret, "rotated");
    assert!(connect(&w, &token).await["client_id"].is_null());
    assert_token_consistent(&w, "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_schedule_reads_in_pages_and_looks_only_at_what_is_due() {
    const N: usize = 25;
    let mut w = World::start().await;
    // One sweep creates them all.
    w.extra_env
        .push(("ECS_TUNNELS_SWEEP_MAX_CALLS".into(), "100000".into()));
    w.spawn_function().await;
    let hosts: Vec<&'static str> = (0..N)
        .map(|i| &*Box::leak(format!("s{i:02}.example.com").into_boxed_str()))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        w.seed("demo", &format!("s{i:02}"), &exposed(host)).await;
    }
    let r = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(r["sweep"]["settled"], N, "{r}");

    // Nothing due: the services in pages, the tokens with their tags in a page or two,
    // and nothing per service.
    w.aws.clear_calls();
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    let rotations = resp["rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), N, "{resp}");
    assert!(
        rotations
            .iter()
            .all(|r| r["due"] == false && r["last_rotated"].is_string()),
        "{resp}"
    );
    let calls = w.function_aws_calls();
    let total: usize = calls.values().sum();
    assert!(total <= 8, "{N} services cost {total} AWS calls: {calls:?}");
    assert_eq!(
        calls.get("ecs:DescribeServices"),
        Some(&N.div_ceil(10)),
        "{calls:?}"
    );
    for per_service in ["ssm:GetParameter", "ssm:ListTagsForResource"] {
        assert_eq!(calls.get(per_service), None, "{calls:?}");
    }
    assert_eq!(w.token_value_reads(), Vec::<String>::new());

    // Two due: only they are looked at (described and read) one by one, and rotated.
    for s in ["s03", "s17"] {
        set_param_tags(&w, s, &[("ecs-tunnels:rotated-at", &days_ago(31))]).await;
    }
    w.aws.clear_calls();
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    let rotated: Vec<&str> = resp["rotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rotated"] == true)
        .map(|r| r["service"]["service"].as_str().unwrap())
        .collect();
    assert_eq!(rotated, ["s03", "s17"], "{resp}");
    let calls = w.function_aws_calls();
    assert_eq!(
        calls.get("ecs:DescribeServices"),
        Some(&(N.div_ceil(10) + 2)),
        "{calls:?}"
    );
    assert_eq!(calls.get("ssm:GetParameter"), Some(&2), "{calls:?}");
    for s in ["s03", "s17"] {
        assert_token_consistent(&w, s).await;
    }
}
