//! An HTTP proxy on `127.0.0.1` between function processes and moto that records every AWS
//! call, can answer calls with injected faults, and can ask an [`Authorizer`] before
//! forwarding (see [`crate::iam::IamAuthorizer`]).
//!
//! The Rust SDK speaks awsJson1_1 to ECS, SSM, Secrets Manager and the Resource Groups
//! Tagging API: `POST /` with `X-Amz-Target: <prefix>.<Operation>`
//! (`AmazonEC2ContainerServiceV20141113`, `AmazonSSM`, `secretsmanager`,
//! `ResourceGroupsTaggingAPI_20170126`), a JSON body and a SigV4 `Authorization` header whose `Credential`
//! names the access key id and region. Inside Lambda the SDK also sends `x-amzn-trace-id`
//! (its recursion-detection interceptor copies `_X_AMZN_TRACE_ID`, which `lambda_runtime`
//! sets per invocation from the Runtime API's `Lambda-Runtime-Trace-Id`).
//!
//! IAM speaks the awsQuery protocol instead: `POST /` with a form body
//! `Action=<Operation>&Version=…&<params>`; the service is the SigV4 credential scope's
//! (`…/us-east-1/iam/aws4_request`), and errors are XML. Those calls are recorded too,
//! their parameters as a flat JSON object of strings.
//!
//! Everything is forwarded to moto unchanged (other requests, such as `/moto-api/`, too;
//! only awsJson and awsQuery calls are recorded). Point a process at the proxy with
//! `AWS_ENDPOINT_URL=<endpoint()>`. A latency ([`AwsProxy::set_latency`]) can be added to
//! every recorded call, to stand for the round trip to AWS that moto on 127.0.0.1 lacks.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What a recorded call asked for, before any answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    /// `ecs`, `ssm`, `secretsmanager` (from the `X-Amz-Target` prefix), else the prefix.
    pub service: String,
    /// The operation, e.g. `TagResource`.
    pub operation: String,
    /// The JSON body (`null` when empty or not JSON).
    pub params: Value,
    /// The access key id from the SigV4 `Credential`.
    pub access_key_id: Option<String>,
    /// The region from the SigV4 `Credential`.
    pub region: Option<String>,
    /// The `x-amzn-trace-id` header (set by the SDK inside a Lambda invocation).
    pub trace_id: Option<String>,
}

impl CallInfo {
    /// `service:Operation`, e.g. `ssm:GetParameter`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

/// How a call was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// Forwarded to moto.
    Forwarded,
    /// Answered by an injected [`Fault`].
    Fault,
    /// Refused by the authorizer.
    Denied,
    /// moto could not be reached (answered 502).
    UpstreamFailed(String),
}

/// One recorded call and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCall {
    /// Order of arrival, from 0.
    pub seq: usize,
    /// The request.
    pub call: CallInfo,
    /// The HTTP status answered.
    pub status: u16,
    /// The error type answered (`x-amzn-ErrorType` or `__type`, without any `:...` or
    /// `...#` decoration), for 4xx/5xx answers.
    pub error_type: Option<String>,
    /// Who answered.
    pub answered: Answered,
}

/// A refused call.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The request.
    pub call: CallInfo,
    /// The principal the call was evaluated as.
    pub principal: String,
    /// The IAM action refused, e.g. `ssm:GetParameter`.
    pub action: String,
    /// The resource it was refused on.
    pub resource: String,
    /// The `AccessDeniedException` message answered.
    pub message: String,
    /// The authorizer's explanation (which function, which policies, what it could not judge).
    pub detail: String,
}

/// The authorizer's verdict on one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Authorization {
    /// Not evaluated (not a call the authorizer covers): forward it.
    Unevaluated,
    /// Allowed: forward it.
    Allowed,
    /// Refused: answer `AccessDeniedException` with `message`, do not forward.
    Denied {
        /// The principal.
        principal: String,
        /// The IAM action refused.
        action: String,
        /// The resource.
        resource: String,
        /// The message to answer with.
        message: String,
        /// Explanation for the test output.
        detail: String,
    },
}

/// Asked about every recorded call before it is forwarded.
pub trait Authorizer: Send + Sync {
    /// Decides about `call`.
    fn authorize<'a>(
        &'a self,
        call: &'a CallInfo,
    ) -> Pin<Box<dyn Future<Output = Authorization> + Send + 'a>>;

    /// Sees the answer to a call that was forwarded (e.g. the credentials an
    /// `sts:AssumeRole` returned). Does nothing unless implemented.
    fn observe(&self, _call: &CallInfo, _status: u16, _body: &[u8]) {}
}

