//! Everything a reconcile needs from the outside, built once per process (cold start)
//! and shared by every invocation: the configuration, the Cloudflare client, the AWS
//! adapters, and small caches of account-wide facts (zones, team name).
//!
//! In an organization install the AWS adapters belong to one account and region:
//! [`Deps::for_service`] and [`Deps::for_scope`] give a copy whose ECS, token store and
//! IAM clients act in a spoke (through [`crate::organization::Spokes`]), sharing the
//! Cloudflare client, its budget and the caches with the hub's.

use crate::aws::ecs::Ecs;
use crate::aws::iam::Iam;
use crate::aws::ssm::{read_secret_string, read_secure_string};
use crate::aws::token_store::TokenStore;
use crate::cloudflare::{ClientOptions, CloudflareClient, Zone};
use crate::config::{ApiTokenSource, Config};
use crate::error::ReconcileError;
use crate::organization::{SpokeError, Spokes};
use crate::ownership::{Owner, Scope, ServiceId};
use crate::task_definition::TaskDefinition;
use std::borrow::Cow;
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

/// The shared dependencies of every door. Cloning is cheap (handles and `Arc`s).
#[derive(Clone)]
pub struct Deps {
    /// Configuration.
    pub config: Arc<Config>,
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
    /// The spoke account and region the AWS adapters act in (organization install);
    /// `None`: the process's own account.
    pub scope: Option<Scope>,
    /// The hub's spokes (organization install only).
    pub spokes: Option<Arc<Spokes>>,
    cache: Arc<Mutex<Cache>>,
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
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let spokes = config.org.clone().map(|org| {
            Arc::new(Spokes::new(
                org,
                sdk.clone(),
                &region,
                config.token_store,
                &config.parameter_prefix,
            ))
        });
        Ok(Deps {
            spokes,
            scope: None,
            cf: CloudflareClient::try_new(opts).map_err(InitError::setup)?,
            ecs: Ecs::new(&sdk),
            iam: Iam::new(&sdk),
            tokens: TokenStore::new(&sdk, config.token_store, &config.parameter_prefix),
            follow_ups: config
                .publish
                .follow_up_queue
                .as_deref()
                .map(|url| crate::aws::sqs::Queue::new(&sdk, url)),
            region,
            config: Arc::new(config),
            cache: Arc::new(Mutex::new(Cache::default())),
        })
    }

    /// `svc` as this install names it: with the account and region an event gave it in
    /// an organization install, without them in a single-account one.
    pub fn install_scope(&self, svc: ServiceId) -> ServiceId {
        if self.is_hub() {
            svc
        } else {
            svc.in_scope(None)
        }
    }

    /// True in an organization install (`ECS_TUNNELS_SPOKE_ROLE` set).
    pub fn is_hub(&self) -> bool {
        self.spokes.is_some()
    }

    /// The dependencies whose AWS adapters act in `scope` (a spoke's account and region),
    /// assuming its role if this process holds no fresh credentials for it.
    pub async fn for_scope(&self, scope: &Scope) -> Result<Deps, SpokeError> {
        let Some(spokes) = &self.spokes else {
            return Err(SpokeError {
                message: format!("{scope} was asked for, but this is not an organization install (ECS_TUNNELS_SPOKE_ROLE is not set)"),
                transient: false,
            });
        };
        if self.scope.as_ref() == Some(scope) {
            return Ok(self.clone());
        }
        let clients = spokes.clients(scope).await?;
        Ok(Deps {
            ecs: clients.ecs,
            iam: clients.iam,
            tokens: clients.tokens,
            region: scope.region.clone(),
            scope: Some(scope.clone()),
            ..self.clone()
        })
    }

    /// The dependencies for one service: these, or (in an organization install) its
    /// spoke's. A service without a scope in an organization install, or with one in a
    /// single-account install, is a setup error that says which.
    pub async fn for_service(&self, svc: &ServiceId) -> Result<Cow<'_, Deps>, ReconcileError> {
        match (&svc.scope, self.is_hub()) {
            (None, false) => Ok(Cow::Borrowed(self)),
            // A CloudFormation custom resource lives in the hub's own account.
            (None, true) if crate::doors::custom_resource::is_resource_key(svc) => {
                Ok(Cow::Borrowed(self))
            }
            (Some(scope), true) => match self.spokes.as_ref().and_then(|s| s.settings.refuses(scope, &self.region)) {
                Some(why) => Err(ReconcileError::Setup(format!("{svc}: {why}"))),
                None => self
                    .for_scope(scope)
                    .await
                    .map(Cow::Owned)
                    .map_err(ReconcileError::Spoke),
            },
            (None, true) => Err(ReconcileError::Setup(format!(
                "{svc}: an organization install needs the service's account and region (give --account and --region, or an event that names them)"
            ))),
            (Some(scope), false) => Err(ReconcileError::Setup(format!(
                "{svc}: {scope} was named, but this is a single-account install (set ECS_TUNNELS_SPOKE_ROLE and ECS_TUNNELS_ACCOUNTS to serve other accounts)"
            ))),
        }
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
