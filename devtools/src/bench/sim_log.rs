//! The Cloudflare simulator's hooks as a benchmark uses them: the request counters and
//! log (with each request's start and end), the global latency, and the crowded account.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One API request the simulator logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    /// HTTP method.
    pub method: String,
    /// Path, from `/client/v4` on.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Arrival, in microseconds on the simulator's clock.
    pub started_us: u64,
    /// Answer ready, on the same clock.
    pub ended_us: u64,
}

impl SimRequest {
    /// `METHOD /path` with ids replaced, see [`operation`].
    pub fn operation(&self) -> String {
        operation(&self.method, &self.path)
    }

    /// Whether it changes something (not a GET or HEAD), as the simulator counts writes.
    pub fn is_write(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

/// What `GET /__sim/requests` says since the last reset.
#[derive(Debug, Clone, Default)]
pub struct SimRequests {
    /// Every API request.
    pub total: u64,
    /// Of which writes.
    pub writes: u64,
    /// The log, oldest first (the simulator keeps the last 10,000).
    pub log: Vec<SimRequest>,
}

impl SimRequests {
    /// `(start, end)` of every logged request, for [`super::levels::dependency_levels`].
    pub fn intervals(&self) -> Vec<(u64, u64)> {
        self.log
            .iter()
            .map(|r| (r.started_us, r.ended_us))
            .collect()
    }

    /// Requests counted by [`operation`].
    pub fn by_operation(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in &self.log {
            *out.entry(r.operation()).or_insert(0) += 1;
        }
        out
    }
}

/// `METHOD /path` without `/client/v4` and with every object id replaced by `{id}` (the
/// account id by `{account}`), so requests of one kind count together:
/// `GET /zones/{id}/dns_records`.
pub fn operation(method: &str, path: &str) -> String {
    const COLLECTIONS: &[&str] = &[
        "zones",
        "dns_records",
        "cfd_tunnel",
        "apps",
        "policies",
        "groups",
        "identity_providers",
        "tags",
        "connectors",
    ];
    let path = path.strip_prefix("/client/v4").unwrap_or(path);
    let mut out = Vec::new();
    let mut previous = "";
    for seg in path.split('/') {
        let shown = if previous == "accounts" {
            "{account}"
        } else if COLLECTIONS.contains(&previous) {
            "{id}"
        } else {
            seg
        };
        out.push(shown.to_string());
        previous = seg;
    }
    format!("{method} {}", out.join("/"))
}

fn hook_url(hooks_url: &str, path: &str) -> String {
    format!("{}{path}", hooks_url.trim_end_matches('/'))
}

async fn hook(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {v}"));
    }
    Ok(v)
}

/// Reads the counters and the log.
pub async fn requests(http: &reqwest::Client, hooks_url: &str) -> Result<SimRequests, String> {
    let v = hook(
        http,
        reqwest::Method::GET,
        hook_url(hooks_url, "/requests"),
        None,
    )
    .await?;
    let log = v["log"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| SimRequest {
                    method: e["method"].as_str().unwrap_or_default().to_string(),
                    path: e["path"].as_str().unwrap_or_default().to_string(),
                    status: e["status"].as_u64().unwrap_or(0) as u16,
                    started_us: e["started_us"].as_u64().unwrap_or(0),
                    ended_us: e["ended_us"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(SimRequests {
        total: v["total"].as_u64().unwrap_or(0),
        writes: v["writes"].as_u64().unwrap_or(0),
        log,
    })
}

/// Empties the counters and the log.
pub async fn reset_requests(http: &reqwest::Client, hooks_url: &str) -> Result<(), String> {
    hook(
        http,
        reqwest::Method::DELETE,
        hook_url(hooks_url, "/requests"),
        None,
    )
    .await
    .map(drop)
}

/// Adds `ms` milliseconds to every API request from now on (0: none).
pub async fn set_latency(http: &reqwest::Client, hooks_url: &str, ms: u64) -> Result<(), String> {
    hook(
        http,
        reqwest::Method::POST,
        hook_url(hooks_url, "/latency"),
        Some(json!({ "ms": ms })),
    )
    .await
    .map(drop)
}

/// How crowded an account is, besides what ecs-tunnels makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crowd {
    /// Unrelated self-hosted Access applications.
    pub access_apps: usize,
    /// Unrelated reusable Access policies.
    pub policies: usize,
    /// Unrelated DNS records, spread over every zone.
    pub dns_records: usize,
}

/// Seeds the crowd (`POST /__sim/seed`); returns the hook's answer.
pub async fn seed_crowd(
    http: &reqwest::Client,
    hooks_url: &str,
    crowd: Crowd,
) -> Result<Value, String> {
    hook(
        http,
        reqwest::Method::POST,
        hook_url(hooks_url, "/seed"),
        Some(json!({
            "access_apps": crowd.access_apps,
            "policies": crowd.policies,
            "dns_records": crowd.dns_records,
        })),
    )
    .await
}

/// `{"GET /zones": 2, ...}` as `GET /zones ×2, ...`, largest first.
pub fn describe_counts(counts: &BTreeMap<String, usize>) -> String {
    let mut v: Vec<(&String, &usize)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_hide_ids() {
        assert_eq!(operation("GET", "/client/v4/zones"), "GET /zones");
        assert_eq!(
            operation("POST", "/client/v4/zones/0123abcd/dns_records"),
            "POST /zones/{id}/dns_records"
        );
        assert_eq!(
            operation(
                "PUT",
                "/client/v4/accounts/0123456789abcdef0123456789abcdef/cfd_tunnel/6ff4-aa/configurations"
            ),
            "PUT /accounts/{account}/cfd_tunnel/{id}/configurations"
        );
        assert_eq!(
            operation("GET", "/client/v4/accounts/a/access/organizations"),
            "GET /accounts/{account}/access/organizations"
        );
        assert_eq!(
            operation("DELETE", "/client/v4/accounts/a/access/apps/x"),
            "DELETE /accounts/{account}/access/apps/{id}"
        );
    }

    #[test]
    fn counts_are_described_largest_first() {
        let c: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 3)]
            .into_iter()
            .collect();
        assert_eq!(describe_counts(&c), "b ×3, a ×1");
    }
}
