//! From one recorded AWS call to the IAM request(s) AWS would authorize for it: action,
//! resource ARN and request context.
//!
//! Two steps, so the mapping itself is pure and unit-tested: [`lookups`] says which facts
//! about existing resources the mapping needs (current tags, a secret's full ARN), the
//! caller fetches them from moto into [`Facts`], then [`map_call`] builds the requests.
//!
//! Implied checks AWS makes beyond the operation's own action are included:
//! - `secretsmanager:RotateSecret` also needs `lambda:InvokeFunction` on the rotation
//!   function ("You also need lambda:InvokeFunction permissions on the rotation function",
//!   RotateSecret, AWS Secrets Manager API Reference): the `RotationLambdaARN` given, else
//!   the one already configured on the secret;
//! - `secretsmanager:CreateSecret` with tags also needs `secretsmanager:TagResource` ("If
//!   you include tags in the secret, you also need secretsmanager:TagResource", CreateSecret,
//!   same reference);
//! - `ssm:PutParameter` with tags also needs `ssm:AddTagsToResource` (the CloudFormation
//!   AWS::SSM::Parameter reference lists both permissions for creating a parameter; a real
//!   denial is quoted in pepperize/cdk-ssm-parameters-cross-region#442). That real denial
//!   names the resource `arn:aws:ssm:<r>:<a>:parameter//cloudfront/distribution/id` for the
//!   parameter `/cloudfront/distribution/id`: the implied check joins `parameter/` and the
//!   name as given, double slash included. [`ssm_implied_tag_arn`] does the same.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::template::{ACCOUNT_ID, PARTITION};

/// One request for the IAM evaluator.
#[derive(Debug, Clone, PartialEq)]
pub struct IamRequest {
    /// `service:Action`, e.g. `ecs:TagResource`.
    pub action: String,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: String,
    /// Request context keys this call supplies (string or list of strings).
    pub context: BTreeMap<String, Value>,
    /// Context keys (or `/regex/` patterns, matched case-insensitively) whose presence and
    /// value we know for this call: a condition on any other key cannot be judged.
    pub known_keys: Vec<String>,
    /// Why this request exists or how it was built, when not obvious (an implied check, an
    /// invented ARN suffix).
    pub note: Option<String>,
    /// The resource's own policy, evaluated with the identity policies (`sts:AssumeRole`:
    /// the role's trust policy, as moto holds it). `None`: no resource policy applies.
    pub resource_policy: Option<Value>,
}

impl IamRequest {
    fn new(action: &str, resource: impl Into<String>) -> IamRequest {
        IamRequest {
            action: action.to_string(),
            resource: resource.into(),
            context: BTreeMap::new(),
            known_keys: Vec::new(),
            note: None,
            resource_policy: None,
        }
    }

    fn ctx(mut self, key: &str, value: impl Into<Value>) -> IamRequest {
        self.context.insert(key.to_string(), value.into());
        self.known_keys.push(key.to_string());
        self
    }

    fn known(mut self, key: &str) -> IamRequest {
        self.known_keys.push(key.to_string());
        self
    }

    fn note(mut self, note: impl Into<String>) -> IamRequest {
        self.note = Some(note.into());
        self
    }

    /// `aws:TagKeys` and `aws:RequestTag/<k>` for the tags a call sets (or none: then we
    /// know there are none).
    fn request_tags(mut self, tags: &[(String, String)]) -> IamRequest {
        if !tags.is_empty() {
            let keys: Vec<Value> = tags.iter().map(|(k, _)| json!(k)).collect();
            self.context
                .insert("aws:TagKeys".into(), Value::Array(keys));
            for (k, v) in tags {
                self.context.insert(format!("aws:RequestTag/{k}"), json!(v));
            }
        }
        self.known_keys.push("aws:TagKeys".into());
        self.known_keys.push("/^aws:requesttag\\//".into());
        self
    }

    /// `aws:TagKeys` for the keys a call removes.
    fn tag_keys(mut self, keys: &[String]) -> IamRequest {
        if !keys.is_empty() {
            self.context.insert("aws:TagKeys".into(), json!(keys));
        }
        self.known_keys.push("aws:TagKeys".into());
        self.known_keys.push("/^aws:requesttag\\//".into());
        self
    }

    /// `aws:ResourceTag/<k>` from the resource's current tags, plus `ecs:ResourceTag/<k>`
    /// when `ecs` (iam-data lists it for ECS resources). Secrets Manager's and SSM's own
    /// spellings (`secretsmanager:ResourceTag/<k>`, `ssm:resourceTag/<k>`) are not supplied:
    /// the simulator cannot type them, so conditions on them stay unjudged.
    fn resource_tags(mut self, tags: Option<&BTreeMap<String, String>>, ecs: bool) -> IamRequest {
        if let Some(tags) = tags {
            for (k, v) in tags {
                self.context
                    .insert(format!("aws:ResourceTag/{k}"), json!(v));
                if ecs {
                    self.context
                        .insert(format!("ecs:ResourceTag/{k}"), json!(v));
                }
            }
            self.known_keys.push("/^aws:resourcetag\\//".into());
            if ecs {
                self.known_keys.push("/^ecs:resourcetag\\//".into());
            }
        }
        self
    }
}

