//! Cloudflare Tunnels (remotely managed): `/accounts/{account_id}/cfd_tunnel`.

use super::client::CloudflareClient;
use super::error::{Area, CfError, Ctx};
use super::wire::{null_default, seg};
use crate::secret::Secret;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Filters for [`CloudflareClient::list_tunnels`]. Soft-deleted tunnels are always left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelQuery {
    /// Exact tunnel name (query `name`).
    pub name: Option<String>,
    /// Name prefix (query `include_prefix`).
    pub include_prefix: Option<String>,
}

/// A tunnel as returned by the API. `Debug` never shows the token (it is a [`Secret`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tunnel {
    /// Tunnel UUID.
    pub id: String,
    /// Tunnel name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Deletion time; `None` while the tunnel exists.
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// `inactive` (never connected), `healthy`, `degraded` or `down`.
    #[serde(default)]
    pub status: Option<String>,
    /// When the tunnel's first current connection was made (RFC 3339); `None` while it
    /// has none.
    #[serde(default)]
    pub conns_active_at: Option<String>,
    /// When the tunnel lost its last connection (RFC 3339); `None` while connected or
    /// never connected.
    #[serde(default)]
    pub conns_inactive_at: Option<String>,
    /// `cloudflare` (remotely managed) or `local`.
    #[serde(default)]
    pub config_src: Option<String>,
    /// Connector token; present in create and PATCH responses only. Never serialised.
    #[serde(default, skip_serializing)]
    pub token: Option<Secret>,
}

impl Tunnel {
    /// True when the tunnel has been (soft-)deleted. An empty string or Go's zero time
    /// count as "not deleted".
    pub fn is_deleted(&self) -> bool {
        self.deleted_at
            .as_deref()
            .is_some_and(|d| !d.is_empty() && !d.starts_with("0001-01-01"))
    }

    /// True when at least one cloudflared connection is up: status `healthy` or
    /// `degraded` (some connections down, the tunnel still serving).
    pub fn is_connected(&self) -> bool {
        matches!(self.status.as_deref(), Some("healthy" | "degraded"))
    }

    /// Since when the tunnel has had no connection: when its last one closed, or, for a
    /// tunnel never connected, when it was made. `None` while connected (or when
    /// Cloudflare gave no time).
    pub fn disconnected_since(&self) -> Option<std::time::SystemTime> {
        if self.is_connected() {
            return None;
        }
        let at = |t: &Option<String>| {
            t.as_deref()
                .filter(|s| !s.is_empty() && !s.starts_with("0001-01-01"))
                .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
        };
        at(&self.conns_inactive_at).or_else(|| at(&self.created_at))
    }
}

/// A tunnel's remote configuration (the `config` object of `.../configurations`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TunnelConfig {
    /// Ingress rules; the last one must be a catch-all such as `http_status:404`.
    #[serde(default, deserialize_with = "null_default")]
    pub ingress: Vec<IngressRule>,
    /// Defaults for every rule (JSON `originRequest`).
    #[serde(
        rename = "originRequest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub origin_request: Option<Value>,
}

/// One ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngressRule {
    /// Public hostname; `None` for the catch-all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path filter (regex); usually `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Origin, e.g. `http://orders.internal:8080` or `http_status:404`.
    #[serde(default, deserialize_with = "null_default")]
    pub service: String,
    /// Per-rule origin settings (JSON `originRequest`).
    #[serde(
        rename = "originRequest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub origin_request: Option<OriginRequest>,
}

/// `originRequest` of a rule: the Access check, plus any other key kept as JSON (timeouts
/// are integer seconds, e.g. `"connectTimeout": 30`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginRequest {
    /// Make cloudflared validate the Access JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<OriginAccess>,
    /// Every other `originRequest` key, as sent or received.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `originRequest.access`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginAccess {
    /// Reject requests without a valid Access JWT.
    #[serde(default, deserialize_with = "null_default")]
    pub required: bool,
    /// Team subdomain (JSON `teamName`), see [`super::Organization::team_name`].
    #[serde(rename = "teamName", default, deserialize_with = "null_default")]
    pub team_name: String,
    /// Access application audience tags (JSON `audTag`).
    #[serde(rename = "audTag", default, deserialize_with = "null_default")]
    pub aud_tag: Vec<String>,
}

