//! The token store: where each service's tunnel token lives (SSM Parameter Store by
//! default, or Secrets Manager), and the tags that record its state. The rest of the code
//! sees only [`TokenStore`].

use super::secrets::SecretTokens;
use super::ssm::SsmTokens;
use super::AwsError;
use crate::config::TokenStoreKind;
use crate::ownership::ServiceId;
use crate::secret::Secret;
use std::collections::BTreeMap;

/// Tag set on the parameter while a written token has not yet reached a deployment.
pub const REDEPLOY_TAG: &str = "ecs-tunnels:redeploy";
/// Tag set before a rotation PATCHes the tunnel, holding the reason and when the run
/// started it ([`RotationMark`]); removed when the new token is stored and deployed. A
/// run that finds it expired verifies the stored token against Cloudflare's and repairs
/// it.
pub const ROTATION_TAG: &str = "ecs-tunnels:rotation";
/// The rotation period recorded on a custom resource's token (its `RotateEvery`, or the
/// install's default), so the rotation schedule sees it without CloudFormation.
pub const ROTATE_EVERY_TAG: &str = "ecs-tunnels:rotate-every";

/// How long a rotation mark belongs to the run that set it. Marks are set only by a run
/// that goes on to PATCH and store at once: a Lambda function (killed by Lambda after at
/// most 15 minutes, its hard timeout, whatever the configured one) or the CLI (seconds).
/// So after 15 minutes the run that set a mark is dead for sure; one more minute covers
/// the clock difference between the writer and the reader. Until then others leave the
/// rotation alone (finishing it could start a second, concurrent rotation); after it,
/// the first run that sees the mark finishes it.
pub const ROTATION_LEASE: std::time::Duration = std::time::Duration::from_secs(16 * 60);

/// An unfinished rotation, as its mark (`<reason> <RFC 3339 UTC>`) records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationMark {
    /// Why it started: `schedule`, `manual`, `compromised`.
    pub reason: String,
    /// When the run set it; `None` for a mark in the old format (no time).
    pub started_at: Option<std::time::SystemTime>,
    /// The run that set it may still be working on it (the mark is younger than
    /// [`ROTATION_LEASE`]), as seen when the mark was read.
    pub live: bool,
}

impl RotationMark {
    /// The tag value a run sets when it starts a rotation at `now`.
    pub fn value(reason: &str, now: std::time::SystemTime) -> String {
        format!("{reason} {}", humantime::format_rfc3339_seconds(now))
    }

    /// The tag value a run leaves when its rotation failed: the reason without a time, a
    /// mark no run holds any more, which the next run finishes at once.
    pub fn released(reason: &str) -> String {
        reason.to_string()
    }

    /// Reads a mark as of `now`. A mark without a readable time (released, or in the
    /// old format) counts as expired.
    pub fn read(value: &str, now: std::time::SystemTime) -> Self {
        let (reason, at) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let started_at = humantime::parse_rfc3339(at.trim()).ok();
        // A mark from a clock ahead of ours is live, but no longer than a lease from now.
        let live = started_at.is_some_and(|t| match now.duration_since(t) {
            Ok(age) => age < ROTATION_LEASE,
            Err(ahead) => ahead.duration() < ROTATION_LEASE,
        });
        RotationMark {
            reason: reason.to_string(),
            started_at,
            live,
        }
    }

    /// Who holds it, for a report: `rotation in progress (<reason>, started <time>)`.
    pub fn in_progress(&self) -> String {
        let at = self
            .started_at
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default();
        format!(
            "rotation in progress ({}, started {at} by another run; it is left to that run for {} minutes)",
            self.reason,
            ROTATION_LEASE.as_secs() / 60
        )
    }
}
/// The ECS service (`<cluster>/<service>`) whose tasks run with the token, when it is not
/// the one the token is named after: a custom resource's `ServiceArn`. A Secrets Manager
/// rotation redeploys it.
pub const REDEPLOY_SERVICE_TAG: &str = "ecs-tunnels:redeploys";
/// When the tunnel secret was last changed (RFC 3339).
pub const ROTATED_AT_TAG: &str = "ecs-tunnels:rotated-at";
/// The tunnel the stored token is for, so bulk listings learn it from tags and never read
/// (decrypt) the token. Written with every token: in the same call when the token is
/// created, and in the call that sets [`REDEPLOY_TAG`] just before the token is
/// overwritten. A crash between that call and the overwrite leaves a tag that may name a
/// tunnel the old token is not for, but always with the redeploy mark, which makes every
/// reader reconcile the service in full (reading the token) before the mark goes; a token
/// without this tag (written before it existed) is read.
pub const TUNNEL_ID_TAG: &str = "ecs-tunnels:tunnel-id";
/// Why: `created`, `schedule`, `manual`, `compromised`, `repair`.
pub const ROTATED_BY_TAG: &str = "ecs-tunnels:rotated-by";

