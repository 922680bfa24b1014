//! Access applications (`/accounts/{account_id}/access/apps`).

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::access_policies::render_policy;
use super::envelope::{ok, paginate, PageSpec};
use super::errors::{codes, ApiError, ApiResult};
use super::input::{json_object, Fields, Params};
use super::model::{AccessApp, App, Sim};
use super::server_shapes;
use super::util::{hex, is_go_duration, now_rfc3339, random_bytes, uuid};

/// Optional, documented app fields that are stored and echoed back as sent.
const EXTRAS: &[&str] = &[
    "allow_authenticate_via_warp",
    "allow_iframe",
    "cors_headers",
    "custom_deny_message",
    "custom_deny_url",
    "custom_non_identity_deny_url",
    "custom_pages",
    "enable_binding_cookie",
    "http_only_cookie_attribute",
    "logo_url",
    "options_preflight_bypass",
    "path_cookie_attribute",
    "read_service_tokens_from_header",
    "same_site_cookie_attribute",
    "service_auth_401_redirect",
    "skip_app_launcher_login_page",
    "skip_interstitial",
];

fn invalid(msg: String) -> ApiError {
    ApiError::access_invalid(msg)
}

fn already_exists() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::ACCESS_APP_EXISTS,
        "access.api.error.application_already_exists",
    )
}

/// Public hostnames (domain and public destination URIs), normalised for comparison.
fn public_hosts(domain: &str, destinations: &[Value]) -> HashSet<String> {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    let mut set: HashSet<String> = destinations
        .iter()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some("public"))
        .filter_map(|d| d.get("uri").and_then(Value::as_str))
        .map(norm)
        .collect();
    set.insert(norm(domain));
    set
}

fn public_uris(destinations: &[Value]) -> Vec<Value> {
    destinations
        .iter()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some("public"))
        .filter_map(|d| d.get("uri").cloned())
        .collect()
}

/// The app as the API returns it, with linked policies expanded.
pub(crate) fn render(a: &AccessApp, sim: &Sim) -> Value {
    let mut links = a.policies.clone();
    links.sort_by_key(|(_, precedence)| *precedence);
    let policies: Vec<Value> = links
        .iter()
        .filter_map(|(id, precedence)| {
            let p = sim.policies.iter().find(|p| p.id == *id)?;
            let mut v = render_policy(p, sim);
            v.as_object_mut()?
                .insert("precedence".into(), json!(precedence));
            Some(v)
        })
        .collect();
    let shapes = sim.opts.server_shapes;
    let (domain, destinations, session_duration, tags) = if shapes {
        (
            server_shapes::hostname(&a.domain),
            server_shapes::destinations(&a.destinations),
            server_shapes::go_duration(&a.session_duration),
            server_shapes::sorted(&a.tags),
        )
    } else {
        (
            a.domain.clone(),
            a.destinations.clone(),
            a.session_duration.clone(),
            a.tags.clone(),
        )
    };
    let mut v = json!({
        "id": a.id,
        "uid": a.id,
        "aud": a.aud,
        "name": a.name,
        "domain": domain,
        "type": a.app_type,
        "self_hosted_domains": public_uris(&destinations),
        "destinations": destinations,
        "session_duration": session_duration,
        "allowed_idps": a.allowed_idps,
        "auto_redirect_to_identity": a.auto_redirect_to_identity,
        "app_launcher_visible": a.app_launcher_visible,
        "enable_binding_cookie": false,
        "http_only_cookie_attribute": true,
        "options_preflight_bypass": false,
        "service_auth_401_redirect": false,
        "skip_interstitial": false,
        "tags": tags,
        "policies": policies,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    });
    let obj = v.as_object_mut().expect("object literal");
    if shapes {
        for (k, val) in server_shapes::app_server_fields() {
            obj.insert(k, val);
        }
    }
    for (k, val) in &a.extras {
        obj.insert(k.clone(), val.clone());
    }
    v
}

/// A validated app body (everything but id, aud and timestamps).
struct AppInput {
    name: String,
    domain: String,
    app_type: String,
    destinations: Vec<Value>,
    session_duration: String,
    allowed_idps: Vec<String>,
    auto_redirect_to_identity: bool,
    app_launcher_visible: bool,
    tags: Vec<String>,
    policies: Vec<(String, i64)>,
    extras: Map<String, Value>,
}

