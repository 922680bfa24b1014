//! An organization install: one hub serving ECS services in many AWS accounts and
//! regions with one Cloudflare token and one API budget.
//!
//! - **Settings** ([`OrgSettings`]): `ECS_TUNNELS_SPOKE_ROLE` (the role each member
//!   account's spoke stack creates; setting it turns organization mode on),
//!   `ECS_TUNNELS_SPOKE_EXTERNAL_ID`, `ECS_TUNNELS_ACCOUNTS` (account ids, or
//!   `organization` to list them from AWS Organizations, through
//!   `ECS_TUNNELS_ORGANIZATION_ROLE_ARN` when set) and `ECS_TUNNELS_REGIONS`.
//! - **Spokes** ([`Spokes`]): the hub assumes a spoke's role once per account per
//!   process and keeps the credentials until shortly before they expire; the ECS, token
//!   store and IAM clients built on them are kept per account and region. Nothing of the
//!   hub's (the Cloudflare token above all) is sent to a spoke; the tunnel token is written
//!   into the spoke's own SSM, where its sidecar reads it.
//! - **Names** carry the account and region ([`crate::ownership::Scope`]); the owner id
//!   stays the hub's (`ECS_TUNNELS_OWNER`, which an organization install must set).

use crate::aws::ecs::Ecs;
use crate::aws::iam::Iam;
use crate::aws::sts::{assume_role, AssumedRole};
use crate::aws::token_store::TokenStore;
use crate::aws::AwsError;
use crate::config::TokenStoreKind;
use crate::ownership::Scope;
use aws_sdk_sts::config::{Region, SharedCredentialsProvider};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Credentials are renewed when fewer than this is left on them: a Lambda invocation
/// lasts at most 15 minutes, so none outlives the credentials it started with.
const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// How long a refused AssumeRole is remembered: the other regions of the account (and
/// the events of the next minute) are told at once instead of asking STS again.
const REFUSAL_TTL: Duration = Duration::from_secs(60);
/// How long the organization's account list is trusted.
const ACCOUNTS_TTL: Duration = Duration::from_secs(300);

/// Which accounts the hub covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountList {
    /// `ECS_TUNNELS_ACCOUNTS=<id> <id> …`.
    Listed(Vec<String>),
    /// `ECS_TUNNELS_ACCOUNTS=organization`: every ACTIVE account Organizations lists.
    Organization,
}

/// The organization settings of a hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSettings {
    /// `ECS_TUNNELS_SPOKE_ROLE`: the role name in each member account.
    pub spoke_role: String,
    /// `ECS_TUNNELS_SPOKE_EXTERNAL_ID`: passed to AssumeRole when set.
    pub external_id: Option<String>,
    /// `ECS_TUNNELS_ACCOUNTS`.
    pub accounts: AccountList,
    /// `ECS_TUNNELS_REGIONS`; empty means the hub's own region.
    pub regions: Vec<String>,
    /// `ECS_TUNNELS_ORGANIZATION_ROLE_ARN`: the role that may call
    /// `organizations:ListAccounts` (in the management or a delegated administrator
    /// account); unset: the hub's own credentials call it.
    pub organization_role_arn: Option<String>,
}

fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

