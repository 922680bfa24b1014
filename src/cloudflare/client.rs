//! HTTP execution for the Cloudflare v4 API: base URL, Bearer auth, the envelope, error
//! mapping, the process's API budget, retries with backoff, pagination and call
//! statistics. The typed endpoint
//! methods live in the area modules (`zones`, `dns`, `tunnels`, `access`).

use super::budget::{Budget, Limiter};
use super::error::{map_failure, sanitize_decode_error, scrub, CfError, Ctx};
use super::wire::{Envelope, ResultInfo};
use crate::secret::Secret;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Connect timeout of the HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of the HTTP client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on pages fetched for one list, so a misbehaving server cannot loop us.
const MAX_PAGES: u64 = 1000;

/// Settings for [`CloudflareClient::new`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// API root, e.g. `https://api.cloudflare.com/client/v4` or a local simulator's
    /// `http://127.0.0.1:PORT/client/v4`. A trailing slash is tolerated.
    pub base_url: String,
    /// API token sent as `Authorization: Bearer`.
    pub api_token: Secret,
    /// Account that owns the tunnels and Access objects.
    pub account_id: String,
    /// Retries after a 429, a 5xx or a transport error (default 5). A create without a
    /// unique key (a reusable Access policy) is retried after a 429 only.
    pub max_retries: u32,
    /// First backoff delay; doubles on each retry (default 250 ms).
    pub base_backoff: Duration,
    /// Cap on one backoff delay (default 20 s).
    pub max_backoff: Duration,
    /// Longest `Retry-After` the client is willing to sleep (default 60 s). When the server
    /// asks for longer, the call fails at once with [`CfError::RateLimited`] instead of
    /// keeping a Lambda waiting for minutes.
    pub max_retry_after: Duration,
    /// This process's share of the install's API budget: every request (retries
    /// included) waits for its turn in it (see [`super::budget`]). `None`: no limit.
    pub budget: Option<Budget>,
}

impl ClientOptions {
    /// Options with the default retry policy and no budget.
    pub fn new(
        base_url: impl Into<String>,
        api_token: Secret,
        account_id: impl Into<String>,
    ) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            api_token,
            account_id: account_id.into(),
            max_retries: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            budget: None,
        }
    }
}

/// A snapshot of what a [`CloudflareClient`] (and all its clones) has sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    /// HTTP requests sent, retries included.
    pub total: u64,
    /// Requests with a method other than GET, retries included.
    pub writes: u64,
    /// HTTP 429 responses seen.
    pub rate_limited: u64,
    /// Requests repeated after a 429, a 5xx or a transport error.
    pub retries: u64,
    /// HTTP 5xx responses seen.
    pub server_errors: u64,
    /// Requests that waited for their turn in the process's API budget.
    pub budget_waits: u64,
    /// Milliseconds requests spent waiting for the budget, added up.
    pub budget_wait_ms: u64,
    /// Requests not sent because their turn came after the invocation's deadline.
    pub budget_refused: u64,
}

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    writes: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    server_errors: AtomicU64,
    budget_waits: AtomicU64,
    budget_wait_ms: AtomicU64,
    budget_refused: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    account_id: String,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    limiter: Option<Limiter>,
    counters: Counters,
}

/// Client for the Cloudflare v4 API. Cheap to clone: clones share one connection pool and
/// one set of [`CallStats`].
#[derive(Clone)]
pub struct CloudflareClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareClient")
            .field("base_url", &self.inner.base_url)
            .field("account_id", &self.inner.account_id)
            .finish_non_exhaustive()
    }
}

