//! The command line: `plan`, `apply`, `sweep`, `rotate` and `doctor`. Same reconcile as
//! the Lambda door.
//!
//! Exit codes: 0 every service is as its tags say (or the plan was printed, or `doctor`
//! found nothing wrong); 1 a service needs a person (bad tags, a conflict, a sidecar
//! `doctor` finds a problem with); 3 a transient failure (retry later); 2 usage errors
//! (from clap) and a misconfigured install.

mod doctor;

use crate::cause::Cause;
use crate::config::Config;
use crate::context::Deps;
use crate::doors::run::{managed_services, reconcile_many};
use crate::ownership::ServiceId;
use crate::reconcile::{Mode, Outcome, State};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use tracing::Instrument;

/// Expose private ECS services through Cloudflare Tunnel and Access, by tagging them.
#[derive(Parser, Debug)]
#[command(name = "ecs-tunnels", version, about, long_about = None)]
pub struct Cli {
    /// Log what is done (to stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Organization install: the AWS account (12 digits) the command is about; every
    /// covered account when left out.
    #[arg(long, global = true)]
    pub account: Option<String>,
    /// Organization install: the AWS region the command is about; every covered region
    /// when left out.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what would change for one service or all of them; writes nothing.
    Plan(Target),
    /// Make the changes for one service or all of them.
    Apply(Target),
    /// Rotate tunnel secrets: one service now, or every service whose period has elapsed.
    Rotate {
        /// Cluster name or ARN.
        #[arg(long, requires = "service")]
        cluster: Option<String>,
        /// Service name or ARN: rotate it now, due or not.
        #[arg(long, conflicts_with = "all")]
        service: Option<String>,
        /// Every managed service whose rotation is due (what the schedule does).
        #[arg(long)]
        all: bool,
        /// The token may be known to someone else: also drop every live connection, so
        /// nothing holding the old token stays connected (a brief outage until the new
        /// tasks connect).
        #[arg(long, requires = "service")]
        compromised: bool,
        /// Only list what is due.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Why a service's cloudflared sidecar is not connecting: checks its task
    /// definition (container, TUNNEL_TOKEN, command, origin port) and execution role, and
    /// reads the tunnel's connections. Exits 1 when something is wrong.
    Doctor {
        /// Cluster name or ARN.
        #[arg(long)]
        cluster: Option<String>,
        /// Service name or ARN.
        #[arg(long)]
        service: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reconcile every managed service in the covered clusters (ECS_TUNNELS_CLUSTERS).
    Sweep {
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which services.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["service", "all"])))]
pub struct Target {
    /// Cluster name or ARN.
    #[arg(long, requires = "service")]
    pub cluster: Option<String>,
    /// Service name or ARN.
    #[arg(long, conflicts_with = "all")]
    pub service: Option<String>,
    /// Every managed service in the covered clusters.
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit code: a service needs a person.
pub const EXIT_NEEDS_ATTENTION: u8 = 1;
/// Exit code: misconfigured install or usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: transient failure.
pub const EXIT_RETRY: u8 = 3;

/// Which services a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Which {
    /// Every managed service in the covered clusters.
    All,
    /// One service.
    One(ServiceId),
}

/// `--cluster C --service S`, a service ARN, or `--all`; a usage error otherwise.
fn which(cluster: Option<&str>, service: Option<&str>, all: bool) -> Result<Which, String> {
    match (service, all) {
        (None, true) => Ok(Which::All),
        (Some(s), false) => ServiceId::from_arn(s)
            .or_else(|| cluster.map(|c| ServiceId::new(crate::ownership::cluster_name(c), s)))
            .map(Which::One)
            .ok_or_else(|| {
                format!("give --cluster with the service name {s:?} (or the service's full ARN)")
            }),
        _ => Err("give --cluster C --service S, or --all".into()),
    }
}

