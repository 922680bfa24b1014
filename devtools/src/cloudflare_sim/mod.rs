//! A stateful, in-memory simulator of the parts of Cloudflare's v4 API that
//! ecs-tunnels uses: zones, DNS records, Cloudflare Tunnels (with remote
//! configuration, tokens and connectors) and Access (apps, reusable policies,
//! groups, identity providers, organization, tags).
//!
//! It is a second implementation of the wire format, written from
//! `shared/reference/cloudflare-api.md` and the OpenAPI document, independently of
//! the project's client. It listens on 127.0.0.1 and serves:
//!
//! - the API under `/client/v4` (bearer token required, Cloudflare envelopes,
//!   pagination on every list);
//! - test hooks under `/__sim` (no auth): simulated cloudflared replicas, fault
//!   injection, a global latency, request counters and timings, a state dump, reset,
//!   schema violations, an audit of the writes ecs-tunnels made to existing objects,
//!   a crowded account seeded in one call (see `hooks.rs`, `audit.rs`, `crowd.rs`), and
//!   Cloudflare's API rate limit (`rate_limit.rs`).
//!
//! Unless [`SimOptions::validate_openapi`] is off, every API request is first checked
//! against Cloudflare's own OpenAPI document (`openapi.rs`, with the cited additions in
//! `openapi_overlay.rs`). A request the document rejects is answered with HTTP 400 and a
//! Cloudflare error envelope naming the field and the rule, and is recorded: see
//! [`RunningSim::violations`] and the `/__sim/violations` hook.
//!
//! Error codes the sources do not pin down are listed, marked *unverified*, in
//! `errors.rs` (`codes`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = devtools::cloudflare_sim::start(Default::default()).await?;
//! println!("API at {}", sim.base_url);
//! sim.shutdown();
//! # Ok(())
//! # }
//! ```

mod access_apps;
mod access_misc;
mod access_policies;
mod access_rules;
mod audit;
mod connectors;
mod crowd;
mod dns;
mod envelope;
mod errors;
mod faults;
mod hooks;
mod input;
mod model;
pub mod openapi;
mod openapi_overlay;
mod rate_limit;
mod server_shapes;
mod tunnel_config;
mod tunnels;
mod util;
mod zones;

use std::fmt;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use errors::{codes, ApiError};
use model::App;
pub use openapi::{Part, SchemaViolation};
pub use rate_limit::RateLimit;

/// How to start the simulator.
#[derive(Clone, PartialEq, Eq)]
pub struct SimOptions {
    /// The API token clients must send as `Authorization: Bearer <token>`.
    pub api_token: String,
    /// The one account that exists (32 lowercase hex characters).
    pub account_id: String,
    /// Zone names that exist from the start.
    pub zones: Vec<String>,
    /// Zero Trust team name: the organization's `auth_domain` is
    /// `<team_name>.cloudflareaccess.com`.
    pub team_name: String,
    /// If set, every `per_page` is lowered to at most this, to force pagination.
    pub page_cap: Option<u32>,
    /// Answer the way Cloudflare's API does rather than echoing requests: zero values
    /// spelled out, empty objects, server-only fields, canonical hostnames, emails and
    /// durations (see `server_shapes.rs`).
    pub server_shapes: bool,
    /// Port on 127.0.0.1; 0 picks any free port.
    pub port: u16,
    /// Check every API request against Cloudflare's OpenAPI document and answer a
    /// violating one with HTTP 400 (on by default; turn it off only in a test that
    /// deliberately sends what the document rejects).
    pub validate_openapi: bool,
    /// Cloudflare's API rate limit, per API token (none by default; see `rate_limit.rs`
    /// and the `/__sim/rate_limit` hook). [`RateLimit::CLOUDFLARE`] is the real one.
    pub rate_limit: Option<RateLimit>,
    /// Milliseconds added to every API request (never to a hook) before it is handled,
    /// like a network round trip; 0 adds none. `POST /__sim/latency {"ms": N}` changes it
    /// on a running simulator.
    pub latency_ms: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            api_token: "test-api-token".into(),
            account_id: "0123456789abcdef0123456789abcdef".into(),
            zones: vec!["example.com".into(), "example.net".into()],
            team_name: "ecs-tunnels-demo".into(),
            page_cap: None,
            server_shapes: false,
            port: 0,
            validate_openapi: true,
            rate_limit: None,
            latency_ms: 0,
        }
    }
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("api_token", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("zones", &self.zones)
            .field("team_name", &self.team_name)
            .field("page_cap", &self.page_cap)
            .field("server_shapes", &self.server_shapes)
            .field("port", &self.port)
            .field("validate_openapi", &self.validate_openapi)
            .field("rate_limit", &self.rate_limit)
            .field("latency_ms", &self.latency_ms)
            .finish()
    }
}

/// A running simulator. Dropping it (or calling [`RunningSim::shutdown`]) stops
/// the server.
pub struct RunningSim {
    /// The API base, `http://127.0.0.1:PORT/client/v4`.
    pub base_url: String,
    /// The test hooks base, `http://127.0.0.1:PORT/__sim`.
    pub hooks_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    state: App,
}

