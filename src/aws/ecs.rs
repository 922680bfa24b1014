//! ECS: describe services with their tags, default origin from the task definition,
//! the status tag, redeploys, and listing services for `--all`.

use super::AwsError;
use crate::task_definition::{redact_args, Container, TaskDefinition};
use aws_sdk_ecs::types::{ServiceField, Tag};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What ecs-tunnels needs to know about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service ARN (long format).
    pub arn: String,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub name: String,
    /// `ACTIVE`, `DRAINING` or `INACTIVE`.
    pub status: String,
    /// The service's tags.
    pub tags: BTreeMap<String, String>,
    /// Task definition ARN.
    pub task_definition: Option<String>,
    /// The deployment controller: `ECS` (the default), `CODE_DEPLOY` or `EXTERNAL`.
    pub deployment_controller: String,
    /// When its PRIMARY deployment or task set (the one serving) was created: one
    /// created after a token was written has tasks that read it. A task set that is
    /// still being tried, or was rolled back, does not count.
    pub last_deployed_at: Option<SystemTime>,
    /// Tasks running now (`runningCount`).
    pub running_count: i32,
    /// Tasks the service wants (`desiredCount`).
    pub desired_count: i32,
}

impl ServiceInfo {
    /// True while the service exists (not being deleted).
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }

    /// True when ECS itself deploys the service, so `forceNewDeployment` works; with
    /// `CODE_DEPLOY` or `EXTERNAL` a new deployment is started by that tool.
    pub fn ecs_deploys(&self) -> bool {
        self.deployment_controller == "ECS"
    }

    /// `(account, region)` from the ARN.
    pub fn account_region(&self) -> Option<(String, String)> {
        let parts: Vec<&str> = self.arn.split(':').collect();
        (parts.len() >= 6).then(|| (parts[4].to_string(), parts[3].to_string()))
    }
}

/// The error ECS answers for a cluster it does not know (never created, or deleted).
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFoundException";

/// What `DescribeClusters` says of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// `ACTIVE`: it exists, whatever a listing said.
    Active,
    /// `INACTIVE` (deleted, still discoverable) or reported `MISSING`: gone, with its
    /// services.
    Gone,
    /// Any other status (`PROVISIONING`, `DEPROVISIONING`, `FAILED`) or failure reason.
    Other(String),
}

impl ClusterState {
    fn of(status: &str) -> Self {
        match status {
            "ACTIVE" => ClusterState::Active,
            "INACTIVE" | "MISSING" => ClusterState::Gone,
            other => ClusterState::Other(other.to_string()),
        }
    }
}

/// True for a name ECS accepts for a cluster: 1-255 letters, digits, `-` and `_`. Keys
/// of objects that are not tied to an ECS service (custom resources use `cfn.<stack>`)
/// never are one.
pub fn is_cluster_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Cluster states from one `DescribeClusters` answer, by cluster name.
fn cluster_states(
    out: &aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput,
) -> BTreeMap<String, ClusterState> {
    let described = out.clusters().iter().filter_map(|c| {
        Some((
            c.cluster_name()?.to_string(),
            ClusterState::of(c.status().unwrap_or_default()),
        ))
    });
    let failed = out.failures().iter().filter_map(|f| {
        Some((
            crate::ownership::cluster_name(f.arn()?),
            ClusterState::of(f.reason().unwrap_or_default()),
        ))
    });
    // A failure entry never overrides a described cluster.
    let mut states: BTreeMap<String, ClusterState> = failed.collect();
    states.extend(described);
    states
}

/// ECS adapter.
#[derive(Clone)]
pub struct Ecs {
    client: aws_sdk_ecs::Client,
}