/// An injected fault: answer the next `times` calls whose operation matches with
/// `status`, `error_type` and `message`, in the awsJson1_1 error shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `Operation` (any service) or `service:Operation`, e.g. `ssm:GetParameter`.
    pub operation: String,
    /// How many calls it answers.
    pub times: usize,
    /// HTTP status.
    pub status: u16,
    /// Error type, e.g. `ThrottlingException`.
    pub error_type: String,
    /// Error message.
    pub message: String,
    /// Instead of an error: pass the call on (it lands), then hold the answer this long
    /// (a window in which the caller can die after its write).
    pub hold: Option<Duration>,
    /// Only calls whose JSON body contains this text.
    pub body_contains: Option<String>,
}

impl Fault {
    /// Answers the next matching call with HTTP 400 `error_type` / `message`.
    pub fn new(operation: &str, error_type: &str, message: &str) -> Fault {
        Fault {
            operation: operation.to_string(),
            times: 1,
            status: 400,
            error_type: error_type.to_string(),
            message: message.to_string(),
            hold: None,
            body_contains: None,
        }
    }

    /// Lets the next matching call through, then holds its answer for `hold`.
    pub fn hold(operation: &str, hold: Duration) -> Fault {
        Fault {
            hold: Some(hold),
            ..Fault::new(operation, "", "")
        }
    }

    /// Answers the next `n` matching calls.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }

    /// With this HTTP status.
    pub fn status(mut self, status: u16) -> Fault {
        self.status = status;
        self
    }

    /// Only calls whose JSON body, as text, contains `text` (e.g. a tag value).
    pub fn when_body_contains(mut self, text: &str) -> Fault {
        self.body_contains = Some(text.to_string());
        self
    }

    fn matches(&self, call: &CallInfo) -> bool {
        let op = match self.operation.split_once(':') {
            Some((s, op)) => s == call.service && op == call.operation,
            None => self.operation == call.operation,
        };
        op && self
            .body_contains
            .as_ref()
            .is_none_or(|t| call.params.to_string().contains(t.as_str()))
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<AwsCall>,
    denials: Vec<Denial>,
    faults: Vec<Fault>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    state: Mutex<Inner>,
    authorizer: Mutex<Option<Arc<dyn Authorizer>>>,
    /// Added to every recorded call before it is answered, in microseconds.
    latency_us: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy. The server stops when this value is dropped.
pub struct AwsProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl AwsProxy {
    /// Binds `127.0.0.1:0` and forwards to `upstream` (e.g. moto's `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> std::io::Result<AwsProxy> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http,
            state: Mutex::new(Inner::default()),
            authorizer: Mutex::new(None),
            latency_us: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).into_future().await;
        });
        Ok(AwsProxy {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks `authorizer` about every call from now on.
    pub fn set_authorizer(&self, authorizer: Arc<dyn Authorizer>) {
        *self
            .shared
            .authorizer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(authorizer);
    }

    /// Delays every recorded (awsJson) call by `latency` before it is judged, faulted or
    /// forwarded, from now on; `Duration::ZERO` turns it off. Calls run concurrently, each
    /// with its own delay, as round trips to AWS do.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::Relaxed);
    }

    /// The recorded calls so far, counted by `service:Operation`.
    pub fn calls_by_operation(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.shared.lock().calls.iter() {
            *out.entry(c.call.name()).or_insert(0) += 1;
        }
        out
    }

    /// Adds a fault (faults are tried in the order added).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every recorded call so far.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.shared.lock().calls.clone()
    }

    /// Every denial so far.
    pub fn denials(&self) -> Vec<Denial> {
        self.shared.lock().denials.clone()
    }

    /// The denials so far, clearing the list.
    pub fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(&mut self.shared.lock().denials)
    }

    /// Forgets the recorded calls (not the denials, nor the faults).
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Reads the access key id and region out of a SigV4 `Authorization` header.
pub fn parse_credential(authorization: &str) -> (Option<String>, Option<String>) {
    let Some(cred) = authorization.split("Credential=").nth(1) else {
        return (None, None);
    };
    let cred = cred.split([',', ' ']).next().unwrap_or("");
    let mut parts = cred.split('/');
    let key = parts.next().filter(|k| !k.is_empty()).map(str::to_string);
    let _date = parts.next();
    let region = parts.next().filter(|r| !r.is_empty()).map(str::to_string);
    (key, region)
}

