//! Connector-aware publishing (`ECS_TUNNELS_PUBLISH=connected`, the default), end to end
//! through the Lambda Runtime API against moto and the simulator: a hostname's DNS record
//! is made only once a (simulated) cloudflared has connected with the token ecs-tunnels
//! wrote; the invocation that wrote it waits a little; a delayed SQS follow-up looks
//! again; a live record is never withdrawn because connectors come and go.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HOST: &str = "app.example.com";

/// A world publishing only once cloudflared connects, with a short wait of `wait`.
async fn world(wait: &str, extra: &[(&str, &str)]) -> World {
    let mut w = World::start().await;
    w.extra_env.extend(
        [
            ("ECS_TUNNELS_PUBLISH", "connected"),
            ("ECS_TUNNELS_CONNECT_WAIT", wait),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    w
}

/// A simulated cloudflared replica: waits until the service's token is in SSM (ECS would
/// start the new tasks with it), then `after` longer, and connects. Its client id.
async fn sidecar(w: &World, service: &str, after: Duration) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        if let Some((token, _)) = w.token_parameter("demo", service).await {
            break token;
        }
        assert!(Instant::now() < deadline, "no token was written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(after).await;
    connect(w, &token).await
}

async fn connect(w: &World, token: &str) -> String {
    let c = w
        .hook(
            reqwest::Method::POST,
            "/connectors",
            Some(json!({ "token": token })),
        )
        .await;
    c["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the token connects: {c}"))
        .to_string()
}

async fn status(w: &World, service: &str) -> String {
    w.service_tags("demo", service)
        .await
        .get("ecs-tunnels:status")
        .cloned()
        .unwrap_or_default()
}

/// `GET .../connections` requests since the last reset.
async fn connection_reads(w: &World) -> usize {
    w.requests().await["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["method"] == "GET" && r["path"].as_str().unwrap_or("").ends_with("/connections")
        })
        .count()
}

