//! Tunnel-secret rotation for the SSM token store.
//!
//! A rotation: mark the parameter (`ecs-tunnels:rotation=<reason>`) → PATCH the tunnel
//! with a new 32-byte secret → (compromised: drop every connection) → store the new token
//! (marked as owing a redeploy) → new deployment → record `rotated-at`/`rotated-by` and
//! clear the marks. Connectors already running keep their connections; tasks started
//! from the new deployment use the new token.
//!
//! The mark records when its run set it (`<reason> <RFC 3339 UTC>`). While it is younger
//! than [`ROTATION_LEASE`](crate::aws::token_store::ROTATION_LEASE) it belongs to that run: other runs leave the rotation alone
//! (a second rotation would race the first), and a rotation asked for meanwhile reports
//! "rotation in progress". A crash anywhere leaves the mark, and the first reconcile that
//! sees it expired compares the stored token with the one Cloudflare serves and repairs
//! it (store, redeploy, record). A stored token the tunnel rejects after a crash lasts
//! until the next run: every reconcile compares the stored token with Cloudflare's,
//! whatever the mark.
//!
//! Custom resources (`cfn.<stack>/<logical id>`) rotate on the same schedule: their
//! period is recorded on the token (`ecs-tunnels:rotate-every`), the service to redeploy
//! too (`ecs-tunnels:redeploys`, from `ServiceArn`), and the schedule finds them with one
//! paged list of this install's token parameters. No CloudFormation call is needed, and
//! the same marks make it crash-safe: the schedule finishes an expired one first.

use crate::aws::ecs::ServiceInfo;
use crate::aws::token_store::{
    rotated_now, ListedToken, RotationMark, StoredParameter, REDEPLOY_SERVICE_TAG, REDEPLOY_TAG,
    ROTATED_AT_TAG, ROTATE_EVERY_TAG, ROTATION_TAG,
};
use crate::context::Deps;
use crate::doors::custom_resource::is_resource_key;
use crate::error::ReconcileError;
use crate::ownership::{Owner, ServiceId};
use crate::reconcile::{reconcile_service, Mode, State};
use crate::spec::{parse_rotation_period, SpecError, TAG_HOSTNAME, TAG_ROTATE_EVERY};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;
use tracing::{info, warn};

/// Why a rotation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The schedule found it due.
    Schedule,
    /// A person asked for it.
    Manual,
    /// The token may be known to someone else: drop every connection too.
    Compromised,
}

impl Reason {
    /// The word recorded in the parameter's tags and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Schedule => "schedule",
            Reason::Manual => "manual",
            Reason::Compromised => "compromised",
        }
    }
}

/// What happened to one service.
#[derive(Debug, Clone, Serialize)]
pub struct RotationOutcome {
    /// The service.
    pub service: ServiceId,
    /// Due (or forced).
    pub due: bool,
    /// The secret was changed by this run.
    pub rotated: bool,
    /// When the secret last changed, as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<String>,
    /// Why it did not rotate when it should have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was left alone although due: another run's rotation is in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// A retry may fix the error.
    #[serde(skip)]
    pub transient: bool,
}

/// Rotates one service's (or custom resource's) tunnel secret when due (or always, with
/// `force`). `dry_run` only reports whether it is due. A custom resource's owner id
/// comes from `ECS_TUNNELS_OWNER` here; the schedule ([`rotate_due_for`]) also knows
/// the function's account.
pub async fn rotate_service(
    deps: &Deps,
    svc: &ServiceId,
    reason: Reason,
    force: bool,
    dry_run: bool,
) -> RotationOutcome {
    rotate_one(deps, svc, reason, force, dry_run, None).await
}

async fn rotate_one(
    deps: &Deps,
    svc: &ServiceId,
    reason: Reason,
    force: bool,
    dry_run: bool,
    account_hint: Option<&str>,
) -> RotationOutcome {
    let mut out = RotationOutcome {
        service: svc.clone(),
        due: false,
        rotated: false,
        last_rotated: None,
        error: None,
        skipped: None,
        transient: false,
    };
    let deps = match deps.for_service(svc).await {
        Ok(d) => d,
        Err(e) => {
            out.transient = e.is_transient();
            out.error = Some(e.to_string());
            return out;
        }
    };
    let deps = &*deps;
    let result = if is_resource_key(svc) {
        rotate_resource(deps, svc, reason, force, dry_run, account_hint, &mut out).await
    } else {
        rotate_inner(deps, svc, reason, force, dry_run, &mut out).await
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            out.transient = e.is_transient();
            out.error = Some(e.to_string());
        }
    }
    out
}

