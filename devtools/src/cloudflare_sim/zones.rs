//! `GET /zones` and `GET /zones/{zone_id}`.

use axum::extract::{Path, RawQuery, State};
use serde_json::{json, Value};

use super::envelope::{ok, paginate, PageSpec};
use super::errors::{codes, ApiError, ApiResult};
use super::input::Params;
use super::model::{App, Sim, Zone};

/// The zone object as Cloudflare returns it.
pub(crate) fn render(z: &Zone, sim: &Sim) -> Value {
    json!({
        "id": z.id,
        "name": z.name,
        "status": "active",
        "paused": false,
        "type": "full",
        "development_mode": 0,
        "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        "original_name_servers": null,
        "original_registrar": null,
        "original_dnshost": null,
        "created_on": z.created_on,
        "modified_on": z.created_on,
        "activated_on": z.created_on,
        "meta": {
            "step": 2,
            "custom_certificate_quota": 0,
            "page_rule_quota": 3,
            "phishing_detected": false,
        },
        "owner": {"id": null, "type": "user", "email": null},
        "account": {"id": sim.opts.account_id, "name": "Simulated account"},
        "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
        "plan": {
            "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            "name": "Free Website",
            "price": 0,
            "currency": "USD",
            "frequency": "",
            "is_subscribed": false,
            "can_subscribe": false,
            "legacy_id": "free",
            "legacy_discount": false,
            "externally_managed": false,
        },
    })
}

/// The zone with this id, or a 404.
pub(crate) fn find<'a>(sim: &'a Sim, zone_id: &str) -> Result<&'a Zone, ApiError> {
    sim.zone(zone_id).ok_or_else(|| {
        ApiError::not_found(
            codes::ZONE_NOT_FOUND,
            format!(
                "Could not route to /zones/{zone_id}, perhaps your object identifier is invalid?"
            ),
        )
    })
}

/// Matches a zone-name filter: exact by default, or with the documented operator
/// prefixes (`starts_with:`, `ends_with:`, `contains:`, `not_equal:`, `equal:`).
fn name_matches(filter: &str, name: &str) -> bool {
    let filter = filter.to_ascii_lowercase();
    if let Some(v) = filter.strip_prefix("starts_with:") {
        name.starts_with(v)
    } else if let Some(v) = filter.strip_prefix("ends_with:") {
        name.ends_with(v)
    } else if let Some(v) = filter.strip_prefix("contains:") {
        name.contains(v)
    } else if let Some(v) = filter.strip_prefix("not_equal:") {
        name != v
    } else {
        name == filter.strip_prefix("equal:").unwrap_or(&filter)
    }
}

/// `GET /zones?name=&status=&account.id=&page=&per_page=`.
pub(crate) async fn list(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    let items = sim
        .zones
        .iter()
        .filter(|z| {
            params
                .non_empty("name")
                .is_none_or(|f| name_matches(f, &z.name))
        })
        .filter(|_| params.non_empty("status").is_none_or(|s| s == "active"))
        .filter(|_| {
            params
                .non_empty("account.id")
                .is_none_or(|a| a == sim.opts.account_id)
        })
        .map(|z| render(z, &sim))
        .collect();
    paginate(items, &params, PageSpec::ZONES, sim.opts.page_cap)
}

/// `GET /zones/{zone_id}`.
pub(crate) async fn get_one(State(app): State<App>, Path(zone_id): Path<String>) -> ApiResult {
    let sim = app.lock();
    let zone = find(&sim, &zone_id)?;
    ok(render(zone, &sim))
}
