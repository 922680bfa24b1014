//! Test hooks under `/__sim` (no auth, plain JSON, never counted in the request log):
//! simulated cloudflared replicas, fault injection, a global latency, request counters
//! and timings, OpenAPI violations, a state dump, and setup helpers (including a crowded
//! account, `crowd.rs`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::connectors::{self, ConnectError};
use super::model::{App, Fault, Idp, Zone};
use super::util::{hex, hex_id, now_rfc3339, sha256, uuid};
use super::{access_apps, access_misc, access_policies, crowd, dns, faults, tunnels, zones};

/// The hook routes (merged into the main router).
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/__sim/connectors", post(connect))
        .route("/__sim/connectors/{client_id}", delete(disconnect))
        .route("/__sim/connectors/{client_id}/reconnect", post(reconnect))
        .route(
            "/__sim/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/__sim/requests", get(requests).delete(reset_requests))
        .route("/__sim/latency", get(latency).post(set_latency))
        .route("/__sim/seed", post(seed_crowd))
        .route(
            "/__sim/violations",
            get(violations).delete(clear_violations),
        )
        .route("/__sim/state", get(state))
        .route("/__sim/audit", get(audit))
        .route("/__sim/zones", post(add_zone))
        .route("/__sim/identity_providers", post(add_idp))
        .route("/__sim/reset", post(reset))
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// A failed hook call: `{"error": "..."}` with a status.
struct HookError(StatusCode, String);

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        reply(self.0, json!({ "error": self.1 }))
    }
}

type HookResult = Result<Response, HookError>;

fn error(status: StatusCode, message: impl Into<String>) -> HookError {
    HookError(status, message.into())
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, HookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(StatusCode::BAD_REQUEST, "body must be a JSON object")),
    }
}

fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, HookError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{key}: is required")))
}

fn connect_error(e: ConnectError) -> HookError {
    let status = match e {
        ConnectError::BadToken => StatusCode::BAD_REQUEST,
        ConnectError::TunnelNotFound | ConnectError::InvalidSecret => StatusCode::UNAUTHORIZED,
    };
    error(status, e.message())
}

/// `POST /__sim/connectors {"token", "arch"?, "version"?}`: a replica starts.
async fn connect(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let token = str_field(&body, "token")?;
    let arch = body.get("arch").and_then(Value::as_str);
    let version = body.get("version").and_then(Value::as_str);
    let mut sim = app.lock();
    let (tunnel_id, client_id) =
        connectors::register(&mut sim, token, arch, version).map_err(connect_error)?;
    Ok(reply(
        StatusCode::OK,
        json!({ "client_id": client_id, "tunnel_id": tunnel_id }),
    ))
}

/// `DELETE /__sim/connectors/{client_id}`: a replica stops.
async fn disconnect(State(app): State<App>, Path(client_id): Path<String>) -> HookResult {
    let tunnel_id = connectors::disconnect(&mut app.lock(), &client_id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such connector"))?;
    Ok(reply(
        StatusCode::OK,
        json!({ "client_id": client_id, "tunnel_id": tunnel_id }),
    ))
}

/// `POST /__sim/connectors/{client_id}/reconnect`: an edge reconnect.
async fn reconnect(State(app): State<App>, Path(client_id): Path<String>) -> HookResult {
    let tunnel_id = connectors::reconnect(&mut app.lock(), &client_id).map_err(|e| match e {
        Some(e) => connect_error(e),
        None => error(StatusCode::NOT_FOUND, "no such connector"),
    })?;
    Ok(reply(
        StatusCode::OK,
        json!({ "client_id": client_id, "tunnel_id": tunnel_id, "reconnected": true }),
    ))
}

fn render_fault(f: &Fault) -> Value {
    json!({
        "method": f.method,
        "path_contains": f.path_contains,
        "status": f.status,
        "retry_after": f.retry_after,
        "remaining": f.remaining,
        "code": f.code,
        "latency_ms": f.latency_ms,
        "after_ms": f.after_ms,
        "commit": f.commit,
    })
}

/// `POST /__sim/faults`: queue a fault.
async fn add_fault(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let fault = faults::parse_fault(&body).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let mut sim = app.lock();
    let out = render_fault(&fault);
    sim.faults.push_back(fault);
    Ok(reply(
        StatusCode::OK,
        json!({ "queued": out, "pending": sim.faults.len() }),
    ))
}

/// `GET /__sim/faults`: the queued faults.
async fn list_faults(State(app): State<App>) -> Response {
    let sim = app.lock();
    let list: Vec<Value> = sim.faults.iter().map(render_fault).collect();
    reply(StatusCode::OK, json!({ "faults": list }))
}

/// `DELETE /__sim/faults`: drop every queued fault.
async fn clear_faults(State(app): State<App>) -> Response {
    app.lock().faults.clear();
    reply(StatusCode::OK, json!({ "pending": 0 }))
}

/// `GET /__sim/requests`: counters and the log of API requests.
async fn requests(State(app): State<App>) -> Response {
    let sim = app.lock();
    let r = &sim.requests;
    let by_status: Map<String, Value> = r
        .by_status
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let log: Vec<Value> = r
        .log
        .iter()
        .map(|e| {
            json!({
                "method": e.method,
                "path": e.path,
                "query": e.query,
                "status": e.status,
                "violation": e.violation,
                "started_us": e.started_us,
                "ended_us": e.ended_us,
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "total": r.total,
            "writes": r.writes,
            "by_status": by_status,
            "violations": r.violations,
            "rate_limited": r.rate_limited,
            "log": log,
        }),
    )
}

/// `GET /__sim/latency`: `{"ms"}`, the latency added to every API request.
async fn latency(State(app): State<App>) -> Response {
    let ms = app.lock().opts.latency_ms;
    reply(StatusCode::OK, json!({ "ms": ms }))
}

/// `POST /__sim/latency {"ms"}`: add `ms` milliseconds to every API request from now on
/// (0: none). Kept across `/__sim/reset`.
async fn set_latency(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let ms = body.get("ms").and_then(Value::as_u64).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "ms: must be a non-negative integer",
        )
    })?;
    app.lock().opts.latency_ms = ms;
    Ok(reply(StatusCode::OK, json!({ "ms": ms })))
}