fn parse_destinations(f: &Fields) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(items) = f.array("destinations")? else {
        return Ok(None);
    };
    for (i, d) in items.iter().enumerate() {
        let field = format!("destinations[{i}]");
        let obj = d
            .as_object()
            .ok_or_else(|| f.error(&field, "must be an object"))?;
        let df = Fields::new(obj, invalid);
        match df.str("type")?.unwrap_or("public") {
            "public" => {
                let uri = df
                    .str("uri")?
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| f.error(&format!("{field}.uri"), "is required"))?;
                if uri.contains("://") {
                    return Err(f.error(&format!("{field}.uri"), "must not include a scheme"));
                }
            }
            "private" => {}
            other => {
                return Err(f.error(
                    &format!("{field}.type"),
                    format!("{other:?} is not \"public\" or \"private\""),
                ))
            }
        }
    }
    Ok(Some(items.clone()))
}

fn parse_policy_links(sim: &Sim, f: &Fields) -> Result<Vec<(String, i64)>, ApiError> {
    let Some(items) = f.array("policies")? else {
        return Ok(Vec::new());
    };
    let mut links: Vec<(String, i64)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("policies[{i}]");
        let (id, precedence) = match item {
            Value::String(id) => (id.clone(), None),
            Value::Object(obj) => {
                let pf = Fields::new(obj, invalid);
                let Some(id) = pf.str("id")? else {
                    return Err(f.error(
                        &field,
                        "inline (app-scoped) policies are not supported by the simulator; link a reusable policy by id",
                    ));
                };
                (id.to_owned(), pf.int("precedence")?)
            }
            _ => return Err(f.error(&field, "must be a policy id or {id, precedence}")),
        };
        let Some(policy) = sim.policies.iter().find(|p| p.id.eq_ignore_ascii_case(&id)) else {
            return Err(f.error(&format!("{field}.id"), format!("no reusable policy {id:?}")));
        };
        if links.iter().any(|(p, _)| *p == policy.id) {
            return Err(f.error(&field, format!("policy {id:?} is linked twice")));
        }
        let precedence = precedence.unwrap_or(i as i64 + 1);
        if precedence < 1 {
            return Err(f.error(&format!("{field}.precedence"), "must be at least 1"));
        }
        if links.iter().any(|(_, p)| *p == precedence) {
            return Err(f.error(
                &format!("{field}.precedence"),
                format!("precedence {precedence} is used twice; precedences must be unique"),
            ));
        }
        links.push((policy.id.clone(), precedence));
    }
    Ok(links)
}

