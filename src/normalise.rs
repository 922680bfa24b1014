//! Normalised views of the objects ecs-tunnels owns, for drift checks.
//!
//! A real API answers with more than it was sent: zero values spelled out
//! (`"noTLSVerify": false`), empty objects where the request had none
//! (`"originRequest": {}`), fields only the server sets, and canonicalised values
//! (lower-cased hostnames and emails, `24h0m0s` for `24h`, destinations in its own
//! order). Comparing raw wire structures turns each of those into a permanent diff.
//! Each view here keeps only the fields this project sets, in a canonical form, so two
//! answers that mean the same thing compare equal.

use crate::cloudflare::{AccessApp, AccessAppBody, AccessPolicy, AccessPolicyBody, TunnelConfig};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A hostname as compared: lower case, no trailing dot, no surrounding space.
pub fn hostname(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// True when two hostnames (or destination URIs) name the same host.
pub fn same_host(a: &str, b: &str) -> bool {
    hostname(a.trim_end_matches('/')) == hostname(b.trim_end_matches('/'))
}

/// A Go duration (`24h`, `1h30m`, `24h0m0s`, `1.5h`, `90m`) in nanoseconds; `None` when
/// it does not parse.
pub fn go_duration_nanos(s: &str) -> Option<u128> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += number * unit;
    }
    Some(total.round() as u128)
}

/// A duration as compared: its length when it parses, else the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationView {
    /// Nanoseconds.
    Length(u128),
    /// Text that is not a Go duration.
    Text(String),
}

impl DurationView {
    /// The view of an optional duration; `None` counts as `default`.
    pub fn of(value: Option<&str>, default: &str) -> Self {
        let text = value.filter(|v| !v.trim().is_empty()).unwrap_or(default);
        match go_duration_nanos(text) {
            Some(n) => DurationView::Length(n),
            None => DurationView::Text(text.trim().to_string()),
        }
    }
}

/// `originRequest.access` as compared; `None` when it is absent or all zero values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAccessView {
    /// `required`.
    pub required: bool,
    /// `teamName`, lower case.
    pub team_name: String,
    /// `audTag`, lower case, as a set.
    pub aud_tags: BTreeSet<String>,
}

/// One ingress rule as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressView {
    /// Hostname; `None` for the catch-all (absent or empty).
    pub hostname: Option<String>,
    /// Path filter; `None` when absent or empty.
    pub path: Option<String>,
    /// Origin service.
    pub service: String,
    /// The Access check cloudflared enforces.
    pub access: Option<OriginAccessView>,
    /// Every other `originRequest` setting that is not its zero value (ecs-tunnels sets
    /// none, so any is drift: `bastionMode`, `noTLSVerify`, `proxyType` change what the
    /// rule exposes), as canonical JSON.
    pub origin_settings: BTreeMap<String, String>,
}

/// A tunnel configuration as compared: the ingress rules, in order (cloudflared
/// evaluates them top to bottom), and the top-level `originRequest` defaults, without
/// zero values spelled out by a server and without fields only a server sets
/// (`warp-routing` follows the tunnel's private-network routes, which are separate
/// objects ecs-tunnels does not manage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigView {
    /// The rules.
    pub ingress: Vec<IngressView>,
    /// Top-level `originRequest` settings that are not zero values.
    pub origin_defaults: BTreeMap<String, String>,
}

/// True for what a server spells out when nothing was set: `false`, `0`, `""`, `null`,
/// `[]`, `{}`, or an object of only such values.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// The settings of an `originRequest` map that are not zero values, as canonical JSON.
fn settings(map: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(_, v)| !is_zero(v))
        .map(|(k, v)| (k.clone(), canonical_json(v)))
        .collect()
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl ConfigView {
    /// The view of a configuration.
    pub fn of(config: &TunnelConfig) -> Self {
        ConfigView {
            ingress: config
                .ingress
                .iter()
                .map(|r| IngressView {
                    hostname: non_empty(r.hostname.as_deref()).map(|h| hostname(&h)),
                    path: non_empty(r.path.as_deref()),
                    service: r.service.trim().to_string(),
                    access: r
                        .origin_request
                        .as_ref()
                        .and_then(|o| o.access.as_ref())
                        .map(|a| OriginAccessView {
                            required: a.required,
                            team_name: a.team_name.trim().to_ascii_lowercase(),
                            aud_tags: a
                                .aud_tag
                                .iter()
                                .map(|t| t.trim().to_ascii_lowercase())
                                .filter(|t| !t.is_empty())
                                .collect(),
                        })
                        .filter(|a| {
                            a.required || !a.team_name.is_empty() || !a.aud_tags.is_empty()
                        }),
                    origin_settings: r
                        .origin_request
                        .as_ref()
                        .map(|o| settings(&o.other))
                        .unwrap_or_default(),
                })
                .collect(),
            origin_defaults: match &config.origin_request {
                Some(Value::Object(m)) => settings(m),
                _ => BTreeMap::new(),
            },
        }
    }
}

