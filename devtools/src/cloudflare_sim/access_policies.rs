//! Reusable Access policies (`/access/policies`) and Access groups (`/access/groups`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::{json, Map, Value};

use super::access_rules::{references_group, validate_rules};
use super::envelope::{ok, paginate, PageSpec};
use super::errors::{ApiError, ApiResult};
use super::input::{json_object, Fields, Params};
use super::model::{App, Group, Policy, Sim};
use super::server_shapes;
use super::util::{is_go_duration, now_rfc3339, uuid};

const DECISIONS: &[&str] = &["allow", "deny", "non_identity", "bypass"];
/// Optional policy fields echoed back as sent.
const POLICY_EXTRAS: &[&str] = &[
    "approval_required",
    "approval_groups",
    "isolation_required",
    "purpose_justification_required",
    "purpose_justification_prompt",
];

fn invalid(msg: String) -> ApiError {
    ApiError::access_invalid(msg)
}

/// A reusable policy as the API returns it.
pub(crate) fn render_policy(p: &Policy, sim: &Sim) -> Value {
    let app_count = sim
        .apps
        .iter()
        .filter(|a| a.policies.iter().any(|(id, _)| *id == p.id))
        .count();
    let (include, exclude, require, session_duration) = if sim.opts.server_shapes {
        (
            server_shapes::rules(&p.include),
            server_shapes::rules(&p.exclude),
            server_shapes::rules(&p.require),
            server_shapes::go_duration(&p.session_duration),
        )
    } else {
        (
            p.include.clone(),
            p.exclude.clone(),
            p.require.clone(),
            p.session_duration.clone(),
        )
    };
    let mut v = json!({
        "id": p.id,
        "name": p.name,
        "decision": p.decision,
        "include": include,
        "exclude": exclude,
        "require": require,
        "session_duration": session_duration,
        "approval_required": false,
        "isolation_required": false,
        "purpose_justification_required": false,
        "reusable": true,
        "app_count": app_count,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    });
    let obj = v.as_object_mut().expect("object literal");
    for (k, val) in &p.extras {
        obj.insert(k.clone(), val.clone());
    }
    if sim.opts.server_shapes {
        obj.retain(|_, val| *val != Value::Bool(false));
    }
    v
}

struct PolicyInput {
    name: String,
    decision: String,
    include: Vec<Value>,
    exclude: Vec<Value>,
    require: Vec<Value>,
    session_duration: String,
    extras: Map<String, Value>,
}

fn parse_policy(sim: &Sim, body: &Map<String, Value>) -> Result<PolicyInput, ApiError> {
    let f = Fields::new(body, invalid);
    let name = f.req_str("name")?.to_owned();
    let decision = f.req_str("decision")?.to_owned();
    if !DECISIONS.contains(&decision.as_str()) {
        return Err(f.error(
            "decision",
            format!("{decision:?} is not one of {}", DECISIONS.join(", ")),
        ));
    }
    let session_duration = f.str("session_duration")?.unwrap_or("24h").to_owned();
    if !is_go_duration(&session_duration) {
        return Err(f.error(
            "session_duration",
            format!("{session_duration:?} is not a duration such as 24h or 30m"),
        ));
    }
    for key in [
        "approval_required",
        "isolation_required",
        "purpose_justification_required",
    ] {
        f.bool(key)?;
    }
    f.str("purpose_justification_prompt")?;
    f.array("approval_groups")?;
    let extras = POLICY_EXTRAS
        .iter()
        .filter_map(|k| f.raw(k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Ok(PolicyInput {
        name,
        decision,
        include: validate_rules(sim, body, "include", true)?,
        exclude: validate_rules(sim, body, "exclude", false)?,
        require: validate_rules(sim, body, "require", false)?,
        session_duration,
        extras,
    })
}

fn policy_index(sim: &Sim, id: &str) -> Result<usize, ApiError> {
    sim.policies
        .iter()
        .position(|p| p.id.eq_ignore_ascii_case(id))
        .ok_or_else(ApiError::access_not_found)
}

/// `GET /access/policies`.
pub(crate) async fn list_policies(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let items = sim
        .policies
        .iter()
        .map(|p| render_policy(p, &sim))
        .collect();
    paginate(items, &params, PageSpec::ACCESS, sim.opts.page_cap)
}

/// `POST /access/policies`.
pub(crate) async fn create_policy(
    State(app): State<App>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let input = parse_policy(&sim, &json_object(&body)?)?;
    let now = now_rfc3339();
    let policy = Policy {
        id: uuid(),
        name: input.name,
        decision: input.decision,
        include: input.include,
        exclude: input.exclude,
        require: input.require,
        session_duration: input.session_duration,
        extras: input.extras,
        created_at: now.clone(),
        updated_at: now,
    };
    let out = render_policy(&policy, &sim);
    sim.policies.push(policy);
    ok(out)
}

/// `GET /access/policies/{policy_id}`.
pub(crate) async fn get_policy(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = policy_index(&sim, &id)?;
    ok(render_policy(&sim.policies[i], &sim))
}

/// `PUT /access/policies/{policy_id}`: replaces the policy.
pub(crate) async fn put_policy(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = policy_index(&sim, &id)?;
    let input = parse_policy(&sim, &json_object(&body)?)?;
    let p = &mut sim.policies[i];
    p.name = input.name;
    p.decision = input.decision;
    p.include = input.include;
    p.exclude = input.exclude;
    p.require = input.require;
    p.session_duration = input.session_duration;
    p.extras = input.extras;
    p.updated_at = now_rfc3339();
    ok(render_policy(&sim.policies[i], &sim))
}

/// `DELETE /access/policies/{policy_id}` → `{id}`. A policy still linked from an
/// app is refused with HTTP 400, code 12130 (unverified: the real status and code
/// are not documented).
pub(crate) async fn delete_policy(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = policy_index(&sim, &id)?;
    let pid = sim.policies[i].id.clone();
    let users = sim
        .apps
        .iter()
        .filter(|a| a.policies.iter().any(|(p, _)| *p == pid))
        .count();
    if users > 0 {
        return Err(ApiError::access_invalid(format!(
            "policy is in use by {users} application(s); remove it from them first"
        )));
    }
    sim.policies.remove(i);
    ok(json!({ "id": pid }))
}

/// An Access group as the API returns it.
pub(crate) fn render_group(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "include": g.include,
        "exclude": g.exclude,
        "require": g.require,
        "is_default": g.is_default,
        "created_at": g.created_at,
        "updated_at": g.updated_at,
    })
}