/// A cloudflared instance connected to a tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    /// Connector (client) ID.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Its connections to Cloudflare data centres, as JSON.
    #[serde(default, deserialize_with = "null_default")]
    pub conns: Vec<Value>,
}

/// `result` of `GET .../configurations`.
#[derive(Deserialize)]
struct ConfigResult {
    #[serde(default)]
    config: Option<TunnelConfig>,
}

impl CloudflareClient {
    fn tunnels_path(&self) -> String {
        self.account_path("/cfd_tunnel")
    }

    fn tunnel_path(&self, id: &str, rest: &str) -> String {
        self.account_path(&format!("/cfd_tunnel/{}{rest}", seg(id)))
    }

    /// Live (not deleted) tunnels matching `q`, all pages, 1000 per page. The filters are
    /// applied again to the results.
    pub async fn list_tunnels(&self, q: &TunnelQuery) -> Result<Vec<Tunnel>, CfError> {
        let mut query = vec![("is_deleted", "false".to_string())];
        if let Some(n) = &q.name {
            query.push(("name", n.clone()));
        }
        if let Some(p) = &q.include_prefix {
            query.push(("include_prefix", p.clone()));
        }
        let ctx = Ctx::new(Area::Tunnels, "tunnel list");
        let tunnels: Vec<Tunnel> = self
            .get_all(&self.tunnels_path(), &query, 1000, &ctx)
            .await?;
        Ok(tunnels
            .into_iter()
            .filter(|t| !t.is_deleted())
            .filter(|t| q.name.as_ref().is_none_or(|n| &t.name == n))
            .filter(|t| {
                q.include_prefix
                    .as_ref()
                    .is_none_or(|p| t.name.starts_with(p.as_str()))
            })
            .collect())
    }

    /// The live tunnel with exactly this name, if any.
    pub async fn find_tunnel_by_name(&self, name: &str) -> Result<Option<Tunnel>, CfError> {
        let q = TunnelQuery {
            name: Some(name.to_string()),
            ..Default::default()
        };
        Ok(self
            .list_tunnels(&q)
            .await?
            .into_iter()
            .find(|t| t.name == name && !t.is_deleted()))
    }

    /// Creates a remotely-managed tunnel (`config_src: cloudflare`) with the given secret
    /// (already base64). A taken name is [`CfError::TunnelNameTaken`].
    pub async fn create_tunnel(&self, name: &str, secret: &Secret) -> Result<Tunnel, CfError> {
        let body = json!({
            "name": name,
            "config_src": "cloudflare",
            "tunnel_secret": secret.expose(),
        });
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {name:?}"))
            .name(name)
            .redact(secret);
        self.send_json(Method::POST, &self.tunnels_path(), &body, &ctx)
            .await
    }

