//! The "server shapes" mode (`SimOptions::server_shapes`): answers the way Cloudflare's
//! API does rather than echoing what was sent. Only rendering changes: what is stored
//! stays as sent.
//!
//! Seen in real answers (recorded responses in cloudflare/cf-terraforming
//! `testdata/cloudflare/v5/*.yaml`, and the normalisations terraform-provider-cloudflare
//! v5 needs in `internal/services/*/normalizations.go`):
//! - Access apps carry fields the request did not (`uid`, `enable_binding_cookie`,
//!   `http_only_cookie_attribute`, `options_preflight_bypass`, ...), `tags` sorted, and
//!   `policies[]` expanded from the reusable policies;
//! - reusable policies carry `app_count`, `reusable`, `session_duration`, and leave out
//!   booleans that are false;
//! - DNS records come back with name and content lower-cased and without a trailing dot,
//!   `ttl: 1` when proxied, `settings: {"flatten_cname": false}` on a CNAME;
//! - tunnel configurations saved from the dashboard carry `"originRequest": {}` and
//!   `"warp-routing": {"enabled": false}`; keys are sorted.
//!
//! Robustness beyond what was recorded (unverified against Cloudflare, but what a
//! server is free to do and what the Terraform provider's users met as permanent diffs:
//! terraform-provider-cloudflare #2520, #2553, #2577): every `originRequest` key spelled
//! out with its zero value, hostnames and emails lower-cased, durations in Go's
//! canonical form (`24h` → `24h0m0s`), destinations in the server's own order.

use serde_json::{json, Map, Value};

use super::util::go_duration_nanos;

/// Every `originRequest` key cloudflared knows, with its zero value.
fn origin_request_zeros() -> Map<String, Value> {
    let mut m = Map::new();
    for k in [
        "connectTimeout",
        "tlsTimeout",
        "tcpKeepAlive",
        "keepAliveTimeout",
        "keepAliveConnections",
        "proxyPort",
    ] {
        m.insert(k.into(), json!(0));
    }
    for k in [
        "noHappyEyeballs",
        "noTLSVerify",
        "disableChunkedEncoding",
        "bastionMode",
        "http2Origin",
        "matchSNItoHost",
    ] {
        m.insert(k.into(), json!(false));
    }
    for k in [
        "httpHostHeader",
        "originServerName",
        "caPool",
        "proxyAddress",
        "proxyType",
    ] {
        m.insert(k.into(), json!(""));
    }
    m.insert("ipRules".into(), json!([]));
    m.insert(
        "access".into(),
        json!({"required": false, "teamName": "", "audTag": []}),
    );
    m
}

/// `originRequest` with every key present: the sent values over the zero values.
fn spelled_out(origin_request: Option<&Value>) -> Value {
    let mut m = origin_request_zeros();
    if let Some(Value::Object(sent)) = origin_request {
        for (k, v) in sent {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

/// A lower-case hostname without a trailing dot.
pub(crate) fn hostname(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A tunnel configuration as the API answers it.
pub(crate) fn config(config: &Value) -> Value {
    let Some(obj) = config.as_object() else {
        return config.clone();
    };
    let mut out = obj.clone();
    if let Some(Value::Array(rules)) = obj.get("ingress") {
        let rules: Vec<Value> = rules
            .iter()
            .map(|r| {
                let mut r = r.as_object().cloned().unwrap_or_default();
                let host = r
                    .get("hostname")
                    .and_then(Value::as_str)
                    .map(hostname)
                    .unwrap_or_default();
                r.insert("hostname".into(), json!(host));
                r.entry("path").or_insert(json!(""));
                let or = spelled_out(r.get("originRequest"));
                r.insert("originRequest".into(), or);
                Value::Object(r)
            })
            .collect();
        out.insert("ingress".into(), Value::Array(rules));
    }
    let top = spelled_out(obj.get("originRequest"));
    out.insert("originRequest".into(), top);
    out.entry("warp-routing")
        .or_insert(json!({"enabled": false}));
    Value::Object(out)
}

/// An Access rule list with emails and domains in canonical (lower-case) form.
pub(crate) fn rules(rules: &[Value]) -> Vec<Value> {
    rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(e) = r.pointer_mut("/email/email") {
                if let Some(s) = e.as_str() {
                    *e = json!(s.to_lowercase());
                }
            }
            if let Some(d) = r.pointer_mut("/email_domain/domain") {
                if let Some(s) = d.as_str() {
                    *d = json!(s.to_lowercase());
                }
            }
            r
        })
        .collect()
}

/// Go's `time.Duration.String()` of a duration written in Go syntax (`24h` → `24h0m0s`,
/// `90m` → `1h30m0s`, `1.5h` → `1h30m0s`); the input itself when it does not parse.
pub(crate) fn go_duration(s: &str) -> String {
    let Some(nanos) = go_duration_nanos(s.trim()) else {
        return s.to_string();
    };
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return s.to_string();
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, sec) = (total_secs / 3600, (total_secs % 3600) / 60, total_secs % 60);
    let secs = if frac == 0 {
        format!("{sec}s")
    } else {
        let f = format!("{frac:09}");
        format!("{sec}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Access app destinations as the API answers them: hostnames lower-cased, sorted.
pub(crate) fn destinations(destinations: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = destinations
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(u) = d.get_mut("uri") {
                if let Some(s) = u.as_str() {
                    *u = json!(hostname(s));
                }
            }
            d
        })
        .collect();
    out.sort_by_key(|d| {
        d.get("uri")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    });
    out
}

/// Tags as a real answer lists them: sorted.
pub(crate) fn sorted(tags: &[String]) -> Vec<String> {
    let mut t = tags.to_vec();
    t.sort();
    t
}

/// Fields a real application answer carries that the request did not (defaults).
pub(crate) fn app_server_fields() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("allow_authenticate_via_warp".into(), json!(false));
    m.insert("custom_pages".into(), json!([]));
    m.insert("path_cookie_attribute".into(), json!(false));
    m.insert("same_site_cookie_attribute".into(), json!(""));
    m.insert("custom_deny_url".into(), json!(""));
    m.insert("custom_non_identity_deny_url".into(), json!(""));
    m.insert("scim_config".into(), Value::Null);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_in_canonical_form() {
        for (input, want) in [
            ("24h", "24h0m0s"),
            ("30m", "30m0s"),
            ("90m", "1h30m0s"),
            ("1.5h", "1h30m0s"),
            ("45s", "45s"),
            ("1h30m", "1h30m0s"),
            ("0", "0s"),
        ] {
            assert_eq!(go_duration(input), want, "{input}");
        }
        assert_eq!(go_duration("nonsense"), "nonsense");
    }

    #[test]
    fn config_spells_out_zero_values() {
        let sent = json!({"ingress": [
            {"hostname": "A.Example.com", "service": "http://localhost:8080"},
            {"service": "http_status:404"}]});
        let out = config(&sent);
        assert_eq!(out["ingress"][0]["hostname"], "a.example.com");
        assert_eq!(out["ingress"][0]["originRequest"]["noTLSVerify"], false);
        assert_eq!(out["ingress"][1]["hostname"], "");
        assert_eq!(
            out["ingress"][1]["originRequest"]["access"]["required"],
            false
        );
        assert_eq!(out["originRequest"]["connectTimeout"], 0);
        assert_eq!(out["warp-routing"]["enabled"], false);
    }
}
