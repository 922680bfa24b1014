//! What one service costs (issue 11, "lean reconcile"): Cloudflare calls and writes, the
//! dependent round trips of a create, and AWS calls, for a create in a warm process, the
//! converged events (task, tag, CloudTrail UpdateService) and a teardown, in an empty
//! account and in a crowded one (unrelated Access apps, reusable policies, zones and DNS
//! records); then, unless `--services 0`, the sweep's rows (adopting N tagged services,
//! and a converged sweep with a latency on every AWS call).
//!
//! Everything runs the release binary through the Lambda Runtime API against moto (behind
//! the AWS proxy, which counts AWS calls) and the Cloudflare simulator, with every list
//! paginated at `--page-cap` items a page. Prints one Markdown table (stdout), then the
//! requests behind each number. Run with `scripts/bench-calls.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use devtools::bench::events;
use devtools::bench::levels::{dependency_levels, wall_time_levels};
use devtools::bench::peers::{Measured, Peers};
use devtools::bench::sim_log::{self, describe_counts, Crowd};
use devtools::bench::sweep::{self, thousands, SweepNumbers, SweepOptions};
use devtools::bench::table::Table;
use devtools::cloudflare_sim::SimOptions;

#[derive(Parser, Clone)]
struct Args {
    /// The ecs-tunnels binary (release build).
    #[arg(long, default_value = "target/release/ecs-tunnels")]
    binary: PathBuf,
    /// Items a page of every Cloudflare list (the simulator's page cap).
    #[arg(long, default_value_t = 20)]
    page_cap: u32,
    /// Latency added to every Cloudflare request to count dependent round trips, ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Unrelated Access applications in the crowded account.
    #[arg(long, default_value_t = 1000)]
    crowd_apps: usize,
    /// Unrelated reusable Access policies in the crowded account.
    #[arg(long, default_value_t = 1000)]
    crowd_policies: usize,
    /// Zones in the crowded account (the services' zone is the last).
    #[arg(long, default_value_t = 50)]
    crowd_zones: usize,
    /// Unrelated DNS records in the crowded account, spread over its zones.
    #[arg(long, default_value_t = 5000)]
    crowd_records: usize,
    /// Services for the sweep rows (0 skips them).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Clusters the sweep's services are spread over.
    #[arg(long, default_value_t = 4)]
    clusters: usize,
    /// ECS_TUNNELS_SWEEP_MAX_CALLS for the sweep rows (default: the install's default).
    #[arg(long)]
    sweep_max_calls: Option<u64>,
    /// Give up adopting after this many sweeps.
    #[arg(long, default_value_t = 500)]
    max_sweeps: usize,
    /// Latency added to every AWS call in the converged sweep, ms.
    #[arg(long, default_value_t = 50)]
    aws_latency_ms: u64,
}

/// The zone every benchmark hostname is in.
const ZONE: &str = "example.com";
const CLUSTER: &str = "bench";
const HOSTNAME: &str = "ecs-tunnels:hostname";
const ALLOW: (&str, &str) = ("ecs-tunnels:allow-emails", "alice@example.com");

/// An account to measure in.
struct Account {
    name: String,
    zones: Vec<String>,
    crowd: Option<Crowd>,
}

fn accounts(args: &Args) -> Vec<Account> {
    // The services' zone last: a client that scans the zones finds it on the last page.
    let mut crowded: Vec<String> = (1..args.crowd_zones.max(1))
        .map(|i| format!("crowd-{i:02}.example"))
        .collect();
    crowded.push(ZONE.to_string());
    vec![
        Account {
            name: "empty account".into(),
            zones: vec![ZONE.to_string()],
            crowd: None,
        },
        Account {
            name: format!(
                "crowded account ({} apps, {} policies, {} zones, {} DNS records)",
                thousands(args.crowd_apps as u64),
                thousands(args.crowd_policies as u64),
                crowded.len(),
                thousands(args.crowd_records as u64)
            ),
            zones: crowded,
            crowd: Some(Crowd {
                access_apps: args.crowd_apps,
                policies: args.crowd_policies,
                dns_records: args.crowd_records,
            }),
        },
    ]
}

