//! Who asked for what (issue 12), through the binary's Lambda door and CLI against moto
//! and the simulator: every change is logged with its event's source, id and actor; the
//! token records who first exposed the service and when, through rotations and repairs;
//! a sweep's adoption and a CloudFormation create are recorded as such; `plan` shows it;
//! no secret appears anywhere.

mod common;
use common::*;
use devtools::response_sink::ResponseSink;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, SystemTime};

const EXPOSED_BY: &str = "ecs-tunnels:exposed-by";
const EXPOSED_AT: &str = "ecs-tunnels:exposed-at";

/// The function's JSON log lines with `message`.
fn log_lines(w: &World, message: &str) -> Vec<Value> {
    w.output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// Asserts that there are `changes` applied and every one carries the cause.
fn assert_changes_caused_by(w: &World, source: &str, event_id: &str, actor: Option<&str>) {
    let lines = log_lines(w, "change applied");
    assert!(
        lines.len() >= 5,
        "a create logs its changes: {}",
        w.output()
    );
    for l in &lines {
        let span = &l["span"];
        assert_eq!(span["event_source"], source, "{l}");
        assert_eq!(span["event_id"], event_id, "{l}");
        match actor {
            Some(a) => assert_eq!(span["actor"], a, "{l}"),
            None => assert!(span.get("actor").is_none(), "{l}"),
        }
    }
}

/// The exposure tags are a `by` and a recent RFC 3339 UTC time; returns them.
fn exposure(tags: &std::collections::BTreeMap<String, String>) -> (String, String) {
    let by = tags
        .get(EXPOSED_BY)
        .cloned()
        .unwrap_or_else(|| panic!("no {EXPOSED_BY}: {tags:?}"));
    let at = tags
        .get(EXPOSED_AT)
        .cloned()
        .unwrap_or_else(|| panic!("no {EXPOSED_AT}: {tags:?}"));
    assert!(at.ends_with('Z'), "UTC: {at}");
    let when = humantime::parse_rfc3339(&at).expect("RFC 3339");
    let age = SystemTime::now().duration_since(when).unwrap_or_default();
    assert!(age < Duration::from_secs(300), "recent: {at}");
    (by, at)
}

fn cli(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
        .args(args)
        .env_clear()
        .envs(w.env())
        .env("USER", "alice")
        .env("HOSTNAME", "laptop")
        .output()
        .expect("cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_event_is_logged_and_recorded_as_who_exposed_the_service() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    const ARN: &str = "arn:aws:sts::123456789012:assumed-role/platform-admin/carol@example.com";
    const EVENT_ID: &str = "7e57e7e5-1111-2222-3333-444455556666";
    let mut event = tag_event("demo", "web", &exposed("web.example.com"));
    event["detail"]["eventID"] = json!(EVENT_ID);
    event["detail"]["userIdentity"]["arn"] = json!(ARN);
    let resp = w.invoke_ok(event).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");

    // Every change is logged with the CloudTrail event and who made the call.
    assert_changes_caused_by(&w, "cloudtrail", EVENT_ID, Some(ARN));
    let reconciled = log_lines(&w, "service reconciled");
    assert_eq!(reconciled.len(), 1, "{}", w.output());
    assert_eq!(reconciled[0]["span"]["service"], "demo/web");
    assert_eq!(reconciled[0]["span"]["event_detail"], "TagResource");

    // The token records who first exposed the service, and when.
    let tags = w.token_parameter_tags("demo", "web").await;
    let (by, at) = exposure(&tags);
    assert_eq!(by, ARN);

    // A rotation (a new token) keeps them.
    let (_, version) = w.token_parameter("demo", "web").await.unwrap();
    let (code, out, err) = cli(&w, &["rotate", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, rotated) = w.token_parameter("demo", "web").await.unwrap();
    assert!(rotated > version, "rotated");
    let tags = w.token_parameter_tags("demo", "web").await;
    assert_eq!(
        (tags[EXPOSED_BY].as_str(), tags[EXPOSED_AT].as_str()),
        (ARN, at.as_str())
    );

    // So does a repair (a stale token overwritten by the next event's run).
    let tid = w.live_tunnels().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.make_token_stale("/ecs-tunnels/demo/web/token", &tid)
        .await;
    let (_, stale) = w.token_parameter("demo", "web").await.unwrap();
    w.invoke_ok(task_event("demo", "web", false)).await;
    let (_, repaired) = w.token_parameter("demo", "web").await.unwrap();
    assert!(repaired > stale, "repaired");
    let tags = w.token_parameter_tags("demo", "web").await;
    assert_eq!(
        (tags[EXPOSED_BY].as_str(), tags[EXPOSED_AT].as_str()),
        (ARN, at.as_str())
    );

    // `plan` shows them, as text and as JSON.
    let (code, out, err) = cli(&w, &["plan", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("exposed by {ARN} at {at}")), "{out}");
    let (code, out, _) = cli(
        &w,
        &["plan", "--cluster", "demo", "--service", "web", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["outcomes"][0]["exposed_by"], ARN, "{v}");
    assert_eq!(v["outcomes"][0]["exposed_at"], at.as_str(), "{v}");

    // No secret anywhere: not the API token, not the tunnel token.
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();
    let everything = format!("{}\n{out}\n{tags:?}", w.output());
    assert!(!everything.contains(API_TOKEN));
    assert!(!everything.contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_applying_with_the_cli_is_recorded() {
    let w = World::start().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let (code, out, err) = cli(&w, &["apply", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let (by, _) = exposure(&w.token_parameter_tags("demo", "web").await);
    assert_eq!(by, "alice@laptop");
    let (code, out, err) = cli(&w, &["plan", "--cluster", "demo", "--service", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("exposed by alice@laptop at "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_sweep_adopts_is_recorded_as_the_schedule() {
    let mut w = World::start().await;
    w.spawn_function().await;
    // Tagged with no event seen: the sweep exposes it.
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let schedule = sample("schedule-sweep.json");
    let id = schedule["id"].as_str().unwrap().to_string();
    let r = w.invoke_ok(schedule).await;
    assert_eq!(r["sweep"]["needed_work"], 1, "{r}");
    assert!(w.token_parameter("demo", "web").await.is_some(), "{r}");

    assert_changes_caused_by(&w, "schedule", &id, None);
    for l in log_lines(&w, "change applied") {
        assert_eq!(l["span"]["event_detail"], "ecs-tunnels-sweep", "{l}");
    }
    let finished = log_lines(&w, "sweep finished");
    assert_eq!(
        finished[0]["span"]["event_source"], "schedule",
        "{finished:?}"
    );
    let (by, _) = exposure(&w.token_parameter_tags("demo", "web").await);
    assert_eq!(by, format!("schedule ecs-tunnels-sweep {id}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_is_recorded_as_its_stack_and_request() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let mut create = sample("cloudformation-create.json");
    create["ResponseURL"] = json!(sink.response_url("create"));
    let stack = create["StackId"].as_str().unwrap().to_string();
    let request_id = create["RequestId"].as_str().unwrap().to_string();
    let _ = w.invoke(create.clone()).await;
    let answer = sink.received().last().expect("answered").json();
    assert_eq!(answer["Status"], "SUCCESS", "{answer}\n{}", w.output());
    w.custom_resource_answered(&create, &answer);

    assert_changes_caused_by(&w, "cloudformation", &request_id, Some(&stack));
    let answered = log_lines(&w, "custom resource answered");
    assert_eq!(
        answered[0]["span"]["event_id"],
        request_id.as_str(),
        "{answered:?}"
    );
    let tags = w
        .parameter_tags(answer["Data"]["TokenParameterName"].as_str().unwrap())
        .await
        .expect("token parameter");
    let (by, _) = exposure(&tags);
    assert_eq!(by, stack);
    assert!(
        !w.output().contains("X-Amz-Signature"),
        "no presigned URL in the log"
    );
}