impl OrgSettings {
    /// Reads the organization settings; `None` in a single-account install (no
    /// `ECS_TUNNELS_SPOKE_ROLE`, and none of the others set either).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let role = get("ECS_TUNNELS_SPOKE_ROLE").map(|r| r.trim().to_string());
        let accounts = get("ECS_TUNNELS_ACCOUNTS");
        let Some(spoke_role) = role else {
            for k in [
                "ECS_TUNNELS_ACCOUNTS",
                "ECS_TUNNELS_REGIONS",
                "ECS_TUNNELS_SPOKE_EXTERNAL_ID",
                "ECS_TUNNELS_ORGANIZATION_ROLE_ARN",
            ] {
                if get(k).is_some() {
                    return Err(format!("{k} is set but ECS_TUNNELS_SPOKE_ROLE is not: an organization install needs the name of the role its spoke stacks create (e.g. ecs-tunnels-spoke)"));
                }
            }
            return Ok(None);
        };
        if !is_role_name(&spoke_role) {
            return Err(format!("ECS_TUNNELS_SPOKE_ROLE {spoke_role:?} is not an IAM role name (1-64 letters, digits and +=,.@_-)"));
        }
        let accounts = match accounts.as_deref().map(str::trim) {
            None => return Err("ECS_TUNNELS_SPOKE_ROLE is set but ECS_TUNNELS_ACCOUNTS is not: list the account ids the hub covers, or set it to `organization`".into()),
            Some("organization") => AccountList::Organization,
            Some(list) => {
                let ids: Vec<String> = list.split_whitespace().map(str::to_string).collect();
                if let Some(bad) = ids.iter().find(|a| Scope::parse(a, "x").is_none()) {
                    return Err(format!("ECS_TUNNELS_ACCOUNTS: {bad:?} is not a 12-digit AWS account id"));
                }
                AccountList::Listed(ids)
            }
        };
        let regions: Vec<String> = get("ECS_TUNNELS_REGIONS")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if let Some(bad) = regions
            .iter()
            .find(|r| Scope::parse("000000000000", r).is_none() || !r.contains('-'))
        {
            return Err(format!(
                "ECS_TUNNELS_REGIONS: {bad:?} is not an AWS region name such as eu-west-1"
            ));
        }
        let organization_role_arn = get("ECS_TUNNELS_ORGANIZATION_ROLE_ARN");
        if let Some(arn) = &organization_role_arn {
            if !arn.starts_with("arn:") || !arn.contains(":role/") {
                return Err(format!(
                    "ECS_TUNNELS_ORGANIZATION_ROLE_ARN {arn:?} is not an IAM role ARN"
                ));
            }
        }
        Ok(Some(OrgSettings {
            spoke_role,
            external_id: get("ECS_TUNNELS_SPOKE_EXTERNAL_ID"),
            accounts,
            regions,
            organization_role_arn,
        }))
    }

    /// The regions covered, given the hub's own.
    pub fn regions_or(&self, hub_region: &str) -> Vec<String> {
        if self.regions.is_empty() {
            vec![hub_region.to_string()]
        } else {
            self.regions.clone()
        }
    }

    /// The spoke role's ARN in `account` (the partition follows the hub's region).
    pub fn role_arn(&self, account: &str, hub_region: &str) -> String {
        let partition = if hub_region.starts_with("cn-") {
            "aws-cn"
        } else if hub_region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        format!("arn:{partition}:iam::{account}:role/{}", self.spoke_role)
    }

    /// Why the hub does not act on a service in `scope`, if it does not: an account or a
    /// region outside what it covers (an event forwarded from an account the hub was not
    /// set up for is ignored, not acted on).
    pub fn refuses(&self, scope: &Scope, hub_region: &str) -> Option<String> {
        if let AccountList::Listed(ids) = &self.accounts {
            if !ids.contains(&scope.account) {
                return Some(format!(
                    "account {} is not one this hub covers (ECS_TUNNELS_ACCOUNTS)",
                    scope.account
                ));
            }
        }
        if !self.regions_or(hub_region).contains(&scope.region) {
            return Some(format!(
                "region {} is not one this hub covers (ECS_TUNNELS_REGIONS)",
                scope.region
            ));
        }
        None
    }
}

/// Why the hub cannot act in a spoke. Carries no secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SpokeError {
    /// What failed and what to do about it.
    pub message: String,
    /// A retry may succeed (throttling, a server error).
    pub transient: bool,
}

/// The AWS clients of one spoke account and region.
#[derive(Clone)]
pub struct SpokeClients {
    /// ECS in the spoke.
    pub ecs: Ecs,
    /// IAM reads in the spoke (a diagnosis of its tasks' execution role).
    pub iam: Iam,
    /// The spoke's token store.
    pub tokens: TokenStore,
    expires: SystemTime,
}

/// An account's credentials, or the refusal (and when) of the last AssumeRole.
type HeldCredentials = Result<AssumedRole, (Instant, SpokeError)>;

