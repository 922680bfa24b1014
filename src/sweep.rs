//! The sweep: events are hints, the sweep is the truth. It gathers desired and observed
//! state in bulk, finds the services that differ (drift, missed events) and the objects
//! that carry our owner id but belong to no managed service (orphans), and runs the same
//! per-service reconcile on those alone. A covered cluster that is gone (not listed, or
//! its services not found) has its objects collected once `DescribeClusters` confirms it
//! INACTIVE or MISSING; a cluster that merely fails to list is skipped and reported.
//!
//! Budget: a converged account costs a fixed handful of paged list calls (tunnels by our
//! name prefix, Access apps, reusable policies, our DNS records per zone) plus a bounded
//! slice of tunnel configurations (no list endpoint exists for them): the services are
//! split into slots of `ECS_TUNNELS_SWEEP_CONFIG_CHECKS`, and the slot checked advances
//! with each sweep interval, so every configuration is verified within
//! `ceil(services / checks)` intervals. Work stops when the sweep's call budget
//! (`ECS_TUNNELS_SWEEP_MAX_CALLS`) or the Lambda deadline is near, or on a 429; the
//! report says so, and the next sweep continues: converged services cost nothing, so it
//! picks up exactly the work left.

use crate::aws::ecs::{is_cluster_name, ClusterState, ServiceInfo, CLUSTER_NOT_FOUND};
use crate::aws::token_store::ListedToken;
use crate::aws::AwsError;
use crate::cloudflare::{AccessApp, AccessPolicy, AppQuery, DnsQuery, Tunnel, TunnelQuery};
use crate::context::Deps;
use crate::diff::diff;
use crate::error::ReconcileError;
use crate::model::{render_config, ObservedRecord, PlanContext, StoredToken};
use crate::observe::Seen;
use crate::observe::{resolve_target, Lookups};
use crate::ownership::{Owner, Scope, ServiceId};
use crate::reconcile::{reconcile_asked, Ask, Mode, Outcome, State};
use crate::spec::{Desired, TAG_HOSTNAME, TAG_STATUS};
use crate::status;
use futures::future::{join_all, try_join_all};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn, Instrument};

/// How much one sweep may spend.
#[derive(Debug, Clone)]
pub struct SweepLimits {
    /// Cloudflare calls one sweep may make (the account allows 1,200 per 5 minutes).
    pub max_calls: u64,
    /// Stop starting work after this instant (the Lambda deadline minus a margin).
    pub deadline: Option<Instant>,
    /// Tunnel configurations checked per sweep.
    pub config_checks: usize,
    /// How often the sweep runs (advances the configuration slot).
    pub interval: Duration,
}

impl SweepLimits {
    /// Limits from the configuration.
    pub fn from_config(cfg: &crate::config::Config, deadline: Option<Instant>) -> Self {
        SweepLimits {
            max_calls: cfg.sweep_max_calls,
            deadline,
            config_checks: cfg.sweep_config_checks.max(1),
            interval: cfg.sweep_interval,
        }
    }
}

/// What a sweep saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// ECS services listed in the covered clusters.
    pub services_seen: usize,
    /// Services tagged for exposure.
    pub managed: usize,
    /// Managed services found exactly as their tags say.
    pub converged: usize,
    /// Of those, services whose status tag was rewritten to say so (with the digest of
    /// their inputs) without any Cloudflare call.
    pub statuses_refreshed: usize,
    /// Services (managed or orphaned) that needed work.
    pub needed_work: usize,
    /// Services that are gone or untagged (also with their cluster) and still have
    /// owner-marked objects; a service found tagged when its teardown re-reads it is not
    /// counted. Objects of clusters that could not be listed are never counted.
    pub orphans: usize,
    /// Changes made (or planned), by kind.
    pub changes: BTreeMap<String, usize>,
    /// Services that did not converge, and clusters skipped (nothing of them collected),
    /// with why.
    pub errors: Vec<String>,
    /// Cloudflare calls made by this sweep.
    pub cloudflare_calls: u64,
    /// Of which writes.
    pub cloudflare_writes: u64,
    /// 429 answers seen.
    pub rate_limited: u64,
    /// Tunnel configurations read this sweep.
    pub configs_checked: usize,
    /// Sweeps it takes to check every configuration once.
    pub config_cycle_sweeps: usize,
    /// Every service that needed work was handled.
    pub complete: bool,
    /// Services left for the next sweep.
    pub remaining: usize,
    /// Wall time.
    pub duration_ms: u128,
    /// Services that needed work and now are as their tags say.
    pub settled: usize,
    /// Managed services whose tunnel has no cloudflared connection (metric
    /// `ServicesWithoutConnector`).
    pub without_connector: usize,
    /// Accounts and regions (or, in a single-account install, the clusters) skipped
    /// because they could not be read: nothing of them was touched.
    pub skipped: Vec<String>,
    /// Accounts and regions not read this time (skipped or not covered) that have
    /// objects of ours, with how many services' worth: those objects were left alone.
    pub left_unread: Vec<String>,
    /// Outcomes of the services that needed work and did not settle.
    pub outcomes: Vec<Outcome>,
}

