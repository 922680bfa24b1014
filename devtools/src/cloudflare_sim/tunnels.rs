//! `/accounts/{account_id}/cfd_tunnel`: create, list, get, PATCH, delete, token.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::envelope::{ok, paginate, PageSpec};
use super::errors::{codes, ApiError, ApiResult};
use super::input::{json_object, Fields, Params};
use super::model::{App, Sim, Tunnel};
use super::util::{now_rfc3339, random_bytes, uuid};

fn bad(msg: String) -> ApiError {
    ApiError::bad_request(codes::TUNNEL_BAD_REQUEST, msg)
}

/// 404 for an unknown (or, where it matters, deleted) tunnel.
pub(crate) fn not_found() -> ApiError {
    ApiError::not_found(codes::TUNNEL_NOT_FOUND, "Tunnel not found")
}

fn name_conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::TUNNEL_NAME_CONFLICT,
        "You already have a tunnel with this name",
    )
}

/// The tunnel object (no token, no credentials).
pub(crate) fn render(t: &Tunnel, account_id: &str) -> Value {
    json!({
        "id": t.id,
        "account_tag": account_id,
        "name": t.name,
        "created_at": t.created_at,
        "deleted_at": t.deleted_at,
        "conns_active_at": t.conns_active_at,
        "conns_inactive_at": t.conns_inactive_at,
        "status": t.status(),
        "tun_type": "cfd_tunnel",
        "config_src": t.config_src,
        "remote_config": t.config_src == "cloudflare",
        "metadata": {},
        "connections": [],
    })
}

/// The connector token: standard base64 (padded) of `{"a","s","t"}`, in the field
/// order of cloudflared's `TunnelToken` struct.
pub(crate) fn token(t: &Tunnel, account_id: &str) -> String {
    let json = format!(
        r#"{{"a":{},"s":{},"t":{}}}"#,
        Value::from(account_id),
        Value::from(STANDARD.encode(&t.secret)),
        Value::from(t.id.as_str()),
    );
    STANDARD.encode(json)
}

fn with_token(t: &Tunnel, account_id: &str, credentials: bool) -> Value {
    let mut v = render(t, account_id);
    let obj = v.as_object_mut().expect("object literal");
    obj.insert("token".into(), json!(token(t, account_id)));
    if credentials {
        obj.insert(
            "credentials_file".into(),
            json!({
                "AccountTag": account_id,
                "TunnelID": t.id,
                "TunnelName": t.name,
                "TunnelSecret": STANDARD.encode(&t.secret),
            }),
        );
    }
    v
}

