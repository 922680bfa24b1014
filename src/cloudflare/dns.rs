//! DNS records: `/zones/{zone_id}/dns_records`.

use super::client::CloudflareClient;
use super::error::{Area, CfError, Ctx};
use super::wire::{null_default, seg};
use reqwest::Method;
use serde::{Deserialize, Serialize};

/// Filters for [`CloudflareClient::list_dns_records`]. Cloudflare matches them
/// case-insensitively; the client applies the same filters to the results again, so a
/// server that ignores a filter cannot widen the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsQuery {
    /// Exact record name (FQDN), query `name`.
    pub name: Option<String>,
    /// Record type such as `CNAME`, query `type`.
    pub record_type: Option<String>,
    /// Exact content, query `content`.
    pub content: Option<String>,
    /// Comment prefix (the ownership marker), query `comment.startswith`.
    pub comment_startswith: Option<String>,
    /// Match a record when any filter matches (query `match=any`) instead of all: one
    /// read returns whatever is at a hostname and every record carrying our marker.
    pub match_any: bool,
}

impl DnsQuery {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (key, value) in [
            ("name", &self.name),
            ("type", &self.record_type),
            ("content", &self.content),
            ("comment.startswith", &self.comment_startswith),
        ] {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        }
        if self.match_any && q.len() > 1 {
            q.push(("match", "any".to_string()));
        }
        q
    }

    fn matches(&self, r: &DnsRecord) -> bool {
        fn norm(s: &str) -> String {
            s.trim_end_matches('.').to_ascii_lowercase()
        }
        let eq = |want: &Option<String>, got: &str| want.as_ref().map(|w| norm(w) == norm(got));
        let tests = [
            eq(&self.name, &r.name),
            eq(&self.record_type, &r.record_type),
            eq(&self.content, &r.content),
            self.comment_startswith.as_ref().map(|p| {
                r.comment
                    .as_deref()
                    .is_some_and(|c| c.to_lowercase().starts_with(&p.to_lowercase()))
            }),
        ];
        let mut given = tests.into_iter().flatten().peekable();
        if given.peek().is_none() {
            return true;
        }
        if self.match_any {
            given.any(|t| t)
        } else {
            given.all(|t| t)
        }
    }
}

/// A DNS record as returned by the API (unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Record ID.
    pub id: String,
    /// Full name (FQDN).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, … (JSON `type`).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub record_type: String,
    /// Content, e.g. `<tunnel-id>.cfargotunnel.com`.
    #[serde(default, deserialize_with = "null_default")]
    pub content: String,
    /// Whether traffic goes through Cloudflare's proxy.
    #[serde(default, deserialize_with = "null_default")]
    pub proxied: bool,
    /// TTL in seconds; 1 means automatic.
    #[serde(default, deserialize_with = "null_default")]
    pub ttl: u32,
    /// Free-text comment (the ownership marker).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Body of a DNS record create or full (PUT) update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordBody {
    /// Record type (JSON `type`), e.g. `CNAME`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Full name (FQDN).
    pub name: String,
    /// Content, e.g. `<tunnel-id>.cfargotunnel.com`.
    pub content: String,
    /// Proxy through Cloudflare (must be `true` for a tunnel CNAME).
    pub proxied: bool,
    /// TTL; send `1` (automatic).
    pub ttl: u32,
    /// Comment (ownership marker); left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn records_path(zone_id: &str) -> String {
    format!("/zones/{}/dns_records", seg(zone_id))
}

fn record_path(zone_id: &str, id: &str) -> String {
    format!("/zones/{}/dns_records/{}", seg(zone_id), seg(id))
}

impl CloudflareClient {
    /// DNS records of a zone matching `q` (all pages, 100 per page).
    pub async fn list_dns_records(
        &self,
        zone_id: &str,
        q: &DnsQuery,
    ) -> Result<Vec<DnsRecord>, CfError> {
        let ctx = Ctx::new(Area::Dns, format!("DNS zone {zone_id}"));
        let records: Vec<DnsRecord> = self
            .get_all(&records_path(zone_id), &q.params(), 5000, &ctx)
            .await?;
        Ok(records.into_iter().filter(|r| q.matches(r)).collect())
    }

