//! The one reconcile every door ends in: read the service and its tags, resolve the
//! spec, observe, diff, apply; repeat until the plan is empty (a few passes at most, so
//! races with concurrent runs settle); then publish the status tag.

use crate::apply::apply;
use crate::context::Deps;
use crate::diff::{diff, Change, KeptPolicy, Plan};
use crate::error::ReconcileError;
use crate::model::{PlanContext, RedeployTarget};
use crate::observe::{observe, resolve_target};
use crate::ownership::ServiceId;
use crate::spec::{self, Defaults, Desired, TAG_HOSTNAME, TAG_ORIGIN, TAG_STATUS};
use crate::status;
use serde::Serialize;
use tracing::{info, warn};

/// Passes before a reconcile gives up converging.
const MAX_PASSES: usize = 3;

/// Write changes, or only plan them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make the changes.
    Apply,
    /// Compute and report the changes; write nothing (not even the status tag).
    Plan,
}

/// Where a service ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Exposed as the tags say.
    Ready,
    /// Not tagged: nothing to do (cost: one ECS read).
    NotManaged,
    /// Everything it had was removed.
    Removed,
    /// Plan mode: these changes would be made.
    Planned,
    /// Needs a person: bad tags or a conflict. Nothing was changed.
    Error,
    /// A transient failure; the next run retries.
    Pending,
}

/// An Access application's id and audience tag.
#[derive(Debug, Clone, Serialize)]
pub struct AppRef {
    /// Application id.
    pub id: String,
    /// Audience (AUD) tag.
    pub aud: String,
}

/// The outcome of reconciling one service.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The service.
    pub service: ServiceId,
    /// Where it ended up.
    pub state: State,
    /// The tunnel, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    /// Changes made (apply) or planned (plan).
    pub changes: Vec<Change>,
    /// Kinds of the changes made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<&'static str>,
    /// The Access application, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_app: Option<AppRef>,
    /// What went wrong, in words a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Error kind (invalid, conflict, cloudflare, aws, setup, redeploy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// The status tag could not be written (e.g. the service already has 50 tags). The
    /// outcome stands; this is reported, not retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_error: Option<String>,
    /// Our reusable policies that applications we do not own still use: detached from
    /// ours and kept rather than deleted. Not an error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_policies: Vec<KeptPolicy>,
}

impl Outcome {
    fn new(service: &ServiceId, state: State) -> Self {
        Outcome {
            service: service.clone(),
            state,
            tunnel_id: None,
            access_app: None,
            changes: vec![],
            applied: vec![],
            error: None,
            error_kind: None,
            status_error: None,
            kept_policies: vec![],
        }
    }

    /// True for outcomes that a retry of the same event may fix.
    pub fn is_transient(&self) -> bool {
        self.state == State::Pending
    }
}

enum Intent {
    Expose(Box<spec::Spec>),
    Remove,
}

/// Reconciles one service. `account_hint` (from an event or ARN) builds the default owner
/// id when the service itself cannot be read.
pub async fn reconcile_service(
    deps: &Deps,
    svc: &ServiceId,
    mode: Mode,
    account_hint: Option<&str>,
) -> Outcome {
    reconcile_service_with(deps, svc, mode, account_hint, false).await
}