/// Everything listed in bulk.
struct Bulk {
    tunnels: BTreeMap<ServiceId, Tunnel>,
    live_tunnel_ids: BTreeSet<String>,
    /// By name; of two with one name, ours.
    apps: BTreeMap<String, AccessApp>,
    /// Every application, as listed.
    all_apps: Vec<AccessApp>,
    policies: Vec<AccessPolicy>,
    records: Vec<ObservedRecord>,
    /// This owner's tokens with their tags; values only of tokens without a tunnel-id tag.
    tokens: BTreeMap<ServiceId, ListedToken>,
}

/// Lists Cloudflare once (tunnels by our name prefix, applications, reusable policies,
/// our records per zone) and the tokens of every spoke read (keys in their scope).
async fn list_bulk(deps: &Deps, spokes: &[Spoke], owner: &Owner) -> Result<Bulk, ReconcileError> {
    let cf = &deps.cf;
    let zones = deps.zones().await?;
    let prefix = owner.dns_comment_prefix();
    let (tunnels, apps, policies, records, tokens) = futures::try_join!(
        async {
            cf.list_tunnels(&TunnelQuery {
                include_prefix: Some(owner.tunnel_prefix()),
                ..Default::default()
            })
            .await
            .map_err(ReconcileError::from)
        },
        async {
            cf.list_access_apps(&AppQuery::default())
                .await
                .map_err(ReconcileError::from)
        },
        async {
            cf.list_reusable_policies()
                .await
                .map_err(ReconcileError::from)
        },
        async {
            try_join_all(zones.iter().map(|z| {
                let q = DnsQuery {
                    comment_startswith: Some(prefix.clone()),
                    ..Default::default()
                };
                async move {
                    cf.list_dns_records(&z.id, &q).await.map(|rs| {
                        rs.into_iter()
                            .map(|record| ObservedRecord {
                                zone_id: z.id.clone(),
                                record,
                            })
                            .collect::<Vec<_>>()
                    })
                }
            }))
            .await
            .map_err(ReconcileError::from)
        },
        async {
            let per_spoke = try_join_all(spokes.iter().map(|sp| async move {
                let mut tokens = sp.deps.tokens.list(owner).await?;
                sp.deps.tokens.read_untagged(&mut tokens).await?;
                Ok::<_, ReconcileError>(
                    tokens
                        .into_iter()
                        .map(|(svc, t)| (svc.in_scope(sp.deps.scope.clone()), t))
                        .collect::<Vec<_>>(),
                )
            }))
            .await?;
            Ok::<_, ReconcileError>(per_spoke.into_iter().flatten().collect::<BTreeMap<_, _>>())
        },
    )?;
    let live_tunnel_ids = tunnels.iter().map(|t| t.id.clone()).collect();
    Ok(Bulk {
        tunnels: tunnels
            .into_iter()
            .filter_map(|t| Some((owner.service_of_tunnel(&t.name)?, t)))
            .collect(),
        live_tunnel_ids,
        apps: apps.iter().fold(BTreeMap::new(), |mut by_name, a| {
            let ours = owner.owns_access_app(&a.name, &a.tags);
            if ours || !by_name.contains_key(&a.name) {
                by_name.insert(a.name.clone(), a.clone());
            }
            by_name
        }),
        all_apps: apps,
        policies,
        records: records
            .into_iter()
            .flatten()
            .filter(|r| owner.owns_dns_comment(r.record.comment.as_deref()))
            .collect(),
        tokens,
    })
}

/// One account and region read by the sweep (a single-account install has one, without
/// a scope): its AWS clients and what ECS listed there.
struct Spoke {
    deps: Deps,
    inventory: Inventory,
}

/// The spoke of a service (by its scope), if it was read.
fn spoke_of<'a>(spokes: &'a [Spoke], svc: &ServiceId) -> Option<&'a Spoke> {
    spokes.iter().find(|sp| sp.deps.scope == svc.scope)
}

/// What to sweep: the install's own account, or every account and region of an
/// organization install, each with its clients or why it cannot be reached (its role
/// assumed at most once per account per process, several accounts at a time). `Err` when
/// the organization's accounts cannot be listed.
#[allow(clippy::type_complexity)]
async fn sweep_targets(
    deps: &Deps,
) -> Result<Vec<(Option<Scope>, Result<Deps, crate::organization::SpokeError>)>, String> {
    let Some(spokes) = deps.spokes.as_ref().filter(|_| deps.scope.is_none()) else {
        return Ok(vec![(deps.scope.clone(), Ok(deps.clone()))]);
    };
    let scopes = spokes.scopes().await.map_err(|e| e.to_string())?;
    Ok(stream::iter(scopes)
        .map(|scope| async move {
            let d = deps.for_scope(&scope).await;
            (Some(scope), d)
        })
        .buffered(8)
        .collect()
        .await)
}

