//! The layer in front of every API request: the OpenAPI check, the global latency
//! ([`super::SimOptions::latency_ms`]), injected faults and latency, bearer
//! authentication, the rate limit, and the request log with each request's start and
//! end. Hook requests (`/__sim/...`) bypass it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::audit;
use super::errors::{codes, ApiError};
use super::model::{App, Fault, LogEntry};
use super::openapi::{self, ApiRequest, Part, Rejection, SchemaViolation, API_PREFIX};
use super::rate_limit::{self, Admission};

/// Largest request body the OpenAPI check reads (bigger ones are a violation).
const MAX_BODY: usize = 16 << 20;

/// Microseconds on a monotonic clock shared by every simulator in the process (its zero
/// is the first reading): the start and end of each logged request.
pub(crate) fn clock_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Whether `path` is a test hook rather than an API path.
pub(crate) fn is_hook_path(path: &str) -> bool {
    path == "/__sim" || path.starts_with("/__sim/")
}

/// Parses a `POST /__sim/faults` body.
pub(crate) fn parse_fault(body: &Map<String, Value>) -> Result<Fault, String> {
    let opt_str = |k: &str| -> Result<Option<String>, String> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{k}: must be a string or null")),
        }
    };
    let opt_u64 = |k: &str| -> Result<Option<u64>, String> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{k}: must be a non-negative integer or null")),
        }
    };
    let status = opt_u64("status")?;
    if let Some(s) = status {
        if !(400..=599).contains(&s) {
            return Err("status: must be an HTTP error status (e.g. 429, 500, 502, 503)".into());
        }
    }
    let latency_ms = opt_u64("latency_ms")?;
    let after_ms = opt_u64("after_ms")?;
    if status.is_none() && latency_ms.is_none() && after_ms.is_none() {
        return Err("give a status, a latency_ms, an after_ms, or a combination".into());
    }
    let count = opt_u64("count")?.unwrap_or(1);
    if count == 0 {
        return Err("count: must be at least 1".into());
    }
    let code = match body.get("code") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or("code: must be an integer or null")?),
    };
    Ok(Fault {
        method: opt_str("method")?.map(|m| m.to_ascii_uppercase()),
        path_contains: opt_str("path_contains")?,
        status: status.map(|s| s as u16),
        retry_after: opt_u64("retry_after")?,
        remaining: u32::try_from(count).unwrap_or(u32::MAX),
        code,
        latency_ms,
        after_ms,
        commit: match body.get("commit") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().ok_or("commit: must be true or false")?,
        },
    })
}

/// Consumes one use of the first queued fault matching the request.
fn take_fault(app: &App, method: &str, target: &str) -> Option<Fault> {
    let mut sim = app.lock();
    let i = sim.faults.iter().position(|f| {
        f.method.as_deref().is_none_or(|m| m == method)
            && f.path_contains
                .as_deref()
                .is_none_or(|p| target.contains(p))
    })?;
    let fault = sim.faults[i].clone();
    sim.faults[i].remaining -= 1;
    if sim.faults[i].remaining == 0 {
        sim.faults.remove(i);
    }
    Some(fault)
}

fn fault_response(fault: &Fault, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (default_code, message) = if status == StatusCode::TOO_MANY_REQUESTS {
        (
            codes::RATE_LIMITED,
            "Rate limited: please wait and consider throttling your request speed",
        )
    } else {
        (codes::INTERNAL, "Internal error")
    };
    let mut response =
        ApiError::new(status, fault.code.unwrap_or(default_code), message).into_response();
    if let Some(secs) = fault.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The bearer token the request presents.
fn bearer(req: &Request) -> Option<String> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
}

fn authorized(app: &App, req: &Request) -> bool {
    let presented = bearer(req);
    let sim = app.lock();
    presented.is_some_and(|t| !t.is_empty() && t == sim.opts.api_token)
}

