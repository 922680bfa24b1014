//! Reads what exists for one service, and resolves the spec's names (zones, groups,
//! policies, IdPs) to Cloudflare ids. Every read filters by ownership markers; nothing
//! here writes.

use crate::cloudflare::{AccessPolicy, AppQuery, DnsQuery, Zone};
use crate::context::Deps;
use crate::error::ReconcileError;
use crate::model::{
    own_policy_rules, Observed, ObservedRecord, PlanContext, StoredToken, Target, TargetAccess,
    TargetHost,
};
use crate::normalise::same_host;
use crate::spec::{
    AccessSpec, Spec, SpecError, TAG_ALLOW_GROUPS, TAG_HOSTNAME, TAG_IDPS, TAG_POLICIES,
};
use futures::future::try_join_all;
use std::collections::BTreeSet;

type IdNames = Vec<(String, String)>;

/// Account-wide lists that names in tags resolve against (groups, reusable policies,
/// IdPs), each fetched at most once per `Lookups` and only when a spec needs it. A sweep
/// shares one across all services.
#[derive(Default)]
pub struct Lookups {
    groups: tokio::sync::OnceCell<IdNames>,
    policies: tokio::sync::OnceCell<IdNames>,
    idps: tokio::sync::OnceCell<IdNames>,
}

impl Lookups {
    /// Starts with the reusable policies already known (a sweep lists them anyway).
    pub fn with_policies(policies: &[crate::cloudflare::AccessPolicy]) -> Self {
        let l = Lookups::default();
        let _ = l.policies.set(
            policies
                .iter()
                .map(|p| (p.id.clone(), p.name.clone()))
                .collect(),
        );
        l
    }

    async fn groups(&self, deps: &Deps, needed: bool) -> Result<IdNames, ReconcileError> {
        once(&self.groups, needed, || async {
            Ok(deps
                .cf
                .list_access_groups()
                .await?
                .into_iter()
                .map(|x| (x.id, x.name))
                .collect())
        })
        .await
    }

    async fn policies(&self, deps: &Deps, needed: bool) -> Result<IdNames, ReconcileError> {
        once(&self.policies, needed, || async {
            Ok(deps
                .cf
                .list_reusable_policies()
                .await?
                .into_iter()
                .map(|x| (x.id, x.name))
                .collect())
        })
        .await
    }

    async fn idps(&self, deps: &Deps, needed: bool) -> Result<IdNames, ReconcileError> {
        once(&self.idps, needed, || async {
            Ok(deps
                .cf
                .list_identity_providers()
                .await?
                .into_iter()
                .map(|x| (x.id, x.name))
                .collect())
        })
        .await
    }
}

/// Fetches a list into `cell` the first time it is needed.
async fn once<F, Fut>(
    cell: &tokio::sync::OnceCell<IdNames>,
    needed: bool,
    fetch: F,
) -> Result<IdNames, ReconcileError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<IdNames, crate::cloudflare::CfError>>,
{
    if !needed {
        return Ok(vec![]);
    }
    Ok(cell.get_or_try_init(fetch).await?.clone())
}

/// The zone a hostname belongs to: the longest zone name it ends with.
pub fn zone_for<'a>(host: &str, zones: &'a [Zone]) -> Option<&'a Zone> {
    zones
        .iter()
        .filter(|z| host == z.name || host.ends_with(&format!(".{}", z.name)))
        .max_by_key(|z| z.name.len())
}

