//! Runs a plan in the contract's safe order, with independent calls concurrent:
//!
//! 1. DNS records that no longer belong (cutting a route is always safe);
//! 2. the tunnel ∥ (own policy → Access application): Access exists before any DNS record;
//! 3. the tunnel configuration (carrying the app's AUD) ∥ the token;
//! 4. DNS records;
//! 5. Access application and policy deletions (a policy that applications we do not own
//!    use is kept and reported);
//! 6. tunnel teardown (secret revoked, connections dropped, tunnel deleted) → token.
//!    Steps 1–5 and step 6 are two chains: a failure in one stops it, not the other,
//!    and the run reports the failure afterwards (so Lambda retries);
//! 7. a new deployment if a token was written;
//! 8. the token store's rotation schedule (Secrets Manager).
//!
//! Every step is idempotent and tolerates a concurrent run doing the same thing: a
//! duplicate tunnel name or Access domain is adopted if it is ours, and a policy create
//! that failed after it was written is found by name and adopted. A DNS repair patches
//! only the fields ecs-tunnels owns.

use crate::cloudflare::{AccessAppBody, AccessPolicyBody, AppQuery, CfError, DnsQuery, PolicyLink};
use crate::context::Deps;
use crate::diff::{desired_record, Change, Plan};
use crate::error::ReconcileError;
use crate::model::{render_config, Observed, PlanContext, Target};
use crate::secret::Secret;
use futures::future::{join_all, try_join_all};
use std::time::Duration;
use tracing::{info, warn};

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Kinds of the changes made, in order.
    pub changes: Vec<&'static str>,
    /// The tunnel id, if one exists now.
    pub tunnel_id: Option<String>,
    /// The Access application created or updated, if any.
    pub access_app: Option<crate::reconcile::AppRef>,
    /// A write met a concurrent run's work (a tunnel name, Access domain or DNS record
    /// taken, a policy or token found made): what was observed is stale, so the caller
    /// reads again before trusting the result.
    pub raced: bool,
    /// Policies planned for deletion that Cloudflare refused to delete because other
    /// applications use them (named by their users): kept and reported.
    pub kept: Vec<crate::diff::KeptPolicy>,
}

struct Progress {
    tunnel_id: Option<String>,
    token: Option<Secret>,
    aud: Option<String>,
    policy_id: Option<String>,
    app: Option<crate::reconcile::AppRef>,
    raced: bool,
    kept: Vec<crate::diff::KeptPolicy>,
}

fn log_change(ctx: &PlanContext, change: &Change) {
    info!(service = %ctx.svc, change = change.kind(), detail = %serde_json::to_string(change).unwrap_or_default(), "change applied");
}

