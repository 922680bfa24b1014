//! STS `AssumeRole`: the hub's way into a spoke account (see [`crate::organization`]).

use super::AwsError;
use aws_sdk_sts::config::Credentials;
use std::time::SystemTime;

/// The session name the hub's calls carry in the spoke's CloudTrail.
pub const SESSION_NAME: &str = "ecs-tunnels-hub";

/// Temporary credentials for a spoke role, and when they stop working.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    /// The credentials (never logged: `Credentials`' Debug redacts the secret).
    pub credentials: Credentials,
    /// When AWS says they expire.
    pub expires: SystemTime,
}

/// Assumes `role_arn` with the process's own credentials, passing `external_id` when the
/// spoke's trust policy asks for one.
pub async fn assume_role(
    sdk: &aws_config::SdkConfig,
    role_arn: &str,
    external_id: Option<&str>,
) -> Result<AssumedRole, AwsError> {
    let out = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(SESSION_NAME)
        .set_external_id(external_id.map(str::to_string))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sts:AssumeRole", e))?;
    let c = out.credentials().ok_or_else(|| AwsError {
        operation: "sts:AssumeRole",
        code: None,
        message: "AssumeRole answered without credentials".into(),
    })?;
    let expires = SystemTime::try_from(*c.expiration()).unwrap_or_else(|_| SystemTime::now());
    Ok(AssumedRole {
        credentials: Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expires),
            "ecs-tunnels-spoke",
        ),
        expires,
    })
}
