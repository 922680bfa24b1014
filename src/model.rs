//! The planner's view of one service: what should exist ([`Target`]) and what does
//! ([`Observed`]). Built by `observe`, read by `diff`; no I/O here.

use crate::cloudflare::{
    AccessApp, AccessPolicy, DnsRecord, IngressRule, OriginAccess, OriginRequest, Tunnel,
    TunnelConfig,
};
use crate::ownership::{Owner, ServiceId};
use serde_json::{json, Value};

/// The catch-all rule every remote tunnel config must end with.
pub const CATCH_ALL_SERVICE: &str = "http_status:404";

/// A hostname with the zone it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHost {
    /// Fully qualified, lowercase.
    pub name: String,
    /// Cloudflare zone id.
    pub zone_id: String,
}

/// Access, resolved to Cloudflare ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAccess {
    /// Include rules of the service's own allow policy; empty means no own policy.
    pub own_rules: Vec<Value>,
    /// Reusable policies named in `ecs-tunnels:policies`, by id.
    pub extra_policy_ids: Vec<String>,
    /// Identity providers; empty means all.
    pub idp_ids: Vec<String>,
    /// Session duration.
    pub session_duration: String,
}

/// Everything one service should have, with names resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Hostnames with zones, in tag order.
    pub hosts: Vec<TargetHost>,
    /// Where cloudflared forwards to.
    pub origin: String,
    /// `None` for `access=public`.
    pub access: Option<TargetAccess>,
    /// How often the tunnel secret is rotated.
    pub rotate_every: std::time::Duration,
}

/// The SSM token parameter as seen (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredToken {
    /// Tunnel id the stored token is for (`t` in the token), if it decodes.
    pub tunnel_id: Option<String>,
    /// Account tag (`a`) in the stored token.
    pub account: Option<String>,
    /// Carries our owner tag.
    pub owned: bool,
    /// A token was written but the service was not yet redeployed with it.
    pub redeploy_pending: bool,
    /// A rotation was started and not finished: its mark.
    pub rotation: Option<crate::aws::token_store::RotationMark>,
    /// Whether the stored token equals the one Cloudflare serves; checked only while a
    /// rotation is unfinished (`None`: not checked).
    pub matches_cloudflare: Option<bool>,
    /// When the token was last written (the `ecs-tunnels:rotated-at` tag), when known.
    pub written_at: Option<std::time::SystemTime>,
    /// The store's own rotation schedule (Secrets Manager; `None` for SSM).
    pub rotation_schedule: Option<crate::aws::token_store::RotationSchedule>,
    /// The service recorded as running with the token when it is not the one the token
    /// is named after (a custom resource's `ServiceArn`), as `<cluster>/<service>`.
    pub redeploys: Option<String>,
    /// The rotation period recorded on the token (`ecs-tunnels:rotate-every`; custom
    /// resources only).
    pub rotate_every: Option<std::time::Duration>,
    /// Who first exposed the service and when (the token's exposure tags), when recorded.
    pub exposed: Option<crate::cause::Exposure>,
}

impl StoredToken {
    /// Describes a stored token (its account and tunnel, never its secret) and marks;
    /// `rotation` is the rotation mark's value, read as of now.
    pub fn describe(
        value: &crate::secret::Secret,
        owned: bool,
        redeploy_pending: bool,
        rotation: Option<String>,
    ) -> Self {
        let identity = crate::token::token_identity(value);
        StoredToken {
            account: identity.as_ref().map(|(a, _)| a.clone()),
            tunnel_id: identity.map(|(_, t)| t),
            owned,
            redeploy_pending,
            rotation: rotation.map(|m| {
                crate::aws::token_store::RotationMark::read(&m, std::time::SystemTime::now())
            }),
            matches_cloudflare: None,
            written_at: None,
            rotation_schedule: None,
            redeploys: None,
            rotate_every: None,
            exposed: None,
        }
    }

    /// Describes a token read from the store with its tags: ownership, the marks, when
    /// it was written, the service recorded as running with it, and the store's own
    /// rotation schedule. `rotation` is the unfinished rotation's mark value, when the
    /// caller tracks one.
    pub fn of(
        p: &crate::aws::token_store::StoredParameter,
        owner: &crate::ownership::Owner,
        rotation: Option<String>,
    ) -> Self {
        use crate::aws::token_store::{
            REDEPLOY_SERVICE_TAG, REDEPLOY_TAG, ROTATED_AT_TAG, ROTATE_EVERY_TAG,
        };
        let mut t = Self::describe(
            &p.value,
            owner.owns_ssm(&p.tags),
            p.tags.contains_key(REDEPLOY_TAG),
            rotation,
        );
        t.written_at = p
            .tags
            .get(ROTATED_AT_TAG)
            .and_then(|at| humantime::parse_rfc3339(at.trim()).ok());
        t.redeploys = p.tags.get(REDEPLOY_SERVICE_TAG).cloned();
        t.rotate_every = p
            .tags
            .get(ROTATE_EVERY_TAG)
            .and_then(|v| humantime::parse_duration(v.trim()).ok());
        t.rotation_schedule = p.rotation_schedule.clone();
        t.exposed = crate::cause::Exposure::from_tags(&p.tags);
        t
    }
}

