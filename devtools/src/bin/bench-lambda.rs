//! Lambda numbers: cold start (process start → polling the Runtime API for its first
//! event), median of N runs, next to Python 3 `import boto3` + client creation on the same
//! machine in the same run; peak RSS while handling a create; and the cost of the common
//! case, a task event of an untagged service (Cloudflare calls, time). Run with
//! `scripts/bench-lambda.sh`.

use clap::Parser;
use devtools::cloudflare_sim::{self, SimOptions};
use devtools::function::FunctionProcess;
use devtools::moto::{python, Moto};
use devtools::runtime_api::RuntimeApi;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The ecs-tunnels binary (release build).
    #[arg(long, default_value = "target/release/ecs-tunnels")]
    binary: PathBuf,
    /// Cold starts to measure.
    #[arg(long, default_value_t = 15)]
    runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn task_event(service: &str) -> Value {
    json!({"version": "0", "id": "x", "detail-type": "ECS Task State Change", "source": "aws.ecs", "account": "123456789012",
           "time": "2026-11-23T10:15:30Z", "region": "us-east-1", "resources": ["arn:aws:ecs:us-east-1:123456789012:task/demo/0a1b"],
           "detail": {"group": format!("service:{service}"), "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo", "lastStatus": "RUNNING", "desiredStatus": "RUNNING"}})
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
        api_token: "bench".into(),
        ..Default::default()
    })
    .await
    .expect("sim");
    let sdk = moto.sdk_config().await;
    let mut env = moto.aws_env();
    env.extend([
        (
            "CLOUDFLARE_ACCOUNT_ID".to_string(),
            SimOptions::default().account_id,
        ),
        ("CLOUDFLARE_API_TOKEN".to_string(), "bench".to_string()),
        ("CLOUDFLARE_API_URL".to_string(), sim.base_url.clone()),
    ]);
    let http = reqwest::Client::new();

    // Cold start: spawn → first GET /invocation/next.
    let mut rust = Vec::new();
    for _ in 0..args.runs {
        let rt = RuntimeApi::start().await.expect("runtime api");
        let started = Instant::now();
        let f = FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("spawn");
        assert!(
            rt.wait_for_pollers(1, Duration::from_secs(20)).await,
            "did not start"
        );
        rust.push(started.elapsed());
        f.stop().await;
    }
    // Python 3 + boto3, same machine, same run: import and one client.
    let py = python();
    let mut boto = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let status = std::process::Command::new(&py)
            .args([
                "-c",
                "import boto3; boto3.client('ssm', region_name='us-east-1')",
            ])
            .status()
            .expect("python");
        assert!(
            status.success(),
            "boto3 is not installed for {}",
            py.display()
        );
        boto.push(started.elapsed());
    }
    let (r, b) = (median(rust), median(boto));
    println!("cold start, median of {}: ecs-tunnels {:.1} ms; Python 3 import boto3 + client {:.1} ms; ratio 1/{:.0}", args.runs, r.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3, b.as_secs_f64() / r.as_secs_f64());

    // Peak RSS handling a create (fresh process, one event).
    devtools::seed::seed_service(
        &sdk,
        "demo",
        "web",
        &[
            ("ecs-tunnels:hostname", "web.example.com"),
            ("ecs-tunnels:allow-emails", "alice@example.com"),
        ],
    )
    .await;
    devtools::seed::seed_service(&sdk, "demo", "plain", &[("team", "payments")]).await;
    let rt = RuntimeApi::start().await.expect("runtime api");
    let f = FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("spawn");
    rt.wait_for_pollers(1, Duration::from_secs(20)).await;
    let inv = rt
        .invoke(task_event("web"), Duration::from_secs(60))
        .await
        .expect("invoke");
    let state = inv
        .outcome
        .response()
        .map(|r| r["outcomes"][0]["state"].clone())
        .unwrap_or_default();
    let rss = f.peak_rss_kb().unwrap_or(0);
    println!(
        "create: state {state}, {} ms, peak RSS {:.1} MB",
        inv.duration.as_millis(),
        rss as f64 / 1024.0
    );

    // The common case: a task event of an untagged service.
    let mut times = Vec::new();
    let mut calls = 0;
    for _ in 0..args.runs {
        http.delete(format!("{}/requests", sim.hooks_url))
            .send()
            .await
            .expect("reset");
        let inv = rt
            .invoke(task_event("plain"), Duration::from_secs(60))
            .await
            .expect("invoke");
        times.push(inv.duration);
        let c: Value = sim.hook_json(&http, "requests").await;
        calls += c["total"].as_u64().unwrap_or(0);
    }
    println!("untagged service task event, median of {}: {:.1} ms, Cloudflare calls in total: {calls}, ECS calls: 1 DescribeServices each (the only AWS call on that path)", args.runs, median(times).as_secs_f64() * 1e3);
    f.stop().await;
}
