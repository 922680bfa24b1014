//! The Cloudflare API budget under a storm: many services tagged at once, then their task
//! events, delivered through the event door exactly as `infra/template.yaml` wires it
//! (SQS batches of its `BatchSize`, at most `MaximumConcurrency` function processes at
//! once, partial batch responses), while the simulator enforces Cloudflare's rate limit
//! and answers 429 (blocking the token for a window) to whoever goes over. The function
//! processes run with the template's share and concurrency for the event function.

mod common;
use common::*;
use devtools::cloudflare_sim::{RateLimit, SimOptions};
use devtools::iam::{self, ResolvedTemplate};
use devtools::storm::{emf_total, tag_event, EventDoor, Storm};
use ecs_tunnels::cloudflare::Budget;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Services tagged at once.
const SERVICES: usize = 30;
/// The simulator's limit: Cloudflare's 1,200 requests per 5 minutes (4 a second) with the
/// clock running 5 times faster, counted over a window 30 times shorter, so a burst cannot
/// hide in a long window: 200 requests per 10 s. At Cloudflare's own pace the storm would
/// take over 3 minutes (about 27 calls a service today).
const LIMIT: u32 = 200;
const WINDOW_SECS: u64 = 10;
/// How much faster than Cloudflare's the simulator's limit runs (20 a second against 4):
/// the template's timeouts and batching window are divided by it too.
const SPEEDUP: f64 = (LIMIT as f64 / WINDOW_SECS as f64) / (1200.0 / 300.0);

fn template_with(overrides: &[(&str, &str)]) -> ResolvedTemplate {
    let t = iam::expanded_template().expect("expand infra/template.yaml (scripts/setup-python.sh)");
    let mut params = iam::readme_parameters();
    for (k, v) in overrides {
        params.insert(k.to_string(), v.to_string());
    }
    ResolvedTemplate::resolve(&t, &params).expect("resolve the template")
}