/// The tags that record a secret change now.
pub fn rotated_now(reason: &str) -> Vec<(String, String)> {
    vec![
        (
            ROTATED_AT_TAG.to_string(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
        (ROTATED_BY_TAG.to_string(), reason.to_string()),
    ]
}

/// A token as a bulk listing sees it: its tags, never its value unless they cannot tell
/// which tunnel it is for.
#[derive(Debug, Clone, Default)]
pub struct ListedToken {
    /// The parameter's (or secret's) tags.
    pub tags: BTreeMap<String, String>,
    /// The store's own rotation schedule (Secrets Manager only).
    pub rotation_schedule: Option<RotationSchedule>,
    /// The token, read only for a token without [`TUNNEL_ID_TAG`]
    /// ([`TokenStore::read_untagged`]).
    pub value: Option<Secret>,
}

impl ListedToken {
    /// The tunnel its [`TUNNEL_ID_TAG`] names.
    pub fn tagged_tunnel(&self) -> Option<&str> {
        self.tags
            .get(TUNNEL_ID_TAG)
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
    }

    /// As a stored token (the value empty when it was not read).
    pub fn to_stored(&self) -> StoredParameter {
        StoredParameter {
            value: self.value.clone().unwrap_or_else(|| Secret::new("")),
            tags: self.tags.clone(),
            rotation_schedule: self.rotation_schedule.clone(),
        }
    }
}

/// A stored token and its tags.
#[derive(Debug, Clone)]
pub struct StoredParameter {
    /// The token.
    pub value: Secret,
    /// The parameter's (or secret's) tags.
    pub tags: BTreeMap<String, String>,
    /// The store's own rotation schedule (Secrets Manager only).
    pub rotation_schedule: Option<RotationSchedule>,
}

/// A secret's rotation configuration as Secrets Manager describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationSchedule {
    /// `RotationEnabled`.
    pub enabled: bool,
    /// `RotationLambdaARN`.
    pub function: Option<String>,
    /// `RotationRules.ScheduleExpression`, e.g. `rate(30 days)`.
    pub expression: Option<String>,
    /// `RotationRules.AutomaticallyAfterDays` (also filled in by AWS for `rate(N days)`).
    pub after_days: Option<i64>,
}

impl RotationSchedule {
    /// True when it rotates with `function` on `expression` (compared by value and unit,
    /// so `rate(1 day)` is `rate(1 days)`; a `rate(N days)` expression also matches a
    /// schedule described only as N days).
    pub fn is(&self, function: &str, expression: &str) -> bool {
        let want = parse_rate(expression);
        self.enabled
            && self.function.as_deref() == Some(function)
            && match &self.expression {
                Some(e) => parse_rate(e).is_some() && parse_rate(e) == want,
                None => matches!(want, Some((n, "days")) if self.after_days == Some(n)),
            }
    }
}

/// `rate(N unit)` as (N, `hours` or `days`).
fn parse_rate(expression: &str) -> Option<(i64, &'static str)> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let unit = match unit.trim() {
        "hour" | "hours" => "hours",
        "day" | "days" => "days",
        _ => return None,
    };
    Some((n.trim().parse().ok()?, unit))
}

