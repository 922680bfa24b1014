//! Cloudflare's API rate limit: at most N requests per W seconds per API token.
//!
//! Cloudflare allows 1,200 requests per five minutes per user or account token, and
//! "if you exceed this limit, all API calls for the next five minutes will be blocked,
//! receiving a HTTP 429 response" (docs `fundamentals/api/reference/limits`;
//! `shared/reference/cloudflare-api.md` §1.5). Since September 2025 every response
//! carries `Ratelimit: "default";r=<remaining>;t=<seconds>` and
//! `Ratelimit-Policy: "default";q=<quota>;w=<window>`, and a 429 carries `Retry-After`
//! (whole seconds, rounded up) (changelog `2025-09-03-rate-limiting-improvement`). The
//! 429's body is the error envelope with code 971, "Please wait and consider throttling
//! your request speed" (seen in `cloudflare/workers-sdk#10025`; an older message adds
//! "More than 1200 requests per 300 seconds reached.", `lablabs/cloudflare-exporter#74`).
//!
//! The window slides: a request is counted for `window` after it was answered. Only
//! authenticated requests count, each one the token sends (an OpenAPI rejection too);
//! refused ones do not. With [`RateLimit::block`] (the default, as documented) going over
//! blocks the token for a whole window; without it the token may send again as soon as
//! its oldest counted request leaves the window.
//!
//! Set it at start ([`super::SimOptions::rate_limit`]) or at run time with the hook
//! `POST /__sim/rate_limit {"requests": N, "window_secs": W, "block": true}`
//! (`GET` shows it, `DELETE` turns it off). `GET /__sim/requests` counts the refusals as
//! `rate_limited`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{HeaderName, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::errors::{codes, ApiError};
use super::model::App;

/// A rate limit: `requests` per `window` per API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a token may send per window (at least 1).
    pub requests: u32,
    /// The sliding window (at least one second).
    pub window: Duration,
    /// Going over blocks the token for a whole window (Cloudflare's documented
    /// behaviour); without it, only until the oldest counted request leaves the window.
    pub block: bool,
}

impl RateLimit {
    /// Cloudflare's own: 1,200 requests per 5 minutes, blocking.
    pub const CLOUDFLARE: RateLimit = RateLimit {
        requests: 1200,
        window: Duration::from_secs(300),
        block: true,
    };

    /// `requests` per `window_secs` seconds, blocking as Cloudflare does.
    pub fn per_seconds(requests: u32, window_secs: u64) -> RateLimit {
        RateLimit {
            requests,
            window: Duration::from_secs(window_secs),
            block: true,
        }
    }

    /// Parses `N/SECONDS` (e.g. `1200/300`), for the command line.
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let (n, w) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected REQUESTS/SECONDS, e.g. 1200/300"))?;
        let limit = RateLimit::per_seconds(
            n.trim()
                .parse()
                .map_err(|_| format!("{s:?}: {n:?} is not a number of requests"))?,
            w.trim()
                .parse()
                .map_err(|_| format!("{s:?}: {w:?} is not a number of seconds"))?,
        );
        limit.check()?;
        Ok(limit)
    }

    fn check(&self) -> Result<(), String> {
        if self.requests == 0 {
            return Err("requests: must be at least 1".into());
        }
        if self.window < Duration::from_secs(1) {
            return Err("window: must be at least one second".into());
        }
        Ok(())
    }

    fn window_secs(&self) -> u64 {
        self.window.as_secs_f64().ceil() as u64
    }
}

/// What the limit says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No limit is set.
    Off,
    /// Counted; `remaining` more fit in the window, which frees its oldest slot in `reset`.
    Admitted { remaining: u32, reset: Duration },
    /// Refused: try again in `retry_after`.
    Refused { retry_after: Duration },
}

/// One token's recent requests.
#[derive(Debug, Default)]
struct TokenWindow {
    /// When each counted request was admitted, oldest first.
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// The limit and every token's window.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    limit: Option<RateLimit>,
    tokens: HashMap<String, TokenWindow>,
}

