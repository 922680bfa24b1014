//! Tags → desired spec. The full tag grammar of the contract, validated; every error
//! names the tag key and says how to fix it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Prefix of every tag ecs-tunnels reads or writes.
pub const TAG_PREFIX: &str = "ecs-tunnels:";
/// Opt-in tag: one or more hostnames.
pub const TAG_HOSTNAME: &str = "ecs-tunnels:hostname";
/// What cloudflared forwards to.
pub const TAG_ORIGIN: &str = "ecs-tunnels:origin";
/// `required` (default) or `public`.
pub const TAG_ACCESS: &str = "ecs-tunnels:access";
/// Allowed email addresses.
pub const TAG_ALLOW_EMAILS: &str = "ecs-tunnels:allow-emails";
/// Allowed email domains.
pub const TAG_ALLOW_EMAIL_DOMAINS: &str = "ecs-tunnels:allow-email-domains";
/// Allowed Access groups (ids or names).
pub const TAG_ALLOW_GROUPS: &str = "ecs-tunnels:allow-groups";
/// Reusable Access policies (ids or names).
pub const TAG_POLICIES: &str = "ecs-tunnels:policies";
/// Identity providers (ids).
pub const TAG_IDPS: &str = "ecs-tunnels:idps";
/// Access session duration.
pub const TAG_SESSION_DURATION: &str = "ecs-tunnels:session-duration";
/// Tunnel secret rotation period.
pub const TAG_ROTATE_EVERY: &str = "ecs-tunnels:rotate-every";
/// Written by ecs-tunnels; never read as input.
pub const TAG_STATUS: &str = "ecs-tunnels:status";

const KNOWN_KEYS: &[&str] = &[
    TAG_HOSTNAME,
    TAG_ORIGIN,
    TAG_ACCESS,
    TAG_ALLOW_EMAILS,
    TAG_ALLOW_EMAIL_DOMAINS,
    TAG_ALLOW_GROUPS,
    TAG_POLICIES,
    TAG_IDPS,
    TAG_SESSION_DURATION,
    TAG_ROTATE_EVERY,
    TAG_STATUS,
];

const ORIGIN_SCHEMES: &[&str] = &[
    "http://",
    "https://",
    "tcp://",
    "ssh://",
    "rdp://",
    "unix://",
    "unix+tls://",
    "smb://",
];

/// Default Access session length.
pub const DEFAULT_SESSION_DURATION: &str = "24h";

/// A problem with one tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecError {
    /// The tag key (or property name) at fault.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SpecError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        SpecError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Who may reach the hostnames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessSpec {
    /// No Access application: anyone on the internet. Must be asked for explicitly.
    Public,
    /// A self-hosted Access application with these rules.
    Required(AccessRules),
}

/// The allow rules of an Access application, as written in the tags (names unresolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRules {
    /// Allowed email addresses.
    pub emails: Vec<String>,
    /// Allowed email domains.
    pub email_domains: Vec<String>,
    /// Access groups, by id or name.
    pub groups: Vec<String>,
    /// Reusable policies, by id or name.
    pub policies: Vec<String>,
    /// Identity providers, by id; empty means every IdP of the account.
    pub idps: Vec<String>,
    /// Session duration, a Go duration such as `24h`.
    pub session_duration: String,
}

impl AccessRules {
    /// True when the app-specific allow policy has any rule (emails, domains, groups).
    pub fn has_own_rules(&self) -> bool {
        !(self.emails.is_empty() && self.email_domains.is_empty() && self.groups.is_empty())
    }
}

/// What one service should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Hostnames, lowercase, de-duplicated, in tag order.
    pub hostnames: Vec<String>,
    /// What cloudflared forwards to.
    pub origin: String,
    /// Access.
    pub access: AccessSpec,
    /// How often the tunnel secret is rotated.
    pub rotate_every: Duration,
}