async fn rotate_inner(
    deps: &Deps,
    svc: &ServiceId,
    reason: Reason,
    force: bool,
    dry_run: bool,
    out: &mut RotationOutcome,
) -> Result<(), ReconcileError> {
    let info = deps
        .ecs
        .describe_service(&svc.cluster, &svc.service)
        .await?;
    let Some(info) = info.filter(|i| i.is_active() && i.tags.contains_key(TAG_HOSTNAME)) else {
        if reason == Reason::Schedule {
            return Ok(()); // being torn down: nothing to rotate
        }
        return Err(ReconcileError::Setup(format!(
            "{svc} is not a managed service (no {TAG_HOSTNAME} tag)"
        )));
    };
    let period = service_period(&info, deps.config.rotate_every)?;
    if let crate::aws::token_store::TokenStore::SecretsManager(sm) = &deps.tokens {
        // Secrets Manager rotates on its own schedule, through the four-step protocol.
        if reason == Reason::Schedule {
            return Ok(());
        }
        let account = info.account_region().map(|(a, _)| a);
        let owner = deps
            .owner(account.as_deref())
            .map_err(ReconcileError::Setup)?;
        if !deps
            .tokens
            .get(svc)
            .await?
            .is_some_and(|p| owner.owns_ssm(&p.tags))
        {
            return Err(ReconcileError::Setup(format!(
                "{svc} has no token secret managed by this install: run ecs-tunnels apply first"
            )));
        }
        out.due = true;
        if dry_run {
            return Ok(());
        }
        if reason == Reason::Compromised {
            // Secrets Manager's protocol reads the reason alone (its own rotation lock
            // keeps two rotations from running at once).
            sm.add_tags(
                svc,
                &[(ROTATION_TAG.to_string(), reason.as_str().to_string())],
            )
            .await?;
        }
        sm.rotate_now(svc).await?;
        out.rotated = true;
        info!(service = %svc, reason = reason.as_str(), "Secrets Manager rotation started");
        return Ok(());
    }
    let account = info.account_region().map(|(a, _)| a);
    let owner = deps
        .owner(account.as_deref())
        .map_err(ReconcileError::Setup)?;
    let stored = deps.tokens.get(svc).await?;
    let Some(stored) = stored.filter(|p| owner.owns_ssm(&p.tags)) else {
        return Err(ReconcileError::Setup(format!(
            "{svc} has no token yet: run ecs-tunnels apply first"
        )));
    };
    if !check_due(&stored, period, force, dry_run, reason, out)? {
        return Ok(());
    }
    if stored.tags.contains_key(ROTATION_TAG) || stored.tags.contains_key(REDEPLOY_TAG) {
        // An earlier rotation or write is unfinished: finish it first.
        let o = reconcile_service(deps, svc, Mode::Apply, account.as_deref()).await;
        if o.state != State::Ready {
            return Err(ReconcileError::Setup(format!(
                "{svc} is not converged ({}): fix that first",
                o.error.unwrap_or_default()
            )));
        }
    }
    let tunnel_name = owner.tunnel_name(svc);
    let tunnel = deps
        .cf
        .find_tunnel_by_name(&tunnel_name)
        .await?
        .ok_or_else(|| {
            ReconcileError::Setup(format!(
                "{svc} has no tunnel yet: run ecs-tunnels apply first"
            ))
        })?;

    rotate_now(deps, svc, &tunnel.id, reason.as_str(), Some(svc)).await?;
    out.rotated = true;
    Ok(())
}

