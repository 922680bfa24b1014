//! What "ours" means. Every Cloudflare object ecs-tunnels makes carries this install's
//! owner id, and every read decides ownership here and nowhere else:
//!
//! | object | marker |
//! |---|---|
//! | tunnel | name `ecs-tunnels.<owner>.<cluster>.<service>` |
//! | DNS record | comment `ecs-tunnels:<owner>:<cluster>/<service>` (≤ 100 chars, Free plan) |
//! | Access application | name `<cluster>/<service> [ecs-tunnels:<owner>]` and Access tag `ecs-tunnels-<owner>` |
//! | Access policy | name `<cluster>/<service> allow [ecs-tunnels:<owner>]` |
//! | SSM parameter | tags `ecs-tunnels:owner=<owner>`, `ecs-tunnels:service=<cluster>/<service>` |
//!
//! In an organization install (see [`crate::organization`]) a service also has a
//! [`Scope`], its AWS account and region, and the service key `<cluster>/<service>`
//! becomes `<account>/<region>/<cluster>/<service>` in every marker (the tunnel name joins
//! the four with dots), so `prod/web` in two accounts makes two tunnels. Without a scope
//! every name is exactly as above. The owner id is the hub's in both cases.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Longest owner id accepted: keeps every marker inside Cloudflare's limits.
pub const MAX_OWNER_LEN: usize = 40;
/// Cloudflare Free plan comment limit.
pub const MAX_DNS_COMMENT: usize = 100;
/// SSM tag key that carries the owner id.
pub const SSM_OWNER_TAG: &str = "ecs-tunnels:owner";
/// SSM tag key that carries the service key.
pub const SSM_SERVICE_TAG: &str = "ecs-tunnels:service";

/// The AWS account and region a service lives in, when the install serves an
/// organization (a single-account install leaves it out of every name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Scope {
    /// The 12-digit AWS account id.
    pub account: String,
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
}

impl Scope {
    /// A scope from an account id and a region.
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope {
            account: account.into(),
            region: region.into(),
        }
    }

    /// A 12-digit account id and a region name of letters, digits and dashes: the only
    /// shapes that may go into a name (they are joined with `.` and `/`).
    pub fn parse(account: &str, region: &str) -> Option<Scope> {
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let region_ok = !region.is_empty()
            && region.len() <= 30
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (account_ok && region_ok).then(|| Scope::new(account, region))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {} region {}", self.account, self.region)
    }
}

/// One ECS service, by cluster name and service name (and, in an organization install,
/// its account and region).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceId {
    /// Cluster name (not ARN).
    pub cluster: String,
    /// Service name (not ARN).
    pub service: String,
    /// The account and region, in an organization install; `None` in a single-account
    /// one (and then nothing of it appears in any name or output).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

impl ServiceId {
    /// Builds an id from names.
    pub fn new(cluster: impl Into<String>, service: impl Into<String>) -> Self {
        ServiceId {
            cluster: cluster.into(),
            service: service.into(),
            scope: None,
        }
    }

