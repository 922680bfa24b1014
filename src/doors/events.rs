//! Recognises an incoming Lambda event by its shape. Pure: no I/O.
//!
//! Accepted: EventBridge "ECS Task State Change", "AWS API Call via CloudTrail" for ECS
//! (CreateService, UpdateService, DeleteService, TagResource, UntagResource), "Tag Change
//! on Resource", "Scheduled Event" (and `{"ecs-tunnels": "sweep" | "rotate"}`), SQS
//! messages carrying any of these, Secrets Manager rotation steps and CloudFormation
//! custom resource requests.

use crate::cause::Cause;
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
        /// The event's source, id and actor ([`cause_of`]).
        cause: Cause,
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
    Ok(vec![with_cause(trigger, event)])
}

/// A service trigger with the cause `event` gives it, and the account and region the
/// event came from as the service's scope (the door keeps the scope only in an
/// organization install: [`crate::context::Deps::install_scope`]).
fn with_cause(mut trigger: Trigger, event: &Value) -> Trigger {
    if let Trigger::Service { cause, service, .. } = &mut trigger {
        *cause = cause_of(event);
        service.scope = match (s(event, &["account"]), s(event, &["region"])) {
            (Some(a), Some(r)) => crate::ownership::Scope::parse(a, r),
            _ => None,
        };
    }
    trigger
}

