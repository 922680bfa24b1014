//! The simulator's in-memory state: one `Sim` behind a mutex, shared by all handlers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};

use super::errors::ApiError;
use super::util::{hex_id, now_rfc3339, uuid};
use super::{SchemaViolation, SimOptions};

/// A zone (fixed at start, or added through the hook).
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub id: String,
    pub name: String,
    pub created_on: String,
}

/// A DNS record.
#[derive(Debug, Clone)]
pub(crate) struct DnsRecord {
    pub id: String,
    pub zone_id: String,
    pub name: String,
    pub rtype: String,
    pub content: String,
    pub proxied: bool,
    pub ttl: i64,
    pub priority: Option<i64>,
    pub comment: Option<String>,
    pub tags: Vec<String>,
    /// Per-record settings (`flatten_cname`, `ipv4_only`, `ipv6_only`), as sent.
    pub settings: Map<String, Value>,
    pub created_on: String,
    pub modified_on: String,
    pub comment_modified_on: Option<String>,
    pub tags_modified_on: Option<String>,
}

/// One edge connection of a connector.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub id: String,
    pub colo_name: String,
    pub origin_ip: String,
    pub opened_at: String,
}

/// A running cloudflared replica registered through the connector hook.
/// (No `Debug`: it holds a secret.)
#[derive(Clone)]
pub(crate) struct Connector {
    pub client_id: String,
    /// The tunnel secret the replica started with (it keeps it in memory).
    pub secret: Vec<u8>,
    pub arch: String,
    pub version: String,
    pub run_at: String,
    pub conns: Vec<Conn>,
}

/// A Cloudflare Tunnel (`cfd_tunnel`), live or soft-deleted. (No `Debug`: it
/// holds a secret.)
#[derive(Clone)]
pub(crate) struct Tunnel {
    pub id: String,
    pub name: String,
    pub secret: Vec<u8>,
    pub config_src: String,
    pub created_at: String,
    pub deleted_at: Option<String>,
    pub conns_active_at: Option<String>,
    pub conns_inactive_at: Option<String>,
    /// Whether any connector ever registered (`inactive` vs `down`).
    pub ever_connected: bool,
    pub connectors: Vec<Connector>,
    /// The remote configuration, stored verbatim; `None` before the first PUT.
    pub config: Option<Value>,
    pub config_version: u64,
    pub config_created_at: String,
}

impl Tunnel {
    /// `inactive` (never ran), `healthy` (connectors present) or `down`.
    pub fn status(&self) -> &'static str {
        if !self.connectors.is_empty() {
            "healthy"
        } else if self.ever_connected {
            "down"
        } else {
            "inactive"
        }
    }
}

/// An Access application.
#[derive(Debug, Clone)]
pub(crate) struct AccessApp {
    pub id: String,
    pub aud: String,
    pub name: String,
    pub domain: String,
    pub app_type: String,
    pub destinations: Vec<Value>,
    pub session_duration: String,
    pub allowed_idps: Vec<String>,
    pub auto_redirect_to_identity: bool,
    pub app_launcher_visible: bool,
    pub tags: Vec<String>,
    /// (reusable policy id, precedence)
    pub policies: Vec<(String, i64)>,
    /// Other documented fields, echoed back as sent.
    pub extras: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// A reusable Access policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub id: String,
    pub name: String,
    pub decision: String,
    pub include: Vec<Value>,
    pub exclude: Vec<Value>,
    pub require: Vec<Value>,
    pub session_duration: String,
    pub extras: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// An Access group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: String,
    pub name: String,
    pub include: Vec<Value>,
    pub exclude: Vec<Value>,
    pub require: Vec<Value>,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// An identity provider.
#[derive(Debug, Clone)]
pub(crate) struct Idp {
    pub id: String,
    pub name: String,
    pub idp_type: String,
}

/// An Access tag (app label).
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A queued fault (see the `/__sim/faults` hook).
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub remaining: u32,
    pub code: Option<i64>,
    pub latency_ms: Option<u64>,
    /// Delay the answer by this much after the request was applied (the change lands,
    /// the caller waits: a window in which a caller can die after a write).
    pub after_ms: Option<u64>,
    /// With a `status`: apply the request first, then answer with the error (a write
    /// that commits and then fails, as a 5xx or a lost answer after the commit does).
    pub commit: bool,
}

/// One logged API request.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// The OpenAPI violation of this request, if it had one.
    pub violation: Option<String>,
    /// When the request reached the simulator, in microseconds on
    /// [`super::faults::clock_us`]'s clock.
    pub started_us: u64,
    /// When its answer was ready (after any latency), on the same clock.
    pub ended_us: u64,
}

/// Requests Cloudflare's OpenAPI document rejected (kept across `/__sim/reset` and
/// `DELETE /__sim/requests`; cleared only by `DELETE /__sim/violations`).
#[derive(Debug, Default)]
pub(crate) struct Violations {
    /// How many there were.
    pub count: u64,
    /// The first [`VIOLATION_LIMIT`] of them.
    pub list: Vec<SchemaViolation>,
}

