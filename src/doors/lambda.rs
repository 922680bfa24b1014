//! The Lambda door: serves invocations through the Runtime API and dispatches each
//! event by its shape. A transient failure is returned as an invocation error, so
//! Lambda (or SQS) retries it; bad tags and conflicts are not, because a retry cannot
//! fix them (the status tag says what to do).

use crate::cause::Cause;
use crate::config::Config;
use crate::context::Deps;
use crate::doors::events::{cause_of, recognise, sqs_batch, BatchItem, Trigger};
use crate::doors::run::{reconcile_many, Work};
use crate::ownership::ServiceId;
use crate::reconcile::Ask;
use crate::reconcile::{Mode, Outcome};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn, Instrument};

/// The function's dependencies, built at cold start and, when that failed, again on
/// each invocation until it works: one SSM or Secrets Manager throttle while reading the
/// API token must not leave the container misconfigured for the rest of its life. A
/// configuration error in the environment cannot change in a running container, so it
/// is kept.
pub struct Init {
    config: Result<Config, String>,
    deps: tokio::sync::OnceCell<Deps>,
}

impl Init {
    /// Starts from the configuration read from the environment.
    pub fn new(config: Result<Config, String>) -> Self {
        Init {
            config,
            deps: tokio::sync::OnceCell::new(),
        }
    }

    /// The dependencies, building them if no earlier attempt succeeded.
    pub async fn deps(&self) -> Result<&Deps, String> {
        let config = self.config.as_ref().map_err(Clone::clone)?;
        self.deps
            .get_or_try_init(|| async {
                let built = Deps::build(config.clone()).await;
                if let Err(e) = &built {
                    tracing::error!(error = %e, transient = e.transient, "initialisation failed; the next invocation tries again");
                }
                built.map_err(|e| e.message)
            })
            .await
    }
}

/// Serves Lambda invocations until the runtime stops. Initialisation is tried at cold
/// start and retried by each invocation until it succeeds.
pub async fn serve(init: Init) -> Result<(), Error> {
    if let Err(e) = init.deps().await {
        tracing::error!(error = %e, "configuration error");
    }
    let init = &init;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deps = init.deps().await;
        // A CloudFormation request is always answered, even by a misconfigured install.
        if let (Err(e), Some(_)) = (&deps, event.payload.get("ResponseURL")) {
            let deadline = event.context.deadline();
            return crate::doors::custom_resource::handle(
                Err(e.as_str()),
                &event.payload,
                deadline,
            )
            .await
            .map_err(Error::from);
        }
        match deps {
            Ok(d) => {
                let trigger = trigger_name(&event.payload);
                let before = d.cf.stats();
                let deadline = budget_deadline(event.context.deadline());
                let result =
                    crate::cloudflare::with_deadline(Some(deadline), handle(d, event)).await;
                let after = d.cf.stats();
                let mut m = match &result {
                    Ok(v) => crate::metrics::InvocationMetrics::from_response(trigger, v),
                    Err(_) => {
                        let mut m = crate::metrics::InvocationMetrics {
                            trigger,
                            ..Default::default()
                        };
                        m.errors.insert("invocation".into(), 1);
                        m
                    }
                };
                m.cloudflare_calls = after.total - before.total;
                m.rate_limited = after.rate_limited - before.rate_limited;
                m.extra.push((
                    "CloudflareBudgetWait",
                    (after.budget_wait_ms - before.budget_wait_ms) as f64,
                    "Milliseconds",
                ));
                m.extra.push((
                    "CloudflareBudgetRefused",
                    (after.budget_refused - before.budget_refused) as f64,
                    "Count",
                ));
                m.emit();
                result
            }
            Err(e) => Err(Error::from(format!("ecs-tunnels is misconfigured: {e}"))),
        }
    }))
    .await
}

/// A Cloudflare request whose turn in the API budget comes later than this long before
/// the invocation's deadline is not sent: the work fails as transient (SQS, Lambda or
/// the next schedule retries it) while there is still time to report it.
const BUDGET_DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// The instant after which no Cloudflare request of this invocation may be scheduled.
fn budget_deadline(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.saturating_sub(BUDGET_DEADLINE_MARGIN)
}