/// What the events cost in one account.
struct EventNumbers {
    cold: Measured,
    create: Measured,
    slow_create: Measured,
    levels: usize,
    wall_levels: f64,
    /// The converged events and the teardown, in the order run.
    rest: Vec<(Row, Measured)>,
}

/// The table's rows, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    Create,
    ColdExtra,
    Levels,
    TaskEvent,
    UnrelatedTag,
    OurTagAgain,
    UpdateService,
    Teardown,
}

impl Row {
    const ALL: [Row; 8] = [
        Row::Create,
        Row::ColdExtra,
        Row::Levels,
        Row::TaskEvent,
        Row::UnrelatedTag,
        Row::OurTagAgain,
        Row::UpdateService,
        Row::Teardown,
    ];

    fn label(self, latency_ms: u64) -> String {
        match self {
            Row::Create => "create one service (warm process)".into(),
            Row::ColdExtra => "cold start: what the process's first event adds, once".into(),
            Row::Levels => format!(
                "dependent round trips in a create, {latency_ms} ms added to every Cloudflare call"
            ),
            Row::TaskEvent => "converged service: task event, tags unchanged".into(),
            Row::UnrelatedTag => "converged service: TagResource event of an unrelated tag".into(),
            Row::OurTagAgain => {
                "converged service: TagResource event re-applying one of our tags unchanged".into()
            }
            Row::UpdateService => "converged service: CloudTrail UpdateService event".into(),
            Row::Teardown => "teardown (UntagResource event)".into(),
        }
    }

    fn target(self) -> &'static str {
        match self {
            Row::Create => "≤ 9 calls, ≤ 5 writes",
            Row::ColdExtra => "zones, organization, the Access tag",
            Row::Levels => "≤ 5 levels",
            Row::TaskEvent => "0 calls",
            Row::UnrelatedTag | Row::OurTagAgain | Row::UpdateService => "≤ 4 reads",
            Row::Teardown => "≤ 9 calls",
        }
    }
}

fn service_tags(service: &str) -> Vec<(String, String)> {
    vec![
        (HOSTNAME.to_string(), format!("{service}.{ZONE}")),
        (ALLOW.0.to_string(), ALLOW.1.to_string()),
    ]
}

fn as_refs(tags: &[(String, String)]) -> Vec<(&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn tag_service(peers: &Peers, service: &str, tags: &[(&str, &str)]) -> Result<(), String> {
    let tags: Vec<_> = tags
        .iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build())
        .collect();
    aws_sdk_ecs::Client::new(&peers.sdk)
        .tag_resource()
        .resource_arn(events::service_arn(CLUSTER, service))
        .set_tags(Some(tags))
        .send()
        .await
        .map(drop)
        .map_err(|e| format!("TagResource {service}: {e:?}"))
}

async fn untag_service(peers: &Peers, service: &str, keys: &[&str]) -> Result<(), String> {
    aws_sdk_ecs::Client::new(&peers.sdk)
        .untag_resource()
        .resource_arn(events::service_arn(CLUSTER, service))
        .set_tag_keys(Some(keys.iter().map(|k| k.to_string()).collect()))
        .send()
        .await
        .map(drop)
        .map_err(|e| format!("UntagResource {service}: {e:?}"))
}

/// Creates one service by its CloudTrail CreateService event.
async fn create(peers: &Peers, service: &str) -> Result<Measured, String> {
    let tags = service_tags(service);
    peers
        .measure(events::create_service(CLUSTER, service, &as_refs(&tags)))
        .await
}