/// Records when it was last rotated and whether it is due; `Ok(false)` when there is
/// nothing (more) to do: not due, only a dry run, or another run's rotation in progress
/// (the schedule skips it; a person asking is told to try again).
fn check_due(
    stored: &StoredParameter,
    period: std::time::Duration,
    force: bool,
    dry_run: bool,
    reason: Reason,
    out: &mut RotationOutcome,
) -> Result<bool, ReconcileError> {
    out.last_rotated = stored.tags.get(ROTATED_AT_TAG).cloned();
    out.due = force || is_due(out.last_rotated.as_deref(), period, SystemTime::now());
    if !out.due || dry_run {
        return Ok(false);
    }
    let Some(mark) = live_mark(stored) else {
        return Ok(true);
    };
    let note = mark.in_progress();
    out.skipped = Some(note.clone());
    if reason == Reason::Schedule {
        return Ok(false);
    }
    Err(ReconcileError::NotConverged(format!(
        "{note}: try again once it is finished"
    )))
}

/// A service's rotation period: its `ecs-tunnels:rotate-every` tag, or the install's.
fn service_period(
    info: &ServiceInfo,
    default: std::time::Duration,
) -> Result<std::time::Duration, ReconcileError> {
    match info.tags.get(TAG_ROTATE_EVERY) {
        Some(v) => parse_rotation_period(v.trim()).map_err(|m| {
            ReconcileError::Invalid(vec![SpecError {
                key: TAG_ROTATE_EVERY.into(),
                message: format!("{v:?} {m}"),
            }])
        }),
        None => Ok(default),
    }
}

/// True when a secret last changed at `last_rotated` (RFC 3339, as recorded) is due
/// after `period`; never recorded, unreadable or in the future counts as due.
fn is_due(last_rotated: Option<&str>, period: std::time::Duration, now: SystemTime) -> bool {
    let age = last_rotated
        .and_then(|t| humantime::parse_rfc3339(t.trim()).ok())
        .and_then(|t| now.duration_since(t).ok());
    age.is_none_or(|a| a >= period)
}

/// The mark of a rotation another run may still be working on.
fn live_mark(stored: &StoredParameter) -> Option<RotationMark> {
    stored
        .tags
        .get(ROTATION_TAG)
        .map(|v| RotationMark::read(v, SystemTime::now()))
        .filter(|m| m.live)
}

/// One rotation: mark (with this run's time) → PATCH (→ drop connections) → store (owing
/// a redeploy) → redeploy `redeploy_svc` → record → clear the mark.
async fn rotate_now(
    deps: &Deps,
    key: &ServiceId,
    tunnel_id: &str,
    reason: &str,
    redeploy_svc: Option<&ServiceId>,
) -> Result<(), ReconcileError> {
    let mark = RotationMark::value(reason, SystemTime::now());
    deps.tokens
        .add_tags(key, &[(ROTATION_TAG.to_string(), mark)])
        .await?;
    let changed = crate::apply::change_tunnel_secret(
        deps,
        key,
        tunnel_id,
        reason == Reason::Compromised.as_str(),
        redeploy_svc,
    )
    .await;
    let redeployed = match changed {
        Ok(r) => r,
        Err(e) => {
            release_mark(deps, key, reason).await;
            return Err(e);
        }
    };
    info!(service = %key, reason, tunnel_id, redeployed, "tunnel secret rotated, new token stored");
    deps.tokens.add_tags(key, &rotated_now(reason)).await?;
    deps.tokens.remove_tag(key, ROTATION_TAG).await?;
    Ok(())
}

/// After a failed rotation: the mark stays (the next run checks the stored token and
/// finishes what is left) but no longer holds others off. Best effort: a mark that
/// cannot be released expires with its lease.
pub async fn release_mark(deps: &Deps, key: &ServiceId, reason: &str) {
    let released = RotationMark::released(reason);
    if let Err(e) = deps
        .tokens
        .add_tags(key, &[(ROTATION_TAG.to_string(), released)])
        .await
    {
        warn!(service = %key, error = %e, "could not release the rotation mark; it expires with its lease");
    }
}