/// The metrics dimension for an event.
fn trigger_name(payload: &Value) -> &'static str {
    match recognise(payload).ok().and_then(|t| t.into_iter().next()) {
        Some(Trigger::Sweep) => "sweep",
        Some(Trigger::Rotate) => "rotate",
        Some(Trigger::CustomResource(_)) => "custom_resource",
        Some(Trigger::SecretsRotation(_)) => "secrets_rotation",
        _ => "event",
    }
}

fn account_of_function(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// Handles one invocation.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    let calls_before = deps.cf.stats().total;
    let fn_account = account_of_function(&ctx.invoked_function_arn);
    if let Some(batch) = sqs_batch(&payload) {
        let batch = batch.map_err(|e| {
            warn!(error = %e, "event rejected");
            Error::from(e)
        })?;
        return Ok(handle_batch(deps, batch, fn_account, calls_before).await);
    }
    let triggers = recognise(&payload).map_err(|e| {
        warn!(error = %e, "event rejected");
        Error::from(e)
    })?;
    let mut work = Services::default();
    let mut ignored = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for t in triggers {
        match t {
            Trigger::Service {
                service,
                account,
                check_removal,
                routine,
                cause,
            } => work.add(
                deps.install_scope(service),
                account.or_else(|| fn_account.clone()),
                check_removal,
                routine,
                cause,
            ),
            Trigger::FollowUp(f) => {
                work.follow_up(deps, f, fn_account.clone());
            }
            Trigger::Ignore(why) => {
                info!(reason = %why, "event ignored");
                ignored.push(why);
            }
            Trigger::Sweep => {
                // Stop starting work 15 s before the invocation's deadline.
                let left = ctx
                    .deadline()
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                let deadline = std::time::Instant::now()
                    + left.saturating_sub(std::time::Duration::from_secs(15));
                let limits = crate::sweep::SweepLimits::from_config(&deps.config, Some(deadline));
                let cause = cause_of(&payload);
                let report =
                    crate::sweep::sweep(deps, Mode::Apply, &limits, fn_account.as_deref(), &cause)
                        .instrument(cause.run_span())
                        .await
                        .map_err(|e| Error::from(e.to_string()))?;
                return Ok(json!({ "sweep": report }));
            }
            Trigger::Rotate => {
                let rotations = crate::rotate::rotate_due_for(deps, false, fn_account.as_deref())
                    .instrument(cause_of(&payload).run_span())
                    .await
                    .map_err(|e| Error::from(e.to_string()))?;
                let failed: Vec<String> = rotations
                    .iter()
                    .filter(|r| r.transient)
                    .map(|r| format!("{}: {}", r.service, r.error.as_deref().unwrap_or("")))
                    .collect();
                if !failed.is_empty() {
                    return Err(Error::from(format!("will retry: {}", failed.join("; "))));
                }
                return Ok(
                    json!({ "rotations": rotations, "cloudflare_calls": deps.cf.stats().total - calls_before }),
                );
            }
            Trigger::CustomResource(event) => {
                return crate::doors::custom_resource::handle(Ok(deps), &event, ctx.deadline())
                    .await
                    .map_err(Error::from);
            }
            Trigger::SecretsRotation(event) => {
                return crate::secrets_rotation::handle(deps, &event)
                    .instrument(cause_of(&event).run_span())
                    .await
                    .map_err(|e| {
                        warn!(error = %e, "rotation step failed");
                        Error::from(e.to_string())
                    });
            }
        }
    }
    outcomes.extend(reconcile_many(deps, work.work, Mode::Apply, &work.asks).await);
    follow_up_waiting(deps, &outcomes, &work.asks, &work.follow_ups).await;
    let calls = deps.cf.stats().total - calls_before;
    let transient: Vec<String> = outcomes
        .iter()
        .filter(|o| o.is_transient())
        .map(|o| format!("{}: {}", o.service, o.error.as_deref().unwrap_or("")))
        .collect();
    if !transient.is_empty() {
        return Err(Error::from(format!("will retry: {}", transient.join("; "))));
    }
    Ok(json!({ "outcomes": outcomes, "ignored": ignored, "cloudflare_calls": calls }))
}

