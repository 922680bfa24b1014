//! Tunnel-secret rotation for the SSM token store.
//!
//! A rotation: mark the parameter (`ecs-tunnels:rotation=<reason>`) → PATCH the tunnel
//! with a new 32-byte secret → (compromised: drop every connection) → store the new token
//! (marked as owing a redeploy) → new deployment → record `rotated-at`/`rotated-by` and
//! clear the marks. Connectors already running keep their connections; tasks started
//! from the new deployment use the new token.
//!
//! A crash anywhere leaves the `rotation` mark, and every reconcile that sees it compares
//! the stored token with the one Cloudflare serves and repairs it (store, redeploy,
//! record), so a stored token the tunnel rejects lasts only until the next run.

use crate::aws::token_store::{rotated_now, REDEPLOY_TAG, ROTATED_AT_TAG, ROTATION_TAG};
use crate::context::Deps;
use crate::error::ReconcileError;
use crate::ownership::ServiceId;
use crate::reconcile::{reconcile_service, Mode, State};
use crate::spec::{parse_rotation_period, SpecError, TAG_HOSTNAME, TAG_ROTATE_EVERY};
use serde::Serialize;
use std::time::SystemTime;
use tracing::info;

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
    /// A retry may fix the error.
    #[serde(skip)]
    pub transient: bool,
}

/// Rotates one service's tunnel secret when due (or always, with `force`).
/// `dry_run` only reports whether it is due.
pub async fn rotate_service(
    deps: &Deps,
    svc: &ServiceId,
    reason: Reason,
    force: bool,
    dry_run: bool,
) -> RotationOutcome {
    let mut out = RotationOutcome {
        service: svc.clone(),
        due: false,
        rotated: false,
        last_rotated: None,
        error: None,
        transient: false,
    };
    match rotate_inner(deps, svc, reason, force, dry_run, &mut out).await {
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
    let period = match info.tags.get(TAG_ROTATE_EVERY) {
        Some(v) => parse_rotation_period(v.trim()).map_err(|m| {
            ReconcileError::Invalid(vec![SpecError {
                key: TAG_ROTATE_EVERY.into(),
                message: format!("{v:?} {m}"),
            }])
        })?,
        None => deps.config.rotate_every,
    };
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
    out.last_rotated = stored.tags.get(ROTATED_AT_TAG).cloned();
    let age = out
        .last_rotated
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    out.due = force || age.is_none_or(|a| a >= period);
    if !out.due || dry_run {
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

    deps.tokens
        .add_tags(
            svc,
            &[(ROTATION_TAG.to_string(), reason.as_str().to_string())],
        )
        .await?;
    let redeployed = crate::apply::change_tunnel_secret(
        deps,
        svc,
        &tunnel.id,
        reason == Reason::Compromised,
        Some(svc),
    )
    .await?;
    info!(service = %svc, reason = reason.as_str(), tunnel_id = %tunnel.id, redeployed, "tunnel secret rotated, new token stored");
    deps.tokens
        .add_tags(svc, &rotated_now(reason.as_str()))
        .await?;
    deps.tokens.remove_tag(svc, ROTATION_TAG).await?;
    out.rotated = true;
    Ok(())
}

/// Rotates every managed service that is due.
pub async fn rotate_due(
    deps: &Deps,
    dry_run: bool,
) -> Result<Vec<RotationOutcome>, ReconcileError> {
    use futures::stream::{self, StreamExt};
    let services = crate::doors::run::managed_services(deps).await?;
    Ok(stream::iter(services)
        .map(|(svc, _)| async move {
            rotate_service(deps, &svc, Reason::Schedule, false, dry_run).await
        })
        .buffered(crate::doors::run::CONCURRENCY)
        .collect()
        .await)
}