/// Decodes and checks a `tunnel_secret` (standard base64 of at least 32 bytes).
fn parse_secret(raw: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = STANDARD
        .decode(raw)
        .map_err(|_| bad("tunnel_secret: must be standard base64 (with padding)".into()))?;
    if bytes.len() < 32 {
        return Err(bad(format!(
            "tunnel_secret: must be at least 32 bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Index of a tunnel that exists and is not deleted, else 404.
pub(crate) fn live_index(sim: &Sim, id: &str) -> Result<usize, ApiError> {
    sim.tunnels
        .iter()
        .position(|t| t.id.eq_ignore_ascii_case(id) && t.deleted_at.is_none())
        .ok_or_else(not_found)
}

fn name_taken(sim: &Sim, name: &str, except: Option<&str>) -> bool {
    sim.tunnels
        .iter()
        .any(|t| t.deleted_at.is_none() && t.name == name && Some(t.id.as_str()) != except)
}

/// `POST /accounts/{account_id}/cfd_tunnel`.
pub(crate) async fn create(
    State(app): State<App>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let body = json_object(&body)?;
    let f = Fields::new(&body, bad);
    let name = f.req_str("name")?.to_owned();
    let config_src = f.str("config_src")?.unwrap_or("local").to_owned();
    if config_src != "local" && config_src != "cloudflare" {
        return Err(f.error("config_src", "must be \"local\" or \"cloudflare\""));
    }
    let secret = match f.str("tunnel_secret")? {
        Some(raw) => parse_secret(raw)?,
        None => random_bytes(32),
    };
    if name_taken(&sim, &name, None) {
        return Err(name_conflict());
    }
    let now = now_rfc3339();
    let tunnel = Tunnel {
        id: uuid(),
        name,
        secret,
        config_src,
        created_at: now.clone(),
        deleted_at: None,
        conns_active_at: None,
        conns_inactive_at: None,
        ever_connected: false,
        connectors: Vec::new(),
        config: None,
        config_version: 0,
        config_created_at: now,
    };
    let out = with_token(&tunnel, &account_id, true);
    tracing::debug!(tunnel_id = %tunnel.id, name = %tunnel.name, "sim: tunnel created");
    sim.tunnels.push(tunnel);
    ok(out)
}

/// `GET /accounts/{account_id}/cfd_tunnel` with `name`, `is_deleted`, `uuid`,
/// `include_prefix` (or cloudflared's `name_prefix`), `exclude_prefix`, `status`,
/// `tun_types`, `page`, `per_page`.
pub(crate) async fn list(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let include = params
        .non_empty("include_prefix")
        .or(params.non_empty("name_prefix"));
    let items = sim
        .tunnels
        .iter()
        .filter(|t| params.non_empty("name").is_none_or(|n| t.name == n))
        .filter(|t| {
            params
                .flag("is_deleted")
                .is_none_or(|d| d == t.deleted_at.is_some())
        })
        .filter(|t| {
            params
                .non_empty("uuid")
                .is_none_or(|u| t.id.eq_ignore_ascii_case(u))
        })
        .filter(|t| include.is_none_or(|p| t.name.starts_with(p)))
        .filter(|t| {
            params
                .non_empty("exclude_prefix")
                .is_none_or(|p| !t.name.starts_with(p))
        })
        .filter(|t| params.non_empty("status").is_none_or(|s| t.status() == s))
        .filter(|_| {
            params
                .non_empty("tun_types")
                .is_none_or(|types| types.split(',').any(|ty| ty.trim() == "cfd_tunnel"))
        })
        .map(|t| render(t, &account_id))
        .collect();
    paginate(items, &params, PageSpec::TUNNELS, sim.opts.page_cap)
}

/// `GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}`: also returns deleted tunnels.
pub(crate) async fn get_one(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let t = sim.tunnel(&tunnel_id).ok_or_else(not_found)?;
    ok(render(t, &account_id))
}

/// `PATCH /accounts/{account_id}/cfd_tunnel/{tunnel_id}` `{name?, tunnel_secret?}`.
pub(crate) async fn patch(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    let body = json_object(&body)?;
    let f = Fields::new(&body, bad);
    let name = f.str("name")?;
    if name.is_some_and(|n| n.trim().is_empty()) {
        return Err(f.error("name", "must not be empty"));
    }
    let secret = f.str("tunnel_secret")?.map(parse_secret).transpose()?;
    if let Some(n) = name {
        if name_taken(&sim, n, Some(&sim.tunnels[i].id)) {
            return Err(name_conflict());
        }
    }
    let t = &mut sim.tunnels[i];
    if let Some(n) = name {
        t.name = n.to_owned();
    }
    if let Some(s) = secret {
        t.secret = s;
        tracing::debug!(tunnel_id = %t.id, "sim: tunnel secret rotated");
    }
    ok(with_token(t, &account_id, false))
}

/// `DELETE /accounts/{account_id}/cfd_tunnel/{tunnel_id}`: soft delete; 1022 while
/// connectors are attached. The undocumented `?cascade=true` is deliberately ignored,
/// so clients must clean up connections explicitly.
pub(crate) async fn delete(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    let t = &mut sim.tunnels[i];
    if !t.connectors.is_empty() {
        return Err(ApiError::bad_request(
            codes::TUNNEL_HAS_CONNECTIONS,
            "Cannot delete tunnel because it has active connections",
        ));
    }
    t.deleted_at = Some(now_rfc3339());
    ok(render(t, &account_id))
}

/// `GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/token` → the bare token string.
pub(crate) async fn get_token(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    ok(json!(token(&sim.tunnels[i], &account_id)))
}
