//! Delayed follow-ups: a service whose new hostname waits for cloudflared's first
//! connection is looked at again later through AWS's own means, a message to the event
//! queue with `DelaySeconds`, instead of a Lambda polling in a loop. The chain is bounded
//! ([`MAX_ATTEMPTS`], delays doubling up to SQS's 15 minutes); the sweep is the backstop.
//!
//! The message (`events/sqs-follow-up.json` shows one as the queue delivers it):
//! `{"ecs-tunnels": "follow-up", "cluster", "service", "account"?, "region"?, "tunnel_id",
//! "attempt", "reason", "cause"?}`. It carries no secret.

use crate::context::Deps;
use crate::ownership::ServiceId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use tracing::{info, warn};

/// The `ecs-tunnels` value that marks a follow-up message.
pub const KIND: &str = "follow-up";
/// Follow-ups in one chain: with the default 60 s delay, at 1, 3, 7 and 15 minutes
/// after the token was written (the grace period before a sidecar is diagnosed, 3
/// minutes, falls inside the chain).
pub const MAX_ATTEMPTS: u32 = 4;

/// A follow-up message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// Always [`KIND`].
    #[serde(rename = "ecs-tunnels")]
    pub kind: String,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// The service's AWS account, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The service's AWS region (organization install).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The tunnel whose connection is awaited.
    pub tunnel_id: String,
    /// 1 for the first follow-up of a chain.
    pub attempt: u32,
    /// Why it was sent, for people reading the queue.
    #[serde(default)]
    pub reason: String,
    /// What started the chain (the event that exposed the service), as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Value>,
}

impl FollowUp {
    /// The service it is about.
    pub fn service_id(&self) -> ServiceId {
        let scope = match (&self.account, &self.region) {
            (Some(a), Some(r)) => crate::ownership::Scope::parse(a, r),
            _ => None,
        };
        ServiceId::new(self.cluster.clone(), self.service.clone()).in_scope(scope)
    }

    /// Reads a follow-up message (`None`: not one). A message that says it is one but
    /// lacks a field is an error that names it.
    pub fn parse(event: &Value) -> Option<Result<FollowUp, String>> {
        (event.get("ecs-tunnels")?.as_str()? == KIND).then(|| {
            serde_json::from_value::<FollowUp>(event.clone())
                .map_err(|e| format!("unrecognised follow-up message: {e}"))
                .and_then(|f| {
                    if f.cluster.is_empty() || f.service.is_empty() || f.tunnel_id.is_empty() {
                        Err("unrecognised follow-up message: cluster, service and tunnel_id must not be empty".into())
                    } else {
                        Ok(f)
                    }
                })
        })
    }
}

/// The delay before follow-up `attempt` (1-based): `base`, doubling each time, at most
/// SQS's 15 minutes.
pub fn delay_for(attempt: u32, base: Duration) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    (base * factor).min(crate::publish::MAX_FOLLOW_UP_DELAY)
}

/// What a reconcile that ended waiting should leave for later: the next follow-up of its
/// chain (`previous`: the attempt that asked, if a follow-up did), or the first one when
/// the run started a chain (`starts`: it wrote the token, or a person's change asked for
/// it). `None` when the chain is over or none starts.
pub fn next_attempt(previous: Option<u32>, starts: bool) -> Option<u32> {
    match previous {
        Some(n) if n < MAX_ATTEMPTS => Some(n + 1),
        Some(_) => None,
        None => starts.then_some(1),
    }
}

/// Sends the follow-up; a failure is logged (the sweep is the backstop), never fatal.
pub async fn send(deps: &Deps, f: &FollowUp) {
    let Some(queue) = &deps.follow_ups else {
        return;
    };
    let delay = delay_for(f.attempt, deps.config.publish.follow_up_delay);
    let body = match serde_json::to_string(f) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "could not encode a follow-up");
            return;
        }
    };
    match queue.send_delayed(&body, delay).await {
        Ok(()) => {
            info!(service = %f.service_id(), tunnel_id = %f.tunnel_id, attempt = f.attempt, delay_s = delay.as_secs(), "follow-up queued: the hostname is published once cloudflared connects")
        }
        Err(e) => {
            warn!(service = %f.service_id(), error = %e, "could not queue a follow-up; the next sweep publishes the hostname once cloudflared connects (allow sqs:SendMessage on the event queue)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_chain_is_bounded_and_its_delays_double_up_to_sqs_limit() {
        let base = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=MAX_ATTEMPTS)
            .map(|a| delay_for(a, base).as_secs())
            .collect();
        assert_eq!(delays, [60, 120, 240, 480]);
        assert_eq!(delay_for(9, base).as_secs(), 900);
        assert_eq!(next_attempt(None, true), Some(1));
        assert_eq!(next_attempt(None, false), None);
        assert_eq!(next_attempt(Some(1), false), Some(2));
        assert_eq!(next_attempt(Some(MAX_ATTEMPTS), true), None);
    }

    #[test]
    fn the_sample_message_parses_and_a_broken_one_is_named() {
        let sample: Value =
            serde_json::from_str(include_str!("../../events/sqs-follow-up.json")).unwrap();
        let body: Value =
            serde_json::from_str(sample["Records"][0]["body"].as_str().unwrap()).unwrap();
        let f = FollowUp::parse(&body).unwrap().unwrap();
        assert_eq!(f.service_id(), ServiceId::new("demo", "web"));
        assert_eq!(f.attempt, 1);
        let bad = FollowUp::parse(&json!({"ecs-tunnels": "follow-up", "cluster": "c"}))
            .unwrap()
            .unwrap_err();
        assert!(bad.contains("missing field"), "{bad}");
        assert!(FollowUp::parse(&json!({"ecs-tunnels": "sweep"})).is_none());
    }
}
