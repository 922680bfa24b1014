//! Where a service's tags become what should exist: its spec (with the default origin
//! from the task definition, read only when needed) and the digest of those inputs.
//! Shared by the per-service reconcile and the sweep, so both judge a service alike.

use crate::aws::ecs::ServiceInfo;
use crate::aws::AwsError;
use crate::context::Deps;
use crate::digest::SpecDigest;
use crate::spec::{self, Defaults, Desired, TAG_ORIGIN, TAG_STATUS};

/// Placeholder origin for a sweep's check of a service whose inputs match its last
/// converged reconcile and whose configuration is not compared this time: the origin
/// appears only in the configuration, so it is not read (one `DescribeTaskDefinition`
/// saved per service).
const UNREAD_ORIGIN: &str = "http://localhost:1";

/// A service's desired state and the digest of its inputs.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// What the tags ask for.
    pub desired: Desired,
    /// The digest of the inputs.
    pub digest: SpecDigest,
    /// The digest in the service's status tag (its last converged reconcile), if any.
    pub recorded: Option<SpecDigest>,
    /// The origin is [`UNREAD_ORIGIN`]: the configuration must not be compared.
    pub origin_unread: bool,
}

impl Wanted {
    /// The inputs are those of the last converged reconcile.
    pub fn unchanged(&self) -> bool {
        self.recorded.as_ref() == Some(&self.digest)
    }
}

/// The digest of a service's inputs and the one its status records.
pub fn digests(deps: &Deps, info: &ServiceInfo) -> (SpecDigest, Option<SpecDigest>) {
    // The deployment controller decides how a new token reaches the tasks.
    let settings = format!(
        "{}|{}",
        deps.config.plan_fingerprint(),
        info.deployment_controller
    );
    let digest = SpecDigest::of(&info.tags, info.task_definition.as_deref(), &settings);
    let recorded = info
        .tags
        .get(TAG_STATUS)
        .and_then(|s| SpecDigest::from_status(s));
    (digest, recorded)
}

/// Builds what a tagged service should have. `origin_needed: false` skips the task
/// definition when the digest matches the recorded one (a sweep that does not compare
/// this service's configuration).
pub async fn wanted(
    deps: &Deps,
    info: &ServiceInfo,
    origin_needed: bool,
) -> Result<Wanted, AwsError> {
    let (digest, recorded) = digests(deps, info);
    let skip = !origin_needed && recorded.as_ref() == Some(&digest);
    let origin = match (info.tags.contains_key(TAG_ORIGIN), &info.task_definition) {
        (true, _) | (false, None) => None,
        (false, Some(_)) if skip => Some(UNREAD_ORIGIN.to_string()),
        (false, Some(td)) => deps.default_origin(td).await?,
    };
    let desired = spec::from_tags(
        &info.tags,
        &Defaults {
            origin,
            rotate_every: deps.config.rotate_every,
        },
    );
    Ok(Wanted {
        desired,
        digest,
        recorded,
        origin_unread: skip && !info.tags.contains_key(TAG_ORIGIN),
    })
}