/// The hub's way into its spokes: credentials per account, clients per account and
/// region, both kept for the life of the process (until shortly before expiry).
pub struct Spokes {
    /// The settings.
    pub settings: OrgSettings,
    base: aws_config::SdkConfig,
    hub_region: String,
    token_store: TokenStoreKind,
    parameter_prefix: String,
    credentials: tokio::sync::Mutex<HashMap<String, HeldCredentials>>,
    clients: std::sync::Mutex<HashMap<Scope, SpokeClients>>,
    accounts: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
    assumed: std::sync::atomic::AtomicU64,
}

impl Spokes {
    /// The hub's spokes, reached with the process's own credentials (`base`).
    pub fn new(
        settings: OrgSettings,
        base: aws_config::SdkConfig,
        hub_region: &str,
        token_store: TokenStoreKind,
        parameter_prefix: &str,
    ) -> Self {
        Spokes {
            settings,
            base,
            hub_region: hub_region.to_string(),
            token_store,
            parameter_prefix: parameter_prefix.to_string(),
            credentials: Default::default(),
            clients: Default::default(),
            accounts: Default::default(),
            assumed: Default::default(),
        }
    }

    /// `AssumeRole` calls this process has made (one per account per credential
    /// lifetime).
    pub fn roles_assumed(&self) -> u64 {
        self.assumed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The clients for `scope`, assuming the spoke's role when this process holds no
    /// fresh credentials for its account.
    pub async fn clients(&self, scope: &Scope) -> Result<SpokeClients, SpokeError> {
        let fresh = |c: &SpokeClients| {
            c.expires
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > RENEW_BEFORE)
        };
        if let Some(c) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
            .filter(|c| fresh(c))
        {
            return Ok(c.clone());
        }
        let role = self.credentials_for(&scope.account).await?;
        let sdk = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(role.credentials.clone()))
            .region(Region::new(scope.region.clone()))
            .build();
        let clients = SpokeClients {
            ecs: Ecs::new(&sdk),
            iam: Iam::new(&sdk),
            tokens: TokenStore::new(&sdk, self.token_store, &self.parameter_prefix),
            expires: role.expires,
        };
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.clone(), clients.clone());
        Ok(clients)
    }

    /// Credentials for the spoke role of `account`: kept ones, or a new AssumeRole (one
    /// at a time, so concurrent reconciles in one account assume once).
    async fn credentials_for(&self, account: &str) -> Result<AssumedRole, SpokeError> {
        let mut held = self.credentials.lock().await;
        match held.get(account) {
            Some(Ok(r))
                if r.expires
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > RENEW_BEFORE) =>
            {
                return Ok(r.clone());
            }
            Some(Err((at, e))) if at.elapsed() < REFUSAL_TTL => return Err(e.clone()),
            _ => {}
        }
        let arn = self.settings.role_arn(account, &self.hub_region);
        self.assumed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let assumed = assume_role(&self.base, &arn, self.settings.external_id.as_deref())
            .await
            .map_err(|e| SpokeError {
                transient: e.is_transient() && e.code.is_some(),
                message: format!(
                    "cannot act in account {account}: the hub could not assume {arn} ({e}); deploy the spoke stack (infra/spoke.yaml) in that account, and check that its role trusts this hub's functions and external id"
                ),
            });
        held.insert(
            account.to_string(),
            assumed.clone().map_err(|e| (Instant::now(), e)),
        );
        assumed
    }

    /// Every account and region the hub covers: the listed accounts, or the
    /// organization's ACTIVE ones (listed at most every few minutes), times the regions.
    pub async fn scopes(&self) -> Result<Vec<Scope>, SpokeError> {
        let accounts = match &self.settings.accounts {
            AccountList::Listed(ids) => ids.clone(),
            AccountList::Organization => self.organization_accounts().await?,
        };
        let regions = self.settings.regions_or(&self.hub_region);
        Ok(accounts
            .iter()
            .flat_map(|a| {
                regions
                    .iter()
                    .map(move |r| Scope::new(a.clone(), r.clone()))
            })
            .collect())
    }

    async fn organization_accounts(&self) -> Result<Vec<String>, SpokeError> {
        let mut cached = self.accounts.lock().await;
        if let Some((at, ids)) = cached.as_ref() {
            if at.elapsed() < ACCOUNTS_TTL {
                return Ok(ids.clone());
            }
        }
        let failed = |what: String, e: AwsError| {
            SpokeError {
            transient: e.is_transient() && e.code.is_some(),
            message: format!("cannot list the organization's accounts: {what}{e}; set ECS_TUNNELS_ACCOUNTS to the account ids instead, or fix the role"),
        }
        };
        let sdk = match &self.settings.organization_role_arn {
            None => self.base.clone(),
            Some(arn) => {
                let role = assume_role(&self.base, arn, None)
                    .await
                    .map_err(|e| failed(format!("assuming {arn}: "), e))?;
                self.base
                    .to_builder()
                    .credentials_provider(SharedCredentialsProvider::new(role.credentials))
                    .build()
            }
        };
        let ids = crate::aws::organizations::active_accounts(&sdk)
            .await
            .map_err(|e| failed(String::new(), e))?;
        *cached = Some((Instant::now(), ids.clone()));
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<OrgSettings>, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OrgSettings::from_lookup(&|k: &str| m.get(k).cloned())
    }

    #[test]
    fn single_account_without_any_setting() {
        assert_eq!(settings(&[]), Ok(None));
        let e = settings(&[("ECS_TUNNELS_ACCOUNTS", "111111111111")]).unwrap_err();
        assert!(e.contains("ECS_TUNNELS_SPOKE_ROLE is not"), "{e}");
    }

    #[test]
    fn reads_and_checks_the_organization_settings() {
        let s = settings(&[
            ("ECS_TUNNELS_SPOKE_ROLE", "ecs-tunnels-spoke"),
            ("ECS_TUNNELS_ACCOUNTS", "111111111111 222222222222"),
            ("ECS_TUNNELS_REGIONS", "eu-west-1 us-east-1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s.role_arn("111111111111", "us-east-1"),
            "arn:aws:iam::111111111111:role/ecs-tunnels-spoke"
        );
        assert_eq!(
            s.refuses(&Scope::new("111111111111", "eu-west-1"), "x"),
            None
        );
        let e = s
            .refuses(&Scope::new("333333333333", "eu-west-1"), "x")
            .unwrap();
        assert!(
            e.contains("account 333333333333") && e.contains("ECS_TUNNELS_ACCOUNTS"),
            "{e}"
        );
        let e = s
            .refuses(&Scope::new("111111111111", "ap-south-1"), "x")
            .unwrap();
        assert!(e.contains("region ap-south-1"), "{e}");
        let org = settings(&[
            ("ECS_TUNNELS_SPOKE_ROLE", "r"),
            ("ECS_TUNNELS_ACCOUNTS", "organization"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(org.accounts, AccountList::Organization);
        assert_eq!(org.regions_or("eu-central-1"), vec!["eu-central-1"]);
        for (pairs, says) in [
            (
                vec![("ECS_TUNNELS_SPOKE_ROLE", "r")],
                "ECS_TUNNELS_ACCOUNTS is not",
            ),
            (
                vec![
                    ("ECS_TUNNELS_SPOKE_ROLE", "r"),
                    ("ECS_TUNNELS_ACCOUNTS", "1234"),
                ],
                "\"1234\" is not a 12-digit",
            ),
            (
                vec![
                    ("ECS_TUNNELS_SPOKE_ROLE", "r"),
                    ("ECS_TUNNELS_ACCOUNTS", "111111111111"),
                    ("ECS_TUNNELS_REGIONS", "Europe"),
                ],
                "\"Europe\" is not an AWS region",
            ),
            (
                vec![
                    ("ECS_TUNNELS_SPOKE_ROLE", "has space"),
                    ("ECS_TUNNELS_ACCOUNTS", "111111111111"),
                ],
                "is not an IAM role name",
            ),
        ] {
            let e = settings(&pairs).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
