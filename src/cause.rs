//! Who asked for what: the event a reconcile runs for (its source, id and the principal
//! behind it), carried into every log line of the reconcile (a tracing span) and onto the
//! token when it is first created (who first exposed the service, and when).
//!
//! Nothing secret ever goes in a cause: ids, ARNs, names; never request parameters,
//! values or URLs (a CloudFormation `ResponseURL` is presigned).

use crate::ownership::ServiceId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Tag on the token parameter (or secret): who first exposed the service (the actor of
/// the event that created the token, or `<source> [<detail>] [<event id>]` when no
/// principal is known). Written once, at the token's creation; overwrites keep it.
pub const EXPOSED_BY_TAG: &str = "ecs-tunnels:exposed-by";
/// Tag on the token parameter (or secret): when the token was first created (RFC 3339,
/// UTC). Written once, with [`EXPOSED_BY_TAG`].
pub const EXPOSED_AT_TAG: &str = "ecs-tunnels:exposed-at";

/// The event behind a reconcile. Serialisable, so a delayed follow-up message can carry it
/// and the run it triggers logs the original cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// Where the event came from: `cloudtrail`, `eventbridge`, `schedule`,
    /// `cloudformation`, `secretsmanager`, `cli`.
    pub source: String,
    /// The event's id: CloudTrail `eventID`, EventBridge `id`, CloudFormation `RequestId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Who made the change: CloudTrail `userIdentity.arn` (or its `principalId` /
    /// `invokedBy`), the CloudFormation stack, the CLI's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What happened: the API call (`TagResource`), the EventBridge detail type, the
    /// schedule rule, the CloudFormation logical resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Cause {
    /// A cause from its parts.
    pub fn new(
        source: &str,
        event_id: Option<&str>,
        actor: Option<&str>,
        detail: Option<&str>,
    ) -> Self {
        let some = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Cause {
            source: source.to_string(),
            event_id: some(event_id),
            actor: some(actor),
            detail: some(detail),
        }
    }

    /// A person running the CLI: `$USER@<host>` (no AWS call), `detail` the command.
    pub fn cli(command: &str) -> Self {
        let user = ["USER", "LOGNAME", "USERNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        let actor = match (user, host) {
            (Some(u), Some(h)) => Some(format!("{u}@{h}")),
            (Some(u), None) => Some(u),
            (None, Some(h)) => Some(format!("@{h}")),
            (None, None) => None,
        };
        Cause::new("cli", None, actor.as_deref(), Some(command))
    }

    /// The span every log line of one service's reconcile is written in: fields
    /// `service`, `event_source`, `event_id`, `actor`, `event_detail` (the absent ones
    /// left out). At level ERROR so that no level filter drops it: a span's level only
    /// decides whether it exists, and its fields belong on every line that is printed.
    pub fn span(&self, service: &ServiceId) -> tracing::Span {
        let span = tracing::span!(
            tracing::Level::ERROR,
            "reconcile",
            service = %service,
            event_source = %self.source,
            event_id = tracing::field::Empty,
            actor = tracing::field::Empty,
            event_detail = tracing::field::Empty,
        );
        self.record(&span);
        span
    }

    /// The span of work that is not one service's (a sweep, the rotation schedule, a
    /// rotation step): the same fields as [`Cause::span`] without `service`.
    pub fn run_span(&self) -> tracing::Span {
        let span = tracing::span!(
            tracing::Level::ERROR,
            "event",
            event_source = %self.source,
            event_id = tracing::field::Empty,
            actor = tracing::field::Empty,
            event_detail = tracing::field::Empty,
        );
        self.record(&span);
        span
    }

    fn record(&self, span: &tracing::Span) {
        if let Some(v) = &self.event_id {
            span.record("event_id", v.as_str());
        }
        if let Some(v) = &self.actor {
            span.record("actor", v.as_str());
        }
        if let Some(v) = &self.detail {
            span.record("event_detail", v.as_str());
        }
    }

    /// Who exposed a service, as a tag value: the actor, else `<source> [<detail>]
    /// [<event id>]` (a sweep's adoption: `schedule <rule> <id>`).
    pub fn exposed_by(&self) -> String {
        let who = match &self.actor {
            Some(a) => a.clone(),
            None => [
                Some(&self.source),
                self.detail.as_ref(),
                self.event_id.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        };
        let who = tag_value(&who);
        if who.trim().is_empty() {
            "unknown".to_string()
        } else {
            who
        }
    }

    /// The tags a token gets when it is first created: [`EXPOSED_BY_TAG`] and
    /// [`EXPOSED_AT_TAG`] (`now`, RFC 3339 UTC).
    pub fn exposure_tags(&self, now: SystemTime) -> Vec<(String, String)> {
        vec![
            (EXPOSED_BY_TAG.to_string(), self.exposed_by()),
            (
                EXPOSED_AT_TAG.to_string(),
                humantime::format_rfc3339_seconds(now).to_string(),
            ),
        ]
    }
}

/// Who first exposed a service and when, as its token's tags record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// [`EXPOSED_BY_TAG`].
    pub exposed_by: String,
    /// [`EXPOSED_AT_TAG`], when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_at: Option<String>,
}

impl Exposure {
    /// Reads the exposure tags; `None` for a token created before they existed.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        Some(Exposure {
            exposed_by: tags.get(EXPOSED_BY_TAG)?.clone(),
            exposed_at: tags.get(EXPOSED_AT_TAG).cloned(),
        })
    }
}

/// Most characters an SSM or Secrets Manager tag value may have.
const TAG_VALUE_MAX: usize = 256;

/// `value` made a valid SSM / Secrets Manager (and ECS) tag value: letters, digits,
/// spaces and `_ . : / = + - @` kept, anything else replaced by `_`, at most 256
/// characters.
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(TAG_VALUE_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_by_is_the_actor_or_the_event() {
        let ct = Cause::new(
            "cloudtrail",
            Some("1a2b"),
            Some("arn:aws:sts::123456789012:assumed-role/deployer/session"),
            Some("TagResource"),
        );
        assert_eq!(
            ct.exposed_by(),
            "arn:aws:sts::123456789012:assumed-role/deployer/session"
        );
        let sweep = Cause::new("schedule", Some("53dc"), None, Some("ecs-tunnels-sweep"));
        assert_eq!(sweep.exposed_by(), "schedule ecs-tunnels-sweep 53dc");
        assert_eq!(Cause::default().exposed_by(), "unknown");
    }

    #[test]
    fn tag_values_are_sanitised_and_bounded() {
        assert_eq!(tag_value("a,b;c\"d é@x"), "a_b_c_d é@x");
        assert_eq!(tag_value(&"x".repeat(300)).chars().count(), 256);
        let tags =
            Cause::new("cli", None, Some("me@host"), None).exposure_tags(SystemTime::UNIX_EPOCH);
        assert_eq!(
            tags,
            vec![
                (EXPOSED_BY_TAG.to_string(), "me@host".to_string()),
                (
                    EXPOSED_AT_TAG.to_string(),
                    "1970-01-01T00:00:00Z".to_string()
                )
            ]
        );
    }

    #[test]
    fn a_cause_survives_a_round_trip_through_json() {
        let c = Cause::new(
            "cloudformation",
            Some("req"),
            Some("arn:aws:cloudformation:us-east-1:1:stack/app/x"),
            Some("Tunnel"),
        );
        let back: Cause = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let sparse: Cause = serde_json::from_str(r#"{"source":"schedule"}"#).unwrap();
        assert_eq!(sparse, Cause::new("schedule", None, None, None));
    }
}
