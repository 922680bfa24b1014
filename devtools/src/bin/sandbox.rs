//! A sandbox to try the CLI against: moto server (AWS) and the Cloudflare simulator on
//! 127.0.0.1, with a cluster `demo` and a tagged service `demo/web` (the stock cloudflared
//! sidecar wired to its token parameter). Writes the environment the `ecs-tunnels` CLI
//! needs (`export K=V` lines) to `--env-file`, prints it, and serves until stopped.
//! Run it with `scripts/sandbox.sh start`.

use clap::Parser;
use devtools::cloudflare_sim::{self, SimOptions};
use devtools::moto::Moto;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "moto + the Cloudflare simulator + a tagged service, for the ecs-tunnels CLI")]
struct Args {
    /// Where to write the `export` lines (removed again on exit).
    #[arg(long)]
    env_file: PathBuf,
}

const API_TOKEN: &str = "sandbox-api-token";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let moto = Moto::start().await.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let opts = SimOptions {
        api_token: API_TOKEN.into(),
        server_shapes: true,
        ..Default::default()
    };
    let account = opts.account_id.clone();
    let sim = cloudflare_sim::start(opts).await.expect("simulator");
    let sdk = moto.sdk_config().await;
    devtools::seed::seed_service(
        &sdk,
        "demo",
        "web",
        &[
            ("ecs-tunnels:hostname", "web.example.com"),
            ("ecs-tunnels:allow-email-domains", "example.com"),
        ],
    )
    .await;
    // The service's cloudflared sidecar: it connects once ecs-tunnels has written its
    // token (as ECS would start the task with it), so `apply` publishes the hostname.
    let _sidecars = devtools::sidecars::start(
        &sdk,
        "/ecs-tunnels",
        &sim.hooks_url,
        std::time::Duration::from_millis(200),
        std::time::Duration::ZERO,
    );
    let mut env = moto.aws_env();
    env.extend([
        // The run that writes the token waits up to 5 s for the sidecar.
        ("ECS_TUNNELS_CONNECT_WAIT".to_string(), "5s".to_string()),
        ("CLOUDFLARE_ACCOUNT_ID".to_string(), account),
        ("CLOUDFLARE_API_TOKEN".to_string(), API_TOKEN.to_string()),
        ("CLOUDFLARE_API_URL".to_string(), sim.base_url.clone()),
    ]);
    let text: String = env
        .iter()
        .map(|(k, v)| format!("export {k}={v}\n"))
        .collect();
    let partial = args.env_file.with_extension("partial");
    std::fs::write(&partial, &text).expect("write the env file");
    std::fs::rename(&partial, &args.env_file).expect("write the env file");
    print!("{text}");
    println!(
        "# sandbox ready: moto {}, Cloudflare simulator {} (hooks {}), service demo/web tagged",
        moto.endpoint(),
        sim.base_url,
        sim.hooks_url
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(&args.env_file);
    sim.shutdown();
    drop(moto);
}