/// `POST /__sim/seed {"access_apps", "policies", "dns_records"}`: fills the account with
/// objects that belong to someone else (see `crowd.rs`).
async fn seed_crowd(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let crowd = crowd::Crowd::parse(&body).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let out =
        crowd::seed(&mut app.lock(), &crowd).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    Ok(reply(StatusCode::OK, out))
}

/// `GET /__sim/violations`: every request Cloudflare's OpenAPI document rejected since
/// the start or the last `DELETE` (`/__sim/reset` keeps them): `{"count", "violations"}`.
async fn violations(State(app): State<App>) -> Response {
    let sim = app.lock();
    reply(
        StatusCode::OK,
        json!({ "count": sim.violations.count, "violations": sim.violations.list }),
    )
}

/// `DELETE /__sim/violations`: forget them.
async fn clear_violations(State(app): State<App>) -> Response {
    app.lock().violations = Default::default();
    reply(StatusCode::OK, json!({ "count": 0 }))
}

/// `DELETE /__sim/requests`: reset the log and counters.
async fn reset_requests(State(app): State<App>) -> Response {
    app.lock().requests = Default::default();
    reply(StatusCode::OK, json!({ "total": 0 }))
}

/// The first 12 hex characters of the secret's SHA-256: enough to tell secrets
/// apart, useless for recovering them.
fn secret_sha(secret: &[u8]) -> String {
    hex(&sha256(secret))[..12].to_owned()
}

/// `GET /__sim/state`: everything, with secrets reduced to fingerprints.
/// `GET /__sim/audit`: writes by ecs-tunnels, each with the object it addressed as it
/// was before.
async fn audit(State(app): State<App>) -> Response {
    let sim = app.lock();
    let entries: Vec<Value> = sim.audit.iter().map(|e| e.to_json()).collect();
    reply(StatusCode::OK, json!({ "writes": entries }))
}

async fn state(State(app): State<App>) -> Response {
    let sim = app.lock();
    let zone_name = |id: &str| sim.zone(id).map(|z| z.name.clone()).unwrap_or_default();
    let account = sim.opts.account_id.clone();
    let tunnels: Vec<Value> = sim
        .tunnels
        .iter()
        .map(|t| {
            let mut v = tunnels::render(t, &account);
            let obj = v.as_object_mut().expect("object");
            obj.insert("secret_sha".into(), json!(secret_sha(&t.secret)));
            obj.insert("config".into(), t.config.clone().unwrap_or(Value::Null));
            obj.insert("config_version".into(), json!(t.config_version));
            let conns: Vec<Value> = t
                .connectors
                .iter()
                .map(|c| {
                    let mut cv = connectors::render(c, t);
                    cv.as_object_mut()
                        .expect("object")
                        .insert("secret_sha".into(), json!(secret_sha(&c.secret)));
                    cv
                })
                .collect();
            obj.insert("connectors".into(), json!(conns));
            v
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "account_id": account,
            "team_name": sim.opts.team_name,
            "zones": sim.zones.iter().map(|z| zones::render(z, &sim)).collect::<Vec<_>>(),
            "dns_records": sim.dns.iter().map(|r| dns::render(r, &zone_name(&r.zone_id), sim.opts.server_shapes)).collect::<Vec<_>>(),
            "tunnels": tunnels,
            "access_apps": sim.apps.iter().map(|a| access_apps::render(a, &sim)).collect::<Vec<_>>(),
            "access_policies": sim.policies.iter().map(|p| access_policies::render_policy(p, &sim)).collect::<Vec<_>>(),
            "access_groups": sim.groups.iter().map(access_policies::render_group).collect::<Vec<_>>(),
            "identity_providers": sim.idps.iter().map(access_misc::render_idp).collect::<Vec<_>>(),
            "access_tags": sim.tags.iter().map(|t| access_misc::render_tag(t, &sim)).collect::<Vec<_>>(),
            "pending_faults": sim.faults.len(),
        }),
    )
}

/// `POST /__sim/zones {"name"}`: add a zone.
async fn add_zone(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let name = str_field(&body, "name")?
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut sim = app.lock();
    if sim.zones.iter().any(|z| z.name == name) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("zone {name} already exists"),
        ));
    }
    let zone = Zone {
        id: hex_id(),
        name,
        created_on: now_rfc3339(),
    };
    let out = zones::render(&zone, &sim);
    sim.zones.push(zone);
    Ok(reply(StatusCode::OK, out))
}

/// `POST /__sim/identity_providers {"name","type"}`: add an IdP.
async fn add_idp(State(app): State<App>, body: Bytes) -> HookResult {
    let body = body_object(&body)?;
    let idp = Idp {
        id: uuid(),
        name: str_field(&body, "name")?.to_owned(),
        idp_type: str_field(&body, "type")?.to_owned(),
    };
    let out = access_misc::render_idp(&idp);
    app.lock().idps.push(idp);
    Ok(reply(StatusCode::OK, out))
}

/// `POST /__sim/reset`: back to the start options (new zone ids, empty log).
async fn reset(State(app): State<App>) -> Response {
    app.lock().reset();
    reply(StatusCode::OK, json!({ "reset": true }))
}
