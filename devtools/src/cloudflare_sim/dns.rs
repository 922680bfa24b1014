//! `/zones/{zone_id}/dns_records`: list with filters, create, get, PUT, PATCH, delete.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::{json, Map, Value};

use super::envelope::{ok, paginate, PageSpec};
use super::errors::{codes, ApiError, ApiResult};
use super::input::{json_object, Fields, Params};
use super::model::{App, DnsRecord, Sim, Zone};
use super::util::{hex_id, now_rfc3339};
use super::zones;

/// Record types the simulator accepts.
const TYPES: &[&str] = &["A", "AAAA", "CNAME", "TXT", "MX", "NS"];
/// Comment length limit on the Free plan.
const COMMENT_MAX: usize = 100;
/// Tags per record.
const TAGS_MAX: usize = 20;
/// Per-record settings: `flatten_cname` (CNAME only) and `ipv4_only` / `ipv6_only`
/// (proxied records). Cloudflare documents them as `settings` in record create, PUT and
/// PATCH bodies: `dns/cname-flattening/set-up-cname-flattening` ("settings":
/// {"flatten_cname": true}) and the Terraform/Pulumi `DnsRecord.settings` (ipv4_only,
/// ipv6_only), generated from the current API schema.
const SETTINGS: &[&str] = &["flatten_cname", "ipv4_only", "ipv6_only"];

fn field_err(msg: String) -> ApiError {
    ApiError::bad_request(codes::DNS_BAD_FIELD, msg)
}

fn bad(code: i64, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, msg)
}

/// The record object as Cloudflare returns it (`shapes`: content lower-cased and a
/// CNAME's `settings` spelled out, as the real API answers).
pub(crate) fn render(r: &DnsRecord, zone_name: &str, shapes: bool) -> Value {
    let content = if shapes && r.rtype != "TXT" {
        r.content.to_ascii_lowercase()
    } else {
        r.content.clone()
    };
    let mut settings = if shapes && r.rtype == "CNAME" {
        json!({"flatten_cname": false})
    } else {
        json!({})
    };
    if let Some(obj) = settings.as_object_mut() {
        obj.extend(r.settings.clone());
    }
    let mut v = json!({
        "id": r.id,
        "zone_id": r.zone_id,
        "zone_name": zone_name,
        "name": r.name,
        "type": r.rtype,
        "content": content,
        "proxiable": proxiable(&r.rtype),
        "proxied": r.proxied,
        "ttl": r.ttl,
        "settings": settings,
        "meta": {
            "auto_added": false,
            "managed_by_apps": false,
            "managed_by_argo_tunnel": false,
            "source": "primary",
        },
        "comment": r.comment,
        "tags": r.tags,
        "created_on": r.created_on,
        "modified_on": r.modified_on,
    });
    let obj = v.as_object_mut().expect("object literal");
    if let Some(at) = &r.comment_modified_on {
        obj.insert("comment_modified_on".into(), json!(at));
    }
    if let Some(at) = &r.tags_modified_on {
        obj.insert("tags_modified_on".into(), json!(at));
    }
    if let Some(p) = r.priority {
        obj.insert("priority".into(), json!(p));
    }
    v
}

fn proxiable(rtype: &str) -> bool {
    matches!(rtype, "A" | "AAAA" | "CNAME")
}

/// A validated create/update request.
struct RecordInput {
    rtype: String,
    name: String,
    content: String,
    proxied: bool,
    ttl: i64,
    priority: Option<i64>,
    comment: Option<String>,
    tags: Vec<String>,
    settings: Map<String, Value>,
}

fn valid_hostname(name: &str, allow_wildcard: bool) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').enumerate().all(|(i, label)| {
        (allow_wildcard && i == 0 && label == "*")
            || (!label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

/// Full, lowercase record name inside `zone` (`@` is the apex).
fn normalize_name(raw: &str, zone: &Zone) -> Result<String, ApiError> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = if name == "@" { zone.name.clone() } else { name };
    if !valid_hostname(&name, true) {
        return Err(bad(
            codes::DNS_BAD_NAME,
            format!("DNS name is invalid. (name: {raw:?})"),
        ));
    }
    if name != zone.name && !name.ends_with(&format!(".{}", zone.name)) {
        return Err(bad(
            codes::DNS_BAD_NAME,
            format!("name: {raw:?} is not inside the zone {}", zone.name),
        ));
    }
    Ok(name)
}