/// The outcome of reading a service's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// No `ecs-tunnels:hostname` tag: the service is not exposed.
    NotManaged,
    /// A valid spec.
    Managed(Spec),
    /// The tags ask for exposure but are wrong; nothing may change.
    Invalid(Vec<SpecError>),
}

/// Inputs besides the tags.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `http://localhost:<port>` of the task definition's main container, if any.
    pub origin: Option<String>,
    /// The install's default rotation period.
    pub rotate_every: Duration,
}

/// Reads the tags of a service into a desired spec.
pub fn from_tags(tags: &BTreeMap<String, String>, defaults: &Defaults) -> Desired {
    let Some(hostname_value) = tags.get(TAG_HOSTNAME) else {
        return Desired::NotManaged;
    };
    let mut errors = Vec::new();
    for key in tags.keys().filter(|k| k.starts_with(TAG_PREFIX)) {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            errors.push(SpecError::new(key, unknown_key_message(key)));
        }
    }
    let list = |key: &str| -> Vec<String> {
        tags.get(key)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };

    let hostnames = parse_hostnames(hostname_value, &mut errors);
    let origin = match tags.get(TAG_ORIGIN) {
        Some(v) => check_origin(v.trim(), &mut errors),
        None => match &defaults.origin {
            Some(o) => o.clone(),
            None => {
                errors.push(SpecError::new(
                    TAG_ORIGIN,
                    "is not set and the task definition has no container port to default to: \
                     set it, e.g. ecs-tunnels:origin=http://localhost:8080",
                ));
                String::new()
            }
        },
    };

    let access_mode = tags.get(TAG_ACCESS).map(|v| v.trim()).unwrap_or("required");
    let rules = AccessRules {
        emails: check_each(
            TAG_ALLOW_EMAILS,
            list(TAG_ALLOW_EMAILS),
            valid_email,
            "an email address like alice@example.com",
            &mut errors,
        ),
        email_domains: check_each(
            TAG_ALLOW_EMAIL_DOMAINS,
            list(TAG_ALLOW_EMAIL_DOMAINS),
            valid_hostname,
            "a domain like example.com (no @)",
            &mut errors,
        ),
        groups: check_each(
            TAG_ALLOW_GROUPS,
            list(TAG_ALLOW_GROUPS),
            valid_ref,
            "an Access group id or a name without spaces",
            &mut errors,
        ),
        policies: check_each(
            TAG_POLICIES,
            list(TAG_POLICIES),
            valid_ref,
            "a reusable Access policy id or a name without spaces",
            &mut errors,
        ),
        idps: check_each(
            TAG_IDPS,
            list(TAG_IDPS),
            valid_ref,
            "an identity provider id",
            &mut errors,
        ),
        session_duration: match tags.get(TAG_SESSION_DURATION) {
            Some(v) if valid_go_duration(v.trim()) => v.trim().to_string(),
            Some(v) => {
                errors.push(SpecError::new(
                    TAG_SESSION_DURATION,
                    format!("{v:?} is not a duration: use a number and a unit (s, m, h), e.g. 30m or 24h"),
                ));
                String::new()
            }
            None => DEFAULT_SESSION_DURATION.to_string(),
        },
    };
    let access = match access_mode {
        "required" => {
            if !rules.has_own_rules() && rules.policies.is_empty() {
                errors.push(SpecError::new(
                    TAG_ACCESS,
                    "is required (the default) but no allow rule is set, so nobody could reach the service: \
                     add ecs-tunnels:allow-emails, ecs-tunnels:allow-email-domains, ecs-tunnels:allow-groups \
                     or ecs-tunnels:policies, or set ecs-tunnels:access=public to expose it without Access",
                ));
            }
            AccessSpec::Required(rules)
        }
        "public" => {
            for key in [
                TAG_ALLOW_EMAILS,
                TAG_ALLOW_EMAIL_DOMAINS,
                TAG_ALLOW_GROUPS,
                TAG_POLICIES,
                TAG_IDPS,
                TAG_SESSION_DURATION,
            ] {
                if tags.contains_key(key) {
                    errors.push(SpecError::new(
                        key,
                        "is set but ecs-tunnels:access is public, so it would be ignored: \
                         remove it, or set ecs-tunnels:access=required",
                    ));
                }
            }
            AccessSpec::Public
        }
        other => {
            errors.push(SpecError::new(
                TAG_ACCESS,
                format!("{other:?} is not an access mode: use required or public"),
            ));
            AccessSpec::Public
        }
    };

    let rotate_every = match tags.get(TAG_ROTATE_EVERY) {
        None => defaults.rotate_every,
        Some(v) => match parse_rotation_period(v.trim()) {
            Ok(d) => d,
            Err(m) => {
                errors.push(SpecError::new(TAG_ROTATE_EVERY, format!("{v:?} {m}")));
                defaults.rotate_every
            }
        },
    };

    if errors.is_empty() {
        Desired::Managed(Spec {
            hostnames,
            origin,
            access,
            rotate_every,
        })
    } else {
        Desired::Invalid(errors)
    }
}

