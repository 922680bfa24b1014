//! An in-process emulator of the AWS Lambda Runtime API (`2018-06-01`).
//!
//! The emulator plays the part of the Lambda service towards a function process: the
//! function long-polls `GET /2018-06-01/runtime/invocation/next`, handles the event and
//! answers with `POST .../invocation/{id}/response` or `POST .../invocation/{id}/error`.
//! Tests drive it with [`RuntimeApi::invoke`], which queues an event and waits for the
//! function's answer.
//!
//! Several invocations may be queued at once and several function processes may poll the
//! same emulator; each queued event is handed to exactly one poller, in FIFO order.
//!
//! Point a `lambda_runtime` function at it with `AWS_LAMBDA_RUNTIME_API=<endpoint()>`
//! (`127.0.0.1:PORT`, no scheme, exactly as the real Lambda service sets it).

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// The function ARN sent in `Lambda-Runtime-Invoked-Function-Arn`.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ecs-tunnels";

/// Deadline used by [`RuntimeApi::invoke`]: the function sees `now + 60 s`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// Largest request body accepted (Lambda's synchronous payload limit is 6 MB).
const BODY_LIMIT: usize = 7 * 1024 * 1024;

/// The Lambda Runtime API emulator. The HTTP server stops when this value is dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// One completed invocation, as seen by the caller of [`RuntimeApi::invoke`].
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `Lambda-Runtime-Aws-Request-Id` the function was given.
    pub request_id: String,
    /// What the function answered.
    pub outcome: Outcome,
    /// Time from handing the event to the function (its `next` call returning) to its
    /// answer arriving: the "Duration" Lambda would report. Queueing time is excluded.
    pub duration: Duration,
}

/// The function's answer to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST .../response`: the body, parsed as JSON (a non-JSON body becomes a JSON string).
    Response(Value),
    /// `POST .../error`: `errorType` and `errorMessage` from the body (`errorType` falls back
    /// to the `Lambda-Runtime-Function-Error-Type` header when the body has none).
    Error {
        /// The reported error type, e.g. `"&alloc::string::String"` or `"unhandled"`.
        error_type: String,
        /// The reported error message.
        error_message: String,
    },
}

impl Outcome {
    /// The response payload, or `None` for an error outcome.
    pub fn response(&self) -> Option<&Value> {
        match self {
            Outcome::Response(v) => Some(v),
            Outcome::Error { .. } => None,
        }
    }

    /// True for an error outcome.
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Error { .. })
    }
}

/// An event waiting in the queue for a poller.
struct Pending {
    request_id: String,
    event: Value,
    deadline_in: Duration,
    tx: oneshot::Sender<Answer>,
}

/// An event handed to a function and not yet answered.
struct InFlight {
    started: Instant,
    tx: oneshot::Sender<Answer>,
}

