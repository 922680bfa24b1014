//! The one reconcile every door ends in: read the service and its tags, resolve the
//! spec, observe, diff, apply; repeat until the plan is empty (a few passes at most, so
//! races with concurrent runs settle); then publish the status tag.

use crate::apply::apply;
use crate::context::Deps;
use crate::diff::{diff, Change, KeptPolicy, Plan};
use crate::digest::SpecDigest;
use crate::error::ReconcileError;
use crate::model::{PlanContext, RedeployTarget};
use crate::observe::{observe, resolve_target, Hints, Seen};
use crate::ownership::ServiceId;
use crate::spec::{self, Desired, TAG_HOSTNAME, TAG_STATUS};
use crate::status;
use serde::Serialize;
use tracing::{info, warn};

/// Passes before a reconcile gives up converging. A pass repeats only when its apply
/// met a race (a concurrent run made or changed one of our objects).
const MAX_PASSES: usize = 3;

/// How a door asks for one service.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// An untag or delete event: an untagged service is searched for leftovers even
    /// when it carries no status tag (a tool that owns the tags may have removed ours in
    /// the same change).
    pub check_removal: bool,
    /// A routine event (a task started or stopped, a redeploy that changed no input):
    /// when the status digest matches the service's inputs and its token carries no
    /// rotation or redeploy mark, the service is left as the last converged reconcile
    /// made it, without a Cloudflare call. The sweep checks the real state.
    pub routine: bool,
    /// What the sweep's bulk lists saw of the service.
    pub seen: Seen,
    /// A delayed follow-up asked (see [`crate::doors::follow_up`]): while the service
    /// still waits for cloudflared and is within its grace period, one connection read
    /// decides whether a full reconcile is worth it.
    pub follow_up: Option<FollowUpAsk>,
    /// When this run writes a token and a new hostname waits for cloudflared, wait a
    /// little for the sidecar ([`crate::publish::wait_for_connectors`]) before leaving
    /// it to a follow-up. The event door asks for it; the sweep, which has many services
    /// to get through, does not.
    pub wait_for_connector: bool,
    /// The event behind the ask: logged with every change, and recorded on a token it
    /// creates.
    pub cause: crate::cause::Cause,
}

/// What a follow-up message asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpAsk {
    /// Its place in the chain (1-based).
    pub attempt: u32,
    /// The tunnel whose connection is awaited.
    pub tunnel_id: String,
}

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
    /// Everything is in place but a new hostname's DNS record, which waits for
    /// cloudflared's first connection (`ECS_TUNNELS_PUBLISH=connected`). Not a failure:
    /// a delayed follow-up, the service's task events and the sweep look again.
    Waiting,
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
    /// Connectors attached to the tunnel, as the status tag records them (the count is
    /// refreshed only when it crosses zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectors: Option<usize>,
    /// Hostnames whose DNS record waits for cloudflared's first connection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// This run wrote the token (a new tunnel, a rotation, a repair): its tasks are
    /// being replaced, so a follow-up looks for their connection later.
    #[serde(skip)]
    pub wrote_token: bool,
    /// Whether the tunnel had a connection when last seen.
    #[serde(skip)]
    pub tunnel_connected: bool,
    /// Since when the tunnel has had no connection, when known.
    #[serde(skip)]
    pub disconnected_since: Option<std::time::SystemTime>,
    /// What is wrong with the sidecar, when its tunnel has had no connection for longer
    /// than the grace period while tasks run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<crate::diagnose::Diagnosis>,
    /// Who first exposed it and when (`exposed_by`, `exposed_at`), from its token's tags.
    #[serde(flatten)]
    pub exposed: Option<crate::cause::Exposure>,
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
            connectors: None,
            waiting_for: vec![],
            wrote_token: false,
            tunnel_connected: false,
            disconnected_since: None,
            diagnosis: None,
            exposed: None,
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
    reconcile_asked(deps, svc, mode, account_hint, &Ask::default()).await
}

