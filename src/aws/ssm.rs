//! SSM Parameter Store backend of the token store (a SecureString per service, tagged
//! with the owner), and reading the Cloudflare API token.

use super::token_store::{ListedToken, StoredParameter};
use super::AwsError;
use crate::ownership::{Owner, ServiceId};
use crate::secret::Secret;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use std::collections::BTreeMap;

/// The SSM backend.
#[derive(Clone)]
pub struct SsmTokens {
    client: aws_sdk_ssm::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
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
            tagging: aws_sdk_resourcegroupstagging::Client::new(cfg),
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
    async fn try_tags_of(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
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

impl SsmTokens {
    /// The service a parameter name belongs to.
    pub fn service_of(&self, name: &str) -> Option<ServiceId> {
        let rest = name
            .strip_prefix(&format!("{}/", self.prefix))?
            .strip_suffix("/token")?;
        let (c, s) = rest.split_once('/')?;
        (!c.is_empty() && !s.is_empty() && !s.contains('/')).then(|| ServiceId::new(c, s))
    }

    /// Every token parameter under the prefix that carries `owner`'s tag, with all its
    /// tags, from the Resource Groups Tagging API (`GetResources`, 100 parameters a page):
    /// no value is read.
    pub async fn list(&self, owner: &Owner) -> Result<BTreeMap<ServiceId, ListedToken>, AwsError> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let mut out = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .tagging
                .get_resources()
                .resource_type_filters("ssm:parameter")
                .tag_filters(
                    TagFilter::builder()
                        .key(crate::ownership::SSM_OWNER_TAG)
                        .values(owner.as_str())
                        .build(),
                )
                .resources_per_page(100)
                .set_pagination_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("tag:GetResources", e))?;
            for mapping in page.resource_tag_mapping_list() {
                let Some(svc) = mapping
                    .resource_arn()
                    .and_then(parameter_name_of_arn)
                    .and_then(|n| self.service_of(n))
                else {
                    continue;
                };
                let tags = mapping
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
                out.insert(
                    svc,
                    ListedToken {
                        tags,
                        ..Default::default()
                    },
                );
            }
            match page.pagination_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The values of these services' token parameters, 10 per `GetParameters` call; a
    /// parameter that does not exist is left out.
    pub async fn values(
        &self,
        svcs: &[ServiceId],
    ) -> Result<BTreeMap<ServiceId, Secret>, AwsError> {
        let mut out = BTreeMap::new();
        for chunk in svcs.chunks(10) {
            let page = self
                .client
                .get_parameters()
                .set_names(Some(chunk.iter().map(|s| self.parameter_name(s)).collect()))
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ssm:GetParameters", e))?;
            for p in page.parameters() {
                if let Some(svc) = p.name().and_then(|n| self.service_of(n)) {
                    out.insert(svc, Secret::new(p.value().unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }
}

/// The parameter name in a parameter ARN: `arn:aws:ssm:<region>:<account>:parameter/a/b`
/// is `/a/b` (this store's names are paths, so they start with `/`).
fn parameter_name_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":parameter")
        .map(|(_, name)| name)
        .filter(|n| n.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::parameter_name_of_arn;

    #[test]
    fn parameter_names_come_out_of_their_arns() {
        assert_eq!(
            parameter_name_of_arn(
                "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/c/s/token"
            ),
            Some("/ecs-tunnels/c/s/token")
        );
        assert_eq!(
            parameter_name_of_arn("arn:aws:ssm:us-east-1:123456789012:document/x"),
            None
        );
    }
}
