//! Structured logs: JSON lines on stdout in Lambda (CloudWatch), human lines on stderr
//! for the CLI. Level from `RUST_LOG` (default info for Lambda, warn for the CLI).
//!
//! A line logged inside a span carries the innermost span's fields under `span`: a
//! reconcile's `service`, `event_source`, `event_id`, `actor` and `event_detail`
//! ([`crate::cause::Cause::span`]).

use tracing_subscriber::EnvFilter;

/// JSON logs for Lambda.
pub fn init_json() {
    let filter = EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Human-readable logs on stderr for the CLI.
pub fn init_cli(verbose: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(if verbose { "info" } else { "warn" }));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
