//! Sweep benchmark: seeds N tagged services (default 1,000) across several clusters and
//! zones into moto, nothing in Cloudflare, and runs the `ecs-tunnels` binary's sweep
//! through the Lambda Runtime API: sweeps until every service is adopted (a sweep finds
//! them all converged), then a converged sweep with a latency on every AWS call
//! (`--aws-latency-ms`, through the AWS proxy) in the warm process and in a fresh one.
//! Every Cloudflare list is paginated at `--page-cap` items a page.
//!
//! Reports, per sweep, Cloudflare calls and writes (as the simulator counted them), AWS
//! calls (as the proxy counted them, by operation for the converged sweeps), wall time and
//! the function's peak RSS, and prints issue 11's two sweep rows as Markdown. Run with
//! `scripts/bench-sweep.sh`. `--accounts N` runs an organization install instead: the
//! services spread evenly over N spoke accounts × `--regions` (issue 13's benchmark:
//! `--services 2000 --accounts 10`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use devtools::bench::sweep::{self, SweepNumbers, SweepOptions, SweepRun};
use devtools::bench::table::Table;
use serde_json::{json, Value};

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
    /// Items a page of every Cloudflare list (the simulator's page cap; 0: no cap).
    #[arg(long, default_value_t = 20)]
    page_cap: u32,
    /// ECS_TUNNELS_SWEEP_MAX_CALLS (default: the install's default). A large value
    /// adopts everything in one sweep.
    #[arg(long)]
    sweep_max_calls: Option<u64>,
    /// Give up adopting after this many sweeps.
    #[arg(long, default_value_t = 500)]
    max_sweeps: usize,
    /// Latency added to every AWS call in the converged sweeps, ms.
    #[arg(long, default_value_t = 50)]
    aws_latency_ms: u64,
    /// An organization install: spread the services over this many spoke accounts (0: a
    /// single-account install).
    #[arg(long, default_value_t = 0)]
    accounts: usize,
    /// The regions of an organization install (space-separated).
    #[arg(long, default_value = "us-east-1 eu-west-1")]
    regions: String,
    /// Print the sweep reports as JSON too.
    #[arg(long)]
    json: bool,
}

const ZONES: [&str; 3] = ["example.com", "example.net", "example.org"];

fn print_runs(s: &SweepNumbers) {
    println!(
        "services: {} in {} clusters and {} zones; every Cloudflare list at most {} a page",
        s.services,
        s.options.clusters,
        s.options.zones.len(),
        s.options
            .page_cap
            .map_or("unlimited".to_string(), |c| c.to_string())
    );
    println!(
        "{:<32} {:>9} {:>7} {:>9} {:>8} {:>8} {:>10} {:>9}",
        "sweep", "CF calls", "writes", "AWS calls", "wall s", "changes", "converged", "complete"
    );
    let line = |name: &str, r: &SweepRun| {
        println!(
            "{:<32} {:>9} {:>7} {:>9} {:>8.2} {:>8} {:>10} {:>9}",
            name,
            r.cf_calls(),
            r.cf_writes(),
            r.aws_calls(),
            r.measured.wall.as_secs_f64(),
            r.changes(),
            r.report["converged"],
            r.report["complete"]
        );
    };
    for (i, r) in s.adoption.sweeps.iter().enumerate() {
        line(&format!("adopting {}", i + 1), r);
    }
    if let Some(r) = &s.adoption.converged {
        line("converged (warm)", r);
    }
    let ms = s.options.aws_latency.as_millis();
    line(&format!("converged (warm), AWS +{ms} ms"), &s.warm);
    line(&format!("converged (cold), AWS +{ms} ms"), &s.cold);
    println!(
        "peak RSS of the function: {} MB (adopting + warm sweeps), {} MB (cold converged sweep)",
        s.rss_kb.0.unwrap_or(0) / 1024,
        s.rss_kb.1.unwrap_or(0) / 1024
    );
    println!(
        "configs checked per converged sweep: {}; sweeps to check every config: {}",
        s.warm.report["configs_checked"], s.warm.report["config_cycle_sweeps"]
    );
    s.print_converged_calls();
}

/// Issue 11's sweep rows.
fn issue_table(s: &SweepNumbers) -> Table {
    let mut t = Table::new(["operation", "target", "measured"]);
    for row in sweep::issue_rows(s) {
        t.row(row);
    }
    t
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let opts = SweepOptions {
        binary: args.binary.clone(),
        services: args.services,
        clusters: args.clusters.max(1),
        zones: ZONES.map(String::from).to_vec(),
        page_cap: (args.page_cap > 0).then_some(args.page_cap),
        sweep_max_calls: args.sweep_max_calls,
        max_sweeps: args.max_sweeps,
        aws_latency: Duration::from_millis(args.aws_latency_ms),
        accounts: args.accounts,
        regions: args.regions.split_whitespace().map(String::from).collect(),
    };
    let s = match sweep::run(opts, |line| eprintln!("{line}")).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    print_runs(&s);
    println!();
    print!("{}", issue_table(&s).markdown());
    if args.json {
        let adopting: Vec<Value> = s.adoption.sweeps.iter().map(|r| r.report.clone()).collect();
        println!(
            "{}",
            json!({"services": s.services, "adopting": adopting,
                   "converged": s.adoption.converged.as_ref().map(|r| r.report.clone()),
                   "warm": s.warm.report, "cold": s.cold.report, "rss_kb": [s.rss_kb.0, s.rss_kb.1]})
        );
    }
}