/// How many violations are kept in full (the count keeps counting).
const VIOLATION_LIMIT: usize = 1000;

impl Violations {
    /// Records one.
    pub fn record(&mut self, v: SchemaViolation) {
        self.count += 1;
        if self.list.len() < VIOLATION_LIMIT {
            self.list.push(v);
        }
    }
}

/// Counters and a bounded log of API requests (hook requests are not counted).
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    pub total: u64,
    pub writes: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests with an OpenAPI violation.
    pub violations: u64,
    /// Requests the rate limit refused (HTTP 429; injected faults not included).
    pub rate_limited: u64,
    pub log: VecDeque<LogEntry>,
}

/// How many log entries are kept (counters keep counting past it).
const LOG_LIMIT: usize = 10_000;

impl RequestLog {
    /// Records one request.
    pub fn record(&mut self, entry: LogEntry) {
        self.total += 1;
        if entry.method != "GET" && entry.method != "HEAD" {
            self.writes += 1;
        }
        *self.by_status.entry(entry.status).or_default() += 1;
        if entry.violation.is_some() {
            self.violations += 1;
        }
        if self.log.len() == LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }
}

/// Everything the simulator knows.
pub(crate) struct Sim {
    pub opts: SimOptions,
    /// The zones and IdPs made at start, restored by [`Sim::reset`].
    pub initial: (Vec<Zone>, Vec<Idp>),
    pub zones: Vec<Zone>,
    pub dns: Vec<DnsRecord>,
    pub tunnels: Vec<Tunnel>,
    pub apps: Vec<AccessApp>,
    pub policies: Vec<Policy>,
    pub groups: Vec<Group>,
    pub idps: Vec<Idp>,
    pub tags: Vec<Tag>,
    pub org_created_at: String,
    pub faults: VecDeque<Fault>,
    pub requests: RequestLog,
    pub violations: Violations,
    /// Writes by ecs-tunnels, with what they addressed (see `audit`).
    pub audit: Vec<super::audit::AuditEntry>,
    /// The API rate limit and each token's window (see `rate_limit`).
    pub rate_limit: super::rate_limit::RateLimiter,
}

impl Sim {
    /// Fresh state from the start options: the zones and one One-time PIN IdP.
    pub fn new(opts: SimOptions) -> Self {
        let now = now_rfc3339();
        let zones: Vec<Zone> = opts
            .zones
            .iter()
            .map(|name| Zone {
                id: hex_id(),
                name: name.trim_end_matches('.').to_ascii_lowercase(),
                created_on: now.clone(),
            })
            .collect();
        let idps = vec![Idp {
            id: uuid(),
            name: "One-time PIN".into(),
            idp_type: "onetimepin".into(),
        }];
        Self {
            initial: (zones.clone(), idps.clone()),
            zones,
            dns: Vec::new(),
            tunnels: Vec::new(),
            apps: Vec::new(),
            policies: Vec::new(),
            groups: Vec::new(),
            idps,
            tags: Vec::new(),
            org_created_at: now,
            faults: VecDeque::new(),
            requests: RequestLog::default(),
            violations: Violations::default(),
            audit: Vec::new(),
            rate_limit: super::rate_limit::RateLimiter::new(opts.rate_limit),
            opts,
        }
    }

    /// Back to the start: the start zones and IdP (same ids as before), nothing
    /// else, no faults, an empty request log (the recorded OpenAPI violations stay).
    pub fn reset(&mut self) {
        let (zones, idps) = self.initial.clone();
        let mut fresh = Self::new(self.opts.clone());
        fresh.zones = zones;
        fresh.idps = idps;
        fresh.initial = self.initial.clone();
        fresh.org_created_at = self.org_created_at.clone();
        fresh.violations = std::mem::take(&mut self.violations);
        *self = fresh;
    }

    /// The zone with this id.
    pub fn zone(&self, id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
    }

    /// `Ok` if `account_id` is the simulated account, else 403 "Authentication error"
    /// (an API token is scoped to its accounts).
    pub fn check_account(&self, account_id: &str) -> Result<(), ApiError> {
        if account_id == self.opts.account_id {
            Ok(())
        } else {
            Err(ApiError::auth())
        }
    }

    /// The tunnel with this id (deleted ones included).
    pub fn tunnel(&self, id: &str) -> Option<&Tunnel> {
        self.tunnels.iter().find(|t| t.id.eq_ignore_ascii_case(id))
    }
}

/// The handle every handler gets: the state behind a mutex. Never held across an
/// `.await`.
#[derive(Clone)]
pub(crate) struct App(Arc<Mutex<Sim>>);

impl App {
    /// Wraps fresh state.
    pub fn new(opts: SimOptions) -> Self {
        Self(Arc::new(Mutex::new(Sim::new(opts))))
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, Sim> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