/// One Access rule (`{"email": {"email": ...}}` and the like) as compared: the kinds
/// ecs-tunnels writes by their canonical value (emails and domains lower case), any
/// other kind as its canonical JSON.
pub fn rule_key(rule: &Value) -> String {
    let single = rule.as_object().filter(|o| o.len() == 1);
    if let Some((kind, inner)) = single.and_then(|o| o.iter().next()) {
        let field = |k: &str| inner.get(k).and_then(Value::as_str).map(str::trim);
        match (kind.as_str(), field("email"), field("domain"), field("id")) {
            ("email", Some(e), _, _) => return format!("email:{}", e.to_lowercase()),
            ("email_domain", _, Some(d), _) => {
                return format!("email_domain:{}", d.trim_end_matches('.').to_lowercase())
            }
            ("group", _, _, Some(id)) => return format!("group:{}", id.to_ascii_lowercase()),
            _ => {}
        }
    }
    canonical_json(rule)
}

/// JSON with object keys sorted (serde_json's default map is ordered by key).
fn canonical_json(v: &Value) -> String {
    v.to_string()
}

fn rule_set(rules: &[Value]) -> BTreeSet<String> {
    rules.iter().map(rule_key).collect()
}

/// A reusable Access policy as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    /// Name (ownership marker), exact.
    pub name: String,
    /// Decision, lower case.
    pub decision: String,
    /// Include rules, as a set (they are ORed).
    pub include: BTreeSet<String>,
    /// Exclude rules, as a set.
    pub exclude: BTreeSet<String>,
    /// Require rules, as a set.
    pub require: BTreeSet<String>,
}

impl PolicyView {
    /// The view of a policy as the API returned it.
    pub fn of(p: &AccessPolicy) -> Self {
        PolicyView {
            name: p.name.clone(),
            decision: p.decision.trim().to_ascii_lowercase(),
            include: rule_set(&p.include),
            exclude: rule_set(&p.exclude),
            require: rule_set(&p.require),
        }
    }

    /// The view of a policy body ecs-tunnels would send.
    pub fn of_body(b: &AccessPolicyBody) -> Self {
        PolicyView {
            name: b.name.clone(),
            decision: b.decision.trim().to_ascii_lowercase(),
            include: rule_set(&b.include),
            exclude: rule_set(&b.exclude),
            require: rule_set(&b.require),
        }
    }
}

/// An Access application as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppView {
    /// Name (ownership marker), exact.
    pub name: String,
    /// Type, e.g. `self_hosted`.
    pub app_type: String,
    /// Primary domain.
    pub domain: String,
    /// Public destinations, as a set of hostnames.
    pub destinations: BTreeSet<String>,
    /// Any other destination (a private CIDR or hostname someone added): ecs-tunnels
    /// adds none, so any is drift.
    pub other_destinations: BTreeSet<String>,
    /// Session length.
    pub session_duration: DurationView,
    /// Allowed identity providers (empty: all).
    pub idps: BTreeSet<String>,
    /// Skip the IdP chooser.
    pub auto_redirect_to_identity: bool,
    /// Shown in the App Launcher.
    pub app_launcher_visible: bool,
    /// Linked policy ids, in precedence order.
    pub policies: Vec<String>,
}

/// Session length an application gets when none is set.
const DEFAULT_SESSION: &str = "24h";

fn uri_host(uri: &str) -> String {
    hostname(uri.trim().trim_end_matches('/'))
}

