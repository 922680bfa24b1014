//! Storm benchmark: N services (default 300) tagged at once, then their task events,
//! through the event door as `infra/template.yaml` wires it (SQS batches of its
//! `BatchSize`, `MaximumConcurrency` release-built function processes with the event
//! function's share of the API budget), while the simulator enforces a Cloudflare-style
//! rate limit (default 200 requests per 10 s: Cloudflare's 4 a second, 5 times faster).
//! Prints the wall time to converge, the Cloudflare calls, the 429s and the services
//! exposed. Run with `scripts/bench-storm.sh`.

use clap::Parser;
use devtools::cloudflare_sim::{self, RateLimit, SimOptions};
use devtools::function::FunctionProcess;
use devtools::iam::{self, ResolvedTemplate};
use devtools::moto::Moto;
use devtools::runtime_api::RuntimeApi;
use devtools::storm::{emf_total, tag_event, EventDoor, Storm};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The ecs-tunnels binary (build it with --release).
    #[arg(long, default_value = "target/release/ecs-tunnels")]
    binary: PathBuf,
    /// Services tagged at once.
    #[arg(long, default_value_t = 300)]
    services: usize,
    /// The simulator's limit: requests per window per token (Cloudflare: 1200).
    #[arg(long, default_value_t = 200)]
    limit: u32,
    /// The simulator's window in seconds (Cloudflare: 300).
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Run the functions without their budget (ECS_TUNNELS_API_BUDGET=0), to compare.
    #[arg(long)]
    no_budget: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Print the result as JSON too.
    #[arg(long)]
    json: bool,
}

