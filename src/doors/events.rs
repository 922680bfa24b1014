//! Recognises an incoming Lambda event by its shape. Pure: no I/O.
//!
//! Accepted: EventBridge "ECS Task State Change", "AWS API Call via CloudTrail" for ECS
//! (CreateService, UpdateService, DeleteService, TagResource, UntagResource), "Tag Change
//! on Resource", "Scheduled Event" (and `{"ecs-tunnels": "sweep" | "rotate"}`), SQS
//! messages carrying any of these, Secrets Manager rotation steps and CloudFormation
//! custom resource requests.

use crate::ownership::{cluster_name, ServiceId};
use crate::spec::{TAG_PREFIX, TAG_STATUS};
use serde_json::Value;

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Reconcile one service. `account` is the AWS account the event came from.
    Service {
        /// The service.
        service: ServiceId,
        /// The AWS account, when the event says.
        account: Option<String>,
        /// The event may mean the service stopped being exposed (an untag, a delete):
        /// look for leftovers even if the service carries no status tag.
        check_removal: bool,
        /// A routine event (a task started or stopped, a redeploy that names no new
        /// input): a service whose inputs match its last converged reconcile needs no
        /// Cloudflare call (see `reconcile::Ask::routine`).
        routine: bool,
    },
    /// Nothing to do, and why (costs no call).
    Ignore(String),
    /// Reconcile every managed service.
    Sweep,
    /// Rotate the tunnel secrets that are due.
    Rotate,
    /// A CloudFormation custom resource request.
    CustomResource(Value),
    /// A Secrets Manager rotation step.
    SecretsRotation(Value),
    /// A delayed follow-up: look again at a service whose new hostname waits for
    /// cloudflared's first connection.
    FollowUp(crate::doors::follow_up::FollowUp),
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |cur, k| cur.get(k))?.as_str()
}

/// Recognises an event; an unknown shape is an error that names what it got.
pub fn recognise(event: &Value) -> Result<Vec<Trigger>, String> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if s(r, &["eventSource"]) != Some("aws:sqs") {
                return Err(format!(
                    "unrecognised event: record {i} has eventSource {:?}, expected aws:sqs",
                    s(r, &["eventSource"]).unwrap_or("none")
                ));
            }
            let body = s(r, &["body"])
                .ok_or_else(|| format!("unrecognised event: SQS record {i} has no body"))?;
            let inner: Value = serde_json::from_str(body)
                .map_err(|e| format!("unrecognised event: SQS record {i} body is not JSON: {e}"))?;
            out.extend(recognise(&inner).map_err(|e| format!("SQS record {i}: {e}"))?);
        }
        return Ok(dedupe(out));
    }
    if event.get("RequestType").is_some() && event.get("ResponseURL").is_some() {
        return Ok(vec![Trigger::CustomResource(event.clone())]);
    }
    if event.get("Step").is_some() && event.get("SecretId").is_some() {
        return Ok(vec![Trigger::SecretsRotation(event.clone())]);
    }
    if let Some(follow_up) = crate::doors::follow_up::FollowUp::parse(event) {
        return Ok(vec![Trigger::FollowUp(follow_up?)]);
    }
    if let Some(action) = s(event, &["ecs-tunnels"]) {
        return match action {
            "sweep" => Ok(vec![Trigger::Sweep]),
            "rotate" => Ok(vec![Trigger::Rotate]),
            other => Err(format!("unrecognised event: {{\"ecs-tunnels\": {other:?}}}: expected \"sweep\", \"rotate\" or \"follow-up\"")),
        };
    }
    let detail_type = s(event, &["detail-type"]);
    let account = s(event, &["account"]).map(str::to_string);
    let trigger = match detail_type {
        Some("ECS Task State Change") => task_state_change(event, account),
        Some("AWS API Call via CloudTrail") => cloudtrail(event, account),
        Some("Tag Change on Resource") => tag_change(event, account),
        Some("Scheduled Event") => scheduled(event)?,
        Some(other) => {
            return Err(format!(
                "unrecognised event: detail-type {other:?} from source {:?}",
                s(event, &["source"]).unwrap_or("none")
            ))
        }
        None => {
            let keys: Vec<&str> = event
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(format!("unrecognised event: no detail-type, RequestType, Step or Records; top-level keys: [{}]", keys.join(", ")));
        }
    };
    Ok(vec![trigger])
}