/// Applies `plan` for one service.
pub async fn apply(
    deps: &Deps,
    ctx: &PlanContext,
    target: Option<&Target>,
    observed: &Observed,
    plan: &Plan,
) -> Result<Applied, ReconcileError> {
    let mut done: Vec<&'static str> = Vec::new();
    let mut p = Progress {
        tunnel_id: observed.tunnel.as_ref().map(|t| t.id.clone()),
        token: None,
        aud: observed.app.as_ref().map(|a| a.aud.clone()),
        policy_id: None,
        app: None,
        raced: false,
        kept: vec![],
    };
    let own_policy_linked = observed.app.as_ref().and_then(|a| {
        a.policies
            .iter()
            .find(|lp| observed.policies.iter().any(|op| op.id == lp.id))
            .map(|lp| lp.id.clone())
    });
    p.policy_id = own_policy_linked.or_else(|| observed.policies.first().map(|x| x.id.clone()));
    let changes = &plan.changes;

    // Two chains that a failure in the other must not stop: DNS deletions → Access
    // (with everything a present plan builds in between) → Access deletions; and the
    // tunnel teardown → token. The tunnel chain runs second, keeping the contract's
    // teardown order whenever the first chain succeeds.
    let access = dns_and_access(deps, ctx, target, plan, &mut p, &mut done).await;
    let tunnel = tunnel_teardown(deps, ctx, plan, &mut p, &mut done).await;
    match (access, tunnel) {
        (Err(e), Err(other)) => {
            warn!(service = %ctx.svc, error = %other, "the tunnel teardown failed too; the next run retries it");
            return Err(e);
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => return Err(e),
        (Ok(()), Ok(())) => {}
    }

    // 7. Redeploy, then clear the marker that says one is owed (kept when the service's
    // deployment controller refuses: its owner must deploy, and the next run says so).
    let mut by_owner = None;
    if let Some(c) = changes
        .iter()
        .find(|c| matches!(c, Change::Redeploy | Change::ClearRedeployMark))
    {
        if let (Change::Redeploy, Some(r)) = (c, &ctx.redeploy) {
            by_owner = redeploy(deps, &r.service)
                .await?
                .map(|controller| (r.service.clone(), controller));
        }
        if by_owner.is_none() {
            deps.tokens
                .remove_tag(&ctx.svc, crate::aws::token_store::REDEPLOY_TAG)
                .await?;
            log_change(ctx, c);
            done.push(c.kind());
        }
    }
    if let Some(c @ Change::FinishRotation { reason, rotated }) = changes
        .iter()
        .find(|c| matches!(c, Change::FinishRotation { .. }))
    {
        let mut rotated = *rotated;
        if reason == "compromised" {
            if let Some(tid) = p.tunnel_id.as_deref() {
                if !rotated {
                    // The rotation died before its PATCH: the possibly leaked secret is
                    // still valid, so rotate now rather than only drop connections. The
                    // mark is taken over first, so others leave this rotation to us.
                    use crate::aws::token_store::{RotationMark, ROTATION_TAG};
                    let mark = RotationMark::value(reason, std::time::SystemTime::now());
                    deps.tokens
                        .add_tags(&ctx.svc, &[(ROTATION_TAG.to_string(), mark)])
                        .await?;
                    let changed = change_tunnel_secret(
                        deps,
                        &ctx.svc,
                        tid,
                        true,
                        ctx.redeploy.as_ref().map(|r| &r.service),
                    )
                    .await;
                    if let Err(e) = changed {
                        crate::rotate::release_mark(deps, &ctx.svc, reason).await;
                        return Err(e);
                    }
                    rotated = true;
                } else {
                    deps.cf.delete_tunnel_connections(tid).await?;
                }
            }
        }
        if rotated {
            deps.tokens
                .add_tags(&ctx.svc, &crate::aws::token_store::rotated_now(reason))
                .await?;
        }
        deps.tokens
            .remove_tag(&ctx.svc, crate::aws::token_store::ROTATION_TAG)
            .await?;
        log_change(ctx, c);
        done.push(c.kind());
    }
    if let Some(c @ Change::RecordRotationPeriod { every }) = changes
        .iter()
        .find(|c| matches!(c, Change::RecordRotationPeriod { .. }))
    {
        use crate::aws::token_store::ROTATE_EVERY_TAG;
        deps.tokens
            .add_tags(&ctx.svc, &[(ROTATE_EVERY_TAG.to_string(), every.clone())])
            .await?;
        log_change(ctx, c);
        done.push(c.kind());
    }
    // 8. The token store's rotation schedule, last: a schedule Secrets Manager refuses
    // must not keep the hostname from being published.
    if let Some(c @ Change::ScheduleRotation { expression }) = changes
        .iter()
        .find(|c| matches!(c, Change::ScheduleRotation { .. }))
    {
        deps.tokens.schedule_rotation(&ctx.svc, expression).await?;
        log_change(ctx, c);
        done.push(c.kind());
    }
    if let Some((svc, controller)) = by_owner {
        // The plan did not know the controller (it changed since the service was
        // read): this run ends here, with what the owner must do.
        return Err(ReconcileError::Redeploy(crate::model::redeploy_notice(
            &svc,
            &controller,
        )));
    }
    Ok(Applied {
        changes: done,
        tunnel_id: p.tunnel_id,
        access_app: p.app,
        raced: p.raced,
        kept: p.kept,
    })
}

/// DNS deletions, then what a present plan builds (tunnel ∥ Access, config ∥ token,
/// DNS records), then Access deletions. Stops at its first failure.
async fn dns_and_access(
    deps: &Deps,
    ctx: &PlanContext,
    target: Option<&Target>,
    plan: &Plan,
    p: &mut Progress,
    done: &mut Vec<&'static str>,
) -> Result<(), ReconcileError> {
    let changes = &plan.changes;
    let pick = |f: fn(&Change) -> bool| changes.iter().filter(move |c| f(c)).collect::<Vec<_>>();
    // 1. DNS deletions: each one is tried; any failure stops this chain (the Access
    // application must outlive every record of ours that may still route to it).
    let dns_deletes = pick(|c| matches!(c, Change::DeleteDns { .. }));
    let results = join_all(dns_deletes.iter().map(|c| async move {
        if let Change::DeleteDns { zone_id, id, .. } = c {
            deps.cf.delete_dns_record(zone_id, id).await?;
            log_change(ctx, c);
        }
        Ok::<_, ReconcileError>(c.kind())
    }))
    .await;
    for r in results {
        done.push(r?);
    }

    // 2. A graph, each write starting once its inputs exist: the tunnel, then the token
    // (it needs only the tunnel) ∥ our policy, then the application (it links the
    // policy); then the configuration (it needs the tunnel and the app's AUD).
    let create_tunnel = changes
        .iter()
        .find(|c| matches!(c, Change::CreateTunnel { .. }));
    let policy_change = changes
        .iter()
        .find(|c| matches!(c, Change::CreatePolicy { .. } | Change::UpdatePolicy { .. }));
    let app_change = changes
        .iter()
        .find(|c| matches!(c, Change::CreateApp { .. } | Change::UpdateApp { .. }));
    let write_token = changes
        .iter()
        .find(|c| matches!(c, Change::WriteToken { .. }));
    let known_tunnel = p.tunnel_id.clone();
    let tunnel_then_token = async {
        let made = match create_tunnel {
            Some(c @ Change::CreateTunnel { name }) => {
                let r = ensure_tunnel(deps, name).await?;
                log_change(ctx, c);
                Some(r)
            }
            _ => None,
        };
        let tid = made.as_ref().map(|m| m.id.clone()).or(known_tunnel);
        if let (Some(c @ Change::WriteToken { overwrite }), Some(tid)) = (write_token, &tid) {
            let token = match made.as_ref().and_then(|m| m.token.clone()) {
                Some(t) => t,
                None => deps.cf.tunnel_token(tid).await?,
            };
            write_token_to_store(deps, ctx, tid, &token, *overwrite).await?;
            log_change(ctx, c);
        }
        Ok::<_, ReconcileError>(made)
    };
    let known_policy = p.policy_id.clone();
    let access_fut = async {
        let mut policy_id = known_policy;
        let mut raced = false;
        match policy_change {
            Some(c @ Change::CreatePolicy { body, .. }) => {
                let (id, adopted) = ensure_policy(deps, body).await?;
                policy_id = Some(id);
                raced |= adopted;
                log_change(ctx, c);
            }
            Some(c @ Change::UpdatePolicy { id, body }) => {
                deps.cf.update_reusable_policy(id, body).await?;
                log_change(ctx, c);
            }
            _ => {}
        }
        let mut app = None;
        if let Some(c) = app_change {
            deps.ensure_access_tag(&ctx.owner.access_tag()).await?;
            let (id, body) = match c {
                Change::CreateApp { body, .. } => (None, body),
                Change::UpdateApp { id, body } => (Some(id.clone()), body),
                _ => unreachable!("filtered above"),
            };
            let body = link_own_policy(body, policy_id.as_deref(), target);
            let (made, adopted) = ensure_app(deps, ctx, id, &body).await?;
            raced |= adopted;
            app = Some(made);
            log_change(ctx, c);
        }
        Ok::<_, ReconcileError>((policy_id, app, raced))
    };
    let (tunnel, (policy_id, app, access_raced)) =
        futures::try_join!(tunnel_then_token, access_fut)?;
    p.raced |= access_raced;
    if let Some(made) = tunnel {
        p.tunnel_id = Some(made.id);
        p.token = made.token;
        p.raced |= made.adopted;
        done.push("create_tunnel");
    }
    if policy_change.is_some() {
        done.push(policy_change.map(Change::kind).unwrap_or_default());
    }
    p.policy_id = policy_id;
    if let Some(a) = app {
        p.aud = Some(a.aud.clone());
        p.app = Some(a);
        done.push(app_change.map(Change::kind).unwrap_or_default());
    }
    if write_token.is_some() && p.tunnel_id.is_some() {
        done.extend(write_token.map(Change::kind));
    }

    // 3. The configuration.
    if let (Some(c @ Change::PutConfig { .. }), Some(t), Some(tid)) = (
        changes
            .iter()
            .find(|c| matches!(c, Change::PutConfig { .. })),
        target,
        p.tunnel_id.as_deref(),
    ) {
        let config = render_config(t, &ctx.team_name, p.aud.as_deref());
        deps.cf.put_tunnel_config(tid, &config).await?;
        log_change(ctx, c);
        done.push(c.kind());
    }
    if let Some(c @ Change::RecordRedeployTarget { service }) = changes
        .iter()
        .find(|c| matches!(c, Change::RecordRedeployTarget { .. }))
    {
        use crate::aws::token_store::REDEPLOY_SERVICE_TAG;
        match service {
            Some(s) => {
                deps.tokens
                    .add_tags(&ctx.svc, &[(REDEPLOY_SERVICE_TAG.to_string(), s.clone())])
                    .await?
            }
            None => {
                deps.tokens
                    .remove_tag(&ctx.svc, REDEPLOY_SERVICE_TAG)
                    .await?
            }
        }
        log_change(ctx, c);
        done.push(c.kind());
    }

    // 4. DNS records.
    let dns_writes = pick(|c| matches!(c, Change::CreateDns { .. } | Change::UpdateDns { .. }));
    if let Some(tid) = p.tunnel_id.as_deref() {
        let adopted = try_join_all(dns_writes.iter().map(|c| async move {
            let mut adopted = false;
            match c {
                Change::CreateDns { zone_id, name } => {
                    adopted = ensure_record(deps, ctx, zone_id, name, tid).await?
                }
                Change::UpdateDns { zone_id, id, name } => {
                    deps.cf
                        .repair_dns_record(zone_id, id, &desired_record(ctx, name, tid))
                        .await?;
                }
                _ => {}
            }
            log_change(ctx, c);
            Ok::<_, ReconcileError>(adopted)
        }))
        .await?;
        p.raced |= adopted.into_iter().any(|a| a);
        done.extend(dns_writes.iter().map(|c| c.kind()));
    }

    // 5. Access deletions: the app before the policies it links.
    for c in changes
        .iter()
        .filter(|c| matches!(c, Change::DeleteApp { .. }))
    {
        if let Change::DeleteApp { id } = c {
            deps.cf.delete_access_app(id).await?;
            log_change(ctx, c);
            done.push(c.kind());
        }
    }
    let policy_deletes = pick(|c| matches!(c, Change::DeletePolicy { .. }));
    let deleted = try_join_all(policy_deletes.iter().map(|c| async move {
        let Change::DeletePolicy { id } = c else {
            return Ok(Err(None));
        };
        match delete_or_keep_policy(deps, ctx, id).await? {
            None => {
                log_change(ctx, c);
                Ok::<_, ReconcileError>(Ok(c.kind()))
            }
            Some(used_by) => Ok(Err(Some(crate::diff::KeptPolicy {
                id: id.clone(),
                name: String::new(),
                used_by,
            }))),
        }
    }))
    .await?;
    for d in deleted {
        match d {
            Ok(kind) => done.push(kind),
            Err(kept) => p.kept.extend(kept),
        }
    }

    Ok(())
}

/// Publishes the DNS records a plan held back until cloudflared connected (see
/// [`Plan::held`]), now that it has: each is made, or adopted when a concurrent run made
/// it. Returns the kinds of the changes made.
pub async fn publish_held(
    deps: &Deps,
    ctx: &PlanContext,
    tunnel_id: &str,
    held: &[Change],
) -> Result<Vec<&'static str>, ReconcileError> {
    try_join_all(held.iter().map(|c| async move {
        if let Change::CreateDns { zone_id, name } = c {
            ensure_record(deps, ctx, zone_id, name, tunnel_id).await?;
            log_change(ctx, c);
        }
        Ok::<_, ReconcileError>(c.kind())
    }))
    .await
}