    /// The same service, in `scope` (`None`: the single-account form).
    pub fn in_scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope;
        self
    }

    /// Parses a service key, `<cluster>/<service>` or `<account>/<region>/<cluster>/<service>`.
    pub fn parse_key(key: &str) -> Option<ServiceId> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts[..] {
            [c, s] if !c.is_empty() && !s.is_empty() => Some(ServiceId::new(c, s)),
            [a, r, c, s] if !c.is_empty() && !s.is_empty() => {
                Some(ServiceId::new(c, s).in_scope(Some(Scope::parse(a, r)?)))
            }
            _ => None,
        }
    }

    /// The account and region of a service ARN
    /// `arn:aws:ecs:<region>:<account>:service/<cluster>/<service>`, when it names both.
    pub fn scope_of_arn(arn: &str) -> Option<Scope> {
        let mut parts = arn.splitn(6, ':');
        let (region, account) = (parts.nth(3)?, parts.next()?);
        Scope::parse(account, region)
    }

    /// Parses a long-format service ARN `arn:aws:ecs:<region>:<account>:service/<cluster>/<service>`.
    pub fn from_arn(arn: &str) -> Option<Self> {
        let resource = arn.splitn(6, ':').nth(5)?;
        let mut parts = resource.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("service"), Some(c), Some(s), None) if !c.is_empty() && !s.is_empty() => {
                Some(ServiceId::new(c, s))
            }
            _ => None,
        }
    }

    /// `<cluster>/<service>`, or `<account>/<region>/<cluster>/<service>` with a scope.
    pub fn key(&self) -> String {
        match &self.scope {
            None => format!("{}/{}", self.cluster, self.service),
            Some(s) => format!(
                "{}/{}/{}/{}",
                s.account, s.region, self.cluster, self.service
            ),
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Extracts the cluster name from a cluster ARN or returns a plain name unchanged.
pub fn cluster_name(cluster_or_arn: &str) -> String {
    match cluster_or_arn.split_once(":cluster/") {
        Some((_, name)) => name.to_string(),
        None => cluster_or_arn.to_string(),
    }
}

/// This install's owner id, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    /// Validates an owner id: 1–40 characters from `A-Z a-z 0-9 - _`.
    pub fn parse(id: &str) -> Result<Owner, String> {
        let ok = !id.is_empty()
            && id.len() <= MAX_OWNER_LEN
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Owner(id.to_string()))
        } else {
            Err(format!(
                "ECS_TUNNELS_OWNER {id:?} is not a valid owner id: use 1-{MAX_OWNER_LEN} letters, digits, '-' or '_'"
            ))
        }
    }

    /// The default owner id `<aws account>-<region>`.
    pub fn default_for(account: &str, region: &str) -> Owner {
        Owner(format!("{account}-{region}"))
    }

    /// The owner id itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Deterministic tunnel name: two Lambdas racing on one service pick the same name,
    /// so Cloudflare's duplicate-name check (409/1013) prevents a second tunnel.
    pub fn tunnel_name(&self, svc: &ServiceId) -> String {
        format!("{}{}", self.tunnel_prefix(), svc.key().replace('/', "."))
    }

    /// Prefix shared by all tunnel names of this owner.
    pub fn tunnel_prefix(&self) -> String {
        format!("ecs-tunnels.{}.", self.0)
    }

    /// The service a tunnel name belongs to, if the tunnel is ours.
    pub fn service_of_tunnel(&self, name: &str) -> Option<ServiceId> {
        let rest = name.strip_prefix(&self.tunnel_prefix())?;
        if rest.contains('/') {
            return None;
        }
        ServiceId::parse_key(&rest.replace('.', "/"))
    }

    /// Prefix shared by all DNS comments of this owner.
    pub fn dns_comment_prefix(&self) -> String {
        format!("ecs-tunnels:{}:", self.0)
    }

    /// The DNS record comment for a service. Falls back to a hash of the service key when
    /// the readable form would exceed the Free plan's 100 characters.
    pub fn dns_comment(&self, svc: &ServiceId) -> String {
        let readable = format!("{}{}", self.dns_comment_prefix(), svc.key());
        if readable.len() <= MAX_DNS_COMMENT {
            return readable;
        }
        let digest = Sha256::digest(svc.key().as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}#{hex}", self.dns_comment_prefix())
    }

    /// True when a DNS comment carries this owner's marker (for any service).
    pub fn owns_dns_comment(&self, comment: Option<&str>) -> bool {
        comment.is_some_and(|c| c.starts_with(&self.dns_comment_prefix()))
    }

    /// Suffix that marks an Access application or policy name as ours.
    fn name_suffix(&self) -> String {
        format!(" [ecs-tunnels:{}]", self.0)
    }

    /// Access application name for a service.
    pub fn access_app_name(&self, svc: &ServiceId) -> String {
        format!("{}{}", svc.key(), self.name_suffix())
    }

    /// Access tag this owner puts on its applications.
    pub fn access_tag(&self) -> String {
        format!("ecs-tunnels-{}", self.0)
    }

    /// True when an Access application (name and tags) is ours.
    pub fn owns_access_app(&self, name: &str, tags: &[String]) -> bool {
        name.ends_with(&self.name_suffix()) && tags.iter().any(|t| *t == self.access_tag())
    }

    /// The service an Access application name belongs to, if ours.
    pub fn service_of_access_app(&self, name: &str) -> Option<ServiceId> {
        ServiceId::parse_key(name.strip_suffix(&self.name_suffix())?)
    }

    /// Name of the reusable Access policy holding a service's allow rules.
    pub fn policy_name(&self, svc: &ServiceId) -> String {
        format!("{} allow{}", svc.key(), self.name_suffix())
    }

    /// The service a policy name belongs to, if ours.
    pub fn service_of_policy(&self, name: &str) -> Option<ServiceId> {
        ServiceId::parse_key(
            name.strip_suffix(&self.name_suffix())?
                .strip_suffix(" allow")?,
        )
    }

    /// The service a DNS comment names, when it is the readable (not hashed) form.
    pub fn service_of_dns_comment(&self, comment: &str) -> Option<ServiceId> {
        ServiceId::parse_key(comment.strip_prefix(&self.dns_comment_prefix())?)
    }

    /// True when a policy name is ours.
    pub fn owns_policy(&self, name: &str) -> bool {
        name.ends_with(&self.name_suffix())
    }

    /// Tags put on the SSM token parameter.
    pub fn ssm_tags(&self, svc: &ServiceId) -> Vec<(String, String)> {
        vec![
            (SSM_OWNER_TAG.to_string(), self.0.clone()),
            (SSM_SERVICE_TAG.to_string(), svc.key()),
        ]
    }

    /// True when an SSM parameter's tags say it is ours.
    pub fn owns_ssm(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(SSM_OWNER_TAG).map(String::as_str) == Some(self.0.as_str())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner::parse("123456789012-us-east-1").unwrap()
    }

    #[test]
    fn parses_service_arns() {
        let id =
            ServiceId::from_arn("arn:aws:ecs:us-east-1:123456789012:service/prod/web").unwrap();
        assert_eq!(id, ServiceId::new("prod", "web"));
        assert!(ServiceId::from_arn("arn:aws:ecs:us-east-1:123456789012:service/web").is_none());
        assert!(ServiceId::from_arn("arn:aws:ecs:us-east-1:1:task-definition/web:1").is_none());
        assert_eq!(cluster_name("arn:aws:ecs:us-east-1:1:cluster/prod"), "prod");
        assert_eq!(cluster_name("prod"), "prod");
    }

    #[test]
    fn tunnel_names_round_trip() {
        let o = owner();
        let svc = ServiceId::new("prod", "web");
        let name = o.tunnel_name(&svc);
        assert_eq!(name, "ecs-tunnels.123456789012-us-east-1.prod.web");
        assert_eq!(o.service_of_tunnel(&name), Some(svc));
        let other = Owner::parse("someone-else").unwrap();
        assert_eq!(other.service_of_tunnel(&name), None);
    }

    #[test]
    fn dns_comment_fits_free_plan() {
        let o = owner();
        let short = o.dns_comment(&ServiceId::new("prod", "web"));
        assert_eq!(short, "ecs-tunnels:123456789012-us-east-1:prod/web");
        let long = o.dns_comment(&ServiceId::new("c".repeat(200), "s".repeat(200)));
        assert!(long.len() <= MAX_DNS_COMMENT, "{long}");
        assert!(o.owns_dns_comment(Some(&long)));
        assert!(!o.owns_dns_comment(Some("ecs-tunnels:other:prod/web")));
        assert!(!o.owns_dns_comment(None));
    }

    #[test]
    fn access_and_ssm_markers() {
        let o = owner();
        let svc = ServiceId::new("prod", "web");
        let name = o.access_app_name(&svc);
        assert!(o.owns_access_app(&name, &[o.access_tag()]));
        assert!(!o.owns_access_app(&name, &[]));
        assert_eq!(o.service_of_access_app(&name), Some(svc.clone()));
        assert!(o.owns_policy(&o.policy_name(&svc)));
        assert_eq!(o.service_of_policy(&o.policy_name(&svc)), Some(svc.clone()));
        assert_eq!(
            o.service_of_dns_comment(&o.dns_comment(&svc)),
            Some(svc.clone())
        );
        let tags: BTreeMap<_, _> = o.ssm_tags(&svc).into_iter().collect();
        assert!(o.owns_ssm(&tags));
        assert!(!Owner::parse("x").unwrap().owns_ssm(&tags));
    }

    #[test]
    fn scoped_names_carry_account_and_region_and_unscoped_names_do_not_change() {
        let o = owner();
        let plain = ServiceId::new("prod", "web");
        let a = plain
            .clone()
            .in_scope(Some(Scope::new("111111111111", "eu-west-1")));
        let b = plain
            .clone()
            .in_scope(Some(Scope::new("222222222222", "eu-west-1")));
        // The single-account names, exactly as before organization installs existed.
        assert_eq!(
            o.tunnel_name(&plain),
            "ecs-tunnels.123456789012-us-east-1.prod.web"
        );
        assert_eq!(
            o.access_app_name(&plain),
            "prod/web [ecs-tunnels:123456789012-us-east-1]"
        );
        assert_eq!(
            o.policy_name(&plain),
            "prod/web allow [ecs-tunnels:123456789012-us-east-1]"
        );
        assert_eq!(plain.key(), "prod/web");
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::json!({"cluster": "prod", "service": "web"})
        );
        // Scoped: two accounts, two names, each parsed back to its own scope.
        assert_eq!(
            o.tunnel_name(&a),
            "ecs-tunnels.123456789012-us-east-1.111111111111.eu-west-1.prod.web"
        );
        assert_ne!(o.tunnel_name(&a), o.tunnel_name(&b));
        for svc in [&plain, &a, &b] {
            assert_eq!(o.service_of_tunnel(&o.tunnel_name(svc)).as_ref(), Some(svc));
            assert_eq!(
                o.service_of_access_app(&o.access_app_name(svc)).as_ref(),
                Some(svc)
            );
            assert_eq!(o.service_of_policy(&o.policy_name(svc)).as_ref(), Some(svc));
            assert_eq!(
                o.service_of_dns_comment(&o.dns_comment(svc)).as_ref(),
                Some(svc)
            );
        }
        assert_eq!(
            o.dns_comment(&a),
            "ecs-tunnels:123456789012-us-east-1:111111111111/eu-west-1/prod/web"
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"cluster": "prod", "service": "web",
                               "account": "111111111111", "region": "eu-west-1"})
        );
        // Three parts, or a bad account, is nobody's.
        assert_eq!(
            o.service_of_tunnel("ecs-tunnels.123456789012-us-east-1.a.b.c"),
            None
        );
        assert_eq!(ServiceId::parse_key("12/eu-west-1/prod/web"), None);
        assert_eq!(
            ServiceId::scope_of_arn("arn:aws:ecs:eu-west-1:111111111111:service/prod/web"),
            Some(Scope::new("111111111111", "eu-west-1"))
        );
    }

    #[test]
    fn rejects_bad_owner_ids() {
        assert!(Owner::parse("").is_err());
        assert!(Owner::parse("has space").is_err());
        assert!(Owner::parse(&"a".repeat(41)).is_err());
        assert!(Owner::parse("team_a-1").is_ok());
    }
}