    /// Creates a record. Name clashes come back as [`CfError::DnsNameTaken`] or
    /// [`CfError::DnsRecordExists`].
    pub async fn create_dns_record(
        &self,
        zone_id: &str,
        r: &DnsRecordBody,
    ) -> Result<DnsRecord, CfError> {
        let ctx = Ctx::new(Area::Dns, format!("DNS zone {zone_id}")).name(&r.name);
        self.send_json(Method::POST, &records_path(zone_id), r, &ctx)
            .await
    }

    /// Puts the fields ecs-tunnels owns back on a record (`PATCH` with type, name,
    /// content and proxied): tags, settings, a comment or a TTL someone added stay as
    /// they are. `name` is the record's own (the 2024 OpenAPI document requires it in a
    /// PATCH body), so sending it changes nothing.
    pub async fn repair_dns_record(
        &self,
        zone_id: &str,
        id: &str,
        r: &DnsRecordBody,
    ) -> Result<DnsRecord, CfError> {
        let ctx = Ctx::new(Area::Dns, format!("DNS record {id} ({})", r.name))
            .name(&r.name)
            .id(id);
        let body = serde_json::json!({
            "type": r.record_type,
            "name": r.name,
            "content": r.content,
            "proxied": r.proxied,
        });
        self.send_json(Method::PATCH, &record_path(zone_id, id), &body, &ctx)
            .await
    }

    /// Deletes a record; a record that is already gone (404) is success.
    pub async fn delete_dns_record(&self, zone_id: &str, id: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Dns, format!("DNS record {id}")).id(id);
        self.delete_idempotent(&record_path(zone_id, id), None, &ctx)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_uses_wire_names() {
        let b = DnsRecordBody {
            record_type: "CNAME".into(),
            name: "a.example.com".into(),
            content: "t.cfargotunnel.com".into(),
            proxied: true,
            ttl: 1,
            comment: None,
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"type":"CNAME","name":"a.example.com","content":"t.cfargotunnel.com","proxied":true,"ttl":1})
        );
        let b = DnsRecordBody {
            comment: Some("managed-by=x".into()),
            ..b
        };
        assert_eq!(serde_json::to_value(&b).unwrap()["comment"], "managed-by=x");
    }

    #[test]
    fn record_is_tolerant() {
        let r: DnsRecord = serde_json::from_value(json!({
            "id": "r1", "name": "a.example.com", "type": "CNAME", "content": "x", "proxied": true,
            "ttl": 1, "comment": null, "tags": [], "meta": {}, "proxiable": true, "settings": {}
        }))
        .unwrap();
        assert_eq!(r.record_type, "CNAME");
        assert_eq!(r.comment, None);
        let r: DnsRecord = serde_json::from_value(json!({"id": "r2", "proxied": null})).unwrap();
        assert!(!r.proxied);
    }

    #[test]
    fn query_params_and_local_filter() {
        let q = DnsQuery {
            name: Some("A.example.com".into()),
            record_type: Some("CNAME".into()),
            content: None,
            comment_startswith: Some("managed-by=".into()),
            match_any: false,
        };
        assert_eq!(
            q.params(),
            vec![
                ("name", "A.example.com".to_string()),
                ("type", "CNAME".to_string()),
                ("comment.startswith", "managed-by=".to_string())
            ]
        );
        let mut r = DnsRecord {
            id: "1".into(),
            name: "a.example.com".into(),
            record_type: "CNAME".into(),
            content: "x".into(),
            proxied: true,
            ttl: 1,
            comment: Some("Managed-By=ecs".into()),
        };
        assert!(q.matches(&r));
        r.comment = None;
        assert!(!q.matches(&r));
        assert!(DnsQuery::default().matches(&r));
        // `match=any`: at the name, or carrying the marker.
        let any = DnsQuery {
            name: Some("a.example.com".into()),
            comment_startswith: Some("managed-by=".into()),
            match_any: true,
            ..Default::default()
        };
        assert!(any.params().contains(&("match", "any".to_string())));
        assert!(any.matches(&r), "at the name, no marker");
        r.name = "b.example.com".into();
        assert!(!any.matches(&r), "neither");
        r.comment = Some("managed-by=ecs".into());
        assert!(any.matches(&r), "the marker elsewhere");
    }
}
