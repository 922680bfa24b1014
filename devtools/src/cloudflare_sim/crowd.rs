//! A crowded account in one call (`POST /__sim/seed`): Access applications, reusable
//! policies and DNS records that belong to someone else (a person, Terraform, another
//! tool), so a benchmark can show what one service costs in a busy account next to an
//! empty one. Seeding through the API would take thousands of requests; this writes the
//! state directly, as the handlers would have stored it.
//!
//! Nothing made here carries an ecs-tunnels owner marker: names start with `crowd-`, no
//! Access tag is set, and a DNS comment, when there is one, names another tool. Objects
//! are spread round-robin over the zones that exist, in order, so every zone (the ones a
//! benchmark's hostnames use included) holds its share of records and applications.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::model::{AccessApp, DnsRecord, Policy, Sim};
use super::util::{hex, hex_id, now_rfc3339, random_bytes, uuid};

/// Largest count of one kind a single call may ask for.
const MAX_PER_KIND: usize = 100_000;

/// How many unrelated objects to add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Crowd {
    /// Self-hosted Access applications, each linked to one of the new policies (if any).
    pub access_apps: usize,
    /// Reusable Access policies.
    pub policies: usize,
    /// DNS records (A, AAAA, TXT and CNAME in turn).
    pub dns_records: usize,
}

impl Crowd {
    /// Reads `{"access_apps", "policies", "dns_records"}` (each optional, default 0).
    pub fn parse(body: &Map<String, Value>) -> Result<Crowd, String> {
        const KEYS: [&str; 3] = ["access_apps", "policies", "dns_records"];
        if let Some(k) = body.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "{k}: unknown; give access_apps, policies, dns_records"
            ));
        }
        let count = |k: &str| -> Result<usize, String> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n <= MAX_PER_KIND)
                    .ok_or_else(|| format!("{k}: must be an integer from 0 to {MAX_PER_KIND}")),
            }
        };
        Ok(Crowd {
            access_apps: count("access_apps")?,
            policies: count("policies")?,
            dns_records: count("dns_records")?,
        })
    }
}

/// Adds the crowd to `sim` and returns what was added (records by zone too) and the
/// account's totals. Names carry a running number, so seeding twice adds more.
pub(crate) fn seed(sim: &mut Sim, crowd: &Crowd) -> Result<Value, String> {
    let zones: Vec<(String, String)> = sim
        .zones
        .iter()
        .map(|z| (z.id.clone(), z.name.clone()))
        .collect();
    if zones.is_empty() && (crowd.access_apps > 0 || crowd.dns_records > 0) {
        return Err("the account has no zone to put applications or records in".into());
    }
    let policy_ids = add_policies(sim, crowd.policies);
    add_apps(sim, crowd.access_apps, &zones, &policy_ids);
    let by_zone = add_records(sim, crowd.dns_records, &zones);
    Ok(json!({
        "added": {
            "access_apps": crowd.access_apps,
            "policies": crowd.policies,
            "dns_records": crowd.dns_records,
            "dns_records_by_zone": by_zone,
        },
        "totals": {
            "zones": sim.zones.len(),
            "access_apps": sim.apps.len(),
            "policies": sim.policies.len(),
            "dns_records": sim.dns.len(),
        },
    }))
}

fn add_policies(sim: &mut Sim, n: usize) -> Vec<String> {
    let now = now_rfc3339();
    let first = sim.policies.len();
    (first..first + n)
        .map(|i| {
            let policy = Policy {
                id: uuid(),
                name: format!("crowd-policy-{i:05}"),
                decision: "allow".into(),
                include: vec![
                    json!({"email_domain": {"domain": format!("team{}.example.org", i % 7)}}),
                ],
                exclude: vec![],
                require: vec![],
                session_duration: "24h".into(),
                extras: Map::new(),
                created_at: now.clone(),
                updated_at: now.clone(),
            };
            let id = policy.id.clone();
            sim.policies.push(policy);
            id
        })
        .collect()
}

fn add_apps(sim: &mut Sim, n: usize, zones: &[(String, String)], policy_ids: &[String]) {
    let now = now_rfc3339();
    let first = sim.apps.len();
    for (k, i) in (first..first + n).enumerate() {
        let domain = format!("crowd-app-{i:05}.{}", zones[k % zones.len()].1);
        let policies = if policy_ids.is_empty() {
            vec![]
        } else {
            vec![(policy_ids[k % policy_ids.len()].clone(), 1)]
        };
        sim.apps.push(AccessApp {
            id: uuid(),
            aud: hex(&random_bytes(32)),
            name: format!("crowd-app-{i:05}"),
            destinations: vec![json!({"type": "public", "uri": domain})],
            domain,
            app_type: "self_hosted".into(),
            session_duration: "24h".into(),
            allowed_idps: vec![],
            auto_redirect_to_identity: false,
            app_launcher_visible: true,
            tags: vec![],
            policies,
            extras: Map::new(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
    }
}

fn add_records(sim: &mut Sim, n: usize, zones: &[(String, String)]) -> BTreeMap<String, usize> {
    let now = now_rfc3339();
    let first = sim.dns.len();
    let mut by_zone = BTreeMap::new();
    for (k, i) in (first..first + n).enumerate() {
        let (zone_id, zone_name) = &zones[k % zones.len()];
        *by_zone.entry(zone_name.clone()).or_insert(0) += 1;
        let (rtype, content, proxied, ttl) = match i % 4 {
            0 => ("A", format!("192.0.2.{}", i % 254 + 1), true, 1),
            1 => ("AAAA", format!("2001:db8::{:x}", i % 65535 + 1), false, 300),
            2 => ("TXT", format!("\"crowd record {i}\""), false, 300),
            _ => ("CNAME", "www.example.org".to_string(), true, 1),
        };
        let comment = (i % 3 == 0).then(|| "managed by terraform".to_string());
        sim.dns.push(DnsRecord {
            id: hex_id(),
            zone_id: zone_id.clone(),
            name: format!("crowd-{i:05}.{zone_name}"),
            rtype: rtype.into(),
            content,
            proxied,
            ttl,
            priority: None,
            comment_modified_on: comment.as_ref().map(|_| now.clone()),
            comment,
            tags: vec![],
            settings: Map::new(),
            created_on: now.clone(),
            modified_on: now.clone(),
            tags_modified_on: None,
        });
    }
    by_zone
}
