//! Tunnel connectors (simulated cloudflared replicas): the `.../connections` API and
//! the state changes the `/__sim/connectors` hooks drive.

use axum::extract::{Path, RawQuery, State};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::envelope::ok;
use super::errors::{ApiError, ApiResult};
use super::input::Params;
use super::model::{App, Conn, Connector, Sim, Tunnel};
use super::tunnels::{live_index, not_found};
use super::util::{now_rfc3339, random_bytes, uuid};

/// Two data centres, two connections each, as a healthy replica has.
const COLOS: [&str; 4] = ["fra06", "ams01", "fra10", "ams06"];
/// Reported cloudflared version.
const CLIENT_VERSION: &str = "2026.7.0";

/// Why a connector hook failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// The token does not decode.
    BadToken,
    /// The tunnel does not exist, is deleted, or belongs to another account.
    TunnelNotFound,
    /// The secret is not the tunnel's current secret.
    InvalidSecret,
}

impl ConnectError {
    /// The message cloudflared would log.
    pub fn message(self) -> &'static str {
        match self {
            Self::BadToken => "Provided Tunnel token is not valid.",
            Self::TunnelNotFound => "Unauthorized: Tunnel not found",
            Self::InvalidSecret => "Unauthorized: Invalid tunnel secret",
        }
    }
}

/// A connector as `GET .../connections` returns it.
pub(crate) fn render(c: &Connector, t: &Tunnel) -> Value {
    json!({
        "id": c.client_id,
        "arch": c.arch,
        "version": c.version,
        "run_at": c.run_at,
        "config_version": t.config_version,
        "features": [],
        "conns": c.conns.iter().map(|conn| json!({
            "id": conn.id,
            "uuid": conn.id,
            "colo_name": conn.colo_name,
            "is_pending_reconnect": false,
            "origin_ip": conn.origin_ip,
            "opened_at": conn.opened_at,
            "client_id": c.client_id,
            "client_version": c.version,
        })).collect::<Vec<_>>(),
    })
}

/// Decodes a tunnel token into (account tag, tunnel id, secret bytes).
pub(crate) fn decode_token(token: &str) -> Option<(String, String, Vec<u8>)> {
    let raw = STANDARD.decode(token.trim()).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let a = v.get("a")?.as_str()?.to_owned();
    let t = v.get("t")?.as_str()?.to_owned();
    let s = STANDARD.decode(v.get("s")?.as_str()?).ok()?;
    Some((a, t, s))
}

fn new_conns(now: &str) -> Vec<Conn> {
    COLOS
        .iter()
        .map(|colo| {
            let octet = random_bytes(1)[0];
            Conn {
                id: uuid(),
                colo_name: (*colo).to_owned(),
                origin_ip: format!("203.0.113.{}", octet.max(1)),
                opened_at: now.to_owned(),
            }
        })
        .collect()
}

/// Marks the tunnel inactive-since-now once its last connector is gone.
fn after_removal(t: &mut Tunnel, had_connectors: bool) {
    if had_connectors && t.connectors.is_empty() {
        t.conns_inactive_at = Some(now_rfc3339());
    }
}

/// A replica starts with `token`: registers a connector with 4 connections if the
/// token names a live tunnel of this account and carries its current secret.
/// Returns (tunnel id, client id).
pub(crate) fn register(
    sim: &mut Sim,
    token: &str,
    arch: Option<&str>,
    version: Option<&str>,
) -> Result<(String, String), ConnectError> {
    let (account, tunnel_id, secret) = decode_token(token).ok_or(ConnectError::BadToken)?;
    if account != sim.opts.account_id {
        return Err(ConnectError::TunnelNotFound);
    }
    let i = live_index(sim, &tunnel_id).map_err(|_| ConnectError::TunnelNotFound)?;
    let t = &mut sim.tunnels[i];
    if t.secret != secret {
        return Err(ConnectError::InvalidSecret);
    }
    let now = now_rfc3339();
    let client_id = uuid();
    if t.connectors.is_empty() {
        t.conns_active_at = Some(now.clone());
        t.conns_inactive_at = None;
    }
    t.ever_connected = true;
    t.connectors.push(Connector {
        client_id: client_id.clone(),
        secret,
        arch: arch.unwrap_or("linux_amd64").to_owned(),
        version: version.unwrap_or(CLIENT_VERSION).to_owned(),
        run_at: now.clone(),
        conns: new_conns(&now),
    });
    tracing::debug!(tunnel_id = %t.id, %client_id, "sim: connector registered");
    Ok((t.id.clone(), client_id))
}

