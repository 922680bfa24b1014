//! The sweep benchmark: N tagged services seeded into moto across clusters and zones,
//! nothing in Cloudflare; sweeps run until every service is adopted (a sweep finds them
//! all converged), then converged sweeps with a latency on every AWS call, in the warm
//! process and in a fresh one.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::events;
use super::peers::{Measured, Peers};
use crate::cloudflare_sim::SimOptions;
use crate::function::FunctionProcess;

/// What to seed and how to run the function.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The ecs-tunnels binary.
    pub binary: PathBuf,
    /// Services to seed.
    pub services: usize,
    /// Clusters to spread them over.
    pub clusters: usize,
    /// Zones their hostnames use (the simulator's zones).
    pub zones: Vec<String>,
    /// The simulator's page cap (every list is paginated at most this many a page).
    pub page_cap: Option<u32>,
    /// `ECS_TUNNELS_SWEEP_MAX_CALLS`; `None` keeps the install's default.
    pub sweep_max_calls: Option<u64>,
    /// Sweeps to try before giving up on adoption.
    pub max_sweeps: usize,
    /// The latency added to every AWS call in the converged sweeps.
    pub aws_latency: Duration,
    /// An organization install: this many spoke accounts (`0`: a single-account
    /// install), each with the services spread over [`SweepOptions::regions`].
    pub accounts: usize,
    /// The regions of an organization install.
    pub regions: Vec<String>,
}

impl SweepOptions {
    /// The spoke accounts of an organization run: `100000000001`, `100000000002`, ….
    pub fn account_ids(&self) -> Vec<String> {
        (1..=self.accounts)
            .map(|i| format!("{:012}", 100_000_000_000u64 + i as u64))
            .collect()
    }

    /// The function's environment for an organization install (none for a single one).
    fn org_env(&self) -> Vec<(&'static str, String)> {
        if self.accounts == 0 {
            return vec![];
        }
        vec![
            ("ECS_TUNNELS_SPOKE_ROLE", "ecs-tunnels-spoke".into()),
            ("ECS_TUNNELS_ACCOUNTS", self.account_ids().join(" ")),
            ("ECS_TUNNELS_REGIONS", self.regions.join(" ")),
            (
                "ECS_TUNNELS_OWNER",
                format!("{}-{}", crate::moto::ACCOUNT_ID, crate::moto::REGION),
            ),
        ]
    }
}

/// One sweep's cost.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// The invocation, Cloudflare requests and AWS calls.
    pub measured: Measured,
    /// The sweep's own report (`sweep` in the answer), or `{"error": ...}`.
    pub report: Value,
}

impl SweepRun {
    fn new(measured: Measured) -> SweepRun {
        let report = match measured.invocation.outcome.response() {
            Some(r) => r["sweep"].clone(),
            None => serde_json::json!({"error": format!("{:?}", measured.invocation.outcome)}),
        };
        SweepRun { measured, report }
    }

    /// Cloudflare calls.
    pub fn cf_calls(&self) -> u64 {
        self.measured.cf.total
    }

    /// Cloudflare writes.
    pub fn cf_writes(&self) -> u64 {
        self.measured.cf.writes
    }

    /// AWS calls.
    pub fn aws_calls(&self) -> usize {
        self.measured.aws_total()
    }

    /// Changes made, all kinds.
    pub fn changes(&self) -> u64 {
        self.report["changes"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    }

    /// Whether the sweep found every managed service converged (nothing needed work).
    pub fn all_converged(&self) -> bool {
        let managed = self.report["managed"].as_u64();
        managed.is_some()
            && self.report["converged"].as_u64() == managed
            && self.report["needed_work"].as_u64() == Some(0)
    }
}

/// Adoption: the sweeps that did work, then the one that found everything converged.
#[derive(Debug, Clone)]
pub struct Adoption {
    /// Sweeps until every service was adopted (the converged one not included).
    pub sweeps: Vec<SweepRun>,
    /// The first sweep that found every service converged, if one did.
    pub converged: Option<SweepRun>,
}

impl Adoption {
    /// Cloudflare calls of the adopting sweeps.
    pub fn cf_calls(&self) -> u64 {
        self.sweeps.iter().map(SweepRun::cf_calls).sum()
    }

    /// Cloudflare writes of the adopting sweeps.
    pub fn cf_writes(&self) -> u64 {
        self.sweeps.iter().map(SweepRun::cf_writes).sum()
    }

    /// AWS calls of the adopting sweeps.
    pub fn aws_calls(&self) -> usize {
        self.sweeps.iter().map(SweepRun::aws_calls).sum()
    }