/// The Secrets Manager schedule expression for a rotation period. Secrets Manager takes
/// `rate(N hours)` for 4 to 23 hours and `rate(N days)` beyond, so a period under a day
/// is clamped to 4–23 hours and a longer one is rounded to whole days (`36h` → 2 days).
pub fn rotation_expression(every: std::time::Duration) -> String {
    let hours = every.as_secs() / 3600;
    if hours < 24 {
        return format!("rate({} hours)", hours.clamp(4, 23));
    }
    match (every.as_secs() + 43_200) / 86_400 {
        1 => "rate(1 day)".to_string(),
        days => format!("rate({days} days)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rotation_expressions_secrets_manager_accepts() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        for (every, want) in [
            (h(1), "rate(4 hours)"),
            (h(12), "rate(12 hours)"),
            (h(23), "rate(23 hours)"),
            (h(24), "rate(1 day)"),
            (h(36), "rate(2 days)"),
            (h(30 * 24), "rate(30 days)"),
        ] {
            assert_eq!(rotation_expression(every), want, "{every:?}");
        }
    }

    #[test]
    fn rotation_marks_are_live_only_within_the_lease() {
        let now = std::time::SystemTime::now();
        let fresh = RotationMark::read(&RotationMark::value("compromised", now), now);
        assert_eq!(fresh.reason, "compromised");
        assert!(fresh.live);
        let old = RotationMark::value("schedule", now - ROTATION_LEASE);
        let old = RotationMark::read(&old, now);
        assert_eq!(old.reason, "schedule");
        assert!(old.started_at.is_some() && !old.live);
        let legacy = RotationMark::read("compromised", now);
        assert_eq!(legacy.reason, "compromised");
        assert!(legacy.started_at.is_none() && !legacy.live);
        let ahead = RotationMark::value("manual", now + Duration::from_secs(30));
        assert!(
            RotationMark::read(&ahead, now).live,
            "a clock ahead of ours"
        );
        assert!(!RotationMark::read("manual soon", now).live);
        let far_ahead = RotationMark::value("manual", now + 2 * ROTATION_LEASE);
        assert!(
            !RotationMark::read(&far_ahead, now).live,
            "a mark dated far in the future is not held for ever"
        );
    }

    #[test]
    fn schedules_compare_by_value_and_unit() {
        let s = |e: Option<&str>, days: Option<i64>| RotationSchedule {
            enabled: true,
            function: Some("f".into()),
            expression: e.map(str::to_string),
            after_days: days,
        };
        assert!(s(Some("rate(1 days)"), None).is("f", "rate(1 day)"));
        assert!(s(None, Some(30)).is("f", "rate(30 days)"));
        assert!(!s(None, Some(30)).is("f", "rate(12 hours)"));
        assert!(!s(Some("rate(7 days)"), Some(7)).is("f", "rate(30 days)"));
        assert!(!s(Some("cron(0 0 * * ? *)"), None).is("f", "rate(1 day)"));
        assert!(!s(Some("rate(1 day)"), None).is("g", "rate(1 day)"));
    }
}

/// The configured token store.
#[derive(Clone)]
pub enum TokenStore {
    /// SSM Parameter Store SecureString at `<prefix>/<cluster>/<service>/token`.
    Ssm(SsmTokens),
    /// Secrets Manager secret `<prefix without the leading slash>/<cluster>/<service>/token`.
    SecretsManager(SecretTokens),
}

impl TokenStore {
    /// Builds the store the configuration asks for.
    pub fn new(cfg: &aws_config::SdkConfig, kind: TokenStoreKind, prefix: &str) -> Self {
        match kind {
            TokenStoreKind::Ssm => TokenStore::Ssm(SsmTokens::new(cfg, prefix)),
            TokenStoreKind::SecretsManager => {
                TokenStore::SecretsManager(SecretTokens::new(cfg, prefix))
            }
        }
    }

    /// Where a service's token lives (parameter or secret name).
    pub fn location(&self, svc: &ServiceId) -> String {
        match self {
            TokenStore::Ssm(s) => s.parameter_name(svc),
            TokenStore::SecretsManager(s) => s.secret_name(svc),
        }
    }

    /// The token and tags; `None` if there is none.
    pub async fn get(&self, svc: &ServiceId) -> Result<Option<StoredParameter>, AwsError> {
        match self {
            TokenStore::Ssm(s) => s.get(svc).await,
            TokenStore::SecretsManager(s) => s.get(svc).await,
        }
    }

    /// Creates it with `tags` and [`TUNNEL_ID_TAG`] = `tunnel_id` (the tunnel `token` is
    /// for), in one call; `Ok(false)` if it already exists.
    pub async fn create(
        &self,
        svc: &ServiceId,
        token: &Secret,
        tunnel_id: &str,
        tags: &[(String, String)],
    ) -> Result<bool, AwsError> {
        let mut tags = tags.to_vec();
        tags.push((TUNNEL_ID_TAG.to_string(), tunnel_id.to_string()));
        match self {
            TokenStore::Ssm(s) => s.create(svc, token, &tags).await,
            TokenStore::SecretsManager(s) => s.create(svc, token, &tags).await,
        }
    }

    /// Replaces the token with `token`, for the tunnel `tunnel_id`: first one call tags it
    /// with `tags`, [`REDEPLOY_TAG`] (the service owes a redeploy, so a crash before the
    /// redeploy is finished by the next run) and [`TUNNEL_ID_TAG`]; then the new value is
    /// written. The tunnel id cannot change in the same call as the value (SSM refuses
    /// tags with an overwrite, Secrets Manager's PutSecretValue takes none), so it changes
    /// just before, under the redeploy mark: until the mark is cleared (after a
    /// successful write and redeploy) every run reconciles the service in full, from the
    /// stored value.
    pub async fn overwrite(
        &self,
        svc: &ServiceId,
        tunnel_id: &str,
        token: &Secret,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        let mut marks = tags.to_vec();
        marks.push((REDEPLOY_TAG.to_string(), "pending".to_string()));
        marks.push((TUNNEL_ID_TAG.to_string(), tunnel_id.to_string()));
        self.add_tags(svc, &marks).await?;
        match self {
            TokenStore::Ssm(s) => s.overwrite(svc, token).await,
            TokenStore::SecretsManager(s) => s.overwrite(svc, token).await,
        }
    }

