//! Error envelopes and the error codes the simulator answers with.
//!
//! Codes marked *verified* come from `shared/reference/cloudflare-api.md` (which cites
//! the issue threads they were seen in). Codes marked *unverified* are the
//! simulator's own choice where no source gives the real one; clients should key on
//! the HTTP status for those, not on the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Error codes used in `errors[].code`.
pub(crate) mod codes {
    /// Verified: "Authentication error" (HTTP 403), bad or missing token.
    pub const AUTH: i64 = 10000;
    /// Verified: "No route for the URI" (HTTP 404).
    pub const NO_ROUTE: i64 = 7003;
    /// Unverified: HTTP 405 on a known path with the wrong method.
    pub const METHOD_NOT_ALLOWED: i64 = 7001;
    /// Unverified (Cloudflare's usual code for it): "Malformed JSON in request body" (HTTP 400).
    pub const MALFORMED_JSON: i64 = 6007;
    /// Unverified, the simulator's own: a request Cloudflare's OpenAPI document rejects
    /// (HTTP 400; the message names the field and the schema rule).
    pub const SCHEMA_VIOLATION: i64 = 10400;
    /// Unverified: invalid `page` / `per_page` values (HTTP 400).
    pub const BAD_PAGINATION: i64 = 1004;
    /// Unverified (from the project brief): HTTP 429 "rate limited"; a fault can override it.
    pub const RATE_LIMITED: i64 = 971;
    /// Unverified (from the project brief): injected 5xx faults, "Internal error".
    pub const INTERNAL: i64 = 10001;

    /// Unverified: unknown zone id (HTTP 404), sent with a "Could not route" message.
    pub const ZONE_NOT_FOUND: i64 = 7003;
    /// Unverified: unknown DNS record id (HTTP 404), "Record does not exist.".
    pub const DNS_NOT_FOUND: i64 = 81044;
    /// Unverified: DNS name missing, malformed or outside the zone (HTTP 400).
    pub const DNS_BAD_NAME: i64 = 9000;
    /// Unverified: DNS record type unsupported (HTTP 400).
    pub const DNS_BAD_TYPE: i64 = 9020;
    /// Unverified: DNS content invalid for its type or missing (HTTP 400).
    pub const DNS_BAD_CONTENT: i64 = 9005;
    /// Unverified: record type cannot be proxied (HTTP 400).
    pub const DNS_NOT_PROXIABLE: i64 = 9004;
    /// Unverified code, verified message: TTL out of range (HTTP 400).
    pub const DNS_BAD_TTL: i64 = 9021;
    /// Unverified: comment too long or with a newline (HTTP 400).
    pub const DNS_BAD_COMMENT: i64 = 9101;
    /// Unverified: malformed tags (HTTP 400).
    pub const DNS_BAD_TAGS: i64 = 9102;
    /// Unverified: any other malformed DNS field, e.g. a wrong JSON type (HTTP 400).
    pub const DNS_BAD_FIELD: i64 = 9001;
    /// Verified: "An A, AAAA, or CNAME record with that host already exists." (HTTP 400).
    pub const DNS_HOST_EXISTS: i64 = 81053;
    /// Verified: "A CNAME record with that host already exists." (HTTP 400).
    pub const DNS_CNAME_EXISTS: i64 = 81054;
    /// Verified: "Record already exists." (HTTP 400).
    pub const DNS_IDENTICAL: i64 = 81057;

    /// Unverified: tunnel (or connector) id not found or already deleted (HTTP 404).
    pub const TUNNEL_NOT_FOUND: i64 = 1003;
    /// Unverified: malformed tunnel request field (HTTP 400).
    pub const TUNNEL_BAD_REQUEST: i64 = 1001;
    /// Verified: "You already have a tunnel with this name" (HTTP 409).
    pub const TUNNEL_NAME_CONFLICT: i64 = 1013;
    /// Verified: "Cannot delete tunnel because it has active connections" (HTTP 400).
    pub const TUNNEL_HAS_CONNECTIONS: i64 = 1022;
    /// Unverified: invalid remote configuration (HTTP 400).
    pub const TUNNEL_BAD_CONFIG: i64 = 1056;

    /// Verified: `access.api.error.application_already_exists` (HTTP 409).
    pub const ACCESS_APP_EXISTS: i64 = 11010;
    /// Seen in third-party code, unverified: `access.api.error.invalid_request` (HTTP 400),
    /// also used for "policy/group/tag still in use".
    pub const ACCESS_INVALID: i64 = 12130;
    /// Seen in third-party code, unverified: `access.api.error.not_found` (HTTP 404).
    pub const ACCESS_NOT_FOUND: i64 = 12135;
    /// Unverified: Access tag name already exists (HTTP 409).
    pub const ACCESS_CONFLICT: i64 = 12131;
}

/// A failed API call: HTTP status plus one `errors[]` entry.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
}

impl ApiError {
    /// Any status, code and message.
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// HTTP 400 with `code`.
    pub fn bad_request(code: i64, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// HTTP 404 with `code`.
    pub fn not_found(code: i64, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// HTTP 403, code 10000 "Authentication error".
    pub fn auth() -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::AUTH, "Authentication error")
    }

    /// HTTP 404, code 7003 "No route for the URI".
    pub fn no_route() -> Self {
        Self::not_found(codes::NO_ROUTE, "No route for the URI")
    }

    /// HTTP 400 `access.api.error.invalid_request: <detail>`.
    pub fn access_invalid(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            codes::ACCESS_INVALID,
            format!("access.api.error.invalid_request: {detail}"),
        )
    }

    /// HTTP 404 `access.api.error.not_found`.
    pub fn access_not_found() -> Self {
        Self::not_found(codes::ACCESS_NOT_FOUND, "access.api.error.not_found")
    }
}

/// The failure envelope as JSON.
pub(crate) fn failure_body(code: i64, message: &str) -> serde_json::Value {
    json!({
        "success": false,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": null,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(failure_body(self.code, &self.message))).into_response()
    }
}

/// Result type of every API handler.
pub(crate) type ApiResult = Result<Response, ApiError>;
