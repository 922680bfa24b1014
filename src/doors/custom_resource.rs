//! The CloudFormation custom resource `Custom::CloudflareTunnel`: a door like the others.
//! It turns a request into a reconcile of the resource's objects and always answers with
//! exactly one PUT to `ResponseURL` — whatever happens: bad properties, a Cloudflare
//! outage, a panic, the Lambda deadline approaching (FAILED 10 s before it), or a
//! misconfigured install.
//!
//! Identity: objects are keyed `cfn.<stack name>/<logical id>` (a dot cannot occur in an
//! ECS cluster name, so the sweep never takes them for a service's and never collects
//! them as orphans). The PhysicalResourceId is deterministic,
//! `ecs-tunnels:<owner>:cfn.<stack>/<logical id>`; Update and Delete echo the one they
//! get. No property change needs a new tunnel (hostnames, origin and Access change in
//! place), so Update never replaces. A Delete tears down only the objects of the id it is
//! given, and answers SUCCESS when there is nothing (left) to delete, including for the
//! id of a failed Create.
//!
//! Every answer of a healthy install carries the deterministic id, also a Create's that
//! timed out or panicked half-way: CloudFormation's rollback Delete then removes what it
//! made (the sweep never collects `cfn.` objects). Only a Create that failed before it
//! could know the owner id (a misconfigured install, which made nothing) answers with a
//! throwaway id, `ecs-tunnels:failed:<key>`, whose Delete succeeds at once.

use crate::context::Deps;
use crate::ownership::{Owner, ServiceId};
use crate::reconcile::reconcile_resource;
use crate::spec::{self, Defaults, Desired};
use futures::FutureExt;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn, Instrument};

/// The whole response body may not exceed 4,096 bytes.
const MAX_BODY: usize = 4096;
/// Answer FAILED this long before the Lambda deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

struct Request {
    request_type: String,
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_id: String,
    physical_id: Option<String>,
    properties: Value,
}