/// The services to work on, in an order fair to every account: round-robin between
/// accounts (each in key order), so a sweep that runs out of budget has done some of
/// every account's work rather than all of one's.
fn fair_order(work: BTreeSet<ServiceId>) -> Vec<ServiceId> {
    let mut by_account: BTreeMap<Option<String>, std::collections::VecDeque<ServiceId>> =
        BTreeMap::new();
    for svc in work {
        by_account
            .entry(svc.scope.as_ref().map(|s| s.account.clone()))
            .or_default()
            .push_back(svc);
    }
    let mut out = Vec::new();
    while !by_account.is_empty() {
        by_account.retain(|_, q| {
            if let Some(svc) = q.pop_front() {
                out.push(svc);
            }
            !q.is_empty()
        });
    }
    out
}

/// The covered clusters as ECS lists them.
#[derive(Default)]
struct Inventory {
    /// Active services of the clusters whose services were all listed.
    infos: Vec<ServiceInfo>,
    /// Clusters whose services were all listed.
    listed: BTreeSet<String>,
    /// Clusters whose services could not be listed, with why.
    unlisted: BTreeMap<String, AwsError>,
}

/// Lists the covered clusters' services. `Err` only when the clusters themselves could
/// not be listed (ListClusters); a cluster whose services fail to list is kept aside.
async fn list_inventory(deps: &Deps) -> Result<Inventory, AwsError> {
    let clusters = match &deps.config.clusters {
        Some(c) => c.clone(),
        None => deps.ecs.list_clusters().await?,
    };
    let listings = join_all(
        clusters
            .iter()
            .map(|c| async move { (c.clone(), deps.ecs.list_services(c).await) }),
    )
    .await;
    let mut inventory = Inventory::default();
    for (cluster, listing) in listings {
        match listing {
            Ok(services) => {
                inventory
                    .infos
                    .extend(services.into_iter().filter(|i| i.is_active()));
                inventory.listed.insert(cluster);
            }
            Err(e) => {
                inventory.unlisted.insert(cluster, e);
            }
        }
    }
    Ok(inventory)
}

/// Which clusters' orphans this sweep may collect, beyond the ones listed whole.
#[derive(Default)]
struct ClusterScope {
    /// Clusters ECS confirms gone (INACTIVE or MISSING): their objects are orphans.
    gone: BTreeSet<String>,
    /// Clusters nothing of which is touched this time, with why (for the report).
    skipped: BTreeMap<String, String>,
}

/// Decides about the clusters of `candidates` that were not listed whole: with every
/// cluster covered any of them, with `ECS_TUNNELS_CLUSTERS` only the clusters it names.
/// One `DescribeClusters` (per 100 clusters) confirms which are gone; an ACTIVE cluster
/// that only failed to list is skipped, as is every cluster when that call fails. Costs
/// nothing when every candidate's cluster was listed.
async fn decide_scope(
    deps: &Deps,
    inventory: &Inventory,
    candidates: &BTreeSet<ServiceId>,
) -> ClusterScope {
    let configured = deps.config.clusters.as_ref();
    let unsure: BTreeSet<String> = candidates
        .iter()
        .map(|s| s.cluster.as_str())
        .filter(|c| !inventory.listed.contains(*c) && is_cluster_name(c))
        .filter(|c| configured.is_none_or(|list| list.iter().any(|l| l == c)))
        .map(str::to_string)
        .collect();
    let mut scope = ClusterScope::default();
    let states = if unsure.is_empty() {
        Ok(BTreeMap::new())
    } else {
        deps.ecs
            .describe_clusters(&unsure.iter().cloned().collect::<Vec<_>>())
            .await
    };
    match states {
        Ok(states) => {
            for cluster in &unsure {
                match states.get(cluster) {
                    Some(ClusterState::Gone) => {
                        scope.gone.insert(cluster.clone());
                    }
                    Some(ClusterState::Active) | None
                        if inventory.unlisted.contains_key(cluster) => {}
                    Some(ClusterState::Active) => {
                        scope.skipped.insert(
                            cluster.clone(),
                            "has objects of ours and was not listed, but ECS says it is ACTIVE"
                                .into(),
                        );
                    }
                    None => {
                        scope.skipped.insert(
                            cluster.clone(),
                            "has objects of ours and was not listed; DescribeClusters said nothing of it"
                                .into(),
                        );
                    }
                    Some(ClusterState::Other(status)) => {
                        scope
                            .skipped
                            .insert(cluster.clone(), format!("is {status}, not gone"));
                    }
                }
            }
        }
        Err(e) => {
            for cluster in &unsure {
                scope
                    .skipped
                    .insert(cluster.clone(), format!("could not be confirmed gone: {e}"));
            }
        }
    }
    for (cluster, e) in &inventory.unlisted {
        // ECS does not know it and nothing of ours is in it: nothing to do.
        let gone_and_empty =
            e.code.as_deref() == Some(CLUSTER_NOT_FOUND) && !unsure.contains(cluster);
        if !scope.gone.contains(cluster) && !gone_and_empty {
            scope
                .skipped
                .entry(cluster.clone())
                .or_insert_with(|| e.to_string());
        }
    }
    scope
}