/// Runs every event in one account, each measured on its own.
async fn measure_events(args: &Args, account: &Account) -> Result<EventNumbers, String> {
    let peers = Peers::start(
        &args.binary,
        SimOptions {
            zones: account.zones.clone(),
            page_cap: Some(args.page_cap),
            server_shapes: true,
            ..SimOptions::default()
        },
        // The default publishing (once cloudflared connects), with a shorter wait.
        &[("ECS_TUNNELS_CONNECT_WAIT", "4s")],
    )
    .await?;
    // cloudflared replicas that start with each new token, as ECS would start them.
    let _sidecars = devtools::sidecars::start(
        &peers.sdk,
        "/ecs-tunnels",
        &peers.sim.hooks_url,
        std::time::Duration::from_millis(100),
        std::time::Duration::ZERO,
    );
    if let Some(crowd) = account.crowd {
        sim_log::seed_crowd(&peers.http, &peers.sim.hooks_url, crowd).await?;
    }
    for service in ["first", "web", "slow"] {
        let tags = service_tags(service);
        devtools::seed::seed_service(&peers.sdk, CLUSTER, service, &as_refs(&tags)).await;
    }
    let f = peers.spawn().await?;
    eprintln!("{}: measuring", account.name);
    let cold = create(&peers, "first").await?;
    let warm = create(&peers, "web").await?;
    sim_log::set_latency(&peers.http, &peers.sim.hooks_url, args.latency_ms).await?;
    let slow = create(&peers, "slow").await;
    sim_log::set_latency(&peers.http, &peers.sim.hooks_url, 0).await?;
    let slow = slow?;
    let latency = Duration::from_millis(args.latency_ms);
    let levels = dependency_levels(&slow.cf.intervals());
    let wall_levels = wall_time_levels(slow.invocation.duration, warm.invocation.duration, latency);

    let mut rest = Vec::new();
    rest.push((
        Row::TaskEvent,
        peers.measure(events::task_running(CLUSTER, "web")).await?,
    ));
    let team = [("team", "payments")];
    tag_service(&peers, "web", &team).await?;
    rest.push((
        Row::UnrelatedTag,
        peers
            .measure(events::tag_resource(CLUSTER, "web", &team))
            .await?,
    ));
    tag_service(&peers, "web", &[ALLOW]).await?;
    rest.push((
        Row::OurTagAgain,
        peers
            .measure(events::tag_resource(CLUSTER, "web", &[ALLOW]))
            .await?,
    ));
    rest.push((
        Row::UpdateService,
        peers
            .measure(events::update_service(CLUSTER, "web"))
            .await?,
    ));
    untag_service(&peers, "web", &[HOSTNAME]).await?;
    rest.push((
        Row::Teardown,
        peers
            .measure(events::untag_resource(CLUSTER, "web", &[HOSTNAME]))
            .await?,
    ));
    f.stop().await;
    Ok(EventNumbers {
        cold,
        create: warm,
        slow_create: slow,
        levels,
        wall_levels,
        rest,
    })
}

/// `N calls (W writes) · AWS A`, and the state when it is an error.
fn calls_cell(m: &Measured) -> String {
    let mut cell = format!(
        "{} calls ({} writes) · AWS {}",
        m.cf.total,
        m.cf.writes,
        m.aws_total()
    );
    let state = m.state();
    if state.contains("error") || state.starts_with("no outcome") {
        cell.push_str(&format!(" · ⚠ {state}"));
    }
    cell
}

/// What `cold` made beyond what `warm` made, by operation (a difference in list pages
/// because the second create sees one more object of ours is left out).
fn extra_operations(cold: &Measured, warm: &Measured) -> BTreeMap<String, usize> {
    let warm_ops = warm.cf.by_operation();
    cold.cf
        .by_operation()
        .into_iter()
        .filter_map(|(op, n)| {
            let extra = n.saturating_sub(warm_ops.get(&op).copied().unwrap_or(0));
            (extra > 0).then_some((op, extra))
        })
        .collect()
}