fn field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn parse(event: &Value) -> Request {
    Request {
        request_type: field(event, "RequestType"),
        response_url: field(event, "ResponseURL"),
        stack_id: field(event, "StackId"),
        request_id: field(event, "RequestId"),
        logical_id: field(event, "LogicalResourceId"),
        physical_id: event
            .get("PhysicalResourceId")
            .and_then(Value::as_str)
            .map(str::to_string),
        properties: event
            .get("ResourceProperties")
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// `arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<id>` → parts.
fn stack_parts(stack_id: &str) -> (String, String, String, String) {
    let p: Vec<&str> = stack_id.splitn(6, ':').collect();
    let name = p
        .get(5)
        .and_then(|r| r.split('/').nth(1))
        .unwrap_or("stack");
    (
        p.get(1).copied().unwrap_or("aws").to_string(),
        p.get(3).copied().unwrap_or_default().to_string(),
        p.get(4).copied().unwrap_or_default().to_string(),
        name.to_string(),
    )
}

/// The objects' key for a stack's logical resource.
pub fn resource_key(stack_name: &str, logical_id: &str) -> ServiceId {
    ServiceId::new(format!("cfn.{stack_name}"), logical_id)
}

/// True for the objects' key of a custom resource (`cfn.<stack>/<logical id>`), never an
/// ECS service's: a dot cannot occur in a cluster name.
pub fn is_resource_key(key: &ServiceId) -> bool {
    key.cluster.starts_with("cfn.")
}

/// The deterministic physical id of a resource.
pub fn physical_id(owner: &Owner, key: &ServiceId) -> String {
    format!("ecs-tunnels:{owner}:{key}")
}

fn key_of_physical_id(owner: &Owner, id: &str) -> Option<ServiceId> {
    let key = id.strip_prefix(&format!("ecs-tunnels:{owner}:"))?;
    let (c, s) = key.split_once('/')?;
    c.starts_with("cfn.").then(|| ServiceId::new(c, s))
}

/// Handles one request and PUTs the answer. `deps` is the cold start's result (an error
/// there is answered as FAILED too). Returns the body sent.
pub async fn handle(
    deps: Result<&Deps, &str>,
    event: &Value,
    deadline: SystemTime,
) -> Result<Value, String> {
    let req = parse(event);
    if req.response_url.is_empty() {
        return Err("custom resource request without ResponseURL: nothing to answer".into());
    }
    let (partition, region, account, stack_name) = stack_parts(&req.stack_id);
    let key = resource_key(&stack_name, &req.logical_id);
    let owner = deps.ok().and_then(|d| d.owner(Some(&account)).ok());
    let fallback_id = answer_id(&req, &key, owner.as_ref());
    let budget = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_MARGIN);
    // Every line logged for the request says which stack and request caused it.
    let cause = crate::doors::events::cause_of(event);
    let span = cause.span(&key);
    let work = async {
        match deps {
            Ok(d) => process(d, &req, &key, (&partition, &region, &account), &cause).await,
            // The rollback Delete of a Create this install failed: nothing was made.
            Err(_)
                if req.request_type == "Delete"
                    && fallback_id.starts_with("ecs-tunnels:failed:") =>
            {
                Ok((fallback_id.clone(), Map::new(), None))
            }
            Err(e) => Err((
                fallback_id.clone(),
                format!("ecs-tunnels is misconfigured: {e}"),
            )),
        }
    };
    let result = guarded(work.instrument(span.clone()), budget, &fallback_id).await;
    let body = match result {
        Ok((id, data, note)) => response(&req, "SUCCESS", note.as_deref(), &id, data),
        Err((id, reason)) => {
            let _in = span.enter();
            warn!(request_type = %req.request_type, logical_id = %req.logical_id, reason = %reason, "custom resource failed");
            response(&req, "FAILED", Some(&reason), &id, Map::new())
        }
    };
    put_response(&req.response_url, &body).await?;
    let _in = span.enter();
    info!(request_type = %req.request_type, logical_id = %req.logical_id, status = %body["Status"], "custom resource answered");
    Ok(body)
}

/// The physical id, `Data` and, on success, what the stack's owner should know (the
/// Reason CloudFormation shows), or the physical id and why it failed.
type Answer = Result<(String, Map<String, Value>, Option<String>), (String, String)>;

/// The id an answer carries when the work did not produce one (it timed out or
/// panicked): the request's own, else the deterministic one once the owner id is known,
/// so that the rollback Delete finds what a half-done Create made. Only without an owner
/// id (nothing can have been made) a throwaway one.
fn answer_id(req: &Request, key: &ServiceId, owner: Option<&Owner>) -> String {
    req.physical_id.clone().unwrap_or_else(|| match owner {
        Some(o) => physical_id(o, key),
        None => format!("ecs-tunnels:failed:{key}"),
    })
}

/// Runs the work within `budget`, turning a timeout or a panic into a FAILED answer
/// with `fallback_id`.
async fn guarded(
    work: impl std::future::Future<Output = Answer>,
    budget: Duration,
    fallback_id: &str,
) -> Answer {
    match tokio::time::timeout(budget, std::panic::AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err((fallback_id.to_string(), "internal error (a panic); see the function's log".to_string())),
        Err(_) => Err((fallback_id.to_string(), "timed out before finishing; see the function's log. Retrying the stack operation continues where it stopped".to_string())),
    }
}

async fn process(
    deps: &Deps,
    req: &Request,
    key: &ServiceId,
    (partition, region, account): (&str, &str, &str),
    cause: &crate::cause::Cause,
) -> Answer {
    let owner = deps
        .owner(Some(account))
        .map_err(|e| (answer_id(req, key, None), e))?;
    let own_id = physical_id(&owner, key);
    match req.request_type.as_str() {
        "Create" | "Update" => {
            let id = req
                .physical_id
                .clone()
                .filter(|_| req.request_type == "Update")
                .unwrap_or_else(|| own_id.clone());
            let key = key_of_physical_id(&owner, &id).unwrap_or_else(|| key.clone());
            let fail = |reason: String| (id.clone(), reason);
            let service = match req.properties.get("ServiceArn").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(arn) => Some(ServiceId::from_arn(arn).ok_or_else(|| fail(format!("ServiceArn {arn:?} is not an ECS service ARN (arn:aws:ecs:<region>:<account>:service/<cluster>/<service>)")))?),
                None => None,
            };
            let expected_name = deps.tokens.location(&key);
            if let Some(name) = req
                .properties
                .get("TokenParameterName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                if name.trim_start_matches('/') != expected_name.trim_start_matches('/') {
                    return Err(fail(format!("TokenParameterName: ecs-tunnels names the token parameter itself ({expected_name}); remove the property and use !GetAtt <resource>.TokenParameterName")));
                }
            }
            let info = match &service {
                Some(s) => deps
                    .ecs
                    .describe_service(&s.cluster, &s.service)
                    .await
                    .map_err(|e| fail(e.to_string()))?,
                None => None,
            };
            let origin = match info.as_ref().and_then(|i| i.task_definition.as_deref()) {
                Some(td) if req.properties.get("Origin").is_none() => deps
                    .default_origin(td)
                    .await
                    .map_err(|e| fail(e.to_string()))?,
                _ => None,
            };
            let redeploy = match (&info, service) {
                (Some(i), _) => Some(crate::model::RedeployTarget::of(i)),
                (None, s) => s.map(crate::model::RedeployTarget::ecs),
            };
            let spec = match spec::from_properties(
                &req.properties,
                &Defaults {
                    origin,
                    rotate_every: deps.config.rotate_every,
                },
            ) {
                Desired::Managed(s) => s,
                Desired::Invalid(errors) => {
                    let text = errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(fail(format!("invalid properties: {text}")));
                }
                Desired::NotManaged => return Err(fail("Hostnames is required".into())),
            };
            let outcome = reconcile_resource(deps, &key, owner, Some(spec), redeploy, cause)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let tunnel_id = outcome.tunnel_id.clone().unwrap_or_default();
            let token_name = deps.tokens.location(&key);
            let token_arn = match &deps.tokens {
                crate::aws::token_store::TokenStore::Ssm(_) => format!(
                    "arn:{partition}:ssm:{region}:{account}:parameter/{}",
                    token_name.trim_start_matches('/')
                ),
                crate::aws::token_store::TokenStore::SecretsManager(sm) => sm
                    .describe(&token_name)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| i.arn)
                    .unwrap_or_default(),
            };
            let mut data = Map::new();
            data.insert("TunnelId".into(), json!(tunnel_id));
            data.insert("TokenParameterName".into(), json!(token_name));
            data.insert("TokenParameterArn".into(), json!(token_arn));
            data.insert(
                "Cname".into(),
                json!(if tunnel_id.is_empty() {
                    String::new()
                } else {
                    crate::model::tunnel_cname(&tunnel_id)
                }),
            );
            data.insert(
                "AccessAppId".into(),
                json!(outcome
                    .access_app
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default()),
            );
            data.insert(
                "AccessAud".into(),
                json!(outcome
                    .access_app
                    .as_ref()
                    .map(|a| a.aud.clone())
                    .unwrap_or_default()),
            );
            // A redeploy only the service's owner can start is reported, not failed: a
            // FAILED answer would fail the stack update and then its rollback.
            let note = outcome
                .error
                .clone()
                .filter(|_| outcome.error_kind == Some("redeploy"));
            Ok((id, data, note))
        }
        "Delete" => {
            let id = req.physical_id.clone().unwrap_or(own_id);
            let Some(key) = key_of_physical_id(&owner, &id) else {
                // The id of a Create that failed before it made anything, or not ours.
                return Ok((id, Map::new(), None));
            };
            reconcile_resource(deps, &key, owner, None, None, cause)
                .await
                .map_err(|e| (id.clone(), e.to_string()))?;
            Ok((id, Map::new(), None))
        }
        other => Err((
            answer_id(req, key, Some(&owner)),
            format!("unknown RequestType {other:?}: expected Create, Update or Delete"),
        )),
    }
}

