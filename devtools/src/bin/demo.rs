//! The offline demo: the whole job on one machine, no AWS or Cloudflare account.
//!
//! Starts moto server (AWS) and the Cloudflare simulator on 127.0.0.1, creates a cluster,
//! a task definition with the stock cloudflared sidecar wired to the SSM token parameter,
//! and a tagged service; feeds the `ecs-tunnels` binary an "ECS Task State Change" event
//! through the Lambda Runtime API; prints what now exists; then untags the service, feeds
//! the CloudTrail UntagResource event, shows that everything is gone, and stops what it
//! started. Run it with `scripts/demo.sh`.

use clap::Parser;
use devtools::cloudflare_sim::{self, SimOptions};
use devtools::function::FunctionProcess;
use devtools::moto::{workspace_root, Moto};
use devtools::runtime_api::RuntimeApi;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run ecs-tunnels end to end against moto and the Cloudflare simulator")]
struct Args {
    /// The ecs-tunnels binary to run as the Lambda function.
    #[arg(long, default_value = "target/debug/ecs-tunnels")]
    binary: PathBuf,
    /// Show the function's log lines beside the step that produced them.
    #[arg(long)]
    logs: bool,
}

const CLUSTER: &str = "demo";
const SERVICE: &str = "web";
const HOST: &str = "web.example.com";
const API_TOKEN: &str = "demo-api-token";

fn title(t: &str) {
    println!("\n== {t}");
}

/// An invocation's answer, readably: one line per service (state, tunnel, the changes
/// made, or what went wrong) and the Cloudflare calls it cost.
fn show_response(inv: &devtools::runtime_api::Invocation) {
    let Some(r) = inv.outcome.response() else {
        println!("invocation failed: {:?}", inv.outcome);
        return;
    };
    println!("answered in {} ms", inv.duration.as_millis());
    for o in r["outcomes"].as_array().into_iter().flatten() {
        let svc = format!(
            "{}/{}",
            o["service"]["cluster"].as_str().unwrap_or(""),
            o["service"]["service"].as_str().unwrap_or("")
        );
        let mut line = format!("  {svc}: {}", o["state"].as_str().unwrap_or("?"));
        if let Some(t) = o["tunnel_id"].as_str() {
            line.push_str(&format!(" (tunnel {t})"));
        }
        println!("{line}");
        let changes: Vec<&str> = o["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["kind"].as_str())
            .collect();
        if !changes.is_empty() {
            println!("    changes: {}", changes.join(", "));
        }
        if let Some(e) = o["error"].as_str() {
            println!("    error: {e}");
        }
    }
    for why in r["ignored"].as_array().into_iter().flatten() {
        println!("  ignored: {}", why.as_str().unwrap_or(""));
    }
    println!("  Cloudflare calls: {}", r["cloudflare_calls"]);
}

/// The function's log lines printed since `from`, one readable line each.
fn show_logs(function: &FunctionProcess, from: &mut usize) {
    let lines = function.output_lines();
    for l in lines.iter().skip(*from) {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            println!("    | {l}");
            continue;
        };
        let fields = &v["fields"];
        let message = fields["message"].as_str().unwrap_or("");
        let extra: Vec<String> = fields
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "message" && *k != "detail")
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map(str::to_string).unwrap_or(v.to_string())
                )
            })
            .collect();
        if v.get("_aws").is_some() {
            println!("    | [metrics] CloudWatch EMF line ({} bytes)", l.len());
        } else {
            println!(
                "    | [{}] {message} {}",
                v["level"].as_str().unwrap_or(""),
                extra.join(" ")
            );
        }
    }
    *from = lines.len();
}

fn event(name: &str) -> Value {
    let path = workspace_root().join("events").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("event JSON")
}

async fn sim_state(http: &reqwest::Client, hooks: &str) -> Value {
    http.get(format!("{hooks}/state"))
        .send()
        .await
        .expect("simulator state")
        .json()
        .await
        .expect("json")
}

