//! CloudWatch metrics as Embedded Metric Format log lines: one JSON line per invocation on
//! stdout, which CloudWatch turns into metrics with no API call. Namespace `ecs-tunnels`,
//! dimension `Trigger` (`event`, `sweep`, `rotate`, `custom_resource`, `secrets_rotation`).
//!
//! Metrics: `CloudflareCalls`, `CloudflareRateLimited` (429s), `CloudflareBudgetWait`
//! (ms requests waited for the function's share of the API budget) and
//! `CloudflareBudgetRefused` (requests not sent because their turn came after the
//! deadline), `Changes` and
//! `Change_<kind>` (e.g. `Change_create_tunnel`), `Errors` and `Error_<kind>` (`invalid`,
//! `conflict`, `cloudflare`, `aws`, ...), `ServicesManaged` and `SweepDuration` (ms) for
//! sweeps, `Rotated` for rotations.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Counts gathered from one invocation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct InvocationMetrics {
    /// Trigger kind (the dimension).
    pub trigger: &'static str,
    /// Cloudflare calls made.
    pub cloudflare_calls: u64,
    /// 429 answers seen.
    pub rate_limited: u64,
    /// Changes by kind.
    pub changes: BTreeMap<String, u64>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Other metrics (name → value, unit).
    pub extra: Vec<(&'static str, f64, &'static str)>,
}

impl InvocationMetrics {
    /// Reads change and error counts out of a handler's response.
    pub fn from_response(trigger: &'static str, response: &Value) -> Self {
        let mut m = InvocationMetrics {
            trigger,
            ..Default::default()
        };
        for o in response["outcomes"].as_array().into_iter().flatten().chain(
            response["sweep"]["outcomes"]
                .as_array()
                .into_iter()
                .flatten(),
        ) {
            if let Some(kind) = o["error_kind"].as_str() {
                *m.errors.entry(kind.to_string()).or_default() += 1;
            }
            if response.get("sweep").is_none() {
                for c in o["changes"].as_array().into_iter().flatten() {
                    if let Some(kind) = c["kind"].as_str() {
                        *m.changes.entry(kind.to_string()).or_default() += 1;
                    }
                }
            }
        }
        if let Some(sweep) = response.get("sweep") {
            for (kind, n) in sweep["changes"].as_object().into_iter().flatten() {
                *m.changes.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
            m.extra.push((
                "ServicesManaged",
                sweep["managed"].as_f64().unwrap_or(0.0),
                "Count",
            ));
            m.extra.push((
                "ServicesWithoutConnector",
                sweep["without_connector"].as_f64().unwrap_or(0.0),
                "Count",
            ));
            m.extra.push((
                "SweepDuration",
                sweep["duration_ms"].as_f64().unwrap_or(0.0),
                "Milliseconds",
            ));
        }
        if let Some(rotations) = response["rotations"].as_array() {
            let rotated = rotations.iter().filter(|r| r["rotated"] == true).count();
            let failed = rotations.iter().filter(|r| r["error"].is_string()).count();
            m.extra.push(("Rotated", rotated as f64, "Count"));
            if failed > 0 {
                m.errors.insert("rotation".into(), failed as u64);
            }
        }
        m
    }

    /// The EMF line.
    pub fn to_emf(&self, timestamp_ms: u128) -> Value {
        let mut fields = Map::new();
        let mut defs = Vec::new();
        let mut put = |name: String, value: f64, unit: &str| {
            defs.push(json!({"Name": name, "Unit": unit}));
            fields.insert(name, json!(value));
        };
        put(
            "CloudflareCalls".into(),
            self.cloudflare_calls as f64,
            "Count",
        );
        put(
            "CloudflareRateLimited".into(),
            self.rate_limited as f64,
            "Count",
        );
        put(
            "Changes".into(),
            self.changes.values().sum::<u64>() as f64,
            "Count",
        );
        put(
            "Errors".into(),
            self.errors.values().sum::<u64>() as f64,
            "Count",
        );
        for (k, v) in &self.changes {
            put(format!("Change_{k}"), *v as f64, "Count");
        }
        for (k, v) in &self.errors {
            put(format!("Error_{k}"), *v as f64, "Count");
        }
        for (name, value, unit) in &self.extra {
            put(name.to_string(), *value, unit);
        }
        fields.insert("Trigger".into(), json!(self.trigger));
        fields.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [{"Namespace": "ecs-tunnels", "Dimensions": [["Trigger"]], "Metrics": defs}]}),
        );
        Value::Object(fields)
    }

    /// Prints the EMF line on stdout.
    pub fn emit(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        println!("{}", self.to_emf(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_from_an_event_response() {
        let resp = json!({"outcomes": [
            {"state": "ready", "changes": [{"kind": "create_tunnel"}, {"kind": "create_dns"}]},
            {"state": "error", "error_kind": "invalid", "changes": []}]});
        let mut m = InvocationMetrics::from_response("event", &resp);
        m.cloudflare_calls = 20;
        let line = m.to_emf(1_700_000_000_000);
        assert_eq!(line["CloudflareCalls"], 20.0);
        assert_eq!(line["Change_create_tunnel"], 1.0);
        assert_eq!(line["Changes"], 2.0);
        assert_eq!(line["Error_invalid"], 1.0);
        assert_eq!(line["Trigger"], "event");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ecs-tunnels");
        assert_eq!(directive["Dimensions"], json!([["Trigger"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for n in names {
            assert!(
                line.get(n).is_some(),
                "every declared metric has a value: {n}"
            );
        }
    }

    #[test]
    fn sweep_metrics() {
        let resp = json!({"sweep": {"managed": 1000, "duration_ms": 2040, "changes": {"put_config": 2}, "outcomes": []}});
        let line = InvocationMetrics::from_response("sweep", &resp).to_emf(0);
        assert_eq!(line["ServicesManaged"], 1000.0);
        assert_eq!(line["SweepDuration"], 2040.0);
        assert_eq!(line["Change_put_config"], 2.0);
    }
}