/// The response body, never over 4,096 bytes (the Reason is trimmed to fit) and never
/// carrying a secret: `Data` holds only ids and names.
fn response(
    req: &Request,
    status: &str,
    reason: Option<&str>,
    physical_id: &str,
    data: Map<String, Value>,
) -> Value {
    let mut reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| "See the function's CloudWatch log".into());
    loop {
        let body = json!({
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": physical_id,
            "StackId": req.stack_id,
            "RequestId": req.request_id,
            "LogicalResourceId": req.logical_id,
            "NoEcho": false,
            "Data": data,
        });
        let size = body.to_string().len();
        if size <= MAX_BODY || reason.is_empty() {
            return body;
        }
        let keep = reason.chars().count().saturating_sub(size - MAX_BODY + 3);
        reason = reason.chars().take(keep).collect::<String>() + "...";
        if keep == 0 {
            reason.clear();
        }
    }
}

/// PUTs the body with no Content-Type (the pre-signed URL may have signed it empty),
/// retrying transport errors and 5xx a bounded number of times.
async fn put_response(url: &str, body: &Value) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let text = body.to_string();
    let mut last = String::new();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
        match client.put(url).body(text.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.without_url().to_string(),
        }
    }
    error!(error = %last, "could not send the custom resource response");
    Err(format!(
        "could not send the response to CloudFormation: {last}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> Request {
        parse(&json!({
            "RequestType": "Create",
            "ResponseURL": "http://127.0.0.1:1/",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1",
            "LogicalResourceId": "Tunnel",
        }))
    }

    #[tokio::test]
    async fn a_panic_or_timeout_answers_with_the_id_its_rollback_delete_cleans_up() {
        let owner = Owner::parse("123456789012-us-east-1").unwrap();
        let key = resource_key("app", "Tunnel");
        let id = answer_id(&create(), &key, Some(&owner));
        assert_eq!(id, "ecs-tunnels:123456789012-us-east-1:cfn.app/Tunnel");
        assert_eq!(key_of_physical_id(&owner, &id), Some(key.clone()));

        let panicked = guarded(async { panic!("boom") }, Duration::from_secs(5), &id).await;
        let (got, reason) = panicked.unwrap_err();
        assert_eq!(got, id);
        assert!(reason.contains("panic"), "{reason}");

        let slow = guarded(
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok((String::new(), Map::new(), None))
            },
            Duration::from_millis(10),
            &id,
        )
        .await;
        assert_eq!(slow.unwrap_err().0, id);
    }

    #[test]
    fn only_an_install_without_an_owner_id_answers_with_a_throwaway_id() {
        let key = resource_key("app", "Tunnel");
        assert_eq!(
            answer_id(&create(), &key, None),
            "ecs-tunnels:failed:cfn.app/Tunnel"
        );
        let mut update = create();
        update.physical_id = Some("ecs-tunnels:o:cfn.app/Tunnel".into());
        let owner = Owner::parse("123456789012-us-east-1").unwrap();
        assert_eq!(
            answer_id(&update, &key, Some(&owner)),
            "ecs-tunnels:o:cfn.app/Tunnel",
            "the request's own id is echoed"
        );
    }
}
