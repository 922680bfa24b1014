//! Validation of Access rules (`include` / `exclude` / `require` items), shared by
//! policies and groups.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::errors::ApiError;
use super::model::Sim;

/// What a rule's inner object must hold.
enum Inner {
    /// Any object, usually `{}` (`everyone`, `certificate`, ...).
    Object,
    /// An object with these non-empty string fields.
    Strings(&'static [&'static str]),
}

/// Known rule keys ([spec] `access_rule`, [go-sdk] `AccessRule`).
const RULES: &[(&str, Inner)] = &[
    ("email", Inner::Strings(&["email"])),
    ("email_domain", Inner::Strings(&["domain"])),
    ("email_list", Inner::Strings(&["id"])),
    ("group", Inner::Strings(&["id"])),
    ("everyone", Inner::Object),
    ("ip", Inner::Strings(&["ip"])),
    ("ip_list", Inner::Strings(&["id"])),
    ("login_method", Inner::Strings(&["id"])),
    ("service_token", Inner::Strings(&["token_id"])),
    ("any_valid_service_token", Inner::Object),
    ("geo", Inner::Strings(&["country_code"])),
    ("auth_method", Inner::Strings(&["auth_method"])),
    ("certificate", Inner::Object),
    ("common_name", Inner::Strings(&["common_name"])),
    ("device_posture", Inner::Strings(&["integration_uid"])),
    (
        "external_evaluation",
        Inner::Strings(&["evaluate_url", "keys_url"]),
    ),
    (
        "saml",
        Inner::Strings(&["attribute_name", "attribute_value"]),
    ),
    ("linked_app_token", Inner::Strings(&["app_uid"])),
    // IdP-group rules: field names changed between spec versions
    // (connection_id vs identity_provider_id), so only the shape is checked.
    ("azureAD", Inner::Object),
    ("github-organization", Inner::Object),
    ("gsuite", Inner::Object),
    ("okta", Inner::Object),
    ("oidc", Inner::Object),
    ("auth_context", Inner::Object),
];

fn valid_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    if prefix.is_empty() {
        return !s.ends_with('/');
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.parse::<u8>().is_ok_and(|p| p <= max)
}

fn check_rule(sim: &Sim, rule: &Value, at: &str) -> Result<(), ApiError> {
    let err = |what: String| ApiError::access_invalid(format!("{at}: {what}"));
    let obj = rule
        .as_object()
        .ok_or_else(|| err("a rule must be an object".into()))?;
    if obj.len() != 1 {
        return Err(err(format!(
            "a rule must have exactly one key, found {}",
            obj.len()
        )));
    }
    let (key, inner) = obj.iter().next().expect("one key");
    let (_, shape) = RULES.iter().find(|(k, _)| k == key).ok_or_else(|| {
        err(format!(
            "unknown rule type {key:?}; known: {}",
            RULES.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let inner: &Map<String, Value> = inner
        .as_object()
        .ok_or_else(|| err(format!("{key}: must be an object")))?;
    if let Inner::Strings(fields) = shape {
        for field in *fields {
            match inner.get(*field).and_then(Value::as_str) {
                Some(s) if !s.trim().is_empty() => {}
                _ => return Err(err(format!("{key}.{field}: is required (a string)"))),
            }
        }
    }
    let s = |f: &str| inner.get(f).and_then(Value::as_str).unwrap_or_default();
    match key.as_str() {
        "email" if !s("email").contains('@') => Err(err(format!(
            "email.email: {:?} is not an email",
            s("email")
        ))),
        "ip" if !valid_ip_or_cidr(s("ip")) => {
            Err(err(format!("ip.ip: {:?} is not an IP or CIDR", s("ip"))))
        }
        "geo"
            if !(s("country_code").len() == 2
                && s("country_code").chars().all(|c| c.is_ascii_alphabetic())) =>
        {
            Err(err(
                "geo.country_code: must be a 2-letter country code".into()
            ))
        }
        "group" if !sim.groups.iter().any(|g| g.id == s("id")) => {
            Err(err(format!("group.id: no Access group {:?}", s("id"))))
        }
        "login_method" if !sim.idps.iter().any(|i| i.id == s("id")) => Err(err(format!(
            "login_method.id: no identity provider {:?}",
            s("id")
        ))),
        _ => Ok(()),
    }
}

/// Validates a rule list `field`. `required` lists must be present and non-empty;
/// others default to `[]`.
pub(crate) fn validate_rules(
    sim: &Sim,
    body: &Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Vec<Value>, ApiError> {
    let rules = match body.get(field) {
        None | Some(Value::Null) if required => {
            return Err(ApiError::access_invalid(format!(
                "{field}: is required and must list at least one rule"
            )))
        }
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::access_invalid(format!(
                "{field}: must be an array of rules"
            )))
        }
    };
    if required && rules.is_empty() {
        return Err(ApiError::access_invalid(format!(
            "{field}: must list at least one rule"
        )));
    }
    for (i, rule) in rules.iter().enumerate() {
        check_rule(sim, rule, &format!("{field}[{i}]"))?;
    }
    Ok(rules.clone())
}

/// Whether a rule list references the Access group `group_id`.
pub(crate) fn references_group(rules: &[Value], group_id: &str) -> bool {
    rules.iter().any(|r| {
        r.get("group")
            .and_then(|g| g.get("id"))
            .and_then(Value::as_str)
            == Some(group_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_or_cidr() {
        for ok in ["203.0.113.0/24", "10.0.0.1", "2400:cb00::/32"] {
            assert!(valid_ip_or_cidr(ok), "{ok}");
        }
        for bad in ["10.0.0.0/33", "nope", "10.0.0.1/", ""] {
            assert!(!valid_ip_or_cidr(bad), "{bad}");
        }
    }
}