fn cell(n: &EventNumbers, row: Row, latency_ms: u64) -> String {
    match row {
        Row::Create => calls_cell(&n.create),
        Row::ColdExtra => {
            let extra = extra_operations(&n.cold, &n.create);
            let calls: usize = extra.values().sum();
            let writes: usize = extra
                .iter()
                .filter(|(op, _)| !op.starts_with("GET "))
                .map(|(_, k)| k)
                .sum();
            let aws = n.cold.aws_total() as i64 - n.create.aws_total() as i64;
            format!(
                "{calls} calls ({writes} writes) · AWS {aws:+}: {}",
                describe_counts(&extra)
            )
        }
        Row::Levels => format!(
            "{} levels ({} calls; wall-time estimate {:.1} × {latency_ms} ms)",
            n.levels, n.slow_create.cf.total, n.wall_levels
        ),
        other => n
            .rest
            .iter()
            .find(|(r, _)| *r == other)
            .map(|(_, m)| calls_cell(m))
            .unwrap_or_default(),
    }
}

/// The sweep's rows, measured in an account without the crowd (its column; "—" in the
/// others).
fn sweep_rows(table: &mut Table, s: &SweepNumbers, columns: usize) {
    for row in sweep::issue_rows(s) {
        let mut cells = row.to_vec();
        cells.resize(columns, "—".into());
        table.row(cells);
    }
}

fn print_details(accounts: &[Account], numbers: &[EventNumbers], sweep: Option<&SweepNumbers>) {
    println!("\nWhat each number is made of (Cloudflare requests, then AWS calls):\n");
    let line = |label: &str, m: &Measured| {
        println!(
            "- {label}: state `{}`, {} ms\n  - Cloudflare: {}\n  - AWS: {}",
            m.state(),
            m.invocation.duration.as_millis(),
            describe_counts(&m.cf.by_operation()),
            describe_counts(&m.aws)
        );
    };
    for (account, n) in accounts.iter().zip(numbers) {
        println!("{}:", account.name);
        line("first event of the process (a create)", &n.cold);
        line(&Row::Create.label(0), &n.create);
        line("create with the latency", &n.slow_create);
        for (row, m) in &n.rest {
            line(&row.label(0), m);
        }
        println!();
    }
    if let Some(s) = sweep {
        s.print_converged_calls();
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let accounts = accounts(&args);
    let mut numbers = Vec::new();
    for account in &accounts {
        match measure_events(&args, account).await {
            Ok(n) => numbers.push(n),
            Err(e) => {
                eprintln!("{}: {e}", account.name);
                std::process::exit(1);
            }
        }
    }
    let sweep = if args.services > 0 {
        let opts = SweepOptions {
            binary: args.binary.clone(),
            services: args.services,
            clusters: args.clusters,
            zones: ["example.com", "example.net", "example.org"]
                .map(String::from)
                .to_vec(),
            page_cap: Some(args.page_cap),
            sweep_max_calls: args.sweep_max_calls,
            max_sweeps: args.max_sweeps,
            aws_latency: Duration::from_millis(args.aws_latency_ms),
            accounts: 0,
            regions: vec![],
        };
        match sweep::run(opts, |line| eprintln!("sweep: {line}")).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("sweep: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };

    let mut header = vec!["operation".to_string(), "target".to_string()];
    header.extend(accounts.iter().map(|a| a.name.clone()));
    let columns = header.len();
    let mut table = Table::new(header);
    for row in Row::ALL {
        let mut cells = vec![row.label(args.latency_ms), row.target().to_string()];
        cells.extend(numbers.iter().map(|n| cell(n, row, args.latency_ms)));
        table.row(cells);
    }
    if let Some(s) = &sweep {
        sweep_rows(&mut table, s, columns);
    }
    println!(
        "Cloudflare calls (every list at most {} a page), release build, warm process unless said:\n",
        args.page_cap
    );
    print!("{}", table.markdown());
    print_details(&accounts, &numbers, sweep.as_ref());
}
