//! The write audit: every write request a client identifying itself as ecs-tunnels
//! (`User-Agent: ecs-tunnels/…`) makes to an existing object is recorded with what that
//! object was before the write (its kind, id and ownership markers: name, DNS comment,
//! Access tags). A test reads it through `GET /__sim/audit` to prove that the functions
//! never changed or deleted an object another owner (or a person) made. Kept across
//! `DELETE /__sim/requests`; cleared by `POST /__sim/reset`.

use serde_json::{json, Value};

use super::model::Sim;
use super::openapi::API_PREFIX;

/// One audited write.
#[derive(Debug, Clone)]
pub(crate) struct AuditEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The object the write addressed, as it was before (`None`: a create, or a path
    /// that names no single object).
    pub before: Option<Value>,
}

impl AuditEntry {
    /// As the hook shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "before": self.before,
        })
    }
}

/// True for requests the audit covers: writes by ecs-tunnels.
pub(crate) fn audited(method: &str, user_agent: Option<&str>) -> bool {
    method != "GET" && method != "HEAD" && user_agent.is_some_and(|a| a.starts_with("ecs-tunnels"))
}

/// The object an API path addresses, with its ownership markers, before the write.
/// `{"kind": …, "id": …, "missing": true}` when it does not exist (a delete of something
/// already gone).
pub(crate) fn object_before(sim: &Sim, path: &str) -> Option<Value> {
    let rest = path.strip_prefix(API_PREFIX).unwrap_or(path);
    let seg: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["accounts", _, "cfd_tunnel", id, ..] => Some(
            sim.tunnels
                .iter()
                .find(|t| t.id == *id)
                .map(|t| json!({"kind": "tunnel", "id": t.id, "name": t.name}))
                .unwrap_or_else(|| missing("tunnel", id)),
        ),
        ["zones", _, "dns_records", id] => Some(
            sim.dns
                .iter()
                .find(|r| r.id == *id)
                .map(|r| json!({"kind": "dns_record", "id": r.id, "name": r.name, "comment": r.comment}))
                .unwrap_or_else(|| missing("dns_record", id)),
        ),
        ["accounts", _, "access", "apps", id, ..] => Some(
            sim.apps
                .iter()
                .find(|a| a.id == *id)
                .map(|a| json!({"kind": "access_app", "id": a.id, "name": a.name, "tags": a.tags}))
                .unwrap_or_else(|| missing("access_app", id)),
        ),
        ["accounts", _, "access", "policies", id] => Some(
            sim.policies
                .iter()
                .find(|p| p.id == *id)
                .map(|p| json!({"kind": "access_policy", "id": p.id, "name": p.name}))
                .unwrap_or_else(|| missing("access_policy", id)),
        ),
        _ => None,
    }
}

fn missing(kind: &str, id: &str) -> Value {
    json!({"kind": kind, "id": id, "missing": true})
}