/// The cause of one event (not an SQS batch: each message has its own): its source, id,
/// the principal behind it and what it was. Never a request parameter or a URL.
pub fn cause_of(event: &Value) -> Cause {
    let id = s(event, &["id"]);
    if event.get("RequestType").is_some() && event.get("ResponseURL").is_some() {
        return Cause::new(
            "cloudformation",
            s(event, &["RequestId"]),
            s(event, &["StackId"]),
            s(event, &["LogicalResourceId"]),
        );
    }
    if event.get("Step").is_some() && event.get("SecretId").is_some() {
        return Cause::new(
            "secretsmanager",
            s(event, &["ClientRequestToken"]),
            None,
            s(event, &["Step"]),
        );
    }
    if let Some(action) = s(event, &["ecs-tunnels"]) {
        // A message of ours (a follow-up) carries the cause of the event behind it.
        if let Some(c) = event
            .get("cause")
            .and_then(|c| serde_json::from_value::<Cause>(c.clone()).ok())
        {
            return c;
        }
        return Cause::new("schedule", id, None, Some(action));
    }
    let d = &event["detail"];
    match s(event, &["detail-type"]) {
        Some("AWS API Call via CloudTrail") => {
            let who = &d["userIdentity"];
            let actor = s(who, &["arn"])
                .or_else(|| s(who, &["principalId"]))
                .or_else(|| s(who, &["invokedBy"]));
            Cause::new(
                "cloudtrail",
                s(d, &["eventID"]).or(id),
                actor,
                s(d, &["eventName"]),
            )
        }
        Some("Scheduled Event") => {
            let rule = event["resources"]
                .get(0)
                .and_then(Value::as_str)
                .map(|r| r.rsplit('/').next().unwrap_or(r));
            Cause::new("schedule", id, None, rule)
        }
        Some(other) => Cause::new("eventbridge", id, None, Some(other)),
        None => Cause::new("unknown", id, None, None),
    }
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

/// Drops repeats; two events that ask the same of a service are one, whatever their
/// causes (the first one's is kept).
fn dedupe(triggers: Vec<Trigger>) -> Vec<Trigger> {
    let causeless = |t: &Trigger| {
        let mut t = t.clone();
        if let Trigger::Service { cause, .. } = &mut t {
            *cause = Cause::default();
        }
        t
    };
    let mut out: Vec<Trigger> = Vec::new();
    for t in triggers {
        if !out.iter().any(|o| causeless(o) == causeless(&t)) {
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
            cause: Cause::default(),
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
            cause: Cause::default(),
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
            cause: Cause::default(),
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
            cause: Cause::default(),
        }
    }

    fn routine(c: &str, s: &str) -> Trigger {
        Trigger::Service {
            service: ServiceId::new(c, s),
            account: Some("123456789012".into()),
            check_removal: false,
            routine: true,
            cause: Cause::default(),
        }
    }

    /// [`recognise`], the causes left out (tested on their own below).
    fn rec(event: &Value) -> Result<Vec<Trigger>, String> {
        recognise(event).map(|ts| {
            ts.into_iter()
                .map(|mut t| {
                    if let Trigger::Service { cause, .. } = &mut t {
                        *cause = Cause::default();
                    }
                    t
                })
                .collect()
        })
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
        assert_eq!(rec(&task(json!({}))).unwrap(), vec![routine("prod", "web")]);
        assert_eq!(
            rec(&task(json!({"stopCode": "TaskFailedToStart"}))).unwrap(),
            vec![svc("prod", "web")]
        );
        let redeploy = ct(
            "UpdateService",
            json!({"cluster": "prod", "service": "web", "forceNewDeployment": true}),
        );
        assert_eq!(rec(&redeploy).unwrap(), vec![routine("prod", "web")]);
        let new_revision = ct(
            "UpdateService",
            json!({"cluster": "prod", "service": "web", "taskDefinition": "web:8"}),
        );
        assert_eq!(rec(&new_revision).unwrap(), vec![svc("prod", "web")]);
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
        assert_eq!(rec(&task).unwrap(), vec![routine("prod", "web")]);
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
            assert_eq!(rec(&event).unwrap(), vec![want], "{event}");
        }
        let tag = json!({"detail-type": "Tag Change on Resource", "account": "123456789012", "resources": [ARN],
            "detail": {"service": "ecs", "resource-type": "service", "changed-tag-keys": ["ecs-tunnels:access"], "tags": {"ecs-tunnels:hostname": "a.example.com"}}});
        assert_eq!(rec(&tag).unwrap(), vec![svc("prod", "web")]);
        let sched = json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:1:rule/ecs-tunnels-sweep"], "detail": {}});
        assert_eq!(rec(&sched).unwrap(), vec![Trigger::Sweep]);
        assert_eq!(
            rec(&json!({"ecs-tunnels": "rotate"})).unwrap(),
            vec![Trigger::Rotate]
        );
        let sqs = json!({"Records": [
            {"eventSource": "aws:sqs", "body": task.to_string()},
            {"eventSource": "aws:sqs", "body": task.to_string()}]});
        assert_eq!(
            rec(&sqs).unwrap(),
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
            assert!(matches!(rec(&e).unwrap()[..], [Trigger::Ignore(_)]), "{e}");
        }
        let mut failed = ct(
            "CreateService",
            json!({"cluster": "prod", "serviceName": "web"}),
        );
        failed["detail"]["errorCode"] = json!("AccessDenied");
        assert!(matches!(rec(&failed).unwrap()[..], [Trigger::Ignore(_)]));
    }

    #[test]
    fn unknown_events_are_named() {
        let e = rec(&json!({"hello": 1})).unwrap_err();
        assert!(e.contains("hello"), "{e}");
        let e = recognise(
            &json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"}),
        )
        .unwrap_err();
        assert!(e.contains("EC2 Instance"), "{e}");
        let e = rec(&json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:1:rule/nightly"]})).unwrap_err();
        assert!(e.contains("nightly"), "{e}");
    }

    fn sample(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("events")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The cause of every sample under `events/`: for a service event, as its trigger
    /// carries it (SQS-wrapped ones included); for the others, as `cause_of` reads it.
    #[test]
    fn every_sample_has_its_cause() {
        const DEPLOYER: &str = "arn:aws:sts::123456789012:assumed-role/deployer/session";
        const CT_ID: &str = "1a2b3c4d-0000-1111-2222-333344445555";
        const STACK: &str =
            "arn:aws:cloudformation:us-east-1:123456789012:stack/app/11112222-3333-4444-5555-666677778888";
        const TASK_ID: &str = "6f1d2c3b-0000-4a5b-9c8d-111122223333";
        let c = Cause::new;
        let sm = |step: &'static str| {
            c(
                "secretsmanager",
                Some("9f8e7d6c-0000-1111-2222-333344445555"),
                None,
                Some(step),
            )
        };
        let cases = [
            (
                "cloudformation-create.json",
                c(
                    "cloudformation",
                    Some("5d478078-13e9-baf0-464a-7ef285ecc786"),
                    Some(STACK),
                    Some("Tunnel"),
                ),
            ),
            (
                "cloudformation-delete.json",
                c(
                    "cloudformation",
                    Some("7f69a29a-350b-dc12-686c-9a14a70eea08"),
                    Some(STACK),
                    Some("Tunnel"),
                ),
            ),
            (
                "cloudformation-update.json",
                c(
                    "cloudformation",
                    Some("6e589189-24fa-cb01-575b-8f0396fdd897"),
                    Some(STACK),
                    Some("Tunnel"),
                ),
            ),
            (
                "cloudtrail-create-service.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("CreateService"),
                ),
            ),
            (
                "cloudtrail-delete-service.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("DeleteService"),
                ),
            ),
            (
                "cloudtrail-tag-resource-failed.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("TagResource"),
                ),
            ),
            (
                "cloudtrail-tag-resource-status-only.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("TagResource"),
                ),
            ),
            (
                "cloudtrail-tag-resource.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("TagResource"),
                ),
            ),
            (
                "cloudtrail-untag-resource.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("UntagResource"),
                ),
            ),
            (
                "cloudtrail-update-service.json",
                c(
                    "cloudtrail",
                    Some(CT_ID),
                    Some(DEPLOYER),
                    Some("UpdateService"),
                ),
            ),
            (
                "ecs-task-running.json",
                c(
                    "eventbridge",
                    Some(TASK_ID),
                    None,
                    Some("ECS Task State Change"),
                ),
            ),
            (
                "ecs-task-stopped-failed-to-start.json",
                c(
                    "eventbridge",
                    Some(TASK_ID),
                    None,
                    Some("ECS Task State Change"),
                ),
            ),
            (
                "ecs-task-stopped.json",
                c(
                    "eventbridge",
                    Some(TASK_ID),
                    None,
                    Some("ECS Task State Change"),
                ),
            ),
            (
                "schedule-input-rotate.json",
                c("schedule", None, None, Some("rotate")),
            ),
            (
                "schedule-input-sweep.json",
                c("schedule", None, None, Some("sweep")),
            ),
            (
                "schedule-rotate.json",
                c(
                    "schedule",
                    Some("63dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"),
                    None,
                    Some("ecs-tunnels-rotate"),
                ),
            ),
            (
                "schedule-sweep.json",
                c(
                    "schedule",
                    Some("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"),
                    None,
                    Some("ecs-tunnels-sweep"),
                ),
            ),
            ("secretsmanager-createSecret.json", sm("createSecret")),
            ("secretsmanager-finishSecret.json", sm("finishSecret")),
            ("secretsmanager-setSecret.json", sm("setSecret")),
            ("secretsmanager-testSecret.json", sm("testSecret")),
            (
                "sqs-follow-up.json",
                c(
                    "cloudtrail",
                    Some("e2a5b6c7-1111-4222-8333-444455556666"),
                    Some("arn:aws:sts::123456789012:assumed-role/platform-admin/alice"),
                    Some("TagResource"),
                ),
            ),
            (
                "sqs-wrapped-task-running.json",
                c(
                    "eventbridge",
                    Some(TASK_ID),
                    None,
                    Some("ECS Task State Change"),
                ),
            ),
            (
                "tag-change-on-resource.json",
                c(
                    "eventbridge",
                    Some("bddcf1d6-0000-0000-0000-adc1fb47c11c"),
                    None,
                    Some("Tag Change on Resource"),
                ),
            ),
        ];
        let mut names: Vec<String> =
            std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect();
        names.sort();
        let mut covered: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
        covered.sort();
        assert_eq!(names, covered, "a sample without its expected cause");
        for (name, want) in cases {
            let event = sample(name);
            let triggers = recognise(&event).unwrap_or_default();
            let services: Vec<Cause> = triggers
                .iter()
                .filter_map(|t| match t {
                    Trigger::Service { cause, .. } => Some(cause.clone()),
                    // A follow-up carries the cause of the event that started its chain.
                    Trigger::FollowUp(f) => {
                        f.cause.clone().and_then(|c| serde_json::from_value(c).ok())
                    }
                    _ => None,
                })
                .collect();
            let got = match &services[..] {
                [one] => one.clone(),
                [] => cause_of(&event),
                _ => panic!("{name}: {triggers:?}"),
            };
            assert_eq!(got, want, "{name}");
            let text = serde_json::to_string(&got).unwrap();
            assert!(
                !text.contains("requestParameters") && !text.contains("https://"),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn cloudtrail_actors_fall_back_and_follow_ups_carry_their_cause() {
        let mut e = ct(
            "TagResource",
            json!({"resourceArn": ARN, "tags": [{"key": "ecs-tunnels:hostname", "value": "a.example.com"}]}),
        );
        e["id"] = json!("eb-id");
        e["detail"]["userIdentity"] =
            json!({"type": "AWSService", "invokedBy": "ecs.amazonaws.com"});
        assert_eq!(
            cause_of(&e),
            Cause::new(
                "cloudtrail",
                Some("eb-id"),
                Some("ecs.amazonaws.com"),
                Some("TagResource")
            )
        );
        e["detail"]["userIdentity"] = json!({"type": "Root", "principalId": "123456789012"});
        assert_eq!(cause_of(&e).actor.as_deref(), Some("123456789012"));
        let original = Cause::new(
            "cloudtrail",
            Some("x"),
            Some("arn:aws:iam::1:user/a"),
            Some("TagResource"),
        );
        let follow_up = json!({"ecs-tunnels": "follow-up", "cause": original});
        assert_eq!(cause_of(&follow_up), original);
    }

    #[test]
    fn repeats_collapse_whatever_their_causes() {
        let task = |id: &str| {
            json!({"Records": [{"eventSource": "aws:sqs", "body": json!({"id": id, "detail-type": "ECS Task State Change", "account": "123456789012",
                "detail": {"group": "service:web", "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "lastStatus": "RUNNING"}}).to_string()}]})
        };
        let mut two = task("first");
        two["Records"]
            .as_array_mut()
            .unwrap()
            .extend(task("second")["Records"].as_array().unwrap().clone());
        let got = recognise(&two).unwrap();
        assert!(
            matches!(&got[..], [Trigger::Service { cause, .. }] if cause.event_id.as_deref() == Some("first")),
            "{got:?}"
        );
    }
}
