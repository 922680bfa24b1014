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
        let tags = match self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(&name)
            .send()
            .await
        {
            Ok(out) => out
                .tag_list()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if e.as_service_error().is_some_and(is_not_found) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("ssm:ListTagsForResource", e)),
        };
        Ok(Some(StoredParameter { value, tags }))
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