/// Buffers the body, checks the request against the OpenAPI document and rebuilds it.
async fn check_openapi(req: Request) -> (Request, Result<(), Rejection>) {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let v = SchemaViolation {
                method: parts.method.as_str().to_owned(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                operation_id: None,
                part: Part::Body,
                field: String::new(),
                rule: "body-size".into(),
                message: format!(
                    "the request body could not be read (limit {MAX_BODY} bytes): {e}"
                ),
            };
            return (
                Request::from_parts(parts, Body::empty()),
                Err(Rejection::Violation(Box::new(v))),
            );
        }
    };
    let verdict = openapi::document()
        .map_err(Rejection::CannotJudge)
        .and_then(|doc| {
            doc.validate(&ApiRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                content_type: parts
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                body: &bytes,
            })
        })
        .map(|_| ());
    (Request::from_parts(parts, Body::from(bytes)), verdict)
}

/// How a rejected request is answered: like Cloudflare answers a malformed request.
fn rejection_response(r: &Rejection) -> Response {
    match r {
        Rejection::Violation(v) => match (v.part, v.rule.as_str()) {
            (Part::Operation, "method") => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "Method not allowed for this route",
            )
            .into_response(),
            (Part::Operation, _) => ApiError::no_route().into_response(),
            (_, "json") => {
                ApiError::bad_request(codes::MALFORMED_JSON, v.message.clone()).into_response()
            }
            _ => ApiError::bad_request(
                codes::SCHEMA_VIOLATION,
                format!("Invalid request: {} (schema rule: {})", v.message, v.rule),
            )
            .into_response(),
        },
        Rejection::CannotJudge(why) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!(
                "the simulator could not check the request against the OpenAPI document: {why}"
            ),
        )
        .into_response(),
    }
}

/// The middleware: OpenAPI check → fault → auth → rate limit → handler, then log the outcome. A
/// violation is recorded (and logged) even when a fault or a bad token decides the answer.
pub(crate) async fn api_layer(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_hook_path(&path) {
        return next.run(req).await;
    }
    let started_us = clock_us();
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let (validate, latency_ms) = {
        let sim = app.lock();
        (sim.opts.validate_openapi, sim.opts.latency_ms)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let under_api = path == API_PREFIX || path.starts_with(&format!("{API_PREFIX}/"));
    let (req, verdict) = if validate && under_api {
        check_openapi(req).await
    } else {
        (req, Ok(()))
    };
    let rejection = verdict.err();
    match &rejection {
        Some(Rejection::Violation(v)) => {
            tracing::warn!(
                %method, %path, operation = v.operation_id.as_deref().unwrap_or("-"),
                part = ?v.part, field = %v.field, rule = %v.rule,
                "sim: request rejected by Cloudflare's OpenAPI document: {}", v.message
            );
            app.lock().violations.record(SchemaViolation::clone(v));
        }
        Some(Rejection::CannotJudge(why)) => {
            tracing::error!(%method, %path, "sim: OpenAPI check failed: {why}");
        }
        None => {}
    }
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let audit_before = audit::audited(&method, user_agent.as_deref())
        .then(|| audit::object_before(&app.lock(), &path));
    let fault = take_fault(&app, &method, &target);
    if let Some(ms) = fault.as_ref().and_then(|f| f.latency_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = match fault.as_ref().and_then(|f| f.status.map(|s| (f, s))) {
        Some((f, status)) if f.commit && rejection.is_none() && authorized(&app, &req) => {
            // The change lands; the answer the caller gets is the error.
            let _applied = next.run(req).await;
            fault_response(f, status)
        }
        Some((f, status)) => fault_response(f, status),
        None if !authorized(&app, &req) => ApiError::auth().into_response(),
        None => match rate_limit::admit(&app, &bearer(&req).unwrap_or_default()) {
            Admission::Refused(refused) => refused,
            Admission::Admitted(headers) => {
                let mut response = match &rejection {
                    Some(r) => rejection_response(r),
                    None => next.run(req).await,
                };
                response.headers_mut().extend(headers);
                response
            }
        },
    };
    if let Some(ms) = fault.as_ref().and_then(|f| f.after_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "sim: api request");
    let violation = match rejection {
        Some(Rejection::Violation(v)) => Some(v.message),
        _ => None,
    };
    if let Some(before) = audit_before {
        app.lock().audit.push(audit::AuditEntry {
            method: method.clone(),
            path: path.clone(),
            status,
            before,
        });
    }
    app.lock().requests.record(LogEntry {
        method,
        path,
        query,
        status,
        violation,
        started_us,
        ended_us: clock_us(),
    });
    response
}
