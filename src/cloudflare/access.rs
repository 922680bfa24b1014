//! Cloudflare Access (Zero Trust): `/accounts/{account_id}/access/...` — applications,
//! reusable policies, groups, identity providers, the organization and tags.

use super::client::CloudflareClient;
use super::error::{Area, CfError, Ctx};
use super::wire::{null_default, seg};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Filters for [`CloudflareClient::list_access_apps`]. Either one makes the request use
/// `exact=true`; the client also re-applies them to the results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppQuery {
    /// Exact application name.
    pub name: Option<String>,
    /// Exact application domain (compared case-insensitively).
    pub domain: Option<String>,
}

/// An Access application (any type; fields a type lacks are empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessApp {
    /// Application UUID.
    pub id: String,
    /// Display name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Primary domain, e.g. `orders.example.com`.
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    /// `self_hosted`, `saas`, … (JSON `type`).
    #[serde(rename = "type", default)]
    pub app_type: Option<String>,
    /// Audience tag: goes into the tunnel's `originRequest.access.audTag`.
    #[serde(default, deserialize_with = "null_default")]
    pub aud: String,
    /// Public (and private) destinations.
    #[serde(default, deserialize_with = "null_default")]
    pub destinations: Vec<Destination>,
    /// Session length, e.g. `24h`.
    #[serde(default)]
    pub session_duration: Option<String>,
    /// Allowed identity provider UUIDs; empty means all.
    #[serde(default, deserialize_with = "null_default")]
    pub allowed_idps: Vec<String>,
    /// Skip the IdP chooser (needs exactly one IdP).
    #[serde(default, deserialize_with = "null_default")]
    pub auto_redirect_to_identity: bool,
    /// Show the app in the App Launcher.
    #[serde(default, deserialize_with = "null_default")]
    pub app_launcher_visible: bool,
    /// Access tag names.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Attached policies (reusable and app-scoped).
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<AppPolicy>,
}

/// One destination of an application, e.g. `{"type":"public","uri":"orders.example.com"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `public` or `private` (JSON `type`).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub dest_type: String,
    /// Hostname (and optional path) of a public destination; empty for private ones.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub uri: String,
}

/// A policy as embedded in an application response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPolicy {
    /// Policy UUID.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Policy name.
    #[serde(default)]
    pub name: Option<String>,
    /// Evaluation order within the app (lower first).
    #[serde(default)]
    pub precedence: Option<i64>,
    /// `allow`, `deny`, `non_identity` or `bypass`.
    #[serde(default)]
    pub decision: Option<String>,
    /// Include rules (ORed).
    #[serde(default, deserialize_with = "null_default")]
    pub include: Vec<Value>,
    /// Exclude rules (NOTed).
    #[serde(default, deserialize_with = "null_default")]
    pub exclude: Vec<Value>,
    /// Require rules (ANDed).
    #[serde(default, deserialize_with = "null_default")]
    pub require: Vec<Value>,
    /// True for a reusable (account-level) policy.
    #[serde(default)]
    pub reusable: Option<bool>,
}

/// Body of an application create or full (PUT) update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessAppBody {
    /// Display name.
    pub name: String,
    /// Application type (JSON `type`); `self_hosted` here.
    #[serde(rename = "type")]
    pub app_type: String,
    /// Primary domain.
    pub domain: String,
    /// Destinations, e.g. one `{type: public, uri: domain}`.
    pub destinations: Vec<Destination>,
    /// Session length, e.g. `24h`.
    pub session_duration: String,
    /// Allowed identity provider UUIDs; empty means all.
    pub allowed_idps: Vec<String>,
    /// Skip the IdP chooser (needs exactly one IdP).
    pub auto_redirect_to_identity: bool,
    /// Show the app in the App Launcher.
    pub app_launcher_visible: bool,
    /// Access tag names (each must exist, see [`CloudflareClient::ensure_access_tag`]).
    pub tags: Vec<String>,
    /// Links to reusable policies.
    pub policies: Vec<PolicyLink>,
}