/// Resolves a valid spec into ids. Unknown zones, groups, policies or IdPs are errors
/// naming the tag.
pub async fn resolve_target(
    deps: &Deps,
    spec: &Spec,
    lookups: &Lookups,
) -> Result<Target, ReconcileError> {
    let zones = deps.zones().await?;
    let mut errors = Vec::new();
    let mut hosts = Vec::new();
    for h in &spec.hostnames {
        let zone = zone_for(h, &zones);
        let allowed = deps.config.allowed_zones.as_ref();
        match zone {
            None => errors.push(SpecError {
                key: TAG_HOSTNAME.into(),
                message: format!("{h} is not in any zone the Cloudflare API token can see: add the zone to Cloudflare, or give the token access to it"),
            }),
            Some(z) if allowed.is_some_and(|a| !a.contains(&z.name.to_ascii_lowercase())) => errors.push(SpecError {
                key: TAG_HOSTNAME.into(),
                message: format!("{h} is in zone {}, which this install does not allow (ECS_TUNNELS_ALLOWED_ZONES: {})", z.name, allowed.map(|a| a.join(" ")).unwrap_or_default()),
            }),
            Some(z) => hosts.push(TargetHost { name: h.clone(), zone_id: z.id.clone() }),
        }
    }
    let access = match &spec.access {
        AccessSpec::Public => None,
        AccessSpec::Required(rules) => {
            let (groups, policies, idps) = futures::try_join!(
                lookups.groups(deps, !rules.groups.is_empty()),
                lookups.policies(deps, !rules.policies.is_empty()),
                lookups.idps(deps, !rules.idps.is_empty()),
            )?;
            let group_ids = resolve_refs(
                &rules.groups,
                &groups,
                TAG_ALLOW_GROUPS,
                "Access group",
                &mut errors,
            );
            let extra_policy_ids = resolve_refs(
                &rules.policies,
                &policies,
                TAG_POLICIES,
                "reusable Access policy",
                &mut errors,
            );
            let idp_ids = resolve_refs(
                &rules.idps,
                &idps,
                TAG_IDPS,
                "identity provider",
                &mut errors,
            );
            Some(TargetAccess {
                own_rules: own_policy_rules(&rules.emails, &rules.email_domains, &group_ids),
                extra_policy_ids,
                idp_ids,
                session_duration: rules.session_duration.clone(),
            })
        }
    };
    if errors.is_empty() {
        Ok(Target {
            hosts,
            origin: spec.origin.clone(),
            access,
            rotate_every: spec.rotate_every,
        })
    } else {
        Err(ReconcileError::Invalid(errors))
    }
}

fn resolve_refs(
    wanted: &[String],
    known: &[(String, String)],
    key: &str,
    what: &str,
    errors: &mut Vec<SpecError>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for w in wanted {
        let by_id = known.iter().find(|(id, _)| id == w);
        let by_name: Vec<_> = known.iter().filter(|(_, name)| name == w).collect();
        match (by_id, by_name.as_slice()) {
            (Some((id, _)), _) | (None, [(id, _)]) => ids.push(id.clone()),
            (None, []) => errors.push(SpecError {
                key: key.into(),
                message: format!(
                    "{w} is not the id or name of any {what} in the Cloudflare account"
                ),
            }),
            (None, _) => errors.push(SpecError {
                key: key.into(),
                message: format!("{w} names more than one {what}: use its id instead"),
            }),
        }
    }
    ids
}

/// What the caller knows that narrows the reads. Every read is selected by the
/// service's own names (tunnel by name, Access application by name or exact domain, DNS
/// by hostname or our marker, in the zones of hostnames we know); nothing scans the
/// account, except the reusable policies when a policy of ours may have been left
/// unlinked (`find_unlinked_policies`).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// The hostnames are those of the last converged reconcile (the status digest
    /// says so): our Access application's domain is the first target hostname, and
    /// one read by that domain finds it, or whatever else is there.
    pub hosts_unchanged: bool,
    /// A run may have stopped between creating our reusable policy and linking it (the
    /// status says a run did not finish, a custom resource, or an apply hit a race):
    /// when our application is missing, the reusable policies are listed to find it.
    pub find_unlinked_policies: bool,
    /// What the sweep's bulk lists saw for this service (its own reads never reach
    /// these: a record of ours in a zone of no hostname we know, an unlinked policy).
    pub seen: Seen,
}

/// Objects of one service that a bulk list found.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Zones holding DNS records with the service's marker.
    pub record_zones: BTreeSet<String>,
    /// Reusable policies with the service's policy name.
    pub policies: Vec<AccessPolicy>,
    /// Compare the stored token with the one Cloudflare serves even without a rotation
    /// mark (the sweep found, or could not rule out, a secret changed out of band).
    pub verify_token: bool,
    /// The service's tunnel and the Access applications with its name or at its
    /// hostnames, from lists that hold every one of them: the first pass reads neither
    /// again. (Lists are a little older than the reads; a write that meets what they
    /// missed is a race, and the next pass reads everything.)
    pub listed: Option<Listed>,
}

/// A service's tunnel and applications, from complete lists.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// Our tunnel, if listed.
    pub tunnel: Option<crate::cloudflare::Tunnel>,
    /// Applications with our name or at one of the hostnames.
    pub apps: Vec<crate::cloudflare::AccessApp>,
}

