//! Which of the template's functions receives which event, read off the template itself
//! (never hard-coded):
//!
//! - SQS records, and the EventBridge events that reach the product through the queue (ECS
//!   task state changes, CloudTrail API calls, tag changes): the function of an
//!   `AWS::Lambda::EventSourceMapping` whose source is an SQS queue;
//! - scheduled events (`"detail-type": "Scheduled Event"` naming a rule, or the
//!   `{"ecs-tunnels": "sweep" | "rotate"}` input): the function an `AWS::Events::Rule` with
//!   a `ScheduleExpression` targets, matched by rule ARN, by target `Input`, or by the rule
//!   name's `-sweep` / `-rotate` suffix;
//! - CloudFormation custom resource requests (they carry `ResponseURL`): the function the
//!   output `CustomResourceServiceToken` names;
//! - Secrets Manager rotation steps (`Step` + `SecretId`): the function an
//!   `AWS::Lambda::Permission` lets `secretsmanager.amazonaws.com` invoke.

use serde_json::Value;

use super::template::ResolvedTemplate;

/// The output whose value is the custom resource provider's function ARN.
pub const SERVICE_TOKEN_OUTPUT: &str = "CustomResourceServiceToken";

/// A schedule rule that targets one of the template's functions.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRule {
    /// The rule's name, e.g. `ecs-tunnels-sweep`.
    pub name: String,
    /// The rule's ARN.
    pub arn: String,
    /// The target's constant `Input`, parsed, if set.
    pub input: Option<Value>,
    /// The target function's logical id.
    pub function: String,
}

/// Trigger → function, derived from a [`ResolvedTemplate`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerMap {
    /// Functions fed by an SQS event source mapping.
    pub queue: Vec<String>,
    /// Schedule rules and the function each targets.
    pub schedules: Vec<ScheduleRule>,
    /// The function named by the `CustomResourceServiceToken` output.
    pub custom_resource: Option<String>,
    /// Functions Secrets Manager may invoke (rotation targets).
    pub secrets_rotation: Vec<String>,
}

fn s(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

impl TriggerMap {
    /// Reads the triggers off the template.
    pub fn from_template(t: &ResolvedTemplate) -> TriggerMap {
        let by = |name_or_arn: &str| {
            t.function_by_name_or_arn(name_or_arn)
                .map(|f| f.logical_id.clone())
        };
        let mut map = TriggerMap::default();
        for (_, esm) in t.resources_of("AWS::Lambda::EventSourceMapping") {
            let source = s(&esm.properties["EventSourceArn"]);
            if source.contains(":sqs:") {
                if let Some(f) = by(&s(&esm.properties["FunctionName"])) {
                    if !map.queue.contains(&f) {
                        map.queue.push(f);
                    }
                }
            }
        }
        for (id, rule) in t.resources_of("AWS::Events::Rule") {
            if rule.properties.get("ScheduleExpression").is_none() {
                continue;
            }
            let name = rule
                .properties
                .get("Name")
                .map(s)
                .unwrap_or_else(|| format!("{}-{id}", super::template::STACK_NAME));
            let arn = format!(
                "arn:{}:events:{}:{}:rule/{name}",
                super::template::PARTITION,
                super::template::REGION,
                super::template::ACCOUNT_ID
            );
            for target in rule.properties["Targets"].as_array().into_iter().flatten() {
                if let Some(f) = by(&s(&target["Arn"])) {
                    let input = target
                        .get("Input")
                        .and_then(Value::as_str)
                        .and_then(|i| serde_json::from_str(i).ok());
                    map.schedules.push(ScheduleRule {
                        name: name.clone(),
                        arn: arn.clone(),
                        input,
                        function: f,
                    });
                }
            }
        }
        if let Some(token) = t.outputs.get(SERVICE_TOKEN_OUTPUT) {
            map.custom_resource = by(&s(token));
        }
        for (_, p) in t.resources_of("AWS::Lambda::Permission") {
            if s(&p.properties["Principal"]) == "secretsmanager.amazonaws.com" {
                if let Some(f) = by(&s(&p.properties["FunctionName"])) {
                    if !map.secrets_rotation.contains(&f) {
                        map.secrets_rotation.push(f);
                    }
                }
            }
        }
        map
    }

    /// The function(s) that receive `event`, or why none can be named (an event shape the
    /// template routes nowhere).
    pub fn functions_for_event(&self, event: &Value) -> Result<Vec<String>, String> {
        let nonempty = |v: Vec<String>, what: &str| {
            if v.is_empty() {
                Err(format!("the template routes {what} to no function"))
            } else {
                Ok(v)
            }
        };
        if event.get("Records").is_some_and(Value::is_array) {
            return nonempty(self.queue.clone(), "SQS records");
        }
        if event.get("RequestType").is_some() && event.get("ResponseURL").is_some() {
            return nonempty(
                self.custom_resource.iter().cloned().collect(),
                "CloudFormation custom resource requests",
            );
        }
        if event.get("Step").is_some() && event.get("SecretId").is_some() {
            return nonempty(
                self.secrets_rotation.clone(),
                "Secrets Manager rotation steps",
            );
        }
        if let Some(what) = event.get("ecs-tunnels").and_then(Value::as_str) {
            let by_input: Vec<String> = self
                .schedules
                .iter()
                .filter(|r| r.input.as_ref() == Some(event))
                .map(|r| r.function.clone())
                .collect();
            if !by_input.is_empty() {
                return Ok(by_input);
            }
            return nonempty(self.by_suffix(what), &format!("the {what:?} schedule"));
        }
        match event.get("detail-type").and_then(Value::as_str) {
            Some("Scheduled Event") => {
                let rule = event["resources"][0].as_str().unwrap_or_default();
                let exact: Vec<String> = self.schedules.iter().filter(|r| r.arn == rule).map(|r| r.function.clone()).collect();
                if !exact.is_empty() {
                    return Ok(exact);
                }
                let suffix = rule.rsplit('-').next().unwrap_or_default();
                nonempty(self.by_suffix(suffix), &format!("scheduled events of rule {rule:?}"))
            }
            // ECS task state changes, CloudTrail API calls and tag changes: EventBridge rules
            // send them to the queue, so they reach the queue's function.
            Some(_) => nonempty(self.queue.clone(), "EventBridge events (via the queue)"),
            None => Err("an event of no shape the template routes (no Records, ResponseURL, Step, detail-type)".into()),
        }
    }

    fn by_suffix(&self, what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.schedules {
            if r.name.ends_with(&format!("-{what}")) && !out.contains(&r.function) {
                out.push(r.function.clone());
            }
        }
        out
    }
}
