//! Zones: `GET /zones`.

use super::client::CloudflareClient;
use super::error::{Area, CfError, Ctx};
use super::wire::null_default;
use serde::{Deserialize, Serialize};

/// A DNS zone (domain) the token can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Zone ID (32 hex characters).
    pub id: String,
    /// Domain name, e.g. `example.com`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `active`, `pending`, `initializing` or `moved`.
    #[serde(default)]
    pub status: Option<String>,
}

impl CloudflareClient {
    /// Every zone visible to the token (all pages, 50 per page).
    pub async fn list_zones(&self) -> Result<Vec<Zone>, CfError> {
        self.get_all("/zones", &[], 50, &Ctx::new(Area::Other, "zone list"))
            .await
    }
}