/// Like [`reconcile_service`]; with `check_removal` (an untag or delete event), an
/// untagged service is searched for leftovers even when it carries no status tag (a tool
/// that owns the tags may have removed ours in the same change).
pub async fn reconcile_service_with(
    deps: &Deps,
    svc: &ServiceId,
    mode: Mode,
    account_hint: Option<&str>,
    check_removal: bool,
) -> Outcome {
    let info = match deps.ecs.describe_service(&svc.cluster, &svc.service).await {
        Ok(i) => i,
        Err(e) => return failed(svc, &ReconcileError::Aws(e)),
    };
    let active = info.as_ref().filter(|i| i.is_active());
    let account = info
        .as_ref()
        .and_then(|i| i.account_region())
        .map(|(a, _)| a);
    let owner = match deps.owner(account.as_deref().or(account_hint)) {
        Ok(o) => o,
        Err(e) => return failed(svc, &ReconcileError::Setup(e)),
    };
    let intent = match active {
        Some(i) if !i.tags.contains_key(TAG_HOSTNAME) => {
            if !i.tags.contains_key(TAG_STATUS) && !check_removal {
                return Outcome::new(svc, State::NotManaged);
            }
            Intent::Remove
        }
        Some(i) => {
            let origin = if i.tags.contains_key(TAG_ORIGIN) {
                None
            } else {
                match i.task_definition.as_deref() {
                    Some(td) => match deps.default_origin(td).await {
                        Ok(o) => o,
                        Err(e) => return failed(svc, &ReconcileError::Aws(e)),
                    },
                    None => None,
                }
            };
            match spec::from_tags(
                &i.tags,
                &Defaults {
                    origin,
                    rotate_every: deps.config.rotate_every,
                },
            ) {
                Desired::Managed(s) => Intent::Expose(Box::new(s)),
                Desired::Invalid(errors) => {
                    return finish(
                        deps,
                        active,
                        mode,
                        failed(svc, &ReconcileError::Invalid(errors)),
                    )
                    .await
                }
                Desired::NotManaged => return Outcome::new(svc, State::NotManaged),
            }
        }
        None => {
            // Gone or being deleted. A service that was never ours costs a few reads.
            if !check_removal
                && info.as_ref().is_some_and(|i| {
                    !i.tags.is_empty()
                        && !i.tags.contains_key(TAG_HOSTNAME)
                        && !i.tags.contains_key(TAG_STATUS)
                })
            {
                return Outcome::new(svc, State::NotManaged);
            }
            Intent::Remove
        }
    };
    let redeploy = active
        .map(RedeployTarget::of)
        .unwrap_or_else(|| RedeployTarget::ecs(svc.clone()));
    let outcome = match converge(deps, svc, owner, &intent, mode, Some(redeploy)).await {
        Ok(o) => o,
        Err(e) => failed(svc, &e),
    };
    finish(deps, active, mode, outcome).await
}

async fn converge(
    deps: &Deps,
    svc: &ServiceId,
    owner: crate::ownership::Owner,
    intent: &Intent,
    mode: Mode,
    redeploy: Option<RedeployTarget>,
) -> Result<Outcome, ReconcileError> {
    let target = match intent {
        Intent::Expose(spec) => {
            Some(resolve_target(deps, spec, &crate::observe::Lookups::default()).await?)
        }
        Intent::Remove => None,
    };
    let team_name = match target.as_ref().and_then(|t| t.access.as_ref()) {
        Some(_) => deps.team_name().await?,
        None => String::new(),
    };
    let ctx = PlanContext {
        svc: svc.clone(),
        owner,
        account_id: deps.cf.account_id().to_string(),
        team_name,
        redeploy,
        rotation_function: deps.tokens.rotation_function().map(str::to_string),
    };
    let mut out = Outcome::new(
        svc,
        if target.is_some() {
            State::Ready
        } else {
            State::Removed
        },
    );
    for pass in 0..MAX_PASSES {
        let observed = observe(deps, &ctx, target.as_ref(), pass > 0).await?;
        let plan: Plan = diff(&ctx, target.as_ref(), &observed);
        out.tunnel_id = observed.tunnel.as_ref().map(|t| t.id.clone());
        out.access_app = observed.app.as_ref().map(|a| AppRef {
            id: a.id.clone(),
            aud: a.aud.clone(),
        });
        if !plan.conflicts.is_empty() {
            return Err(ReconcileError::Conflict(plan.conflicts));
        }
        if plan.changes.is_empty() || mode == Mode::Plan {
            out.kept_policies = name_kept_policies(deps, &ctx, plan.kept.clone()).await;
        }
        if plan.changes.is_empty() && !plan.notices.is_empty() {
            // Done, except what only a person can do: say so (the status tag, the
            // custom resource's Reason) without failing.
            let e = ReconcileError::Redeploy(plan.notices.join("; "));
            out.state = State::Error;
            out.error = Some(e.to_string());
            out.error_kind = Some(e.kind());
            return Ok(out);
        }
        if mode == Mode::Plan {
            out.state = if plan.changes.is_empty() {
                out.state
            } else {
                State::Planned
            };
            out.changes = plan.changes;
            return Ok(out);
        }
        if plan.changes.is_empty() {
            if target.is_none() && out.changes.is_empty() {
                out.state = State::NotManaged; // nothing of ours was there
            }
            return Ok(out);
        }
        let applied = apply(deps, &ctx, target.as_ref(), &observed, &plan).await?;
        out.applied.extend(applied.changes);
        out.changes.extend(plan.changes);
        out.tunnel_id = applied.tunnel_id;
    }
    Err(ReconcileError::NotConverged(format!(
        "did not converge after {MAX_PASSES} passes; the next run continues"
    )))
}

