//! Sweep benchmark: seeds N tagged services (default 1,000) across several clusters and
//! zones into moto + the Cloudflare simulator, then runs the `ecs-tunnels` binary's sweep
//! through the Lambda Runtime API three times: the first (creating) sweep, a converged
//! sweep in the same warm process, and a converged sweep in a fresh (cold) process.
//! Reports Cloudflare calls and writes (as the simulator counted them), wall time and the
//! function's peak RSS. Run with `scripts/bench-sweep.sh`.

use clap::Parser;
use devtools::cloudflare_sim::{self, SimOptions};
use devtools::function::FunctionProcess;
use devtools::moto::Moto;
use devtools::runtime_api::RuntimeApi;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The ecs-tunnels binary (build it with --release).
    #[arg(long, default_value = "target/release/ecs-tunnels")]
    binary: PathBuf,
    /// Services to seed.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Clusters to spread them over.
    #[arg(long, default_value_t = 4)]
    clusters: usize,
    /// Print the result as JSON too.
    #[arg(long)]
    json: bool,
}

const ZONES: [&str; 3] = ["example.com", "example.net", "example.org"];
const API_TOKEN: &str = "bench-token";

async fn counters(http: &reqwest::Client, hooks: &str) -> Value {
    http.get(format!("{hooks}/requests"))
        .send()
        .await
        .expect("counters")
        .json()
        .await
        .expect("json")
}

fn sweep_event() -> Value {
    json!({"version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
           "time": "2026-11-23T12:00:00Z", "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/ecs-tunnels-sweep"], "detail": {}})
}

struct Run {
    name: &'static str,
    calls: u64,
    writes: u64,
    wall: Duration,
    report: Value,
}

async fn run_sweep(
    rt: &RuntimeApi,
    http: &reqwest::Client,
    hooks: &str,
    name: &'static str,
) -> Run {
    http.delete(format!("{hooks}/requests"))
        .send()
        .await
        .expect("reset");
    let started = Instant::now();
    let inv = rt
        .invoke_with_deadline(
            sweep_event(),
            Duration::from_secs(900),
            Duration::from_secs(900),
        )
        .await
        .expect("invoke");
    let wall = started.elapsed();
    let report = inv
        .outcome
        .response()
        .map(|r| r["sweep"].clone())
        .unwrap_or_else(|| json!({"error": format!("{:?}", inv.outcome)}));
    let c = counters(http, hooks).await;
    Run {
        name,
        calls: c["total"].as_u64().unwrap_or(0),
        writes: c["writes"].as_u64().unwrap_or(0),
        wall,
        report,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let binary = if args.binary.is_absolute() {
        args.binary.clone()
    } else {
        devtools::moto::workspace_root().join(&args.binary)
    };
    let moto = Moto::start().await.expect("moto");
    let sim = cloudflare_sim::start(SimOptions {
        api_token: API_TOKEN.into(),
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        ..Default::default()
    })
    .await
    .expect("sim");
    let rt = RuntimeApi::start().await.expect("runtime api");
    let sdk = moto.sdk_config().await;
    let http = reqwest::Client::new();

    let seeding = Instant::now();
    let n = args.services;
    let clusters = args.clusters.max(1);
    let work: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            (
                format!("bench-{}", i % clusters),
                format!("svc{i:04}"),
                format!("svc{i:04}.{}", ZONES[i % ZONES.len()]),
            )
        })
        .collect();
    // Seed clusters first (serially), then services 8 at a time.
    for (cl, sv, host) in work.iter().take(clusters.min(n)) {
        devtools::seed::seed_service(
            &sdk,
            cl,
            sv,
            &[
                ("ecs-tunnels:hostname", host),
                ("ecs-tunnels:allow-emails", "alice@example.com"),
            ],
        )
        .await;
    }
    let rest: Vec<_> = work.iter().skip(clusters.min(n)).cloned().collect();
    for chunk in rest.chunks(8) {
        let futs = chunk.iter().cloned().map(|(cl, sv, host)| {
            let sdk = sdk.clone();
            async move {
                devtools::seed::seed_service(
                    &sdk,
                    &cl,
                    &sv,
                    &[
                        ("ecs-tunnels:hostname", host.as_str()),
                        ("ecs-tunnels:allow-emails", "alice@example.com"),
                    ],
                )
                .await;
            }
        });
        let handles: Vec<_> = futs.map(tokio::spawn).collect();
        for h in handles {
            h.await.expect("seed task");
        }
    }
    eprintln!(
        "seeded {n} services in {} clusters in {:.1} s",
        clusters,
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
        (
            "ECS_TUNNELS_SWEEP_MAX_CALLS".to_string(),
            "100000000".to_string(),
        ),
        // The sweep's own speed, not the API budget's (scripts/bench-storm.sh measures that).
        ("ECS_TUNNELS_API_BUDGET".to_string(), "0".to_string()),
        ("RUST_LOG".to_string(), "warn".to_string()),
    ]);
    let f = FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("spawn");
    rt.wait_for_pollers(1, Duration::from_secs(20)).await;
    let first = run_sweep(&rt, &http, &sim.hooks_url, "first (creating)").await;
    let warm = run_sweep(&rt, &http, &sim.hooks_url, "converged (warm)").await;
    let rss_warm = f.peak_rss_kb();
    f.stop().await;
    let f = FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("spawn");
    rt.wait_for_pollers(1, Duration::from_secs(20)).await;
    let cold = run_sweep(&rt, &http, &sim.hooks_url, "converged (cold)").await;
    let rss_cold = f.peak_rss_kb();
    f.stop().await;

    println!(
        "services: {n} in {clusters} clusters and {} zones",
        ZONES.len()
    );
    println!(
        "{:<18} {:>10} {:>8} {:>9} {:>9} {:>10} {:>9}",
        "sweep", "CF calls", "writes", "wall s", "changes", "converged", "complete"
    );
    for r in [&first, &warm, &cold] {
        let changes: u64 = r.report["changes"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        println!(
            "{:<18} {:>10} {:>8} {:>9.2} {:>9} {:>10} {:>9}",
            r.name,
            r.calls,
            r.writes,
            r.wall.as_secs_f64(),
            changes,
            r.report["converged"],
            r.report["complete"]
        );
    }
    println!(
        "peak RSS of the function: {} MB (creating + warm sweep), {} MB (cold converged sweep)",
        rss_warm.unwrap_or(0) / 1024,
        rss_cold.unwrap_or(0) / 1024
    );
    println!(
        "configs checked per converged sweep: {}; sweeps to check every config: {}",
        warm.report["configs_checked"], warm.report["config_cycle_sweeps"]
    );
    if args.json {
        println!(
            "{}",
            json!({"services": n, "runs": [first.report, warm.report, cold.report], "rss_kb": [rss_warm, rss_cold]})
        );
    }
}
