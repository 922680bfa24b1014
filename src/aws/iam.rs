//! IAM reads for a diagnosis: a role's identity policies (inline and attached managed,
//! each managed policy at its default version) and its permissions boundary. Read-only;
//! the documents are judged by [`crate::diagnose::policy`].

use super::AwsError;
use serde_json::Value;

/// One policy document and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// `inline <name>` or the managed policy's ARN.
    pub source: String,
    /// The document (JSON).
    pub document: Value,
}

/// A role's identity policies.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePolicies {
    /// The role's ARN.
    pub arn: String,
    /// Inline and attached managed policies.
    pub policies: Vec<PolicyDocument>,
    /// The permissions boundary, when the role has one.
    pub boundary: Option<PolicyDocument>,
}

/// IAM adapter.
#[derive(Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
}

/// The error IAM answers for a role or policy that does not exist.
pub const NO_SUCH_ENTITY: &str = "NoSuchEntity";

impl Iam {
    /// Builds the adapter from a shared SDK config.
    pub fn new(cfg: &aws_config::SdkConfig) -> Self {
        Iam {
            client: aws_sdk_iam::Client::new(cfg),
        }
    }

    /// The policies of the role called `name`; `None` when it does not exist. Calls
    /// `GetRole`, `ListRolePolicies` and `GetRolePolicy` for each inline policy,
    /// `ListAttachedRolePolicies`, and `GetPolicy` + `GetPolicyVersion` for each managed
    /// policy (and the boundary).
    pub async fn role_policies(&self, name: &str) -> Result<Option<RolePolicies>, AwsError> {
        let role = match self.client.get_role().role_name(name).send().await {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk("iam:GetRole", e);
                return match e.code.as_deref() {
                    Some(NO_SUCH_ENTITY) => Ok(None),
                    _ => Err(e),
                };
            }
        };
        let Some(role) = role.role() else {
            return Ok(None);
        };
        let mut policies = Vec::new();
        for policy in self.inline_names(name).await? {
            let out = self
                .client
                .get_role_policy()
                .role_name(name)
                .policy_name(&policy)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("iam:GetRolePolicy", e))?;
            policies.push(PolicyDocument {
                source: format!("inline {policy}"),
                document: decode(out.policy_document())?,
            });
        }
        for arn in self.attached_arns(name).await? {
            policies.push(self.managed(&arn).await?);
        }
        let boundary = match role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
        {
            Some(arn) => Some(self.managed(arn).await?),
            None => None,
        };
        Ok(Some(RolePolicies {
            arn: role.arn().to_string(),
            policies,
            boundary,
        }))
    }

    async fn inline_names(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_role_policies()
                .role_name(role)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("iam:ListRolePolicies", e))?;
            names.extend(page.policy_names().iter().cloned());
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => return Ok(names),
            }
        }
    }

    async fn attached_arns(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let mut arns = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_attached_role_policies()
                .role_name(role)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("iam:ListAttachedRolePolicies", e))?;
            arns.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    /// A managed policy's default version.
    async fn managed(&self, arn: &str) -> Result<PolicyDocument, AwsError> {
        let policy = self
            .client
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetPolicy", e))?;
        let version = policy
            .policy()
            .and_then(|p| p.default_version_id())
            .unwrap_or("v1")
            .to_string();
        let out = self
            .client
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetPolicyVersion", e))?;
        let document = out
            .policy_version()
            .and_then(|v| v.document())
            .unwrap_or("{}");
        Ok(PolicyDocument {
            source: arn.to_string(),
            document: decode(document)?,
        })
    }
}

/// IAM returns policy documents URL-encoded (RFC 3986).
fn decode(document: &str) -> Result<Value, AwsError> {
    serde_json::from_str(document)
        .or_else(|_| serde_json::from_str(&percent_decode(document)))
        .map_err(|e| AwsError {
            operation: "iam:GetPolicyVersion",
            code: Some("MalformedPolicyDocument".into()),
            message: format!("a policy document is not JSON: {e}"),
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_plain_or_url_encoded() {
        let plain =
            r#"{"Statement":[{"Effect":"Allow","Action":"ssm:GetParameters","Resource":"*"}]}"#;
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22ssm%3AGetParameters%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        assert_eq!(decode(plain).unwrap(), decode(encoded).unwrap());
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert!(decode("%7Bnot json").is_err());
    }
}