/// Runs the CLI. The arguments are checked first, so a usage error (exit 2) is found
/// before the environment is read or anything is called.
pub async fn run(cli: Cli) -> ExitCode {
    let selection = match &cli.command {
        Command::Plan(t) | Command::Apply(t) => {
            which(t.cluster.as_deref(), t.service.as_deref(), t.all).map(Some)
        }
        Command::Rotate {
            cluster,
            service,
            all,
            ..
        } => which(cluster.as_deref(), service.as_deref(), *all).map(Some),
        Command::Doctor {
            cluster, service, ..
        } => which(cluster.as_deref(), Some(service.as_str()), false).map(Some),
        Command::Sweep { .. } => Ok(None),
    };
    let selection = match selection {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let deps = match Deps::build(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(if e.transient { EXIT_RETRY } else { EXIT_USAGE });
        }
    };
    let scopes = match narrowed_scopes(&deps, cli.account.as_deref(), cli.region.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let selection = match selection.map(|w| in_scope(&deps, w, scopes.as_deref())) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Some(Ok(w)) => Some(w),
        None => None,
    };
    if let Command::Sweep { dry_run, json } = &cli.command {
        let mode = if *dry_run { Mode::Plan } else { Mode::Apply };
        let limits = crate::sweep::SweepLimits::from_config(&deps.config, None);
        let cause = Cause::cli("sweep");
        // Without --account/--region the sweep covers the organization itself (one
        // Cloudflare listing for every spoke, unreachable spokes skipped).
        let targets = match scopes {
            None => vec![deps.clone()],
            Some(_) => match spoke_deps(&deps, scopes.as_deref()).await {
                Ok(t) => t,
                Err(code) => return code,
            },
        };
        let mut worst = 0;
        for target in &targets {
            let swept = crate::sweep::sweep(target, mode, &limits, None, &cause)
                .instrument(cause.run_span())
                .await;
            worst = worst.max(print_sweep(swept, *json));
        }
        return ExitCode::from(worst);
    }
    let Some(selection) = selection else {
        unreachable!("only sweep has no selection")
    };
    if let (Command::Doctor { json, .. }, Which::One(id)) = (&cli.command, &selection) {
        return match deps.for_service(id).await {
            Ok(d) => doctor::run(&d, id, *json).await,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(if e.is_transient() {
                    EXIT_RETRY
                } else {
                    EXIT_NEEDS_ATTENTION
                })
            }
        };
    }
    if let Command::Rotate {
        compromised,
        dry_run,
        json,
        ..
    } = &cli.command
    {
        return rotate(
            &deps,
            scopes.as_deref(),
            &selection,
            *compromised,
            *dry_run,
            *json,
        )
        .instrument(Cause::cli("rotate").run_span())
        .await;
    }
    let (mode, json, command) = match &cli.command {
        Command::Plan(t) => (Mode::Plan, t.json, "plan"),
        Command::Apply(t) => (Mode::Apply, t.json, "apply"),
        Command::Sweep { .. } | Command::Rotate { .. } | Command::Doctor { .. } => {
            unreachable!("handled above")
        }
    };
    let work = match selection {
        Which::All => {
            let mut work = Vec::new();
            for target in &match spoke_deps(&deps, scopes.as_deref()).await {
                Ok(t) => t,
                Err(code) => return code,
            } {
                match managed_services(target).await {
                    Ok(w) => work.extend(
                        w.into_iter()
                            .map(|(svc, a)| (svc.in_scope(target.scope.clone()), a)),
                    ),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_RETRY);
                    }
                }
            }
            work
        }
        Which::One(id) => vec![(id, None)],
    };
    run_services(&deps, work, mode, json, command).await
}