struct Answer {
    outcome: Outcome,
    duration: Duration,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Pending>,
    in_flight: HashMap<String, InFlight>,
    init_error: Option<Value>,
    rejected: Vec<String>,
    closed: bool,
    /// `next` calls currently waiting for an event.
    polling: usize,
    /// The event of every invocation handed out, by the `Root=` of its trace id.
    traces: HashMap<String, Value>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Inner>,
    /// Woken (notify_waiters) whenever an event is queued or the emulator closes.
    queued: Notify,
    /// Woken (notify_waiters) when an init error is reported.
    init_failed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RuntimeApi {
    /// Binds `127.0.0.1:0` and serves the Runtime API on the current tokio runtime.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(fallback)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).into_future().await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            server,
        })
    }

    /// `127.0.0.1:PORT`: the value for `AWS_LAMBDA_RUNTIME_API` (no scheme, as on AWS).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, for talking to the emulator with an HTTP client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues `event` with the default deadline (60 s after the function receives it) and
    /// waits up to `timeout` for the function's answer.
    ///
    /// Fails if the function does not answer in time (a still-queued event is then
    /// withdrawn), or if a function reports an init error while the event is still queued.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Result<Invocation, String> {
        self.invoke_with_deadline(event, DEFAULT_DEADLINE, timeout)
            .await
    }

    /// Like [`invoke`](Self::invoke), but the function sees
    /// `Lambda-Runtime-Deadline-Ms = now + deadline_in`, "now" being the moment the event
    /// is handed to the function (as on AWS, where the timeout clock starts then).
    pub async fn invoke_with_deadline(
        &self,
        event: Value,
        deadline_in: Duration,
        timeout: Duration,
    ) -> Result<Invocation, String> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        // Register for init-error wake-ups before queueing, so none is missed.
        let init_failed = self.shared.init_failed.notified();
        tokio::pin!(init_failed);
        init_failed.as_mut().enable();
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Err("runtime API emulator is closed".into());
            }
            st.queue.push_back(Pending {
                request_id: request_id.clone(),
                event,
                deadline_in,
                tx,
            });
        }
        self.shared.queued.notify_waiters();
        // If the caller drops this future, withdraw the event so no function gets it later.
        let _cancel = Withdraw {
            shared: &self.shared,
            request_id: &request_id,
        };

        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        let mut rx = rx;
        loop {
            tokio::select! {
                biased;
                answer = &mut rx => {
                    return match answer {
                        Ok(a) => Ok(Invocation { request_id: request_id.clone(), outcome: a.outcome, duration: a.duration }),
                        Err(_) => Err(format!("invocation {request_id} was dropped by the emulator")),
                    };
                }
                _ = &mut sleep => {
                    let mut st = self.shared.lock();
                    let was_queued = withdraw(&mut st, &request_id);
                    let in_flight = st.in_flight.remove(&request_id).is_some();
                    let state = if was_queued {
                        "no function picked the event up"
                    } else if in_flight {
                        "the function received the event but never answered"
                    } else {
                        "answer raced with the timeout"
                    };
                    return Err(format!("invocation {request_id} timed out after {timeout:?}: {state}"));
                }
                _ = &mut init_failed => {
                    let mut st = self.shared.lock();
                    if withdraw(&mut st, &request_id) {
                        let err = st.init_error.clone().unwrap_or(Value::Null);
                        return Err(format!("function reported an init error before taking invocation {request_id}: {err}"));
                    }
                    // Already handed to a function: keep waiting for its answer.
                    init_failed.set(self.shared.init_failed.notified());
                    init_failed.as_mut().enable();
                }
            }
        }
    }

    /// The body of the last `POST /2018-06-01/runtime/init/error`, if any (JSON, or a JSON
    /// string when the body was not JSON).
    pub fn init_error(&self) -> Option<Value> {
        self.shared.lock().init_error.clone()
    }

    /// Requests the emulator refused: answers for unknown or already-answered request ids,
    /// and unknown routes. A correct function leaves this empty.
    pub fn rejected_requests(&self) -> Vec<String> {
        self.shared.lock().rejected.clone()
    }

    /// Number of `next` calls currently waiting for an event: how many function processes
    /// are idle and ready (a dead process's poll stops counting when its connection closes).
    pub fn polling(&self) -> usize {
        self.shared.lock().polling
    }

    /// Waits until at least `n` functions are polling `next` (e.g. a spawned process has
    /// finished its init); false if `timeout` passes first.
    pub async fn wait_for_pollers(&self, n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while self.polling() < n {
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// The event of the invocation whose `Lambda-Runtime-Trace-Id` was `trace_id` (the
    /// function's SDK sends it back as `x-amzn-trace-id`); matched by its `Root=` part.
    pub fn event_for_trace(&self, trace_id: &str) -> Option<Value> {
        self.invocation_events().get(trace_id)
    }

    /// A handle that answers [`event_for_trace`](Self::event_for_trace) from elsewhere
    /// (e.g. an authorizer in the AWS proxy), for as long as the handle lives.
    pub fn invocation_events(&self) -> InvocationEvents {
        InvocationEvents(self.shared.clone())
    }

    /// Number of events queued and not yet picked up by a function.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            st.queue.clear();
            st.in_flight.clear();
        }
        // Release long-polls so their connection tasks end, then stop accepting.
        self.shared.queued.notify_waiters();
        self.server.abort();
    }
}