/// The tunnel id a record points at (`<id>.cfargotunnel.com`), if any.
fn tunnel_of(record: &ObservedRecord) -> Option<&str> {
    record
        .record
        .content
        .strip_suffix(".cfargotunnel.com")
        .filter(|id| !id.is_empty())
}

fn config_slot(count: usize, checks: usize, interval: Duration) -> (usize, usize) {
    let slots = count.div_ceil(checks).max(1);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    ((now / interval.as_secs().max(1)) as usize % slots, slots)
}

/// Runs one sweep over the covered clusters (in an organization install, over every
/// covered account and region); `cause` (the schedule, or a person) is logged with each
/// service's reconcile and recorded on the tokens it creates.
///
/// An organization sweep lists Cloudflare once for all its spokes, and ECS and the token
/// store per spoke. A spoke it cannot reach (its role cannot be assumed, its clusters
/// cannot be listed) is skipped and reported, and nothing of it is collected.
pub async fn sweep(
    deps: &Deps,
    mode: Mode,
    limits: &SweepLimits,
    account_hint: Option<&str>,
    cause: &crate::cause::Cause,
) -> Result<SweepReport, ReconcileError> {
    let started = Instant::now();
    let stats0 = deps.cf.stats();
    let mut report = SweepReport {
        complete: true,
        ..Default::default()
    };

    // Desired: every service of the covered clusters, with tags (10 per DescribeServices),
    // per spoke. Without the list of clusters nothing is known of a spoke, so nothing of
    // it is touched.
    let targets = match sweep_targets(deps).await {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!(
                "{e}: nothing was swept and nothing was collected; the next sweep retries"
            ));
            report.complete = false;
            report.duration_ms = started.elapsed().as_millis();
            warn!(error = %e, "sweep skipped: the accounts to sweep are not known");
            return Ok(report);
        }
    };
    let mut spokes: Vec<Spoke> = Vec::new();
    for (scope, target) in targets {
        let listed = match target {
            Ok(d) => list_inventory(&d)
                .await
                .map(|i| (d, i))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match listed {
            Ok((deps, inventory)) => spokes.push(Spoke { deps, inventory }),
            Err(e) => {
                let what = scope.map_or("the clusters".to_string(), |s| s.to_string());
                warn!(spoke = %what, error = %e, "skipped: nothing of it is swept or collected");
                report.skipped.push(what.clone());
                report.errors.push(format!(
                    "{what}: skipped, nothing of it is swept or collected; the next sweep retries: {e}"
                ));
                report.complete = false;
            }
        }
    }
    if spokes.is_empty() {
        report.duration_ms = started.elapsed().as_millis();
        return Ok(report);
    }
    let by_id: BTreeMap<ServiceId, &ServiceInfo> = spokes
        .iter()
        .flat_map(|sp| {
            sp.inventory.infos.iter().map(|i| {
                (
                    ServiceId::new(i.cluster.clone(), i.name.clone())
                        .in_scope(sp.deps.scope.clone()),
                    i,
                )
            })
        })
        .collect();
    report.services_seen = by_id.len();
    let account = spokes
        .iter()
        .flat_map(|sp| sp.inventory.infos.iter())
        .find_map(|i| i.account_region())
        .map(|(a, _)| a);
    let owner = deps
        .owner(account.as_deref().or(account_hint))
        .map_err(ReconcileError::Setup)?;
    let managed: Vec<(&ServiceId, &ServiceInfo)> = by_id
        .iter()
        .filter(|(_, i)| i.tags.contains_key(TAG_HOSTNAME))
        .map(|(k, v)| (k, *v))
        .collect();
    report.managed = managed.len();

    // Observed, in bulk: Cloudflare once, the tokens per spoke.
    let bulk = list_bulk(deps, &spokes, &owner).await?;
    report.without_connector = managed
        .iter()
        .filter(|(svc, _)| bulk.tunnels.get(*svc).is_some_and(|t| !t.is_connected()))
        .count();
    let lookups = Lookups::with_policies(&bulk.policies);
    let (slot, slots) = config_slot(managed.len(), limits.config_checks, limits.interval);
    report.config_cycle_sweeps = slots;
    let mut work: BTreeSet<ServiceId> = BTreeSet::new();

    let verdicts: Vec<(ServiceId, bool, Result<Verdict, ReconcileError>)> =
        stream::iter(managed.iter().enumerate())
            .map(|(i, (svc, info))| {
                let check_config = i / limits.config_checks == slot;
                let (bulk, lookups, owner) = (&bulk, &lookups, &owner);
                let deps = spoke_of(&spokes, svc).map_or(deps, |sp| &sp.deps);
                let tenant = svc.scope.as_ref().map(|s| s.account.clone());
                crate::cloudflare::with_tenant(tenant, async move {
                    let v = needs_work(deps, owner, svc, info, bulk, lookups, check_config).await;
                    ((*svc).clone(), check_config, v)
                })
            })
            .buffered(crate::doors::run::CONCURRENCY * 2)
            .collect()
            .await;
    for (svc, check_config, verdict) in verdicts {
        match verdict {
            Ok(Verdict::Converged) => report.converged += 1,
            Ok(Verdict::RefreshStatus(value)) => {
                // As the tags say, with a status that does not say so yet (written by an
                // older version, or by a run that stopped after its last write): one
                // ECS write, no Cloudflare call.
                report.converged += 1;
                if mode == Mode::Apply {
                    if let (Some(info), Some(sp)) = (by_id.get(&svc), spoke_of(&spokes, &svc)) {
                        match sp.deps.ecs.tag(&info.arn, TAG_STATUS, &value).await {
                            Ok(()) => report.statuses_refreshed += 1,
                            Err(e) => report
                                .errors
                                .push(format!("{svc}: the status tag could not be written: {e}")),
                        }
                    }
                }
            }
            Ok(Verdict::NeedsWork) => {
                work.insert(svc.clone());
            }
            Err(e) => {
                report.errors.push(format!("{svc}: {e}"));
            }
        }
        if check_config && bulk.tunnels.contains_key(&svc) {
            report.configs_checked += 1;
        }
    }

    // Orphans: owner-marked objects whose service is not managed, in the clusters listed
    // whole and in covered clusters ECS confirms gone, of the spokes read.
    let mut candidates: BTreeSet<ServiceId> = bulk.tunnels.keys().cloned().collect();
    candidates.extend(
        bulk.apps
            .values()
            .filter(|a| owner.owns_access_app(&a.name, &a.tags))
            .filter_map(|a| owner.service_of_access_app(&a.name)),
    );
    candidates.extend(
        bulk.policies
            .iter()
            .filter_map(|p| owner.service_of_policy(&p.name)),
    );
    candidates.extend(
        bulk.records
            .iter()
            .filter_map(|r| owner.service_of_dns_comment(r.record.comment.as_deref()?)),
    );
    candidates.extend(
        bulk.tokens
            .iter()
            .filter(|(_, p)| owner.owns_ssm(&p.tags))
            .map(|(s, _)| s.clone()),
    );
    candidates.extend(
        by_id
            .iter()
            .filter(|(_, i)| !i.tags.contains_key(TAG_HOSTNAME) && i.tags.contains_key(TAG_STATUS))
            .map(|(k, _)| k.clone()),
    );
    // Objects of an account or region not read this time (skipped, or not covered):
    // never collected, only counted.
    let (candidates, unread): (BTreeSet<ServiceId>, BTreeSet<ServiceId>) = candidates
        .into_iter()
        .partition(|s| spoke_of(&spokes, s).is_some());
    if !unread.is_empty() {
        let mut by_scope: BTreeMap<String, usize> = BTreeMap::new();
        for s in &unread {
            let what = s
                .scope
                .as_ref()
                .map_or("no account (a single-account name)".to_string(), |sc| {
                    sc.to_string()
                });
            *by_scope.entry(what).or_default() += 1;
        }
        for (what, n) in by_scope {
            info!(spoke = %what, services = n, "objects of ours in an account or region this sweep did not read: left alone");
            report.left_unread.push(format!("{what}: {n} service(s)"));
        }
    }
    let mut orphans: BTreeSet<ServiceId> = BTreeSet::new();
    let mut skipped_clusters: BTreeSet<(Option<Scope>, String)> = BTreeSet::new();
    let managed_ids: BTreeSet<&ServiceId> = managed.iter().map(|(s, _)| *s).collect();
    for sp in &spokes {
        let mine: BTreeSet<ServiceId> = candidates
            .iter()
            .filter(|s| s.scope == sp.deps.scope)
            .cloned()
            .collect();
        let scope = decide_scope(&sp.deps, &sp.inventory, &mine).await;
        for (cluster, why) in &scope.skipped {
            let at = sp
                .deps
                .scope
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            warn!(cluster = %cluster, reason = %why, "cluster skipped: nothing of it is collected");
            report.errors.push(format!(
                "cluster {cluster}{at}: skipped, nothing of it is collected: {why}"
            ));
            report.complete = false;
            skipped_clusters.insert((sp.deps.scope.clone(), cluster.clone()));
        }
        orphans.extend(
            mine.into_iter()
                .filter(|s| {
                    sp.inventory.listed.contains(&s.cluster) || scope.gone.contains(&s.cluster)
                })
                .filter(|s| !managed_ids.contains(s)),
        );
    }
    report.orphans = orphans.len();

    // DNS records of ours that belong to no managed service and no orphan (an orphan's
    // records go with its teardown, which reads its tags again first) and point at a
    // tunnel missing from the tunnel list. The record may be younger than that list (an
    // event made both meanwhile): one GET of its tunnel decides. Records of a skipped
    // cluster, or of an account or region not read, are left alone.
    let known_comments: BTreeSet<String> = managed
        .iter()
        .map(|(s, _)| *s)
        .chain(orphans.iter())
        .map(|s| owner.dns_comment(s))
        .collect();
    let suspects: Vec<&ObservedRecord> = bulk
        .records
        .iter()
        .filter(|r| !known_comments.contains(r.record.comment.as_deref().unwrap_or("")))
        .filter(|r| {
            r.record
                .comment
                .as_deref()
                .and_then(|c| owner.service_of_dns_comment(c))
                .is_none_or(|s| {
                    !skipped_clusters.contains(&(s.scope.clone(), s.cluster.clone()))
                        && !unread.contains(&s)
                })
        })
        .filter(|r| tunnel_of(r).is_none_or(|t| !bulk.live_tunnel_ids.contains(t)))
        .collect();
    for r in suspects {
        if let Err(e) = remove_dangling(deps, mode, r, &mut report).await {
            report
                .errors
                .push(format!("DNS record {}: {e}", r.record.name));
        }
    }
    work.extend(orphans.iter().cloned());
    report.needed_work = work.len();

    // Work, in a stable order, within the budget.
    let rate_limited_at_start = deps.cf.stats().rate_limited;
    let queue: Vec<ServiceId> = fair_order(work);
    let mut done = 0;
    let hint = account.as_deref().or(account_hint);
    for batch in queue.chunks(crate::doors::run::CONCURRENCY) {
        let spent = deps.cf.stats().total - stats0.total;
        let late = limits.deadline.is_some_and(|d| Instant::now() >= d);
        if spent >= limits.max_calls || late || deps.cf.stats().rate_limited > rate_limited_at_start
        {
            report.complete = false;
            break;
        }
        // Orphans are torn down even without a status tag (both tags may have gone at
        // once); the teardown reads the service first, so one tagged meanwhile is kept.
        let outcomes = join_all(batch.iter().map(|svc| {
            let ask = Ask {
                check_removal: orphans.contains(svc),
                routine: false,
                seen: seen_in_bulk(
                    &bulk,
                    &owner,
                    svc,
                    &by_id
                        .get(svc)
                        .map(|i| crate::spec::tagged_hostnames(&i.tags))
                        .unwrap_or_default(),
                ),
                cause: cause.clone(),
                ..Default::default()
            };
            let tenant = svc.scope.as_ref().map(|s| s.account.clone());
            crate::cloudflare::with_tenant(tenant, async move {
                reconcile_asked(deps, svc, mode, hint, &ask).await
            })
            .instrument(cause.span(svc))
        }))
        .await;
        for outcome in outcomes {
            if orphans.contains(&outcome.service) && outcome.state == State::Ready {
                report.orphans -= 1;
            }
            for c in &outcome.changes {
                *report.changes.entry(c.kind().to_string()).or_default() += 1;
            }
            if let Some(e) = &outcome.error {
                report.errors.push(format!("{}: {e}", outcome.service));
            }
            if let Some(e) = &outcome.status_error {
                report.errors.push(format!(
                    "{}: the status tag could not be written: {e}",
                    outcome.service
                ));
            }
            report.settled += usize::from(settled(&outcome));
            if !settled(&outcome) {
                report.outcomes.push(outcome);
            }
            done += 1;
        }
    }
    report.remaining = queue.len() - done;
    let stats = deps.cf.stats();
    report.cloudflare_calls = stats.total - stats0.total;
    report.cloudflare_writes = stats.writes - stats0.writes;
    report.rate_limited = stats.rate_limited - stats0.rate_limited;
    report.duration_ms = started.elapsed().as_millis();
    info!(
        services_seen = report.services_seen,
        managed = report.managed,
        converged = report.converged,
        needed_work = report.needed_work,
        orphans = report.orphans,
        changes = %serde_json::to_string(&report.changes).unwrap_or_default(),
        errors = report.errors.len(),
        cloudflare_calls = report.cloudflare_calls,
        cloudflare_writes = report.cloudflare_writes,
        rate_limited = report.rate_limited,
        configs_checked = report.configs_checked,
        complete = report.complete,
        remaining = report.remaining,
        duration_ms = report.duration_ms as u64,
        "sweep finished"
    );
    Ok(report)
}