fn find_connector(sim: &Sim, client_id: &str) -> Option<(usize, usize)> {
    sim.tunnels.iter().enumerate().find_map(|(ti, t)| {
        t.connectors
            .iter()
            .position(|c| c.client_id.eq_ignore_ascii_case(client_id))
            .map(|ci| (ti, ci))
    })
}

/// The replica stops. Returns the tunnel id, or `None` for an unknown connector.
pub(crate) fn disconnect(sim: &mut Sim, client_id: &str) -> Option<String> {
    let (ti, ci) = find_connector(sim, client_id)?;
    let t = &mut sim.tunnels[ti];
    t.connectors.remove(ci);
    after_removal(t, true);
    Some(t.id.clone())
}

/// An edge reconnect: works only while the replica's secret is still the tunnel's
/// current one; otherwise the connector is dropped. `Ok(tunnel id)`, or
/// `Err(None)` for an unknown connector, `Err(Some(e))` for a refused reconnect.
pub(crate) fn reconnect(sim: &mut Sim, client_id: &str) -> Result<String, Option<ConnectError>> {
    let (ti, ci) = find_connector(sim, client_id).ok_or(None)?;
    let t = &mut sim.tunnels[ti];
    if t.deleted_at.is_none() && t.connectors[ci].secret == t.secret {
        let now = now_rfc3339();
        t.connectors[ci].conns = new_conns(&now);
        return Ok(t.id.clone());
    }
    t.connectors.remove(ci);
    after_removal(t, true);
    Err(Some(if t.deleted_at.is_some() {
        ConnectError::TunnelNotFound
    } else {
        ConnectError::InvalidSecret
    }))
}

/// `GET .../cfd_tunnel/{tunnel_id}/connections` (not paginated).
pub(crate) async fn list(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let t = sim.tunnel(&tunnel_id).ok_or_else(not_found)?;
    ok(Value::Array(
        t.connectors.iter().map(|c| render(c, t)).collect(),
    ))
}

/// `DELETE .../cfd_tunnel/{tunnel_id}/connections[?client_id=]`: drops every
/// connector, or just one (an unknown `client_id` is a no-op). Result `{}`.
pub(crate) async fn delete(
    State(app): State<App>,
    Path((account_id, tunnel_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = live_index(&sim, &tunnel_id)?;
    let t = &mut sim.tunnels[i];
    let had = !t.connectors.is_empty();
    match params.non_empty("client_id") {
        Some(id) => t
            .connectors
            .retain(|c| !c.client_id.eq_ignore_ascii_case(id)),
        None => t.connectors.clear(),
    }
    after_removal(t, had);
    ok(json!({}))
}

/// `GET .../cfd_tunnel/{tunnel_id}/connectors/{connector_id}`.
pub(crate) async fn get_one(
    State(app): State<App>,
    Path((account_id, tunnel_id, connector_id)): Path<(String, String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let t = sim.tunnel(&tunnel_id).ok_or_else(not_found)?;
    let c = t
        .connectors
        .iter()
        .find(|c| c.client_id.eq_ignore_ascii_case(&connector_id))
        .ok_or_else(|| {
            ApiError::not_found(
                super::errors::codes::TUNNEL_NOT_FOUND,
                "Connector not found",
            )
        })?;
    ok(render(c, t))
}