/// Our own policy as the application embeds it (no read of the policy itself).
fn embedded_policy(p: &crate::cloudflare::AppPolicy) -> AccessPolicy {
    AccessPolicy {
        id: p.id.clone(),
        name: p.name.clone().unwrap_or_default(),
        decision: p.decision.clone().unwrap_or_default(),
        include: p.include.clone(),
        exclude: p.exclude.clone(),
        require: p.require.clone(),
        session_duration: None,
        reusable: p.reusable,
        app_count: None,
    }
}

fn in_zone(zone_id: &str, records: Vec<crate::cloudflare::DnsRecord>) -> Vec<ObservedRecord> {
    records
        .into_iter()
        .map(|record| ObservedRecord {
            zone_id: zone_id.to_string(),
            record,
        })
        .collect()
}

/// Our records (by marker) in each of `zones`, one read per zone.
async fn records_by_marker(
    deps: &Deps,
    zones: impl Iterator<Item = String>,
    marker: &str,
) -> Result<Vec<ObservedRecord>, ReconcileError> {
    let reads = try_join_all(zones.map(|z| async move {
        let q = DnsQuery {
            comment_startswith: Some(marker.to_string()),
            ..Default::default()
        };
        deps.cf
            .list_dns_records(&z, &q)
            .await
            .map(|rs| in_zone(&z, rs))
    }))
    .await?;
    Ok(reads.into_iter().flatten().collect())
}

/// Whatever is at each target hostname, and our records in its zone, in one read per
/// hostname (`name` OR our marker).
async fn records_at_hosts(
    deps: &Deps,
    target: Option<&Target>,
    marker: &str,
) -> Result<Vec<ObservedRecord>, ReconcileError> {
    let hosts = target.map(|t| t.hosts.as_slice()).unwrap_or_default();
    let reads = try_join_all(hosts.iter().map(|h| async move {
        let q = DnsQuery {
            name: Some(h.name.clone()),
            comment_startswith: Some(marker.to_string()),
            match_any: true,
            ..Default::default()
        };
        deps.cf
            .list_dns_records(&h.zone_id, &q)
            .await
            .map(|rs| in_zone(&h.zone_id, rs))
    }))
    .await?;
    Ok(reads.into_iter().flatten().collect())
}

/// Access applications by our name and, for target hostnames, by exact domain.
async fn apps_by_names(
    deps: &Deps,
    app_name: &str,
    by_name: bool,
    domains: &[String],
) -> Result<Vec<crate::cloudflare::AccessApp>, ReconcileError> {
    let queries: Vec<AppQuery> = by_name
        .then(|| AppQuery {
            name: Some(app_name.to_string()),
            ..Default::default()
        })
        .into_iter()
        .chain(domains.iter().map(|d| AppQuery {
            domain: Some(d.clone()),
            ..Default::default()
        }))
        .collect();
    let lists = try_join_all(queries.iter().map(|q| deps.cf.list_access_apps(q))).await?;
    let mut apps: Vec<crate::cloudflare::AccessApp> = Vec::new();
    for a in lists.into_iter().flatten() {
        if !apps.iter().any(|x| x.id == a.id) {
            apps.push(a);
        }
    }
    Ok(apps)
}

fn zone_of(zones: &[Zone], host: &str) -> Option<String> {
    zone_for(&host.to_ascii_lowercase(), zones).map(|z| z.id.clone())
}