fn unknown_key_message(key: &str) -> String {
    let suffix = &key[TAG_PREFIX.len()..];
    let best = KNOWN_KEYS
        .iter()
        .filter(|k| **k != TAG_STATUS)
        .map(|k| {
            let known = &k[TAG_PREFIX.len()..];
            (
                common_prefix(known, suffix),
                std::cmp::Reverse(known.len().abs_diff(suffix.len())),
                *k,
            )
        })
        .max_by_key(|(n, closeness, _)| (*n, *closeness))
        .map(|(n, _, k)| (n, k));
    match best {
        Some((n, k)) if n >= 3 => format!("is not a tag ecs-tunnels knows: did you mean {k}?"),
        _ => "is not a tag ecs-tunnels knows: see the README for the tag list".to_string(),
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// The valid hostnames the `ecs-tunnels:hostname` tag names (lowercase, no trailing dot),
/// ignoring any that are not: for reads that only need to know where to look.
pub fn tagged_hostnames(tags: &BTreeMap<String, String>) -> Vec<String> {
    tags.get(TAG_HOSTNAME)
        .map(|v| parse_hostnames(v, &mut Vec::new()))
        .unwrap_or_default()
}

fn parse_hostnames(value: &str, errors: &mut Vec<SpecError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in value.split_whitespace() {
        let h = raw.trim_end_matches('.').to_ascii_lowercase();
        if !valid_hostname(&h) {
            errors.push(SpecError::new(
                TAG_HOSTNAME,
                format!("{raw:?} is not a hostname: use a fully qualified name like app.example.com (letters, digits, hyphens; no scheme, port or path)"),
            ));
        } else if !out.contains(&h) {
            out.push(h);
        }
    }
    if out.is_empty() && errors.iter().all(|e| e.key != TAG_HOSTNAME) {
        errors.push(SpecError::new(
            TAG_HOSTNAME,
            "is empty: give one or more hostnames separated by spaces, or remove the tag",
        ));
    }
    out
}

/// True for a fully qualified DNS name with at least two labels.
pub fn valid_hostname(h: &str) -> bool {
    let labels: Vec<&str> = h.split('.').collect();
    h.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()))
}

fn valid_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local.contains('@')
                && valid_hostname(&domain.to_ascii_lowercase())
        }
        None => false,
    }
}

fn valid_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-=._:/@".contains(c))
}