impl Default for AccessAppBody {
    /// A `self_hosted` app with a `24h` session and everything else empty.
    fn default() -> Self {
        AccessAppBody {
            name: String::new(),
            app_type: "self_hosted".into(),
            domain: String::new(),
            destinations: Vec::new(),
            session_duration: "24h".into(),
            allowed_idps: Vec::new(),
            auto_redirect_to_identity: false,
            app_launcher_visible: false,
            tags: Vec::new(),
            policies: Vec::new(),
        }
    }
}

/// A link from an application to a reusable policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLink {
    /// Reusable policy UUID.
    pub id: String,
    /// Unique within the app; lower is evaluated first.
    pub precedence: i64,
}

/// A reusable (account-level) Access policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// Policy UUID.
    pub id: String,
    /// Policy name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `allow`, `deny`, `non_identity` or `bypass`.
    #[serde(default, deserialize_with = "null_default")]
    pub decision: String,
    /// Include rules (ORed).
    #[serde(default, deserialize_with = "null_default")]
    pub include: Vec<Value>,
    /// Exclude rules (NOTed).
    #[serde(default, deserialize_with = "null_default")]
    pub exclude: Vec<Value>,
    /// Require rules (ANDed).
    #[serde(default, deserialize_with = "null_default")]
    pub require: Vec<Value>,
    /// Session length override.
    #[serde(default)]
    pub session_duration: Option<String>,
    /// True for reusable policies.
    #[serde(default)]
    pub reusable: Option<bool>,
    /// How many applications link this reusable policy (`None` when not reported).
    #[serde(default)]
    pub app_count: Option<u64>,
}

/// Body of a reusable policy create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessPolicyBody {
    /// Policy name.
    pub name: String,
    /// `allow`, `deny`, `non_identity` or `bypass`.
    pub decision: String,
    /// Include rules (ORed), e.g. `{"email_domain":{"domain":"example.com"}}`.
    pub include: Vec<Value>,
    /// Exclude rules (NOTed).
    pub exclude: Vec<Value>,
    /// Require rules (ANDed).
    pub require: Vec<Value>,
}

/// An Access group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGroup {
    /// Group UUID.
    pub id: String,
    /// Group name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// A configured identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    /// IdP UUID.
    pub id: String,
    /// Display name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `onetimepin`, `azureAD`, `okta`, `github`, … (JSON `type`).
    #[serde(rename = "type", default)]
    pub idp_type: Option<String>,
}

/// The Zero Trust organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Organization display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Team domain, e.g. `myteam.cloudflareaccess.com`.
    #[serde(default, deserialize_with = "null_default")]
    pub auth_domain: String,
}

impl Organization {
    /// The team name cloudflared wants in `teamName`: `auth_domain` without
    /// `.cloudflareaccess.com` (the whole `auth_domain` when it has another suffix).
    pub fn team_name(&self) -> &str {
        let d = self.auth_domain.trim_end_matches('.');
        d.strip_suffix(".cloudflareaccess.com").unwrap_or(d)
    }
}

impl AppQuery {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(n) = &self.name {
            q.push(("name", n.clone()));
        }
        if let Some(d) = &self.domain {
            q.push(("domain", d.clone()));
        }
        if !q.is_empty() {
            q.push(("exact", "true".to_string()));
        }
        q
    }

    fn matches(&self, app: &AccessApp) -> bool {
        self.name.as_ref().is_none_or(|n| &app.name == n)
            && self.domain.as_ref().is_none_or(|d| {
                let d = d.trim_end_matches('/');
                std::iter::once(app.domain.as_str())
                    .chain(app.destinations.iter().map(|x| x.uri.as_str()))
                    .any(|h| h.trim_end_matches('/').eq_ignore_ascii_case(d))
            })
    }
}

impl CloudflareClient {
    fn access_path(&self, rest: &str) -> String {
        self.account_path(&format!("/access{rest}"))
    }

    /// Access applications matching `q` (all pages, 100 per page).
    pub async fn list_access_apps(&self, q: &AppQuery) -> Result<Vec<AccessApp>, CfError> {
        let ctx = Ctx::new(Area::AccessApps, "Access application list");
        let apps: Vec<AccessApp> = self
            .get_all(&self.access_path("/apps"), &q.params(), 100, &ctx)
            .await?;
        Ok(apps.into_iter().filter(|a| q.matches(a)).collect())
    }