/// Reads what exists for the service, in at most three rounds of concurrent reads:
/// (1) the tunnel, the token, the Access application(s) and the DNS at each target
/// hostname; (2) the tunnel's configuration, the token Cloudflare serves (only while a
/// rotation mark is on ours), our records in zones of hostnames only the application
/// names, and, rarely, the reusable policies; (3) our records in zones of hostnames only
/// the configuration names.
pub async fn observe(
    deps: &Deps,
    ctx: &PlanContext,
    target: Option<&Target>,
    hints: &Hints,
) -> Result<Observed, ReconcileError> {
    let cf = &deps.cf;
    let tunnel_name = ctx.owner.tunnel_name(&ctx.svc);
    let app_name = ctx.owner.access_app_name(&ctx.svc);
    let marker = ctx.owner.dns_comment(&ctx.svc);
    let policy_name = ctx.owner.policy_name(&ctx.svc);
    let target_hosts: Vec<String> = target
        .map(|t| t.hosts.iter().map(|h| h.name.clone()).collect())
        .unwrap_or_default();
    // With the hostnames unchanged, our application sits at the first one: one read
    // finds it or whoever took the domain. Otherwise read by name and at every hostname.
    let quick_app = hints.hosts_unchanged && !target_hosts.is_empty();
    let domains: Vec<String> = if quick_app {
        target_hosts[..1].to_vec()
    } else {
        target_hosts.clone()
    };

    // Round 1 (the tunnel and applications come from the sweep's lists when it has them).
    let listed = hints.seen.listed.as_ref();
    let (tunnel, stored, mut apps, mut records) = futures::try_join!(
        async {
            match listed {
                Some(l) => Ok(l.tunnel.clone()),
                None => cf
                    .find_tunnel_by_name(&tunnel_name)
                    .await
                    .map_err(ReconcileError::from),
            }
        },
        async {
            deps.tokens
                .get(&ctx.svc)
                .await
                .map_err(ReconcileError::from)
        },
        async {
            match listed {
                Some(l) => Ok(l.apps.clone()),
                None => apps_by_names(deps, &app_name, !quick_app, &domains).await,
            }
        },
        records_at_hosts(deps, target, &marker),
    )?;
    if listed.is_none() && quick_app && !apps.iter().any(|a| a.name == app_name) {
        // Not where the digest said (deleted, or moved by hand): look by name too.
        apps.extend(apps_by_names(deps, &app_name, true, &[]).await?);
    }
    let app = our_app(ctx, &apps).cloned();
    let stored_value = stored.as_ref().map(|p| p.value.clone());
    let mut token = stored.map(|p| stored_token(deps, &ctx.owner, &p));

    // Round 2.
    let zones = deps.zones().await?;
    let read_zones: BTreeSet<String> = target
        .iter()
        .flat_map(|t| t.hosts.iter().map(|h| h.zone_id.clone()))
        .collect();
    let app_zones: BTreeSet<String> = app
        .iter()
        .flat_map(|a| {
            std::iter::once(a.domain.clone()).chain(a.destinations.iter().map(|d| d.uri.clone()))
        })
        .filter_map(|h| zone_of(&zones, &h))
        .chain(hints.seen.record_zones.iter().cloned())
        .filter(|z| !read_zones.contains(z))
        .collect();
    let wants_own_policy = target
        .and_then(|t| t.access.as_ref())
        .is_some_and(|a| !a.own_rules.is_empty());
    let scan_policies = wants_own_policy
        && (hints.find_unlinked_policies
            || (app.is_none() && (tunnel.is_some() || token.is_some())));
    // Is the stored token the one Cloudflare serves? Read only while a rotation mark is
    // on it (a rotation or a teardown that may have changed the secret and died), or
    // when the sweep asks.
    let check_token = token
        .as_ref()
        .is_some_and(|t| t.rotation.is_some() || hints.seen.verify_token)
        .then(|| tunnel.as_ref().map(|t| t.id.clone()))
        .flatten()
        .filter(|id| token.as_ref().and_then(|t| t.tunnel_id.as_deref()) == Some(id.as_str()));
    let (config, served, extra_records, scanned) = futures::try_join!(
        async {
            match &tunnel {
                // A teardown learns the hostnames from the application when it has
                // one; the configuration is read for a public service.
                Some(t) if target.is_some() || app.is_none() => cf
                    .get_tunnel_config(&t.id)
                    .await
                    .map_err(ReconcileError::from),
                _ => Ok(None),
            }
        },
        async {
            match &check_token {
                Some(id) => Ok(Some(cf.tunnel_token(id).await?)),
                None => Ok::<_, ReconcileError>(None),
            }
        },
        records_by_marker(deps, app_zones.iter().cloned(), &marker),
        async {
            if !scan_policies {
                return Ok(vec![]);
            }
            Ok::<_, ReconcileError>(
                cf.list_reusable_policies()
                    .await?
                    .into_iter()
                    .filter(|p| p.name == policy_name)
                    .collect(),
            )
        },
    )?;
    if let (Some(t), Some(served), Some(value)) = (token.as_mut(), served, stored_value) {
        t.matches_cloudflare = Some(crate::token::same_token(&served, &value));
    }
    let mut policies = scanned;
    policies.extend(hints.seen.policies.iter().cloned());
    records.extend(extra_records);

    // Round 3: zones only the configuration names.
    let config_zones: BTreeSet<String> = config
        .iter()
        .flat_map(|c| c.ingress.iter().filter_map(|r| r.hostname.clone()))
        .filter_map(|h| zone_of(&zones, &h))
        .filter(|z| !read_zones.contains(z) && !app_zones.contains(z))
        .collect();
    if !config_zones.is_empty() {
        records.extend(records_by_marker(deps, config_zones.into_iter(), &marker).await?);
    }

    Ok(assemble(
        ctx,
        target,
        Found {
            tunnel,
            apps,
            config,
            token,
            records,
            policies,
        },
    ))
}

