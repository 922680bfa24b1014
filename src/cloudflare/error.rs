//! [`CfError`]: every way a Cloudflare API call can fail, in words a platform engineer
//! understands.
//!
//! Messages never contain a secret, a request body or an `Authorization` header: they are
//! built from the HTTP status, the request path and the `errors[]` of Cloudflare's
//! envelope (with any secret sent in the request scrubbed out of them).

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One `{code, message}` item of the envelope's `errors` array.
///
/// `code` is an `i64`: DNS codes such as 81053 do not fit in the `u16` the `cloudflare`
/// crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiMessage {
    /// Cloudflare's numeric error code (e.g. `1013`, `81053`, `10000`).
    pub code: i64,
    /// Cloudflare's human-readable message.
    pub message: String,
}

impl fmt::Display for ApiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.message)
    }
}

/// An error from the Cloudflare client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CfError {
    /// HTTP 401/403, or code 10000 / 9109: the token is invalid or lacks a permission.
    #[error(
        "the Cloudflare API token was rejected or lacks a permission (HTTP {status}): {message}"
    )]
    Auth {
        /// HTTP status of the response.
        status: u16,
        /// Cloudflare's error messages, joined.
        message: String,
    },
    /// HTTP 404 on an object that was expected to exist.
    #[error("{what} was not found in Cloudflare")]
    NotFound {
        /// What was looked for (e.g. `tunnel 5f3c…`, or the request path).
        what: String,
    },
    /// HTTP 409 or code 1013 when creating a tunnel: a live tunnel already has this name.
    #[error("a Cloudflare Tunnel named {name:?} already exists in the account (code 1013)")]
    TunnelNameTaken {
        /// The tunnel name that was asked for.
        name: String,
    },
    /// Code 1022: a tunnel cannot be deleted while connectors are attached.
    #[error(
        "Cloudflare Tunnel {id} still has active connections (code 1022): stop its cloudflared \
         replicas and clean up its connections before deleting it"
    )]
    TunnelHasConnections {
        /// The tunnel ID.
        id: String,
    },
    /// Code 81053 / 81054: another A, AAAA or CNAME record already uses the name.
    #[error("another A, AAAA or CNAME record already uses the DNS name {name} (code 81053/81054)")]
    DnsNameTaken {
        /// The DNS name of the record that was being written.
        name: String,
    },
    /// Code 81057 / 81058: an identical record already exists.
    #[error("an identical DNS record for {name} already exists (code 81057/81058)")]
    DnsRecordExists {
        /// The DNS name of the record that was being written.
        name: String,
    },
    /// Code 11010, or HTTP 409 on Access applications: an app for this domain exists.
    #[error("a Cloudflare Access application for this domain already exists (code 11010)")]
    AccessAppExists,
    /// HTTP 429 after all retries, or a `Retry-After` longer than the client will wait.
    #[error("the Cloudflare API rate limit was hit (HTTP 429){}", fmt_retry_after(.retry_after))]
    RateLimited {
        /// How long Cloudflare asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The process's share of the install's Cloudflare API budget has no room for this
    /// request before the invocation's deadline; nothing was sent (see
    /// [`budget`](super::budget)).
    #[error(
        "this function's share of the Cloudflare API budget is spent until after the invocation's deadline (the next request could go in {:.0} s); the work is left for a retry",
        .wait.as_secs_f64().ceil()
    )]
    BudgetSpent {
        /// How long the request would have had to wait.
        wait: Duration,
    },
    /// Any other failure reported by the API (`success: false` or a non-2xx status).
    #[error("the Cloudflare API request failed with HTTP {status}: {}", fmt_messages(.errors))]
    Api {
        /// HTTP status of the response.
        status: u16,
        /// The envelope's `errors` (empty when the body was not a JSON envelope).
        errors: Vec<ApiMessage>,
    },
    /// The request did not get an HTTP response (DNS, connect, TLS, timeout…).
    #[error("could not reach the Cloudflare API: {0}")]
    Transport(String),
    /// A successful response whose body could not be understood.
    #[error("unexpected response from the Cloudflare API: {0}")]
    Decode(String),
}