fn group_index(sim: &Sim, id: &str) -> Result<usize, ApiError> {
    sim.groups
        .iter()
        .position(|g| g.id.eq_ignore_ascii_case(id))
        .ok_or_else(ApiError::access_not_found)
}

type GroupInput = (String, Vec<Value>, Vec<Value>, Vec<Value>, bool);

fn parse_group(sim: &Sim, body: &Map<String, Value>) -> Result<GroupInput, ApiError> {
    let f = Fields::new(body, invalid);
    Ok((
        f.req_str("name")?.to_owned(),
        validate_rules(sim, body, "include", true)?,
        validate_rules(sim, body, "exclude", false)?,
        validate_rules(sim, body, "require", false)?,
        f.bool("is_default")?.unwrap_or(false),
    ))
}

/// `GET /access/groups`.
pub(crate) async fn list_groups(
    State(app): State<App>,
    Path(account_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let items = sim
        .groups
        .iter()
        .filter(|g| params.non_empty("name").is_none_or(|n| g.name == n))
        .map(render_group)
        .collect();
    paginate(items, &params, PageSpec::ACCESS, sim.opts.page_cap)
}

/// `POST /access/groups` `{name, include, exclude?, require?, is_default?}`.
pub(crate) async fn create_group(
    State(app): State<App>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let (name, include, exclude, require, is_default) = parse_group(&sim, &json_object(&body)?)?;
    let now = now_rfc3339();
    let group = Group {
        id: uuid(),
        name,
        include,
        exclude,
        require,
        is_default,
        created_at: now.clone(),
        updated_at: now,
    };
    let out = render_group(&group);
    sim.groups.push(group);
    ok(out)
}

/// `GET /access/groups/{group_id}`.
pub(crate) async fn get_group(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    sim.check_account(&account_id)?;
    let i = group_index(&sim, &id)?;
    ok(render_group(&sim.groups[i]))
}

/// `PUT /access/groups/{group_id}`.
pub(crate) async fn put_group(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = group_index(&sim, &id)?;
    let (name, include, exclude, require, is_default) = parse_group(&sim, &json_object(&body)?)?;
    let g = &mut sim.groups[i];
    g.name = name;
    g.include = include;
    g.exclude = exclude;
    g.require = require;
    g.is_default = is_default;
    g.updated_at = now_rfc3339();
    ok(render_group(g))
}

/// `DELETE /access/groups/{group_id}`; refused (400, 12130, unverified) while a
/// policy or another group references it.
pub(crate) async fn delete_group(
    State(app): State<App>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    sim.check_account(&account_id)?;
    let i = group_index(&sim, &id)?;
    let gid = sim.groups[i].id.clone();
    let used = sim.policies.iter().any(|p| {
        references_group(&p.include, &gid)
            || references_group(&p.exclude, &gid)
            || references_group(&p.require, &gid)
    }) || sim.groups.iter().any(|g| {
        g.id != gid
            && (references_group(&g.include, &gid)
                || references_group(&g.exclude, &gid)
                || references_group(&g.require, &gid))
    });
    if used {
        return Err(ApiError::access_invalid(
            "group is in use by a policy or another group",
        ));
    }
    sim.groups.remove(i);
    ok(json!({ "id": gid }))
}