/// One message of an SQS batch, recognised on its own, so that one bad message fails
/// alone (partial batch responses) instead of failing its whole batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The SQS `messageId`, reported back in `batchItemFailures`.
    pub message_id: String,
    /// What the message asks for, or why it cannot be read.
    pub triggers: Result<Vec<Trigger>, String>,
}

/// The messages of an SQS batch (`Records` with `eventSource` `aws:sqs`); `None` when
/// the event is not an SQS batch. A record without a `messageId` cannot be reported on
/// its own, so it is an error for the whole batch.
pub fn sqs_batch(event: &Value) -> Option<Result<Vec<BatchItem>, String>> {
    let records = event.get("Records")?.as_array()?;
    if records.is_empty()
        || records
            .iter()
            .any(|r| s(r, &["eventSource"]) != Some("aws:sqs"))
    {
        return None;
    }
    let items = records.iter().enumerate().map(|(i, r)| {
        let message_id = s(r, &["messageId"])
            .filter(|m| !m.is_empty())
            .ok_or_else(|| format!("unrecognised event: SQS record {i} has no messageId"))?;
        let triggers = match s(r, &["body"]) {
            None => Err("the SQS message has no body".to_string()),
            Some(body) => serde_json::from_str::<Value>(body)
                .map_err(|e| format!("the SQS message body is not JSON: {e}"))
                .and_then(|inner| recognise(&inner)),
        };
        Ok(BatchItem {
            message_id: message_id.to_string(),
            triggers,
        })
    });
    Some(items.collect())
}

fn dedupe(triggers: Vec<Trigger>) -> Vec<Trigger> {
    let mut out: Vec<Trigger> = Vec::new();
    for t in triggers {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn task_state_change(event: &Value, account: Option<String>) -> Trigger {
    let group = s(event, &["detail", "group"]).unwrap_or_default();
    let Some(service) = group.strip_prefix("service:") else {
        return Trigger::Ignore(format!("task is not part of a service (group {group:?})"));
    };
    // A task that failed to start may be the sidecar failing on our token: full path.
    let failed_to_start = s(event, &["detail", "stopCode"]) == Some("TaskFailedToStart");
    match s(event, &["detail", "clusterArn"]) {
        Some(cluster) => Trigger::Service {
            service: ServiceId::new(cluster_name(cluster), service),
            account,
            check_removal: false,
            routine: !failed_to_start,
        },
        None => Trigger::Ignore("task event without clusterArn".into()),
    }
}

/// A service reference (name or ARN) plus its cluster (name or ARN; default `default`).
fn service_ref(cluster: Option<&str>, service: &str) -> Option<ServiceId> {
    if let Some(id) = ServiceId::from_arn(service) {
        return Some(id);
    }
    let name = service.rsplit('/').next().unwrap_or(service);
    (!name.is_empty()).then(|| ServiceId::new(cluster_name(cluster.unwrap_or("default")), name))
}

fn touches_our_tags<'a>(keys: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let ours: Vec<&str> = keys.filter(|k| k.starts_with(TAG_PREFIX)).collect();
    if ours.is_empty() {
        return Err("no ecs-tunnels tag changed".into());
    }
    if ours.iter().all(|k| *k == TAG_STATUS) {
        return Err("only the status tag ecs-tunnels writes itself changed".into());
    }
    Ok(())
}

fn cloudtrail(event: &Value, account: Option<String>) -> Trigger {
    let d = &event["detail"];
    if let Some(code) = s(d, &["errorCode"]) {
        return Trigger::Ignore(format!("the API call failed ({code})"));
    }
    if s(d, &["eventSource"]).is_some_and(|src| src != "ecs.amazonaws.com") {
        return Trigger::Ignore(format!(
            "not an ECS call ({})",
            s(d, &["eventSource"]).unwrap_or_default()
        ));
    }
    let rp = &d["requestParameters"];
    let name = s(d, &["eventName"]).unwrap_or_default();
    let found = match name {
        "CreateService" => s(d, &["responseElements", "service", "serviceArn"])
            .and_then(ServiceId::from_arn)
            .or_else(|| service_ref(s(rp, &["cluster"]), s(rp, &["serviceName"])?)),
        "UpdateService" | "DeleteService" => {
            s(rp, &["service"]).and_then(|sv| service_ref(s(rp, &["cluster"]), sv))
        }
        "TagResource" | "UntagResource" => {
            let arn = s(rp, &["resourceArn"]).unwrap_or_default();
            let Some(id) = ServiceId::from_arn(arn) else {
                return Trigger::Ignore(format!(
                    "{name} on a resource that is not a service ({arn})"
                ));
            };
            let keys: Vec<&str> = if name == "TagResource" {
                rp["tags"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t["key"].as_str()).collect())
                    .unwrap_or_default()
            } else {
                rp["tagKeys"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            };
            if let Err(why) = touches_our_tags(keys.into_iter()) {
                return Trigger::Ignore(why);
            }
            Some(id)
        }
        other => {
            return Trigger::Ignore(format!("ECS call {other} is not one ecs-tunnels acts on"))
        }
    };
    // A redeploy (ours, or anyone's) or a scaling names no input of ours.
    let redeploy_only = name == "UpdateService"
        && rp.as_object().is_some_and(|o| {
            o.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "cluster" | "service" | "forceNewDeployment" | "desiredCount"
                )
            })
        });
    match found {
        Some(service) => Trigger::Service {
            service,
            account,
            check_removal: matches!(name, "UntagResource" | "DeleteService"),
            routine: redeploy_only,
        },
        None => Trigger::Ignore(format!("{name} event without a service")),
    }
}