/// Deletes a record found dangling, unless its tunnel exists after all (made after the
/// tunnel list): then the service's own reconcile, or the next sweep, decides.
async fn remove_dangling(
    deps: &Deps,
    mode: Mode,
    r: &ObservedRecord,
    report: &mut SweepReport,
) -> Result<(), ReconcileError> {
    if let Some(tunnel) = tunnel_of(r) {
        if deps.cf.get_tunnel(tunnel).await?.is_some() {
            info!(record = %r.record.name, tunnel_id = tunnel, "DNS record left: its tunnel is younger than the tunnel list");
            return Ok(());
        }
    }
    if mode == Mode::Apply {
        deps.cf.delete_dns_record(&r.zone_id, &r.record.id).await?;
        info!(record = %r.record.name, change = "delete_dns", "orphan DNS record removed");
    }
    *report.changes.entry("delete_dns".into()).or_default() += 1;
    Ok(())
}

/// Whether one managed service differs from its tags, judged from the bulk lists (and
/// its configuration, when it is in this sweep's slice) by the same desired-state
/// builder and the same assembly of what exists as its own reconcile.
async fn needs_work(
    deps: &Deps,
    owner: &Owner,
    svc: &ServiceId,
    info: &ServiceInfo,
    bulk: &Bulk,
    lookups: &Lookups,
    check_config: bool,
) -> Result<Verdict, ReconcileError> {
    let current_status = info.tags.get(TAG_STATUS).cloned().unwrap_or_default();
    let wanted = crate::desired::wanted(deps, info, check_config).await?;
    // Inputs changed since the last converged reconcile (or it recorded none): the
    // configuration is compared now, not taken on trust.
    let check_config = check_config || !wanted.unchanged();
    let error_status = |e: &ReconcileError| {
        if current_status != status::error(&e.to_string()) {
            Verdict::NeedsWork
        } else {
            Verdict::Converged
        }
    };
    let spec = match &wanted.desired {
        Desired::Managed(s) => s,
        Desired::Invalid(errors) => {
            return Ok(error_status(&ReconcileError::Invalid(errors.clone())))
        }
        Desired::NotManaged => return Ok(Verdict::Converged),
    };
    let target = match resolve_target(deps, spec, lookups).await {
        Ok(t) => t,
        Err(e @ ReconcileError::Invalid(_)) => return Ok(error_status(&e)),
        Err(e) => return Err(e),
    };
    let team_name = match target.access {
        Some(_) => deps.team_name().await?,
        None => String::new(),
    };
    let ctx = PlanContext {
        svc: svc.clone(),
        owner: owner.clone(),
        account_id: deps.cf.account_id().to_string(),
        team_name,
        redeploy: Some(crate::model::RedeployTarget::of(info)),
        rotation_function: deps.tokens.rotation_function().map(str::to_string),
        publish: deps.config.publish.mode,
        cause: Default::default(),
    };
    let tunnel = bulk.tunnels.get(svc).cloned();
    let app = bulk.apps.get(&owner.access_app_name(svc)).cloned();
    let config = match &tunnel {
        Some(t) if check_config && !wanted.origin_unread => {
            deps.cf.get_tunnel_config(&t.id).await?
        }
        // Not compared this time: taken as what the tags ask for.
        Some(_) => Some(render_config(
            &target,
            &ctx.team_name,
            app.as_ref().map(|a| a.aud.as_str()),
        )),
        None => None,
    };
    let listed = bulk.tokens.get(svc);
    let token = listed.map(|p| listed_token(deps, owner, p));
    // In this sweep's slice, the stored token is compared with the one Cloudflare
    // serves too: a secret changed out of band (no mark of ours) is found within one
    // configuration cycle. (The only token values the sweep reads.)
    let token = match (token, &tunnel) {
        (Some(mut t), Some(tun)) if check_config && t.tunnel_id.as_deref() == Some(&tun.id) => {
            let value = match listed.and_then(|p| p.value.clone()) {
                Some(v) => Some(v),
                None => deps.tokens.value(svc).await?,
            };
            if let Some(value) = value {
                let served = deps.cf.tunnel_token(&tun.id).await?;
                t.matches_cloudflare = Some(crate::token::same_token(&served, &value));
            }
            Some(t)
        }
        (t, _) => t,
    };
    let marker = owner.dns_comment(svc);
    let observed = crate::observe::assemble(
        &ctx,
        Some(&target),
        crate::observe::Found {
            tunnel: tunnel.clone(),
            apps: app.into_iter().collect(),
            config,
            token,
            records: bulk
                .records
                .iter()
                .filter(|r| r.record.comment.as_deref() == Some(marker.as_str()))
                .cloned()
                .collect(),
            policies: bulk.policies.clone(),
        },
    );
    let plan = diff(&ctx, Some(&target), &observed);
    // A record held for cloudflared's first connection: the reconcile publishes it (the
    // tunnel connected) or says the service is still waiting.
    let Some(tunnel) = tunnel.filter(|_| plan.is_empty() && plan.held.is_empty()) else {
        return Ok(Verdict::NeedsWork);
    };
    let connected = tunnel.is_connected();
    let ours = status::ready_tunnel(&current_status) == Some(tunnel.id.as_str());
    if !connected
        && (ours && !status::connectors_changed(&current_status, true)
            || current_status.starts_with(crate::status::SIDECAR_ERROR))
    {
        // Live until now, or diagnosed before: its reconcile records the loss (and,
        // once the grace period is over, says what is wrong with the sidecar).
        return Ok(if ours {
            Verdict::NeedsWork
        } else {
            Verdict::Converged
        });
    }
    let status_ok =
        ours && wanted.unchanged() && !status::connectors_changed(&current_status, connected);
    Ok(if status_ok {
        Verdict::Converged
    } else {
        let connectors = match status::ready_connectors(&current_status) {
            Some(n) if ours && !status::connectors_changed(&current_status, connected) => n,
            _ if connected => crate::publish::count_connectors(deps, &tunnel.id)
                .await?
                .max(1),
            _ => 0,
        };
        Verdict::RefreshStatus(status::ready(&tunnel.id, connectors, Some(&wanted.digest)))
    })
}