    /// One application; `None` when it does not exist.
    pub async fn get_access_app(&self, id: &str) -> Result<Option<AccessApp>, CfError> {
        let ctx = Ctx::new(Area::AccessApps, format!("Access application {id}")).id(id);
        self.get_optional(&self.access_path(&format!("/apps/{}", seg(id))), &ctx)
            .await
    }

    /// Creates an application; a taken domain is [`CfError::AccessAppExists`].
    pub async fn create_access_app(&self, body: &AccessAppBody) -> Result<AccessApp, CfError> {
        let ctx = Ctx::new(
            Area::AccessApps,
            format!("Access application for {}", body.domain),
        )
        .name(&body.name);
        self.send_json(Method::POST, &self.access_path("/apps"), body, &ctx)
            .await
    }

    /// Overwrites an application (PUT).
    pub async fn update_access_app(
        &self,
        id: &str,
        body: &AccessAppBody,
    ) -> Result<AccessApp, CfError> {
        let ctx = Ctx::new(Area::AccessApps, format!("Access application {id}"))
            .name(&body.name)
            .id(id);
        self.send_json(
            Method::PUT,
            &self.access_path(&format!("/apps/{}", seg(id))),
            body,
            &ctx,
        )
        .await
    }

    /// Deletes an application; 404 is success.
    pub async fn delete_access_app(&self, id: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::AccessApps, format!("Access application {id}")).id(id);
        self.delete_idempotent(&self.access_path(&format!("/apps/{}", seg(id))), None, &ctx)
            .await
    }

    /// Every reusable policy of the account (all pages).
    pub async fn list_reusable_policies(&self) -> Result<Vec<AccessPolicy>, CfError> {
        let ctx = Ctx::new(Area::Other, "Access policy list");
        self.get_all(&self.access_path("/policies"), &[], 100, &ctx)
            .await
    }

    /// One reusable policy; `None` when it does not exist.
    pub async fn get_reusable_policy(&self, id: &str) -> Result<Option<AccessPolicy>, CfError> {
        let ctx = Ctx::new(Area::Other, format!("Access policy {id}")).id(id);
        self.get_optional(&self.access_path(&format!("/policies/{}", seg(id))), &ctx)
            .await
    }

    /// Creates a reusable policy. Policy names are not unique, so a 5xx or a lost answer
    /// is not retried here (the create may have committed): the caller looks for the
    /// policy by name before creating it again.
    pub async fn create_reusable_policy(
        &self,
        body: &AccessPolicyBody,
    ) -> Result<AccessPolicy, CfError> {
        let ctx = Ctx::new(Area::Other, format!("Access policy {:?}", body.name))
            .name(&body.name)
            .not_idempotent();
        self.send_json(Method::POST, &self.access_path("/policies"), body, &ctx)
            .await
    }

    /// Overwrites a reusable policy (PUT).
    pub async fn update_reusable_policy(
        &self,
        id: &str,
        body: &AccessPolicyBody,
    ) -> Result<AccessPolicy, CfError> {
        let ctx = Ctx::new(Area::Other, format!("Access policy {id}")).id(id);
        self.send_json(
            Method::PUT,
            &self.access_path(&format!("/policies/{}", seg(id))),
            body,
            &ctx,
        )
        .await
    }

    /// Deletes a reusable policy; 404 is success.
    pub async fn delete_reusable_policy(&self, id: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Other, format!("Access policy {id}")).id(id);
        self.delete_idempotent(
            &self.access_path(&format!("/policies/{}", seg(id))),
            None,
            &ctx,
        )
        .await
    }

    /// Every Access group (all pages).
    pub async fn list_access_groups(&self) -> Result<Vec<AccessGroup>, CfError> {
        let ctx = Ctx::new(Area::Other, "Access group list");
        self.get_all(&self.access_path("/groups"), &[], 100, &ctx)
            .await
    }

    /// Every identity provider (all pages).
    pub async fn list_identity_providers(&self) -> Result<Vec<IdentityProvider>, CfError> {
        let ctx = Ctx::new(Area::Other, "identity provider list");
        self.get_all(&self.access_path("/identity_providers"), &[], 100, &ctx)
            .await
    }

    /// The Zero Trust organization (for the team name).
    pub async fn get_organization(&self) -> Result<Organization, CfError> {
        let ctx = Ctx::new(Area::Other, "the Zero Trust organization");
        self.get_json(&self.access_path("/organizations"), &[], &ctx)
            .await
    }

    /// Makes sure an Access tag exists: `GET /access/tags/{name}`, on 404
    /// `POST /access/tags {name}`; a concurrent "already exists" counts as success.
    pub async fn ensure_access_tag(&self, name: &str) -> Result<(), CfError> {
        let ctx = Ctx::new(Area::Other, format!("Access tag {name:?}")).name(name);
        let found: Option<Value> = self
            .get_optional(&self.access_path(&format!("/tags/{}", seg(name))), &ctx)
            .await?;
        if found.is_some() {
            return Ok(());
        }
        let created: Result<Value, CfError> = self
            .send_json(
                Method::POST,
                &self.access_path("/tags"),
                &json!({ "name": name }),
                &ctx,
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(CfError::Api { status, errors })
                if status == 409
                    || errors
                        .iter()
                        .any(|e| e.message.to_ascii_lowercase().contains("already exist")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_body_uses_wire_names() {
        let body = AccessAppBody {
            name: "orders".into(),
            domain: "orders.example.com".into(),
            destinations: vec![Destination {
                dest_type: "public".into(),
                uri: "orders.example.com".into(),
            }],
            tags: vec!["ecs-tunnels".into()],
            policies: vec![PolicyLink {
                id: "p1".into(),
                precedence: 1,
            }],
            ..AccessAppBody::default()
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "name": "orders", "type": "self_hosted", "domain": "orders.example.com",
                "destinations": [{"type": "public", "uri": "orders.example.com"}],
                "session_duration": "24h", "allowed_idps": [], "auto_redirect_to_identity": false,
                "app_launcher_visible": false, "tags": ["ecs-tunnels"],
                "policies": [{"id": "p1", "precedence": 1}]
            })
        );
    }

    #[test]
    fn app_response_is_tolerant() {
        let app: AccessApp = serde_json::from_value(json!({
            "id": "a1", "name": "orders", "domain": "orders.example.com", "type": "self_hosted",
            "aud": "abc", "destinations": [{"type": "public", "uri": "orders.example.com"},
                                           {"type": "private", "cidr": "10.0.0.0/8"}],
            "allowed_idps": null, "tags": ["t"], "created_at": "2024-01-01T00:00:00Z",
            "policies": [{"id": "p", "precedence": 1, "reusable": true, "decision": "allow",
                          "include": [{"everyone": {}}], "exclude": null}]
        }))
        .unwrap();
        assert_eq!(app.app_type.as_deref(), Some("self_hosted"));
        assert_eq!(app.destinations[1].dest_type, "private");
        assert!(app.allowed_idps.is_empty());
        assert_eq!(app.policies[0].reusable, Some(true));
        // An app type without a domain (e.g. the App Launcher) still parses.
        let _: AccessApp =
            serde_json::from_value(json!({"id": "x", "type": "app_launcher"})).unwrap();
    }

    #[test]
    fn query_and_team_name() {
        assert_eq!(AppQuery::default().params(), vec![]);
        assert_eq!(
            AppQuery {
                name: None,
                domain: Some("a.example.com".into())
            }
            .params(),
            vec![
                ("domain", "a.example.com".to_string()),
                ("exact", "true".to_string())
            ]
        );
        let org = Organization {
            name: None,
            auth_domain: "myteam.cloudflareaccess.com".into(),
        };
        assert_eq!(org.team_name(), "myteam");
        let idp: IdentityProvider = serde_json::from_value(
            json!({"id": "i", "name": "OTP", "type": "onetimepin", "config": {}}),
        )
        .unwrap();
        assert_eq!(idp.idp_type.as_deref(), Some("onetimepin"));
        let p = AccessPolicyBody {
            name: "n".into(),
            decision: "allow".into(),
            include: vec![json!({"everyone": {}})],
            ..AccessPolicyBody::default()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"name": "n", "decision": "allow", "include": [{"everyone": {}}], "exclude": [], "require": []})
        );
    }
}