/// A fact about an existing resource the mapping needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// The current tags of an ECS resource, by ARN.
    EcsTags(String),
    /// The current tags of an SSM parameter, by name.
    SsmTags(String),
    /// A Secrets Manager secret by the `SecretId` (or `Name`) the call gives.
    Secret(String),
    /// An IAM role by ARN (in any account): its trust policy.
    Role(String),
}

/// What is known about a secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecretFacts {
    /// Its full ARN (with the 6-character suffix).
    pub arn: String,
    /// Its current tags.
    pub tags: BTreeMap<String, String>,
    /// The rotation function configured on it, if any.
    pub rotation_lambda_arn: Option<String>,
}

/// The answers to [`Lookup`]s. A missing entry means the resource does not exist (an ECS
/// or SSM resource then has no tags; a secret then has no known ARN).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Tags by ECS resource ARN or SSM parameter name.
    pub tags: HashMap<String, BTreeMap<String, String>>,
    /// Secrets by the id the call used.
    pub secrets: HashMap<String, SecretFacts>,
    /// Trust policies of existing roles, by role ARN (a role that does not exist is absent).
    pub role_trust: HashMap<String, Value>,
}

fn str_at<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

fn strings_at(params: &Value, key: &str) -> Vec<String> {
    params
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Tags as `[{"key": .., "value": ..}]` (ECS) or `[{"Key": .., "Value": ..}]` (SSM, SM).
fn tags_at(params: &Value, key: &str) -> Vec<(String, String)> {
    params
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let k = t.get("key").or_else(|| t.get("Key"))?.as_str()?;
                    let v = t
                        .get("value")
                        .or_else(|| t.get("Value"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    Some((k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_name(cluster: Option<&str>) -> String {
    match cluster {
        Some(c) if c.starts_with("arn:") => c.rsplit('/').next().unwrap_or(c).to_string(),
        Some(c) if !c.is_empty() => c.to_string(),
        _ => "default".to_string(),
    }
}

/// `arn:aws:ecs:<region>:<account>:cluster/<name>` for a cluster name or ARN (default
/// `default`).
pub fn ecs_cluster_arn(region: &str, cluster: Option<&str>) -> String {
    ecs_cluster_arn_in(ACCOUNT_ID, region, cluster)
}

fn ecs_cluster_arn_in(account: &str, region: &str, cluster: Option<&str>) -> String {
    match cluster {
        Some(c) if c.starts_with("arn:") => c.to_string(),
        _ => format!(
            "arn:{PARTITION}:ecs:{region}:{account}:cluster/{}",
            cluster_name(cluster)
        ),
    }
}

/// The service ARN for a service name or ARN in a cluster name or ARN (default `default`):
/// `arn:aws:ecs:<region>:<account>:service/<cluster>/<service>`.
pub fn ecs_service_arn(region: &str, cluster: Option<&str>, service: &str) -> String {
    ecs_service_arn_in(ACCOUNT_ID, region, cluster, service)
}

fn ecs_service_arn_in(account: &str, region: &str, cluster: Option<&str>, service: &str) -> String {
    if service.starts_with("arn:") {
        return service.to_string();
    }
    format!(
        "arn:{PARTITION}:ecs:{region}:{account}:service/{}/{service}",
        cluster_name(cluster)
    )
}

/// The parameter ARN IAM evaluates for a parameter name: `arn:aws:ssm:<r>:<a>:parameter`
/// followed by the name when it starts with `/` (`/a/b` → `parameter/a/b`), else by `/`
/// and the name (`a` → `parameter/a`). A version or label selector (`name:3`) is dropped;
/// an ARN is taken as is.
pub fn ssm_parameter_arn(region: &str, name: &str) -> String {
    ssm_parameter_arn_in(ACCOUNT_ID, region, name)
}

fn ssm_parameter_arn_in(account: &str, region: &str, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_string();
    }
    let name = name.split(':').next().unwrap_or(name);
    if name.starts_with('/') {
        format!("arn:{PARTITION}:ssm:{region}:{account}:parameter{name}")
    } else {
        format!("arn:{PARTITION}:ssm:{region}:{account}:parameter/{name}")
    }
}

/// The resource of the `ssm:AddTagsToResource` check implied by `PutParameter` with tags:
/// `parameter/` joined to the name as given, so `/a/b` gives `parameter//a/b` (as in the
/// denial AWS returned in pepperize/cdk-ssm-parameters-cross-region#442).
pub fn ssm_implied_tag_arn(region: &str, name: &str) -> String {
    ssm_implied_tag_arn_in(ACCOUNT_ID, region, name)
}

fn ssm_implied_tag_arn_in(account: &str, region: &str, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_string();
    }
    format!("arn:{PARTITION}:ssm:{region}:{account}:parameter/{name}")
}

/// The ARN a secret created now would get: CloudFormation-style placeholder suffix
/// `-AbCdEf` (Secrets Manager appends 6 random characters; a policy cannot name them in
/// advance, so any 6 characters evaluate alike).
pub fn new_secret_arn(region: &str, name: &str) -> String {
    new_secret_arn_in(ACCOUNT_ID, region, name)
}

fn new_secret_arn_in(account: &str, region: &str, name: &str) -> String {
    format!("arn:{PARTITION}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf")
}

/// The facts [`map_call`] needs for this call.
pub fn lookups(service: &str, operation: &str, params: &Value, region: &str) -> Vec<Lookup> {
    lookups_in(service, operation, params, region, ACCOUNT_ID)
}

/// [`lookups`] for a call made in `account` (e.g. with a spoke role's credentials).
pub fn lookups_in(
    service: &str,
    operation: &str,
    params: &Value,
    region: &str,
    account: &str,
) -> Vec<Lookup> {
    let cluster = str_at(params, "cluster");
    match (service, operation) {
        ("ecs", "DescribeServices") => strings_at(params, "services")
            .iter()
            .map(|s| Lookup::EcsTags(ecs_service_arn_in(account, region, cluster, s)))
            .collect(),
        ("ecs", "UpdateService") => str_at(params, "service")
            .map(|s| {
                vec![Lookup::EcsTags(ecs_service_arn_in(
                    account, region, cluster, s,
                ))]
            })
            .unwrap_or_default(),
        ("ecs", "TagResource" | "UntagResource" | "ListTagsForResource") => {
            str_at(params, "resourceArn")
                .map(|a| vec![Lookup::EcsTags(a.to_string())])
                .unwrap_or_default()
        }
        ("ssm", "GetParameter" | "DeleteParameter") => str_at(params, "Name")
            .map(|n| {
                vec![Lookup::SsmTags(
                    n.split(':').next().unwrap_or(n).to_string(),
                )]
            })
            .unwrap_or_default(),
        ("ssm", "GetParameters") => strings_at(params, "Names")
            .iter()
            .map(|n| Lookup::SsmTags(n.split(':').next().unwrap_or(n).to_string()))
            .collect(),
        ("ssm", "AddTagsToResource" | "RemoveTagsFromResource" | "ListTagsForResource") => {
            str_at(params, "ResourceId")
                .map(|n| vec![Lookup::SsmTags(n.to_string())])
                .unwrap_or_default()
        }
        ("sts", "AssumeRole") => str_at(params, "RoleArn")
            .map(|a| vec![Lookup::Role(a.to_string())])
            .unwrap_or_default(),
        ("secretsmanager", "CreateSecret") => str_at(params, "Name")
            .map(|n| vec![Lookup::Secret(n.to_string())])
            .unwrap_or_default(),
        ("secretsmanager", _) => str_at(params, "SecretId")
            .map(|n| vec![Lookup::Secret(n.to_string())])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The IAM requests AWS would authorize for `service`/`operation` with `params`, made in
/// `region`. Errors name calls this mapping does not know (so they cannot be judged).
pub fn map_call(
    service: &str,
    operation: &str,
    params: &Value,
    region: &str,
    facts: &Facts,
) -> Result<Vec<IamRequest>, String> {
    map_call_in(service, operation, params, region, ACCOUNT_ID, facts)
}

/// [`map_call`] for a call made in `account` (e.g. with a spoke role's credentials): the
/// ARNs built from names are that account's.
pub fn map_call_in(
    service: &str,
    operation: &str,
    params: &Value,
    region: &str,
    account: &str,
    facts: &Facts,
) -> Result<Vec<IamRequest>, String> {
    let action = |a: &str| format!("{service}:{a}");
    let act = action(operation);
    let cluster = str_at(params, "cluster");
    let missing = |what: &str| format!("{act}: the request has no {what}");
    let out = match (service, operation) {
        // ---- ECS ----
        ("ecs", "DescribeServices") => {
            let services = strings_at(params, "services");
            if services.is_empty() {
                return Err(missing("services"));
            }
            services
                .iter()
                .map(|s| {
                    let arn = ecs_service_arn_in(account, region, cluster, s);
                    let tags = facts.tags.get(&arn);
                    IamRequest::new(&act, arn.clone())
                        .ctx("ecs:cluster", ecs_cluster_arn_in(account, region, cluster))
                        .resource_tags(Some(tags.unwrap_or(&BTreeMap::new())), true)
                })
                .collect()
        }
        ("ecs", "UpdateService") => {
            let s = str_at(params, "service").ok_or_else(|| missing("service"))?;
            let arn = ecs_service_arn_in(account, region, cluster, s);
            let mut r = IamRequest::new(&act, arn.clone())
                .ctx("ecs:cluster", ecs_cluster_arn_in(account, region, cluster))
                .resource_tags(Some(facts.tags.get(&arn).unwrap_or(&BTreeMap::new())), true);
            if let Some(td) = str_at(params, "taskDefinition") {
                r = r.ctx("ecs:task-definition", td);
            }
            vec![r]
        }
        ("ecs", "TagResource") => {
            let arn = str_at(params, "resourceArn").ok_or_else(|| missing("resourceArn"))?;
            vec![IamRequest::new(&act, arn)
                .request_tags(&tags_at(params, "tags"))
                .resource_tags(Some(facts.tags.get(arn).unwrap_or(&BTreeMap::new())), true)]
        }
        ("ecs", "UntagResource") => {
            let arn = str_at(params, "resourceArn").ok_or_else(|| missing("resourceArn"))?;
            vec![IamRequest::new(&act, arn)
                .tag_keys(&strings_at(params, "tagKeys"))
                .resource_tags(Some(facts.tags.get(arn).unwrap_or(&BTreeMap::new())), true)]
        }
        ("ecs", "ListTagsForResource") => {
            let arn = str_at(params, "resourceArn").ok_or_else(|| missing("resourceArn"))?;
            vec![IamRequest::new(&act, arn).resource_tags(Some(facts.tags.get(arn).unwrap_or(&BTreeMap::new())), true)]
        }
        // One request per cluster named (no names: the default cluster).
        ("ecs", "DescribeClusters") => {
            let names = strings_at(params, "clusters");
            if names.is_empty() {
                vec![IamRequest::new(&act, ecs_cluster_arn_in(account, region, None))]
            } else {
                names
                    .iter()
                    .map(|c| IamRequest::new(&act, ecs_cluster_arn_in(account, region, Some(c))))
                    .collect()
            }
        }
        // No resource-level permissions (iam-data lists no resource type for these).
        ("ecs", "DescribeTaskDefinition" | "ListClusters") => vec![IamRequest::new(&act, "*")],
        ("ecs", "ListServices") => vec![IamRequest::new(&act, "*").ctx("ecs:cluster", ecs_cluster_arn_in(account, region, cluster))],

        // ---- SSM ----
        ("ssm", "GetParameter" | "DeleteParameter") => {
            let name = str_at(params, "Name").ok_or_else(|| missing("Name"))?;
            vec![ssm_request(&act, region, account, name, facts)]
        }
        ("ssm", "GetParameters") => {
            let names = strings_at(params, "Names");
            if names.is_empty() {
                return Err(missing("Names"));
            }
            names.iter().map(|n| ssm_request(&act, region, account, n, facts)).collect()
        }
        ("ssm", "PutParameter") => {
            let name = str_at(params, "Name").ok_or_else(|| missing("Name"))?;
            let tags = tags_at(params, "Tags");
            let overwrite = params.get("Overwrite").and_then(Value::as_bool).unwrap_or(false);
            let mut out = vec![IamRequest::new(&act, ssm_parameter_arn_in(account, region, name))
                .request_tags(&tags)
                .ctx("ssm:Overwrite", if overwrite { "true" } else { "false" })];
            if !tags.is_empty() {
                out.push(
                    IamRequest::new("ssm:AddTagsToResource", ssm_implied_tag_arn_in(account, region, name))
                        .request_tags(&tags)
                        .note("implied by PutParameter with Tags; resource as AWS names it (parameter/ + name, so a leading / doubles)"),
                );
            }
            out
        }
        ("ssm", "AddTagsToResource" | "RemoveTagsFromResource" | "ListTagsForResource") => {
            let kind = str_at(params, "ResourceType").unwrap_or_default();
            if kind != "Parameter" {
                return Err(format!("{act}: ResourceType {kind:?} is not mapped (only Parameter)"));
            }
            let id = str_at(params, "ResourceId").ok_or_else(|| missing("ResourceId"))?;
            let mut r = IamRequest::new(&act, ssm_parameter_arn_in(account, region, id))
                .resource_tags(Some(facts.tags.get(id).unwrap_or(&BTreeMap::new())), false);
            r = match operation {
                "AddTagsToResource" => r.request_tags(&tags_at(params, "Tags")),
                "RemoveTagsFromResource" => r.tag_keys(&strings_at(params, "TagKeys")),
                _ => r,
            };
            vec![r]
        }
        ("ssm", "GetParametersByPath") => {
            let path = str_at(params, "Path").ok_or_else(|| missing("Path"))?;
            let recursive = params.get("Recursive").and_then(Value::as_bool).unwrap_or(false);
            vec![IamRequest::new(&act, ssm_parameter_arn_in(account, region, path)).ctx("ssm:Recursive", if recursive { "true" } else { "false" })]
        }
        ("ssm", "DescribeParameters") => vec![IamRequest::new(&act, "*")],
        // No resource-level permissions (iam-data lists no resource type for these).
        ("tag", "GetResources") | ("secretsmanager", "ListSecrets") => vec![IamRequest::new(&act, "*")],

        // ---- SQS ----
        // The queue URL `https://sqs.<region>.amazonaws.com/<account>/<name>` (or an
        // emulator's `http://host:port/<account>/<name>`) names the queue ARN.
        ("sqs", "SendMessage") => {
            let url = str_at(params, "QueueUrl").ok_or_else(|| missing("QueueUrl"))?;
            let mut parts = url.trim_end_matches('/').rsplit('/');
            let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
                return Err(format!("{act}: QueueUrl {url} names no queue"));
            };
            vec![IamRequest::new(
                &act,
                format!("arn:{PARTITION}:sqs:{region}:{account}:{name}"),
            )]
        }

        // ---- IAM (a diagnosis reads the task execution role's policies) ----
        // Role actions are authorized on the role's ARN, which holds its path: the request
        // names only the role, so the ARN is built without one.
        ("iam", "GetRole" | "ListRolePolicies" | "GetRolePolicy" | "ListAttachedRolePolicies") => {
            let role = str_at(params, "RoleName").ok_or_else(|| missing("RoleName"))?;
            vec![IamRequest::new(&act, format!("arn:{PARTITION}:iam::{account}:role/{role}"))
                .note("role ARN built from RoleName without the role's path")]
        }
        ("iam", "GetPolicy" | "GetPolicyVersion") => {
            let arn = str_at(params, "PolicyArn").ok_or_else(|| missing("PolicyArn"))?;
            vec![IamRequest::new(&act, arn)]
        }

        // ---- STS (organization mode: the hub assumes a spoke account's role) ----
        // Authorized on the role's ARN, against the caller's identity policies and the
        // role's trust policy (its resource policy) together: across accounts both must
        // allow. A role that does not exist has no trust policy; the authorizer then denies
        // as STS does, without evaluating.
        ("sts", "AssumeRole") => {
            let arn = str_at(params, "RoleArn").ok_or_else(|| missing("RoleArn"))?;
            let mut r = IamRequest::new(&act, arn).known("sts:SourceIdentity").request_tags(&[]);
            match str_at(params, "RoleSessionName") {
                Some(n) => r = r.ctx("sts:RoleSessionName", n),
                None => return Err(missing("RoleSessionName")),
            }
            match str_at(params, "ExternalId") {
                Some(e) => r = r.ctx("sts:ExternalId", e),
                None => r = r.known("sts:ExternalId"),
            }
            if params.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with("Tags.") || k.starts_with("TransitiveTagKeys."))) {
                return Err(format!("{act} with session tags is not mapped (devtools/src/iam/request.rs)"));
            }
            r.resource_policy = facts.role_trust.get(arn).cloned();
            if r.resource_policy.is_none() {
                r = r.note("the role does not exist: STS denies");
            }
            vec![r]
        }
        // No resource-level permissions.
        ("organizations", "ListAccounts") => vec![IamRequest::new(&act, "*")],

        // ---- Secrets Manager ----
        ("secretsmanager", "CreateSecret") => {
            let name = str_at(params, "Name").ok_or_else(|| missing("Name"))?;
            let tags = tags_at(params, "Tags");
            let (arn, note) = match facts.secrets.get(name) {
                Some(s) => (s.arn.clone(), None),
                None => (new_secret_arn_in(account, region, name), Some("ARN suffix invented: the secret does not exist yet")),
            };
            let mut r = IamRequest::new(&act, arn.clone()).request_tags(&tags).ctx("secretsmanager:Name", name);
            if let Some(d) = str_at(params, "Description") {
                r = r.ctx("secretsmanager:Description", d);
            } else {
                r = r.known("secretsmanager:Description");
            }
            if let Some(k) = str_at(params, "KmsKeyId") {
                r = r.ctx("secretsmanager:KmsKeyId", k);
            } else {
                r = r.known("secretsmanager:KmsKeyId");
            }
            if let Some(n) = note {
                r = r.note(n);
            }
            let mut out = vec![r];
            if !tags.is_empty() {
                out.push(
                    IamRequest::new("secretsmanager:TagResource", arn)
                        .request_tags(&tags)
                        .note("implied by CreateSecret with Tags (CreateSecret: \"If you include tags in the secret, you also need secretsmanager:TagResource\")"),
                );
            }
            out
        }
        ("secretsmanager", op @ ("DescribeSecret" | "GetSecretValue" | "PutSecretValue" | "UpdateSecretVersionStage" | "TagResource" | "UntagResource" | "DeleteSecret" | "RotateSecret")) => {
            let id = str_at(params, "SecretId").ok_or_else(|| missing("SecretId"))?;
            let known = facts.secrets.get(id);
            let arn = match (known, id.starts_with("arn:")) {
                (Some(s), _) => s.arn.clone(),
                (None, true) => id.to_string(),
                (None, false) => format!("arn:{PARTITION}:secretsmanager:{region}:{account}:secret:{id}"),
            };
            let empty = BTreeMap::new();
            let mut r = IamRequest::new(&act, arn)
                .ctx("secretsmanager:SecretId", id)
                .resource_tags(Some(known.map(|s| &s.tags).unwrap_or(&empty)), false);
            match known.and_then(|s| s.rotation_lambda_arn.clone()) {
                Some(l) => r = r.ctx("secretsmanager:resource/AllowRotationLambdaArn", l),
                None => r = r.known("secretsmanager:resource/AllowRotationLambdaArn"),
            }
            if known.is_none() {
                r = r.note("secret not found: evaluated against its name without the 6-character suffix");
            }
            match op {
                "GetSecretValue" | "UpdateSecretVersionStage" => {
                    if let Some(s) = str_at(params, "VersionStage") {
                        r = r.ctx("secretsmanager:VersionStage", s);
                    } else {
                        r = r.known("secretsmanager:VersionStage");
                    }
                    if op == "GetSecretValue" {
                        match str_at(params, "VersionId") {
                            Some(v) => r = r.ctx("secretsmanager:VersionId", v),
                            None => r = r.known("secretsmanager:VersionId"),
                        }
                    }
                }
                "TagResource" => r = r.request_tags(&tags_at(params, "Tags")),
                "UntagResource" => r = r.tag_keys(&strings_at(params, "TagKeys")),
                "DeleteSecret" => {
                    let force = params.get("ForceDeleteWithoutRecovery").and_then(Value::as_bool).unwrap_or(false);
                    r = r.ctx("secretsmanager:ForceDeleteWithoutRecovery", if force { "true" } else { "false" });
                    match params.get("RecoveryWindowInDays").and_then(Value::as_i64) {
                        Some(d) => r = r.ctx("secretsmanager:RecoveryWindowInDays", d.to_string()),
                        None => r = r.known("secretsmanager:RecoveryWindowInDays"),
                    }
                }
                _ => {}
            }
            let mut out = Vec::new();
            if op == "RotateSecret" {
                let given = str_at(params, "RotationLambdaARN");
                match given {
                    Some(l) => r = r.ctx("secretsmanager:RotationLambdaARN", l),
                    None => r = r.known("secretsmanager:RotationLambdaARN"),
                }
                let immediately = params.get("RotateImmediately").and_then(Value::as_bool).unwrap_or(true);
                r = r.ctx("secretsmanager:RotateImmediately", if immediately { "true" } else { "false" });
                let function = given.map(str::to_string).or_else(|| known.and_then(|s| s.rotation_lambda_arn.clone()));
                out.push(r);
                if let Some(f) = function {
                    out.push(IamRequest::new("lambda:InvokeFunction", f).note(if given.is_some() {
                        "implied by RotateSecret with RotationLambdaARN (RotateSecret: \"You also need lambda:InvokeFunction permissions on the rotation function\")"
                    } else {
                        "implied by RotateSecret: the rotation function configured on the secret (RotateSecret: \"You also need lambda:InvokeFunction permissions on the rotation function\")"
                    }));
                }
            } else {
                out.push(r);
            }
            out
        }
        _ => return Err(format!("{act} is not mapped to IAM requests (devtools/src/iam/request.rs): it cannot be judged")),
    };
    Ok(out)
}

fn ssm_request(act: &str, region: &str, account: &str, name: &str, facts: &Facts) -> IamRequest {
    let plain = name.split(':').next().unwrap_or(name);
    IamRequest::new(act, ssm_parameter_arn_in(account, region, name)).resource_tags(
        Some(facts.tags.get(plain).unwrap_or(&BTreeMap::new())),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "us-east-1";

    fn one(service: &str, op: &str, params: Value, facts: &Facts) -> IamRequest {
        let mut v = map_call(service, op, &params, R, facts).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn ecs_service_arns_from_names_and_arns() {
        assert_eq!(
            ecs_service_arn(R, Some("prod"), "web"),
            "arn:aws:ecs:us-east-1:123456789012:service/prod/web"
        );
        assert_eq!(
            ecs_service_arn(
                R,
                Some("arn:aws:ecs:us-east-1:123456789012:cluster/prod"),
                "web"
            ),
            "arn:aws:ecs:us-east-1:123456789012:service/prod/web"
        );
        assert_eq!(
            ecs_service_arn(R, None, "web"),
            "arn:aws:ecs:us-east-1:123456789012:service/default/web"
        );
        let arn = "arn:aws:ecs:us-east-1:999999999999:service/x/y";
        assert_eq!(ecs_service_arn(R, Some("prod"), arn), arn);
    }

    #[test]
    fn describe_services_is_one_request_per_service_with_its_tags() {
        let mut facts = Facts::default();
        facts.tags.insert(
            "arn:aws:ecs:us-east-1:123456789012:service/prod/a".into(),
            [("team".to_string(), "x".to_string())].into(),
        );
        let v = map_call(
            "ecs",
            "DescribeServices",
            &json!({"cluster": "prod", "services": ["a", "b"]}),
            R,
            &facts,
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].action, "ecs:DescribeServices");
        assert_eq!(
            v[0].resource,
            "arn:aws:ecs:us-east-1:123456789012:service/prod/a"
        );
        assert_eq!(v[0].context["aws:ResourceTag/team"], json!("x"));
        assert_eq!(v[0].context["ecs:ResourceTag/team"], json!("x"));
        assert_eq!(
            v[0].context["ecs:cluster"],
            json!("arn:aws:ecs:us-east-1:123456789012:cluster/prod")
        );
        assert_eq!(
            v[1].resource,
            "arn:aws:ecs:us-east-1:123456789012:service/prod/b"
        );
        assert!(!v[1].context.contains_key("aws:ResourceTag/team"));
        assert!(
            v[1].known_keys.iter().any(|k| k.contains("resourcetag")),
            "no tags is a known fact"
        );
        assert_eq!(
            lookups(
                "ecs",
                "DescribeServices",
                &json!({"cluster": "prod", "services": ["a", "b"]}),
                R
            ),
            vec![
                Lookup::EcsTags(v[0].resource.clone()),
                Lookup::EcsTags(v[1].resource.clone())
            ]
        );
    }

    #[test]
    fn ecs_tagging_carries_request_and_resource_tags() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:service/prod/a";
        let mut facts = Facts::default();
        facts
            .tags
            .insert(arn.into(), [("old".to_string(), "1".to_string())].into());
        let r = one(
            "ecs",
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"key": "ecs-tunnels:status", "value": "ok"}]}),
            &facts,
        );
        assert_eq!(r.action, "ecs:TagResource");
        assert_eq!(r.resource, arn);
        assert_eq!(r.context["aws:TagKeys"], json!(["ecs-tunnels:status"]));
        assert_eq!(r.context["aws:RequestTag/ecs-tunnels:status"], json!("ok"));
        assert_eq!(r.context["aws:ResourceTag/old"], json!("1"));
        let u = one(
            "ecs",
            "UntagResource",
            json!({"resourceArn": arn, "tagKeys": ["a", "b"]}),
            &facts,
        );
        assert_eq!(u.context["aws:TagKeys"], json!(["a", "b"]));
        let up = one(
            "ecs",
            "UpdateService",
            json!({"cluster": "prod", "service": "a", "forceNewDeployment": true}),
            &facts,
        );
        assert_eq!(
            (up.action.as_str(), up.resource.as_str()),
            ("ecs:UpdateService", arn)
        );
    }

    #[test]
    fn describe_clusters_is_judged_per_cluster() {
        let reqs = map_call(
            "ecs",
            "DescribeClusters",
            &json!({"clusters": ["prod", "arn:aws:ecs:us-east-1:123456789012:cluster/gone"]}),
            R,
            &Facts::default(),
        )
        .unwrap();
        let resources: Vec<&str> = reqs.iter().map(|r| r.resource.as_str()).collect();
        assert_eq!(
            resources,
            [
                "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                "arn:aws:ecs:us-east-1:123456789012:cluster/gone"
            ]
        );
    }

    #[test]
    fn wildcard_only_actions_use_star() {
        for (s, op, p) in [
            ("ecs", "ListClusters", json!({})),
            ("ecs", "ListServices", json!({"cluster": "prod"})),
            (
                "ecs",
                "DescribeTaskDefinition",
                json!({"taskDefinition": "web:3"}),
            ),
            ("ssm", "DescribeParameters", json!({"ParameterFilters": []})),
            (
                "tag",
                "GetResources",
                json!({"ResourceTypeFilters": ["ssm:parameter"]}),
            ),
            ("secretsmanager", "ListSecrets", json!({"MaxResults": 100})),
        ] {
            assert_eq!(one(s, op, p, &Facts::default()).resource, "*", "{s}:{op}");
        }
    }

    #[test]
    fn ssm_parameter_arns() {
        assert_eq!(
            ssm_parameter_arn(R, "/cloudflare/api-token"),
            "arn:aws:ssm:us-east-1:123456789012:parameter/cloudflare/api-token"
        );
        assert_eq!(
            ssm_parameter_arn(R, "api-token"),
            "arn:aws:ssm:us-east-1:123456789012:parameter/api-token"
        );
        assert_eq!(
            ssm_parameter_arn(R, "/a/b:3"),
            "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"
        );
        let r = one(
            "ssm",
            "GetParameter",
            json!({"Name": "/cloudflare/api-token", "WithDecryption": true}),
            &Facts::default(),
        );
        assert_eq!(
            r.resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/cloudflare/api-token"
        );
        let p = one(
            "ssm",
            "GetParametersByPath",
            json!({"Path": "/ecs-tunnels", "Recursive": true}),
            &Facts::default(),
        );
        assert_eq!(
            p.resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels"
        );
        assert_eq!(p.context["ssm:Recursive"], json!("true"));
        let t = one(
            "ssm",
            "AddTagsToResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/ecs-tunnels/c/s/token", "Tags": [{"Key": "k", "Value": "v"}]}),
            &Facts::default(),
        );
        assert_eq!(
            t.resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/c/s/token"
        );
        assert_eq!(t.context["aws:RequestTag/k"], json!("v"));
        assert!(map_call(
            "ssm",
            "AddTagsToResource",
            &json!({"ResourceType": "Document", "ResourceId": "d"}),
            R,
            &Facts::default()
        )
        .is_err());
    }

    #[test]
    fn put_parameter_with_tags_implies_add_tags_to_resource() {
        let v = map_call("ssm", "PutParameter", &json!({"Name": "/ecs-tunnels/c/s/token", "Overwrite": false, "Tags": [{"Key": "owner", "Value": "me"}]}), R, &Facts::default()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0].resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/c/s/token"
        );
        assert_eq!(v[0].context["ssm:Overwrite"], json!("false"));
        assert_eq!(v[1].action, "ssm:AddTagsToResource");
        assert_eq!(
            v[1].resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter//ecs-tunnels/c/s/token"
        );
        let no_tags = map_call(
            "ssm",
            "PutParameter",
            &json!({"Name": "/x", "Overwrite": true}),
            R,
            &Facts::default(),
        )
        .unwrap();
        assert_eq!(no_tags.len(), 1);
    }

    #[test]
    fn secrets_resolve_to_full_arns() {
        let arn =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/c/s/token-Xy12Ab";
        let mut facts = Facts::default();
        facts.secrets.insert(
            "ecs-tunnels/c/s/token".into(),
            SecretFacts {
                arn: arn.into(),
                tags: [("owner".to_string(), "me".to_string())].into(),
                rotation_lambda_arn: Some(
                    "arn:aws:lambda:us-east-1:123456789012:function:rot".into(),
                ),
            },
        );
        let r = one(
            "secretsmanager",
            "GetSecretValue",
            json!({"SecretId": "ecs-tunnels/c/s/token", "VersionStage": "AWSCURRENT"}),
            &facts,
        );
        assert_eq!(r.resource, arn);
        assert_eq!(
            r.context["secretsmanager:VersionStage"],
            json!("AWSCURRENT")
        );
        assert_eq!(r.context["aws:ResourceTag/owner"], json!("me"));
        assert!(
            !r.context.contains_key("secretsmanager:ResourceTag/owner"),
            "the simulator cannot type it"
        );
        let missing = one(
            "secretsmanager",
            "DescribeSecret",
            json!({"SecretId": "nope/x"}),
            &facts,
        );
        assert_eq!(
            missing.resource,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope/x"
        );
        assert!(missing.note.is_some());
        assert_eq!(
            lookups(
                "secretsmanager",
                "DescribeSecret",
                &json!({"SecretId": "nope/x"}),
                R
            ),
            vec![Lookup::Secret("nope/x".into())]
        );
    }

    #[test]
    fn create_secret_uses_the_arn_it_will_get_and_implies_tag_resource() {
        let v = map_call("secretsmanager", "CreateSecret", &json!({"Name": "ecs-tunnels/c/s/token", "SecretString": "x", "Tags": [{"Key": "owner", "Value": "me"}]}), R, &Facts::default()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0].resource,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/c/s/token-AbCdEf"
        );
        assert_eq!(
            v[0].context["secretsmanager:Name"],
            json!("ecs-tunnels/c/s/token")
        );
        assert_eq!(v[0].context["aws:RequestTag/owner"], json!("me"));
        assert_eq!(
            (v[1].action.as_str(), v[1].resource.as_str()),
            ("secretsmanager:TagResource", v[0].resource.as_str())
        );
    }

    #[test]
    fn rotate_secret_implies_invoke_on_the_rotation_function() {
        let arn =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/c/s/token-Xy12Ab";
        let rot = "arn:aws:lambda:us-east-1:123456789012:function:rot";
        let mut facts = Facts::default();
        facts.secrets.insert(
            "ecs-tunnels/c/s/token".into(),
            SecretFacts {
                arn: arn.into(),
                ..Default::default()
            },
        );
        let v = map_call("secretsmanager", "RotateSecret", &json!({"SecretId": "ecs-tunnels/c/s/token", "RotationLambdaARN": rot, "RotateImmediately": false}), R, &facts).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].context["secretsmanager:RotationLambdaARN"], json!(rot));
        assert_eq!(
            (v[1].action.as_str(), v[1].resource.as_str()),
            ("lambda:InvokeFunction", rot)
        );
        // Without the parameter: the function already configured on the secret.
        facts
            .secrets
            .get_mut("ecs-tunnels/c/s/token")
            .unwrap()
            .rotation_lambda_arn = Some(rot.into());
        let v = map_call(
            "secretsmanager",
            "RotateSecret",
            &json!({"SecretId": "ecs-tunnels/c/s/token"}),
            R,
            &facts,
        )
        .unwrap();
        assert_eq!(v[1].resource, rot);
        // No rotation function anywhere: no implied check.
        facts
            .secrets
            .get_mut("ecs-tunnels/c/s/token")
            .unwrap()
            .rotation_lambda_arn = None;
        assert_eq!(
            map_call(
                "secretsmanager",
                "RotateSecret",
                &json!({"SecretId": "ecs-tunnels/c/s/token"}),
                R,
                &facts
            )
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn iam_reads_are_judged_on_the_role_or_the_policy() {
        for op in [
            "GetRole",
            "ListRolePolicies",
            "GetRolePolicy",
            "ListAttachedRolePolicies",
        ] {
            let r = one(
                "iam",
                op,
                json!({"RoleName": "exec", "PolicyName": "p"}),
                &Facts::default(),
            );
            assert_eq!(r.action, format!("iam:{op}"));
            assert_eq!(r.resource, "arn:aws:iam::123456789012:role/exec");
        }
        for op in ["GetPolicy", "GetPolicyVersion"] {
            let arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
            let r = one(
                "iam",
                op,
                json!({"PolicyArn": arn, "VersionId": "v1"}),
                &Facts::default(),
            );
            assert_eq!(r.resource, arn);
        }
        assert!(map_call("iam", "GetRole", &json!({}), R, &Facts::default()).is_err());
    }

    #[test]
    fn assume_role_is_judged_on_the_role_with_its_trust_policy() {
        let arn = "arn:aws:iam::111111111111:role/ecs-tunnels-spoke";
        let params =
            json!({"RoleArn": arn, "RoleSessionName": "ecs-tunnels-hub", "ExternalId": "x-1"});
        assert_eq!(
            lookups("sts", "AssumeRole", &params, R),
            vec![Lookup::Role(arn.into())]
        );
        // The role does not exist: no trust policy, a note.
        let r = one("sts", "AssumeRole", params.clone(), &Facts::default());
        assert_eq!(
            (r.action.as_str(), r.resource.as_str()),
            ("sts:AssumeRole", arn)
        );
        assert_eq!(r.context["sts:ExternalId"], json!("x-1"));
        assert_eq!(r.context["sts:RoleSessionName"], json!("ecs-tunnels-hub"));
        assert_eq!(r.resource_policy, None);
        assert!(r.note.is_some());
        let trust = json!({"Version": "2012-10-17", "Statement": []});
        let mut facts = Facts::default();
        facts.role_trust.insert(arn.into(), trust.clone());
        let r = one("sts", "AssumeRole", params, &facts);
        assert_eq!(r.resource_policy, Some(trust));
        assert_eq!(r.note, None);
        // Without an ExternalId: known to be absent.
        let r = one(
            "sts",
            "AssumeRole",
            json!({"RoleArn": arn, "RoleSessionName": "s"}),
            &facts,
        );
        assert!(!r.context.contains_key("sts:ExternalId"));
        assert!(r.known_keys.iter().any(|k| k == "sts:ExternalId"));
        assert!(map_call(
            "sts",
            "AssumeRole",
            &json!({"RoleSessionName": "s"}),
            R,
            &facts
        )
        .is_err());
        assert_eq!(
            one("organizations", "ListAccounts", json!({}), &facts).resource,
            "*"
        );
    }

    #[test]
    fn unknown_operations_are_errors() {
        let e = map_call("ecs", "DeleteCluster", &json!({}), R, &Facts::default()).unwrap_err();
        assert!(e.contains("ecs:DeleteCluster"), "{e}");
    }
}