/// What the sweep makes of one managed service.
#[derive(Debug)]
enum Verdict {
    /// As its tags say, and its status says so.
    Converged,
    /// As its tags say; its status should read this.
    RefreshStatus(String),
    /// Needs its reconcile.
    NeedsWork,
}

/// What the bulk lists saw of one service, for its reconcile: the zones of its records,
/// its reusable policies (its own reads cannot find an unlinked one cheaply), and its
/// tunnel and the applications with its name or at its hostnames (`hosts`, from its tag),
/// which its first pass then does not read again.
fn seen_in_bulk(bulk: &Bulk, owner: &Owner, svc: &ServiceId, hosts: &[String]) -> Seen {
    let marker = owner.dns_comment(svc);
    let policy_name = owner.policy_name(svc);
    let app_name = owner.access_app_name(svc);
    let at_hosts = |a: &AccessApp| {
        std::iter::once(a.domain.as_str())
            .chain(a.destinations.iter().map(|d| d.uri.as_str()))
            .any(|h| hosts.iter().any(|x| crate::normalise::same_host(h, x)))
    };
    Seen {
        listed: Some(crate::observe::Listed {
            tunnel: bulk.tunnels.get(svc).cloned(),
            apps: bulk
                .all_apps
                .iter()
                .filter(|a| a.name == app_name || at_hosts(a))
                .cloned()
                .collect(),
        }),
        record_zones: bulk
            .records
            .iter()
            .filter(|r| r.record.comment.as_deref() == Some(marker.as_str()))
            .map(|r| r.zone_id.clone())
            .collect(),
        policies: bulk
            .policies
            .iter()
            .filter(|p| p.name == policy_name)
            .cloned()
            .collect(),
        // The sweep's view of the token may be what made it pick the service.
        verify_token: true,
    }
}