fn check_each(
    key: &str,
    values: Vec<String>,
    ok: impl Fn(&str) -> bool,
    expected: &str,
    errors: &mut Vec<SpecError>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !ok(&v) {
            errors.push(SpecError::new(key, format!("{v:?} is not {expected}")));
        } else if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn check_origin(v: &str, errors: &mut Vec<SpecError>) -> String {
    let ok = if let Some(code) = v.strip_prefix("http_status:") {
        code.len() == 3 && code.chars().all(|c| c.is_ascii_digit())
    } else {
        ORIGIN_SCHEMES
            .iter()
            .any(|s| v.starts_with(s) && v.len() > s.len())
            && !v.contains(char::is_whitespace)
    };
    if !ok {
        errors.push(SpecError::new(
            TAG_ORIGIN,
            format!("{v:?} is not an origin cloudflared can forward to: use a URL such as http://localhost:8080 (schemes http, https, tcp, ssh, rdp, unix, unix+tls, smb) or http_status:404"),
        ));
    }
    v.to_string()
}

/// True for a Go duration made of number+unit pairs with units s, m or h (e.g. `1h30m`).
pub fn valid_go_duration(v: &str) -> bool {
    if v.chars().filter(|c| c.is_ascii_digit()).all(|c| c == '0') {
        return false; // zero length
    }
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = rest.chars().next();
        if !matches!(unit, Some('s' | 'm' | 'h')) {
            return false;
        }
        rest = &rest[1..];
    }
    true
}