/// The accounts and regions `--account` and `--region` name (`None`: neither was given).
/// A usage error in a single-account install, or for an account or region the hub does
/// not cover.
async fn narrowed_scopes(
    deps: &Deps,
    account: Option<&str>,
    region: Option<&str>,
) -> Result<Option<Vec<crate::ownership::Scope>>, String> {
    if account.is_none() && region.is_none() {
        return Ok(None);
    }
    let Some(spokes) = &deps.spokes else {
        return Err("--account and --region choose a spoke of an organization install; this install serves its own account only (ECS_TUNNELS_SPOKE_ROLE is not set)".into());
    };
    if let Some(a) = account {
        if crate::ownership::Scope::parse(a, "x").is_none() {
            return Err(format!("--account {a:?} is not a 12-digit AWS account id"));
        }
    }
    let regions = spokes.settings.regions_or(&deps.region);
    if let Some(r) = region {
        if !regions.iter().any(|x| x == r) {
            return Err(format!(
                "--region {r}: not a region this hub covers (ECS_TUNNELS_REGIONS: {})",
                regions.join(" ")
            ));
        }
    }
    let scopes: Vec<crate::ownership::Scope> = match account {
        Some(a) => regions
            .iter()
            .filter(|r| region.is_none_or(|x| x == r.as_str()))
            .map(|r| crate::ownership::Scope::new(a, r.clone()))
            .collect(),
        None => spokes
            .scopes()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| region.is_none_or(|x| x == s.region))
            .collect(),
    };
    if let Some(why) = scopes
        .iter()
        .find_map(|s| spokes.settings.refuses(s, &deps.region))
    {
        return Err(why);
    }
    Ok(Some(scopes))
}

/// One service as the install names it: in an organization install, in the account and
/// region its ARN or `--account`/`--region` give (exactly one of them).
fn in_scope(
    deps: &Deps,
    which: Which,
    scopes: Option<&[crate::ownership::Scope]>,
) -> Result<Which, String> {
    let Which::One(id) = which else {
        return Ok(which);
    };
    if !deps.is_hub() {
        return Ok(Which::One(id));
    }
    if id.scope.is_some() {
        return Ok(Which::One(id));
    }
    match scopes {
        Some([one]) => Ok(Which::One(id.in_scope(Some(one.clone())))),
        _ => Err(format!(
            "{id}: an organization install needs the service's account and region: give --account and --region, or the service's full ARN"
        )),
    }
}

/// The dependencies of each account and region to act in: the install's own, or (in an
/// organization install) each covered spoke's, or those `--account`/`--region` chose. A
/// spoke that cannot be reached ends the command with its error.
async fn spoke_deps(
    deps: &Deps,
    scopes: Option<&[crate::ownership::Scope]>,
) -> Result<Vec<Deps>, ExitCode> {
    let Some(spokes) = &deps.spokes else {
        return Ok(vec![deps.clone()]);
    };
    let all = match scopes {
        Some(s) => s.to_vec(),
        // Every spoke: the sweep and the rotation go through them themselves.
        None => match spokes.scopes().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(EXIT_RETRY));
            }
        },
    };
    let mut out = Vec::new();
    for scope in &all {
        match deps.for_scope(scope).await {
            Ok(d) => out.push(d),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(if e.transient {
                    EXIT_RETRY
                } else {
                    EXIT_NEEDS_ATTENTION
                }));
            }
        }
    }
    Ok(out)
}

/// Prints a sweep's report; its exit code.
fn print_sweep(
    swept: Result<crate::sweep::SweepReport, crate::error::ReconcileError>,
    json: bool,
) -> u8 {
    {
        match swept {
            Ok(report) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                } else {
                    println!(
                        "sweep: {} services, {} managed, {} converged, {} needed work ({} orphaned), {} Cloudflare calls ({} writes, {} rate-limited), {} ms{}",
                        report.services_seen, report.managed, report.converged, report.needed_work, report.orphans,
                        report.cloudflare_calls, report.cloudflare_writes, report.rate_limited, report.duration_ms,
                        if report.complete { String::new() } else { format!("; incomplete, {} left for the next sweep", report.remaining) }
                    );
                    for o in &report.outcomes {
                        println!("{}", describe(o));
                    }
                    for e in &report.errors {
                        println!("error: {e}");
                    }
                }
                if !report.errors.is_empty() {
                    EXIT_NEEDS_ATTENTION
                } else if !report.complete {
                    EXIT_RETRY
                } else {
                    0
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_RETRY
            }
        }
    }
}

