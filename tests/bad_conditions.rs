//! Bad input, conflicts, and bad conditions: duplicate, late, out-of-order and concurrent
//! events, a 500 on each write step, a process killed mid-run, and 429 storms. Every case
//! goes through the built binary's Lambda door against moto and the simulator.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn zone_id(w: &World, name: &str) -> String {
    let z = w
        .cf(reqwest::Method::GET, &format!("/zones?name={name}"), None)
        .await;
    z["result"][0]["id"].as_str().unwrap().to_string()
}

/// Exactly one of each object for one exposed service.
async fn assert_single(w: &World, host: &str) {
    let tunnels = w.live_tunnels().await;
    assert_eq!(tunnels.len(), 1, "tunnels: {tunnels:?}");
    assert_eq!(w.access_apps().await.len(), 1, "apps");
    assert_eq!(
        w.policies().await.len(),
        1,
        "policies: {:?}",
        w.policies().await
    );
    let records: Vec<Value> = w
        .dns_records()
        .await
        .into_iter()
        .filter(|r| r["name"] == host)
        .collect();
    assert_eq!(records.len(), 1, "records: {records:?}");
    let tid = tunnels[0]["id"].as_str().unwrap();
    assert_eq!(records[0]["content"], format!("{tid}.cfargotunnel.com"));
    assert_eq!(tunnels[0]["config"]["ingress"][0]["hostname"], host);
}

