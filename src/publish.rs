//! Connector-aware publishing: a hostname's DNS record is made only once cloudflared has
//! connected the tunnel (`ECS_TUNNELS_PUBLISH=connected`, the default), so visitors never
//! meet Cloudflare's "tunnel not connected" page. The invocation that wrote the token
//! waits a little for the sidecar ([`wait_for_connectors`]); after that, a delayed
//! follow-up message and the sweep look again.

use crate::cloudflare::CfError;
use crate::context::Deps;
use std::time::Duration;

/// When a new hostname's DNS record is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Once the tunnel has at least one cloudflared connection (default).
    #[default]
    Connected,
    /// As soon as the Access application and the configuration exist (the behaviour
    /// before connector-aware publishing).
    Immediately,
}

/// Default for `ECS_TUNNELS_CONNECT_WAIT`: how long the invocation that wrote a token
/// waits for the sidecar to connect.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(20);
/// Default for `ECS_TUNNELS_CONNECT_GRACE`: how long a service may run tasks with its
/// tunnel unconnected before its task definition is diagnosed.
pub const DEFAULT_CONNECT_GRACE: Duration = Duration::from_secs(180);
/// Default for `ECS_TUNNELS_FOLLOW_UP_DELAY`: the delay of the follow-up message.
pub const DEFAULT_FOLLOW_UP_DELAY: Duration = Duration::from_secs(60);
/// SQS's longest `DelaySeconds`.
pub const MAX_FOLLOW_UP_DELAY: Duration = Duration::from_secs(900);
/// Connection reads in one short wait.
pub const WAIT_READS: usize = 3;

/// The publishing settings (`ECS_TUNNELS_PUBLISH`, `_CONNECT_WAIT`, `_CONNECT_GRACE`,
/// `_FOLLOW_UP_QUEUE_URL`, `_FOLLOW_UP_DELAY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// `ECS_TUNNELS_PUBLISH`.
    pub mode: PublishMode,
    /// `ECS_TUNNELS_CONNECT_WAIT` (0 turns the short wait off).
    pub connect_wait: Duration,
    /// `ECS_TUNNELS_CONNECT_GRACE`.
    pub connect_grace: Duration,
    /// `ECS_TUNNELS_FOLLOW_UP_QUEUE_URL`: the event queue, where a delayed follow-up
    /// goes; `None` (the CLI, or an install without the queue): the sweep looks again.
    pub follow_up_queue: Option<String>,
    /// `ECS_TUNNELS_FOLLOW_UP_DELAY` (at most 15 minutes, SQS's limit).
    pub follow_up_delay: Duration,
}

impl Default for PublishSettings {
    fn default() -> Self {
        PublishSettings {
            mode: PublishMode::Connected,
            connect_wait: DEFAULT_CONNECT_WAIT,
            connect_grace: DEFAULT_CONNECT_GRACE,
            follow_up_queue: None,
            follow_up_delay: DEFAULT_FOLLOW_UP_DELAY,
        }
    }
}

impl PublishSettings {
    /// Reads the settings through `get` (an unset or blank variable is `None`).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mode = match get("ECS_TUNNELS_PUBLISH").as_deref().map(str::trim) {
            None | Some("connected") => PublishMode::Connected,
            Some("immediately") => PublishMode::Immediately,
            Some(other) => {
                return Err(format!(
                    "ECS_TUNNELS_PUBLISH {other:?} is not a publishing mode: use connected (a hostname goes live once cloudflared has connected) or immediately"
                ))
            }
        };
        let duration = |key: &str, default: Duration, max: Duration| match get(key) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.trim())
                .ok()
                .filter(|d| *d <= max)
                .ok_or_else(|| {
                    format!(
                        "{key} {v:?} is not a duration of at most {}, such as 20s",
                        humantime::format_duration(max)
                    )
                }),
        };
        let day = Duration::from_secs(86400);
        Ok(PublishSettings {
            mode,
            connect_wait: duration(
                "ECS_TUNNELS_CONNECT_WAIT",
                DEFAULT_CONNECT_WAIT,
                Duration::from_secs(120),
            )?,
            connect_grace: duration("ECS_TUNNELS_CONNECT_GRACE", DEFAULT_CONNECT_GRACE, day)?,
            follow_up_queue: get("ECS_TUNNELS_FOLLOW_UP_QUEUE_URL").map(|q| q.trim().to_string()),
            follow_up_delay: duration(
                "ECS_TUNNELS_FOLLOW_UP_DELAY",
                DEFAULT_FOLLOW_UP_DELAY,
                MAX_FOLLOW_UP_DELAY,
            )?,
        })
    }
}

/// Connectors attached to a tunnel with at least one live connection (one read).
pub async fn count_connectors(deps: &Deps, tunnel_id: &str) -> Result<usize, CfError> {
    Ok(deps
        .cf
        .list_tunnel_connections(tunnel_id)
        .await?
        .iter()
        .filter(|c| !c.conns.is_empty())
        .count())
}

/// When the reads of a short wait of `total` happen, counted from its start: at a
/// quarter, three fifths and all of it (5 s, 12 s and 20 s of the default), so a sidecar
/// that connects early is seen early and the wait costs at most [`WAIT_READS`] reads.
pub fn wait_schedule(total: Duration) -> [Duration; WAIT_READS] {
    [total / 4, total * 3 / 5, total]
}

/// The short wait: reads the tunnel's connectors on [`wait_schedule`] until one is
/// there. Returns how many are connected (0: none came in time).
pub async fn wait_for_connectors(
    deps: &Deps,
    tunnel_id: &str,
    total: Duration,
) -> Result<usize, CfError> {
    if total.is_zero() {
        return Ok(0);
    }
    let start = tokio::time::Instant::now();
    for at in wait_schedule(total) {
        tokio::time::sleep_until(start + at).await;
        let n = count_connectors(deps, tunnel_id).await?;
        if n > 0 {
            return Ok(n);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<PublishSettings, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PublishSettings::from_lookup(&|k: &str| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_bad_values() {
        assert_eq!(settings(&[]).unwrap(), PublishSettings::default());
        let s = settings(&[
            ("ECS_TUNNELS_PUBLISH", "immediately"),
            ("ECS_TUNNELS_CONNECT_WAIT", "2s"),
            ("ECS_TUNNELS_FOLLOW_UP_DELAY", "15m"),
        ])
        .unwrap();
        assert_eq!(s.mode, PublishMode::Immediately);
        assert_eq!(s.connect_wait, Duration::from_secs(2));
        let e = settings(&[("ECS_TUNNELS_PUBLISH", "later")]).unwrap_err();
        assert!(e.contains("use connected"), "{e}");
        let e = settings(&[("ECS_TUNNELS_FOLLOW_UP_DELAY", "16m")]).unwrap_err();
        assert!(e.contains("at most 15m"), "{e}");
    }

    #[test]
    fn the_short_wait_reads_three_times_within_its_window() {
        let s = wait_schedule(DEFAULT_CONNECT_WAIT);
        assert_eq!(
            s.map(|d| d.as_secs()),
            [5, 12, 20],
            "reads at 5 s, 12 s and 20 s"
        );
    }
}