    /// One tunnel; `None` when it does not exist or was deleted.
    pub async fn get_tunnel(&self, id: &str) -> Result<Option<Tunnel>, CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        let t: Option<Tunnel> = self.get_optional(&self.tunnel_path(id, ""), &ctx).await?;
        Ok(t.filter(|t| !t.is_deleted()))
    }

    /// Replaces the tunnel secret (`PATCH {tunnel_secret}`). Running connectors keep
    /// working until they reconnect; roll them right after.
    pub async fn rotate_tunnel_secret(&self, id: &str, secret: &Secret) -> Result<Tunnel, CfError> {
        let body = json!({ "tunnel_secret": secret.expose() });
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}"))
            .id(id)
            .redact(secret);
        self.send_json(Method::PATCH, &self.tunnel_path(id, ""), &body, &ctx)
            .await
    }

    /// Deletes a tunnel; 404 is success. Fails with [`CfError::TunnelHasConnections`]
    /// while connectors are attached.
    pub async fn delete_tunnel(&self, id: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        self.delete_idempotent(&self.tunnel_path(id, ""), Some(&json!({})), &ctx)
            .await
    }

    /// The connector token (`GET .../token`; the result is a bare string).
    pub async fn tunnel_token(&self, id: &str) -> Result<Secret, CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        self.get_json(&self.tunnel_path(id, "/token"), &[], &ctx)
            .await
    }

    /// The remote configuration; `None` when none was ever stored (`config: null`) or the
    /// endpoint answers 404.
    pub async fn get_tunnel_config(&self, id: &str) -> Result<Option<TunnelConfig>, CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("configuration of tunnel {id}")).id(id);
        let r: Option<Option<ConfigResult>> = self
            .get_optional(&self.tunnel_path(id, "/configurations"), &ctx)
            .await?;
        Ok(r.flatten().and_then(|r| r.config))
    }

    /// Replaces the remote configuration (`PUT {"config": …}`).
    pub async fn put_tunnel_config(&self, id: &str, config: &TunnelConfig) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        let _: Value = self
            .send_json(
                Method::PUT,
                &self.tunnel_path(id, "/configurations"),
                &json!({ "config": config }),
                &ctx,
            )
            .await?;
        Ok(())
    }

    /// Connectors currently attached to the tunnel.
    pub async fn list_tunnel_connections(&self, id: &str) -> Result<Vec<Connector>, CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        let v: Option<Vec<Connector>> = self
            .get_json(&self.tunnel_path(id, "/connections"), &[], &ctx)
            .await?;
        Ok(v.unwrap_or_default())
    }

    /// Drops every connector of the tunnel (`DELETE .../connections`, body `{}`). A tunnel
    /// that is gone (404) has no connections: success.
    pub async fn delete_tunnel_connections(&self, id: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Tunnels, format!("tunnel {id}")).id(id);
        self.delete_idempotent(
            &self.tunnel_path(id, "/connections"),
            Some(&json!({})),
            &ctx,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_debug_hides_token() {
        let t: Tunnel = serde_json::from_value(json!({
            "id": "t1", "name": "n", "token": "eyJhIjoic2VjcmV0LXRva2VuIn0=",
            "credentials_file": {"TunnelSecret": "x"}, "remote_config": true, "deleted_at": null
        }))
        .unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("eyJhIjoi"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        assert_eq!(
            t.token.as_ref().unwrap().expose(),
            "eyJhIjoic2VjcmV0LXRva2VuIn0="
        );
        assert!(!t.is_deleted());
    }

    #[test]
    fn deleted_detection() {
        let mut t: Tunnel = serde_json::from_value(json!({"id": "t"})).unwrap();
        assert!(!t.is_deleted());
        t.deleted_at = Some("0001-01-01T00:00:00Z".into());
        assert!(!t.is_deleted());
        t.deleted_at = Some("2025-01-01T00:00:00Z".into());
        assert!(t.is_deleted());
    }

    #[test]
    fn config_uses_wire_names() {
        let mut other = Map::new();
        other.insert("connectTimeout".into(), json!(30));
        let cfg = TunnelConfig {
            ingress: vec![
                IngressRule {
                    hostname: Some("a.example.com".into()),
                    path: None,
                    service: "http://a.internal:8080".into(),
                    origin_request: Some(OriginRequest {
                        access: Some(OriginAccess {
                            required: true,
                            team_name: "team".into(),
                            aud_tag: vec!["aud1".into()],
                        }),
                        other,
                    }),
                },
                IngressRule {
                    service: "http_status:404".into(),
                    ..IngressRule::default()
                },
            ],
            origin_request: None,
        };
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            v,
            json!({"ingress": [
                {"hostname": "a.example.com", "service": "http://a.internal:8080",
                 "originRequest": {"connectTimeout": 30,
                    "access": {"required": true, "teamName": "team", "audTag": ["aud1"]}}},
                {"service": "http_status:404"}
            ]})
        );
        let back: TunnelConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn connector_is_tolerant() {
        let c: Vec<Connector> = serde_json::from_value(json!([
            {"id": "c1", "arch": "linux_amd64", "conns": [{"colo_name": "fra08"}], "features": []},
            {"id": "c2", "conns": null}
        ]))
        .unwrap();
        assert_eq!(c[0].conns.len(), 1);
        assert!(c[1].conns.is_empty());
    }
}