/// The template's arithmetic: every function's processes at their maximum concurrency,
/// each at its share, stay inside the account's budget, and the event function's
/// processes are as many as the event source may run at once.
#[test]
fn the_template_splits_the_budget_between_its_functions() {
    for (budget, events) in [
        ("1200", "2"),
        ("1200", "10"),
        ("120", "10"),
        ("100000", "2"),
    ] {
        let t = template_with(&[
            ("CloudflareApiBudget", budget),
            ("EventsConcurrency", events),
        ]);
        let door = EventDoor::from_template(&t).expect("the event door");
        assert_eq!(door.function, "EventsFunction");
        assert_eq!(door.max_concurrency.to_string(), events);
        let mut shares = 0;
        let mut worst_case = 0;
        for (id, f) in &t.functions {
            let env = &f.environment;
            assert_eq!(env["ECS_TUNNELS_API_BUDGET"], budget, "{id}");
            assert_eq!(env["ECS_TUNNELS_API_BUDGET_WINDOW"], "5m", "{id}");
            let share: u32 = env["ECS_TUNNELS_API_SHARE"].parse().unwrap();
            let processes: u32 = env["ECS_TUNNELS_API_CONCURRENCY"].parse().unwrap();
            let reserved = &t.resources[id].properties["ReservedConcurrentExecutions"];
            let reserved = reserved
                .as_u64()
                .or_else(|| reserved.as_str().and_then(|s| s.parse().ok()));
            assert_eq!(
                reserved,
                Some(u64::from(processes)),
                "{id}: the processes that split its share are the ones Lambda lets run"
            );
            let b = Budget::share_of(
                budget.parse().unwrap(),
                Duration::from_secs(300),
                share,
                processes,
            )
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .expect("a budget");
            shares += share;
            worst_case += b.per_window * processes;
        }
        assert_eq!(t.functions.len(), 4, "with the Secrets Manager store");
        assert_eq!(shares, 100);
        assert!(
            worst_case <= budget.parse().unwrap(),
            "{worst_case} requests per 5 minutes with every function at its maximum concurrency, over {budget}"
        );
        assert_eq!(
            door.environment["ECS_TUNNELS_API_CONCURRENCY"],
            door.max_concurrency.to_string()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_tagged_services_stays_inside_the_api_budget() {
    let mut w = World::start_with(SimOptions {
        server_shapes: true,
        rate_limit: Some(RateLimit::per_seconds(LIMIT, WINDOW_SECS)),
        ..SimOptions::default()
    })
    .await;
    let door = EventDoor::from_template(w.iam.template()).expect("the event door");
    // The event function's share and concurrency as the template sets them; the
    // account's budget is the simulator's limit.
    for key in ["ECS_TUNNELS_API_SHARE", "ECS_TUNNELS_API_CONCURRENCY"] {
        w.extra_env
            .push((key.into(), door.environment[key].clone()));
    }
    w.extra_env
        .push(("ECS_TUNNELS_API_BUDGET".into(), LIMIT.to_string()));
    w.extra_env.push((
        "ECS_TUNNELS_API_BUDGET_WINDOW".into(),
        format!("{WINDOW_SECS}s"),
    ));
    for _ in 0..door.max_concurrency {
        w.spawn_function().await;
    }

    let hosts: Vec<String> = (0..SERVICES)
        .map(|i| format!("svc-{i:02}.example.com"))
        .collect();
    let mut events = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let service = format!("svc-{i:02}");
        let tags = [
            ("ecs-tunnels:hostname", host.as_str()),
            ("ecs-tunnels:allow-email-domains", "example.com"),
        ];
        w.seed("storm", &service, &tags).await;
        events.push(tag_event("storm", &service, &tags));
    }
    w.reset_requests().await;

    let storm = Storm {
        rt: &w.rt,
        sdk: &w.sdk,
        sim_hooks_url: w.sim.hooks_url.clone(),
        door: door.clone(),
        speedup: SPEEDUP,
        parameter_prefix: "/ecs-tunnels".into(),
    };
    let report = storm
        .run(events, Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.output()));
    let requests = w.requests().await;
    let calls = requests["total"].as_u64().unwrap_or(0);
    eprintln!(
        "storm: {SERVICES} services, {:.1} s, {calls} Cloudflare calls, {} rate-limited, {} invocations (peak {} at once), {} deliveries, {} redelivered, budget waits {:.1} s",
        report.wall.as_secs_f64(),
        requests["rate_limited"],
        report.invocations,
        report.peak_concurrency,
        report.deliveries,
        report.redeliveries,
        emf_total(&w.output(), "CloudflareBudgetWait") / 1000.0,
    );

    // Not one request over Cloudflare's limit…
    assert_eq!(
        requests["rate_limited"], 0,
        "the simulator answered 429: {:?}",
        requests["by_status"]
    );
    assert!(requests["by_status"].get("429").is_none());
    // … because the processes waited for their turns, not because the storm was small.
    assert!(emf_total(&w.output(), "CloudflareBudgetWait") > 0.0);
    assert!(calls > u64::from(LIMIT), "{calls} calls");
    assert_eq!(report.peak_concurrency, door.max_concurrency);

    // Everything exposed, nothing left failed.
    assert!(
        report.dead_letters.is_empty(),
        "dead letters: {:?}",
        report.dead_letters
    );
    assert_eq!(report.tasks_started.len(), SERVICES, "{report:?}");
    let mut not_ready = BTreeMap::new();
    for i in 0..SERVICES {
        let service = format!("svc-{i:02}");
        let status = w
            .service_tags("storm", &service)
            .await
            .remove("ecs-tunnels:status")
            .unwrap_or_default();
        if !status.starts_with("ready ") {
            not_ready.insert(service, status);
        }
    }
    assert!(not_ready.is_empty(), "not ready: {not_ready:?}");
    let wanted: BTreeSet<String> = hosts.into_iter().collect();
    let records: BTreeSet<String> = w
        .dns_records()
        .await
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(records, wanted, "DNS records");
    let apps: BTreeSet<String> = w
        .access_apps()
        .await
        .iter()
        .filter_map(|a| a["domain"].as_str().map(str::to_string))
        .collect();
    assert_eq!(apps, wanted, "Access applications");
}
