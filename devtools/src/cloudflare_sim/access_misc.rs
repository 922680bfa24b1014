//! The smaller Access collections: identity providers, the organization, tags.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::envelope::{ok, paginate, PageSpec};
use super::errors::{codes, ApiError, ApiResult};
use super::input::{json_object, Fields, Params};
use super::model::{App, Idp, Sim, Tag};
use super::util::now_rfc3339;

/// An identity provider as the API returns it.
pub(crate) fn render_idp(i: &Idp) -> Value {
    json!({
        "id": i.id,
        "name": i.name,
        "type": i.idp_type,
        "config": {},
        "scim_config": {
            "enabled": false,
            "user_deprovision": false,
            "seat_deprovision": false,
            "group_member_deprovision": false,
        },
    })
}

/// A tag as the API returns it.
pub(crate) fn render_tag(t: &Tag, sim: &Sim) -> Value {
    let app_count = sim.apps.iter().filter(|a| a.tags.contains(&t.name)).count();
    json!({
        "name": t.name,
        "app_count": app_count,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

/// `GET /access/identity_providers`.
pub(crate) async fn list_idps(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let items = sim.idps.iter().map(render_idp).collect();
    paginate(items, &params, PageSpec::ACCESS, sim.opts.page_cap)
}

/// `GET /access/identity_providers/{id}`.
pub(crate) async fn get_idp(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let idp = sim
        .idps
        .iter()
        .find(|i| i.id.eq_ignore_ascii_case(&id))
        .ok_or_else(ApiError::access_not_found)?;
    ok(render_idp(idp))
}

/// `GET /access/organizations` → the team's `auth_domain`.
pub(crate) async fn get_organization(
    State(app): State<App>,
    Path(account_id): Path<String>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let team = &sim.opts.team_name;
    ok(json!({
        "name": team,
        "auth_domain": format!("{team}.cloudflareaccess.com"),
        "login_design": {},
        "is_ui_read_only": false,
        "ui_read_only_toggle_reason": null,
        "user_seat_expiration_inactive_time": null,
        "auto_redirect_to_identity": false,
        "allow_authenticate_via_warp": false,
        "warp_auth_session_duration": null,
        "session_duration": "24h",
        "custom_pages": {},
        "created_at": sim.org_created_at,
        "updated_at": sim.org_created_at,
    }))
}

fn invalid(msg: String) -> ApiError {
    ApiError::access_invalid(msg)
}

fn tag_index(sim: &Sim, name: &str) -> Result<usize, ApiError> {
    sim.tags
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(ApiError::access_not_found)
}

/// `GET /access/tags`.
pub(crate) async fn list_tags(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let items = sim.tags.iter().map(|t| render_tag(t, &sim)).collect();
    paginate(items, &params, PageSpec::ACCESS, sim.opts.page_cap)
}

/// `POST /access/tags` `{name}`; an existing name → HTTP 409, code 12131 (unverified).
pub(crate) async fn create_tag(
    State(app): State<App>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let body = json_object(&body)?;
    let name = Fields::new(&body, invalid)
        .req_str("name")?
        .trim()
        .to_owned();
    if sim.tags.iter().any(|t| t.name == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::ACCESS_CONFLICT,
            format!("access.api.error.conflict: tag {name:?} already exists"),
        ));
    }
    let now = now_rfc3339();
    let tag = Tag {
        name,
        created_at: now.clone(),
        updated_at: now,
    };
    let out = render_tag(&tag, &sim);
    sim.tags.push(tag);
    ok(out)
}

/// `GET /access/tags/{tag_name}`.
pub(crate) async fn get_tag(
    State(app): State<App>,
    Path((account_id, name)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = tag_index(&sim, &name)?;
    ok(render_tag(&sim.tags[i], &sim))
}

/// `DELETE /access/tags/{tag_name}` → `{name}`; refused (400, 12130, unverified)
/// while an app carries the tag.
pub(crate) async fn delete_tag(
    State(app): State<App>,
    Path((account_id, name)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = tag_index(&sim, &name)?;
    let users = sim.apps.iter().filter(|a| a.tags.contains(&name)).count();
    if users > 0 {
        return Err(ApiError::access_invalid(format!(
            "tag is in use by {users} application(s)"
        )));
    }
    let removed = sim.tags.remove(i);
    ok(json!({ "name": removed.name }))
}