async fn show_everything(http: &reqwest::Client, hooks: &str, sdk: &aws_config::SdkConfig) {
    let st = sim_state(http, hooks).await;
    let live: Vec<&Value> = st["tunnels"]
        .as_array()
        .map(|a| a.iter().filter(|t| t["deleted_at"].is_null()).collect())
        .unwrap_or_default();
    println!("Cloudflare tunnels: {}", live.len());
    for t in &live {
        println!(
            "  {} {} (config_src {}, status {})",
            t["id"].as_str().unwrap_or(""),
            t["name"].as_str().unwrap_or(""),
            t["config_src"],
            t["status"]
        );
        if !t["config"].is_null() {
            println!("  ingress config: {}", t["config"]["ingress"]);
        }
    }
    let apps = st["access_apps"].as_array().cloned().unwrap_or_default();
    println!("Access applications: {}", apps.len());
    for a in &apps {
        println!(
            "  {} domain {} aud {} tags {}",
            a["name"].as_str().unwrap_or(""),
            a["domain"],
            a["aud"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(12)
                .collect::<String>()
                + "…",
            a["tags"]
        );
    }
    let policies = st["access_policies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!("Access policies: {}", policies.len());
    for p in &policies {
        println!(
            "  {} {} include {}",
            p["name"].as_str().unwrap_or(""),
            p["decision"],
            p["include"]
        );
    }
    let records = st["dns_records"].as_array().cloned().unwrap_or_default();
    println!("DNS records: {}", records.len());
    for r in &records {
        println!(
            "  {} {} → {} proxied={} comment {}",
            r["type"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["content"].as_str().unwrap_or(""),
            r["proxied"],
            r["comment"]
        );
    }
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let name = format!("/ecs-tunnels/{CLUSTER}/{SERVICE}/token");
    match ssm.get_parameter().name(&name).send().await {
        Ok(p) => {
            let p = p.parameter().cloned().expect("parameter");
            let tags = ssm
                .list_tags_for_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .send()
                .await
                .map(|t| {
                    t.tag_list()
                        .iter()
                        .map(|t| format!("{}={}", t.key(), t.value()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "SSM parameter: {name} ({:?}, version {}, tags {tags}; value not shown)",
                p.r#type().map(|t| t.as_str()).unwrap_or(""),
                p.version()
            );
        }
        Err(_) => println!("SSM parameter: {name} does not exist"),
    }
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let arn = format!("arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{SERVICE}");
    let tags = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("service tags");
    let status = tags
        .tags()
        .iter()
        .find(|t| t.key() == Some("ecs-tunnels:status"))
        .and_then(|t| t.value());
    println!("Service status tag: {}", status.unwrap_or("(none)"));
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let binary = if args.binary.is_absolute() {
        args.binary.clone()
    } else {
        workspace_root().join(&args.binary)
    };
    if !binary.exists() {
        eprintln!("{} does not exist: build it first (cargo build --bin ecs-tunnels) or run scripts/demo.sh", binary.display());
        std::process::exit(2);
    }

    title("Starting moto server (AWS) and the Cloudflare simulator on 127.0.0.1");
    let moto = Moto::start().await.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let sim = cloudflare_sim::start(SimOptions {
        api_token: API_TOKEN.into(),
        server_shapes: true,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let rt = RuntimeApi::start().await.expect("runtime API");
    println!(
        "moto: {}\nCloudflare simulator: {}\nLambda Runtime API: {}",
        moto.endpoint(),
        sim.base_url,
        rt.endpoint()
    );
    let sdk = moto.sdk_config().await;
    let http = reqwest::Client::new();

    title(
        "Creating cluster, task definition (app + stock cloudflared sidecar) and a tagged service",
    );
    let tags = [
        ("ecs-tunnels:hostname", HOST),
        ("ecs-tunnels:allow-email-domains", "example.com"),
        ("ecs-tunnels:session-duration", "12h"),
    ];
    let arn = devtools::seed::seed_service(&sdk, CLUSTER, SERVICE, &tags).await;
    println!("service {arn}");
    for (k, v) in tags {
        println!("  tag {k}={v}");
    }
    println!("  cloudflared: image cloudflare/cloudflared:latest, command tunnel --no-autoupdate run, TUNNEL_TOKEN from {}", devtools::seed::token_parameter_arn(CLUSTER, SERVICE));

    let queue = devtools::event_queue::create(&sdk).await;
    let mut env = moto.aws_env();
    env.extend([
        // Publish once cloudflared connects (the default), waiting 3 s in the run that
        // writes the token, then looking again through a follow-up on the event queue.
        ("ECS_TUNNELS_CONNECT_WAIT".to_string(), "3s".to_string()),
        ("ECS_TUNNELS_FOLLOW_UP_QUEUE_URL".to_string(), queue.clone()),
        ("ECS_TUNNELS_FOLLOW_UP_DELAY".to_string(), "3s".to_string()),
        (
            "CLOUDFLARE_ACCOUNT_ID".to_string(),
            SimOptions::default().account_id,
        ),
        ("CLOUDFLARE_API_TOKEN".to_string(), API_TOKEN.to_string()),
        ("CLOUDFLARE_API_URL".to_string(), sim.base_url.clone()),
    ]);
    let function =
        FunctionProcess::spawn(&binary, &rt.endpoint(), &env).expect("start ecs-tunnels");
    rt.wait_for_pollers(1, Duration::from_secs(20)).await;

    title("Lambda invocation: ECS Task State Change (RUNNING) for demo/web");
    let mut logged = 0;
    let inv = rt
        .invoke(event("ecs-task-running.json"), Duration::from_secs(60))
        .await
        .expect("invoke");
    show_response(&inv);
    if args.logs {
        show_logs(&function, &mut logged);
    }

    title("What exists now: everything but the DNS record, which waits for cloudflared");
    show_everything(&http, &sim.hooks_url, &sdk).await;

    title("A connector (cloudflared) starting with the stored token");
    let token = aws_sdk_ssm::Client::new(&sdk)
        .get_parameter()
        .name(format!("/ecs-tunnels/{CLUSTER}/{SERVICE}/token"))
        .with_decryption(true)
        .send()
        .await
        .ok()
        .and_then(|p| p.parameter().and_then(|p| p.value()).map(str::to_string))
        .unwrap_or_default();
    let conn: Value = http
        .post(format!("{}/connectors", sim.hooks_url))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("connect")
        .json()
        .await
        .expect("json");
    println!(
        "simulator accepted the connector: {}",
        conn["client_id"].is_string()
    );

    title("The delayed follow-up (SQS DelaySeconds) arrives: the hostname is published");
    let follow_up = devtools::event_queue::next_event(&sdk, &queue, Duration::from_secs(20))
        .await
        .expect("the follow-up message");
    println!(
        "message body: {}",
        follow_up["Records"][0]["body"].as_str().unwrap_or_default()
    );
    let inv = rt
        .invoke(follow_up, Duration::from_secs(60))
        .await
        .expect("invoke");
    show_response(&inv);
    if args.logs {
        show_logs(&function, &mut logged);
    }

    title("What exists now");
    show_everything(&http, &sim.hooks_url, &sdk).await;

    title("The same event again: nothing to do");
    http.delete(format!("{}/requests", sim.hooks_url))
        .send()
        .await
        .expect("reset counters");
    let inv = rt
        .invoke(event("ecs-task-running.json"), Duration::from_secs(60))
        .await
        .expect("invoke");
    let counters: Value = sim.hook_json(&http, "requests").await;
    show_response(&inv);
    if args.logs {
        show_logs(&function, &mut logged);
    }
    println!(
        "  as the simulator counted them: {} calls, {} writes",
        counters["total"], counters["writes"]
    );

    title("Untagging the service (ecs-tunnels:hostname) and feeding the CloudTrail UntagResource event");
    aws_sdk_ecs::Client::new(&sdk)
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("ecs-tunnels:hostname")
        .send()
        .await
        .expect("untag");
    let inv = rt
        .invoke(
            event("cloudtrail-untag-resource.json"),
            Duration::from_secs(60),
        )
        .await
        .expect("invoke");
    show_response(&inv);
    if args.logs {
        show_logs(&function, &mut logged);
    }

    title("What exists now");
    show_everything(&http, &sim.hooks_url, &sdk).await;

    title("Stopping everything");
    let logs = function.stop().await;
    if !args.logs {
        println!(
            "(the function logged {} lines; run with --logs to see them beside each step)",
            logs.lines().count()
        );
    }
    sim.shutdown();
    drop(moto);
    println!("done");
}