/// Outcome of one HTTP attempt that got a response.
struct Response {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl CloudflareClient {
    /// Builds the client (one `reqwest::Client`, connect timeout 5 s, request timeout 30 s).
    ///
    /// # Panics
    /// When the HTTP client cannot be initialised (see [`CloudflareClient::try_new`]).
    pub fn new(opts: ClientOptions) -> Self {
        Self::try_new(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the client; an error (e.g. no CA certificates on the system, which rustls
    /// reads at start) is returned rather than panicking, so a Lambda can report it.
    pub fn try_new(opts: ClientOptions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("ecs-tunnels/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                format!("the HTTP client (rustls) could not be initialised (are the system's CA certificates installed?): {e}")
            })?;
        Ok(CloudflareClient {
            inner: Arc::new(Inner {
                http,
                base_url: opts.base_url.trim_end_matches('/').to_string(),
                token: opts.api_token,
                account_id: opts.account_id,
                max_retries: opts.max_retries,
                base_backoff: opts.base_backoff,
                max_backoff: opts.max_backoff,
                max_retry_after: opts.max_retry_after,
                limiter: opts.budget.map(Limiter::new),
                counters: Counters::default(),
            }),
        })
    }

    /// The account the client works in.
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    /// Counters since the client was built (shared by all clones).
    pub fn stats(&self) -> CallStats {
        let c = &self.inner.counters;
        CallStats {
            total: c.total.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            budget_waits: c.budget_waits.load(Ordering::Relaxed),
            budget_wait_ms: c.budget_wait_ms.load(Ordering::Relaxed),
            budget_refused: c.budget_refused.load(Ordering::Relaxed),
        }
    }

    /// The API budget this process keeps to, if any.
    pub fn budget(&self) -> Option<Budget> {
        self.inner.limiter.as_ref().map(Limiter::budget)
    }

    /// Requests waiting for their turn in the API budget now (0 without a budget).
    pub fn budget_waiting(&self) -> usize {
        self.inner.limiter.as_ref().map_or(0, Limiter::waiting)
    }

    /// Waits for the next request's turn in the budget (no budget: at once).
    async fn take_turn(&self, method: &Method, path: &str) -> Result<(), CfError> {
        let Some(limiter) = &self.inner.limiter else {
            return Ok(());
        };
        let c = &self.inner.counters;
        match limiter.acquire().await {
            Ok(waited) => {
                if !waited.is_zero() {
                    Counters::bump(&c.budget_waits);
                    c.budget_wait_ms
                        .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                Counters::bump(&c.budget_refused);
                tracing::debug!(%method, path, error = %e, "cloudflare api call not sent");
                Err(e)
            }
        }
    }

    /// `/accounts/{account_id}` followed by `rest` (which starts with `/`).
    pub(crate) fn account_path(&self, rest: &str) -> String {
        format!(
            "/accounts/{}{rest}",
            super::wire::seg(&self.inner.account_id)
        )
    }

    /// Sends one logical request (with retries) and returns its envelope when it succeeded.
    pub(crate) async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        ctx: &Ctx,
    ) -> Result<Envelope, CfError> {
        let inner = &self.inner;
        let url = format!("{}{}", inner.base_url, path);
        let mut retries_done: u32 = 0;
        loop {
            let attempt = retries_done + 1;
            self.take_turn(&method, path).await?;
            let started = Instant::now();
            Counters::bump(&inner.counters.total);
            if method != Method::GET {
                Counters::bump(&inner.counters.writes);
            }
            let outcome = self.send_once(&method, &url, query, body).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;

            let delay = match outcome {
                Err(e) => {
                    tracing::debug!(%method, path, status = "transport-error", attempt, elapsed_ms, "cloudflare api call");
                    if e.is_builder() || ctx.not_idempotent || retries_done >= inner.max_retries {
                        return Err(CfError::Transport(describe_transport(&e, &method, path)));
                    }
                    self.backoff(retries_done)
                }
                Ok(resp) => {
                    let status = resp.status;
                    tracing::debug!(%method, path, status, attempt, elapsed_ms, "cloudflare api call");
                    let asked = retry_after(&resp.headers);
                    if status == 429 {
                        Counters::bump(&inner.counters.rate_limited);
                        if let Some(d) = asked.filter(|d| *d > inner.max_retry_after) {
                            return Err(CfError::RateLimited {
                                retry_after: Some(d),
                            });
                        }
                        if retries_done >= inner.max_retries {
                            return Err(CfError::RateLimited { retry_after: asked });
                        }
                        let delay = asked.unwrap_or_else(|| self.backoff(retries_done));
                        // Cloudflare counts the token, not the request: every request of
                        // this process waits, not only this one.
                        if let Some(limiter) = &inner.limiter {
                            limiter.hold_until(tokio::time::Instant::now() + delay);
                        }
                        delay
                    } else if status >= 500 {
                        Counters::bump(&inner.counters.server_errors);
                        if ctx.not_idempotent || retries_done >= inner.max_retries {
                            return Err(self.failure(&resp, ctx));
                        }
                        asked
                            .filter(|d| *d <= inner.max_retry_after)
                            .unwrap_or_else(|| self.backoff(retries_done))
                    } else {
                        return self.finish(&method, path, &resp, ctx);
                    }
                }
            };
            retries_done += 1;
            Counters::bump(&inner.counters.retries);
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, reqwest::Error> {
        let mut rb = self
            .inner
            .http
            .request(method.clone(), url)
            .bearer_auth(self.inner.token.expose())
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(b.to_vec());
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A final (non-retried) response: 2xx with `success != false` is the envelope; anything
    /// else is mapped to a [`CfError`].
    fn finish(
        &self,
        method: &Method,
        path: &str,
        resp: &Response,
        ctx: &Ctx,
    ) -> Result<Envelope, CfError> {
        if !(200..300).contains(&resp.status) {
            return Err(self.failure(resp, ctx));
        }
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            // 204 or an empty 200: nothing to read, nothing wrong.
            return Ok(Envelope::default());
        }
        let env: Envelope = serde_json::from_slice(&resp.body).map_err(|e| {
            CfError::Decode(format!(
                "HTTP {} response to {method} {path} is not a JSON envelope ({})",
                resp.status,
                sanitize_decode_error(&e.to_string())
            ))
        })?;
        if env.success == Some(false) {
            let errors = self.scrubbed(env.error_messages(), ctx);
            return Err(map_failure(resp.status, errors, None, ctx));
        }
        Ok(env)
    }

    fn failure(&self, resp: &Response, ctx: &Ctx) -> CfError {
        // A non-JSON error body (an HTML 502 from a proxy, say) has no codes: status only.
        let errors = serde_json::from_slice::<Envelope>(&resp.body)
            .map(|env| env.error_messages())
            .unwrap_or_default();
        let errors = self.scrubbed(errors, ctx);
        map_failure(resp.status, errors, retry_after(&resp.headers), ctx)
    }

    fn scrubbed(
        &self,
        mut errors: Vec<super::error::ApiMessage>,
        ctx: &Ctx,
    ) -> Vec<super::error::ApiMessage> {
        let mut secrets: Vec<&Secret> = ctx.redact.iter().collect();
        secrets.push(&self.inner.token);
        for e in &mut errors {
            e.message = scrub(&e.message, &secrets);
        }
        errors
    }

    /// Exponential backoff with "equal jitter": half the capped delay plus a random part of
    /// the other half.
    fn backoff(&self, retries_done: u32) -> Duration {
        let inner = &self.inner;
        let factor = 2u32.saturating_pow(retries_done.min(31));
        let capped = inner
            .base_backoff
            .checked_mul(factor)
            .unwrap_or(inner.max_backoff)
            .min(inner.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// GET returning the decoded `result`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        ctx: &Ctx,
    ) -> Result<T, CfError> {
        let env = self.execute(Method::GET, path, query, None, ctx).await?;
        decode_result(env.result, &Method::GET, path)
    }

    /// GET that turns [`CfError::NotFound`] into `None`.
    pub(crate) async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        ctx: &Ctx,
    ) -> Result<Option<T>, CfError> {
        match self.get_json(path, &[], ctx).await {
            Ok(v) => Ok(Some(v)),
            Err(CfError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST/PUT/PATCH/DELETE with a JSON body, returning the decoded `result`.
    pub(crate) async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        ctx: &Ctx,
    ) -> Result<T, CfError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            CfError::Decode(format!(
                "could not encode the request body for {method} {path}: {}",
                sanitize_decode_error(&e.to_string())
            ))
        })?;
        let env = self
            .execute(method.clone(), path, &[], Some(&bytes), ctx)
            .await?;
        decode_result(env.result, &method, path)
    }

    /// DELETE (with an optional JSON body) where 404 means "already gone".
    pub(crate) async fn delete_idempotent(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
        ctx: &Ctx,
    ) -> Result<(), CfError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        match self
            .execute(Method::DELETE, path, &[], bytes.as_deref(), ctx)
            .await
        {
            Ok(_) | Err(CfError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// GETs every page of a list endpoint.
    ///
    /// Requests `per_page`, then trusts what the server reports (it may clamp `per_page`):
    /// stops at an empty page, when `page >= total_pages`, when `total_count` items were
    /// collected, or, when the server reports neither total, at a page shorter than the
    /// server's `per_page`. A response without `result_info` is a single page.
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        per_page: u32,
        ctx: &Ctx,
    ) -> Result<Vec<T>, CfError> {
        let mut out: Vec<T> = Vec::new();
        let mut page: u64 = 1;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", per_page.to_string()));
            let env = self.execute(Method::GET, path, &q, None, ctx).await?;
            let info: Option<ResultInfo> = env.result_info;
            if let Some(p) = info.and_then(|i| i.page) {
                if p != page {
                    // The endpoint ignores `page` and sent an earlier page again.
                    break;
                }
            }
            let items: Vec<T> = match env.result {
                serde_json::Value::Null => Vec::new(),
                v => decode_result(v, &Method::GET, path)?,
            };
            let n = items.len() as u64;
            out.extend(items);
            let Some(info) = info else { break };
            if n == 0 {
                break;
            }
            let done = match (info.total_pages, info.total_count) {
                (Some(tp), _) if page >= tp => true,
                (_, Some(tc)) if out.len() as u64 >= tc => true,
                (None, None) => info.per_page.is_some_and(|pp| n < pp),
                _ => false,
            };
            if done {
                break;
            }
            if page >= MAX_PAGES {
                return Err(CfError::Decode(format!(
                    "listing {path} did not finish after {MAX_PAGES} pages"
                )));
            }
            page += 1;
        }
        Ok(out)
    }
}

/// Decodes an envelope `result` into `T`; errors name the request, never the content.
pub(crate) fn decode_result<T: DeserializeOwned>(
    result: serde_json::Value,
    method: &Method,
    path: &str,
) -> Result<T, CfError> {
    serde_json::from_value(result).map_err(|e| {
        CfError::Decode(format!(
            "the result of {method} {path} has an unexpected shape ({})",
            sanitize_decode_error(&e.to_string())
        ))
    })
}

fn describe_transport(e: &reqwest::Error, method: &Method, path: &str) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_builder() {
        "invalid request (check the base URL)"
    } else {
        "request failed"
    };
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    if chain.is_empty() {
        format!("{method} {path}: {kind}")
    } else {
        format!("{method} {path}: {kind}: {}", chain.join(": "))
    }
}

/// How long the server asked us to wait: `Retry-After-Ms`, then `Retry-After` as seconds
/// (integer or decimal) or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0) {
            return Some(d);
        }
    }
    let v = header_str(headers, RETRY_AFTER.as_str())?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = parse_http_date(v)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(Duration::from_secs_f64((when as f64 - now).max(0.0)))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.remove("retry-after-ms");
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let future = SystemTime::now() + Duration::from_secs(3600);
        let secs = future.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        // Format the future date by hand to check the round trip.
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let s = format!(
            "Mon, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            MONTHS[(m - 1) as usize],
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        h.insert(RETRY_AFTER, HeaderValue::from_str(&s).unwrap());
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(3590) && got <= Duration::from_secs(3600),
            "{got:?}"
        );
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut o = ClientOptions::new("http://127.0.0.1:1", Secret::new("t"), "acc");
        o.base_backoff = Duration::from_millis(100);
        o.max_backoff = Duration::from_millis(1000);
        let c = CloudflareClient::new(o);
        for (i, max) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let d = c.backoff(i);
            assert!(
                d >= Duration::from_millis(max / 2) && d <= Duration::from_millis(max),
                "{i}: {d:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = CloudflareClient::new(ClientOptions::new(
            "https://api.cloudflare.com/client/v4/",
            Secret::new("very-secret-token"),
            "acc",
        ));
        let s = format!("{c:?}");
        assert!(!s.contains("very-secret-token"));
        assert!(s.contains("https://api.cloudflare.com/client/v4\""));
        let o = ClientOptions::new("u", Secret::new("very-secret-token"), "a");
        assert!(!format!("{o:?}").contains("very-secret-token"));
    }
}