impl AppView {
    /// The view of an application as the API returned it. Tags are compared apart (the
    /// app must carry ours; others may add theirs).
    pub fn of(app: &AccessApp) -> Self {
        let mut linked: Vec<(i64, usize, &str)> = app
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.precedence.unwrap_or(i as i64 + 1), i, p.id.as_str()))
            .collect();
        linked.sort();
        AppView {
            name: app.name.clone(),
            app_type: app.app_type.clone().unwrap_or_default(),
            domain: uri_host(&app.domain),
            destinations: app
                .destinations
                .iter()
                .filter(|d| d.dest_type.is_empty() || d.dest_type == "public")
                .map(|d| uri_host(&d.uri))
                .filter(|u| !u.is_empty())
                .collect(),
            other_destinations: app
                .destinations
                .iter()
                .filter(|d| !(d.dest_type.is_empty() || d.dest_type == "public"))
                .map(|d| format!("{}:{}", d.dest_type, d.uri))
                .collect(),
            session_duration: DurationView::of(app.session_duration.as_deref(), DEFAULT_SESSION),
            idps: app.allowed_idps.iter().cloned().collect(),
            auto_redirect_to_identity: app.auto_redirect_to_identity,
            app_launcher_visible: app.app_launcher_visible,
            policies: linked
                .into_iter()
                .map(|(_, _, id)| id.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The view of a body ecs-tunnels would send.
    pub fn of_body(b: &AccessAppBody) -> Self {
        let mut links: Vec<_> = b.policies.iter().collect();
        links.sort_by_key(|p| p.precedence);
        AppView {
            name: b.name.clone(),
            app_type: b.app_type.clone(),
            domain: uri_host(&b.domain),
            destinations: b
                .destinations
                .iter()
                .map(|d| uri_host(&d.uri))
                .filter(|u| !u.is_empty())
                .collect(),
            other_destinations: BTreeSet::new(),
            session_duration: DurationView::of(Some(&b.session_duration), DEFAULT_SESSION),
            idps: b.allowed_idps.iter().cloned().collect(),
            auto_redirect_to_identity: b.auto_redirect_to_identity,
            app_launcher_visible: b.app_launcher_visible,
            policies: links.iter().map(|p| p.id.to_ascii_lowercase()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::{IngressRule, OriginAccess, OriginRequest};
    use serde_json::json;

    #[test]
    fn go_durations_compare_by_length() {
        for (a, b) in [
            ("24h", "24h0m0s"),
            ("1h30m", "90m"),
            ("1.5h", "1h30m0s"),
            ("30m", "1800s"),
        ] {
            assert_eq!(go_duration_nanos(a), go_duration_nanos(b), "{a} {b}");
        }
        assert_eq!(go_duration_nanos("0"), Some(0));
        for bad in ["", "24", "1d", "h", "1x"] {
            assert_eq!(go_duration_nanos(bad), None, "{bad}");
        }
        assert_eq!(
            DurationView::of(None, "24h"),
            DurationView::of(Some("24h0m0s"), "x")
        );
    }

    #[test]
    fn config_with_zero_values_spelled_out_equals_the_one_sent() {
        let sent: TunnelConfig = serde_json::from_value(json!({"ingress": [
            {"hostname": "A.Example.com", "service": "http://localhost:8080",
             "originRequest": {"access": {"required": true, "teamName": "team", "audTag": ["AUD"]}}},
            {"service": "http_status:404"}]}))
        .unwrap();
        let answered: TunnelConfig = serde_json::from_value(json!({
            "ingress": [
                {"hostname": "a.example.com", "path": "", "service": "http://localhost:8080",
                 "originRequest": {"noTLSVerify": false, "connectTimeout": 0, "http2Origin": false,
                    "access": {"required": true, "teamName": "team", "audTag": ["aud"]}}},
                {"hostname": "", "service": "http_status:404",
                 "originRequest": {"noTLSVerify": false, "access": {"required": false, "teamName": "", "audTag": []}}}],
            "originRequest": {"noTLSVerify": false, "connectTimeout": 0},
            "warp-routing": {"enabled": false}}))
        .unwrap();
        assert_eq!(ConfigView::of(&sent), ConfigView::of(&answered));
    }

    #[test]
    fn config_drift_is_still_seen() {
        let rule = |host: &str, service: &str, aud: &str| IngressRule {
            hostname: Some(host.into()),
            path: None,
            service: service.into(),
            origin_request: Some(OriginRequest {
                access: Some(OriginAccess {
                    required: true,
                    team_name: "t".into(),
                    aud_tag: vec![aud.into()],
                }),
                other: Default::default(),
            }),
        };
        let base = TunnelConfig {
            ingress: vec![rule("a.example.com", "http://x:1", "aud")],
            origin_request: None,
        };
        let view = ConfigView::of(&base);
        for changed in [
            rule("b.example.com", "http://x:1", "aud"),
            rule("a.example.com", "http://x:2", "aud"),
            rule("a.example.com", "http://x:1", "other"),
            IngressRule {
                origin_request: None,
                ..rule("a.example.com", "http://x:1", "aud")
            },
            {
                let mut r = rule("a.example.com", "http://x:1", "aud");
                if let Some(o) = r.origin_request.as_mut() {
                    o.other
                        .insert("bastionMode".into(), serde_json::json!(true));
                }
                r
            },
        ] {
            let other = TunnelConfig {
                ingress: vec![changed],
                origin_request: None,
            };
            assert_ne!(view, ConfigView::of(&other));
        }
    }

    #[test]
    fn rules_compare_canonically() {
        assert_eq!(
            rule_key(&json!({"email": {"email": "Alice@Example.COM"}})),
            rule_key(&json!({"email": {"email": "alice@example.com"}}))
        );
        assert_eq!(
            rule_key(&json!({"email_domain": {"domain": "Example.com"}})),
            "email_domain:example.com"
        );
        assert_ne!(
            rule_key(&json!({"email": {"email": "a@example.com"}})),
            rule_key(&json!({"email": {"email": "b@example.com"}}))
        );
        assert_eq!(
            rule_key(&json!({"everyone": {}})),
            rule_key(&json!({"everyone": {}}))
        );
    }
}