fn outcome(r: &Value) -> &Value {
    &r["outcomes"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_no_connector_publishes_no_record_and_the_status_says_why() {
    let mut w = world("600ms", &[]).await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed(HOST)).await;
    w.reset_requests().await;
    let r = w.invoke_ok(tag_event("demo", "web", &exposed(HOST))).await;
    assert_eq!(outcome(&r)["state"], "waiting", "{r}");
    assert_eq!(outcome(&r)["waiting_for"], json!([HOST]), "{r}");
    assert_eq!(
        status(&w, "web").await,
        "pending waiting for cloudflared to connect"
    );
    assert!(
        w.dns_records().await.is_empty(),
        "no record before a connection"
    );
    // Everything else is in place: the tunnel, its configuration, Access and the token.
    assert_eq!(w.live_tunnels().await.len(), 1);
    assert_eq!(w.access_apps().await.len(), 1);
    assert!(w.token_parameter("demo", "web").await.is_some());
    assert_eq!(
        connection_reads(&w).await,
        3,
        "the short wait reads 3 times"
    );
    // No follow-up queue configured (the CLI, say): the sweep is the backstop, and a
    // task event (not a routine no-op while waiting) keeps waiting without a write.
    w.reset_requests().await;
    let r = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(outcome(&r)["state"], "waiting", "{r}");
    assert_eq!(w.writes().await, 0);
    assert_eq!(
        connection_reads(&w).await,
        0,
        "only the run that wrote the token waits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_arriving_during_the_short_wait_is_published_in_the_same_invocation() {
    let mut w = world("4s", &[]).await;
    w.spawn_function().await;
    w.seed("demo", "warm", &exposed("warm.example.com")).await;
    w.seed("demo", "web", &exposed(HOST)).await;
    // A warm process (zones, the organization and the Access tag are read once).
    let (_, warm) = tokio::join!(
        w.invoke_ok(tag_event("demo", "warm", &exposed("warm.example.com"))),
        sidecar(&w, "warm", Duration::from_millis(200))
    );
    assert!(!warm.is_empty());
    w.reset_requests().await;
    let started = Instant::now();
    let (r, _) = tokio::join!(
        w.invoke_ok(tag_event("demo", "web", &exposed(HOST))),
        sidecar(&w, "web", Duration::from_millis(1500))
    );
    assert_eq!(outcome(&r)["state"], "ready", "{r}\n{}", w.output());
    assert_eq!(outcome(&r)["connectors"], 1, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "it stopped waiting once connected"
    );
    let tunnel_id = outcome(&r)["tunnel_id"].as_str().unwrap().to_string();
    let records: Vec<Value> = w
        .dns_records()
        .await
        .into_iter()
        .filter(|d| d["name"] == HOST)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["content"],
        format!("{tunnel_id}.cfargotunnel.com")
    );
    let st = status(&w, "web").await;
    assert!(
        st.starts_with(&format!("ready {tunnel_id} 1 connector digest:")),
        "{st}"
    );
    // The cost of a create: the lean targets (9 calls, 5 writes), plus at most 3
    // connection reads.
    let reads = connection_reads(&w).await;
    let req = w.requests().await;
    assert!((1..=3).contains(&reads), "{reads} connection reads");
    assert_eq!(req["writes"], 5, "{req}");
    assert!(
        req["total"].as_u64().unwrap() <= 9 + 3,
        "{} calls: {:#}",
        req["total"],
        req["log"]
    );
    assert_eq!(r["cloudflare_calls"], req["total"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delayed_follow_up_publishes_a_late_connector_without_a_sweep() {
    let mut w = world("300ms", &[("ECS_TUNNELS_FOLLOW_UP_DELAY", "2s")]).await;
    let queue = devtools::event_queue::create(&w.sdk).await;
    w.extra_env
        .push(("ECS_TUNNELS_FOLLOW_UP_QUEUE_URL".into(), queue.clone()));
    w.spawn_function().await;
    w.seed("demo", "web", &exposed(HOST)).await;
    let r = w.invoke_ok(tag_event("demo", "web", &exposed(HOST))).await;
    assert_eq!(outcome(&r)["state"], "waiting", "{r}");
    let queued = Instant::now();
    // Delayed: not deliverable at once.
    assert!(
        !devtools::event_queue::deliverable_now(&w.sdk, &queue).await,
        "the follow-up is delayed"
    );

    // The first follow-up finds no connector yet: one read, and the next one is queued.
    let first = devtools::event_queue::next_event(&w.sdk, &queue, Duration::from_secs(10))
        .await
        .expect("a follow-up");
    assert!(
        queued.elapsed() >= Duration::from_millis(1500),
        "delayed by DelaySeconds"
    );
    let body: Value = serde_json::from_str(first["Records"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["ecs-tunnels"], "follow-up");
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["tunnel_id"], outcome(&r)["tunnel_id"]);
    let token = w.token_parameter("demo", "web").await.unwrap().0;
    assert!(
        !first.to_string().contains(&token),
        "no secret in the message"
    );
    w.reset_requests().await;
    let r1 = w.invoke_ok(first).await;
    assert_eq!(r1["batchItemFailures"], json!([]), "{r1}");
    assert_eq!(outcome(&r1)["state"], "waiting", "{r1}");
    assert_eq!(w.requests().await["total"], 1, "one connection read");

    // The sidecar connects; the next follow-up publishes.
    connect(&w, &token).await;
    let second = devtools::event_queue::next_event(&w.sdk, &queue, Duration::from_secs(15))
        .await
        .expect("a second follow-up");
    let body: Value = serde_json::from_str(second["Records"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["attempt"], 2);
    let r2 = w.invoke_ok(second).await;
    assert_eq!(outcome(&r2)["state"], "ready", "{r2}\n{}", w.output());
    assert_eq!(
        w.dns_records()
            .await
            .iter()
            .filter(|d| d["name"] == HOST)
            .count(),
        1
    );
    assert!(status(&w, "web").await.contains(" 1 connector "));
    // The chain ends with the publish.
    assert!(
        devtools::event_queue::next_event(&w.sdk, &queue, Duration::from_secs(5))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_drops_and_returns_does_not_touch_the_live_record() {
    let mut w = world("3s", &[]).await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed(HOST)).await;
    let (r, client) = tokio::join!(
        w.invoke_ok(tag_event("demo", "web", &exposed(HOST))),
        sidecar(&w, "web", Duration::from_millis(300))
    );
    assert_eq!(outcome(&r)["state"], "ready", "{r}");
    let record = |rs: Vec<Value>| {
        rs.into_iter()
            .find(|d| d["name"] == HOST)
            .map(|d| d["id"].clone())
    };
    let id = record(w.dns_records().await).expect("published");
    let tunnel_id = outcome(&r)["tunnel_id"].as_str().unwrap().to_string();

    // The replica stops: the record stays, the status says 0 once (a crossing of zero).
    w.hook(
        reqwest::Method::DELETE,
        &format!("/connectors/{client}"),
        None,
    )
    .await;
    w.reset_requests().await;
    let r = w.invoke_ok(tag_event("demo", "web", &exposed(HOST))).await;
    assert_eq!(outcome(&r)["state"], "ready", "{r}");
    assert_eq!(w.writes().await, 0, "nothing is withdrawn");
    assert_eq!(record(w.dns_records().await), Some(id.clone()));
    let st = status(&w, "web").await;
    assert!(
        st.starts_with(&format!("ready {tunnel_id} 0 connectors ")),
        "{st}"
    );
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["without_connector"], 1, "{sweep}");
    assert_eq!(record(w.dns_records().await), Some(id.clone()));

    // Two replicas return: the sweep records the crossing (one count read), and a third
    // replica later changes nothing.
    let token = w.token_parameter("demo", "web").await.unwrap().0;
    connect(&w, &token).await;
    connect(&w, &token).await;
    w.reset_requests().await;
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["without_connector"], 0, "{sweep}");
    assert_eq!(w.writes().await, 0);
    let st = status(&w, "web").await;
    assert!(
        st.starts_with(&format!("ready {tunnel_id} 2 connectors ")),
        "{st}"
    );
    connect(&w, &token).await;
    let r = w.invoke_ok(tag_event("demo", "web", &exposed(HOST))).await;
    assert_eq!(
        outcome(&r)["connectors"],
        2,
        "not rewritten above zero: {r}"
    );
    assert_eq!(status(&w, "web").await, st);
    assert_eq!(record(w.dns_records().await), Some(id));
}