fn fmt_retry_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(
            "; Cloudflare asked to wait {:.0} s before retrying",
            d.as_secs_f64().ceil()
        ),
        None => "; retries exhausted".to_string(),
    }
}

fn fmt_messages(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return "no error details in the response".to_string();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CfError {
    /// The Cloudflare error codes behind this error.
    ///
    /// For [`CfError::Api`] these are the codes of the envelope; for the specific variants it
    /// is the representative code the variant stands for (e.g. `[1013]` for
    /// [`CfError::TunnelNameTaken`], even when the server only sent HTTP 409). Empty otherwise.
    pub fn codes(&self) -> Vec<i64> {
        match self {
            CfError::Api { errors, .. } => errors.iter().map(|e| e.code).collect(),
            CfError::TunnelNameTaken { .. } => vec![1013],
            CfError::TunnelHasConnections { .. } => vec![1022],
            CfError::DnsNameTaken { .. } => vec![81053],
            CfError::DnsRecordExists { .. } => vec![81057],
            CfError::AccessAppExists => vec![11010],
            _ => Vec::new(),
        }
    }

    /// True for failures worth retrying later: rate limiting (Cloudflare's or our own
    /// budget's), 5xx and transport errors.
    pub fn is_transient(&self) -> bool {
        match self {
            CfError::RateLimited { .. } | CfError::BudgetSpent { .. } | CfError::Transport(_) => {
                true
            }
            CfError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Which family of endpoints a request belongs to; decides how area-specific codes and
/// HTTP 409 are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Area {
    /// Zones, tags, policies, groups…: no special codes.
    #[default]
    Other,
    /// `/cfd_tunnel`: 1013, 1022, 409 on create.
    Tunnels,
    /// `/dns_records`: 81053/81054/81057/81058.
    Dns,
    /// `/access/apps`: 11010 and 409.
    AccessApps,
}

/// What a request is about, so that an error can name it.
#[derive(Clone, Default)]
pub(crate) struct Ctx {
    pub area: Area,
    /// Human description of the object, used by [`CfError::NotFound`].
    pub what: String,
    /// Name of the object being written (tunnel name, DNS name).
    pub name: Option<String>,
    /// ID of the object being acted on.
    pub id: Option<String>,
    /// Secrets sent in this request: scrubbed from any message the server echoes back.
    pub redact: Vec<Secret>,
    /// The request creates something without a unique key, so a repeat after a 5xx or a
    /// lost answer could duplicate it: only a 429 (refused before anything was written)
    /// is retried, and the caller decides what else to do.
    pub not_idempotent: bool,
}

impl Ctx {
    pub fn new(area: Area, what: impl Into<String>) -> Self {
        Ctx {
            area,
            what: what.into(),
            ..Ctx::default()
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// See [`Ctx::not_idempotent`](Ctx#structfield.not_idempotent).
    pub fn not_idempotent(mut self) -> Self {
        self.not_idempotent = true;
        self
    }

    pub fn redact(mut self, secret: &Secret) -> Self {
        self.redact.push(secret.clone());
        self
    }
}

/// Replaces every occurrence of a secret in `text` by `[redacted]`.
pub(crate) fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        // Very short values would scrub ordinary words; real secrets are long.
        if s.expose().len() >= 8 && out.contains(s.expose()) {
            out = out.replace(s.expose(), "[redacted]");
        }
    }
    out
}

/// Turns a failed response (non-2xx or `success: false`) into a [`CfError`].
///
/// Codes are read first (they are more precise than the status), then the status.
pub(crate) fn map_failure(
    status: u16,
    errors: Vec<ApiMessage>,
    retry_after: Option<Duration>,
    ctx: &Ctx,
) -> CfError {
    let has = |c: i64| errors.iter().any(|e| e.code == c);
    let name = || {
        ctx.name
            .clone()
            .or_else(|| ctx.id.clone())
            .unwrap_or_default()
    };

    if has(10000) || has(9109) || status == 401 || status == 403 {
        let message = if errors.is_empty() {
            format!("HTTP {status} without details")
        } else {
            fmt_messages(&errors)
        };
        return CfError::Auth { status, message };
    }

    match ctx.area {
        Area::Tunnels => {
            if has(1022) {
                return CfError::TunnelHasConnections {
                    id: ctx.id.clone().unwrap_or_default(),
                };
            }
            if has(1013) || (status == 409 && ctx.name.is_some()) {
                return CfError::TunnelNameTaken { name: name() };
            }
        }
        Area::Dns => {
            if has(81053) || has(81054) {
                return CfError::DnsNameTaken { name: name() };
            }
            if has(81057) || has(81058) {
                return CfError::DnsRecordExists { name: name() };
            }
        }
        Area::AccessApps => {
            if has(11010) || status == 409 {
                return CfError::AccessAppExists;
            }
        }
        Area::Other => {}
    }

    match status {
        404 => CfError::NotFound {
            what: ctx.what.clone(),
        },
        429 => CfError::RateLimited { retry_after },
        _ => CfError::Api { status, errors },
    }
}

/// Removes quoted values from a serde error message: `invalid type: string "…"` would
/// otherwise print part of the response, which may be a token.
pub(crate) fn sanitize_decode_error(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quotes = false;
    for ch in msg.chars() {
        if ch == '"' {
            if in_quotes {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(code: i64, m: &str) -> ApiMessage {
        ApiMessage {
            code,
            message: m.into(),
        }
    }

    #[test]
    fn display_lists_codes() {
        let e = CfError::Api {
            status: 400,
            errors: vec![msg(7003, "No route"), msg(81053, "taken")],
        };
        assert_eq!(
            e.to_string(),
            "the Cloudflare API request failed with HTTP 400: code 7003: No route; code 81053: taken"
        );
        assert_eq!(e.codes(), vec![7003, 81053]);
        assert!(!e.is_transient());
        let e = CfError::Api {
            status: 502,
            errors: vec![],
        };
        assert!(e.to_string().contains("HTTP 502: no error details"));
        assert!(e.is_transient());
    }

    #[test]
    fn codes_are_area_specific() {
        let ctx = Ctx::new(Area::Other, "zones");
        assert!(matches!(
            map_failure(400, vec![msg(1013, "x")], None, &ctx),
            CfError::Api { status: 400, .. }
        ));
        let ctx = Ctx::new(Area::Tunnels, "tunnel t").name("t");
        assert_eq!(
            map_failure(409, vec![], None, &ctx),
            CfError::TunnelNameTaken { name: "t".into() }
        );
        let ctx = Ctx::new(Area::Tunnels, "tunnel x").id("x");
        assert!(matches!(
            map_failure(409, vec![], None, &ctx),
            CfError::Api { status: 409, .. }
        ));
        assert!(matches!(
            map_failure(404, vec![], None, &ctx),
            CfError::NotFound { .. }
        ));
        assert!(matches!(
            map_failure(400, vec![msg(9109, "bad token")], None, &ctx),
            CfError::Auth { status: 400, .. }
        ));
    }

    #[test]
    fn decode_errors_lose_quoted_values() {
        assert_eq!(
            sanitize_decode_error(r#"invalid type: string "eyJhIjoi", expected u32 at line 1"#),
            r#"invalid type: string "…", expected u32 at line 1"#
        );
        let s = Secret::new("supersecretvalue");
        assert_eq!(
            scrub("bad secret supersecretvalue!", &[&s]),
            "bad secret [redacted]!"
        );
    }

    #[test]
    fn rate_limited_display() {
        let e = CfError::RateLimited {
            retry_after: Some(Duration::from_secs(120)),
        };
        assert!(e.to_string().contains("wait 120 s"), "{e}");
        assert!(e.is_transient());
    }
}