fn parse_app(sim: &Sim, body: &Map<String, Value>) -> Result<AppInput, ApiError> {
    let f = Fields::new(body, invalid);
    let app_type = f.req_str("type")?.to_owned();
    if app_type != "self_hosted" {
        return Err(f.error(
            "type",
            format!("{app_type:?} is not supported by the simulator (only \"self_hosted\")"),
        ));
    }
    let destinations = parse_destinations(&f)?;
    let first_public = destinations.as_deref().and_then(|d| {
        public_uris(d)
            .first()
            .and_then(|u| u.as_str().map(str::to_owned))
    });
    let domain = match f.str("domain")? {
        Some(d) if !d.trim().is_empty() => d.trim().to_owned(),
        _ => first_public
            .ok_or_else(|| f.error("domain", "is required for self_hosted applications"))?,
    };
    if domain.contains("://") || domain.contains(char::is_whitespace) {
        return Err(f.error(
            "domain",
            format!("{domain:?} must be a hostname (and optional path), without a scheme"),
        ));
    }
    let destinations =
        destinations.unwrap_or_else(|| vec![json!({"type": "public", "uri": domain})]);
    let name = f.str("name")?.unwrap_or(&domain).to_owned();
    let session_duration = f.str("session_duration")?.unwrap_or("24h").to_owned();
    if !is_go_duration(&session_duration) {
        return Err(f.error(
            "session_duration",
            format!("{session_duration:?} is not a duration such as 24h or 30m"),
        ));
    }
    let allowed_idps = f.str_array("allowed_idps")?.unwrap_or_default();
    for (i, id) in allowed_idps.iter().enumerate() {
        if !sim.idps.iter().any(|idp| idp.id == *id) {
            return Err(f.error(
                &format!("allowed_idps[{i}]"),
                format!("no identity provider {id:?}"),
            ));
        }
    }
    let auto_redirect_to_identity = f.bool("auto_redirect_to_identity")?.unwrap_or(false);
    let effective_idps = if allowed_idps.is_empty() {
        sim.idps.len()
    } else {
        allowed_idps.len()
    };
    if auto_redirect_to_identity && effective_idps != 1 {
        return Err(f.error(
            "auto_redirect_to_identity",
            "requires exactly one identity provider in allowed_idps",
        ));
    }
    let tags = f.str_array("tags")?.unwrap_or_default();
    for (i, tag) in tags.iter().enumerate() {
        if !sim.tags.iter().any(|t| t.name == *tag) {
            return Err(f.error(
                &format!("tags[{i}]"),
                format!("no Access tag {tag:?}; create it with POST /access/tags first"),
            ));
        }
    }
    let policies = parse_policy_links(sim, &f)?;
    let extras = EXTRAS
        .iter()
        .filter_map(|k| f.raw(k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Ok(AppInput {
        name,
        domain,
        app_type,
        destinations,
        session_duration,
        allowed_idps,
        auto_redirect_to_identity,
        app_launcher_visible: f.bool("app_launcher_visible")?.unwrap_or(true),
        tags,
        policies,
        extras,
    })
}

/// 409/11010 if another app already serves one of `input`'s public hostnames.
fn check_domain_clash(sim: &Sim, input: &AppInput, self_id: Option<&str>) -> Result<(), ApiError> {
    let mine = public_hosts(&input.domain, &input.destinations);
    let clash = sim
        .apps
        .iter()
        .filter(|a| Some(a.id.as_str()) != self_id)
        .any(|a| !public_hosts(&a.domain, &a.destinations).is_disjoint(&mine));
    if clash {
        Err(already_exists())
    } else {
        Ok(())
    }
}

fn app_index(sim: &Sim, id: &str) -> Result<usize, ApiError> {
    sim.apps
        .iter()
        .position(|a| a.id.eq_ignore_ascii_case(id) || a.aud == id)
        .ok_or_else(ApiError::access_not_found)
}

fn text_match(have: &str, want: &str, exact: bool) -> bool {
    let (have, want) = (have.to_lowercase(), want.to_lowercase());
    if exact {
        have == want
    } else {
        have.contains(&want)
    }
}

/// `GET /access/apps` with `name`, `domain`, `aud`, `exact`, `search`, `page`, `per_page`.
pub(crate) async fn list(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let exact = params.flag("exact").unwrap_or(false);
    let items = sim
        .apps
        .iter()
        .filter(|a| {
            params
                .non_empty("name")
                .is_none_or(|n| text_match(&a.name, n, exact))
        })
        .filter(|a| {
            params.non_empty("domain").is_none_or(|d| {
                public_hosts(&a.domain, &a.destinations)
                    .iter()
                    .any(|h| text_match(h, d.trim_end_matches('/'), exact))
            })
        })
        .filter(|a| {
            params
                .non_empty("aud")
                .is_none_or(|x| text_match(&a.aud, x, exact))
        })
        .filter(|a| {
            params
                .non_empty("search")
                .is_none_or(|s| text_match(&a.name, s, false) || text_match(&a.domain, s, false))
        })
        .map(|a| render(a, &sim))
        .collect();
    paginate(items, &params, PageSpec::ACCESS, sim.opts.page_cap)
}

/// `POST /access/apps`.
pub(crate) async fn create(
    State(app): State<App>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let input = parse_app(&sim, &json_object(&body)?)?;
    check_domain_clash(&sim, &input, None)?;
    let now = now_rfc3339();
    let access_app = AccessApp {
        id: uuid(),
        aud: hex(&random_bytes(32)),
        name: input.name,
        domain: input.domain,
        app_type: input.app_type,
        destinations: input.destinations,
        session_duration: input.session_duration,
        allowed_idps: input.allowed_idps,
        auto_redirect_to_identity: input.auto_redirect_to_identity,
        app_launcher_visible: input.app_launcher_visible,
        tags: input.tags,
        policies: input.policies,
        extras: input.extras,
        created_at: now.clone(),
        updated_at: now,
    };
    sim.apps.push(access_app);
    let out = render(sim.apps.last().expect("just pushed"), &sim);
    ok(out)
}

/// `GET /access/apps/{app_id}` (the id or the aud).
pub(crate) async fn get_one(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = app_index(&sim, &id)?;
    ok(render(&sim.apps[i], &sim))
}

/// `PUT /access/apps/{app_id}`: replaces the app (id, aud, created_at kept).
pub(crate) async fn put(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = app_index(&sim, &id)?;
    let input = parse_app(&sim, &json_object(&body)?)?;
    let self_id = sim.apps[i].id.clone();
    check_domain_clash(&sim, &input, Some(&self_id))?;
    let a = &mut sim.apps[i];
    a.name = input.name;
    a.domain = input.domain;
    a.app_type = input.app_type;
    a.destinations = input.destinations;
    a.session_duration = input.session_duration;
    a.allowed_idps = input.allowed_idps;
    a.auto_redirect_to_identity = input.auto_redirect_to_identity;
    a.app_launcher_visible = input.app_launcher_visible;
    a.tags = input.tags;
    a.policies = input.policies;
    a.extras = input.extras;
    a.updated_at = now_rfc3339();
    ok(render(&sim.apps[i], &sim))
}

/// `DELETE /access/apps/{app_id}` → `{id}`.
pub(crate) async fn delete(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = app_index(&sim, &id)?;
    let removed = sim.apps.remove(i);
    ok(json!({ "id": removed.id }))
}