/// The application with our name; of two, the one carrying our tag (the other is a
/// conflict to report only when none of ours is there).
fn our_app<'a>(
    ctx: &PlanContext,
    apps: &'a [crate::cloudflare::AccessApp],
) -> Option<&'a crate::cloudflare::AccessApp> {
    let app_name = ctx.owner.access_app_name(&ctx.svc);
    apps.iter()
        .find(|a| a.name == app_name && ctx.owner.owns_access_app(&a.name, &a.tags))
        .or_else(|| apps.iter().find(|a| a.name == app_name))
}

/// Describes a stored token with its tags, the way every reader does: with Secrets
/// Manager its own protocol owns unfinished rotations, so its rotation mark is not ours.
pub fn stored_token(
    deps: &Deps,
    owner: &crate::ownership::Owner,
    p: &crate::aws::token_store::StoredParameter,
) -> StoredToken {
    let rotation = match deps.tokens.rotates_itself() {
        true => None,
        false => p.tags.get(crate::aws::token_store::ROTATION_TAG).cloned(),
    };
    StoredToken::of(p, owner, rotation)
}

/// What was read for one service, by its own reads or from a sweep's bulk lists.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Our tunnel, by name.
    pub tunnel: Option<crate::cloudflare::Tunnel>,
    /// Access applications with our name or at a target hostname.
    pub apps: Vec<crate::cloudflare::AccessApp>,
    /// The tunnel's configuration.
    pub config: Option<crate::cloudflare::TunnelConfig>,
    /// The stored token.
    pub token: Option<StoredToken>,
    /// DNS records at target hostnames or with our marker (duplicates allowed).
    pub records: Vec<ObservedRecord>,
    /// Reusable policies with our policy name, besides those our application embeds.
    pub policies: Vec<AccessPolicy>,
}

/// Builds what exists for one service from what was read, the same way whatever fed it:
/// our application by name, others' applications at the target hostnames, our policies
/// (embedded in our application, or listed), our records and whatever sits at a target
/// hostname.
pub fn assemble(ctx: &PlanContext, target: Option<&Target>, found: Found) -> Observed {
    let marker = ctx.owner.dns_comment(&ctx.svc);
    let policy_name = ctx.owner.policy_name(&ctx.svc);
    let target_hosts: Vec<&str> = target
        .map(|t| t.hosts.iter().map(|h| h.name.as_str()).collect())
        .unwrap_or_default();
    let app = our_app(ctx, &found.apps).cloned();
    let covers = |a: &crate::cloudflare::AccessApp, host: &str| {
        same_host(&a.domain, host) || a.destinations.iter().any(|d| same_host(&d.uri, host))
    };
    let mut apps_at_hosts: Vec<crate::cloudflare::AccessApp> = Vec::new();
    for a in found.apps {
        if app.as_ref().is_none_or(|x| x.id != a.id)
            && target_hosts.iter().any(|h| covers(&a, h))
            && !apps_at_hosts.iter().any(|x| x.id == a.id)
        {
            apps_at_hosts.push(a);
        }
    }
    let mut policies: Vec<AccessPolicy> = app
        .iter()
        .flat_map(|a| a.policies.iter())
        .filter(|p| p.name.as_deref() == Some(policy_name.as_str()))
        .map(embedded_policy)
        .collect();
    for p in found.policies {
        if p.name == policy_name && !policies.iter().any(|x| x.id == p.id) {
            policies.push(p);
        }
    }
    // One record may come from two reads; our marker is a prefix of other services'.
    let mut seen_ids = BTreeSet::new();
    let records = found
        .records
        .into_iter()
        .filter(|r| {
            r.record.comment.as_deref() == Some(marker.as_str())
                || target_hosts.iter().any(|h| same_host(h, &r.record.name))
        })
        .filter(|r| seen_ids.insert(r.record.id.clone()))
        .collect();
    Observed {
        tunnel: found.tunnel,
        config: found.config,
        app,
        apps_at_hosts,
        policies,
        records,
        token: found.token,
    }
}