/// Rotates a custom resource's tunnel secret (SSM store) when due: its period and the
/// service to redeploy are read from its token's tags. An unfinished earlier rotation
/// whose lease has ended is finished first.
async fn rotate_resource(
    deps: &Deps,
    key: &ServiceId,
    reason: Reason,
    force: bool,
    dry_run: bool,
    account_hint: Option<&str>,
    out: &mut RotationOutcome,
) -> Result<(), ReconcileError> {
    if deps.tokens.rotates_itself() {
        return Err(ReconcileError::Setup(format!(
            "{key} is a custom resource; with the Secrets Manager store, rotate its secret in Secrets Manager"
        )));
    }
    let owner = deps.owner(account_hint).map_err(ReconcileError::Setup)?;
    let stored = deps.tokens.get(key).await?;
    let Some(stored) = stored.filter(|p| owner.owns_ssm(&p.tags)) else {
        return Err(ReconcileError::Setup(format!(
            "{key} has no token managed by this install (is the stack's resource created?)"
        )));
    };
    let period = match stored.tags.get(ROTATE_EVERY_TAG) {
        Some(v) => humantime::parse_duration(v.trim()).map_err(|_| {
            ReconcileError::Invalid(vec![SpecError {
                key: ROTATE_EVERY_TAG.into(),
                message: format!("{v:?} on the token parameter is not a duration (e.g. 30days); an Update of the stack's resource records it again"),
            }])
        })?,
        None => deps.config.rotate_every,
    };
    let redeploy = match stored.tags.get(REDEPLOY_SERVICE_TAG) {
        Some(v) => Some(parse_service_key(v)?),
        None => None,
    };
    let unfinished =
        stored.tags.contains_key(ROTATION_TAG) || stored.tags.contains_key(REDEPLOY_TAG);
    if unfinished && !dry_run {
        let tunnel = resource_tunnel(deps, &owner, key).await?;
        let finished =
            finish_resource_rotation(deps, key, &tunnel, &stored, redeploy.as_ref()).await?;
        if finished && live_mark(&stored).is_none() {
            out.rotated = true;
            out.due = true;
            return Ok(());
        }
    }
    if !check_due(&stored, period, force, dry_run, reason, out)? {
        return Ok(());
    }
    let tunnel = resource_tunnel(deps, &owner, key).await?;
    rotate_now(deps, key, &tunnel, reason.as_str(), redeploy.as_ref()).await?;
    out.rotated = true;
    Ok(())
}

/// `<cluster>/<service>` as recorded in `ecs-tunnels:redeploys`.
fn parse_service_key(v: &str) -> Result<ServiceId, ReconcileError> {
    match v.trim().split_once('/') {
        Some((c, s)) if !c.is_empty() && !s.is_empty() => Ok(ServiceId::new(c, s)),
        _ => Err(ReconcileError::Invalid(vec![SpecError {
            key: REDEPLOY_SERVICE_TAG.into(),
            message: format!("{v:?} on the token parameter is not <cluster>/<service>; an Update of the stack's resource records it again"),
        }])),
    }
}

/// The id of a custom resource's tunnel.
async fn resource_tunnel(
    deps: &Deps,
    owner: &Owner,
    key: &ServiceId,
) -> Result<String, ReconcileError> {
    deps.cf
        .find_tunnel_by_name(&owner.tunnel_name(key))
        .await?
        .map(|t| t.id)
        .ok_or_else(|| {
            ReconcileError::Setup(format!(
                "{key} has no tunnel: an Update of the stack's resource recreates it"
            ))
        })
}

