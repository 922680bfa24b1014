//! Runs the Cloudflare API simulator standalone.
//!
//! ```text
//! cloudflare-sim --port 8787 --token TOKEN --account-id ACCOUNT \
//!     --zone example.com --zone example.net [--page-cap N] [--team-name myteam] \
//!     [--server-shapes] [--no-openapi-validation] [--rate-limit 1200/300] [--latency-ms N]
//! ```
//!
//! Prints the API base URL (`http://127.0.0.1:PORT/client/v4`) as one line on
//! stdout, then serves until killed (Ctrl-C stops it cleanly).

use std::io::Write;

use clap::Parser;
use devtools::cloudflare_sim::{start, RateLimit, SimOptions};

/// Command-line options; anything omitted takes `SimOptions::default()`.
#[derive(Debug, Parser)]
#[command(
    name = "cloudflare-sim",
    about = "Stateful Cloudflare v4 API simulator"
)]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// API token clients must send as a bearer token.
    #[arg(long)]
    token: Option<String>,
    /// The simulated account id (32 hex characters).
    #[arg(long = "account-id")]
    account_id: Option<String>,
    /// A zone that exists from the start (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Lower every `per_page` to at most this, to force pagination.
    #[arg(long = "page-cap")]
    page_cap: Option<u32>,
    /// Zero Trust team name (`<team>.cloudflareaccess.com`).
    #[arg(long = "team-name")]
    team_name: Option<String>,
    /// Answer the way Cloudflare's API does (zero values, server-only fields, canonical
    /// hostnames, emails and durations) instead of echoing requests.
    #[arg(long = "server-shapes")]
    server_shapes: bool,
    /// Do not check requests against Cloudflare's OpenAPI document.
    #[arg(long = "no-openapi-validation")]
    no_openapi_validation: bool,
    /// Enforce Cloudflare's API rate limit, REQUESTS/SECONDS per token (e.g. 1200/300,
    /// the real one): going over answers 429 and blocks the token for a window.
    #[arg(long = "rate-limit", value_parser = RateLimit::parse)]
    rate_limit: Option<RateLimit>,
    /// Milliseconds added to every API request (not to the test hooks).
    #[arg(long = "latency-ms", default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let defaults = SimOptions::default();
    let opts = SimOptions {
        api_token: args.token.unwrap_or(defaults.api_token),
        account_id: args.account_id.unwrap_or(defaults.account_id),
        zones: if args.zones.is_empty() {
            defaults.zones
        } else {
            args.zones
        },
        team_name: args.team_name.unwrap_or(defaults.team_name),
        page_cap: args.page_cap,
        server_shapes: args.server_shapes,
        port: args.port,
        validate_openapi: !args.no_openapi_validation,
        rate_limit: args.rate_limit,
        latency_ms: args.latency_ms,
    };
    let sim = start(opts).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", sim.base_url)?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
