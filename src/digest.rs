//! What a converged reconcile was asked for, in 16 hex digits the status tag carries
//! (`ready <tunnel-id> digest:<16 hex>`), so the next Lambda can tell from the service
//! alone that nothing it would read from ECS changed since: the first 8 digits hash the
//! hostname tag, the last 8 everything that shapes the plan (every `ecs-tunnels:` tag
//! but the status, the task definition when the origin comes from it, the install's
//! settings, the version of ecs-tunnels). A hint, never an input: a match lets a routine
//! event skip Cloudflare and tells the reads that our Access application's domain is
//! still the first hostname; the sweep still checks the real state.

use crate::spec::{TAG_HOSTNAME, TAG_ORIGIN, TAG_PREFIX, TAG_STATUS};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Label before the digits in the status tag.
const LABEL: &str = "digest:";

/// The digest of one service's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecDigest {
    hosts: String,
    full: String,
}

fn hex8(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SpecDigest {
    /// Digests a service's tags; `task_definition` counts only when no origin tag is set
    /// (the default origin comes from it); `settings` is the install's configuration
    /// that shapes a plan ([`crate::config::Config::plan_fingerprint`]).
    pub fn of(
        tags: &BTreeMap<String, String>,
        task_definition: Option<&str>,
        settings: &str,
    ) -> Self {
        let hostname = tags
            .get(TAG_HOSTNAME)
            .map(|h| h.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut parts: Vec<&str> = vec![env!("CARGO_PKG_VERSION"), settings];
        for (k, v) in tags
            .iter()
            .filter(|(k, _)| k.starts_with(TAG_PREFIX) && k.as_str() != TAG_STATUS)
        {
            parts.push(k);
            parts.push(v);
        }
        if !tags.contains_key(TAG_ORIGIN) {
            parts.push(task_definition.unwrap_or(""));
        }
        SpecDigest {
            hosts: hex8(&[&hostname]),
            full: hex8(&parts),
        }
    }

    /// The digest recorded in a status tag value, if any.
    pub fn from_status(status: &str) -> Option<Self> {
        let digits = status
            .split_whitespace()
            .find_map(|w| w.strip_prefix(LABEL))?;
        (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit())).then(|| SpecDigest {
            hosts: digits[..8].to_ascii_lowercase(),
            full: digits[8..].to_ascii_lowercase(),
        })
    }

    /// The status-tag word: `digest:<16 hex>`.
    pub fn tag_word(&self) -> String {
        format!("{LABEL}{}{}", self.hosts, self.full)
    }

    /// The hostname tag is the same as when `other` was recorded.
    pub fn same_hosts(&self, other: &SpecDigest) -> bool {
        self.hosts == other.hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_digest_round_trips_through_the_status_tag() {
        let d = SpecDigest::of(&tags(&[(TAG_HOSTNAME, "web.example.com")]), None, "s");
        let status = crate::status::ready("abc", 0, Some(&d));
        assert_eq!(SpecDigest::from_status(&status), Some(d));
        assert_eq!(SpecDigest::from_status("ready abc"), None);
        assert_eq!(SpecDigest::from_status("ready abc digest:xyz"), None);
    }

    #[test]
    fn only_our_tags_the_task_definition_and_the_settings_count() {
        let base = tags(&[
            (TAG_HOSTNAME, "web.example.com"),
            ("ecs-tunnels:allow-emails", "a@example.com"),
            ("team", "x"),
        ]);
        let d = SpecDigest::of(&base, Some("td:1"), "s");
        let mut other = base.clone();
        other.insert("team".into(), "y".into());
        other.insert(TAG_STATUS.into(), "ready abc".into());
        assert_eq!(SpecDigest::of(&other, Some("td:1"), "s"), d);
        other.insert("ecs-tunnels:allow-emails".into(), "b@example.com".into());
        let changed = SpecDigest::of(&other, Some("td:1"), "s");
        assert_ne!(changed, d);
        assert!(changed.same_hosts(&d), "the hostname tag did not change");
        assert_ne!(SpecDigest::of(&base, Some("td:2"), "s"), d);
        assert_ne!(SpecDigest::of(&base, Some("td:1"), "t"), d);
        let mut with_origin = base.clone();
        with_origin.insert(TAG_ORIGIN.into(), "http://localhost:80".into());
        assert_eq!(
            SpecDigest::of(&with_origin, Some("td:1"), "s"),
            SpecDigest::of(&with_origin, Some("td:2"), "s"),
            "an origin tag makes the task definition irrelevant"
        );
        let mut moved = base.clone();
        moved.insert(TAG_HOSTNAME.into(), "api.example.com".into());
        assert!(!SpecDigest::of(&moved, Some("td:1"), "s").same_hosts(&d));
    }
}