/// Names the applications that keep each of our policies alive, and warns about each:
/// the policy stays until they stop using it. A failed lookup leaves the names out.
async fn name_kept_policies(
    deps: &Deps,
    ctx: &PlanContext,
    mut kept: Vec<KeptPolicy>,
) -> Vec<KeptPolicy> {
    if kept.is_empty() {
        return kept;
    }
    let our_app = ctx.owner.access_app_name(&ctx.svc);
    let apps = deps
        .cf
        .list_access_apps(&crate::cloudflare::AppQuery::default())
        .await
        .map_err(|e| warn!(service = %ctx.svc, error = %e, "could not list the Access applications that use a kept policy"))
        .unwrap_or_default();
    for k in &mut kept {
        k.used_by = crate::diff::other_apps_using(&apps, &our_app, &k.id);
        warn!(service = %ctx.svc, policy = %k.id, policy_name = %k.name, used_by = %k.used_by.join(", "), "kept the reusable Access policy ecs-tunnels made for this service: applications it does not own use it, so it was detached from ours and not deleted; remove it from them, then delete it");
    }
    kept
}

fn failed(svc: &ServiceId, e: &ReconcileError) -> Outcome {
    let mut o = Outcome::new(
        svc,
        if e.is_transient() {
            State::Pending
        } else {
            State::Error
        },
    );
    o.error = Some(e.to_string());
    o.error_kind = Some(e.kind());
    o
}

/// Publishes the status tag (only when it changes) and logs the outcome.
async fn finish(
    deps: &Deps,
    active: Option<&crate::aws::ecs::ServiceInfo>,
    mode: Mode,
    mut outcome: Outcome,
) -> Outcome {
    if mode == Mode::Plan {
        return outcome;
    }
    if let Some(info) = active {
        let current = info.tags.get(TAG_STATUS);
        let wanted = match outcome.state {
            State::Ready => outcome.tunnel_id.as_deref().map(status::ready),
            State::Error => Some(status::error(outcome.error.as_deref().unwrap_or("unknown"))),
            State::Pending => Some(status::pending(
                outcome.error.as_deref().unwrap_or("retrying"),
            )),
            State::Removed | State::NotManaged | State::Planned => None,
        };
        let result = match (&wanted, current) {
            (Some(w), c) if c != Some(w) => deps.ecs.tag(&info.arn, TAG_STATUS, w).await,
            (None, Some(_)) => deps.ecs.untag(&info.arn, TAG_STATUS).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            // Reported, never retried for its own sake: a retry cannot give a service at
            // ECS's 50-tag limit room, and the next event or sweep tries again anyway.
            warn!(service = %outcome.service, state = ?outcome.state, error = %e, "could not write the status tag; the outcome stands (free a tag on the service, or allow ecs:TagResource for ecs-tunnels:status)");
            outcome.status_error = Some(e.to_string());
        }
    }
    match (&outcome.error, outcome.applied.is_empty()) {
        (Some(e), _) => {
            warn!(service = %outcome.service, state = ?outcome.state, error_kind = outcome.error_kind.unwrap_or(""), error = %e, "service not converged")
        }
        (None, false) => {
            info!(service = %outcome.service, state = ?outcome.state, changes = outcome.applied.len(), tunnel_id = outcome.tunnel_id.as_deref().unwrap_or(""), "service reconciled")
        }
        (None, true) => {}
    }
    outcome
}

/// Reconciles objects that are not tied to an ECS service's tags (a CloudFormation custom
/// resource): `spec` `None` tears them down. `redeploy` is the service to redeploy after a
/// token change, if any.
pub async fn reconcile_resource(
    deps: &Deps,
    key: &ServiceId,
    owner: crate::ownership::Owner,
    spec: Option<spec::Spec>,
    redeploy: Option<RedeployTarget>,
) -> Result<Outcome, ReconcileError> {
    let intent = match spec {
        Some(s) => Intent::Expose(Box::new(s)),
        None => Intent::Remove,
    };
    converge(deps, key, owner, &intent, Mode::Apply, redeploy).await
}
