//! The Cloudflare API budget of each per-service operation, through the built binary's
//! Lambda door against moto and the simulator, with every list paged small: a create
//! (warm process), a converged service's task, tag and CloudTrail service events, and a
//! teardown. Each count must meet its target and be the same in an empty account and in
//! one crowded with Access applications, reusable policies, zones and DNS records that
//! are not ours (nothing is read by scanning the account).

mod common;
use common::*;
use devtools::cloudflare_sim::SimOptions;
use serde_json::{json, Value};

const ACCT: &str = "0123456789abcdef0123456789abcdef";

/// Calls and writes of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cost {
    calls: u64,
    writes: u64,
}

/// What each operation cost.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Costs {
    create: Cost,
    task_event: Cost,
    tag_event: Cost,
    service_event: Cost,
    teardown: Cost,
}

fn zones() -> Vec<String> {
    let mut z = vec!["example.com".to_string(), "example.net".to_string()];
    z.extend((0..8).map(|i| format!("crowd{i}.example.org")));
    z
}

/// Objects that are not ours: applications (some at other hosts of our zone), reusable
/// policies, and DNS records spread over every zone.
async fn crowd(w: &World, n: usize) {
    let zones: Vec<(String, String)> = w.cf(reqwest::Method::GET, "/zones?per_page=50", None).await
        ["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["id"].as_str().unwrap().to_string(),
                z["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for i in 0..n {
        let p = w
            .cf(
                reqwest::Method::POST,
                &format!("/accounts/{ACCT}/access/policies"),
                Some(json!({"name": format!("team policy {i}"), "decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}]})),
            )
            .await;
        assert_eq!(p["success"], true, "{p}");
        let a = w
            .cf(
                reqwest::Method::POST,
                &format!("/accounts/{ACCT}/access/apps"),
                Some(json!({"name": format!("team app {i}"), "type": "self_hosted", "domain": format!("app{i}.example.com"),
                            "policies": [{"id": p["result"]["id"], "precedence": 1}]})),
            )
            .await;
        assert_eq!(a["success"], true, "{a}");
        for (z, name) in &zones {
            let r = w
                .cf(
                    reqwest::Method::POST,
                    &format!("/zones/{z}/dns_records"),
                    Some(json!({"type": "A", "name": format!("host{i}.{name}"), "content": "192.0.2.1", "ttl": 1, "proxied": false})),
                )
                .await;
            assert_eq!(r["success"], true, "{r}");
        }
    }
}

async fn cost_of(w: &World, event: Value) -> (Cost, Value) {
    w.reset_requests().await;
    let resp = w.invoke_ok(event).await;
    let r = w.requests().await;
    let cost = Cost {
        calls: r["total"].as_u64().unwrap(),
        writes: r["writes"].as_u64().unwrap(),
    };
    (cost, resp)
}

async fn measure(crowded: bool) -> Costs {
    let mut w = World::start_with(SimOptions {
        server_shapes: true,
        page_cap: Some(5),
        zones: zones(),
        ..SimOptions::default()
    })
    .await;
    if crowded {
        crowd(&w, 30).await;
    }
    w.spawn_function().await;
    // Cold start (zones, organization, the Access tag) on another service first.
    w.seed("demo", "first", &exposed("first.example.com")).await;
    let first = w.invoke_ok(task_event("demo", "first", false)).await;
    assert_eq!(first["outcomes"][0]["state"], "ready", "{first}");

    w.seed("demo", "web", &exposed("web.example.com")).await;
    let (create, resp) = cost_of(&w, task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let (task_event_cost, resp) = cost_of(&w, task_event("demo", "web", true)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    // Our tags did not change: the tag event of an unrelated value of ours.
    let (tag_event_cost, resp) = cost_of(
        &w,
        tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:hostname", "web.example.com")],
        ),
    )
    .await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    let mut update = sample("cloudtrail-update-service.json");
    update["detail"]["requestParameters"] =
        json!({"cluster": "demo", "service": "web", "taskDefinition": "web"});
    let (service_event, resp) = cost_of(&w, update).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");

    w.remove_tags(
        "demo",
        "web",
        &["ecs-tunnels:hostname", "ecs-tunnels:allow-email-domains"],
    )
    .await;
    let (teardown, resp) = cost_of(
        &w,
        untag_event(
            "demo",
            "web",
            &["ecs-tunnels:hostname", "ecs-tunnels:allow-email-domains"],
        ),
    )
    .await;
    assert_eq!(resp["outcomes"][0]["state"], "removed", "{resp}");
    assert!(
        w.access_apps()
            .await
            .iter()
            .all(|a| !a["name"].as_str().unwrap().starts_with("demo/web ")),
        "the app is gone"
    );
    Costs {
        create,
        task_event: task_event_cost,
        tag_event: tag_event_cost,
        service_event,
        teardown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_meets_its_budget_whatever_the_account_holds() {
    let empty = measure(false).await;
    println!("empty account: {empty:?}");
    let c = &empty;
    assert!(
        c.create.calls <= 9 && c.create.writes <= 5,
        "create: {:?}",
        c.create
    );
    assert_eq!(c.task_event.calls, 0, "a task event of a converged service");
    assert!(
        c.tag_event.calls <= 4 && c.tag_event.writes == 0,
        "tag event: {:?}",
        c.tag_event
    );
    assert!(
        c.service_event.calls <= 4 && c.service_event.writes == 0,
        "service event: {:?}",
        c.service_event
    );
    assert!(c.teardown.calls <= 9, "teardown: {:?}", c.teardown);

    let crowded = measure(true).await;
    println!("crowded account: {crowded:?}");
    assert_eq!(
        crowded, empty,
        "the counts grow with objects that are not ours"
    );
}