/// Looks up the event of an invocation by its trace id (see
/// [`RuntimeApi::invocation_events`]).
#[derive(Clone)]
pub struct InvocationEvents(Arc<Shared>);

impl InvocationEvents {
    /// The event handed out with this trace id (full header value or just its `Root=`).
    pub fn get(&self, trace_id: &str) -> Option<Value> {
        self.0.lock().traces.get(trace_root(trace_id)).cloned()
    }
}

/// The `Root=...` part of a trace header (the whole value when it has none).
fn trace_root(trace: &str) -> &str {
    trace
        .split(';')
        .find_map(|p| p.strip_prefix("Root="))
        .unwrap_or(trace)
}

/// Withdraws an invocation (queued or in flight) when dropped.
struct Withdraw<'a> {
    shared: &'a Shared,
    request_id: &'a str,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        withdraw(&mut st, self.request_id);
        st.in_flight.remove(self.request_id);
    }
}

/// Removes a still-queued event; true if it was there.
fn withdraw(st: &mut Inner, request_id: &str) -> bool {
    let before = st.queue.len();
    st.queue.retain(|p| p.request_id != request_id);
    st.queue.len() != before
}

fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// An X-Ray style trace header, shaped like the ones Lambda sends.
fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0;Lineage=1:{}:0",
        &a[..24],
        &b[..16],
        &b[16..24]
    )
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Counts a waiting `next` call; dropped when the call returns or its connection goes away.
struct PollGuard(Arc<Shared>);

impl PollGuard {
    fn new(shared: Arc<Shared>) -> PollGuard {
        shared.lock().polling += 1;
        PollGuard(shared)
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        self.0.lock().polling -= 1;
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _guard = PollGuard::new(shared.clone());
    loop {
        let notified = shared.queued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.lock();
            if st.closed {
                return (StatusCode::GONE, "runtime API emulator closed").into_response();
            }
            if let Some(p) = st.queue.pop_front() {
                let now = SystemTime::now();
                let deadline = epoch_ms(now + p.deadline_in);
                st.in_flight.insert(
                    p.request_id.clone(),
                    InFlight {
                        started: Instant::now(),
                        tx: p.tx,
                    },
                );
                let trace = trace_id();
                st.traces
                    .insert(trace_root(&trace).to_string(), p.event.clone());
                drop(st);
                let mut headers = HeaderMap::new();
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                headers.insert("lambda-runtime-aws-request-id", header(&p.request_id));
                headers.insert("lambda-runtime-deadline-ms", header(&deadline.to_string()));
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    HeaderValue::from_static(FUNCTION_ARN),
                );
                headers.insert("lambda-runtime-trace-id", header(&trace));
                let body = serde_json::to_vec(&p.event).unwrap_or_default();
                return (StatusCode::OK, headers, body).into_response();
            }
        }
        notified.await;
    }
}

fn parse_body(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn finish(shared: &Shared, id: &str, what: &str, outcome: Outcome) -> Response {
    let mut st = shared.lock();
    match st.in_flight.remove(id) {
        Some(f) => {
            drop(st);
            let _ = f.tx.send(Answer {
                outcome,
                duration: f.started.elapsed(),
            });
            (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
        }
        None => {
            st.rejected.push(format!(
                "{what} for unknown or already answered request id {id}"
            ));
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "errorMessage": format!("Invalid request ID: {id}"),
                    "errorType": "InvalidRequestID",
                })),
            )
                .into_response()
        }
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    finish(
        &shared,
        &id,
        "response",
        Outcome::Response(parse_body(&body)),
    )
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_body(&body);
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled");
    let error_type = parsed
        .get("errorType")
        .and_then(Value::as_str)
        .unwrap_or(header_type)
        .to_string();
    let error_message = match parsed.get("errorMessage") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => match &parsed {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    finish(
        &shared,
        &id,
        "error",
        Outcome::Error {
            error_type,
            error_message,
        },
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.lock().init_error = Some(parse_body(&body));
    shared.init_failed.notify_waiters();
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

async fn fallback(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    shared.lock().rejected.push(format!("unknown route {uri}"));
    (StatusCode::NOT_FOUND, "unknown Runtime API route").into_response()
}
