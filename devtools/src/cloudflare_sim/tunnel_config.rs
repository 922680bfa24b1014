//! `GET`/`PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations`, with the
//! ingress validation cloudflared applies to a remote configuration.

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{json, Map, Value};

use super::envelope::ok;
use super::errors::{codes, ApiError, ApiResult};
use super::input::{json_object, Fields};
use super::model::{App, Tunnel};
use super::server_shapes;
use super::tunnels::live_index;
use super::util::now_rfc3339;

fn bad(msg: String) -> ApiError {
    ApiError::bad_request(codes::TUNNEL_BAD_CONFIG, msg)
}

/// Service schemes cloudflared accepts (plus `http_status:NNN` and `hello_world`).
const SCHEMES: &[&str] = &[
    "http", "https", "unix", "tcp", "ssh", "rdp", "unix+tls", "smb",
];
/// originRequest durations: integer seconds, never `"30s"`.
const DURATION_KEYS: &[&str] = &[
    "connectTimeout",
    "tlsTimeout",
    "tcpKeepAlive",
    "keepAliveTimeout",
];
const INTEGER_KEYS: &[&str] = &["keepAliveConnections", "proxyPort"];
const BOOL_KEYS: &[&str] = &[
    "noTLSVerify",
    "disableChunkedEncoding",
    "noHappyEyeballs",
    "http2Origin",
    "bastionMode",
    "matchSNItoHost",
];
const STRING_KEYS: &[&str] = &[
    "httpHostHeader",
    "originServerName",
    "caPool",
    "proxyAddress",
    "proxyType",
];

/// The configuration object (`config` is null before the first PUT).
fn render(t: &Tunnel, account_id: &str, shapes: bool) -> Value {
    let config = match (&t.config, shapes) {
        (Some(c), true) => Some(server_shapes::config(c)),
        (c, _) => c.clone(),
    };
    json!({
        "tunnel_id": t.id,
        "account_id": account_id,
        "version": t.config_version,
        "config": config,
        "source": if t.config_src == "local" { "local" } else { "cloudflare" },
        "created_at": t.config_created_at,
    })
}

fn validate_service(service: &str, field: &str) -> Result<(), ApiError> {
    if let Some(code) = service.strip_prefix("http_status:") {
        return match code.parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(()),
            _ => Err(bad(format!(
                "{field}: {service:?} is not a valid HTTP status code service"
            ))),
        };
    }
    if service == "hello_world" {
        return Ok(());
    }
    let Some((scheme, rest)) = service.split_once("://") else {
        return Err(bad(format!(
            "{field}: {service:?} is not a valid service: expected scheme://address (one of {}) or http_status:<code>",
            SCHEMES.join(", ")
        )));
    };
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(bad(format!(
            "{field}: {service:?} uses the unsupported scheme {scheme:?}; supported: {}, http_status:<code>",
            SCHEMES.join(", ")
        )));
    }
    if rest.is_empty() {
        return Err(bad(format!("{field}: {service:?} has no address")));
    }
    if matches!(scheme, "http" | "https") {
        let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
        if !path.is_empty() && path != "/" {
            return Err(bad(format!(
                "{field}: {service:?} is an invalid address, ingress rules don't support proxying to a different path on the origin service"
            )));
        }
    }
    Ok(())
}

fn validate_hostname(hostname: &str, field: &str) -> Result<(), ApiError> {
    if hostname.contains(':') {
        return Err(bad(format!("{field}: Hostname cannot contain a port")));
    }
    let stars = hostname.matches('*').count();
    if stars > 0 && hostname != "*" && !(stars == 1 && hostname.starts_with("*.")) {
        return Err(bad(format!(
            "{field}: Hostname patterns can have at most one wildcard character (\"*\") and it can only be used for subdomains, e.g. \"*.example.com\""
        )));
    }
    Ok(())
}

fn validate_origin_request(map: &Map<String, Value>, prefix: &str) -> Result<(), ApiError> {
    let f = Fields::nested(map, bad, prefix);
    for key in DURATION_KEYS.iter().chain(INTEGER_KEYS) {
        if let Some(v) = f.raw(key) {
            if v.as_u64().is_none() {
                return Err(f.error(
                    key,
                    format!("must be a non-negative integer number of seconds, got {v}"),
                ));
            }
        }
    }
    for key in BOOL_KEYS {
        f.bool(key)?;
    }
    for key in STRING_KEYS {
        f.str(key)?;
    }
    if let Some(pt) = f.str("proxyType")? {
        if !pt.is_empty() && pt != "socks" {
            return Err(f.error("proxyType", "must be \"\" or \"socks\""));
        }
    }
    f.array("ipRules")?;
    if let Some(access) = f.object("access")? {
        let p = format!("{prefix}access.");
        let a = Fields::nested(access, bad, &p);
        a.req_str("teamName")?;
        a.bool("required")?;
        match a.str_array("audTag")? {
            Some(tags) if !tags.is_empty() => {}
            Some(_) => return Err(a.error("audTag", "must list at least one audience tag")),
            None => return Err(a.error("audTag", "is required")),
        }
    }
    Ok(())
}