impl fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSim")
            .field("base_url", &self.base_url)
            .field("hooks_url", &self.hooks_url)
            .finish_non_exhaustive()
    }
}

impl RunningSim {
    /// `GET <hooks>/<path>` (e.g. `requests`, `state`) as JSON, over HTTP like any client.
    pub async fn hook_json(&self, http: &reqwest::Client, path: &str) -> serde_json::Value {
        http.get(format!("{}/{path}", self.hooks_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /__sim/{path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET /__sim/{path}: {e}"))
    }

    /// Every request Cloudflare's OpenAPI document rejected since the start (or the last
    /// [`RunningSim::clear_violations`]), oldest first. `/__sim/reset` keeps them.
    pub fn violations(&self) -> Vec<SchemaViolation> {
        self.state.lock().violations.list.clone()
    }

    /// Forgets the recorded violations.
    pub fn clear_violations(&self) {
        self.state.lock().violations = Default::default();
    }

    /// Stops the server (in-flight requests are abandoned).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds 127.0.0.1:`opts.port`, spawns the server on the current tokio runtime and
/// returns once it is listening.
///
/// With [`SimOptions::validate_openapi`] on, the OpenAPI document is loaded here (once
/// per process), so a broken copy fails the start rather than the first request.
pub async fn start(opts: SimOptions) -> std::io::Result<RunningSim> {
    if opts.validate_openapi {
        openapi::document().map_err(std::io::Error::other)?;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
    let port = listener.local_addr()?.port();
    let state = App::new(opts);
    let app = router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "cloudflare simulator stopped with an error");
        }
    });
    Ok(RunningSim {
        base_url: format!("http://127.0.0.1:{port}/client/v4"),
        hooks_url: format!("http://127.0.0.1:{port}/__sim"),
        shutdown: Some(tx),
        task: Some(task),
        state,
    })
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    if faults::is_hook_path(uri.path()) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such hook"})),
        )
            .into_response();
    }
    ApiError::no_route().into_response()
}

async fn wrong_method() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "Method not allowed for this route",
    )
    .into_response()
}

fn router(state: App) -> Router {
    const ACC: &str = "/client/v4/accounts/{account_id}";
    let tunnel = |suffix: &str| format!("{ACC}/cfd_tunnel/{{tunnel_id}}{suffix}");
    let access = |suffix: &str| format!("{ACC}/access{suffix}");
    Router::new()
        .route("/client/v4/zones", get(zones::list))
        .route("/client/v4/zones/{zone_id}", get(zones::get_one))
        .route(
            "/client/v4/zones/{zone_id}/dns_records",
            get(dns::list).post(dns::create),
        )
        .route(
            "/client/v4/zones/{zone_id}/dns_records/{record_id}",
            get(dns::get_one)
                .put(dns::put)
                .patch(dns::patch)
                .delete(dns::delete),
        )
        .route(
            &format!("{ACC}/cfd_tunnel"),
            get(tunnels::list).post(tunnels::create),
        )
        .route(
            &tunnel(""),
            get(tunnels::get_one)
                .patch(tunnels::patch)
                .delete(tunnels::delete),
        )
        .route(&tunnel("/token"), get(tunnels::get_token))
        .route(
            &tunnel("/configurations"),
            get(tunnel_config::get_config).put(tunnel_config::put_config),
        )
        .route(
            &tunnel("/connections"),
            get(connectors::list).delete(connectors::delete),
        )
        .route(
            &tunnel("/connectors/{connector_id}"),
            get(connectors::get_one),
        )
        .route(
            &access("/apps"),
            get(access_apps::list).post(access_apps::create),
        )
        .route(
            &access("/apps/{app_id}"),
            get(access_apps::get_one)
                .put(access_apps::put)
                .delete(access_apps::delete),
        )
        .route(
            &access("/policies"),
            get(access_policies::list_policies).post(access_policies::create_policy),
        )
        .route(
            &access("/policies/{policy_id}"),
            get(access_policies::get_policy)
                .put(access_policies::put_policy)
                .delete(access_policies::delete_policy),
        )
        .route(
            &access("/groups"),
            get(access_policies::list_groups).post(access_policies::create_group),
        )
        .route(
            &access("/groups/{group_id}"),
            get(access_policies::get_group)
                .put(access_policies::put_group)
                .delete(access_policies::delete_group),
        )
        .route(&access("/identity_providers"), get(access_misc::list_idps))
        .route(
            &access("/identity_providers/{idp_id}"),
            get(access_misc::get_idp),
        )
        .route(
            &access("/organizations"),
            get(access_misc::get_organization),
        )
        .route(
            &access("/tags"),
            get(access_misc::list_tags).post(access_misc::create_tag),
        )
        .route(
            &access("/tags/{tag_name}"),
            get(access_misc::get_tag).delete(access_misc::delete_tag),
        )
        .merge(hooks::router())
        .merge(rate_limit::hook_router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(from_fn_with_state(state.clone(), faults::api_layer))
        .with_state(state)
}