impl RateLimiter {
    /// A limiter enforcing `limit` (none: everything is admitted).
    pub fn new(limit: Option<RateLimit>) -> Self {
        RateLimiter {
            limit,
            tokens: HashMap::new(),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Replaces the limit and forgets every window.
    pub fn set(&mut self, limit: Option<RateLimit>) {
        self.limit = limit;
        self.tokens.clear();
    }

    /// Judges (and, when admitted, counts) one request of `token` at `now`.
    pub fn check(&mut self, token: &str, now: Instant) -> Verdict {
        let Some(limit) = self.limit else {
            return Verdict::Off;
        };
        let w = self.tokens.entry(token.to_owned()).or_default();
        if let Some(until) = w.blocked_until {
            if now < until {
                return Verdict::Refused {
                    retry_after: until - now,
                };
            }
            w.blocked_until = None;
        }
        while w
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= limit.window)
        {
            w.sent.pop_front();
        }
        if w.sent.len() >= limit.requests as usize {
            let retry_after = if limit.block {
                w.blocked_until = Some(now + limit.window);
                limit.window
            } else {
                let oldest = *w.sent.front().expect("a full window has an oldest request");
                limit.window - now.saturating_duration_since(oldest)
            };
            return Verdict::Refused { retry_after };
        }
        w.sent.push_back(now);
        let oldest = *w.sent.front().expect("just pushed");
        Verdict::Admitted {
            remaining: limit.requests - w.sent.len() as u32,
            reset: limit.window - now.saturating_duration_since(oldest),
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `Ratelimit` and `Ratelimit-Policy` headers.
fn rate_headers(limit: &RateLimit, remaining: u32, reset: Duration) -> HeaderMap {
    let mut h = HeaderMap::new();
    let value = |s: String| HeaderValue::from_str(&s).expect("ASCII header value");
    h.insert(
        HeaderName::from_static("ratelimit"),
        value(format!("\"default\";r={remaining};t={}", ceil_secs(reset))),
    );
    h.insert(
        HeaderName::from_static("ratelimit-policy"),
        value(format!(
            "\"default\";q={};w={}",
            limit.requests,
            limit.window_secs()
        )),
    );
    h
}

/// The 429 answer: Cloudflare's envelope with code 971, `Retry-After` (whole seconds,
/// at least 1) and the rate headers.
fn refusal(limit: &RateLimit, retry_after: Duration) -> Response {
    let message = format!(
        "More than {} requests per {} seconds reached. Please wait and consider throttling your request speed",
        limit.requests,
        limit.window_secs()
    );
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, message).into_response();
    let headers = response.headers_mut();
    headers.extend(rate_headers(limit, 0, retry_after));
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from(ceil_secs(retry_after).max(1)),
    );
    response
}

/// The outcome of [`admit`].
pub(crate) enum Admission {
    /// Go on; add these headers to the answer (empty when no limit is set).
    Admitted(HeaderMap),
    /// Answer with this 429.
    Refused(Response),
}

/// Counts an authenticated request of `token` against the limit, now.
pub(crate) fn admit(app: &App, token: &str) -> Admission {
    let mut sim = app.lock();
    let limit = sim.rate_limit.limit();
    match (sim.rate_limit.check(token, Instant::now()), limit) {
        (Verdict::Admitted { remaining, reset }, Some(l)) => {
            Admission::Admitted(rate_headers(&l, remaining, reset))
        }
        (Verdict::Refused { retry_after }, Some(l)) => {
            sim.requests.rate_limited += 1;
            tracing::debug!(
                retry_after_ms = retry_after.as_millis() as u64,
                "sim: request refused by the rate limit"
            );
            Admission::Refused(refusal(&l, retry_after))
        }
        _ => Admission::Admitted(HeaderMap::new()),
    }
}

/// The hook routes: `GET`, `POST` and `DELETE /__sim/rate_limit`.
pub(crate) fn hook_router() -> Router<App> {
    Router::new().route(
        "/__sim/rate_limit",
        get(show_hook).post(set_hook).delete(clear_hook),
    )
}

fn render(limit: Option<RateLimit>) -> Value {
    limit.map_or(Value::Null, |l| {
        json!({
            "requests": l.requests,
            "window_secs": l.window.as_secs_f64(),
            "block": l.block,
        })
    })
}

fn shown(app: &App) -> Response {
    let sim = app.lock();
    (
        StatusCode::OK,
        Json(json!({
            "rate_limit": render(sim.rate_limit.limit()),
            "rate_limited": sim.requests.rate_limited,
        })),
    )
        .into_response()
}

/// `GET /__sim/rate_limit`: the limit in force (`null`: none) and the refusals so far.
async fn show_hook(State(app): State<App>) -> Response {
    shown(&app)
}

/// Parses a `POST /__sim/rate_limit` body.
fn parse_hook_body(body: &[u8]) -> Result<RateLimit, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "body must be a JSON object")?;
    let requests = v["requests"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("requests: a whole number is required")?;
    let window = v["window_secs"]
        .as_f64()
        .filter(|w| w.is_finite() && *w > 0.0)
        .ok_or("window_secs: a positive number of seconds is required")?;
    let block = match &v["block"] {
        Value::Null => true,
        Value::Bool(b) => *b,
        _ => return Err("block: must be true or false".into()),
    };
    let limit = RateLimit {
        requests,
        window: Duration::from_secs_f64(window),
        block,
    };
    limit.check()?;
    Ok(limit)
}

/// `POST /__sim/rate_limit {"requests", "window_secs", "block"?}`: enforce a limit from
/// now on (every token's window starts empty).
async fn set_hook(State(app): State<App>, body: Bytes) -> Response {
    match parse_hook_body(&body) {
        Ok(limit) => {
            app.lock().rate_limit.set(Some(limit));
            shown(&app)
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

/// `DELETE /__sim/rate_limit`: no limit.
async fn clear_hook(State(app): State<App>) -> Response {
    app.lock().rate_limit.set(None);
    shown(&app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn admitted(v: &Verdict) -> bool {
        matches!(v, Verdict::Admitted { .. })
    }

    #[test]
    fn off_admits_everything() {
        let mut l = RateLimiter::new(None);
        let t0 = Instant::now();
        for i in 0..10_000 {
            assert_eq!(l.check("t", t0 + secs(i as f64 * 1e-4)), Verdict::Off);
        }
    }

    #[test]
    fn counts_per_window_and_reports_what_is_left() {
        let mut l = RateLimiter::new(Some(RateLimit {
            requests: 3,
            window: secs(10.0),
            block: false,
        }));
        let t0 = Instant::now();
        assert_eq!(
            l.check("t", t0),
            Verdict::Admitted {
                remaining: 2,
                reset: secs(10.0)
            }
        );
        assert_eq!(
            l.check("t", t0 + secs(1.0)),
            Verdict::Admitted {
                remaining: 1,
                reset: secs(9.0)
            }
        );
        assert!(admitted(&l.check("t", t0 + secs(2.0))));
        // The fourth within 10 s is refused until the first leaves the window.
        assert_eq!(
            l.check("t", t0 + secs(4.0)),
            Verdict::Refused {
                retry_after: secs(6.0)
            }
        );
        // A refusal does not count: at 10 s the first has left, one slot is free.
        assert!(admitted(&l.check("t", t0 + secs(10.0))));
        assert!(!admitted(&l.check("t", t0 + secs(10.5))));
        assert!(admitted(&l.check("t", t0 + secs(11.0))));
    }

    #[test]
    fn going_over_blocks_for_a_whole_window_like_cloudflare() {
        let mut l = RateLimiter::new(Some(RateLimit::per_seconds(2, 30)));
        let t0 = Instant::now();
        assert!(admitted(&l.check("t", t0)));
        assert!(admitted(&l.check("t", t0 + secs(1.0))));
        assert_eq!(
            l.check("t", t0 + secs(5.0)),
            Verdict::Refused {
                retry_after: secs(30.0)
            }
        );
        // Blocked until 35 s, although both counted requests left the window at 31 s.
        assert_eq!(
            l.check("t", t0 + secs(32.0)),
            Verdict::Refused {
                retry_after: secs(3.0)
            }
        );
        assert!(admitted(&l.check("t", t0 + secs(35.0))));
    }

    #[test]
    fn each_token_has_its_own_window() {
        let mut l = RateLimiter::new(Some(RateLimit::per_seconds(1, 60)));
        let t0 = Instant::now();
        assert!(admitted(&l.check("a", t0)));
        assert!(admitted(&l.check("b", t0)));
        assert!(!admitted(&l.check("a", t0 + secs(1.0))));
        assert!(!admitted(&l.check("b", t0 + secs(1.0))));
    }

    #[test]
    fn a_steady_rate_under_the_limit_is_never_refused() {
        // 1,200 per 300 s is 4 per second: 3.9 per second for an hour passes.
        let mut l = RateLimiter::new(Some(RateLimit::CLOUDFLARE));
        let t0 = Instant::now();
        for i in 0..(3600 * 39 / 10) {
            let at = t0 + secs(i as f64 / 3.9);
            assert!(admitted(&l.check("t", at)), "request {i} refused");
        }
        // 4.1 per second is refused within the first window.
        let mut l = RateLimiter::new(Some(RateLimit::CLOUDFLARE));
        let refused = (0..1300)
            .map(|i| l.check("t", t0 + secs(i as f64 / 4.1)))
            .position(|v| !admitted(&v));
        assert_eq!(refused, Some(1200));
    }

    #[test]
    fn setting_a_limit_starts_every_window_afresh() {
        let mut l = RateLimiter::new(Some(RateLimit::per_seconds(1, 60)));
        let t0 = Instant::now();
        assert!(admitted(&l.check("t", t0)));
        assert!(!admitted(&l.check("t", t0)));
        l.set(Some(RateLimit::per_seconds(2, 60)));
        assert!(admitted(&l.check("t", t0)));
        l.set(None);
        assert_eq!(l.check("t", t0), Verdict::Off);
    }

    #[test]
    fn refusal_is_cloudflares_429() {
        let r = refusal(&RateLimit::CLOUDFLARE, secs(299.2));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = r.headers();
        assert_eq!(h[RETRY_AFTER], "300");
        assert_eq!(h["ratelimit"], "\"default\";r=0;t=300");
        assert_eq!(h["ratelimit-policy"], "\"default\";q=1200;w=300");
        // Never "Retry-After: 0", which would invite an immediate retry.
        assert_eq!(
            refusal(&RateLimit::CLOUDFLARE, Duration::ZERO).headers()[RETRY_AFTER],
            "1"
        );
    }

    #[test]
    fn parses_the_command_line_and_hook_forms() {
        assert_eq!(RateLimit::parse("1200/300"), Ok(RateLimit::CLOUDFLARE));
        assert!(RateLimit::parse("0/300").is_err());
        assert!(RateLimit::parse("10/0").is_err());
        assert!(RateLimit::parse("1200").is_err());
        assert_eq!(
            parse_hook_body(br#"{"requests": 40, "window_secs": 10}"#),
            Ok(RateLimit::per_seconds(40, 10))
        );
        assert_eq!(
            parse_hook_body(br#"{"requests": 40, "window_secs": 10, "block": false}"#)
                .map(|l| l.block),
            Ok(false)
        );
        assert!(parse_hook_body(br#"{"requests": 40}"#).is_err());
        assert!(parse_hook_body(br#"{"requests": 0, "window_secs": 10}"#).is_err());
        assert!(parse_hook_body(b"[]").is_err());
    }
}
