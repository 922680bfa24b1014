//! The sweep, through the Lambda door (scheduled event) against moto and the simulator:
//! missed events healed, drift put back, orphans collected (also of deleted clusters and
//! of services whose tags were all removed), other owners untouched, clusters that fail to
//! list skipped, records created during a sweep left alone, a converged account costs a
//! few reads and no write, and an unfinished sweep continues.

mod common;
use common::*;
use devtools::aws_proxy::Fault;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ACCT: &str = "0123456789abcdef0123456789abcdef";

async fn sweep(w: &World) -> Value {
    let r = w.invoke_ok(sample("schedule-sweep.json")).await;
    r["sweep"].clone()
}

fn tagged(host: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ecs-tunnels:hostname", host),
        ("ecs-tunnels:allow-emails", "alice@example.com"),
        ("ecs-tunnels:origin", "http://localhost:8080"),
    ]
}

async fn zone(w: &World, name: &str) -> String {
    w.cf(reqwest::Method::GET, &format!("/zones?name={name}"), None)
        .await["result"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_are_healed_and_drift_is_put_back() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_SWEEP_CONFIG_CHECKS".into(), "1000".into()));
    w.spawn_function().await;
    w.seed("demo", "web", &tagged("web.example.com")).await;
    // No event ever arrived: the sweep creates it.
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 1, "{r}");
    assert_eq!(w.live_tunnels().await.len(), 1);
    assert!(w.service_tags("demo", "web").await["ecs-tunnels:status"].starts_with("ready "));

    // Converged: reads only.
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(
        (r["needed_work"].as_u64(), r["converged"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(w.writes().await, 0);

    // Hand edits in the dashboard.
    let app = w.access_apps().await.remove(0);
    let app_id = app["id"].as_str().unwrap().to_string();
    let policy = w.policies().await.remove(0);
    let policy_id = policy["id"].as_str().unwrap().to_string();
    let mut body = policy.clone();
    body["include"] = json!([{"email": {"email": "alice@example.com"}}, {"email": {"email": "mallory@evil.example"}}]);
    let r = w
        .cf(
            reqwest::Method::PUT,
            &format!("/accounts/{ACCT}/access/policies/{policy_id}"),
            Some(json!({"name": body["name"], "decision": "allow", "include": body["include"]})),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let mut app_body = json!({"name": app["name"], "type": "self_hosted", "domain": app["domain"], "destinations": app["destinations"],
        "session_duration": "720h", "tags": app["tags"], "policies": [{"id": policy_id, "precedence": 1}]});
    let r = w
        .cf(
            reqwest::Method::PUT,
            &format!("/accounts/{ACCT}/access/apps/{app_id}"),
            Some(app_body.clone()),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let tunnel = w.live_tunnels().await.remove(0);
    let tid = tunnel["id"].as_str().unwrap().to_string();
    let r = w.cf(reqwest::Method::PUT, &format!("/accounts/{ACCT}/cfd_tunnel/{tid}/configurations"), Some(json!({"config": {"ingress": [{"hostname": "web.example.com", "service": "http://evil:80"}, {"service": "http_status:404"}]}}))).await;
    assert_eq!(r["success"], true, "{r}");
    let rec = w.dns_records().await.remove(0);
    let zid = zone(&w, "example.com").await;
    let r = w
        .cf(
            reqwest::Method::PATCH,
            &format!("/zones/{zid}/dns_records/{}", rec["id"].as_str().unwrap()),
            // A DNS PATCH body carries type and name too (Cloudflare's OpenAPI document).
            Some(json!({"type": "CNAME", "name": rec["name"], "content": "elsewhere.example.net", "proxied": false})),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");

    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 1, "{r}");
    let p = w.policies().await.remove(0);
    assert_eq!(
        p["include"],
        json!([{"email": {"email": "alice@example.com"}}]),
        "allow rule added by hand removed"
    );
    let a = w.access_apps().await.remove(0);
    // 24h, in whichever form the server answers it (server shapes: Go's 24h0m0s).
    assert!(
        a["session_duration"] == "24h" || a["session_duration"] == "24h0m0s",
        "{a}"
    );
    let t = w.live_tunnels().await.remove(0);
    assert_eq!(
        t["config"]["ingress"][0]["service"], "http://localhost:8080",
        "config put back"
    );
    let d = w.dns_records().await.remove(0);
    assert_eq!(d["content"], format!("{tid}.cfargotunnel.com"));
    assert_eq!(d["proxied"], true);

    // The app deleted by hand comes back (and the config follows its new AUD).
    let r = w
        .cf(
            reqwest::Method::DELETE,
            &format!("/accounts/{ACCT}/access/apps/{app_id}"),
            None,
        )
        .await;
    assert_eq!(r["success"], true);
    app_body["session_duration"] = json!("24h");
    sweep(&w).await;
    let apps = w.access_apps().await;
    assert_eq!(apps.len(), 1);
    let t = w.live_tunnels().await.remove(0);
    assert_eq!(
        t["config"]["ingress"][0]["originRequest"]["access"]["audTag"][0],
        apps[0]["aud"]
    );
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 0, "{r}");
    assert_eq!(w.writes().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_collected_and_other_owners_untouched() {
    let mut w = World::start().await;
    w.spawn_function().await;
    for (s, h) in [
        ("gone", "gone.example.com"),
        ("untagged", "untagged.example.com"),
        ("nodns", "nodns.example.com"),
        ("notunnel", "notunnel.example.net"),
        ("keep", "keep.example.com"),
    ] {
        w.seed("demo", s, &tagged(h)).await;
    }
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 5, "{r}");

    // Someone else's objects, whatever their names.
    let zid = zone(&w, "example.com").await;
    let foreign = [
        w.cf(reqwest::Method::POST, &format!("/zones/{zid}/dns_records"), Some(json!({"type": "CNAME", "name": "other.example.com", "content": "x.cfargotunnel.com", "proxied": true, "ttl": 1, "comment": "ecs-tunnels:999999999999-eu-west-1:demo/gone"}))).await,
        w.cf(reqwest::Method::POST, &format!("/zones/{zid}/dns_records"), Some(json!({"type": "CNAME", "name": "legacy.example.com", "content": "legacy.example.net", "proxied": true, "ttl": 1}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/cfd_tunnel"), Some(json!({"name": "ecs-tunnels.999999999999-eu-west-1.demo.gone", "config_src": "cloudflare"}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/cfd_tunnel"), Some(json!({"name": "hand-made-tunnel", "config_src": "cloudflare"}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/access/apps"), Some(json!({"type": "self_hosted", "name": "demo/gone [ecs-tunnels:123456789012-us-east-1]", "domain": "lookalike.example.com"}))).await,
    ];
    for f in &foreign {
        assert_eq!(f["success"], true, "{f}");
    }

    // Events that never arrived: a deleted service, an untagged one, a record removed by
    // hand then the service deleted, a tunnel deleted by hand then the service deleted.
    w.delete_service("demo", "gone").await;
    w.remove_tags("demo", "untagged", &["ecs-tunnels:hostname"])
        .await;
    let nodns = w
        .dns_records()
        .await
        .into_iter()
        .find(|r| r["name"] == "nodns.example.com")
        .unwrap();
    w.cf(
        reqwest::Method::DELETE,
        &format!("/zones/{zid}/dns_records/{}", nodns["id"].as_str().unwrap()),
        None,
    )
    .await;
    w.delete_service("demo", "nodns").await;
    let nt = w
        .live_tunnels()
        .await
        .into_iter()
        .find(|t| t["name"].as_str().unwrap().ends_with(".notunnel"))
        .unwrap();
    let r = w
        .cf(
            reqwest::Method::DELETE,
            &format!("/accounts/{ACCT}/cfd_tunnel/{}", nt["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    w.delete_service("demo", "notunnel").await;

    let r = sweep(&w).await;
    assert!(r["orphans"].as_u64().unwrap() >= 4, "{r}");
    let names: Vec<String> = w
        .live_tunnels()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&format!("ecs-tunnels.{OWNER}.demo.keep")),
        "{names:?}"
    );
    for s in ["gone", "untagged", "nodns", "notunnel"] {
        assert!(
            !names.contains(&format!("ecs-tunnels.{OWNER}.demo.{s}")),
            "{s}: {names:?}"
        );
        assert!(
            w.token_parameter("demo", s).await.is_none(),
            "{s}: token left"
        );
    }
    assert!(
        names.contains(&"ecs-tunnels.999999999999-eu-west-1.demo.gone".to_string()),
        "another owner's tunnel untouched"
    );
    assert!(names.contains(&"hand-made-tunnel".to_string()));
    let records: Vec<String> = w
        .dns_records()
        .await
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = records.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "keep.example.com",
            "legacy.example.com",
            "other.example.com"
        ],
        "{records:?}"
    );
    let apps: Vec<String> = w
        .access_apps()
        .await
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        apps.contains(&"demo/gone [ecs-tunnels:123456789012-us-east-1]".to_string()),
        "an app without our Access tag is not ours: {apps:?}"
    );
    assert_eq!(apps.len(), 2, "{apps:?}");
    assert_eq!(w.policies().await.len(), 1, "only keep's policy remains");
    assert!(!w
        .service_tags("demo", "untagged")
        .await
        .contains_key("ecs-tunnels:status"));

    // Converged afterwards.
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 0, "{r}");
    assert_eq!(w.writes().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_over_budget_or_rate_limited_continues_next_time() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_SWEEP_MAX_CALLS".into(), "20".into()));
    w.spawn_function().await;
    let hosts = [
        "s0.example.com",
        "s1.example.com",
        "s2.example.com",
        "s3.example.com",
        "s4.example.com",
        "s5.example.com",
    ];
    for (i, h) in hosts.iter().enumerate() {
        w.seed("demo", &format!("s{i}"), &tagged(h)).await;
    }
    let first = sweep(&w).await;
    assert_eq!(first["complete"], false, "{first}");
    assert!(first["remaining"].as_u64().unwrap() > 0);
    let mut rounds = 1;
    loop {
        let r = sweep(&w).await;
        rounds += 1;
        if r["complete"] == true && r["needed_work"] == 0 {
            break;
        }
        assert!(rounds < 10, "no progress: {r}");
    }
    assert_eq!(w.live_tunnels().await.len(), hosts.len());

    // A 429 with a long Retry-After stops the sweep cleanly; the next one finishes.
    w.seed("demo", "late", &tagged("late.example.com")).await;
    w.fault(json!({"method": "POST", "path_contains": "/cfd_tunnel", "status": 429, "retry_after": 300, "count": 1})).await;
    let r = sweep(&w).await;
    assert_eq!(
        r["complete"], true,
        "one service, handled (as pending): {r}"
    );
    assert!(
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("demo/late")),
        "{r}"
    );
    let r = sweep(&w).await;
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(w.live_tunnels().await.len(), hosts.len() + 1);
}

/// Deletes a cluster directly in moto (no event reaches ecs-tunnels).
async fn delete_cluster(w: &World, cluster: &str) {
    aws_sdk_ecs::Client::new(&w.sdk)
        .delete_cluster()
        .cluster(cluster)
        .send()
        .await
        .expect("delete cluster");
}

/// Which of ecs-tunnels' objects exist for one service: tunnel, dns, app, policy, token.
async fn objects_of(w: &World, cluster: &str, service: &str) -> Vec<&'static str> {
    let key = format!("{cluster}/{service}");
    let mut found = vec![];
    let tunnel = format!("ecs-tunnels.{OWNER}.{cluster}.{service}");
    if w.live_tunnels().await.iter().any(|t| t["name"] == tunnel) {
        found.push("tunnel");
    }
    let comment = format!("ecs-tunnels:{OWNER}:{key}");
    if w.dns_records()
        .await
        .iter()
        .any(|r| r["comment"] == comment)
    {
        found.push("dns");
    }
    let app = format!("{key} [ecs-tunnels:{OWNER}]");
    let tag = json!(format!("ecs-tunnels-{OWNER}"));
    if w.access_apps()
        .await
        .iter()
        .any(|a| a["name"] == app && a["tags"].as_array().is_some_and(|t| t.contains(&tag)))
    {
        found.push("app");
    }
    let policy = format!("{key} allow [ecs-tunnels:{OWNER}]");
    if w.policies().await.iter().any(|p| p["name"] == policy) {
        found.push("policy");
    }
    if w.token_parameter(cluster, service).await.is_some() {
        found.push("token");
    }
    found
}

const EVERYTHING: [&str; 5] = ["tunnel", "dns", "app", "policy", "token"];

/// Another owner's objects for `cluster/service`, and an app that has our name but not
/// our Access tag: none of them is ours. Returns their ids.
async fn foreign_lookalikes(w: &World, cluster: &str, service: &str) -> Vec<String> {
    let other = "999999999999-eu-west-1";
    let zid = zone(w, "example.com").await;
    let made = [
        w.cf(reqwest::Method::POST, &format!("/zones/{zid}/dns_records"), Some(json!({"type": "CNAME", "name": format!("{service}-other.example.com"), "content": "x.cfargotunnel.com", "proxied": true, "ttl": 1, "comment": format!("ecs-tunnels:{other}:{cluster}/{service}")}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/cfd_tunnel"), Some(json!({"name": format!("ecs-tunnels.{other}.{cluster}.{service}"), "config_src": "cloudflare"}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/access/apps"), Some(json!({"type": "self_hosted", "name": format!("{cluster}/{service} [ecs-tunnels:{OWNER}]"), "domain": format!("{service}-lookalike.example.com")}))).await,
        w.cf(reqwest::Method::POST, &format!("/accounts/{ACCT}/access/policies"), Some(json!({"name": format!("{cluster}/{service} allow [ecs-tunnels:{other}]"), "decision": "allow", "include": [{"email": {"email": "bob@example.com"}}]}))).await,
    ];
    made.iter()
        .map(|m| {
            assert_eq!(m["success"], true, "{m}");
            m["result"]["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Ids of every object in the simulator (tunnels live or not, records, apps, policies).
async fn all_ids(w: &World) -> Vec<String> {
    let st = w.state().await;
    let mut ids = vec![];
    for (kind, live_only) in [
        ("tunnels", true),
        ("dns_records", false),
        ("access_apps", false),
        ("access_policies", false),
    ] {
        for o in st[kind].as_array().cloned().unwrap_or_default() {
            if !live_only || o["deleted_at"].is_null() {
                ids.push(o["id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    ids
}

async fn expose_by_event(w: &World, cluster: &str, service: &str, host: &'static str) {
    w.seed(cluster, service, &tagged(host)).await;
    w.invoke_ok(tag_event(cluster, service, &tagged(host)))
        .await;
    assert!(
        w.service_tags(cluster, service).await["ecs-tunnels:status"].starts_with("ready "),
        "{}",
        w.output()
    );
    assert_eq!(objects_of(w, cluster, service).await, EVERYTHING);
}

/// A service exposed by an event; then the service and its whole cluster are deleted
/// directly (no event). One sweep collects everything of ours and nothing of anyone else.
async fn a_deleted_cluster_is_collected(clusters: Option<&str>) {
    let mut w = World::start().await;
    if let Some(c) = clusters {
        w.extra_env
            .push(("ECS_TUNNELS_CLUSTERS".into(), c.to_string()));
    }
    w.spawn_function().await;
    expose_by_event(&w, "doomed", "web", "doomed.example.com").await;
    expose_by_event(&w, "demo", "keep", "keep.example.com").await;
    let foreign = foreign_lookalikes(&w, "doomed", "web").await;

    w.delete_service("doomed", "web").await;
    delete_cluster(&w, "doomed").await;
    let r = sweep(&w).await;
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["orphans"], 1, "{r}");
    assert_eq!(
        objects_of(&w, "doomed", "web").await,
        Vec::<&str>::new(),
        "{r}"
    );
    assert_eq!(objects_of(&w, "demo", "keep").await, EVERYTHING);
    let ids = all_ids(&w).await;
    for id in &foreign {
        assert!(ids.contains(id), "another owner's object {id} was deleted");
    }

    // Converged afterwards: nothing left to collect, no write.
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(
        (&r["orphans"], &r["needed_work"], &r["errors"]),
        (&json!(0), &json!(0), &json!([])),
        "{r}"
    );
    assert_eq!(w.writes().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cluster_is_collected_when_every_cluster_is_covered() {
    a_deleted_cluster_is_collected(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cluster_named_in_ecs_tunnels_clusters_is_collected() {
    a_deleted_cluster_is_collected(Some("doomed demo")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_fails_to_list_is_skipped_not_collected() {
    let mut w = World::start().await;
    w.spawn_function().await;
    expose_by_event(&w, "steady", "web", "steady.example.com").await;
    let before = all_ids(&w).await;
    // Every attempt the SDK makes fails (then the faults are dropped).
    for (operation, named) in [
        ("ecs:ListClusters", "ecs:ListClusters"),
        ("ecs:ListServices", "steady"),
        ("ecs:DescribeServices", "steady"),
    ] {
        w.reset_requests().await;
        w.aws
            .inject(Fault::new(operation, "ThrottlingException", "Rate exceeded").times(10));
        let r = sweep(&w).await;
        w.aws.clear_faults();
        let errors = r["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| {
                let e = e.as_str().unwrap();
                e.contains(named) && e.contains(operation) && e.contains("Rate exceeded")
            }),
            "{operation}: the report says why: {r}"
        );
        assert_eq!(r["orphans"], 0, "{operation}: {r}");
        assert_eq!(r["complete"], false, "{operation}: {r}");
        assert_eq!(w.writes().await, 0, "{operation}: {r}");
        assert_eq!(all_ids(&w).await, before, "{operation}: {r}");
        assert_eq!(objects_of(&w, "steady", "web").await, EVERYTHING);
    }
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(
        (
            &r["errors"],
            &r["needed_work"],
            &r["converged"],
            &r["complete"]
        ),
        (&json!([]), &json!(0), &json!(1), &json!(true)),
        "{r}"
    );
    assert_eq!(w.writes().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_tags_removed_without_an_event_are_torn_down() {
    let mut w = World::start().await;
    w.spawn_function().await;
    expose_by_event(&w, "demo", "web", "web.example.com").await;
    // A tool rewrote the tag set whole; the untag event was lost.
    w.remove_tags(
        "demo",
        "web",
        &["ecs-tunnels:hostname", "ecs-tunnels:status"],
    )
    .await;
    let r = sweep(&w).await;
    assert_eq!(r["orphans"], 1, "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(
        objects_of(&w, "demo", "web").await,
        Vec::<&str>::new(),
        "{r}"
    );

    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(
        (&r["orphans"], &r["needed_work"]),
        (&json!(0), &json!(0)),
        "{r}"
    );
    assert_eq!(w.writes().await, 0);
}

/// Waits until the running sweep has its tunnel list answered and both of its DNS lists
/// (one per zone) held by the latency fault.
async fn wait_until_the_sweep_holds_its_dns_lists(w: &World) {
    for _ in 0..200 {
        let faults = w.hook(reqwest::Method::GET, "/faults", None).await;
        let listed_tunnels = w.requests().await["log"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .any(|e| {
                e["method"] == "GET"
                    && e["path"].as_str().unwrap_or("").ends_with("/cfd_tunnel")
                    && e["query"].as_str().unwrap_or("").contains("include_prefix")
            });
        if listed_tunnels && faults["faults"] == json!([]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the sweep never reached its DNS lists: {}", w.output());
}

/// The sweep lists ECS and tunnels; then (while its DNS lists are held) a service is
/// tagged and another function process exposes it. Its tunnel is not in the sweep's
/// tunnel list but its record is in the DNS list: the record is live and must stay.
async fn race_an_event_against_the_sweep(w: &World, service: &str, host: &'static str) {
    w.seed("demo", service, &[]).await;
    w.reset_requests().await;
    w.fault(
        json!({"method": "GET", "path_contains": "dns_records", "latency_ms": 5000, "count": 2}),
    )
    .await;
    let swept = AtomicBool::new(false);
    let (r, record) = tokio::join!(
        async {
            let r = sweep(w).await;
            swept.store(true, Ordering::SeqCst);
            r
        },
        async {
            wait_until_the_sweep_holds_its_dns_lists(w).await;
            w.set_tags("demo", service, &tagged(host)).await;
            w.invoke_ok(tag_event("demo", service, &tagged(host))).await;
            assert!(
                !swept.load(Ordering::SeqCst),
                "the event must finish while the sweep's DNS lists are held"
            );
            let record = w
                .dns_records()
                .await
                .into_iter()
                .find(|r| r["name"] == host)
                .expect("the event created the record");
            record["id"].as_str().unwrap().to_string()
        }
    );
    let records: Vec<Value> = w
        .dns_records()
        .await
        .into_iter()
        .filter(|r| r["name"] == host)
        .collect();
    assert_eq!(records.len(), 1, "{records:?}\n{r}");
    assert_eq!(
        records[0]["id"],
        record.as_str(),
        "the live record was deleted: {r}"
    );
    assert!(r["changes"].get("delete_dns").is_none(), "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(
        r["orphans"], 0,
        "a service tagged during the sweep is no orphan: {r}"
    );
    assert!(
        w.service_tags("demo", service).await["ecs-tunnels:status"].starts_with("ready "),
        "{}",
        w.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_created_during_the_sweep_is_left_alone() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.spawn_function().await;
    race_an_event_against_the_sweep(&w, "fresh", "fresh.example.com").await;
    // A long name: the record's comment is hashed, so only its tunnel tells whose it is.
    let long = format!("fresh-{}", "x".repeat(60));
    race_an_event_against_the_sweep(&w, &long, "long.example.com").await;
    assert!(
        w.output()
            .contains("DNS record left: its tunnel is younger than the tunnel list"),
        "the sweep looked the record's tunnel up before deciding: {}",
        w.output()
    );
    // Converged afterwards.
    w.reset_requests().await;
    let r = sweep(&w).await;
    assert_eq!(
        (&r["needed_work"], &r["orphans"]),
        (&json!(0), &json!(0)),
        "{r}"
    );
    assert_eq!(w.writes().await, 0);
}

/// demo/web exposed by an event; its tunnel id.
async fn demo_web_exposed() -> (World, String) {
    let mut w = World::start().await;
    w.spawn_function().await;
    expose_by_event(&w, "demo", "web", "web.example.com").await;
    let tid = w.live_tunnels().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (w, tid)
}

/// A tunnel secret changed outside ecs-tunnels (no rotation mark of ours): task events
/// trust the status digest and cost no Cloudflare call, so the sweep finds it when the
/// service's configuration is in its slice, and repairs the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_changed_out_of_band_is_found_by_the_sweep() {
    let (w, tid) = demo_web_exposed().await;
    // Same account and tunnel, another secret: nothing but Cloudflare can tell.
    let stale =
        ecs_tunnels::token::encode_token(ACCT, &tid, &ecs_tunnels::token::new_tunnel_secret());
    w.overwrite_token("/ecs-tunnels/demo/web/token", &stale)
        .await;
    w.reset_requests().await;
    let r = w.invoke_ok(task_event("demo", "web", true)).await;
    assert_eq!(r["outcomes"][0]["state"], "ready", "{r}");
    assert_eq!(
        w.requests().await["total"],
        0,
        "a routine event trusts the digest"
    );

    let report = sweep(&w).await;
    assert_eq!(report["needed_work"], 1, "{report}");
    assert_eq!(report["changes"]["write_token"], 1, "{report}");
    let (token, _) = w.token_parameter("demo", "web").await.unwrap();
    assert!(w.token_connects(&token).await, "the token was repaired");
    let again = sweep(&w).await;
    assert_eq!(again["needed_work"], 0, "{again}");
}

/// A converged service whose status an older version wrote (`ready <tunnel-id>`, no
/// digest): the sweep checks it against Cloudflare and rewrites the status alone (no
/// Cloudflare write, no reconcile); from then on its task events cost no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_without_a_digest_is_refreshed_by_the_sweep_alone() {
    let (w, tid) = demo_web_exposed().await;
    w.set_tags(
        "demo",
        "web",
        &[("ecs-tunnels:status", &format!("ready {tid}"))],
    )
    .await;
    w.reset_requests().await;
    let r = w.invoke_ok(task_event("demo", "web", true)).await;
    assert_eq!(r["outcomes"][0]["state"], "ready", "{r}");
    assert!(
        w.requests().await["total"].as_u64().unwrap() > 0,
        "no digest: the full path"
    );
    w.set_tags(
        "demo",
        "web",
        &[("ecs-tunnels:status", &format!("ready {tid}"))],
    )
    .await;

    let report = sweep(&w).await;
    assert_eq!(report["needed_work"], 0, "{report}");
    assert_eq!(report["statuses_refreshed"], 1, "{report}");
    assert_eq!(report["cloudflare_writes"], 0, "{report}");
    let status = w.service_tags("demo", "web").await["ecs-tunnels:status"].clone();
    assert!(
        status.starts_with(&format!("ready {tid} 0 connectors digest:")),
        "{status}"
    );
    w.reset_requests().await;
    w.invoke_ok(task_event("demo", "web", true)).await;
    assert_eq!(w.requests().await["total"], 0);
}

/// Removes the tunnel-id tag from a token parameter, as every token written before that
/// tag existed lacks it.
async fn untag_tunnel_id(w: &World, cluster: &str, service: &str) {
    aws_sdk_ssm::Client::new(&w.sdk)
        .remove_tags_from_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(format!("/ecs-tunnels/{cluster}/{service}/token"))
        .tag_keys("ecs-tunnels:tunnel-id")
        .send()
        .await
        .expect("untag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_sweep_reads_tags_and_only_the_tokens_it_verifies() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_SWEEP_CONFIG_CHECKS".into(), "1".into()));
    w.spawn_function().await;
    for (s, host) in [
        ("a", "a.example.com"),
        ("b", "b.example.com"),
        ("c", "c.example.com"),
    ] {
        w.seed("demo", s, &tagged(host)).await;
    }
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 3, "{r}");
    // Each token carries the tunnel it is for.
    for t in w.live_tunnels().await {
        let svc = t["name"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .to_string();
        let tags = w.token_parameter_tags("demo", &svc).await;
        assert_eq!(
            tags.get("ecs-tunnels:tunnel-id").map(String::as_str),
            t["id"].as_str(),
            "{svc}: {tags:?}"
        );
    }

    w.aws.clear_calls();
    let r = sweep(&w).await;
    assert_eq!(
        (r["needed_work"].as_u64(), r["converged"].as_u64()),
        (Some(0), Some(3)),
        "{r}"
    );
    w.assert_only_verified_tokens_read(&r);
    let calls = w.function_aws_calls();
    assert_eq!(
        calls.get("tag:GetResources"),
        Some(&1),
        "the tokens are listed with their tags in one page: {calls:?}"
    );
    assert!(
        calls
            .keys()
            .all(|op| !op.starts_with("ssm:") || op == "ssm:GetParameters"),
        "no other SSM call: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_its_tunnel_id_tag_is_read_and_tagged_on_its_next_write() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_SWEEP_CONFIG_CHECKS".into(), "1".into()));
    w.spawn_function().await;
    w.seed("demo", "old", &tagged("old.example.com")).await;
    w.seed("demo", "new", &tagged("new.example.com")).await;
    sweep(&w).await;
    untag_tunnel_id(&w, "demo", "old").await;

    // Written before the tag existed: read (that one alone), and still converged.
    w.aws.clear_calls();
    let r = sweep(&w).await;
    assert_eq!(
        (r["needed_work"].as_u64(), r["converged"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    let reads = w.token_value_reads();
    assert!(
        reads.contains(&"ssm:GetParameters /ecs-tunnels/demo/old/token".to_string()),
        "{reads:?}"
    );
    assert!(
        reads.len() as u64 <= 1 + r["configs_checked"].as_u64().unwrap(),
        "the untagged one, and the slice's: {reads:?}"
    );

    // Its value is what the sweep judges: a token for another tunnel is rewritten, and
    // the write tags it.
    w.make_token_stale(
        "/ecs-tunnels/demo/old/token",
        "00000000-0000-4000-8000-000000000000",
    )
    .await;
    let r = sweep(&w).await;
    assert_eq!(r["needed_work"], 1, "{r}");
    let tid = w
        .live_tunnels()
        .await
        .into_iter()
        .find(|t| t["name"].as_str().unwrap().ends_with(".old"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tags = w.token_parameter_tags("demo", "old").await;
    assert_eq!(
        tags.get("ecs-tunnels:tunnel-id"),
        Some(&tid),
        "tagged by its write: {tags:?}"
    );
    let (token, _) = w.token_parameter("demo", "old").await.unwrap();
    assert!(w.token_connects(&token).await, "the rewritten token works");

    w.aws.clear_calls();
    let r = sweep(&w).await;
    assert_eq!(r["converged"], 2, "{r}");
    w.assert_only_verified_tokens_read(&r);
}