/// The ECS service that must start new tasks after its token changed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeployTarget {
    /// The service.
    pub service: ServiceId,
    /// `None` when ECS deploys it (`forceNewDeployment`); otherwise its deployment
    /// controller (`CODE_DEPLOY`, `EXTERNAL`), with which its owner must deploy.
    pub by_owner: Option<String>,
    /// When its PRIMARY deployment or task set was created.
    pub last_deployed_at: Option<std::time::SystemTime>,
}

impl RedeployTarget {
    /// A service ECS deploys, as far as is known.
    pub fn ecs(service: ServiceId) -> Self {
        RedeployTarget {
            service,
            by_owner: None,
            last_deployed_at: None,
        }
    }

    /// The target for a described service.
    pub fn of(info: &crate::aws::ecs::ServiceInfo) -> Self {
        RedeployTarget {
            service: ServiceId::new(info.cluster.clone(), info.name.clone()),
            by_owner: (!info.ecs_deploys()).then(|| info.deployment_controller.clone()),
            last_deployed_at: info.last_deployed_at,
        }
    }
}

/// What the owner of a service must do after its token changed, when ECS cannot
/// redeploy it.
pub fn redeploy_notice(service: &ServiceId, controller: &str) -> String {
    let how = if controller == "CODE_DEPLOY" {
        "start a new CodeDeploy deployment"
    } else {
        "start a new deployment (a new task set) with your deployment tool"
    };
    format!(
        "redeploy needed: the tunnel token changed, but {service} uses the {controller} deployment controller, which ecs-tunnels cannot redeploy; {how} so its tasks read the new token"
    )
}

/// A DNS record seen in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRecord {
    /// Zone the record is in.
    pub zone_id: String,
    /// The record.
    pub record: DnsRecord,
}

/// What exists for one service.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Our tunnel (by deterministic name), if it exists and is not deleted.
    pub tunnel: Option<Tunnel>,
    /// Its remote configuration; `None` for a fresh tunnel.
    pub config: Option<TunnelConfig>,
    /// The Access application with our name (owned or not: diff decides).
    pub app: Option<AccessApp>,
    /// Applications found at the target hostnames (to detect foreign ones).
    pub apps_at_hosts: Vec<AccessApp>,
    /// Reusable policies named for this service.
    pub policies: Vec<AccessPolicy>,
    /// Records with this service's marker, plus any record at a target hostname.
    pub records: Vec<ObservedRecord>,
    /// The token parameter.
    pub token: Option<StoredToken>,
}

/// Fixed facts the planner needs.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// The service.
    pub svc: ServiceId,
    /// This install's owner id.
    pub owner: Owner,
    /// Cloudflare account id.
    pub account_id: String,
    /// Zero Trust team name (`<team>.cloudflareaccess.com`).
    pub team_name: String,
    /// The ECS service to redeploy after a token change (`None`: nothing to redeploy).
    pub redeploy: Option<RedeployTarget>,
    /// The function the token store's own rotation schedule invokes (Secrets Manager
    /// with `ECS_TUNNELS_ROTATION_FUNCTION_ARN`); `None`: no schedule to keep.
    pub rotation_function: Option<String>,
    /// When a new hostname's DNS record may be made (`ECS_TUNNELS_PUBLISH`).
    pub publish: crate::publish::PublishMode,
    /// The event behind this reconcile (recorded on a token it creates).
    pub cause: crate::cause::Cause,
}

/// `<tunnel-id>.cfargotunnel.com`.
pub fn tunnel_cname(tunnel_id: &str) -> String {
    format!("{tunnel_id}.cfargotunnel.com")
}

/// The tunnel configuration for a target; `aud` is the Access app's audience tag.
pub fn render_config(target: &Target, team_name: &str, aud: Option<&str>) -> TunnelConfig {
    let origin_request = match (&target.access, aud) {
        (Some(_), Some(aud)) => Some(OriginRequest {
            access: Some(OriginAccess {
                required: true,
                team_name: team_name.to_string(),
                aud_tag: vec![aud.to_string()],
            }),
            other: Default::default(),
        }),
        _ => None,
    };
    let mut ingress: Vec<IngressRule> = target
        .hosts
        .iter()
        .map(|h| IngressRule {
            hostname: Some(h.name.clone()),
            path: None,
            service: target.origin.clone(),
            origin_request: origin_request.clone(),
        })
        .collect();
    ingress.push(IngressRule {
        hostname: None,
        path: None,
        service: CATCH_ALL_SERVICE.to_string(),
        origin_request: None,
    });
    TunnelConfig {
        ingress,
        origin_request: None,
    }
}

/// Builds the include rules of a service's own allow policy.
pub fn own_policy_rules(emails: &[String], domains: &[String], group_ids: &[String]) -> Vec<Value> {
    let mut rules = Vec::new();
    rules.extend(emails.iter().map(|e| json!({"email": {"email": e}})));
    rules.extend(
        domains
            .iter()
            .map(|d| json!({"email_domain": {"domain": d}})),
    );
    rules.extend(group_ids.iter().map(|g| json!({"group": {"id": g}})));
    rules
}