/// What the sweep knows of a listed token. The tunnel it is for comes from its tunnel-id
/// tag (in our account: tunnel ids are unique, and a token is only ever written for a
/// tunnel of the account it was made in), or, for a token written before that tag existed,
/// from its value. A tag set ahead of an overwrite that never happened comes with the
/// redeploy mark, which the plan never finds converged: the service is reconciled in full.
fn listed_token(deps: &Deps, owner: &Owner, p: &ListedToken) -> StoredToken {
    let mut token = crate::observe::stored_token(deps, owner, &p.to_stored());
    if let Some(tunnel) = p.tagged_tunnel() {
        token.tunnel_id = Some(tunnel.to_string());
        token.account = Some(deps.cf.account_id().to_string());
    }
    token
}

/// True when an outcome left the service as its tags say.
pub fn settled(o: &Outcome) -> bool {
    matches!(o.state, State::Ready | State::Removed | State::NotManaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_takes_turns_between_accounts() {
        let svc = |account: &str, name: &str| {
            ServiceId::new("prod", name).in_scope(Some(Scope::new(account, "eu-west-1")))
        };
        // A noisy account with five services to work on, two quiet ones with one each.
        let mut work: BTreeSet<ServiceId> = (0..5)
            .map(|i| svc("111111111111", &format!("s{i}")))
            .collect();
        work.insert(svc("222222222222", "a"));
        work.insert(svc("333333333333", "b"));
        let order: Vec<String> = fair_order(work).iter().map(ServiceId::key).collect();
        // Within the first three turns every account has had one; then the noisy one.
        assert_eq!(
            order,
            vec![
                "111111111111/eu-west-1/prod/s0",
                "222222222222/eu-west-1/prod/a",
                "333333333333/eu-west-1/prod/b",
                "111111111111/eu-west-1/prod/s1",
                "111111111111/eu-west-1/prod/s2",
                "111111111111/eu-west-1/prod/s3",
                "111111111111/eu-west-1/prod/s4",
            ]
        );
        // A single-account install keeps key order.
        let plain: BTreeSet<ServiceId> = ["b", "a"].map(|n| ServiceId::new("prod", n)).into();
        assert_eq!(
            fair_order(plain)
                .iter()
                .map(ServiceId::key)
                .collect::<Vec<_>>(),
            vec!["prod/a", "prod/b"]
        );
    }
}