fn validate_content(rtype: &str, content: &str) -> Result<String, ApiError> {
    let err = |what: &str| {
        bad(
            codes::DNS_BAD_CONTENT,
            format!("Content for {rtype} record {what}. (content: {content:?})"),
        )
    };
    match rtype {
        "A" => content
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| err("must be a valid IPv4 address")),
        "AAAA" => content
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| err("must be a valid IPv6 address")),
        "CNAME" | "NS" | "MX" => {
            let host = content.trim().trim_end_matches('.');
            if valid_hostname(host, false) {
                Ok(host.to_owned())
            } else {
                Err(err("is invalid: it must be a hostname"))
            }
        }
        _ => {
            if content.is_empty() || content.len() > 2048 {
                Err(err("must be between 1 and 2048 characters"))
            } else {
                Ok(content.to_owned())
            }
        }
    }
}

fn validate_comment(comment: &str) -> Result<Option<String>, ApiError> {
    let len = comment.chars().count();
    if len > COMMENT_MAX {
        return Err(bad(
            codes::DNS_BAD_COMMENT,
            format!(
                "DNS record comment is too long: {len} characters, the limit is {COMMENT_MAX} on this zone's plan (comment)"
            ),
        ));
    }
    if comment.contains(['\n', '\r']) {
        return Err(bad(
            codes::DNS_BAD_COMMENT,
            "DNS record comment must not contain newlines (comment)",
        ));
    }
    Ok((!comment.is_empty()).then(|| comment.to_owned()))
}

