//! Events for the benchmarks, made from the samples in `events/` (the shapes the README
//! documents) with the cluster, service and tags swapped in.

use serde_json::{json, Value};

use crate::moto::{workspace_root, ACCOUNT_ID, REGION};

/// A sample event from `events/`.
///
/// # Panics
/// When the file is missing or not JSON: the samples are part of the repository.
pub fn sample(name: &str) -> Value {
    let path = workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("sample event {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sample event {}: {e}", path.display()))
}

/// `arn:aws:ecs:<region>:<account>:service/<cluster>/<service>`.
pub fn service_arn(cluster: &str, service: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service/{cluster}/{service}")
}

fn cluster_arn(cluster: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{cluster}")
}

fn tag_list(tags: &[(&str, &str)]) -> Value {
    tags.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

/// CloudTrail `CreateService` (`cloudtrail-create-service.json`) of a service with `tags`.
pub fn create_service(cluster: &str, service: &str, tags: &[(&str, &str)]) -> Value {
    let mut e = sample("cloudtrail-create-service.json");
    let rp = &mut e["detail"]["requestParameters"];
    rp["cluster"] = json!(cluster);
    rp["serviceName"] = json!(service);
    rp["taskDefinition"] = json!(format!("{service}:1"));
    rp["tags"] = tag_list(tags);
    let svc = &mut e["detail"]["responseElements"]["service"];
    svc["serviceArn"] = json!(service_arn(cluster, service));
    svc["serviceName"] = json!(service);
    svc["clusterArn"] = json!(cluster_arn(cluster));
    e
}

/// "ECS Task State Change" of a RUNNING task (`ecs-task-running.json`).
pub fn task_running(cluster: &str, service: &str) -> Value {
    let mut e = sample("ecs-task-running.json");
    e["detail"]["group"] = json!(format!("service:{service}"));
    e["detail"]["clusterArn"] = json!(cluster_arn(cluster));
    e
}

/// CloudTrail `TagResource` (`cloudtrail-tag-resource.json`) of `tags` on the service.
pub fn tag_resource(cluster: &str, service: &str, tags: &[(&str, &str)]) -> Value {
    let mut e = sample("cloudtrail-tag-resource.json");
    e["detail"]["requestParameters"] = json!({
        "resourceArn": service_arn(cluster, service),
        "tags": tag_list(tags),
    });
    e
}

/// CloudTrail `UntagResource` (`cloudtrail-untag-resource.json`) of `keys`.
pub fn untag_resource(cluster: &str, service: &str, keys: &[&str]) -> Value {
    let mut e = sample("cloudtrail-untag-resource.json");
    e["detail"]["requestParameters"] = json!({
        "resourceArn": service_arn(cluster, service),
        "tagKeys": keys,
    });
    e
}

/// CloudTrail `UpdateService` (`cloudtrail-update-service.json`): a desired-count change.
pub fn update_service(cluster: &str, service: &str) -> Value {
    let mut e = sample("cloudtrail-update-service.json");
    let rp = &mut e["detail"]["requestParameters"];
    rp["cluster"] = json!(cluster);
    rp["service"] = json!(service);
    let svc = &mut e["detail"]["responseElements"]["service"];
    svc["serviceArn"] = json!(service_arn(cluster, service));
    svc["serviceName"] = json!(service);
    svc["clusterArn"] = json!(cluster_arn(cluster));
    e
}

/// The scheduled sweep (`schedule-sweep.json`).
pub fn scheduled_sweep() -> Value {
    sample("schedule-sweep.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_take_the_service() {
        let e = create_service("c", "s", &[("ecs-tunnels:hostname", "s.example.com")]);
        assert_eq!(e["detail"]["eventName"], "CreateService");
        assert_eq!(
            e["detail"]["responseElements"]["service"]["serviceArn"],
            service_arn("c", "s")
        );
        assert_eq!(
            e["detail"]["requestParameters"]["tags"][0]["value"],
            "s.example.com"
        );
        let e = task_running("c", "s");
        assert_eq!(e["detail"]["group"], "service:s");
        assert!(e["detail"]["clusterArn"]
            .as_str()
            .unwrap()
            .ends_with(":cluster/c"));
        let e = untag_resource("c", "s", &["k"]);
        assert_eq!(e["detail"]["requestParameters"]["tagKeys"][0], "k");
        assert_eq!(
            tag_resource("c", "s", &[("k", "v")])["detail"]["requestParameters"]["tags"][0]["key"],
            "k"
        );
        assert_eq!(
            update_service("c", "s")["detail"]["requestParameters"]["service"],
            "s"
        );
        assert_eq!(scheduled_sweep()["detail-type"], "Scheduled Event");
    }
}