fn status_of(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.get("ecs-tunnels:status").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unowned_record_is_a_conflict_and_nothing_changes() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let zone = zone_id(&w, "example.com").await;
    let legacy = w
        .cf(reqwest::Method::POST, &format!("/zones/{zone}/dns_records"), Some(json!({"type": "CNAME", "name": "web.example.com", "content": "legacy.example.net", "proxied": true, "ttl": 1})))
        .await;
    assert_eq!(legacy["success"], true);
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.reset_requests().await;

    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    let outcome = &resp["outcomes"][0];
    assert_eq!(outcome["state"], "error", "{resp}");
    assert_eq!(outcome["error_kind"], "conflict");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("web.example.com"),
        "{outcome}"
    );
    assert_eq!(w.writes().await, 0, "a conflict must change nothing");
    assert!(w.live_tunnels().await.is_empty() && w.access_apps().await.is_empty());
    let records = w.dns_records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["content"], "legacy.example.net",
        "the unowned record is untouched"
    );
    let status = status_of(&w.service_tags("demo", "web").await);
    assert!(
        status.starts_with("error conflict") && status.contains("web.example.com"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_access_app_is_a_conflict() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let app = w
        .cf(
            reqwest::Method::POST,
            "/accounts/0123456789abcdef0123456789abcdef/access/apps",
            Some(json!({"type": "self_hosted", "name": "hand made", "domain": "portal.example.com",
                "destinations": [{"type": "public", "uri": "portal.example.com"}, {"type": "public", "uri": "web.example.com"}]})),
        )
        .await;
    assert_eq!(app["success"], true, "{app}");
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["error_kind"], "conflict", "{resp}");
    assert_eq!(w.writes().await, 0);
    assert_eq!(w.access_apps().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tag_corpus_gives_clear_errors_and_no_cloudflare_writes() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_ALLOWED_ZONES".into(), "example.com".into()));
    w.spawn_function().await;
    let h = ("ecs-tunnels:hostname", "bad.example.com");
    let allow = ("ecs-tunnels:allow-emails", "alice@example.com");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("failclosed", vec![h], "ecs-tunnels:access"),
        (
            "badhost",
            vec![("ecs-tunnels:hostname", "https://x.example.com/"), allow],
            "ecs-tunnels:hostname",
        ),
        (
            "nozone",
            vec![("ecs-tunnels:hostname", "app.unknown-zone.org"), allow],
            "ecs-tunnels:hostname",
        ),
        (
            "notallowed",
            vec![("ecs-tunnels:hostname", "app.example.net"), allow],
            "ecs-tunnels:hostname",
        ),
        (
            "badmode",
            vec![h, allow, ("ecs-tunnels:access", "maybe")],
            "ecs-tunnels:access",
        ),
        (
            "bademail",
            vec![h, ("ecs-tunnels:allow-emails", "alice")],
            "ecs-tunnels:allow-emails",
        ),
        (
            "badorigin",
            vec![h, allow, ("ecs-tunnels:origin", "localhost:8080")],
            "ecs-tunnels:origin",
        ),
        (
            "badsession",
            vec![h, allow, ("ecs-tunnels:session-duration", "1day")],
            "ecs-tunnels:session-duration",
        ),
        (
            "badrotate",
            vec![h, allow, ("ecs-tunnels:rotate-every", "often")],
            "ecs-tunnels:rotate-every",
        ),
        (
            "typo",
            vec![h, allow, ("ecs-tunnels:allow-email", "bob@example.com")],
            "ecs-tunnels:allow-email",
        ),
        (
            "nogroup",
            vec![h, ("ecs-tunnels:allow-groups", "no-such-group")],
            "ecs-tunnels:allow-groups",
        ),
        (
            "nopolicy",
            vec![h, ("ecs-tunnels:policies", "no-such-policy")],
            "ecs-tunnels:policies",
        ),
        (
            "publicmix",
            vec![h, allow, ("ecs-tunnels:access", "public")],
            "ecs-tunnels:allow-emails",
        ),
    ];
    for (svc, tags, _) in &cases {
        w.seed("demo", svc, tags).await;
    }
    w.reset_requests().await;
    for (svc, _, key) in &cases {
        let resp = w.invoke_ok(task_event("demo", svc, false)).await;
        let o = &resp["outcomes"][0];
        assert_eq!(o["state"], "error", "{svc}: {o}");
        assert_eq!(o["error_kind"], "invalid", "{svc}: {o}");
        let msg = o["error"].as_str().unwrap();
        assert!(msg.contains(key), "{svc}: error should name {key}: {msg}");
        let status = status_of(&w.service_tags("demo", svc).await);
        assert!(
            status.starts_with("error ") && status.contains(key),
            "{svc}: status tag {status:?}"
        );
    }
    assert_eq!(
        w.writes().await,
        0,
        "bad tags must not write to Cloudflare: {}",
        w.requests().await
    );
    assert!(w.live_tunnels().await.is_empty());
    for (svc, _, _) in &cases {
        assert!(
            w.token_parameter("demo", svc).await.is_none(),
            "{svc}: no token written"
        );
    }

    // Fixing the tags fixes the service.
    w.set_tags(
        "demo",
        "failclosed",
        &[("ecs-tunnels:allow-email-domains", "example.com")],
    )
    .await;
    let resp = w
        .invoke_ok(tag_event(
            "demo",
            "failclosed",
            &[("ecs-tunnels:allow-email-domains", "example.com")],
        ))
        .await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert!(status_of(&w.service_tags("demo", "failclosed").await).starts_with("ready "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_late_and_out_of_order_events_converge_on_the_tags() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    // STOPPED before RUNNING, each twice, plus a stale UntagResource event while the tag is on.
    for e in [
        task_event("demo", "web", true),
        task_event("demo", "web", true),
        untag_event("demo", "web", &["ecs-tunnels:hostname"]),
        task_event("demo", "web", false),
        task_event("demo", "web", false),
    ] {
        let resp = w.invoke_ok(e).await;
        assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    }
    assert_single(&w, "web.example.com").await;
    let version = w.token_parameter("demo", "web").await.unwrap().1;
    assert_eq!(version, 1, "token written once");

    // The tag goes; a late TagResource event (from before) arrives after the untag event.
    w.remove_tags("demo", "web", &["ecs-tunnels:hostname"])
        .await;
    assert_eq!(
        w.invoke_ok(untag_event("demo", "web", &["ecs-tunnels:hostname"]))
            .await["outcomes"][0]["state"],
        "removed"
    );
    let late = w
        .invoke_ok(tag_event("demo", "web", &exposed("web.example.com")))
        .await;
    assert_eq!(late["outcomes"][0]["state"], "not_managed", "{late}");
    assert!(w.live_tunnels().await.is_empty() && w.dns_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_invocations_make_one_of_everything() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    // Slow Cloudflare down so the two runs overlap at every step.
    w.fault(json!({"latency_ms": 150, "count": 1000})).await;
    let (a, b) = tokio::join!(
        w.invoke(task_event("demo", "web", false)),
        w.invoke(task_event("demo", "web", true))
    );
    for inv in [&a, &b] {
        let r = inv
            .outcome
            .response()
            .unwrap_or_else(|| panic!("{:?}\n{}", inv.outcome, w.output()));
        assert_eq!(r["outcomes"][0]["state"], "ready", "{r}");
    }
    w.clear_faults().await;
    assert_single(&w, "web.example.com").await;
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();
    assert!(
        w.token_connects(&token).await,
        "stored token is the tunnel's"
    );
}

/// How many objects of each kind one service of cluster `demo` has.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    tunnels: usize,
    apps: usize,
    policies: usize,
    records: usize,
}

async fn counts(w: &World, svc: &str, host: &str) -> Counts {
    let key = format!("demo/{svc}");
    Counts {
        tunnels: w
            .live_tunnels()
            .await
            .iter()
            .filter(|t| {
                t["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(".demo.{svc}"))
            })
            .count(),
        apps: w
            .access_apps()
            .await
            .iter()
            .filter(|a| a["name"].as_str().unwrap().starts_with(&format!("{key} [")))
            .count(),
        policies: w
            .policies()
            .await
            .iter()
            .filter(|p| {
                p["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{key} allow"))
            })
            .count(),
        records: w
            .dns_records()
            .await
            .iter()
            .filter(|r| r["name"] == host)
            .count(),
    }
}

/// The service is exposed exactly once, its stored token is the tunnel's, and no
/// redeploy is owed.
async fn assert_exposed_once(w: &World, svc: &str, host: &str, what: &str) {
    let one = Counts {
        tunnels: 1,
        apps: 1,
        policies: 1,
        records: 1,
    };
    assert_eq!(counts(w, svc, host).await, one, "{what}");
    let (token, _) = w
        .token_parameter("demo", svc)
        .await
        .unwrap_or_else(|| panic!("{what}: no token"));
    assert!(w.token_connects(&token).await, "{what}: token works");
    assert!(
        status_of(&w.service_tags("demo", svc).await).starts_with("ready "),
        "{what}"
    );
    let tags = w.token_parameter_tags("demo", svc).await;
    assert!(
        !tags.contains_key("ecs-tunnels:redeploy"),
        "{what}: the redeploy owed was paid: {tags:?}"
    );
}

/// The Cloudflare writes of a create, in order; the account's Access tag is created
/// once, by the first service.
const CREATE_WRITES: [(&str, &str); 6] = [
    ("POST", "/access/tags"),
    ("POST", "/cfd_tunnel"),
    ("POST", "/access/policies"),
    ("POST", "/access/apps"),
    ("PUT", "/configurations"),
    ("POST", "/dns_records"),
];

fn seed_tags(host: &str) -> Vec<(&str, &str)> {
    vec![
        ("ecs-tunnels:hostname", host),
        ("ecs-tunnels:allow-emails", "alice@example.com"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_at_each_write_step_then_a_clean_run_converges() {
    let mut w = World::start().await;
    w.spawn_function().await;
    // Each write step fails persistently, twice over: refused before it happens, and
    // applied by Cloudflare with the error answered anyway (every retry lands too).
    for (i, (method, path)) in CREATE_WRITES.iter().enumerate() {
        for commit in [false, true] {
            let svc = format!("svc{i}{}", if commit { "c" } else { "r" });
            let host = format!("{svc}.example.com");
            let what = format!("{method} {path} (commit: {commit})");
            w.seed("demo", &svc, &seed_tags(&host)).await;
            w.fault(json!({"method": method, "path_contains": path, "status": 500, "count": 20, "commit": commit}))
                .await;
            let first = w.invoke(task_event("demo", &svc, false)).await;
            let status = status_of(&w.service_tags("demo", &svc).await);
            if commit {
                // A write that landed may be adopted in the same run; either way nothing
                // is duplicated and the service is ready or pending.
                assert!(
                    status.starts_with("pending ") || status.starts_with("ready "),
                    "{what}: {status}"
                );
            } else {
                assert!(
                    first.outcome.is_error(),
                    "{what}: a persistent 500 must fail the invocation so Lambda retries: {:?}",
                    first.outcome
                );
                assert!(status.starts_with("pending "), "{what}: {status}");
            }
            let c = counts(&w, &svc, &host).await;
            assert!(
                c.tunnels <= 1 && c.apps <= 1 && c.policies <= 1 && c.records <= 1,
                "{what}: a write that committed and failed was duplicated: {c:?}"
            );
            w.clear_faults().await;
            let ok = w.invoke_ok(task_event("demo", &svc, false)).await;
            assert_eq!(ok["outcomes"][0]["state"], "ready", "{what}: {ok}");
            assert_exposed_once(&w, &svc, &host, &what).await;
        }
    }
}

/// Where a kill lands: inside a Cloudflare write (the simulator applies it and holds the
/// answer) or an AWS write (the proxy passes it to moto and holds the answer).
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    Cloudflare(&'static str, &'static str),
    Aws(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_inside_each_write_is_finished_by_the_next_run() {
    let mut w = World::start().await;
    let mut points: Vec<KillPoint> = CREATE_WRITES
        .iter()
        .map(|(m, p)| KillPoint::Cloudflare(m, p))
        .collect();
    points.extend(
        [
            "ssm:PutParameter",
            "ecs:UpdateService",
            "ssm:RemoveTagsFromResource",
            "ecs:TagResource",
        ]
        .map(KillPoint::Aws),
    );
    for (i, point) in points.into_iter().enumerate() {
        let svc = format!("k{i}");
        let host = format!("{svc}.example.com");
        let what = format!("killed inside {point:?}");
        w.seed("demo", &svc, &seed_tags(&host)).await;
        w.spawn_function().await;
        match point {
            KillPoint::Cloudflare(method, path) => {
                w.fault(
                    json!({"method": method, "path_contains": path, "after_ms": 60000, "count": 1}),
                )
                .await
            }
            // The status write held is the final report (`ready …`), not the
            // `pending creating` mark written before the first write.
            KillPoint::Aws(op @ "ecs:TagResource") => w.aws.inject(
                devtools::aws_proxy::Fault::hold(op, Duration::from_secs(60))
                    .when_body_contains("ready "),
            ),
            KillPoint::Aws(op) => w.aws.inject(devtools::aws_proxy::Fault::hold(
                op,
                Duration::from_secs(60),
            )),
        }
        w.aws.clear_calls();
        let rt = &w.rt;
        let run = rt.invoke(task_event("demo", &svc, false), Duration::from_secs(30));
        let landed = async {
            // The write has landed once the fault is used up (the simulator applies the
            // request before it holds the answer) or moto has answered the AWS call.
            for _ in 0..300 {
                let done = match point {
                    KillPoint::Cloudflare(..) => {
                        let f = w.hook(reqwest::Method::GET, "/faults", None).await;
                        f["faults"].as_array().is_some_and(|a| a.is_empty())
                    }
                    KillPoint::Aws(op) => w.aws.calls().iter().any(|c| {
                        c.call.name() == op
                            && (op != "ecs:TagResource"
                                || c.call.params.to_string().contains("ready "))
                    }),
                };
                if done {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        tokio::select! {
            r = run => panic!("{what}: the run finished although its write was held: {r:?}"),
            ok = landed => assert!(ok, "{what}: the write never happened\n{}", w.output()),
        }
        let f = w.functions.pop().unwrap();
        let _ = f.stop().await;
        w.clear_faults().await;
        w.aws.clear_faults();

        // Before the repair: the held write landed, nothing is duplicated, the service
        // is not yet reported ready (unless the held write was that report), and no
        // token is lost (none was stored yet, or the stored one is the tunnel's).
        let c = counts(&w, &svc, &host).await;
        assert!(
            c.tunnels == 1 && c.apps <= 1 && c.policies <= 1 && c.records <= 1,
            "{what}: {c:?}"
        );
        let status = status_of(&w.service_tags("demo", &svc).await);
        match point {
            KillPoint::Aws("ecs:TagResource") => {
                assert!(status.starts_with("ready "), "{what}: {status}")
            }
            _ => assert!(!status.starts_with("ready "), "{what}: {status}"),
        }
        if let Some((token, _)) = w.token_parameter("demo", &svc).await {
            assert!(
                w.token_connects(&token).await,
                "{what}: the stored token works"
            );
        }

        // The next run finishes the work.
        w.spawn_function().await;
        let ok = w.invoke_ok(task_event("demo", &svc, false)).await;
        assert_eq!(ok["outcomes"][0]["state"], "ready", "{what}: {ok}");
        assert_exposed_once(&w, &svc, &host, &what).await;
        let f = w.functions.pop().unwrap();
        let _ = f.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_honours_retry_after() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.reset_requests().await;
    w.fault(json!({"status": 429, "retry_after": 1, "count": 3}))
        .await;
    let started = Instant::now();
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    let elapsed = started.elapsed();
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert!(
        elapsed >= Duration::from_secs(3),
        "three Retry-After: 1 answers must cost at least 3 s, took {elapsed:?}"
    );
    let req = w.requests().await;
    assert_eq!(req["by_status"]["429"], 3, "{req}");
    assert_single(&w, "web.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_rate_limit_fails_fast_and_is_retried_later() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.fault(json!({"status": 429, "retry_after": 300, "count": 1}))
        .await;
    let started = Instant::now();
    let inv = w.invoke(task_event("demo", "web", false)).await;
    assert!(
        inv.outcome.is_error(),
        "a 5-minute block must not be slept through: {:?}",
        inv.outcome
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(status_of(&w.service_tags("demo", "web").await).starts_with("pending "));
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready");
}

/// An SQS record carrying `body`, as the event source mapping delivers it.
fn sqs_record(message_id: &str, body: String) -> Value {
    json!({"messageId": message_id, "receiptHandle": format!("rh-{message_id}"), "body": body,
           "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
           "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ecs-tunnels-events",
           "awsRegion": "us-east-1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_message_fails_alone_in_an_sqs_batch() {
    // A mixed batch: a good message (twice), a malformed one, one whose service is
    // rate-limited, and one whose service is in a conflict. Only the malformed and the
    // rate-limited messages are reported as failures: the rest of the batch is done and
    // is not retried into the dead-letter queue with them.
    let mut w = World::start().await;
    w.spawn_function().await;
    for s in ["a", "b", "c"] {
        let host: &'static str = Box::leak(format!("{s}.example.com").into_boxed_str());
        w.seed("demo", s, &exposed(host)).await;
    }
    let zone = zone_id(&w, "example.com").await;
    let foreign = w
        .cf(reqwest::Method::POST, &format!("/zones/{zone}/dns_records"), Some(json!({"type": "CNAME", "name": "c.example.com", "content": "legacy.example.net", "proxied": true, "ttl": 1})))
        .await;
    assert_eq!(foreign["success"], true);
    // Service b's first lookup (its tunnel by name) is rate-limited beyond what a Lambda
    // waits for (Retry-After 120 s > 60 s): a transient failure.
    w.fault(json!({"status": 429, "retry_after": 120, "path_contains": "demo.b", "count": 5}))
        .await;
    let batch = json!({"Records": [
        sqs_record("m1", task_event("demo", "a", false).to_string()),
        sqs_record("m2", "{not json".to_string()),
        sqs_record("m3", task_event("demo", "b", false).to_string()),
        sqs_record("m4", task_event("demo", "c", false).to_string()),
        sqs_record("m5", task_event("demo", "a", false).to_string()),
    ]});
    let resp = w.invoke_ok(batch).await;
    assert_eq!(
        resp["batchItemFailures"],
        json!([{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]),
        "{resp}\n{}",
        w.output()
    );
    let state = |svc: &str| {
        resp["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["service"]["service"] == svc)
            .map(|o| o["state"].clone())
    };
    assert_eq!(state("a"), Some(json!("ready")), "{resp}");
    assert_eq!(state("b"), Some(json!("pending")), "{resp}");
    assert_eq!(state("c"), Some(json!("error")), "{resp}");
    assert_eq!(resp["outcomes"].as_array().unwrap().len(), 3, "a once");

    // The retry of the failed messages alone settles b.
    w.clear_faults().await;
    let retry = json!({"Records": [
        sqs_record("m2", "{not json".to_string()),
        sqs_record("m3", task_event("demo", "b", false).to_string()),
    ]});
    let resp = w.invoke_ok(retry).await;
    assert_eq!(
        resp["batchItemFailures"],
        json!([{"itemIdentifier": "m2"}]),
        "{resp}"
    );
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
}