fn validate_tags(tags: Vec<String>) -> Result<Vec<String>, ApiError> {
    if tags.len() > TAGS_MAX {
        return Err(bad(
            codes::DNS_BAD_TAGS,
            format!("tags: at most {TAGS_MAX} tags are allowed per record"),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok || value.chars().count() > 100 {
            return Err(bad(
                codes::DNS_BAD_TAGS,
                format!(
                    "tags[{i}]: {tag:?} is not a valid tag (name: letters, digits, '-' or '_', at most 32; value at most 100 characters)"
                ),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(bad(
                codes::DNS_BAD_TAGS,
                format!("tags[{i}]: duplicate tag name {name:?}"),
            ));
        }
        seen.push(lower);
    }
    Ok(tags)
}

fn validate_settings(rtype: &str, settings: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in settings {
        if !SETTINGS.contains(&key.as_str()) {
            return Err(field_err(format!(
                "settings.{key}: unknown setting (known: {})",
                SETTINGS.join(", ")
            )));
        }
        if !value.is_boolean() {
            return Err(field_err(format!("settings.{key}: must be true or false")));
        }
        if key == "flatten_cname" && rtype != "CNAME" && value == &Value::Bool(true) {
            return Err(field_err(format!(
                "settings.flatten_cname: only CNAME records can be flattened, not {rtype}"
            )));
        }
    }
    Ok(())
}

/// Reads a create/PUT body (`base` = None) or a PATCH body (`base` = the record).
fn parse_input(
    body: &Map<String, Value>,
    zone: &Zone,
    base: Option<&DnsRecord>,
) -> Result<RecordInput, ApiError> {
    let f = Fields::new(body, field_err);
    let rtype = match (f.str("type")?, base) {
        (Some(t), _) => t.trim().to_ascii_uppercase(),
        (None, Some(b)) => b.rtype.clone(),
        (None, None) => return Err(bad(codes::DNS_BAD_TYPE, "type: is required")),
    };
    if !TYPES.contains(&rtype.as_str()) {
        return Err(bad(
            codes::DNS_BAD_TYPE,
            format!(
                "Invalid DNS record type (type: {rtype:?}; the simulator accepts {})",
                TYPES.join(", ")
            ),
        ));
    }
    let name = match (f.str("name")?, base) {
        (Some(n), _) => normalize_name(n, zone)?,
        (None, Some(b)) => b.name.clone(),
        (None, None) => return Err(bad(codes::DNS_BAD_NAME, "name: is required")),
    };
    let content = match (f.str("content")?, base) {
        (Some(c), _) => validate_content(&rtype, c)?,
        (None, Some(b)) => validate_content(&rtype, &b.content)?,
        (None, None) => return Err(bad(codes::DNS_BAD_CONTENT, "content: is required")),
    };
    let proxied = f
        .bool("proxied")?
        .unwrap_or_else(|| base.is_some_and(|b| b.proxied));
    if proxied && !proxiable(&rtype) {
        return Err(bad(
            codes::DNS_NOT_PROXIABLE,
            format!("{rtype} records cannot be proxied (proxied)"),
        ));
    }
    let ttl = f.int("ttl")?.or(base.map(|b| b.ttl)).unwrap_or(1);
    if ttl != 1 && !(60..=86_400).contains(&ttl) {
        return Err(bad(
            codes::DNS_BAD_TTL,
            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic. (ttl)",
        ));
    }
    let ttl = if proxied { 1 } else { ttl };
    let priority = f.int("priority")?.or(base.and_then(|b| b.priority));
    let priority = if rtype == "MX" {
        match priority {
            Some(p) if (0..=65_535).contains(&p) => Some(p),
            _ => {
                return Err(bad(
                    codes::DNS_BAD_FIELD,
                    "priority: MX records need a priority between 0 and 65535",
                ))
            }
        }
    } else {
        None
    };
    let comment = if body.contains_key("comment") {
        match f.str("comment")? {
            Some(c) => validate_comment(c)?,
            None => None,
        }
    } else {
        base.and_then(|b| b.comment.clone())
    };
    let tags = if body.contains_key("tags") {
        validate_tags(f.str_array("tags")?.unwrap_or_default())?
    } else {
        base.map(|b| b.tags.clone()).unwrap_or_default()
    };
    // Like `tags`, a sent `settings` object replaces the record's; PATCH keeps it unsent.
    let settings = match f.object("settings")? {
        Some(s) => s.clone(),
        None => base.map(|b| b.settings.clone()).unwrap_or_default(),
    };
    validate_settings(&rtype, &settings)?;
    Ok(RecordInput {
        rtype,
        name,
        content,
        proxied,
        ttl,
        priority,
        comment,
        tags,
        settings,
    })
}

fn same_content(rtype: &str, a: &str, b: &str) -> bool {
    match rtype {
        "TXT" => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The 81057 / 81053 / 81054 checks against the zone's other records.
fn check_conflicts(
    sim: &Sim,
    zone_id: &str,
    input: &RecordInput,
    self_id: Option<&str>,
) -> Result<(), ApiError> {
    let others: Vec<&DnsRecord> = sim
        .dns
        .iter()
        .filter(|r| r.zone_id == zone_id && r.name == input.name && Some(r.id.as_str()) != self_id)
        .collect();
    if others
        .iter()
        .any(|r| r.rtype == input.rtype && same_content(&r.rtype, &r.content, &input.content))
    {
        return Err(bad(codes::DNS_IDENTICAL, "Record already exists."));
    }
    if input.rtype == "CNAME" && others.iter().any(|r| proxiable(&r.rtype)) {
        return Err(bad(
            codes::DNS_HOST_EXISTS,
            "An A, AAAA, or CNAME record with that host already exists.",
        ));
    }
    if input.rtype != "CNAME" && others.iter().any(|r| r.rtype == "CNAME") {
        return Err(bad(
            codes::DNS_CNAME_EXISTS,
            "A CNAME record with that host already exists.",
        ));
    }
    Ok(())
}

fn record_index(sim: &Sim, zone_id: &str, record_id: &str) -> Result<usize, ApiError> {
    sim.dns
        .iter()
        .position(|r| r.zone_id == zone_id && r.id == record_id)
        .ok_or_else(|| ApiError::not_found(codes::DNS_NOT_FOUND, "Record does not exist."))
}

/// A filter on one text field.
type TextFilter = Box<dyn Fn(&str) -> bool>;

/// Case-insensitive string filters on `key`: the bare key (an alias of `.exact`) and
/// the `.exact/.contains/.startswith/.endswith` variants.
fn text_filters(params: &Params, key: &str) -> Vec<TextFilter> {
    let mut out: Vec<TextFilter> = Vec::new();
    for (suffix, op) in [
        ("", "exact"),
        (".exact", "exact"),
        (".contains", "contains"),
        (".startswith", "startswith"),
        (".endswith", "endswith"),
    ] {
        if let Some(want) = params.non_empty(&format!("{key}{suffix}")) {
            let want = want.to_lowercase();
            out.push(Box::new(move |have: &str| {
                let have = have.to_lowercase();
                match op {
                    "exact" => have == want,
                    "contains" => have.contains(&want),
                    "startswith" => have.starts_with(&want),
                    _ => have.ends_with(&want),
                }
            }));
        }
    }
    out
}

type Pred<'a> = Box<dyn Fn(&DnsRecord) -> bool + 'a>;

fn non_tag_predicates(params: &Params) -> Vec<Pred<'_>> {
    let mut preds: Vec<Pred<'_>> = Vec::new();
    if let Some(t) = params.non_empty("type") {
        let t = t.to_ascii_uppercase();
        preds.push(Box::new(move |r| r.rtype == t));
    }
    for f in text_filters(params, "name") {
        preds.push(Box::new(move |r| f(&r.name)));
    }
    for f in text_filters(params, "content") {
        preds.push(Box::new(move |r| f(&r.content)));
    }
    for f in text_filters(params, "comment") {
        preds.push(Box::new(move |r| r.comment.as_deref().is_some_and(&f)));
    }
    if params.get("comment.present").is_some() {
        preds.push(Box::new(|r| r.comment.is_some()));
    }
    if params.get("comment.absent").is_some() {
        preds.push(Box::new(|r| r.comment.is_none()));
    }
    if let Some(p) = params.flag("proxied") {
        preds.push(Box::new(move |r| r.proxied == p));
    }
    if let Some(s) = params.non_empty("search") {
        let s = s.to_lowercase();
        preds.push(Box::new(move |r| {
            r.name.contains(&s)
                || r.content.to_lowercase().contains(&s)
                || r.comment
                    .as_deref()
                    .is_some_and(|c| c.to_lowercase().contains(&s))
        }));
    }
    preds
}

fn tag_parts(tag: &str) -> (String, String) {
    let (n, v) = tag.split_once(':').unwrap_or((tag, ""));
    (n.to_lowercase(), v.to_lowercase())
}

fn tag_predicates(params: &Params) -> Vec<Pred<'_>> {
    let mut preds: Vec<Pred<'_>> = Vec::new();
    for (key, op) in [
        ("tag", "tag"),
        ("tag.exact", "exact"),
        ("tag.present", "present"),
        ("tag.absent", "absent"),
        ("tag.contains", "contains"),
        ("tag.startswith", "startswith"),
        ("tag.endswith", "endswith"),
    ] {
        let Some(raw) = params.get(key) else { continue };
        let (want_name, want_value) = tag_parts(raw);
        let has_value = raw.contains(':');
        preds.push(Box::new(move |r| {
            let mut tags = r.tags.iter().map(|t| tag_parts(t));
            match op {
                "absent" => !tags.any(|(n, _)| n == want_name),
                "present" => tags.any(|(n, _)| n == want_name),
                "tag" if !has_value => tags.any(|(n, _)| n == want_name),
                "tag" | "exact" => tags.any(|(n, v)| n == want_name && v == want_value),
                "contains" => tags.any(|(n, v)| n == want_name && v.contains(&want_value)),
                "startswith" => tags.any(|(n, v)| n == want_name && v.starts_with(&want_value)),
                _ => tags.any(|(n, v)| n == want_name && v.ends_with(&want_value)),
            }
        }));
    }
    preds
}

fn combine(preds: &[Pred<'_>], any: bool, r: &DnsRecord) -> bool {
    if preds.is_empty() {
        true
    } else if any {
        preds.iter().any(|p| p(r))
    } else {
        preds.iter().all(|p| p(r))
    }
}

fn sort_records(records: &mut [&DnsRecord], params: &Params) {
    let Some(order) = params.non_empty("order") else {
        return;
    };
    match order {
        "type" => records.sort_by(|a, b| a.rtype.cmp(&b.rtype)),
        "name" => records.sort_by(|a, b| a.name.cmp(&b.name)),
        "content" => records.sort_by(|a, b| a.content.cmp(&b.content)),
        "ttl" => records.sort_by_key(|r| r.ttl),
        "proxied" => records.sort_by_key(|r| r.proxied),
        _ => return,
    }
    if params.non_empty("direction") == Some("desc") {
        records.reverse();
    }
}

/// `GET /zones/{zone_id}/dns_records` with Cloudflare's filters.
pub(crate) async fn list(
    State(app): State<App>,
    Path(zone_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = Params::parse(q.as_deref());
    let sim = app.lock();
    let zone = zones::find(&sim, &zone_id)?;
    let plain = non_tag_predicates(&params);
    let tags = tag_predicates(&params);
    let match_any = params.non_empty("match") == Some("any");
    let tag_any = params.non_empty("tag_match") == Some("any");
    let mut records: Vec<&DnsRecord> = sim
        .dns
        .iter()
        .filter(|r| r.zone_id == zone.id)
        .filter(|r| combine(&plain, match_any, r) && combine(&tags, tag_any, r))
        .collect();
    sort_records(&mut records, &params);
    let shapes = sim.opts.server_shapes;
    let items = records
        .iter()
        .map(|r| render(r, &zone.name, shapes))
        .collect();
    paginate(items, &params, PageSpec::DNS, sim.opts.page_cap)
}

/// `POST /zones/{zone_id}/dns_records`.
pub(crate) async fn create(
    State(app): State<App>,
    Path(zone_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut sim = app.lock();
    let zone = zones::find(&sim, &zone_id)?.clone();
    let body = json_object(&body)?;
    let input = parse_input(&body, &zone, None)?;
    check_conflicts(&sim, &zone.id, &input, None)?;
    let now = now_rfc3339();
    let record = DnsRecord {
        id: hex_id(),
        zone_id: zone.id.clone(),
        name: input.name,
        rtype: input.rtype,
        content: input.content,
        proxied: input.proxied,
        ttl: input.ttl,
        priority: input.priority,
        comment_modified_on: input.comment.as_ref().map(|_| now.clone()),
        tags_modified_on: (!input.tags.is_empty()).then(|| now.clone()),
        comment: input.comment,
        tags: input.tags,
        settings: input.settings,
        created_on: now.clone(),
        modified_on: now,
    };
    let out = render(&record, &zone.name, sim.opts.server_shapes);
    sim.dns.push(record);
    ok(out)
}

/// `GET /zones/{zone_id}/dns_records/{record_id}`.
pub(crate) async fn get_one(
    State(app): State<App>,
    Path((zone_id, record_id)): Path<(String, String)>,
) -> ApiResult {
    let sim = app.lock();
    let zone = zones::find(&sim, &zone_id)?;
    let i = record_index(&sim, &zone.id, &record_id)?;
    ok(render(&sim.dns[i], &zone.name, sim.opts.server_shapes))
}

fn update(app: &App, zone_id: &str, record_id: &str, body: &[u8], patch: bool) -> ApiResult {
    let mut sim = app.lock();
    let zone = zones::find(&sim, zone_id)?.clone();
    let i = record_index(&sim, &zone.id, record_id)?;
    let body = json_object(body)?;
    let current = sim.dns[i].clone();
    let input = parse_input(&body, &zone, patch.then_some(&current))?;
    check_conflicts(&sim, &zone.id, &input, Some(record_id))?;
    let now = now_rfc3339();
    let shapes = sim.opts.server_shapes;
    let r = &mut sim.dns[i];
    if r.comment != input.comment {
        r.comment_modified_on = input.comment.as_ref().map(|_| now.clone());
    }
    if r.tags != input.tags {
        r.tags_modified_on = (!input.tags.is_empty()).then(|| now.clone());
    }
    r.name = input.name;
    r.rtype = input.rtype;
    r.content = input.content;
    r.proxied = input.proxied;
    r.ttl = input.ttl;
    r.priority = input.priority;
    r.comment = input.comment;
    r.tags = input.tags;
    r.settings = input.settings;
    r.modified_on = now;
    ok(render(r, &zone.name, shapes))
}

/// `PUT /zones/{zone_id}/dns_records/{record_id}`: full overwrite.
pub(crate) async fn put(
    State(app): State<App>,
    Path((zone_id, record_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    update(&app, &zone_id, &record_id, &body, false)
}

/// `PATCH /zones/{zone_id}/dns_records/{record_id}`: partial update.
pub(crate) async fn patch(
    State(app): State<App>,
    Path((zone_id, record_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    update(&app, &zone_id, &record_id, &body, true)
}

/// `DELETE /zones/{zone_id}/dns_records/{record_id}` → `{"id": ...}`.
pub(crate) async fn delete(
    State(app): State<App>,
    Path((zone_id, record_id)): Path<(String, String)>,
) -> ApiResult {
    let mut sim = app.lock();
    let zone_id = zones::find(&sim, &zone_id)?.id.clone();
    let i = record_index(&sim, &zone_id, &record_id)?;
    let removed = sim.dns.remove(i);
    ok(json!({ "id": removed.id }))
}
