//! Success envelopes and pagination.

use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::errors::{codes, ApiError, ApiResult};
use super::input::Params;

/// `{"success":true,"errors":[],"messages":[],"result":...}`.
pub(crate) fn ok(result: Value) -> ApiResult {
    Ok(Json(json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": result,
    }))
    .into_response())
}

/// Per-endpoint pagination limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSpec {
    /// `per_page` when the caller sends none.
    pub default: u32,
    /// Smallest `per_page` the endpoint allows (smaller values are raised to it).
    pub min: u32,
    /// Largest `per_page` the endpoint allows (larger values are lowered to it).
    pub max: u32,
}

impl PageSpec {
    /// zones: default 20, range 5–50.
    pub const ZONES: Self = Self {
        default: 20,
        min: 5,
        max: 50,
    };
    /// dns_records: default 100, up to 5,000,000 in the spec; 50,000 here.
    pub const DNS: Self = Self {
        default: 100,
        min: 5,
        max: 50_000,
    };
    /// cfd_tunnel: default 20, range 1–1000.
    pub const TUNNELS: Self = Self {
        default: 20,
        min: 1,
        max: 1000,
    };
    /// Access collections: default 25, range 1–1000.
    pub const ACCESS: Self = Self {
        default: 25,
        min: 1,
        max: 1000,
    };
}

fn parse_positive(params: &Params, key: &str) -> Result<Option<u32>, ApiError> {
    match params.get(key) {
        None | Some("") => Ok(None),
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::bad_request(
                codes::BAD_PAGINATION,
                format!("Invalid request: {key} must be a positive integer"),
            )),
        },
    }
}

/// Slices `items` (already filtered, in creation order) by `page` / `per_page` and
/// wraps it in a list envelope with `result_info`. `page_cap`, when set, lowers any
/// `per_page` to at most that value so tests can force many pages.
pub(crate) fn paginate(
    items: Vec<Value>,
    params: &Params,
    spec: PageSpec,
    page_cap: Option<u32>,
) -> ApiResult {
    let page = parse_positive(params, "page")?.unwrap_or(1);
    let mut per_page = parse_positive(params, "per_page")?
        .unwrap_or(spec.default)
        .clamp(spec.min, spec.max);
    if let Some(cap) = page_cap {
        per_page = per_page.min(cap.max(1));
    }
    let total = items.len();
    let per = per_page as usize;
    let start = (page as usize - 1).saturating_mul(per);
    let slice: Vec<Value> = items.into_iter().skip(start).take(per).collect();
    let total_pages = total.div_ceil(per);
    Ok(Json(json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": slice,
        "result_info": {
            "page": page,
            "per_page": per_page,
            "count": slice.len(),
            "total_count": total,
            "total_pages": total_pages,
        },
    }))
    .into_response())
}