/// Reconciles `work` as a person asked (`command`), prints the outcomes, and says how it
/// went.
async fn run_services(
    deps: &Deps,
    work: Vec<crate::doors::run::Work>,
    mode: Mode,
    json: bool,
    command: &str,
) -> ExitCode {
    // A person asked: the cause of every change (and of a token's creation) is them.
    let cause = Cause::cli(command);
    let asks = work
        .iter()
        .map(|(svc, _)| {
            let ask = crate::reconcile::Ask {
                cause: cause.clone(),
                // A person waits for the sidecar of a service whose token `apply` writes,
                // as the event door does (no follow-up queue here: the sweep is next).
                wait_for_connector: true,
                ..Default::default()
            };
            (svc.clone(), ask)
        })
        .collect();
    let outcomes = reconcile_many(deps, work, mode, &asks).await;
    if json {
        let stats = deps.cf.stats();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"outcomes": outcomes, "cloudflare_calls": stats})
            )
            .unwrap_or_default()
        );
    } else {
        for o in &outcomes {
            println!("{}", describe(o));
        }
    }
    exit_code(&outcomes)
}

async fn rotate(
    deps: &Deps,
    scopes: Option<&[crate::ownership::Scope]>,
    selection: &Which,
    compromised: bool,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    use crate::rotate::{rotate_due, rotate_service, Reason};
    let outcomes = match selection {
        Which::One(id) => {
            let reason = if compromised {
                Reason::Compromised
            } else {
                Reason::Manual
            };
            vec![rotate_service(deps, id, reason, true, dry_run).await]
        }
        Which::All => {
            let targets = match scopes {
                // Every account and region (an organization install goes through them).
                None => vec![deps.clone()],
                Some(_) => match spoke_deps(deps, scopes).await {
                    Ok(t) => t,
                    Err(code) => return code,
                },
            };
            let mut all = Vec::new();
            for target in &targets {
                match rotate_due(target, dry_run).await {
                    Ok(o) => all.extend(o),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_RETRY);
                    }
                }
            }
            all
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "rotations": outcomes }))
                .unwrap_or_default()
        );
    } else {
        for o in &outcomes {
            let what = match (&o.error, o.rotated, o.due, dry_run) {
                (Some(e), ..) => format!("error: {e}"),
                (None, true, _, _) => "rotated".to_string(),
                (None, false, true, true) => "due".to_string(),
                _ => "not due".to_string(),
            };
            println!(
                "{}: {what} (last rotated {})",
                o.service,
                o.last_rotated.as_deref().unwrap_or("never")
            );
        }
    }
    if outcomes.iter().any(|o| o.error.is_some() && !o.transient) {
        ExitCode::from(EXIT_NEEDS_ATTENTION)
    } else if outcomes.iter().any(|o| o.transient) {
        ExitCode::from(EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    }
}

fn describe(o: &Outcome) -> String {
    let mut line = format!(
        "{}: {}",
        o.service,
        serde_json::to_value(o.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    if let Some(t) = &o.tunnel_id {
        line.push_str(&format!(" (tunnel {t})"));
    }
    if let Some(x) = &o.exposed {
        line.push_str(&format!(
            "\n  exposed by {} at {}",
            x.exposed_by,
            x.exposed_at.as_deref().unwrap_or("an unrecorded time")
        ));
    }
    if let Some(e) = &o.error {
        line.push_str(&format!("\n  {e}"));
    }
    if let Some(e) = &o.status_error {
        line.push_str(&format!("\n  the status tag could not be written: {e}"));
    }
    for c in &o.changes {
        let detail = serde_json::to_value(c).ok().map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("kind");
            }
            v.to_string()
        });
        line.push_str(&format!(
            "\n  {} {}",
            c.kind(),
            detail.filter(|d| d != "{}").unwrap_or_default()
        ));
    }
    for host in &o.waiting_for {
        line.push_str(&format!(
            "\n  create_dns {{\"name\":\"{host}\"}} once cloudflared has connected the tunnel"
        ));
    }
    if let Some(n) = o.connectors {
        line.push_str(&format!("\n  cloudflared connectors: {n}"));
    }
    line
}

fn exit_code(outcomes: &[Outcome]) -> ExitCode {
    if outcomes
        .iter()
        .any(|o| o.state == State::Error || o.status_error.is_some())
    {
        ExitCode::from(EXIT_NEEDS_ATTENTION)
    } else if outcomes.iter().any(|o| o.state == State::Pending) {
        ExitCode::from(EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    }
}
