//! The sweep, through the Lambda door (scheduled event) against moto and the simulator:
//! missed events healed, drift put back, orphans collected, other owners untouched, a
//! converged account costs a few reads and no write, and an unfinished sweep continues.

mod common;
use common::*;
use serde_json::{json, Value};

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
        .push(("ECS_TUNNELS_SWEEP_MAX_CALLS".into(), "40".into()));
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
