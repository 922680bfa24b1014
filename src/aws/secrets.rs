//! Secrets Manager backend of the token store: one secret per service, created and
//! deleted with the tunnel, tagged like the SSM parameter; plus the version-stage calls
//! of Secrets Manager's rotation protocol.

use super::token_store::{ListedToken, RotationSchedule, StoredParameter};
use super::AwsError;
use crate::ownership::{Owner, ServiceId};
use crate::secret::Secret;
use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use std::collections::BTreeMap;

/// A secret's metadata (never its value).
#[derive(Debug, Clone, Default)]
pub struct SecretInfo {
    /// Secret ARN.
    pub arn: String,
    /// Secret name.
    pub name: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Version id → staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
    /// The rotation configuration.
    pub rotation: RotationSchedule,
}

impl SecretInfo {
    /// The version carrying a staging label.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }

    /// True when `version` carries `stage`.
    pub fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.versions
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }
}

/// The Secrets Manager backend.
#[derive(Clone)]
pub struct SecretTokens {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
    rotation_function: Option<String>,
}

fn tags_of(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn rotation_schedule(
    enabled: Option<bool>,
    function: Option<&str>,
    rules: Option<&RotationRulesType>,
) -> RotationSchedule {
    RotationSchedule {
        enabled: enabled.unwrap_or(false),
        function: function.filter(|a| !a.is_empty()).map(str::to_string),
        expression: rules
            .and_then(|r| r.schedule_expression())
            .filter(|e| !e.is_empty())
            .map(str::to_string),
        after_days: rules.and_then(|r| r.automatically_after_days()),
    }
}

fn not_found<E: aws_sdk_secretsmanager::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

impl SecretTokens {
    /// Builds the backend; `rotation_function` (the rotation Lambda's ARN) turns on
    /// Secrets Manager's own rotation schedule for each secret created.
    pub fn new(cfg: &aws_config::SdkConfig, prefix: &str) -> Self {
        SecretTokens {
            client: aws_sdk_secretsmanager::Client::new(cfg),
            prefix: prefix.trim_start_matches('/').to_string(),
            rotation_function: std::env::var("ECS_TUNNELS_ROTATION_FUNCTION_ARN")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }

    /// `<prefix>/<cluster>/<service>/token` (no leading slash).
    pub fn secret_name(&self, svc: &ServiceId) -> String {
        format!("{}/{}/{}/token", self.prefix, svc.cluster, svc.service)
    }

    /// Metadata of a secret by name or ARN; `None` if it does not exist.
    pub async fn describe(&self, secret_id: &str) -> Result<Option<SecretInfo>, AwsError> {
        let out = match self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("secretsmanager:DescribeSecret", e)),
        };
        if out.deleted_date().is_some() {
            return Ok(None);
        }
        Ok(Some(SecretInfo {
            arn: out.arn().unwrap_or_default().to_string(),
            name: out.name().unwrap_or_default().to_string(),
            tags: tag_map(out.tags()),
            versions: out
                .version_ids_to_stages()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            rotation: rotation_schedule(
                out.rotation_enabled(),
                out.rotation_lambda_arn(),
                out.rotation_rules(),
            ),
        }))
    }

    /// The service a secret name belongs to.
    pub fn service_of(&self, name: &str) -> Option<ServiceId> {
        let rest = name
            .strip_prefix(&format!("{}/", self.prefix))?
            .strip_suffix("/token")?;
        let (c, s) = rest.split_once('/')?;
        (!c.is_empty() && !s.is_empty() && !s.contains('/')).then(|| ServiceId::new(c, s))
    }

    /// Every token secret under the prefix that carries `owner`'s tag, with its tags and
    /// rotation configuration, from `ListSecrets` (100 a page): no value is read.
    pub async fn list(&self, owner: &Owner) -> Result<BTreeMap<ServiceId, ListedToken>, AwsError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filters = vec![
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values(format!("{}/", self.prefix))
                .build(),
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values(crate::ownership::SSM_OWNER_TAG)
                .build(),
        ];
        let mut out = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_secrets()
                .set_filters(Some(filters.clone()))
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("secretsmanager:ListSecrets", e))?;
            for entry in page.secret_list() {
                let tags = tag_map(entry.tags());
                if entry.deleted_date().is_some() || !owner.owns_ssm(&tags) {
                    continue;
                }
                let Some(svc) = entry.name().and_then(|n| self.service_of(n)) else {
                    continue;
                };
                out.insert(
                    svc,
                    ListedToken {
                        tags,
                        rotation_schedule: Some(rotation_schedule(
                            entry.rotation_enabled(),
                            entry.rotation_lambda_arn(),
                            entry.rotation_rules(),
                        )),
                        value: None,
                    },
                );
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The current values of these services' token secrets, one `GetSecretValue` each; a
    /// secret that does not exist is left out.
    pub async fn values(
        &self,
        svcs: &[ServiceId],
    ) -> Result<BTreeMap<ServiceId, Secret>, AwsError> {
        let mut out = BTreeMap::new();
        for svc in svcs {
            if let Some(v) = self
                .value(&self.secret_name(svc), None, Some("AWSCURRENT"))
                .await?
            {
                out.insert(svc.clone(), v);
            }
        }
        Ok(out)
    }

    /// The rotation function this install schedules, if any.
    pub fn rotation_function(&self) -> Option<&str> {
        self.rotation_function.as_deref()
    }

    /// The value of one version (by id and/or stage); `None` if there is no such version.
    pub async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<Secret>, AwsError> {
        match self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_string))
            .set_version_stage(stage.map(str::to_string))
            .send()
            .await
        {
            Ok(o) => Ok(Some(Secret::new(o.secret_string().unwrap_or_default()))),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(None),
            Err(e) => Err(AwsError::from_sdk("secretsmanager:GetSecretValue", e)),
        }
    }

    /// The current token and tags.
    pub async fn get(&self, svc: &ServiceId) -> Result<Option<StoredParameter>, AwsError> {
        let name = self.secret_name(svc);
        let Some(info) = self.describe(&name).await? else {
            return Ok(None);
        };
        // Always name the stage: moto (and caches) may serve a stale default version.
        match self.value(&name, None, Some("AWSCURRENT")).await? {
            Some(value) => Ok(Some(StoredParameter {
                value,
                tags: info.tags,
                rotation_schedule: Some(info.rotation),
            })),
            None => Ok(None),
        }
    }

    /// Creates the secret with tags; `Ok(false)` if it exists.
    pub async fn create(
        &self,
        svc: &ServiceId,
        token: &Secret,
        tags: &[(String, String)],
    ) -> Result<bool, AwsError> {
        match self
            .client
            .create_secret()
            .name(self.secret_name(svc))
            .description(format!(
                "Cloudflare tunnel token for ECS service {svc}, managed by ecs-tunnels"
            ))
            .secret_string(token.expose())
            .set_tags(Some(tags_of(tags)))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("secretsmanager:CreateSecret", e)),
        }
    }

    /// Sets Secrets Manager's own rotation schedule for the secret, when the install
    /// names its rotation function (`ECS_TUNNELS_ROTATION_FUNCTION_ARN`). Secrets Manager
    /// then tests the configuration by invoking the function's `testSecret` step with a
    /// pending copy of the current value; no rotation starts.
    pub async fn schedule_rotation(
        &self,
        svc: &ServiceId,
        expression: &str,
    ) -> Result<(), AwsError> {
        let Some(function) = &self.rotation_function else {
            return Ok(());
        };
        self.client
            .rotate_secret()
            .secret_id(self.secret_name(svc))
            .rotation_lambda_arn(function)
            .rotation_rules(
                RotationRulesType::builder()
                    .schedule_expression(expression)
                    .build(),
            )
            .rotate_immediately(false)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:RotateSecret", e))?;
        Ok(())
    }

    /// Starts a rotation now (Secrets Manager then calls the rotation function's steps).
    pub async fn rotate_now(&self, svc: &ServiceId) -> Result<(), AwsError> {
        self.client
            .rotate_secret()
            .secret_id(self.secret_name(svc))
            .rotate_immediately(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:RotateSecret", e))?;
        Ok(())
    }

    /// Stores a new current value (outside the rotation protocol).
    pub async fn overwrite(&self, svc: &ServiceId, token: &Secret) -> Result<(), AwsError> {
        self.client
            .put_secret_value()
            .secret_id(self.secret_name(svc))
            .secret_string(token.expose())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e))?;
        Ok(())
    }

    /// Stores the pending value of a rotation (idempotent for the same request token).
    pub async fn put_pending(
        &self,
        secret_id: &str,
        version: &str,
        token: &Secret,
        rotation_token: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(version)
            .secret_string(token.expose())
            .version_stages("AWSPENDING")
            .set_rotation_token(rotation_token.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e))?;
        Ok(())
    }

    /// Moves a staging label to `to` (from `from`, if given); `to = None` removes it from `from`.
    pub async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:UpdateSecretVersionStage", e))?;
        Ok(())
    }

    /// Adds or replaces tags.
    pub async fn add_tags(
        &self,
        svc: &ServiceId,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        self.add_tags_by_id(&self.secret_name(svc), tags).await
    }

    /// Adds or replaces tags on a secret by name or ARN.
    pub async fn add_tags_by_id(
        &self,
        secret_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        self.client
            .tag_resource()
            .secret_id(secret_id)
            .set_tags(Some(tags_of(tags)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:TagResource", e))?;
        Ok(())
    }

    /// Removes a tag.
    pub async fn remove_tag(&self, svc: &ServiceId, key: &str) -> Result<(), AwsError> {
        self.remove_tag_by_id(&self.secret_name(svc), key).await
    }

    /// Removes a tag from a secret by name or ARN.
    pub async fn remove_tag_by_id(&self, secret_id: &str, key: &str) -> Result<(), AwsError> {
        match self
            .client
            .untag_resource()
            .secret_id(secret_id)
            .tag_keys(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("secretsmanager:UntagResource", e)),
        }
    }

    /// Deletes the secret at once (no recovery window, so the name can be reused).
    pub async fn delete(&self, svc: &ServiceId) -> Result<(), AwsError> {
        match self
            .client
            .delete_secret()
            .secret_id(self.secret_name(svc))
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("secretsmanager:DeleteSecret", e)),
        }
    }
}
