//! The functions' configuration, read once from the environment (see the README's table).

use crate::cloudflare::Budget;
use crate::ownership::Owner;
use crate::secret::Secret;
use std::time::Duration;

/// Default Cloudflare API base.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// Default SSM prefix.
pub const DEFAULT_PREFIX: &str = "/ecs-tunnels";
/// Default rotation period (30 days).
pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(30 * 86400);
/// Cloudflare's API limit per token: 1,200 requests…
pub const DEFAULT_API_BUDGET: u32 = 1200;
/// …per 5 minutes.
pub const DEFAULT_API_BUDGET_WINDOW: Duration = Duration::from_secs(300);

/// Where the Cloudflare API token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiTokenSource {
    /// `CLOUDFLARE_API_TOKEN`: the token itself (local use).
    Value(Secret),
    /// `CLOUDFLARE_API_TOKEN_PARAMETER`: an SSM SecureString name.
    Parameter(String),
    /// `CLOUDFLARE_API_TOKEN_SECRET_ARN`: a Secrets Manager secret.
    SecretArn(String),
}

/// Where tunnel tokens are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStoreKind {
    /// SSM Parameter Store SecureString (default).
    Ssm,
    /// Secrets Manager, one secret per service.
    SecretsManager,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CLOUDFLARE_ACCOUNT_ID`.
    pub account_id: String,
    /// Where the API token is.
    pub api_token: ApiTokenSource,
    /// `CLOUDFLARE_API_URL`.
    pub api_url: String,
    /// `ECS_TUNNELS_OWNER`; `None` means `<aws account>-<region>` of each service.
    pub owner: Option<Owner>,
    /// `ECS_TUNNELS_ALLOWED_ZONES`; `None` means every zone the token sees.
    pub allowed_zones: Option<Vec<String>>,
    /// `ECS_TUNNELS_PARAMETER_PREFIX`.
    pub parameter_prefix: String,
    /// `ECS_TUNNELS_TOKEN_STORE`.
    pub token_store: TokenStoreKind,
    /// `ECS_TUNNELS_CLUSTERS`; `None` means every cluster.
    pub clusters: Option<Vec<String>>,
    /// `ECS_TUNNELS_ROTATE_EVERY`: the install's default rotation period.
    pub rotate_every: Duration,
    /// `ECS_TUNNELS_RETRY_BASE_MS`: base of the Cloudflare retry backoff (tests lower it).
    pub retry_base: Duration,
    /// `ECS_TUNNELS_SWEEP_MAX_CALLS`: Cloudflare calls one sweep may make.
    pub sweep_max_calls: u64,
    /// `ECS_TUNNELS_SWEEP_CONFIG_CHECKS`: tunnel configurations verified per sweep.
    pub sweep_config_checks: usize,
    /// `ECS_TUNNELS_SWEEP_INTERVAL`: how often the sweep is scheduled.
    pub sweep_interval: Duration,
    /// `ECS_TUNNELS_API_BUDGET`: Cloudflare requests the whole install may send per
    /// window (0: no limit).
    pub api_budget: u32,
    /// `ECS_TUNNELS_API_BUDGET_WINDOW`: the window of that budget.
    pub api_budget_window: Duration,
    /// `ECS_TUNNELS_API_SHARE`: the percentage of the budget this function may spend.
    pub api_share: u32,
    /// `ECS_TUNNELS_API_CONCURRENCY`: how many processes of this function can run at
    /// once (they split its share evenly).
    pub api_concurrency: u32,
    /// When hostnames go live, and how long to wait for cloudflared (see
    /// [`crate::publish`]).
    pub publish: crate::publish::PublishSettings,
    /// The organization settings of a hub (`None`: a single-account install); see
    /// [`crate::organization`].
    pub org: Option<crate::organization::OrgSettings>,
}

impl Config {
    /// This process's part of the install's Cloudflare API budget (`None`: no limit).
    pub fn process_budget(&self) -> Option<Budget> {
        Budget::share_of(
            self.api_budget,
            self.api_budget_window,
            self.api_share,
            self.api_concurrency,
        )
        .ok()
        .flatten()
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, String> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the configuration through `get` (testable without touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let account_id = get("CLOUDFLARE_ACCOUNT_ID")
            .ok_or("CLOUDFLARE_ACCOUNT_ID is not set: set it to your Cloudflare account id (32 hex characters, on the dashboard's overview page)")?;
        if account_id.len() != 32 || !account_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("CLOUDFLARE_ACCOUNT_ID {account_id:?} is not a Cloudflare account id (32 hex characters)"));
        }
        let sources: Vec<ApiTokenSource> = [
            get("CLOUDFLARE_API_TOKEN").map(|v| ApiTokenSource::Value(Secret::new(v))),
            get("CLOUDFLARE_API_TOKEN_PARAMETER").map(ApiTokenSource::Parameter),
            get("CLOUDFLARE_API_TOKEN_SECRET_ARN").map(ApiTokenSource::SecretArn),
        ]
        .into_iter()
        .flatten()
        .collect();
        let api_token = match sources.len() {
            1 => sources.into_iter().next().expect("one"),
            0 => return Err("no Cloudflare API token: set exactly one of CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_TOKEN_PARAMETER (an SSM SecureString name) or CLOUDFLARE_API_TOKEN_SECRET_ARN".into()),
            _ => return Err("more than one of CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_TOKEN_PARAMETER and CLOUDFLARE_API_TOKEN_SECRET_ARN is set: keep exactly one".into()),
        };
        let owner = get("ECS_TUNNELS_OWNER")
            .map(|o| Owner::parse(o.trim()))
            .transpose()?;
        let list = |k: &str| {
            get(k).map(|v| {
                v.split_whitespace()
                    .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
        };
        let parameter_prefix =
            get("ECS_TUNNELS_PARAMETER_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        let parameter_prefix = parameter_prefix.trim_end_matches('/').to_string();
        if !parameter_prefix.starts_with('/') || parameter_prefix.len() < 2 {
            return Err(format!("ECS_TUNNELS_PARAMETER_PREFIX {parameter_prefix:?} must be an SSM path such as /ecs-tunnels"));
        }
        let token_store = match get("ECS_TUNNELS_TOKEN_STORE").as_deref() {
            None | Some("ssm") => TokenStoreKind::Ssm,
            Some("secretsmanager") => TokenStoreKind::SecretsManager,
            Some(o) => {
                return Err(format!(
                    "ECS_TUNNELS_TOKEN_STORE {o:?} is not a token store: use ssm or secretsmanager"
                ))
            }
        };
        let rotate_every = match get("ECS_TUNNELS_ROTATE_EVERY") {
            None => DEFAULT_ROTATE_EVERY,
            Some(v) => crate::spec::parse_rotation_period(&v)
                .map_err(|m| format!("ECS_TUNNELS_ROTATE_EVERY {v:?} {m}"))?,
        };
        let retry_base = match get("ECS_TUNNELS_RETRY_BASE_MS") {
            None => Duration::from_millis(250),
            Some(v) => Duration::from_millis(v.parse().map_err(|_| {
                format!("ECS_TUNNELS_RETRY_BASE_MS {v:?} is not a number of milliseconds")
            })?),
        };
        let number = |k: &str, default: u64| -> Result<u64, String> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{k} {v:?} is not a whole number")),
            }
        };
        let sweep_interval = match get("ECS_TUNNELS_SWEEP_INTERVAL") {
            None => Duration::from_secs(300),
            Some(v) => humantime::parse_duration(v.trim()).map_err(|_| {
                format!("ECS_TUNNELS_SWEEP_INTERVAL {v:?} is not a duration such as 5m")
            })?,
        };
        let api_budget = u32::try_from(number(
            "ECS_TUNNELS_API_BUDGET",
            u64::from(DEFAULT_API_BUDGET),
        )?)
        .map_err(|_| "ECS_TUNNELS_API_BUDGET is too large".to_string())?;
        let api_budget_window = match get("ECS_TUNNELS_API_BUDGET_WINDOW") {
            None => DEFAULT_API_BUDGET_WINDOW,
            Some(v) => humantime::parse_duration(v.trim())
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    format!("ECS_TUNNELS_API_BUDGET_WINDOW {v:?} is not a duration of a second or more, such as 5m")
                })?,
        };
        let api_share = number("ECS_TUNNELS_API_SHARE", 100)?;
        if !(1..=100).contains(&api_share) {
            return Err(format!(
                "ECS_TUNNELS_API_SHARE {api_share} is not a percentage from 1 to 100"
            ));
        }
        let api_concurrency = number("ECS_TUNNELS_API_CONCURRENCY", 1)?;
        if !(1..=1000).contains(&api_concurrency) {
            return Err(format!("ECS_TUNNELS_API_CONCURRENCY {api_concurrency} must be the number of processes of this function that can run at once (1 or more)"));
        }
        let (api_share, api_concurrency) = (api_share as u32, api_concurrency as u32);
        Budget::share_of(api_budget, api_budget_window, api_share, api_concurrency).map_err(
            |e| {
                format!("ECS_TUNNELS_API_BUDGET, _SHARE and _CONCURRENCY: {e}; raise the share or lower the concurrency")
            },
        )?;
        let publish = crate::publish::PublishSettings::from_lookup(&get)?;
        let org = crate::organization::OrgSettings::from_lookup(&get)?;
        if org.is_some() && owner.is_none() {
            return Err("an organization install (ECS_TUNNELS_SPOKE_ROLE is set) needs ECS_TUNNELS_OWNER: the hub's owner id, written into every object for every account, e.g. <hub account>-<hub region> (the template sets it)".into());
        }
        Ok(Config {
            org,
            publish,
            api_budget,
            api_budget_window,
            api_share,
            api_concurrency,
            sweep_max_calls: number("ECS_TUNNELS_SWEEP_MAX_CALLS", 400)?,
            sweep_config_checks: number("ECS_TUNNELS_SWEEP_CONFIG_CHECKS", 15)? as usize,
            sweep_interval,
            account_id: account_id.to_ascii_lowercase(),
            api_token,
            api_url: get("CLOUDFLARE_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            owner,
            allowed_zones: list("ECS_TUNNELS_ALLOWED_ZONES"),
            parameter_prefix,
            token_store,
            clusters: get("ECS_TUNNELS_CLUSTERS")
                .map(|v| v.split_whitespace().map(str::to_string).collect()),
            rotate_every,
            retry_base,
        })
    }
}

/// What of the configuration shapes a service's plan.
impl Config {
    /// The settings that shape a plan, as one string for [`crate::digest::SpecDigest`]:
    /// a changed setting makes every service's next event take the full path.
    pub fn plan_fingerprint(&self) -> String {
        format!(
            "{}|{}|{:?}|{}|{:?}|{:?}",
            self.account_id,
            self.owner.as_ref().map(|o| o.as_str()).unwrap_or_default(),
            self.allowed_zones,
            self.parameter_prefix,
            self.token_store,
            self.rotate_every,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    const ACCT: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minimal_config_and_defaults() {
        let c = cfg(&[
            ("CLOUDFLARE_ACCOUNT_ID", ACCT),
            ("CLOUDFLARE_API_TOKEN_PARAMETER", "/cf/token"),
        ])
        .unwrap();
        assert_eq!(c.api_token, ApiTokenSource::Parameter("/cf/token".into()));
        assert_eq!(c.parameter_prefix, "/ecs-tunnels");
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.token_store, TokenStoreKind::Ssm);
        assert!(c.owner.is_none() && c.allowed_zones.is_none() && c.clusters.is_none());
    }

    #[test]
    fn api_budget_defaults_and_shares() {
        let base = [
            ("CLOUDFLARE_ACCOUNT_ID", ACCT),
            ("CLOUDFLARE_API_TOKEN", "t"),
        ];
        // Unset (the CLI): the whole of Cloudflare's 1,200 per 5 minutes, one process.
        let c = cfg(&base).unwrap();
        assert_eq!(
            (c.api_budget, c.api_share, c.api_concurrency),
            (1200, 100, 1)
        );
        assert_eq!(c.api_budget_window, Duration::from_secs(300));
        assert_eq!(c.process_budget().unwrap().per_window, 1200);
        // The template's event door: 55% split between 2 processes.
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            cfg(&pairs)
        };
        let c = with(&[
            ("ECS_TUNNELS_API_SHARE", "55"),
            ("ECS_TUNNELS_API_CONCURRENCY", "2"),
        ])
        .unwrap();
        let b = c.process_budget().unwrap();
        assert_eq!(
            (b.per_window, b.window, b.burst),
            (330, Duration::from_secs(300), 16)
        );
        let c = with(&[
            ("ECS_TUNNELS_API_BUDGET", "120"),
            ("ECS_TUNNELS_API_BUDGET_WINDOW", "30s"),
        ])
        .unwrap();
        assert_eq!(c.process_budget().unwrap().window, Duration::from_secs(30));
        assert_eq!(
            with(&[("ECS_TUNNELS_API_BUDGET", "0")])
                .unwrap()
                .process_budget(),
            None
        );
        for (k, v, needle) in [
            ("ECS_TUNNELS_API_SHARE", "0", "percentage"),
            ("ECS_TUNNELS_API_SHARE", "101", "percentage"),
            ("ECS_TUNNELS_API_SHARE", "half", "whole number"),
            ("ECS_TUNNELS_API_CONCURRENCY", "0", "1 or more"),
            ("ECS_TUNNELS_API_BUDGET_WINDOW", "5", "duration"),
            ("ECS_TUNNELS_API_BUDGET", "-1", "whole number"),
            ("ECS_TUNNELS_API_BUDGET", "2", "fewer than 3"),
        ] {
            let e = with(&[(k, v)]).unwrap_err();
            assert!(
                e.contains(
                    k.trim_start_matches("ECS_TUNNELS_API_")
                        .split('_')
                        .next()
                        .unwrap()
                ) && e.contains(needle),
                "{k}={v}: {e}"
            );
        }
    }

    #[test]
    fn errors_name_the_variable_and_never_the_token() {
        let e = cfg(&[("CLOUDFLARE_API_TOKEN", "sekrit")]).unwrap_err();
        assert!(e.contains("CLOUDFLARE_ACCOUNT_ID"));
        let e = cfg(&[("CLOUDFLARE_ACCOUNT_ID", ACCT)]).unwrap_err();
        assert!(e.contains("exactly one"));
        let e = cfg(&[
            ("CLOUDFLARE_ACCOUNT_ID", ACCT),
            ("CLOUDFLARE_API_TOKEN", "sekrit"),
            ("CLOUDFLARE_API_TOKEN_PARAMETER", "/x"),
        ])
        .unwrap_err();
        assert!(e.contains("more than one") && !e.contains("sekrit"));
        let e = cfg(&[
            ("CLOUDFLARE_ACCOUNT_ID", ACCT),
            ("CLOUDFLARE_API_TOKEN", "t"),
            ("ECS_TUNNELS_TOKEN_STORE", "vault"),
        ])
        .unwrap_err();
        assert!(e.contains("ECS_TUNNELS_TOKEN_STORE"));
        let e = cfg(&[
            ("CLOUDFLARE_ACCOUNT_ID", ACCT),
            ("CLOUDFLARE_API_TOKEN", "t"),
            ("ECS_TUNNELS_OWNER", "a b"),
        ])
        .unwrap_err();
        assert!(e.contains("ECS_TUNNELS_OWNER"));
    }
}