/// Tunnel teardown (secret revoked, connections dropped, tunnel deleted), then the token.
async fn tunnel_teardown(
    deps: &Deps,
    ctx: &PlanContext,
    plan: &Plan,
    p: &mut Progress,
    done: &mut Vec<&'static str>,
) -> Result<(), ReconcileError> {
    let changes = &plan.changes;
    for c in changes
        .iter()
        .filter(|c| matches!(c, Change::DeleteTunnel { .. }))
    {
        if let Change::DeleteTunnel { id } = c {
            if changes.iter().any(|c| matches!(c, Change::DeleteToken)) {
                // The secret is about to change under the stored token: marked, a run
                // that finds the token after a crash compares it with Cloudflare's.
                use crate::aws::token_store::{RotationMark, ROTATION_TAG};
                let mark = RotationMark::value("teardown", std::time::SystemTime::now());
                deps.tokens
                    .add_tags(&ctx.svc, &[(ROTATION_TAG.to_string(), mark)])
                    .await?;
            }
            delete_tunnel(deps, id).await?;
            log_change(ctx, c);
            done.push(c.kind());
            p.tunnel_id = None;
        }
    }
    if let Some(c) = changes.iter().find(|c| matches!(c, Change::DeleteToken)) {
        deps.tokens.delete(&ctx.svc).await?;
        log_change(ctx, c);
        done.push(c.kind());
    }

    Ok(())
}