/// Finishes an interrupted rotation of a custom resource (what a reconcile's
/// `FinishRotation` does for a service, which the schedule cannot reconcile without its
/// CloudFormation properties): store the token Cloudflare serves if the stored one is
/// stale, rotate again a compromised secret that never changed, redeploy what is owed,
/// record, clear the marks. While another run holds the mark only a stale token is
/// repaired (stored and redeployed); the rest is left to that run. Returns whether the
/// secret changed (or, under a live mark, the stored token was repaired).
async fn finish_resource_rotation(
    deps: &Deps,
    key: &ServiceId,
    tunnel_id: &str,
    stored: &StoredParameter,
    redeploy_svc: Option<&ServiceId>,
) -> Result<bool, ReconcileError> {
    let mark = stored
        .tags
        .get(ROTATION_TAG)
        .map(|v| RotationMark::read(v, SystemTime::now()));
    let served = deps.cf.tunnel_token(tunnel_id).await?;
    let stale = !crate::token::same_token(&served, &stored.value);
    let compromised = mark.as_ref().is_some_and(|m| m.reason == "compromised");
    let live = mark.as_ref().is_some_and(|m| m.live);
    if live && !stale {
        return Ok(false);
    }
    warn!(service = %key, reason = mark.as_ref().map(|m| m.reason.as_str()).unwrap_or(""), stale, live, "finishing an interrupted rotation");
    if compromised && !stale {
        // It died before its PATCH: the possibly leaked secret is still valid.
        rotate_now(deps, key, tunnel_id, "compromised", redeploy_svc).await?;
        return Ok(true);
    }
    // Under a live mark, a redeploy already owed is that run's to start.
    let mut owes_redeploy = stored.tags.contains_key(REDEPLOY_TAG) && !live;
    if stale {
        deps.tokens.overwrite(key, tunnel_id, &served, &[]).await?;
        owes_redeploy = true;
        if compromised && !live {
            deps.cf.delete_tunnel_connections(tunnel_id).await?;
        }
    }
    if owes_redeploy {
        crate::apply::pay_redeploy(deps, key, redeploy_svc).await?;
    }
    if live {
        deps.tokens.add_tags(key, &rotated_now("repair")).await?;
        return Ok(true);
    }
    if stale {
        let by = mark.as_ref().map_or("repair", |m| m.reason.as_str());
        deps.tokens.add_tags(key, &rotated_now(by)).await?;
    }
    deps.tokens.remove_tag(key, ROTATION_TAG).await?;
    Ok(stale)
}

/// Rotates every managed service and custom resource that is due.
pub async fn rotate_due(
    deps: &Deps,
    dry_run: bool,
) -> Result<Vec<RotationOutcome>, ReconcileError> {
    rotate_due_for(deps, dry_run, None).await
}

/// Like [`rotate_due`]; `account_hint` (the function's account) builds the default owner
/// id that finds this install's custom resources when no service names the account.
///
/// Reads in pages first: the covered clusters' services (ListServices, DescribeServices
/// 10 at a time) and, with the SSM store, one listing of this install's token parameters
/// with their tags (`rotated-at`, marks, periods; no value). A service or custom resource
/// those show not due costs nothing more; the others (due, an unfinished rotation, or
/// anything the listings cannot settle) are rotated one by one, each read afresh.
pub async fn rotate_due_for(
    deps: &Deps,
    dry_run: bool,
    account_hint: Option<&str>,
) -> Result<Vec<RotationOutcome>, ReconcileError> {
    let Some(spokes) = deps.spokes.as_ref().filter(|_| deps.scope.is_none()) else {
        return rotate_due_in(deps, dry_run, account_hint).await;
    };
    // An organization install: every covered account and region in turn. A spoke that
    // cannot be reached is reported (as one outcome for `*/*` there) and the others go on.
    let mut out = Vec::new();
    for scope in spokes.scopes().await.map_err(ReconcileError::Spoke)? {
        match deps.for_scope(&scope).await {
            Ok(spoke) => out.extend(rotate_due_in(&spoke, dry_run, account_hint).await?),
            Err(e) => {
                warn!(spoke = %scope, error = %e, "rotation skipped in this account and region");
                out.push(RotationOutcome {
                    transient: e.transient,
                    error: Some(e.message),
                    ..nothing_to_do(&ServiceId::new("*", "*").in_scope(Some(scope)), None)
                });
            }
        }
    }
    Ok(out)
}

