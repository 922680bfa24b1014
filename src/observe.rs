//! Reads what exists for one service, and resolves the spec's names (zones, groups,
//! policies, IdPs) to Cloudflare ids. Every read filters by ownership markers; nothing
//! here writes.

use crate::cloudflare::{AppQuery, DnsQuery, Zone};
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

/// Reads everything that exists for the service. `thorough` also lists all reusable
/// policies, to find leftovers of a crash or a race (used after any write).
pub async fn observe(
    deps: &Deps,
    ctx: &PlanContext,
    target: Option<&Target>,
    thorough: bool,
) -> Result<Observed, ReconcileError> {
    let cf = &deps.cf;
    let tunnel_name = ctx.owner.tunnel_name(&ctx.svc);
    let app_name = ctx.owner.access_app_name(&ctx.svc);
    let (tunnels, apps, stored) = futures::try_join!(
        async {
            cf.find_tunnel_by_name(&tunnel_name)
                .await
                .map_err(ReconcileError::from)
        },
        async {
            cf.list_access_apps(&AppQuery {
                name: Some(app_name.clone()),
                ..Default::default()
            })
            .await
            .map_err(ReconcileError::from)
        },
        async {
            deps.tokens
                .get(&ctx.svc)
                .await
                .map_err(ReconcileError::from)
        },
    )?;
    let tunnel = tunnels;
    let app = apps.into_iter().find(|a| a.name == app_name);

    let stored_value = stored.as_ref().map(|p| p.value.clone());
    let token = stored.map(|p| {
        // With Secrets Manager, its own protocol owns unfinished rotations.
        let rotation = match deps.tokens.rotates_itself() {
            true => None,
            false => p.tags.get(crate::aws::token_store::ROTATION_TAG).cloned(),
        };
        StoredToken::of(&p, &ctx.owner, rotation)
    });
    // Is the stored token the one Cloudflare serves? (One read; it catches a rotation
    // interrupted anywhere, two rotations racing, or a teardown that revoked the secret
    // and then died.)
    let mut token = token;
    if let (Some(t), Some(tun), Some(value)) =
        (token.as_mut(), tunnel.as_ref(), stored_value.as_ref())
    {
        if t.tunnel_id.as_deref() == Some(tun.id.as_str()) {
            t.matches_cloudflare = Some(crate::token::same_token(
                &cf.tunnel_token(&tun.id).await?,
                value,
            ));
        }
    }

    let policy_name = ctx.owner.policy_name(&ctx.svc);
    let config_fut = async {
        match &tunnel {
            Some(t) => cf
                .get_tunnel_config(&t.id)
                .await
                .map_err(ReconcileError::from),
            None => Ok(None),
        }
    };
    let policies_fut = async {
        let app_linked: Vec<_> = app
            .iter()
            .flat_map(|a| a.policies.iter())
            .filter(|p| p.name.as_deref() == Some(policy_name.as_str()))
            .collect();
        if thorough || app.is_none() {
            let all = cf.list_reusable_policies().await?;
            return Ok::<_, ReconcileError>(
                all.into_iter().filter(|p| p.name == policy_name).collect(),
            );
        }
        let mut out = Vec::new();
        for p in app_linked {
            if let Some(full) = cf.get_reusable_policy(&p.id).await? {
                out.push(full);
            }
        }
        Ok(out)
    };
    let (config, policies) = futures::try_join!(config_fut, policies_fut)?;

    // DNS: our records in every zone this service touches, and whatever sits at a target
    // hostname we do not yet have a record for.
    let zones = deps.zones().await?;
    let mut zone_ids: BTreeSet<String> = match target {
        Some(t) => t.hosts.iter().map(|h| h.zone_id.clone()).collect(),
        // Tearing down: our records may be anywhere (the config and app may be gone).
        None => zones.iter().map(|z| z.id.clone()).collect(),
    };
    let seen_hosts = config
        .iter()
        .flat_map(|c| c.ingress.iter().filter_map(|r| r.hostname.clone()))
        .chain(app.iter().flat_map(|a| {
            std::iter::once(a.domain.clone()).chain(a.destinations.iter().map(|d| d.uri.clone()))
        }));
    for h in seen_hosts {
        if let Some(z) = zone_for(&h.to_ascii_lowercase(), &zones) {
            zone_ids.insert(z.id.clone());
        }
    }
    let marker = ctx.owner.dns_comment(&ctx.svc);
    let ours = try_join_all(zone_ids.iter().map(|z| {
        let q = DnsQuery {
            comment_startswith: Some(marker.clone()),
            ..Default::default()
        };
        async move {
            cf.list_dns_records(z, &q).await.map(|rs| {
                rs.into_iter()
                    .map(|record| ObservedRecord {
                        zone_id: z.clone(),
                        record,
                    })
                    .collect::<Vec<_>>()
            })
        }
    }))
    .await?;
    let mut records: Vec<ObservedRecord> = ours
        .into_iter()
        .flatten()
        .filter(|r| r.record.comment.as_deref() == Some(marker.as_str()))
        .collect();
    let missing: Vec<_> = target
        .iter()
        .flat_map(|t| t.hosts.iter())
        .filter(|h| !records.iter().any(|r| same_host(&r.record.name, &h.name)))
        .collect();
    let at_hosts = try_join_all(missing.iter().map(|h| {
        let q = DnsQuery {
            name: Some(h.name.clone()),
            ..Default::default()
        };
        async move {
            cf.list_dns_records(&h.zone_id, &q).await.map(|rs| {
                rs.into_iter()
                    .map(|record| ObservedRecord {
                        zone_id: h.zone_id.clone(),
                        record,
                    })
                    .collect::<Vec<_>>()
            })
        }
    }))
    .await?;
    records.extend(at_hosts.into_iter().flatten());

    // Access apps of others at our hostnames (only where our app does not cover them),
    // whatever the access mode: the hostname must not be served by an app we do not own.
    // One paged list, matched on domain and destinations here.
    let covers = |a: &crate::cloudflare::AccessApp, host: &str| {
        same_host(&a.domain, host) || a.destinations.iter().any(|d| same_host(&d.uri, host))
    };
    let needs_app_check: Vec<_> = target
        .iter()
        .flat_map(|t| t.hosts.iter())
        .filter(|h| !app.as_ref().is_some_and(|a| covers(a, &h.name)))
        .collect();
    let apps_at_hosts: Vec<crate::cloudflare::AccessApp> = if needs_app_check.is_empty() {
        vec![]
    } else {
        cf.list_access_apps(&AppQuery::default())
            .await?
            .into_iter()
            .filter(|a| needs_app_check.iter().any(|h| covers(a, &h.name)))
            .collect()
    };

    Ok(Observed {
        tunnel,
        config,
        app,
        apps_at_hosts,
        policies,
        records,
        token,
    })
}