const API_TOKEN: &str = "bench-token";
const CLUSTER: &str = "storm";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let binary = if args.binary.is_absolute() {
        args.binary.clone()
    } else {
        devtools::moto::workspace_root().join(&args.binary)
    };
    let template = ResolvedTemplate::resolve(
        &iam::expanded_template().expect("expand infra/template.yaml (scripts/setup-python.sh)"),
        &iam::readme_parameters(),
    )
    .expect("resolve the template");
    let door = EventDoor::from_template(&template).expect("the event door");
    let moto = Moto::start().await.expect("moto");
    let sim = cloudflare_sim::start(SimOptions {
        api_token: API_TOKEN.into(),
        rate_limit: Some(RateLimit::per_seconds(args.limit, args.window)),
        ..Default::default()
    })
    .await
    .expect("sim");
    let rt = RuntimeApi::start().await.expect("runtime api");
    let sdk = moto.sdk_config().await;
    let http = reqwest::Client::new();

    let seeding = Instant::now();
    let hosts: Vec<(String, String)> = (0..args.services)
        .map(|i| (format!("svc{i:04}"), format!("svc{i:04}.example.com")))
        .collect();
    if let Some((sv, host)) = hosts.first() {
        // The cluster first, then the services 8 at a time.
        seed(&sdk, sv, host).await;
    }
    for chunk in hosts[1.min(hosts.len())..].chunks(8) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(sv, host)| {
                let sdk = sdk.clone();
                tokio::spawn(async move { seed(&sdk, &sv, &host).await })
            })
            .collect();
        for h in handles {
            h.await.expect("seed task");
        }
    }
    eprintln!(
        "seeded {} services in {:.1} s",
        args.services,
        seeding.elapsed().as_secs_f64()
    );

    let mut env = moto.aws_env();
    env.extend([
        (
            "CLOUDFLARE_ACCOUNT_ID".to_string(),
            SimOptions::default().account_id,
        ),
        ("CLOUDFLARE_API_TOKEN".to_string(), API_TOKEN.to_string()),
        ("CLOUDFLARE_API_URL".to_string(), sim.base_url.clone()),
        ("RUST_LOG".to_string(), "warn".to_string()),
        (
            "ECS_TUNNELS_API_BUDGET".to_string(),
            if args.no_budget {
                "0".to_string()
            } else {
                args.limit.to_string()
            },
        ),
        (
            "ECS_TUNNELS_API_BUDGET_WINDOW".to_string(),
            format!("{}s", args.window),
        ),
    ]);
    for key in ["ECS_TUNNELS_API_SHARE", "ECS_TUNNELS_API_CONCURRENCY"] {
        env.push((key.to_string(), door.environment[key].clone()));
    }
    let mut functions = Vec::new();
    for _ in 0..door.max_concurrency {
        functions.push(FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("spawn"));
    }
    assert!(
        rt.wait_for_pollers(functions.len(), Duration::from_secs(20))
            .await,
        "the functions did not start"
    );

    let events: Vec<Value> = hosts
        .iter()
        .map(|(sv, host)| {
            tag_event(
                CLUSTER,
                sv,
                &[
                    ("ecs-tunnels:hostname", host),
                    ("ecs-tunnels:allow-email-domains", "example.com"),
                ],
            )
        })
        .collect();
    let speedup = (f64::from(args.limit) / args.window as f64) / (1200.0 / 300.0);
    let storm = Storm {
        rt: &rt,
        sdk: &sdk,
        sim_hooks_url: sim.hooks_url.clone(),
        door: door.clone(),
        speedup,
        parameter_prefix: "/ecs-tunnels".into(),
    };
    let report = storm
        .run(events, Duration::from_secs(args.timeout))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let counters: Value = sim.hook_json(&http, "requests").await;
    let state: Value = sim.hook_json(&http, "state").await;
    let names = |key: &str, field: &str| -> BTreeSet<String> {
        state[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o[field].as_str().map(str::to_string))
            .collect()
    };
    let (records, apps) = (names("dns_records", "name"), names("access_apps", "domain"));
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let mut ready = 0;
    for (sv, host) in &hosts {
        let tags = ecs
            .list_tags_for_resource()
            .resource_arn(format!(
                "arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{sv}"
            ))
            .send()
            .await
            .expect("ListTagsForResource");
        let status_ready = tags.tags().iter().any(|t| {
            t.key() == Some("ecs-tunnels:status")
                && t.value().is_some_and(|v| v.starts_with("ready "))
        });
        if status_ready && records.contains(host) && apps.contains(host) {
            ready += 1;
        }
    }
    let output: String = functions
        .iter()
        .map(FunctionProcess::output)
        .collect::<Vec<_>>()
        .join("\n");
    let calls = counters["total"].as_u64().unwrap_or(0);
    let limited = counters["rate_limited"].as_u64().unwrap_or(0);
    let result = json!({
        "services": args.services,
        "limit": format!("{} per {} s", args.limit, args.window),
        "client_budget": !args.no_budget,
        "event_door": {"batch_size": door.batch_size, "max_concurrency": door.max_concurrency,
                       "share_percent": door.environment["ECS_TUNNELS_API_SHARE"]},
        "wall_s": (report.wall.as_secs_f64() * 10.0).round() / 10.0,
        "cloudflare_calls": calls,
        "calls_per_service": (calls as f64 / args.services.max(1) as f64 * 10.0).round() / 10.0,
        "calls_per_second": (calls as f64 / report.wall.as_secs_f64() * 10.0).round() / 10.0,
        "rate_limited_429": limited,
        "exposed": ready,
        "invocations": report.invocations,
        "peak_concurrency": report.peak_concurrency,
        "redeliveries": report.redeliveries,
        "dead_letters": report.dead_letters.len(),
        "budget_wait_s": (emf_total(&output, "CloudflareBudgetWait") / 100.0).round() / 10.0,
        "budget_refused": emf_total(&output, "CloudflareBudgetRefused"),
    });
    println!(
        "storm of {} services through the event door (batches of {}, {} processes, {}% of the budget each split {} ways), simulator limit {} requests per {} s{}:",
        args.services,
        door.batch_size,
        door.max_concurrency,
        door.environment["ECS_TUNNELS_API_SHARE"],
        door.environment["ECS_TUNNELS_API_CONCURRENCY"],
        args.limit,
        args.window,
        if args.no_budget { ", functions WITHOUT their budget" } else { "" }
    );
    println!(
        "  converged in {:.1} s; {calls} Cloudflare calls ({:.1} a service, {:.1} a second); {limited} answered 429; {ready}/{} services exposed; {} invocations, {} redeliveries, {} dead letters",
        report.wall.as_secs_f64(),
        result["calls_per_service"].as_f64().unwrap_or(0.0),
        result["calls_per_second"].as_f64().unwrap_or(0.0),
        args.services,
        report.invocations,
        report.redeliveries,
        report.dead_letters.len(),
    );
    if args.json {
        println!("{result}");
    }
    for f in functions {
        f.stop().await;
    }
}

async fn seed(sdk: &aws_config::SdkConfig, service: &str, host: &str) {
    devtools::seed::seed_service(
        sdk,
        CLUSTER,
        service,
        &[
            ("ecs-tunnels:hostname", host),
            ("ecs-tunnels:allow-email-domains", "example.com"),
        ],
    )
    .await;
}