/// Like [`reconcile_service`]; with `check_removal` see [`Ask::check_removal`].
pub async fn reconcile_service_with(
    deps: &Deps,
    svc: &ServiceId,
    mode: Mode,
    account_hint: Option<&str>,
    check_removal: bool,
) -> Outcome {
    let ask = Ask {
        check_removal,
        ..Default::default()
    };
    reconcile_asked(deps, svc, mode, account_hint, &ask).await
}

/// Reconciles one service as a door asks ([`Ask`]).
pub async fn reconcile_asked(
    deps: &Deps,
    svc: &ServiceId,
    mode: Mode,
    account_hint: Option<&str>,
    ask: &Ask,
) -> Outcome {
    let check_removal = ask.check_removal;
    // In an organization install, the spoke's clients (its role assumed once per process).
    let deps = match deps.for_service(svc).await {
        Ok(d) => d,
        Err(e) => {
            warn!(service = %svc, error = %e, "the service's account cannot be reached");
            return failed(svc, &e);
        }
    };
    let deps = &*deps;
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
    let status = active
        .and_then(|i| i.tags.get(TAG_STATUS))
        .map(String::as_str);
    if let (Some(f), Mode::Apply, Some(i)) = (&ask.follow_up, mode, active) {
        if let Some(o) = still_waiting(deps, svc, i, status, f).await {
            return o;
        }
    }
    let mut hints = Hints {
        // A run that did not finish may have left a policy it had not linked yet.
        find_unlinked_policies: status.is_some_and(|s| status::ready_tunnel(s).is_none()),
        seen: ask.seen.clone(),
        ..Default::default()
    };
    let mut digest = None;
    let intent = match active {
        Some(i) if !i.tags.contains_key(TAG_HOSTNAME) => {
            if !i.tags.contains_key(TAG_STATUS) && !check_removal {
                return Outcome::new(svc, State::NotManaged);
            }
            Intent::Remove
        }
        Some(i) => {
            let (wanted, recorded) = crate::desired::digests(deps, i);
            if ask.routine && mode == Mode::Apply && recorded.as_ref() == Some(&wanted) {
                if let Some(o) = unchanged(deps, svc, status).await {
                    return o;
                }
            }
            let built = match crate::desired::wanted(deps, i, true).await {
                Ok(w) => w,
                Err(e) => return failed(svc, &ReconcileError::Aws(e)),
            };
            hints.hosts_unchanged = built
                .recorded
                .as_ref()
                .is_some_and(|r| r.same_hosts(&built.digest));
            digest = Some(built.digest);
            match built.desired {
                Desired::Managed(s) => Intent::Expose(Box::new(s)),
                Desired::Invalid(errors) => {
                    return finish(
                        deps,
                        active,
                        mode,
                        None,
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
    let first_write = active
        .filter(|_| mode == Mode::Apply)
        .map(|i| (i.arn.clone(), status.map(str::to_string)));
    let outcome = match converge(
        deps,
        svc,
        owner,
        &intent,
        mode,
        Some(redeploy),
        hints,
        first_write,
        deps.config.publish.mode,
        ask.wait_for_connector,
        ask.cause.clone(),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => failed(svc, &e),
    };
    let outcome = match mode {
        Mode::Apply => record_connectors(deps, status, outcome).await,
        Mode::Plan => outcome,
    };
    let origin = match &intent {
        Intent::Expose(spec) => Some(spec.origin.as_str()),
        Intent::Remove => None,
    };
    let outcome = match active {
        Some(info) => diagnose_if_unconnected(deps, info, origin, outcome).await,
        None => outcome,
    };
    finish(deps, active, mode, digest.as_ref(), outcome).await
}

/// When a service runs tasks but its tunnel has had no connection for longer than the
/// grace period (`ECS_TUNNELS_CONNECT_GRACE`, counted from the later of the tunnel's
/// last connection, or creation, and the service's last deployment), its task
/// definition is diagnosed ([`crate::diagnose`]); a problem found becomes the outcome's
/// error (`error cloudflared has not connected …: <what is wrong>` in the status tag,
/// the log and `plan`). Records already published stay.
async fn diagnose_if_unconnected(
    deps: &Deps,
    info: &crate::aws::ecs::ServiceInfo,
    origin: Option<&str>,
    mut o: Outcome,
) -> Outcome {
    if !matches!(o.state, State::Ready | State::Waiting | State::Planned)
        || o.tunnel_connected
        || o.tunnel_id.is_none()
        || info.running_count < 1
    {
        return o;
    }
    let since = [o.disconnected_since, info.last_deployed_at]
        .into_iter()
        .flatten()
        .max();
    let Some(for_how_long) = since.and_then(|t| t.elapsed().ok()) else {
        return o;
    };
    if for_how_long < deps.config.publish.connect_grace {
        return o;
    }
    let minutes = for_how_long.as_secs() / 60;
    match crate::diagnose::diagnose(deps, &o.service, info, origin).await {
        Ok(d) => {
            if let Some(reason) = d.status_reason() {
                o.error = Some(format!(
                    "cloudflared has not connected for {minutes} min: {reason}"
                ));
                o.error_kind = Some("sidecar");
                if o.state != State::Planned {
                    o.state = State::Error;
                }
            } else {
                warn!(service = %o.service, minutes, running_tasks = info.running_count, unjudged = %d.unjudged.join("; "), "cloudflared has not connected, and the task definition looks right: read the cloudflared container's log (ecs-tunnels doctor shows what was checked)");
            }
            o.diagnosis = Some(d);
        }
        Err(e) => {
            warn!(service = %o.service, error = %e, "cloudflared has not connected, and the task definition could not be read to say why");
        }
    }
    o
}

/// Fills in the connector count a `ready` status records. It is read (one call) only when
/// it crosses zero: the tunnel connected while the status said 0 (or nothing), since a
/// count that changes without crossing zero is left as recorded, so replicas coming and
/// going do not rewrite the tag.
async fn record_connectors(deps: &Deps, status: Option<&str>, mut o: Outcome) -> Outcome {
    let Some(tunnel_id) = o.tunnel_id.as_deref().filter(|_| o.state == State::Ready) else {
        return o;
    };
    if o.connectors.is_some() {
        return o;
    }
    let recorded = status
        .filter(|s| status::ready_tunnel(s) == Some(tunnel_id))
        .filter(|s| !status::connectors_changed(s, o.tunnel_connected))
        .and_then(status::ready_connectors);
    o.connectors = Some(match recorded {
        Some(n) => n,
        None if o.tunnel_connected => {
            match crate::publish::count_connectors(deps, tunnel_id).await {
                Ok(n) => n.max(1),
                Err(e) => {
                    warn!(service = %o.service, error = %e, "could not count the tunnel's connectors; the status says 1 until the next run");
                    1
                }
            }
        }
        None => 0,
    });
    o
}

/// The routine-event shortcut: the service's inputs match its last converged reconcile
/// (checked by the caller), so only the token's marks are read (an AWS call, no
/// Cloudflare call). `None`: a mark (an unfinished rotation, a redeploy owed) or an
/// unreadable token; the full path decides.
async fn unchanged(deps: &Deps, svc: &ServiceId, status: Option<&str>) -> Option<Outcome> {
    use crate::aws::token_store::{REDEPLOY_TAG, ROTATION_TAG};
    let tunnel_id = status.and_then(status::ready_tunnel)?.to_string();
    let stored = deps.tokens.get(svc).await.ok()??;
    if stored.tags.contains_key(REDEPLOY_TAG) || stored.tags.contains_key(ROTATION_TAG) {
        return None;
    }
    // The token must still be for our account and this tunnel (decoded here, no call).
    let (account, tunnel) = crate::token::token_identity(&stored.value)?;
    if account != deps.cf.account_id() || tunnel != tunnel_id {
        return None;
    }
    let mut o = Outcome::new(svc, State::Ready);
    o.connectors = status.and_then(status::ready_connectors);
    o.tunnel_id = Some(tunnel_id);
    Some(o)
}

/// The follow-up shortcut: a service still waiting for its sidecar, within the grace
/// period after its last deployment, whose tunnel still has no connector, waits on
/// (one Cloudflare read). `None`: the full path decides (it publishes, or diagnoses).
async fn still_waiting(
    deps: &Deps,
    svc: &ServiceId,
    info: &crate::aws::ecs::ServiceInfo,
    status: Option<&str>,
    f: &FollowUpAsk,
) -> Option<Outcome> {
    if status != Some(status::waiting().as_str()) {
        return None;
    }
    let grace = deps.config.publish.connect_grace;
    let deployed = info.last_deployed_at?;
    if deployed.elapsed().map_or(true, |e| e >= grace) {
        return None;
    }
    match crate::publish::count_connectors(deps, &f.tunnel_id).await {
        Ok(0) => {
            let mut o = Outcome::new(svc, State::Waiting);
            o.tunnel_id = Some(f.tunnel_id.clone());
            o.connectors = Some(0);
            Some(o)
        }
        _ => None,
    }
}

/// The service's status tag says a run is under way (`pending creating`), so that a run
/// that dies between creating our reusable policy and linking it leaves a sign the next
/// run sees (it then looks for the policy instead of making a second one). Written only
/// before the first write of a create; a failure is logged, not fatal.
async fn mark_creating(deps: &Deps, svc: &ServiceId, arn: &str) {
    let value = status::pending("creating");
    if let Err(e) = deps.ecs.tag(arn, TAG_STATUS, &value).await {
        warn!(service = %svc, error = %e, "could not mark the service as being created; a run that dies now may leave a duplicate policy for the sweep to remove");
    }
}

/// Observes, plans and applies until nothing is left, a race aside at most
/// [`MAX_PASSES`] times. `first_write` is the service's ARN and status, for the
/// `pending creating` mark written before a create's first write.
#[allow(clippy::too_many_arguments)]
async fn converge(
    deps: &Deps,
    svc: &ServiceId,
    owner: crate::ownership::Owner,
    intent: &Intent,
    mode: Mode,
    redeploy: Option<RedeployTarget>,
    mut hints: Hints,
    first_write: Option<(String, Option<String>)>,
    publish: crate::publish::PublishMode,
    wait_for_connector: bool,
    cause: crate::cause::Cause,
) -> Result<Outcome, ReconcileError> {
    let target = match intent {
        Intent::Expose(spec) => {
            // Names in tags resolve against lists kept for a few minutes; a name not
            // found is looked up once more in fresh lists before it is an error.
            match resolve_target(deps, spec, &*deps.lookups(false).await).await {
                Err(ReconcileError::Invalid(_)) => {
                    Some(resolve_target(deps, spec, &*deps.lookups(true).await).await?)
                }
                other => Some(other?),
            }
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
        publish,
        cause,
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
        let observed = observe(deps, &ctx, target.as_ref(), &hints).await?;
        let plan: Plan = diff(&ctx, target.as_ref(), &observed);
        out.tunnel_id = observed.tunnel.as_ref().map(|t| t.id.clone());
        out.tunnel_connected = observed.tunnel.as_ref().is_some_and(|t| t.is_connected());
        out.disconnected_since = match &observed.tunnel {
            Some(t) => t.disconnected_since(),
            None => Some(std::time::SystemTime::now()),
        };
        out.exposed = observed.token.as_ref().and_then(|t| t.exposed.clone());
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
            out.waiting_for = held_hosts(&plan.held);
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
            settle_held(deps, &ctx, plan.held, wait_for_connector, &mut out).await?;
            return Ok(out);
        }
        let creating = plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::CreatePolicy { .. }))
            && observed.app.is_none();
        if let Some((arn, status)) = first_write.as_ref().filter(|_| creating && pass == 0) {
            if status.as_deref() != Some(status::pending("creating").as_str()) {
                mark_creating(deps, svc, arn).await;
            }
        }
        let applied = apply(deps, &ctx, target.as_ref(), &observed, &plan).await?;
        out.wrote_token |= applied.changes.contains(&"write_token");
        out.applied.extend(applied.changes);
        out.changes.extend(plan.changes);
        out.tunnel_id = applied.tunnel_id;
        out.access_app = applied.access_app.or(out.access_app);
        for mut k in applied.kept {
            if let Some(p) = observed.policies.iter().find(|p| p.id == k.id) {
                k.name = p.name.clone();
            }
            out.kept_policies.push(k);
        }
        if !applied.raced {
            // The apply did what the plan said and met no one: done, without reading
            // everything again (a race repeats the pass, looking everywhere), except
            // what only a person can do.
            if !plan.notices.is_empty() {
                let e = ReconcileError::Redeploy(plan.notices.join("; "));
                out.state = State::Error;
                out.error = Some(e.to_string());
                out.error_kind = Some(e.kind());
                return Ok(out);
            }
            settle_held(deps, &ctx, plan.held, wait_for_connector, &mut out).await?;
            return Ok(out);
        }
        hints.hosts_unchanged = false;
        hints.find_unlinked_policies = true;
        hints.seen.listed = None;
    }
    Err(ReconcileError::NotConverged(format!(
        "did not converge after {MAX_PASSES} passes; the next run continues"
    )))
}

/// The hostnames of held DNS records.
fn held_hosts(held: &[Change]) -> Vec<String> {
    held.iter()
        .filter_map(|c| match c {
            Change::CreateDns { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Ends a converged pass whose plan held DNS records back for cloudflared's first
/// connection. The run that wrote the token (its tasks are being replaced to read it)
/// waits a little for the sidecar ([`crate::publish::wait_for_connectors`]) and
/// publishes as soon as it connects; otherwise the service waits (`State::Waiting`).
async fn settle_held(
    deps: &Deps,
    ctx: &PlanContext,
    held: Vec<Change>,
    wait: bool,
    out: &mut Outcome,
) -> Result<(), ReconcileError> {
    let Some(tunnel_id) = out.tunnel_id.clone().filter(|_| !held.is_empty()) else {
        return Ok(());
    };
    let hosts = held_hosts(&held);
    if out.wrote_token && wait {
        info!(service = %ctx.svc, hostnames = %hosts.join(" "), wait = %humantime::format_duration(deps.config.publish.connect_wait), "waiting for cloudflared to connect before publishing");
        let n =
            crate::publish::wait_for_connectors(deps, &tunnel_id, deps.config.publish.connect_wait)
                .await?;
        if n > 0 {
            out.applied
                .extend(crate::apply::publish_held(deps, ctx, &tunnel_id, &held).await?);
            out.changes.extend(held);
            out.connectors = Some(n);
            out.tunnel_connected = true;
            out.disconnected_since = None;
            return Ok(());
        }
    }
    info!(service = %ctx.svc, hostnames = %hosts.join(" "), "not published yet: the tunnel has no cloudflared connection");
    out.state = State::Waiting;
    out.waiting_for = hosts;
    out.connectors = Some(0);
    Ok(())
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
    digest: Option<&SpecDigest>,
    mut outcome: Outcome,
) -> Outcome {
    if mode == Mode::Plan {
        return outcome;
    }
    if let Some(info) = active {
        let current = info.tags.get(TAG_STATUS);
        let wanted = match outcome.state {
            State::Ready => outcome
                .tunnel_id
                .as_deref()
                .map(|t| status::ready(t, outcome.connectors.unwrap_or(0), digest)),
            State::Waiting => Some(status::waiting()),
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
/// token change, if any; `cause` the request behind it.
pub async fn reconcile_resource(
    deps: &Deps,
    key: &ServiceId,
    owner: crate::ownership::Owner,
    spec: Option<spec::Spec>,
    redeploy: Option<RedeployTarget>,
    cause: &crate::cause::Cause,
) -> Result<Outcome, ReconcileError> {
    let intent = match spec {
        Some(s) => Intent::Expose(Box::new(s)),
        None => Intent::Remove,
    };
    // A custom resource has no status to say whether a run stopped half-way.
    let hints = Hints {
        find_unlinked_policies: true,
        ..Default::default()
    };
    converge(
        deps,
        key,
        owner,
        &intent,
        Mode::Apply,
        redeploy,
        hints,
        None,
        // A custom resource's stack orders its resources itself, and no later run (the
        // sweep leaves custom resources alone) would publish a held record.
        crate::publish::PublishMode::Immediately,
        false,
        cause.clone(),
    )
    .await
}