/// Validates a `config` object the way cloudflared would refuse it.
fn validate_config(config: &Map<String, Value>) -> Result<(), ApiError> {
    let f = Fields::nested(config, bad, "config.");
    let ingress = f
        .array("ingress")?
        .ok_or_else(|| f.error("ingress", "at least one ingress rule is required"))?;
    if ingress.is_empty() {
        return Err(f.error("ingress", "at least one ingress rule is required"));
    }
    let last = ingress.len() - 1;
    for (i, rule) in ingress.iter().enumerate() {
        let prefix = format!("config.ingress[{i}].");
        let Some(rule) = rule.as_object() else {
            return Err(bad(format!("config.ingress[{i}]: must be an object")));
        };
        let r = Fields::nested(rule, bad, &prefix);
        let hostname = r.str("hostname")?.unwrap_or("");
        validate_hostname(hostname, &format!("{prefix}hostname"))?;
        let path = r.str("path")?.unwrap_or("");
        let service = r.req_str("service")?;
        validate_service(service, &format!("{prefix}service"))?;
        if let Some(or) = r.object("originRequest")? {
            validate_origin_request(or, &format!("{prefix}originRequest."))?;
        }
        let catch_all = (hostname.is_empty() || hostname == "*") && path.is_empty();
        if catch_all && i != last {
            return Err(bad(format!(
                "Rule #{} is matching all requests (because it has no hostname or path), but isn't the last rule. Rules are evaluated from top to bottom, so rule #{} and later would never be used",
                i + 1,
                i + 2
            )));
        }
        if !catch_all && i == last {
            return Err(bad(
                "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)".into(),
            ));
        }
    }
    if let Some(or) = f.object("originRequest")? {
        validate_origin_request(or, "config.originRequest.")?;
    }
    Ok(())
}

/// `GET .../configurations`.
pub(crate) async fn get_config(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    ok(render(&sim.tunnels[i], &account_id, sim.opts.server_shapes))
}

/// `PUT .../configurations` `{config:{ingress:[...], originRequest?}}`: validates,
/// stores `config` verbatim, bumps `version`.
pub(crate) async fn put_config(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    let body = json_object(&body)?;
    let config = Fields::new(&body, bad)
        .object("config")?
        .ok_or_else(|| bad("config: is required".into()))?;
    validate_config(config)?;
    let shapes = sim.opts.server_shapes;
    let t = &mut sim.tunnels[i];
    t.config = Some(Value::Object(config.clone()));
    t.config_version += 1;
    t.config_created_at = now_rfc3339();
    ok(render(t, &account_id, shapes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<(), String> {
        validate_config(v.as_object().unwrap()).map_err(|e| e.message)
    }

    #[test]
    fn accepts_the_documented_shape() {
        check(json!({"ingress": [
            {"hostname": "a.example.com", "service": "http://orders:8080",
             "originRequest": {"connectTimeout": 30, "access": {"required": true, "teamName": "t", "audTag": ["x"]}}},
            {"service": "http_status:404"}
        ], "originRequest": {"noTLSVerify": true}}))
        .unwrap();
    }

    #[test]
    fn refuses_bad_configs() {
        let cases = [
            (json!({"ingress": []}), "at least one"),
            (
                json!({"ingress": [{"hostname": "a.example.com", "service": "http://x"}]}),
                "last ingress rule",
            ),
            (
                json!({"ingress": [{"service": "http://x"}, {"service": "http_status:404"}]}),
                "Rule #1",
            ),
            (
                json!({"ingress": [{"service": "ftp://x"}]}),
                "unsupported scheme",
            ),
            (
                json!({"ingress": [{"service": "http://x/path"}]}),
                "different path",
            ),
            (
                json!({"ingress": [{"service": "http_status:999"}]}),
                "status",
            ),
            (
                json!({"ingress": [{"service": "http://x", "originRequest": {"connectTimeout": "30s"}}]}),
                "connectTimeout",
            ),
            (
                json!({"ingress": [{"service": "http://x", "originRequest": {"access": {"audTag": ["a"]}}}]}),
                "teamName",
            ),
            (
                json!({"ingress": [{"service": "http://x", "originRequest": {"access": {"teamName": "t"}}}]}),
                "audTag",
            ),
            (
                json!({"ingress": [{"hostname": "a.*.com", "service": "http://x"}, {"service": "http_status:404"}]}),
                "wildcard",
            ),
        ];
        for (cfg, needle) in cases {
            let err = check(cfg.clone()).expect_err(&cfg.to_string());
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