fn to_info(s: &aws_sdk_ecs::types::Service) -> ServiceInfo {
    ServiceInfo {
        arn: s.service_arn().unwrap_or_default().to_string(),
        cluster: crate::ownership::cluster_name(s.cluster_arn().unwrap_or_default()),
        name: s.service_name().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        tags: s
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        task_definition: s.task_definition().map(str::to_string),
        deployment_controller: s
            .deployment_controller()
            .map(|c| c.r#type().as_str().to_string())
            .unwrap_or_else(|| "ECS".to_string()),
        last_deployed_at: s
            .deployments()
            .iter()
            .filter(|d| d.status() == Some("PRIMARY"))
            .filter_map(|d| d.created_at())
            .chain(
                s.task_sets()
                    .iter()
                    .filter(|t| t.status() == Some("PRIMARY"))
                    .filter_map(|t| t.created_at()),
            )
            .filter_map(|t| SystemTime::try_from(*t).ok())
            .max(),
        running_count: s.running_count(),
        desired_count: s.desired_count(),
    }
}

/// The task definition model of one `DescribeTaskDefinition` answer.
fn to_task_definition(td: &aws_sdk_ecs::types::TaskDefinition) -> TaskDefinition {
    let some = |v: &[String]| (!v.is_empty()).then(|| redact_args(v));
    TaskDefinition {
        arn: td.task_definition_arn().unwrap_or_default().to_string(),
        name: format!("{}:{}", td.family().unwrap_or_default(), td.revision()),
        network_mode: td.network_mode().map(|m| m.as_str().to_string()),
        execution_role_arn: td
            .execution_role_arn()
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        containers: td
            .container_definitions()
            .iter()
            .map(|c| Container {
                name: c.name().unwrap_or_default().to_string(),
                image: c.image().unwrap_or_default().to_string(),
                essential: c.essential().unwrap_or(true),
                entry_point: some(c.entry_point()),
                command: some(c.command()),
                environment: c
                    .environment()
                    .iter()
                    .filter_map(|e| e.name().map(str::to_string))
                    .collect(),
                secrets: c
                    .secrets()
                    .iter()
                    .map(|s| (s.name().to_string(), s.value_from().to_string()))
                    .collect(),
                ports: c.port_mappings().iter().filter_map(port_range).collect(),
            })
            .collect(),
    }
}

/// A port mapping's container port, or its `containerPortRange` (`"8000-8100"`).
fn port_range(p: &aws_sdk_ecs::types::PortMapping) -> Option<(u16, u16)> {
    if let Some(port) = p.container_port().and_then(|p| u16::try_from(p).ok()) {
        return Some((port, port));
    }
    let (a, b) = p.container_port_range()?.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// What a redeploy request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeploy {
    /// A new deployment started; its tasks read the current token.
    Started,
    /// The service's deployment controller (`CODE_DEPLOY`, `EXTERNAL`) refuses
    /// `forceNewDeployment`: a person (or their deployment tool) must start one.
    ByOwner {
        /// The deployment controller.
        controller: String,
    },
}

impl Ecs {
    /// Builds the adapter from a shared SDK config.
    pub fn new(cfg: &aws_config::SdkConfig) -> Self {
        Ecs {
            client: aws_sdk_ecs::Client::new(cfg),
        }
    }

    /// Describes up to 10 services of one cluster (with tags). Missing ones are left out.
    pub async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<Vec<ServiceInfo>, AwsError> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let out = self
            .client
            .describe_services()
            .cluster(cluster)
            .set_services(Some(names.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeServices", e))?;
        Ok(out.services().iter().map(to_info).collect())
    }

    /// Describes one service; `None` if ECS does not know it, or no longer knows its
    /// cluster (`ClusterNotFoundException`: a deleted cluster takes its services along).
    pub async fn describe_service(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Option<ServiceInfo>, AwsError> {
        let mut found = match self.describe_services(cluster, &[name.to_string()]).await {
            Ok(found) => found,
            Err(e) if e.code.as_deref() == Some(CLUSTER_NOT_FOUND) => return Ok(None),
            Err(e) => return Err(e),
        };
        // ECS may return an INACTIVE and an ACTIVE service of the same name: prefer ACTIVE.
        found.sort_by_key(|s| !s.is_active());
        Ok(found.into_iter().next())
    }

    /// Describes a task definition (by ARN or `family:revision`); `None` when ECS
    /// answers none.
    pub async fn task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<TaskDefinition>, AwsError> {
        let out = self
            .client
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeTaskDefinition", e))?;
        Ok(out.task_definition().map(to_task_definition))
    }

    /// `http://localhost:<port>` for the first container port of the first essential
    /// container that is not cloudflared ([`TaskDefinition::default_origin`]).
    pub async fn default_origin(&self, task_definition: &str) -> Result<Option<String>, AwsError> {
        Ok(self
            .task_definition(task_definition)
            .await?
            .and_then(|td| td.default_origin()))
    }

    /// Sets one tag on a service.
    pub async fn tag(&self, arn: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let tag = Tag::builder().key(key).value(value).build();
        self.client
            .tag_resource()
            .resource_arn(arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:TagResource", e))?;
        Ok(())
    }

    /// Removes one tag from a service.
    pub async fn untag(&self, arn: &str, key: &str) -> Result<(), AwsError> {
        self.client
            .untag_resource()
            .resource_arn(arn)
            .tag_keys(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:UntagResource", e))?;
        Ok(())
    }

    /// Starts a new deployment, so new tasks read the current token. ECS refuses
    /// `forceNewDeployment` on services whose deployment controller is `CODE_DEPLOY` or
    /// `EXTERNAL`; such a refusal is confirmed with a DescribeServices and reported as
    /// [`Redeploy::ByOwner`], not as a failure.
    pub async fn redeploy(&self, cluster: &str, service: &str) -> Result<Redeploy, AwsError> {
        let refused = match self
            .client
            .update_service()
            .cluster(cluster)
            .service(service)
            .force_new_deployment(true)
            .send()
            .await
        {
            Ok(_) => return Ok(Redeploy::Started),
            Err(e) => AwsError::from_sdk("ecs:UpdateService", e),
        };
        if refused.code.as_deref() == Some("InvalidParameterException") {
            if let Some(info) = self.describe_service(cluster, service).await? {
                if !info.ecs_deploys() {
                    return Ok(Redeploy::ByOwner {
                        controller: info.deployment_controller,
                    });
                }
            }
        }
        Err(refused)
    }

    /// Names of all clusters.
    pub async fn list_clusters(&self) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_clusters()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ecs:ListClusters", e))?;
            out.extend(
                page.cluster_arns()
                    .iter()
                    .map(|a| crate::ownership::cluster_name(a)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// What ECS says of each named cluster (100 per `DescribeClusters` call). A cluster
    /// ECS answers nothing about is left out.
    pub async fn describe_clusters(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, ClusterState>, AwsError> {
        let mut states = BTreeMap::new();
        for chunk in names.chunks(100) {
            let out = self
                .client
                .describe_clusters()
                .set_clusters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ecs:DescribeClusters", e))?;
            states.extend(cluster_states(&out));
        }
        Ok(states)
    }

    /// All services of a cluster, described with tags (100 names per ListServices page,
    /// 10 services per DescribeServices call).
    pub async fn list_services(&self, cluster: &str) -> Result<Vec<ServiceInfo>, AwsError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_services()
                .cluster(cluster)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ecs:ListServices", e))?;
            names.extend(
                page.service_arns()
                    .iter()
                    .map(|a| a.rsplit('/').next().unwrap_or(a).to_string()),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out = Vec::new();
        for chunk in names.chunks(10) {
            out.extend(self.describe_services(cluster, chunk).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput;
    use aws_sdk_ecs::types::{Cluster, Failure};

    #[test]
    fn inactive_and_missing_clusters_are_gone() {
        let out = DescribeClustersOutput::builder()
            .clusters(
                Cluster::builder()
                    .cluster_name("live")
                    .status("ACTIVE")
                    .build(),
            )
            .clusters(
                Cluster::builder()
                    .cluster_name("deleted")
                    .status("INACTIVE")
                    .build(),
            )
            .clusters(
                Cluster::builder()
                    .cluster_name("leaving")
                    .status("DEPROVISIONING")
                    .build(),
            )
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:123456789012:cluster/forgotten")
                    .reason("MISSING")
                    .build(),
            )
            .build();
        let states = cluster_states(&out);
        assert_eq!(states["live"], ClusterState::Active);
        assert_eq!(states["deleted"], ClusterState::Gone);
        assert_eq!(states["forgotten"], ClusterState::Gone);
        assert_eq!(
            states["leaving"],
            ClusterState::Other("DEPROVISIONING".into())
        );
    }

    #[test]
    fn cluster_names_are_what_ecs_accepts() {
        assert!(is_cluster_name("prod_eu-1"));
        assert!(!is_cluster_name("cfn.my-stack"));
        assert!(!is_cluster_name(""));
        assert!(!is_cluster_name(&"a".repeat(256)));
    }
}
