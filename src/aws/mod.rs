//! Thin AWS adapters: ECS (services, tags, redeploys), the token store (SSM or
//! Secrets Manager), and IAM reads for a diagnosis.
//! Each call maps SDK errors into [`AwsError`], which names the operation.

pub mod ecs;
pub mod iam;
pub mod organizations;
pub mod secrets;
pub mod sqs;
pub mod ssm;
pub mod sts;
pub mod token_store;

use aws_sdk_ecs::error::ProvideErrorMetadata;

/// An AWS call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("AWS {operation} failed: {message}")]
pub struct AwsError {
    /// The API operation, e.g. `ecs:DescribeServices`.
    pub operation: &'static str,
    /// AWS error code, when AWS sent one.
    pub code: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl AwsError {
    /// Wraps an SDK error.
    pub fn from_sdk<E, R>(operation: &'static str, err: aws_sdk_ecs::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => format!("{}: {m}", code.as_deref().unwrap_or("error")),
            None => aws_sdk_ecs::error::DisplayErrorContext(&err).to_string(),
        };
        AwsError {
            operation,
            code,
            message,
        }
    }

    /// True for throttling and server-side errors worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "ThrottlingException"
                    | "ServerException"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TooManyUpdates"
            )
        ) || self.code.is_none()
    }
}

/// Loads the shared AWS configuration (honours `AWS_ENDPOINT_URL` for emulators).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