/// Starts a new deployment of `svc`. `Some(controller)` when its deployment controller
/// (CodeDeploy, external) refuses, which leaves the redeploy to its owner.
pub async fn redeploy(
    deps: &Deps,
    svc: &crate::ownership::ServiceId,
) -> Result<Option<String>, ReconcileError> {
    match deps.ecs.redeploy(&svc.cluster, &svc.service).await? {
        crate::aws::ecs::Redeploy::Started => Ok(None),
        crate::aws::ecs::Redeploy::ByOwner { controller } => {
            tracing::warn!(service = %svc, controller = %controller, "the service's deployment controller refuses a forced deployment; its owner must start one so tasks read the new token");
            Ok(Some(controller))
        }
    }
}

fn link_own_policy(
    body: &AccessAppBody,
    own: Option<&str>,
    target: Option<&Target>,
) -> AccessAppBody {
    let mut body = body.clone();
    let wants_own = target
        .and_then(|t| t.access.as_ref())
        .is_some_and(|a| !a.own_rules.is_empty());
    let extras: Vec<String> = target
        .and_then(|t| t.access.as_ref())
        .map(|a| a.extra_policy_ids.clone())
        .unwrap_or_default();
    let ids: Vec<String> = own
        .filter(|_| wants_own)
        .map(str::to_string)
        .into_iter()
        .chain(extras)
        .collect();
    body.policies = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| PolicyLink {
            id,
            precedence: i as i64 + 1,
        })
        .collect();
    body
}