/// The services an invocation asks to reconcile, each once.
#[derive(Default)]
struct Services {
    work: Vec<Work>,
    asks: BTreeMap<ServiceId, Ask>,
    follow_ups: BTreeMap<ServiceId, crate::doors::follow_up::FollowUp>,
}

impl Services {
    /// Adds a service (once); `check_removal` when its event may mean it was untagged
    /// or deleted; `routine` when it was a routine event (routine only if every event
    /// for the service was). Its cause is the first non-routine event's, else the
    /// first event's.
    fn add(
        &mut self,
        service: ServiceId,
        account: Option<String>,
        check_removal: bool,
        routine: bool,
        cause: Cause,
    ) {
        let first = !self.asks.contains_key(&service);
        let ask = self.asks.entry(service.clone()).or_insert_with(|| Ask {
            routine: true,
            wait_for_connector: true,
            ..Default::default()
        });
        // `ask.routine` still says whether every earlier event was routine.
        if first || (ask.routine && !routine) {
            ask.cause = cause;
        }
        ask.check_removal |= check_removal;
        ask.routine &= routine;
        if first {
            self.work.push((service, account));
        }
    }

    /// Adds the service a follow-up names. Another event for the same service in the
    /// same batch makes its reconcile a full one.
    fn follow_up(
        &mut self,
        deps: &Deps,
        f: crate::doors::follow_up::FollowUp,
        fn_account: Option<String>,
    ) {
        let service = deps.install_scope(f.service_id());
        let alone = !self.asks.contains_key(&service);
        // The chain carries the cause of the event that started it.
        let cause = f
            .cause
            .as_ref()
            .and_then(|c| serde_json::from_value::<Cause>(c.clone()).ok())
            .unwrap_or_else(|| Cause::new("follow-up", None, None, None));
        self.add(
            service.clone(),
            f.account.clone().or(fn_account),
            false,
            false,
            cause,
        );
        if alone {
            if let Some(ask) = self.asks.get_mut(&service) {
                ask.follow_up = Some(crate::reconcile::FollowUpAsk {
                    attempt: f.attempt,
                    tunnel_id: f.tunnel_id.clone(),
                });
            }
        }
        self.follow_ups.insert(service, f);
    }
}

/// Leaves a delayed follow-up for each service that ended waiting for cloudflared: the
/// next of its chain, or the first when this run wrote its token or a person's change
/// asked for the reconcile (see [`crate::doors::follow_up::next_attempt`]).
async fn follow_up_waiting(
    deps: &Deps,
    outcomes: &[Outcome],
    asks: &BTreeMap<ServiceId, Ask>,
    chains: &BTreeMap<ServiceId, crate::doors::follow_up::FollowUp>,
) {
    use crate::doors::follow_up::{next_attempt, send, FollowUp, KIND};
    for o in outcomes
        .iter()
        .filter(|o| o.state == crate::reconcile::State::Waiting)
    {
        let (Some(ask), Some(tunnel_id)) = (asks.get(&o.service), o.tunnel_id.as_ref()) else {
            continue;
        };
        let previous = ask.follow_up.as_ref().map(|f| f.attempt);
        let Some(attempt) = next_attempt(previous, o.wrote_token || !ask.routine) else {
            continue;
        };
        let chain = chains.get(&o.service);
        let f = FollowUp {
            kind: KIND.to_string(),
            cluster: o.service.cluster.clone(),
            service: o.service.service.clone(),
            account: o
                .service
                .scope
                .as_ref()
                .map(|s| s.account.clone())
                .or_else(|| chain.and_then(|c| c.account.clone())),
            region: o.service.scope.as_ref().map(|s| s.region.clone()),
            tunnel_id: tunnel_id.clone(),
            attempt,
            reason: "waiting for cloudflared to connect".into(),
            cause: serde_json::to_value(&ask.cause).ok(),
        };
        send(deps, &f).await;
    }
}

