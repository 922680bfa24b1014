//! SSM Parameter Store backend of the token store (a SecureString per service, tagged
//! with the owner), and reading the Cloudflare API token.

use super::token_store::StoredParameter;
use super::AwsError;
use crate::ownership::ServiceId;
use crate::secret::Secret;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

/// The SSM backend.
#[derive(Clone)]
pub struct SsmTokens {
    client: aws_sdk_ssm::Client,
    prefix: String,
}

fn is_not_found<E: aws_sdk_ssm::error::ProvideErrorMetadata>(e: &E) -> bool {
    matches!(e.code(), Some("ParameterNotFound" | "InvalidResourceId"))
}

impl SsmTokens {
    /// Builds the store for a prefix such as `/ecs-tunnels`.
    pub fn new(cfg: &aws_config::SdkConfig, prefix: &str) -> Self {
        SsmTokens {
            client: aws_sdk_ssm::Client::new(cfg),
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>/<cluster>/<service>/token`.
    pub fn parameter_name(&self, svc: &ServiceId) -> String {
        format!("{}/{}/{}/token", self.prefix, svc.cluster, svc.service)
    }

    /// Reads the token and the parameter's tags; `None` if there is no parameter.
    pub async fn get(&self, svc: &ServiceId) -> Result<Option<StoredParameter>, AwsError> {
        let name = self.parameter_name(svc);
        let value = match self
            .client
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => Secret::new(out.parameter().and_then(|p| p.value()).unwrap_or_default()),
            Err(e) if e.as_service_error().is_some_and(is_not_found) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("ssm:GetParameter", e)),
        };
        let tags = match self.try_tags_of(&name).await? {
            Some(tags) => tags,
            None => return Ok(None),
        };
        Ok(Some(StoredParameter {
            value,
            tags,
            rotation_schedule: None,
        }))
    }

    /// A parameter's tags; `None` if it is gone.
    async fn try_tags_of(
        &self,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, AwsError> {
        match self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.tag_list()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            Err(e) if e.as_service_error().is_some_and(is_not_found) => Ok(None),
            Err(e) => Err(AwsError::from_sdk("ssm:ListTagsForResource", e)),
        }
    }

    /// A parameter's tags; none if it is gone.
    async fn tags_of(
        &self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        Ok(self.try_tags_of(name).await?.unwrap_or_default())
    }

    /// Creates the parameter with tags. `Ok(false)` if it already exists (a concurrent run).
    pub async fn create(
        &self,
        svc: &ServiceId,
        token: &Secret,
        tags: &[(String, String)],
    ) -> Result<bool, AwsError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value are set")
            })
            .collect();
        match self
            .client
            .put_parameter()
            .name(self.parameter_name(svc))
            .description(format!(
                "Cloudflare tunnel token for ECS service {svc}, managed by ecs-tunnels"
            ))
            .value(token.expose())
            .r#type(ParameterType::SecureString)
            .overwrite(false)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_already_exists()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("ssm:PutParameter", e)),
        }
    }

    /// Overwrites the token (a new parameter version).
    pub async fn overwrite(&self, svc: &ServiceId, token: &Secret) -> Result<(), AwsError> {
        self.client
            .put_parameter()
            .name(self.parameter_name(svc))
            .value(token.expose())
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:PutParameter", e))?;
        Ok(())
    }

    /// Adds or replaces tags on the parameter.
    pub async fn add_tags(
        &self,
        svc: &ServiceId,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value are set")
            })
            .collect();
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(self.parameter_name(svc))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:AddTagsToResource", e))?;
        Ok(())
    }

    /// Removes a tag from the parameter.
    pub async fn remove_tag(&self, svc: &ServiceId, key: &str) -> Result<(), AwsError> {
        match self
            .client
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(self.parameter_name(svc))
            .tag_keys(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_not_found) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("ssm:RemoveTagsFromResource", e)),
        }
    }

    /// Deletes the parameter; a missing one is fine.
    pub async fn delete(&self, svc: &ServiceId) -> Result<(), AwsError> {
        match self
            .client
            .delete_parameter()
            .name(self.parameter_name(svc))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsError::from_sdk("ssm:DeleteParameter", e)),
        }
    }
}

/// Reads a SecureString parameter (the Cloudflare API token).
pub async fn read_secure_string(
    cfg: &aws_config::SdkConfig,
    name: &str,
) -> Result<Secret, AwsError> {
    let out = aws_sdk_ssm::Client::new(cfg)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ssm:GetParameter", e))?;
    Ok(Secret::new(
        out.parameter().and_then(|p| p.value()).unwrap_or_default(),
    ))
}

/// Reads the current value of a Secrets Manager secret (the Cloudflare API token).
pub async fn read_secret_string(
    cfg: &aws_config::SdkConfig,
    arn: &str,
) -> Result<Secret, AwsError> {
    let out = aws_sdk_secretsmanager::Client::new(cfg)
        .get_secret_value()
        .secret_id(arn)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:GetSecretValue", e))?;
    Ok(Secret::new(out.secret_string().unwrap_or_default()))
}

/// A token parameter as seen by a bulk read.
#[derive(Debug, Clone)]
pub struct ListedParameter {
    /// The token.
    pub value: Secret,
    /// Carries this owner's tag.
    pub owned: bool,
    /// Owes a redeploy.
    pub redeploy_pending: bool,
    /// An unfinished rotation's mark (`<reason> <time>`, or the reason alone in the old
    /// format).
    pub rotation: Option<String>,
}

impl SsmTokens {
    /// The service a parameter name belongs to.
    pub fn service_of(&self, name: &str) -> Option<ServiceId> {
        let rest = name
            .strip_prefix(&format!("{}/", self.prefix))?
            .strip_suffix("/token")?;
        let (c, s) = rest.split_once('/')?;
        (!c.is_empty() && !s.is_empty() && !s.contains('/')).then(|| ServiceId::new(c, s))
    }

    /// Names under the prefix whose tag `key` equals (or, with `begins`, begins with) one
    /// of `values`.
    async fn names_with_tag(
        &self,
        key: &str,
        values: &[&str],
        begins: bool,
    ) -> Result<Vec<String>, AwsError> {
        use aws_sdk_ssm::types::ParameterStringFilter;
        let filters = vec![
            ParameterStringFilter::builder()
                .key("Path")
                .option("Recursive")
                .values(&self.prefix)
                .build()
                .expect("key set"),
            ParameterStringFilter::builder()
                .key(format!("tag:{key}"))
                .option(if begins { "BeginsWith" } else { "Equals" })
                .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                .build()
                .expect("key set"),
        ];
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_parameters()
                .set_parameter_filters(Some(filters.clone()))
                .max_results(50)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ssm:DescribeParameters", e))?;
            out.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The custom resources (`cfn.<stack>/<logical id>`) whose token parameter this
    /// owner made, from one paged list (50 names a page).
    pub async fn owned_resource_tokens(
        &self,
        owner: &crate::ownership::Owner,
    ) -> Result<Vec<ServiceId>, AwsError> {
        Ok(self
            .names_with_tag(crate::ownership::SSM_OWNER_TAG, &[owner.as_str()], false)
            .await?
            .iter()
            .filter_map(|n| self.service_of(n))
            .filter(crate::doors::custom_resource::is_resource_key)
            .collect())
    }

    /// Every token parameter under the prefix, with ownership and marks, in a handful of
    /// paged calls (10 values per GetParametersByPath page, 50 names per DescribeParameters
    /// page) instead of two calls per service.
    pub async fn list_all(
        &self,
        owner: &crate::ownership::Owner,
    ) -> Result<std::collections::BTreeMap<ServiceId, ListedParameter>, AwsError> {
        use crate::aws::token_store::{REDEPLOY_TAG, ROTATION_TAG};
        let mut values = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .get_parameters_by_path()
                .path(&self.prefix)
                .recursive(true)
                .with_decryption(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ssm:GetParametersByPath", e))?;
            values.extend(page.parameters().iter().filter_map(|p| {
                Some((
                    p.name()?.to_string(),
                    Secret::new(p.value().unwrap_or_default()),
                ))
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let owned = self
            .names_with_tag(crate::ownership::SSM_OWNER_TAG, &[owner.as_str()], false)
            .await?;
        let pending = self
            .names_with_tag(REDEPLOY_TAG, &["pending"], false)
            .await?;
        // Marks carry the time their run set them, which no filter can match: the few
        // marked parameters are found by reason, and their tags read one by one.
        let mut rotation = Vec::new();
        let reasons = ["schedule", "manual", "compromised", "repair"];
        for n in self.names_with_tag(ROTATION_TAG, &reasons, true).await? {
            if let Some(mark) = self.tags_of(&n).await?.remove(ROTATION_TAG) {
                rotation.push((n, mark));
            }
        }
        Ok(values
            .into_iter()
            .filter_map(|(name, value)| {
                let svc = self.service_of(&name)?;
                Some((
                    svc,
                    ListedParameter {
                        value,
                        owned: owned.contains(&name),
                        redeploy_pending: pending.contains(&name),
                        rotation: rotation
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, m)| m.clone()),
                    },
                ))
            })
            .collect())
    }
}