/// [`rotate_due_for`] in one account and region (`deps`' own).
async fn rotate_due_in(
    deps: &Deps,
    dry_run: bool,
    account_hint: Option<&str>,
) -> Result<Vec<RotationOutcome>, ReconcileError> {
    use futures::stream::{self, StreamExt};
    let infos = crate::doors::run::managed_service_infos(deps).await?;
    let account = account_hint.map(str::to_string).or_else(|| {
        infos
            .iter()
            .find_map(|i| i.account_region().map(|(a, _)| a))
    });
    let tokens = listed_tokens(deps, account.as_deref()).await?;
    let now = SystemTime::now();
    let mut plan: Vec<Result<RotationOutcome, ServiceId>> = infos
        .iter()
        .map(|info| {
            let svc = ServiceId::new(info.cluster.clone(), info.name.clone())
                .in_scope(deps.scope.clone());
            not_due_service(deps, &svc, info, tokens.as_ref(), now).ok_or(svc)
        })
        .collect();
    // This install's custom resources (SSM store; Secrets Manager rotates its secrets).
    plan.extend(
        tokens
            .iter()
            .flatten()
            .filter(|(key, _)| is_resource_key(key))
            .map(|(key, listed)| not_due_resource(deps, key, listed, now).ok_or(key.clone())),
    );
    let account = account.as_deref();
    Ok(stream::iter(plan)
        .map(|entry| async move {
            match entry {
                Ok(settled) => settled,
                Err(svc) => rotate_one(deps, &svc, Reason::Schedule, false, dry_run, account).await,
            }
        })
        .buffered(crate::doors::run::CONCURRENCY)
        .collect()
        .await)
}

/// This install's token parameters with their tags, in one paged listing (SSM store).
/// `None` with Secrets Manager (it rotates its secrets itself), or when the owner id is
/// unknown (then custom resources are not rotated, and services are looked at one by one).
async fn listed_tokens(
    deps: &Deps,
    account: Option<&str>,
) -> Result<Option<BTreeMap<ServiceId, ListedToken>>, ReconcileError> {
    if deps.tokens.rotates_itself() {
        return Ok(None);
    }
    match deps.owner(account) {
        Ok(owner) => Ok(Some(
            deps.tokens
                .list(&owner)
                .await?
                .into_iter()
                .map(|(svc, t)| (svc.in_scope(deps.scope.clone()), t))
                .collect(),
        )),
        Err(e) => {
            warn!(error = %e, "custom resources are not rotated: the owner id is unknown");
            Ok(None)
        }
    }
}

fn nothing_to_do(svc: &ServiceId, last_rotated: Option<String>) -> RotationOutcome {
    RotationOutcome {
        service: svc.clone(),
        due: false,
        rotated: false,
        last_rotated,
        error: None,
        skipped: None,
        transient: false,
    }
}

/// What the schedule would conclude for a service without reading more, when the
/// listings settle it: not a managed service (any more), rotated by Secrets Manager, or
/// not due. `None`: it needs its own look ([`rotate_one`]).
fn not_due_service(
    deps: &Deps,
    svc: &ServiceId,
    info: &ServiceInfo,
    tokens: Option<&BTreeMap<ServiceId, ListedToken>>,
    now: SystemTime,
) -> Option<RotationOutcome> {
    if !info.is_active() || !info.tags.contains_key(TAG_HOSTNAME) {
        return Some(nothing_to_do(svc, None)); // being torn down: nothing to rotate
    }
    let period = service_period(info, deps.config.rotate_every).ok()?;
    if deps.tokens.rotates_itself() {
        return Some(nothing_to_do(svc, None));
    }
    let last = tokens?.get(svc)?.tags.get(ROTATED_AT_TAG).cloned();
    (!is_due(last.as_deref(), period, now)).then(|| nothing_to_do(svc, last))
}

/// Like [`not_due_service`] for a custom resource's token: settled when no rotation or
/// redeploy is unfinished, its recorded period and service read, and it is not due.
fn not_due_resource(
    deps: &Deps,
    key: &ServiceId,
    listed: &ListedToken,
    now: SystemTime,
) -> Option<RotationOutcome> {
    let tags = &listed.tags;
    if tags.contains_key(ROTATION_TAG) || tags.contains_key(REDEPLOY_TAG) {
        return None;
    }
    if tags
        .get(REDEPLOY_SERVICE_TAG)
        .is_some_and(|v| parse_service_key(v).is_err())
    {
        return None;
    }
    let period = match tags.get(ROTATE_EVERY_TAG) {
        Some(v) => humantime::parse_duration(v.trim()).ok()?,
        None => deps.config.rotate_every,
    };
    let last = tags.get(ROTATED_AT_TAG).cloned();
    (!is_due(last.as_deref(), period, now)).then(|| nothing_to_do(key, last))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_outlasts_any_lambda_run() {
        // Lambda stops every invocation after 900 s at most.
        assert!(crate::aws::token_store::ROTATION_LEASE > std::time::Duration::from_secs(900));
    }
}