/// Parses a rotation period such as `12h`, `30d` or `1w`; between 1 hour and 365 days.
pub fn parse_rotation_period(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v).map_err(|_| {
        "is not a duration: use a number and a unit, e.g. 12h, 30d or 1w".to_string()
    })?;
    if d < Duration::from_secs(3600) {
        return Err("is too short: rotate at most once an hour (e.g. 1h, 12h, 30d)".into());
    }
    if d > Duration::from_secs(365 * 86400) {
        return Err("is too long: rotate at least once a year (e.g. 30d, 90d)".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            origin: Some("http://localhost:8080".into()),
            rotate_every: Duration::from_secs(30 * 86400),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn errors_of(pairs: &[(&str, &str)]) -> Vec<SpecError> {
        match from_tags(&tags(pairs), &defaults()) {
            Desired::Invalid(e) => e,
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn no_hostname_tag_means_not_managed() {
        assert_eq!(
            from_tags(&tags(&[("team", "a")]), &defaults()),
            Desired::NotManaged
        );
    }

    #[test]
    fn full_spec_with_defaults() {
        let d = from_tags(
            &tags(&[
                (
                    TAG_HOSTNAME,
                    "App.Example.com  b.example.net app.example.com",
                ),
                (TAG_ALLOW_EMAILS, "alice@example.com"),
                (TAG_STATUS, "ready x"),
            ]),
            &defaults(),
        );
        let Desired::Managed(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.hostnames, vec!["app.example.com", "b.example.net"]);
        assert_eq!(spec.origin, "http://localhost:8080");
        assert_eq!(spec.rotate_every, Duration::from_secs(30 * 86400));
        let AccessSpec::Required(r) = spec.access else {
            panic!()
        };
        assert_eq!(r.emails, vec!["alice@example.com"]);
        assert_eq!(r.session_duration, "24h");
    }

    #[test]
    fn public_needs_no_rules() {
        let d = from_tags(
            &tags(&[
                (TAG_HOSTNAME, "a.example.com"),
                (TAG_ACCESS, "public"),
                (TAG_ORIGIN, "https://localhost:8443"),
                (TAG_ROTATE_EVERY, "12h"),
            ]),
            &defaults(),
        );
        let Desired::Managed(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.access, AccessSpec::Public);
        assert_eq!(spec.origin, "https://localhost:8443");
        assert_eq!(spec.rotate_every, Duration::from_secs(12 * 3600));
    }

    /// Each bad tag gives an error that names the key.
    #[test]
    fn bad_tag_corpus() {
        let h = (TAG_HOSTNAME, "a.example.com");
        let e = (TAG_ALLOW_EMAILS, "a@example.com");
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (vec![(TAG_HOSTNAME, "")], TAG_HOSTNAME, "empty"),
            (
                vec![(TAG_HOSTNAME, "https://a.example.com"), e],
                TAG_HOSTNAME,
                "not a hostname",
            ),
            (
                vec![(TAG_HOSTNAME, "localhost"), e],
                TAG_HOSTNAME,
                "not a hostname",
            ),
            (
                vec![(TAG_HOSTNAME, "a.example.com:8080"), e],
                TAG_HOSTNAME,
                "not a hostname",
            ),
            (vec![h], TAG_ACCESS, "no allow rule"),
            (
                vec![h, (TAG_ACCESS, "open"), e],
                TAG_ACCESS,
                "not an access mode",
            ),
            (
                vec![h, (TAG_ACCESS, "public"), e],
                TAG_ALLOW_EMAILS,
                "access is public",
            ),
            (
                vec![h, (TAG_ALLOW_EMAILS, "alice")],
                TAG_ALLOW_EMAILS,
                "not an email",
            ),
            (
                vec![h, (TAG_ALLOW_EMAIL_DOMAINS, "@example.com")],
                TAG_ALLOW_EMAIL_DOMAINS,
                "not a domain",
            ),
            (
                vec![h, e, (TAG_ORIGIN, "localhost:8080")],
                TAG_ORIGIN,
                "not an origin",
            ),
            (
                vec![h, e, (TAG_ORIGIN, "ftp://x")],
                TAG_ORIGIN,
                "not an origin",
            ),
            (
                vec![h, e, (TAG_SESSION_DURATION, "1 day")],
                TAG_SESSION_DURATION,
                "not a duration",
            ),
            (
                vec![h, e, (TAG_SESSION_DURATION, "24")],
                TAG_SESSION_DURATION,
                "not a duration",
            ),
            (
                vec![h, e, (TAG_ROTATE_EVERY, "soon")],
                TAG_ROTATE_EVERY,
                "not a duration",
            ),
            (
                vec![h, e, (TAG_ROTATE_EVERY, "5m")],
                TAG_ROTATE_EVERY,
                "too short",
            ),
            (
                vec![h, e, ("ecs-tunnels:allow-email", "a@b.co")],
                "ecs-tunnels:allow-email",
                "did you mean ecs-tunnels:allow-emails",
            ),
            (
                vec![h, e, ("ecs-tunnels:zzz", "1")],
                "ecs-tunnels:zzz",
                "not a tag",
            ),
        ];
        for (pairs, key, needle) in cases {
            let errs = errors_of(&pairs);
            assert!(
                errs.iter()
                    .any(|x| x.key == key && x.message.contains(needle)),
                "{pairs:?}: wanted {key} / {needle}, got {errs:?}"
            );
        }
    }

    #[test]
    fn missing_default_origin_is_an_error() {
        let d = from_tags(
            &tags(&[(TAG_HOSTNAME, "a.example.com"), (TAG_ACCESS, "public")]),
            &Defaults {
                origin: None,
                rotate_every: Duration::from_secs(86400),
            },
        );
        assert!(matches!(d, Desired::Invalid(e) if e[0].key == TAG_ORIGIN));
    }

    #[test]
    fn go_durations() {
        for ok in ["30m", "24h", "1h30m", "45s"] {
            assert!(valid_go_duration(ok), "{ok}");
        }
        for bad in ["", "24", "h", "1d", "1.5h", "-1h", "0s", "0h0m"] {
            assert!(!valid_go_duration(bad), "{bad}");
        }
    }
}

/// Custom resource property names and the tag each one mirrors.
pub const PROPERTY_TAGS: &[(&str, &str)] = &[
    ("Hostnames", TAG_HOSTNAME),
    ("Origin", TAG_ORIGIN),
    ("Access", TAG_ACCESS),
    ("AllowEmails", TAG_ALLOW_EMAILS),
    ("AllowEmailDomains", TAG_ALLOW_EMAIL_DOMAINS),
    ("AllowGroups", TAG_ALLOW_GROUPS),
    ("Policies", TAG_POLICIES),
    ("Idps", TAG_IDPS),
    ("SessionDuration", TAG_SESSION_DURATION),
    ("RotateEvery", TAG_ROTATE_EVERY),
];

/// Properties that are not part of the spec (read by the custom resource door).
const OTHER_PROPERTIES: &[&str] = &[
    "ServiceToken",
    "ServiceTimeout",
    "ServiceArn",
    "TokenParameterName",
];

/// Reads CloudFormation custom resource properties (`Hostnames` as a list or a
/// space-separated string, the others as strings or lists) with the same grammar as the
/// tags; every error names the property. A resource always wants exposure, so a missing
/// `Hostnames` is an error rather than "not managed".
pub fn from_properties(props: &serde_json::Value, defaults: &Defaults) -> Desired {
    let mut tags = BTreeMap::new();
    let mut errors = Vec::new();
    if let Some(obj) = props.as_object() {
        for (name, value) in obj {
            let Some((_, tag)) = PROPERTY_TAGS.iter().find(|(p, _)| p == name) else {
                if !OTHER_PROPERTIES.contains(&name.as_str()) {
                    errors.push(SpecError::new(name, "is not a property of Custom::CloudflareTunnel: see the README for the list"));
                }
                continue;
            };
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => {
                    errors.push(SpecError::new(
                        name,
                        "must be a string or a list of strings",
                    ));
                    continue;
                }
            };
            tags.insert(tag.to_string(), text);
        }
    } else {
        errors.push(SpecError::new("ResourceProperties", "must be an object"));
    }
    if !tags.contains_key(TAG_HOSTNAME) {
        errors.push(SpecError::new(
            "Hostnames",
            "is required: give one or more hostnames",
        ));
    }
    let rename = |e: SpecError| {
        let key = PROPERTY_TAGS
            .iter()
            .find(|(_, t)| *t == e.key)
            .map(|(p, _)| p.to_string())
            .unwrap_or(e.key);
        let mut message = e.message;
        for (p, t) in PROPERTY_TAGS {
            message = message
                .replace(&format!("{t}="), &format!("{p}: "))
                .replace(t, p);
        }
        SpecError { key, message }
    };
    if !errors.is_empty() {
        return Desired::Invalid(errors);
    }
    match from_tags(&tags, defaults) {
        Desired::Invalid(errs) => Desired::Invalid(errs.into_iter().map(rename).collect()),
        other => other,
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults {
            origin: None,
            rotate_every: Duration::from_secs(30 * 86400),
        }
    }

    #[test]
    fn properties_mirror_tags() {
        let d = from_properties(
            &json!({"ServiceToken": "arn:x", "Hostnames": ["a.example.com", "b.example.com"], "Origin": "http://localhost:80",
                    "AllowEmails": ["x@example.com"], "SessionDuration": "8h"}),
            &defaults(),
        );
        let Desired::Managed(s) = d else {
            panic!("{d:?}")
        };
        assert_eq!(s.hostnames, vec!["a.example.com", "b.example.com"]);
        assert_eq!(s.origin, "http://localhost:80");
    }

    #[test]
    fn errors_name_the_property() {
        for (props, key) in [
            (
                json!({"Origin": "http://localhost:80", "Access": "public"}),
                "Hostnames",
            ),
            (
                json!({"Hostnames": ["a.example.com"], "Origin": "http://localhost:80"}),
                "Access",
            ),
            (
                json!({"Hostnames": "a.example.com", "Origin": "localhost", "Access": "public"}),
                "Origin",
            ),
            (
                json!({"Hostnames": "a.example.com", "Origin": "http://x:1", "AllowEmails": ["bob"]}),
                "AllowEmails",
            ),
            (
                json!({"Hostnames": "a.example.com", "Origin": "http://x:1", "Access": "public", "Colour": "blue"}),
                "Colour",
            ),
            (
                json!({"Hostnames": {"a": 1}, "Origin": "http://x:1"}),
                "Hostnames",
            ),
        ] {
            let Desired::Invalid(errs) = from_properties(&props, &defaults()) else {
                panic!("{props}")
            };
            assert!(errs.iter().any(|e| e.key == key), "{props}: {errs:?}");
            assert!(
                errs.iter().all(|e| !e.message.contains("ecs-tunnels:")),
                "{errs:?}"
            );
        }
    }
}
