//! Everything a reconcile needs from the outside, built once per process (cold start)
//! and shared by every invocation: the configuration, the Cloudflare client, the AWS
//! adapters, and small caches of account-wide facts (zones, team name).

use crate::aws::ecs::Ecs;
use crate::aws::iam::Iam;
use crate::aws::ssm::{read_secret_string, read_secure_string};
use crate::aws::token_store::TokenStore;
use crate::cloudflare::{ClientOptions, CloudflareClient, Zone};
use crate::config::{ApiTokenSource, Config};
use crate::ownership::Owner;
use crate::task_definition::TaskDefinition;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long account-wide lookups (zones, team name, Access tag) are trusted.
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Cache {
    zones: Option<(Instant, Vec<Zone>)>,
    team_name: Option<(Instant, String)>,
    access_tags: Vec<String>,
    task_definitions: std::collections::HashMap<String, Option<Arc<TaskDefinition>>>,
    lookups: Option<(Instant, std::sync::Arc<crate::observe::Lookups>)>,
}

/// The shared dependencies of every door.
pub struct Deps {
    /// Configuration.
    pub config: Config,
    /// Cloudflare API client.
    pub cf: CloudflareClient,
    /// ECS adapter.
    pub ecs: Ecs,
    /// IAM reads (a diagnosis of the sidecar's execution role).
    pub iam: Iam,
    /// Token store.
    pub tokens: TokenStore,
    /// AWS region of the SDK configuration.
    pub region: String,
    /// The event queue, for delayed follow-ups (`ECS_TUNNELS_FOLLOW_UP_QUEUE_URL`).
    pub follow_ups: Option<crate::aws::sqs::Queue>,
    cache: Mutex<Cache>,
}

/// Why the dependencies could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct InitError {
    /// What went wrong (never the token).
    pub message: String,
    /// A retry may succeed (throttling, a server error), as opposed to a misconfiguration.
    pub transient: bool,
}

impl InitError {
    fn setup(message: impl Into<String>) -> Self {
        InitError {
            message: message.into(),
            transient: false,
        }
    }
}

impl Deps {
    /// Builds the dependencies: loads AWS config and reads the API token once.
    pub async fn build(config: Config) -> Result<Deps, InitError> {
        let sdk = crate::aws::load_sdk_config().await;
        let read_failed = |what: String, e: crate::aws::AwsError| InitError {
            message: format!("cannot read the Cloudflare API token from {what}: {e}"),
            transient: e.is_transient(),
        };
        let token = match &config.api_token {
            ApiTokenSource::Value(s) => s.clone(),
            ApiTokenSource::Parameter(name) => read_secure_string(&sdk, name)
                .await
                .map_err(|e| read_failed(format!("SSM parameter {name}"), e))?,
            ApiTokenSource::SecretArn(arn) => read_secret_string(&sdk, arn)
                .await
                .map_err(|e| read_failed(format!("secret {arn}"), e))?,
        };
        if token.is_empty() {
            return Err(InitError::setup("the Cloudflare API token is empty"));
        }
        let mut opts = ClientOptions::new(config.api_url.clone(), token, config.account_id.clone());
        opts.base_backoff = config.retry_base;
        opts.budget = config.process_budget();
        Ok(Deps {
            cf: CloudflareClient::try_new(opts).map_err(InitError::setup)?,
            ecs: Ecs::new(&sdk),
            iam: Iam::new(&sdk),
            tokens: TokenStore::new(&sdk, config.token_store, &config.parameter_prefix),
            follow_ups: config
                .publish
                .follow_up_queue
                .as_deref()
                .map(|url| crate::aws::sqs::Queue::new(&sdk, url)),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            config,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The owner id: configured, or `<account>-<region>` of the given AWS account.
    pub fn owner(&self, account: Option<&str>) -> Result<Owner, String> {
        if let Some(o) = &self.config.owner {
            return Ok(o.clone());
        }
        match account {
            Some(a) if !a.is_empty() => Ok(Owner::default_for(a, &self.region)),
            _ => Err(
                "cannot tell the AWS account to build the default owner id: set ECS_TUNNELS_OWNER"
                    .into(),
            ),
        }
    }

    /// Zones the token sees (cached for a few minutes).
    pub async fn zones(&self) -> Result<Vec<Zone>, crate::cloudflare::CfError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, z)) = &cache.zones {
            if at.elapsed() < CACHE_TTL {
                return Ok(z.clone());
            }
        }
        let zones = self.cf.list_zones().await?;
        cache.zones = Some((Instant::now(), zones.clone()));
        Ok(zones)
    }

    /// The Zero Trust team name (cached).
    pub async fn team_name(&self) -> Result<String, crate::cloudflare::CfError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, t)) = &cache.team_name {
            if at.elapsed() < CACHE_TTL {
                return Ok(t.clone());
            }
        }
        let team = self.cf.get_organization().await?.team_name().to_string();
        cache.team_name = Some((Instant::now(), team.clone()));
        Ok(team)
    }

    /// The account-wide lists that names in tags resolve against (groups, reusable
    /// policies, IdPs), each fetched once when first needed and kept for a few minutes;
    /// `fresh` starts new ones (a name not found may be younger than the lists).
    pub async fn lookups(&self, fresh: bool) -> std::sync::Arc<crate::observe::Lookups> {
        let mut cache = self.cache.lock().await;
        match &cache.lookups {
            Some((at, l)) if !fresh && at.elapsed() < CACHE_TTL => l.clone(),
            _ => {
                let l = std::sync::Arc::new(crate::observe::Lookups::default());
                cache.lookups = Some((Instant::now(), l.clone()));
                l
            }
        }
    }

    /// A task definition, parsed. Task definitions are immutable, so the answer is
    /// cached for the life of the process (a sweep reads each one once, and a diagnosis
    /// after a reconcile reads none).
    pub async fn task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<Arc<TaskDefinition>>, crate::aws::AwsError> {
        if let Some(td) = self
            .cache
            .lock()
            .await
            .task_definitions
            .get(task_definition)
        {
            return Ok(td.clone());
        }
        let td = self
            .ecs
            .task_definition(task_definition)
            .await?
            .map(Arc::new);
        self.cache
            .lock()
            .await
            .task_definitions
            .insert(task_definition.to_string(), td.clone());
        Ok(td)
    }

    /// The default origin of a task definition ([`TaskDefinition::default_origin`]),
    /// from the cached task definition.
    pub async fn default_origin(
        &self,
        task_definition: &str,
    ) -> Result<Option<String>, crate::aws::AwsError> {
        Ok(self
            .task_definition(task_definition)
            .await?
            .and_then(|td| td.default_origin()))
    }

    /// Makes sure the Access tag exists (once per process).
    pub async fn ensure_access_tag(&self, tag: &str) -> Result<(), crate::cloudflare::CfError> {
        let mut cache = self.cache.lock().await;
        if cache.access_tags.iter().any(|t| t == tag) {
            return Ok(());
        }
        self.cf.ensure_access_tag(tag).await?;
        cache.access_tags.push(tag.to_string());
        Ok(())
    }
}