    /// Wall time of the adopting sweeps.
    pub fn wall(&self) -> Duration {
        self.sweeps.iter().map(|s| s.measured.wall).sum()
    }
}

/// Everything the sweep benchmark measured.
pub struct SweepNumbers {
    /// Services seeded.
    pub services: usize,
    /// The options it ran with.
    pub options: SweepOptions,
    /// Adopting them.
    pub adoption: Adoption,
    /// A converged sweep in the warm process, with the AWS latency.
    pub warm: SweepRun,
    /// A converged sweep in a fresh process, with the AWS latency.
    pub cold: SweepRun,
    /// Peak RSS of the adopting process and of the fresh one, KiB.
    pub rss_kb: (Option<u64>, Option<u64>),
}

/// Seeds `services` services named `svc0000`… over `clusters` clusters (`bench-<i>`) with
/// hostnames `svc<i>.<zone>` over `zones`, each allowing `alice@example.com`.
pub async fn seed_services(
    sdk: &aws_config::SdkConfig,
    services: usize,
    clusters: usize,
    zones: &[String],
) {
    seed_services_named(sdk, services, clusters, zones, "").await;
}

/// [`seed_services`], with hostnames `<host_prefix>svc<i>.<zone>`.
pub async fn seed_services_named(
    sdk: &aws_config::SdkConfig,
    services: usize,
    clusters: usize,
    zones: &[String],
    host_prefix: &str,
) {
    let clusters = clusters.max(1);
    let work: Vec<(String, String, String)> = (0..services)
        .map(|i| {
            (
                format!("bench-{}", i % clusters),
                format!("svc{i:04}"),
                format!("{host_prefix}svc{i:04}.{}", zones[i % zones.len()]),
            )
        })
        .collect();
    // The clusters first, one by one (creating a cluster twice at once would race), then
    // the services 8 at a time.
    let first = clusters.min(services);
    for (cluster, service, host) in &work[..first] {
        seed_one(sdk.clone(), cluster.clone(), service.clone(), host.clone()).await;
    }
    for chunk in work[first..].chunks(8) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(c, s, h)| tokio::spawn(seed_one(sdk.clone(), c, s, h)))
            .collect();
        for t in tasks {
            t.await.expect("seeding task");
        }
    }
}

async fn seed_one(sdk: aws_config::SdkConfig, cluster: String, service: String, host: String) {
    crate::seed::seed_service(
        &sdk,
        &cluster,
        &service,
        &[
            ("ecs-tunnels:hostname", host.as_str()),
            ("ecs-tunnels:allow-emails", "alice@example.com"),
        ],
    )
    .await;
}

/// Runs one sweep and measures it.
pub async fn sweep(peers: &Peers) -> Result<SweepRun, String> {
    peers
        .measure(events::scheduled_sweep())
        .await
        .map(SweepRun::new)
}

/// Sweeps until one finds every service converged, or `max_sweeps` sweeps did work.
/// `progress` is told about each sweep.
pub async fn adopt(
    peers: &Peers,
    max_sweeps: usize,
    mut progress: impl FnMut(usize, &SweepRun),
) -> Result<Adoption, String> {
    let mut sweeps = Vec::new();
    while sweeps.len() <= max_sweeps {
        let run = sweep(peers).await?;
        progress(sweeps.len() + 1, &run);
        if run.report.get("error").is_some() {
            return Err(format!("the sweep failed: {}", run.report));
        }
        if run.all_converged() {
            return Ok(Adoption {
                sweeps,
                converged: Some(run),
            });
        }
        sweeps.push(run);
    }
    Ok(Adoption {
        sweeps,
        converged: None,
    })
}