/// Splits `X-Amz-Target` into (service, operation): `AmazonEC2ContainerServiceV20141113`
/// → `ecs`, `AmazonSSM` → `ssm`, `AmazonSQS` → `sqs`, `secretsmanager` → `secretsmanager`,
/// `ResourceGroupsTaggingAPI_20170126` → `tag` (the IAM service prefix of the Resource
/// Groups Tagging API), `AWSOrganizationsV20161128` → `organizations`; others keep the
/// prefix.
pub fn parse_target(target: &str) -> Option<(String, String)> {
    let (prefix, op) = target.rsplit_once('.')?;
    let service = match prefix {
        "AmazonEC2ContainerServiceV20141113" => "ecs",
        "AmazonSSM" => "ssm",
        "AmazonSQS" => "sqs",
        "secretsmanager" => "secretsmanager",
        "ResourceGroupsTaggingAPI_20170126" => "tag",
        "AWSOrganizationsV20161128" => "organizations",
        other => other,
    };
    Some((service.to_string(), op.to_string()))
}

/// An awsJson1_1 error answer, as AWS sends it: `{"__type": T, "message": M}` with
/// `x-amzn-ErrorType: T`.
pub fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        headers.insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", v);
    }
    let body = json!({"__type": error_type, "message": message}).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        headers,
        body,
    )
        .into_response()
}

/// An awsQuery error answer, as AWS sends it: XML with the error's `Code`.
pub fn query_error_response(status: u16, code: &str, message: &str) -> Response {
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>aws-proxy</RequestId></ErrorResponse>",
        escape(code),
        escape(message)
    );
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        headers,
        body,
    )
        .into_response()
}

/// The `<Code>` of an XML error answer.
fn xml_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_string())
}

fn clean_error_type(t: &str) -> String {
    let t = t.split(':').next().unwrap_or(t);
    t.rsplit('#').next().unwrap_or(t).to_string()
}

/// The service of a SigV4 `Authorization` header's credential scope
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
pub fn scope_service(authorization: &str) -> Option<String> {
    let cred = authorization.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next().unwrap_or("");
    cred.split('/')
        .nth(3)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An awsQuery body: its `Action` and the other parameters (without `Version`) as a flat
/// JSON object of strings; `None` when the body has no `Action`.
pub fn parse_query(body: &[u8]) -> Option<(String, Value)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut action = None;
    let mut params = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        match k.as_str() {
            "Action" => action = Some(v),
            "Version" => {}
            _ => {
                params.insert(k, Value::String(v));
            }
        }
    }
    Some((action?, Value::Object(params)))
}

fn call_info(headers: &HeaderMap, body: &Bytes) -> Option<CallInfo> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let (service, operation, params) = match headers.get("x-amz-target") {
        Some(target) => {
            let (service, operation) = parse_target(target.to_str().ok()?)?;
            let params = serde_json::from_slice(body).unwrap_or(Value::Null);
            (service, operation, params)
        }
        None => {
            let (operation, params) = parse_query(body)?;
            (scope_service(authorization?)?, operation, params)
        }
    };
    let (access_key_id, region) = authorization.map(parse_credential).unwrap_or((None, None));
    let trace_id = headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Some(CallInfo {
        service,
        operation,
        params,
        access_key_id,
        region,
        trace_id,
    })
}