/// Attempts at creating our reusable policy before giving up.
const POLICY_CREATE_ATTEMPTS: usize = 3;

/// Creates our reusable policy. Policy names are not unique, so a create that may have
/// committed (a 5xx or a lost answer, which the client does not retry) is followed by a
/// look for a policy with our exact name: found, it is adopted; not found, the create is
/// tried again (a bounded number of times). Returns the policy id, and `true` when it
/// was found rather than made.
async fn ensure_policy(
    deps: &Deps,
    body: &AccessPolicyBody,
) -> Result<(String, bool), ReconcileError> {
    let mut attempt = 1;
    loop {
        match deps.cf.create_reusable_policy(body).await {
            Ok(p) => return Ok((p.id, false)),
            Err(e) if e.is_transient() => {
                let found = deps
                    .cf
                    .list_reusable_policies()
                    .await?
                    .into_iter()
                    .find(|p| p.name == body.name);
                if let Some(p) = found {
                    info!(policy = %p.id, name = %p.name, error = %e, "the policy create failed after it was written; adopting the policy it made");
                    return Ok((p.id, true));
                }
                if attempt >= POLICY_CREATE_ATTEMPTS {
                    return Err(e.into());
                }
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes one of our reusable policies; when Cloudflare refuses because applications
/// we do not own still use it (someone linked it to theirs), it is kept and reported
/// instead: a delete would fail on every run. `None` when it was deleted, else the
/// applications that keep it.
async fn delete_or_keep_policy(
    deps: &Deps,
    ctx: &PlanContext,
    id: &str,
) -> Result<Option<Vec<String>>, ReconcileError> {
    let refused = match deps.cf.delete_reusable_policy(id).await {
        // Gone already (a bulk list can be older than a concurrent delete).
        Ok(()) | Err(CfError::NotFound { .. }) => return Ok(None),
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => e,
    };
    let our_app = ctx.owner.access_app_name(&ctx.svc);
    let apps = deps.cf.list_access_apps(&AppQuery::default()).await?;
    let users = crate::diff::other_apps_using(&apps, &our_app, id);
    if users.is_empty() {
        return Err(refused.into());
    }
    warn!(service = %ctx.svc, policy = %id, used_by = %users.join(", "), "kept the reusable Access policy: applications ecs-tunnels does not own use it; remove it from them, then delete it");
    Ok(Some(users))
}

/// A tunnel made (or adopted) by [`ensure_tunnel`].
struct MadeTunnel {
    id: String,
    /// Its token, when we chose the secret.
    token: Option<Secret>,
    /// A concurrent run made it first; we adopted it.
    adopted: bool,
}

/// Creates the tunnel, or adopts ours if a concurrent run created it first.
async fn ensure_tunnel(deps: &Deps, name: &str) -> Result<MadeTunnel, ReconcileError> {
    let secret = crate::token::new_tunnel_secret();
    match deps.cf.create_tunnel(name, &secret).await {
        Ok(t) => {
            let token = t.token.clone().unwrap_or_else(|| {
                crate::token::encode_token(deps.cf.account_id(), &t.id, &secret)
            });
            Ok(MadeTunnel {
                id: t.id,
                token: Some(token),
                adopted: false,
            })
        }
        Err(CfError::TunnelNameTaken { .. }) => match deps.cf.find_tunnel_by_name(name).await? {
            Some(t) => Ok(MadeTunnel {
                id: t.id,
                token: None,
                adopted: true,
            }),
            None => Err(ReconcileError::Cloudflare(CfError::TunnelNameTaken {
                name: name.to_string(),
            })),
        },
        Err(e) => Err(e.into()),
    }
}

/// Creates or updates our Access application; adopts ours on a duplicate (then `true`).
async fn ensure_app(
    deps: &Deps,
    ctx: &PlanContext,
    id: Option<String>,
    body: &AccessAppBody,
) -> Result<(crate::reconcile::AppRef, bool), ReconcileError> {
    let made = |a: crate::cloudflare::AccessApp| crate::reconcile::AppRef {
        id: a.id,
        aud: a.aud,
    };
    if let Some(id) = id {
        return Ok((made(deps.cf.update_access_app(&id, body).await?), false));
    }
    match deps.cf.create_access_app(body).await {
        Ok(app) => Ok((made(app), false)),
        Err(CfError::AccessAppExists) => {
            let found = deps
                .cf
                .list_access_apps(&AppQuery {
                    name: Some(body.name.clone()),
                    ..Default::default()
                })
                .await?;
            match found.into_iter().find(|a| ctx.owner.owns_access_app(&a.name, &a.tags)) {
                Some(app) => Ok((made(deps.cf.update_access_app(&app.id, body).await?), true)),
                None => Err(ReconcileError::Conflict(vec![format!(
                    "an Access application ecs-tunnels does not own already covers {}: remove the hostname from it or choose another hostname",
                    body.domain
                )])),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates our CNAME, or adopts a record carrying our marker on a clash (then `true`).
async fn ensure_record(
    deps: &Deps,
    ctx: &PlanContext,
    zone_id: &str,
    name: &str,
    tunnel_id: &str,
) -> Result<bool, ReconcileError> {
    let body = desired_record(ctx, name, tunnel_id);
    match deps.cf.create_dns_record(zone_id, &body).await {
        Ok(_) => Ok(false),
        Err(CfError::DnsNameTaken { .. } | CfError::DnsRecordExists { .. }) => {
            let found = deps
                .cf
                .list_dns_records(
                    zone_id,
                    &DnsQuery {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                )
                .await?;
            match found.iter().find(|r| r.comment == body.comment) {
                Some(r) if r.content == body.content && r.proxied => Ok(true),
                Some(r) => Ok(deps.cf.repair_dns_record(zone_id, &r.id, &body).await.map(|_| true)?),
                None => Err(ReconcileError::Conflict(vec![format!(
                    "hostname {name} already has a DNS record that ecs-tunnels does not own: remove it or choose another hostname"
                )])),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the token: creates the parameter with our tags, or overwrites it. Either way
/// the parameter is first marked as owing a redeploy, so a crash before the redeploy is
/// finished by the next run.
async fn write_token_to_store(
    deps: &Deps,
    ctx: &PlanContext,
    tunnel_id: &str,
    token: &Secret,
    overwrite: bool,
) -> Result<(), ReconcileError> {
    let pending = (
        crate::aws::token_store::REDEPLOY_TAG.to_string(),
        "pending".to_string(),
    );
    if overwrite {
        let repair = crate::aws::token_store::rotated_now("repair");
        deps.tokens
            .overwrite(&ctx.svc, tunnel_id, token, &repair)
            .await?;
        return Ok(());
    }
    let mut tags = ctx.owner.ssm_tags(&ctx.svc);
    tags.push(pending);
    tags.extend(crate::aws::token_store::rotated_now("created"));
    tags.extend(ctx.cause.exposure_tags(std::time::SystemTime::now()));
    if let Some(r) = ctx.redeploy.as_ref().filter(|r| r.service != ctx.svc) {
        tags.push((
            crate::aws::token_store::REDEPLOY_SERVICE_TAG.to_string(),
            r.service.key(),
        ));
    }
    if !deps
        .tokens
        .create(&ctx.svc, token, tunnel_id, &tags)
        .await?
    {
        // A concurrent run created it: keep theirs if it is for the same tunnel.
        let existing = deps.tokens.get(&ctx.svc).await?;
        let same = existing
            .as_ref()
            .and_then(|p| crate::token::token_identity(&p.value))
            .is_some_and(|(_, t)| t == tunnel_id);
        if !same {
            if !existing
                .as_ref()
                .is_some_and(|p| ctx.owner.owns_ssm(&p.tags))
            {
                return Err(ReconcileError::Conflict(vec![
                    "the token parameter exists and is not managed by ecs-tunnels".into(),
                ]));
            }
            deps.tokens
                .overwrite(&ctx.svc, tunnel_id, token, &[])
                .await?;
        }
    }
    Ok(())
}

/// Gives a tunnel a new secret and puts the new token into service: PATCH the tunnel,
/// optionally drop every connection (a compromised token), store the token (marked as
/// owing a redeploy, so a crash before the redeploy is finished by the next run),
/// redeploy, clear the mark. Shared by rotation and by the repair of an interrupted one.
/// Returns whether a deployment started (`false`: the service's deployment controller
/// leaves it to its owner, and the mark stays until one is seen).
pub async fn change_tunnel_secret(
    deps: &Deps,
    svc: &crate::ownership::ServiceId,
    tunnel_id: &str,
    drop_connections: bool,
    redeploy_svc: Option<&crate::ownership::ServiceId>,
) -> Result<bool, ReconcileError> {
    let secret = crate::token::new_tunnel_secret();
    let patched = deps.cf.rotate_tunnel_secret(tunnel_id, &secret).await?;
    let token = patched
        .token
        .unwrap_or_else(|| crate::token::encode_token(deps.cf.account_id(), tunnel_id, &secret));
    if drop_connections {
        deps.cf.delete_tunnel_connections(tunnel_id).await?;
    }
    deps.tokens.overwrite(svc, tunnel_id, &token, &[]).await?;
    pay_redeploy(deps, svc, redeploy_svc).await
}

/// Redeploys `redeploy_svc` (if any) for the token stored under `key`, then clears the
/// mark that says a redeploy is owed. `false`: its deployment controller leaves the
/// redeploy to its owner, and the mark stays.
pub async fn pay_redeploy(
    deps: &Deps,
    key: &crate::ownership::ServiceId,
    redeploy_svc: Option<&crate::ownership::ServiceId>,
) -> Result<bool, ReconcileError> {
    let started = match redeploy_svc {
        Some(r) => redeploy(deps, r).await?.is_none(),
        None => true,
    };
    if started {
        deps.tokens
            .remove_tag(key, crate::aws::token_store::REDEPLOY_TAG)
            .await?;
    }
    Ok(started)
}

/// Revokes the secret (so running connectors cannot reconnect), drops connections and
/// deletes the tunnel; retries a few times while connectors linger (1022).
async fn delete_tunnel(deps: &Deps, id: &str) -> Result<(), ReconcileError> {
    match deps
        .cf
        .rotate_tunnel_secret(id, &crate::token::new_tunnel_secret())
        .await
    {
        Ok(_) | Err(CfError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for attempt in 0..3u32 {
        match deps.cf.delete_tunnel_connections(id).await {
            Ok(()) | Err(CfError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match deps.cf.delete_tunnel(id).await {
            Ok(()) => return Ok(()),
            Err(CfError::TunnelHasConnections { .. }) if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(500 * (attempt as u64 + 1))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CfError::TunnelHasConnections { id: id.to_string() }.into())
}