/// The whole benchmark: seed, adopt, then a converged sweep with the AWS latency in the
/// warm process and in a fresh one. `progress` gets a line now and then.
pub async fn run(
    opts: SweepOptions,
    mut progress: impl FnMut(&str),
) -> Result<SweepNumbers, String> {
    let mut env: Vec<(&str, String)> = opts.org_env();
    // No cloudflared runs here, and the sweep does not wait for one: records are
    // published as soon as Access and the configuration exist (the sweep's cost is
    // what is measured, not the sidecar's gate).
    env.push(("ECS_TUNNELS_PUBLISH", "immediately".into()));
    if let Some(n) = opts.sweep_max_calls {
        env.push(("ECS_TUNNELS_SWEEP_MAX_CALLS", n.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let peers = Peers::start(
        &opts.binary,
        SimOptions {
            zones: opts.zones.clone(),
            page_cap: opts.page_cap,
            server_shapes: true,
            ..SimOptions::default()
        },
        &env,
    )
    .await?;
    let seeding = std::time::Instant::now();
    if opts.accounts == 0 {
        seed_services(&peers.sdk, opts.services, opts.clusters, &opts.zones).await;
    } else {
        // The same number of services in every account and region, each spoke's with
        // its own hostnames (`a<k>-svc<i>.<zone>`); the names repeat across spokes.
        let spokes: Vec<(String, String)> = opts
            .account_ids()
            .into_iter()
            .flat_map(|a| opts.regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect();
        let each = opts.services / spokes.len().max(1);
        for (k, (account, region)) in spokes.iter().enumerate() {
            let sdk = crate::seed::sdk_in_account(&peers.sdk, account, region).await;
            let zones: Vec<String> = opts.zones.clone();
            seed_services_named(&sdk, each, opts.clusters, &zones, &format!("a{k}-")).await;
        }
    }
    progress(&format!(
        "seeded {} services in {} clusters{} in {:.1} s",
        opts.services,
        opts.clusters,
        if opts.accounts == 0 {
            String::new()
        } else {
            format!(
                " in each of {} accounts × {} regions",
                opts.accounts,
                opts.regions.len()
            )
        },
        seeding.elapsed().as_secs_f64()
    ));

    let f = peers.spawn().await?;
    let adoption = adopt(&peers, opts.max_sweeps, |i, run| {
        progress(&format!(
            "sweep {i}: {} Cloudflare calls ({} writes), {} AWS calls, {} changes, {} of {} converged, {:.1} s",
            run.cf_calls(),
            run.cf_writes(),
            run.aws_calls(),
            run.changes(),
            run.report["converged"],
            run.report["managed"],
            run.measured.wall.as_secs_f64()
        ))
    })
    .await?;
    peers.proxy.set_latency(opts.aws_latency);
    let warm = sweep(&peers).await?;
    let rss_warm = f.peak_rss_kb();
    stop(f).await;
    let f = peers.spawn().await?;
    let cold = sweep(&peers).await?;
    let rss_cold = f.peak_rss_kb();
    stop(f).await;
    Ok(SweepNumbers {
        services: opts.services,
        options: opts,
        adoption,
        warm,
        cold,
        rss_kb: (rss_warm, rss_cold),
    })
}

async fn stop(f: FunctionProcess) {
    f.stop().await;
}

/// `1000` → `1,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Issue 11's sweep rows: `[operation, target, measured]` for adopting the services and
/// for a converged sweep with the AWS latency.
pub fn issue_rows(s: &SweepNumbers) -> Vec<[String; 3]> {
    let n = thousands(s.services as u64);
    let a = &s.adoption;
    let per = a.cf_calls() as f64 / s.services.max(1) as f64;
    let budget = s
        .options
        .sweep_max_calls
        .map_or("the default budget".to_string(), |b| {
            format!("a budget of {b} calls")
        });
    let adoption = match &a.converged {
        Some(_) => format!(
            "{per:.1} calls a service ({} calls, {} writes, {} AWS calls in {} sweeps at {budget}, {:.0} s)",
            thousands(a.cf_calls()),
            thousands(a.cf_writes()),
            thousands(a.aws_calls() as u64),
            a.sweeps.len(),
            a.wall().as_secs_f64()
        ),
        None => format!(
            "⚠ not all adopted after {} sweeps: {per:.1} calls a service so far",
            a.sweeps.len()
        ),
    };
    let converged = |r: &SweepRun| {
        format!(
            "{} AWS calls, {:.1} s, {} Cloudflare calls",
            r.aws_calls(),
            r.measured.wall.as_secs_f64(),
            r.cf_calls()
        )
    };
    vec![
        [
            format!("adopting {n} already-tagged services through the sweep"),
            "≤ 10 calls a service".into(),
            adoption,
        ],
        [
            format!(
                "converged sweep of {n} services, {} ms per AWS call",
                s.options.aws_latency.as_millis()
            ),
            "≤ 250 AWS calls; ≤ 30 s".into(),
            format!(
                "warm process: {}; fresh process: {}",
                converged(&s.warm),
                converged(&s.cold)
            ),
        ],
    ]
}

impl SweepNumbers {
    /// What a converged sweep's calls are made of, by operation: AWS in a warm and a
    /// fresh process, and Cloudflare in a warm one.
    pub fn print_converged_calls(&self) {
        use super::sim_log::describe_counts;
        println!(
            "converged sweep, warm process: AWS {}",
            describe_counts(&self.warm.measured.aws)
        );
        println!(
            "converged sweep, fresh process: AWS {}",
            describe_counts(&self.cold.measured.aws)
        );
        println!(
            "converged sweep, warm process: Cloudflare {}",
            describe_counts(&self.warm.measured.cf.by_operation())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