/// Handles an SQS batch message by message: a malformed message, or one whose service
/// hit a transient failure (a rate limit, a 5xx, throttling), is reported in
/// `batchItemFailures` and retried alone; the others are done. (The event source mapping
/// has `FunctionResponseTypes: [ReportBatchItemFailures]`.)
async fn handle_batch(
    deps: &Deps,
    batch: Vec<BatchItem>,
    fn_account: Option<String>,
    calls_before: u64,
) -> Value {
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut senders: BTreeMap<ServiceId, Vec<String>> = BTreeMap::new();
    let mut work = Services::default();
    let mut ignored = Vec::new();
    for item in batch {
        let triggers = match item.triggers {
            Ok(t) => t,
            Err(e) => {
                warn!(message_id = %item.message_id, error = %e, "SQS message rejected; it is retried alone and then goes to the dead-letter queue");
                failed.insert(item.message_id);
                continue;
            }
        };
        for t in triggers {
            match t {
                Trigger::Service {
                    service,
                    account,
                    check_removal,
                    routine,
                    cause,
                } => {
                    let service = deps.install_scope(service);
                    senders
                        .entry(service.clone())
                        .or_default()
                        .push(item.message_id.clone());
                    work.add(
                        service,
                        account.or_else(|| fn_account.clone()),
                        check_removal,
                        routine,
                        cause,
                    );
                }
                Trigger::FollowUp(f) => {
                    senders
                        .entry(f.service_id())
                        .or_default()
                        .push(item.message_id.clone());
                    work.follow_up(deps, f, fn_account.clone());
                }
                Trigger::Ignore(why) => {
                    info!(message_id = %item.message_id, reason = %why, "event ignored");
                    ignored.push(why);
                }
                other => {
                    let what = match other {
                        Trigger::Sweep => "a sweep schedule",
                        Trigger::Rotate => "a rotation schedule",
                        Trigger::CustomResource(_) => "a CloudFormation request",
                        _ => "a Secrets Manager rotation step",
                    };
                    warn!(message_id = %item.message_id, carries = what, "SQS message rejected: only ECS events belong on the event queue");
                    failed.insert(item.message_id.clone());
                }
            }
        }
    }
    let outcomes = reconcile_many(deps, work.work, Mode::Apply, &work.asks).await;
    follow_up_waiting(deps, &outcomes, &work.asks, &work.follow_ups).await;
    for o in outcomes.iter().filter(|o| o.is_transient()) {
        for id in senders.get(&o.service).into_iter().flatten() {
            failed.insert(id.clone());
        }
    }
    let failures: Vec<Value> = failed
        .iter()
        .map(|id| json!({ "itemIdentifier": id }))
        .collect();
    json!({
        "batchItemFailures": failures,
        "outcomes": outcomes,
        "ignored": ignored,
        "cloudflare_calls": deps.cf.stats().total - calls_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_named_twice_keeps_the_first_non_routine_cause() {
        let svc = ServiceId::new("prod", "web");
        let cause = |id: &str| Cause::new("eventbridge", Some(id), None, None);
        let mut s = Services::default();
        s.add(svc.clone(), None, false, true, cause("task-1"));
        s.add(svc.clone(), None, false, false, cause("tag-1"));
        s.add(svc.clone(), None, false, false, cause("tag-2"));
        s.add(svc.clone(), None, false, true, cause("task-2"));
        assert_eq!(s.work.len(), 1);
        let ask = &s.asks[&svc];
        assert_eq!(ask.cause, cause("tag-1"));
        assert!(!ask.routine);

        let mut s = Services::default();
        s.add(svc.clone(), None, false, true, cause("task-1"));
        s.add(svc.clone(), None, false, true, cause("task-2"));
        assert_eq!(
            s.asks[&svc].cause,
            cause("task-1"),
            "all routine: the first"
        );
    }
}
