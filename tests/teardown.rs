//! Teardown that does not stop at the first failure, a policy create that is not
//! duplicated by a retry, and a DNS repair that keeps what a user added to our record.
//! Every case goes through the built binary's Lambda door against moto and the simulator.

mod common;
use common::*;
use serde_json::{json, Value};

const ACCOUNT_PATH: &str = "/accounts/0123456789abcdef0123456789abcdef";

fn allow_emails(host: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ecs-tunnels:hostname", host),
        ("ecs-tunnels:allow-emails", "alice@example.com"),
    ]
}

fn our_policy_name(service: &str) -> String {
    format!("demo/{service} allow [ecs-tunnels:{OWNER}]")
}

/// Requests in the simulator's log since the last reset, as `(method, path, status)`.
async fn log(w: &World) -> Vec<(String, String, u64)> {
    w.requests().await["log"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or("").to_string(),
                r["path"].as_str().unwrap_or("").to_string(),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn failed_calls(w: &World) -> Vec<(String, String, u64)> {
    log(w).await.into_iter().filter(|r| r.2 >= 400).collect()
}

/// Someone links `policy_id` to an Access application of their own; returns its id.
async fn link_to_a_hand_made_app(w: &World, policy_id: &str) -> String {
    let foreign = w
        .cf(
            reqwest::Method::POST,
            &format!("{ACCOUNT_PATH}/access/apps"),
            Some(json!({"type": "self_hosted", "name": "wiki (hand made)", "domain": "wiki.example.com",
                "destinations": [{"type": "public", "uri": "wiki.example.com"}],
                "policies": [{"id": policy_id, "precedence": 1}]})),
        )
        .await;
    assert_eq!(foreign["success"], true, "{foreign}");
    foreign["result"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_another_app_uses_is_kept_and_everything_else_is_torn_down() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &allow_emails("web.example.com"))
        .await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let policies = w.policies().await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    let policy_id = policies[0]["id"].as_str().unwrap().to_string();
    assert_eq!(policies[0]["name"], our_policy_name("web"));

    // Someone links our policy to an application of their own.
    let foreign_id = link_to_a_hand_made_app(&w, &policy_id).await;

    w.remove_tags(
        "demo",
        "web",
        &["ecs-tunnels:hostname", "ecs-tunnels:allow-emails"],
    )
    .await;
    let resp = w
        .invoke_ok(untag_event(
            "demo",
            "web",
            &["ecs-tunnels:hostname", "ecs-tunnels:allow-emails"],
        ))
        .await;
    let outcome = &resp["outcomes"][0];
    assert_eq!(outcome["state"], "removed", "{resp}\n{}", w.output());
    let kept = outcome["kept_policies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(kept.len(), 1, "the kept policy is reported: {outcome}");
    assert_eq!(kept[0]["id"], policy_id.as_str(), "{outcome}");
    assert!(
        kept[0]["used_by"].to_string().contains("wiki (hand made)"),
        "{outcome}"
    );
    assert!(
        w.output().lines().any(|l| l.contains("WARN")
            && l.contains(&policy_id)
            && l.contains("wiki (hand made)")),
        "a warning names the policy and the app using it:\n{}",
        w.output()
    );

    assert!(w.live_tunnels().await.is_empty(), "the tunnel is deleted");
    assert!(
        w.dns_records().await.is_empty(),
        "the DNS record is deleted"
    );
    let apps = w.access_apps().await;
    assert_eq!(apps.len(), 1, "only the foreign app is left: {apps:?}");
    assert_eq!(apps[0]["id"], foreign_id.as_str());
    assert_eq!(apps[0]["policies"][0]["id"], policy_id.as_str());
    assert!(w.token_parameter("demo", "web").await.is_none(), "token");
    let policies = w.policies().await;
    assert_eq!(policies.len(), 1, "the policy is kept: {policies:?}");
    assert_eq!(policies[0]["id"], policy_id.as_str());

    // The next event and the next sweep leave it alone, without a failing call.
    w.reset_requests().await;
    let again = w
        .invoke_ok(untag_event("demo", "web", &["ecs-tunnels:hostname"]))
        .await;
    assert_ne!(again["outcomes"][0]["state"], "pending", "{again}");
    let sweep = w.invoke_ok(json!({"ecs-tunnels": "sweep"})).await;
    assert_eq!(failed_calls(&w).await, vec![], "{sweep}");
    assert_eq!(w.writes().await, 0, "{sweep}");
    assert_eq!(w.policies().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_access_delete_does_not_stop_the_tunnel_teardown() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &allow_emails("web.example.com"))
        .await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");

    w.fault(
        json!({"method": "DELETE", "path_contains": "/access/apps/", "status": 500, "count": 1000}),
    )
    .await;
    w.remove_tags(
        "demo",
        "web",
        &["ecs-tunnels:hostname", "ecs-tunnels:allow-emails"],
    )
    .await;
    let event = untag_event(
        "demo",
        "web",
        &["ecs-tunnels:hostname", "ecs-tunnels:allow-emails"],
    );
    let failed = w.invoke(event.clone()).await;
    assert!(
        failed.outcome.is_error(),
        "a persistent 500 must fail the invocation so Lambda retries: {:?}",
        failed.outcome
    );
    assert!(
        w.dns_records().await.is_empty(),
        "the DNS record goes first"
    );
    assert!(
        w.live_tunnels().await.is_empty(),
        "the tunnel chain does not wait for the Access chain"
    );
    assert!(w.token_parameter("demo", "web").await.is_none(), "token");
    assert_eq!(w.access_apps().await.len(), 1, "the app delete failed");
    assert_eq!(w.policies().await.len(), 1, "the policy waits for its app");

    w.clear_faults().await;
    let ok = w.invoke_ok(event).await;
    assert_eq!(ok["outcomes"][0]["state"], "removed", "{ok}");
    assert!(w.access_apps().await.is_empty());
    assert!(w.policies().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_create_that_committed_before_a_5xx_is_adopted_not_duplicated() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &allow_emails("web.example.com"))
        .await;
    w.fault(json!({"method": "POST", "path_contains": "/access/policies", "status": 500, "commit": true, "count": 1}))
        .await;
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );

    let policies = w.policies().await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0]["name"], our_policy_name("web"));
    let log = log(&w).await;
    let posts: Vec<_> = log
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/access/policies"))
        .collect();
    assert_eq!(posts.len(), 1, "one create, adopted after the 500: {log:?}");
    assert!(
        !log.iter()
            .any(|(m, p, _)| m == "DELETE" && p.contains("/access/policies")),
        "no duplicate to delete: {log:?}"
    );
    let apps = w.access_apps().await;
    assert_eq!(apps[0]["policies"][0]["id"], policies[0]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_repair_keeps_what_a_user_added_to_our_record() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let record = w.dns_records().await.remove(0);
    let zone = record["zone_id"].as_str().unwrap().to_string();
    let id = record["id"].as_str().unwrap().to_string();
    let good_content = record["content"].clone();
    let comment = record["comment"].clone();
    let path = format!("/zones/{zone}/dns_records/{id}");

    // A user labels our record, then someone breaks it. (The 2024 OpenAPI document
    // requires type, name and content in every PATCH body.)
    let labelled = w
        .cf(
            reqwest::Method::PATCH,
            &path,
            Some(
                json!({"type": "CNAME", "name": "web.example.com", "content": good_content,
                "tags": ["team:web"], "settings": {"ipv6_only": true}}),
            ),
        )
        .await;
    assert_eq!(labelled["success"], true, "{labelled}");
    let broken = w
        .cf(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"type": "CNAME", "name": "web.example.com",
                "content": "elsewhere.example.net", "proxied": false, "ttl": 300})),
        )
        .await;
    assert_eq!(broken["success"], true, "{broken}");

    // A tag event takes the full path (a routine task event trusts the status digest,
    // and leaves drift to the sweep).
    w.reset_requests().await;
    let resp = w
        .invoke_ok(tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:hostname", "web.example.com")],
        ))
        .await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert!(
        resp["outcomes"][0]["applied"]
            .to_string()
            .contains("update_dns"),
        "{resp}"
    );
    let records: Vec<Value> = w.dns_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["content"], good_content, "repaired: {r}");
    assert_eq!(r["proxied"], true, "{r}");
    assert_eq!(r["comment"], comment, "{r}");
    assert_eq!(r["tags"], json!(["team:web"]), "the user's tags stay: {r}");
    assert_eq!(
        r["settings"]["ipv6_only"], true,
        "the user's settings stay: {r}"
    );
    let log = log(&w).await;
    assert!(
        !log.iter()
            .any(|(m, p, _)| m == "PUT" && p.contains("/dns_records/")),
        "no full overwrite of the record: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_no_longer_wanted_but_used_elsewhere_is_detached_and_kept() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &allow_emails("web.example.com"))
        .await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let policy_id = w.policies().await[0]["id"].as_str().unwrap().to_string();
    link_to_a_hand_made_app(&w, &policy_id).await;

    // The service goes public: our app and our policy are no longer wanted.
    w.remove_tags("demo", "web", &["ecs-tunnels:allow-emails"])
        .await;
    w.set_tags("demo", "web", &[("ecs-tunnels:access", "public")])
        .await;
    let resp = w
        .invoke_ok(tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:access", "public")],
        ))
        .await;
    let outcome = &resp["outcomes"][0];
    assert_eq!(outcome["state"], "ready", "{resp}\n{}", w.output());
    assert_eq!(
        outcome["kept_policies"][0]["id"],
        policy_id.as_str(),
        "{outcome}"
    );
    let apps = w.access_apps().await;
    assert_eq!(apps.len(), 1, "our app is gone, theirs stays: {apps:?}");
    assert_eq!(apps[0]["name"], "wiki (hand made)");
    assert_eq!(w.policies().await.len(), 1, "the policy is kept");

    w.reset_requests().await;
    let again = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(again["outcomes"][0]["state"], "ready", "{again}");
    assert_eq!(failed_calls(&w).await, vec![], "{again}");
    assert_eq!(w.writes().await, 0, "{again}");
}
