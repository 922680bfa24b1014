//! Why a reconcile of one service did not converge.

use crate::aws::AwsError;
use crate::cloudflare::CfError;
use crate::spec::SpecError;

/// A reconcile failure. None of these carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The tags (or custom resource properties) are wrong; nothing was changed.
    #[error("invalid configuration: {}", join(.0))]
    Invalid(Vec<SpecError>),
    /// Something in the way is not ours; nothing was changed.
    #[error("conflict: {}", .0.join("; "))]
    Conflict(Vec<String>),
    /// Cloudflare refused or failed.
    #[error("Cloudflare: {0}")]
    Cloudflare(#[from] CfError),
    /// AWS refused or failed.
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// The hub could not reach a spoke account (organization install).
    #[error("{0}")]
    Spoke(crate::organization::SpokeError),
    /// The install itself is misconfigured.
    #[error("{0}")]
    Setup(String),
    /// Concurrent changes kept the plan from emptying; the next run continues.
    #[error("{0}")]
    NotConverged(String),
    /// The token changed and only the service's owner can start its new tasks (its
    /// deployment controller is CodeDeploy or external).
    #[error("{0}")]
    Redeploy(String),
}

fn join(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl ReconcileError {
    /// Worth retrying as is (rate limits, server errors, throttling); bad input and
    /// conflicts are not.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Cloudflare(e) => e.is_transient(),
            ReconcileError::Aws(e) => e.is_transient(),
            ReconcileError::NotConverged(_) => true,
            ReconcileError::Spoke(e) => e.transient,
            _ => false,
        }
    }

    /// A short kind for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Invalid(_) => "invalid",
            ReconcileError::Conflict(_) => "conflict",
            ReconcileError::Cloudflare(_) => "cloudflare",
            ReconcileError::Aws(_) => "aws",
            ReconcileError::Setup(_) => "setup",
            ReconcileError::Spoke(_) => "spoke",
            ReconcileError::NotConverged(_) => "not_converged",
            ReconcileError::Redeploy(_) => "redeploy",
        }
    }
}