    /// Every token of `owner`, with its tags (and the store's rotation schedule), by the
    /// service (or custom resource) it belongs to, from paged listings that read no
    /// token: the Resource Groups Tagging API's `GetResources` (SSM parameters with the
    /// owner tag, 100 a page) or `ListSecrets` (secrets under the prefix, 100 a page). A
    /// token of another owner under the prefix is not listed.
    pub async fn list(
        &self,
        owner: &crate::ownership::Owner,
    ) -> Result<BTreeMap<ServiceId, ListedToken>, AwsError> {
        match self {
            TokenStore::Ssm(s) => s.list(owner).await,
            TokenStore::SecretsManager(s) => s.list(owner).await,
        }
    }

    /// Reads the value of each listed token without [`TUNNEL_ID_TAG`] (written before it
    /// existed; its next write tags it), and only of those: 10 per `GetParameters` call
    /// with SSM, one `GetSecretValue` each with Secrets Manager. A token gone meanwhile is
    /// dropped from the list.
    pub async fn read_untagged(
        &self,
        listed: &mut BTreeMap<ServiceId, ListedToken>,
    ) -> Result<(), AwsError> {
        let untagged: Vec<ServiceId> = listed
            .iter()
            .filter(|(_, t)| t.tagged_tunnel().is_none() && t.value.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        if untagged.is_empty() {
            return Ok(());
        }
        let values = match self {
            TokenStore::Ssm(s) => s.values(&untagged).await?,
            TokenStore::SecretsManager(s) => s.values(&untagged).await?,
        };
        for svc in untagged {
            // The store names tokens by cluster and service only (each account and
            // region has its own store), so its answer carries no scope.
            match values.get(&svc.clone().in_scope(None)) {
                Some(v) => {
                    if let Some(t) = listed.get_mut(&svc) {
                        t.value = Some(v.clone());
                    }
                }
                None => {
                    listed.remove(&svc);
                }
            }
        }
        Ok(())
    }

    /// Reads one token's value, without its tags (the sweep's verification of a token
    /// against the one Cloudflare serves). `None` when it is gone.
    pub async fn value(&self, svc: &ServiceId) -> Result<Option<Secret>, AwsError> {
        let one = [svc.clone()];
        let mut values = match self {
            TokenStore::Ssm(s) => s.values(&one).await?,
            TokenStore::SecretsManager(s) => s.values(&one).await?,
        };
        // The store's answer carries no scope (each account and region has its own).
        Ok(values.remove(&svc.clone().in_scope(None)))
    }

    /// Adds or replaces tags.
    pub async fn add_tags(
        &self,
        svc: &ServiceId,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        match self {
            TokenStore::Ssm(s) => s.add_tags(svc, tags).await,
            TokenStore::SecretsManager(s) => s.add_tags(svc, tags).await,
        }
    }

    /// Removes a tag.
    pub async fn remove_tag(&self, svc: &ServiceId, key: &str) -> Result<(), AwsError> {
        match self {
            TokenStore::Ssm(s) => s.remove_tag(svc, key).await,
            TokenStore::SecretsManager(s) => s.remove_tag(svc, key).await,
        }
    }

    /// Deletes it; a missing one is fine.
    pub async fn delete(&self, svc: &ServiceId) -> Result<(), AwsError> {
        match self {
            TokenStore::Ssm(s) => s.delete(svc).await,
            TokenStore::SecretsManager(s) => s.delete(svc).await,
        }
    }

    /// Sets the store's own rotation schedule (Secrets Manager with a rotation function).
    pub async fn schedule_rotation(
        &self,
        svc: &ServiceId,
        expression: &str,
    ) -> Result<(), AwsError> {
        match self {
            TokenStore::Ssm(_) => Ok(()),
            TokenStore::SecretsManager(s) => s.schedule_rotation(svc, expression).await,
        }
    }

    /// The rotation function the store's own schedule invokes, when there is one
    /// (Secrets Manager with `ECS_TUNNELS_ROTATION_FUNCTION_ARN`).
    pub fn rotation_function(&self) -> Option<&str> {
        match self {
            TokenStore::Ssm(_) => None,
            TokenStore::SecretsManager(s) => s.rotation_function(),
        }
    }

    /// True when rotation belongs to Secrets Manager's own schedule and protocol.
    pub fn rotates_itself(&self) -> bool {
        matches!(self, TokenStore::SecretsManager(_))
    }
}