fn tag_change(event: &Value, account: Option<String>) -> Trigger {
    let d = &event["detail"];
    if s(d, &["service"]) != Some("ecs") || s(d, &["resource-type"]) != Some("service") {
        return Trigger::Ignore("tag change on a resource that is not an ECS service".into());
    }
    let keys = d["changed-tag-keys"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Err(why) = touches_our_tags(keys.into_iter()) {
        return Trigger::Ignore(why);
    }
    let arn = event["resources"]
        .get(0)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hostname_gone = d["tags"].get(crate::spec::TAG_HOSTNAME).is_none();
    match ServiceId::from_arn(arn) {
        Some(service) => Trigger::Service {
            service,
            account,
            check_removal: hostname_gone,
            routine: false,
        },
        None => Trigger::Ignore(format!("tag change without a service ARN ({arn})")),
    }
}

fn scheduled(event: &Value) -> Result<Trigger, String> {
    let rule = event["resources"]
        .get(0)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = rule.rsplit('/').next().unwrap_or(rule);
    if name.ends_with("sweep") {
        Ok(Trigger::Sweep)
    } else if name.ends_with("rotate") {
        Ok(Trigger::Rotate)
    } else {
        Err(format!("unrecognised scheduled event: rule {name:?} must end in \"sweep\" or \"rotate\", or pass the input {{\"ecs-tunnels\": \"sweep\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(c: &str, s: &str) -> Trigger {
        svc_checked(c, s, false)
    }

    fn svc_checked(c: &str, s: &str, check_removal: bool) -> Trigger {
        Trigger::Service {
            service: ServiceId::new(c, s),
            account: Some("123456789012".into()),
            check_removal,
            routine: false,
        }
    }

    fn routine(c: &str, s: &str) -> Trigger {
        Trigger::Service {
            service: ServiceId::new(c, s),
            account: Some("123456789012".into()),
            check_removal: false,
            routine: true,
        }
    }

    #[test]
    fn task_events_and_redeploys_are_routine_other_changes_are_not() {
        let task = |extra: Value| {
            let mut d = json!({"group": "service:web", "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "lastStatus": "STOPPED"});
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"detail-type": "ECS Task State Change", "account": "123456789012", "detail": d})
        };
        assert_eq!(
            recognise(&task(json!({}))).unwrap(),
            vec![routine("prod", "web")]
        );
        assert_eq!(
            recognise(&task(json!({"stopCode": "TaskFailedToStart"}))).unwrap(),
            vec![svc("prod", "web")]
        );
        let redeploy = ct(
            "UpdateService",
            json!({"cluster": "prod", "service": "web", "forceNewDeployment": true}),
        );
        assert_eq!(recognise(&redeploy).unwrap(), vec![routine("prod", "web")]);
        let new_revision = ct(
            "UpdateService",
            json!({"cluster": "prod", "service": "web", "taskDefinition": "web:8"}),
        );
        assert_eq!(recognise(&new_revision).unwrap(), vec![svc("prod", "web")]);
    }

    fn ct(name: &str, rp: Value) -> Value {
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.ecs", "account": "123456789012",
               "detail": {"eventSource": "ecs.amazonaws.com", "eventName": name, "requestParameters": rp, "responseElements": null}})
    }

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/web";

    #[test]
    fn recognises_every_shape() {
        let task = json!({"detail-type": "ECS Task State Change", "account": "123456789012",
            "detail": {"group": "service:web", "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "lastStatus": "RUNNING"}});
        assert_eq!(recognise(&task).unwrap(), vec![routine("prod", "web")]);
        let cases = vec![
            (
                ct(
                    "CreateService",
                    json!({"cluster": "prod", "serviceName": "web"}),
                ),
                svc("prod", "web"),
            ),
            (
                ct(
                    "UpdateService",
                    json!({"cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "service": "web"}),
                ),
                routine("prod", "web"),
            ),
            (
                ct("DeleteService", json!({"cluster": "prod", "service": ARN})),
                svc_checked("prod", "web", true),
            ),
            (
                ct(
                    "TagResource",
                    json!({"resourceArn": ARN, "tags": [{"key": "ecs-tunnels:hostname", "value": "a.example.com"}]}),
                ),
                svc("prod", "web"),
            ),
            (
                ct(
                    "UntagResource",
                    json!({"resourceArn": ARN, "tagKeys": ["ecs-tunnels:hostname"]}),
                ),
                svc_checked("prod", "web", true),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(recognise(&event).unwrap(), vec![want], "{event}");
        }
        let tag = json!({"detail-type": "Tag Change on Resource", "account": "123456789012", "resources": [ARN],
            "detail": {"service": "ecs", "resource-type": "service", "changed-tag-keys": ["ecs-tunnels:access"], "tags": {"ecs-tunnels:hostname": "a.example.com"}}});
        assert_eq!(recognise(&tag).unwrap(), vec![svc("prod", "web")]);
        let sched = json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:1:rule/ecs-tunnels-sweep"], "detail": {}});
        assert_eq!(recognise(&sched).unwrap(), vec![Trigger::Sweep]);
        assert_eq!(
            recognise(&json!({"ecs-tunnels": "rotate"})).unwrap(),
            vec![Trigger::Rotate]
        );
        let sqs = json!({"Records": [
            {"eventSource": "aws:sqs", "body": task.to_string()},
            {"eventSource": "aws:sqs", "body": task.to_string()}]});
        assert_eq!(
            recognise(&sqs).unwrap(),
            vec![routine("prod", "web")],
            "duplicates collapse"
        );
    }

    #[test]
    fn ignores_what_needs_no_work() {
        let ignored = vec![
            ct(
                "TagResource",
                json!({"resourceArn": ARN, "tags": [{"key": "ecs-tunnels:status", "value": "ready x"}]}),
            ),
            ct(
                "UntagResource",
                json!({"resourceArn": ARN, "tagKeys": ["ecs-tunnels:status"]}),
            ),
            ct(
                "TagResource",
                json!({"resourceArn": ARN, "tags": [{"key": "team", "value": "a"}]}),
            ),
            ct(
                "TagResource",
                json!({"resourceArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1", "tags": [{"key": "ecs-tunnels:hostname", "value": "x"}]}),
            ),
            json!({"detail-type": "ECS Task State Change", "detail": {"group": "family:batch", "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod"}}),
        ];
        for e in ignored {
            assert!(
                matches!(recognise(&e).unwrap()[..], [Trigger::Ignore(_)]),
                "{e}"
            );
        }
        let mut failed = ct(
            "CreateService",
            json!({"cluster": "prod", "serviceName": "web"}),
        );
        failed["detail"]["errorCode"] = json!("AccessDenied");
        assert!(matches!(
            recognise(&failed).unwrap()[..],
            [Trigger::Ignore(_)]
        ));
    }

    #[test]
    fn unknown_events_are_named() {
        let e = recognise(&json!({"hello": 1})).unwrap_err();
        assert!(e.contains("hello"), "{e}");
        let e = recognise(
            &json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"}),
        )
        .unwrap_err();
        assert!(e.contains("EC2 Instance"), "{e}");
        let e = recognise(&json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:1:rule/nightly"]})).unwrap_err();
        assert!(e.contains("nightly"), "{e}");
    }
}