fn record(
    shared: &Shared,
    call: CallInfo,
    status: u16,
    error_type: Option<String>,
    answered: Answered,
) {
    let mut st = shared.lock();
    let seq = st.calls.len();
    st.calls.push(AwsCall {
        seq,
        call,
        status,
        error_type,
        answered,
    });
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = call_info(&headers, &body);
    // awsQuery calls (IAM) get XML errors; IAM's code for a denial has no `Exception`.
    let query = headers.get("x-amz-target").is_none();
    let answer_error = |status: u16, error_type: &str, message: &str| {
        if query {
            let code = match error_type {
                "AccessDeniedException" => "AccessDenied",
                t => t,
            };
            query_error_response(status, code, message)
        } else {
            error_response(status, error_type, message)
        }
    };
    let mut hold = None;
    if let Some(call) = &call {
        let latency = shared.latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let authorizer = shared
            .authorizer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(a) = authorizer {
            if let Authorization::Denied {
                principal,
                action,
                resource,
                message,
                detail,
            } = a.authorize(call).await
            {
                shared.lock().denials.push(Denial {
                    call: call.clone(),
                    principal,
                    action,
                    resource,
                    message: message.clone(),
                    detail,
                });
                // STS answers a refused AssumeRole with HTTP 403 (`AccessDenied`).
                let status = if query && call.service == "sts" {
                    403
                } else {
                    400
                };
                record(
                    &shared,
                    call.clone(),
                    status,
                    Some("AccessDeniedException".into()),
                    Answered::Denied,
                );
                return answer_error(status, "AccessDeniedException", &message);
            }
        }
        let fault = {
            let mut st = shared.lock();
            match st.faults.iter().position(|f| f.matches(call)) {
                Some(i) => {
                    let f = st.faults[i].clone();
                    st.faults[i].times -= 1;
                    if st.faults[i].times == 0 {
                        st.faults.remove(i);
                    }
                    Some(f)
                }
                None => None,
            }
        };
        if let Some(f) = fault.as_ref().filter(|f| f.hold.is_none()) {
            record(
                &shared,
                call.clone(),
                f.status,
                Some(f.error_type.clone()),
                Answered::Fault,
            );
            return answer_error(f.status, &f.error_type, &f.message);
        }
        hold = fault.and_then(|f| f.hold);
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = shared
        .http
        .request(method, format!("{}{path}", shared.upstream));
    for (name, value) in headers.iter() {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        req = req.header(name, value);
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("aws proxy: upstream {} failed: {e}", shared.upstream);
            if let Some(call) = call {
                record(
                    &shared,
                    call,
                    502,
                    Some("ProxyUpstreamError".into()),
                    Answered::UpstreamFailed(msg.clone()),
                );
            }
            return error_response(502, "ProxyUpstreamError", &msg);
        }
    };
    let status = resp.status().as_u16();
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_str().as_bytes()) {
            out_headers.append(n, value.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    if let Some(call) = call {
        let error_type = (status >= 400).then(|| {
            out_headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_string))
                })
                .or_else(|| xml_error_code(&bytes))
                .map(|t| clean_error_type(&t))
                .unwrap_or_default()
        });
        let authorizer = shared
            .authorizer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(a) = authorizer {
            a.observe(&call, status, &bytes);
        }
        record(&shared, call, status, error_type, Answered::Forwarded);
    }
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = out_headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sigv4_credentials() {
        let h = "AWS4-HMAC-SHA256 Credential=ASIAECSTUNNELSLAMBDA/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(
            parse_credential(h),
            (
                Some("ASIAECSTUNNELSLAMBDA".into()),
                Some("us-east-1".into())
            )
        );
        assert_eq!(parse_credential("Bearer x"), (None, None));
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            parse_target("AmazonEC2ContainerServiceV20141113.TagResource"),
            Some(("ecs".into(), "TagResource".into()))
        );
        assert_eq!(
            parse_target("AmazonSSM.GetParameter"),
            Some(("ssm".into(), "GetParameter".into()))
        );
        assert_eq!(
            parse_target("secretsmanager.CreateSecret"),
            Some(("secretsmanager".into(), "CreateSecret".into()))
        );
        assert_eq!(
            parse_target("ResourceGroupsTaggingAPI_20170126.GetResources"),
            Some(("tag".into(), "GetResources".into()))
        );
        assert_eq!(parse_target("nodot"), None);
    }

    #[test]
    fn parses_query_calls() {
        let h = "AWS4-HMAC-SHA256 Credential=ASIAECSTUNNELSLAMBDA/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(scope_service(h).as_deref(), Some("iam"));
        assert_eq!(scope_service("Bearer x"), None);
        let (action, params) = parse_query(
            b"Action=GetPolicyVersion&Version=2010-05-08&PolicyArn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2Fa+b&VersionId=v1",
        )
        .unwrap();
        assert_eq!(action, "GetPolicyVersion");
        assert_eq!(
            params,
            json!({"PolicyArn": "arn:aws:iam::aws:policy/a b", "VersionId": "v1"})
        );
        assert_eq!(parse_query(b"{\"json\": true}"), None);
        assert_eq!(
            xml_error_code(
                b"<ErrorResponse><Error><Code>NoSuchEntity</Code></Error></ErrorResponse>"
            )
            .as_deref(),
            Some("NoSuchEntity")
        );
    }

    #[test]
    fn error_types_lose_their_decoration() {
        assert_eq!(
            clean_error_type("ThrottlingException:http://internal.amazon.com/coral/"),
            "ThrottlingException"
        );
        assert_eq!(
            clean_error_type("com.amazonaws.ssm#ParameterNotFound"),
            "ParameterNotFound"
        );
    }

    #[test]
    fn faults_match_by_operation_or_service_and_operation() {
        let call = CallInfo {
            service: "ssm".into(),
            operation: "GetParameter".into(),
            params: Value::Null,
            access_key_id: None,
            region: None,
            trace_id: None,
        };
        assert!(Fault::new("GetParameter", "X", "m").matches(&call));
        assert!(Fault::new("ssm:GetParameter", "X", "m").matches(&call));
        assert!(!Fault::new("secretsmanager:GetParameter", "X", "m").matches(&call));
    }
}
