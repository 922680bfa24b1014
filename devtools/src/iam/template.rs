//! The SAM template as CloudFormation would deploy it: expanded by aws-sam-translator
//! (`scripts/expand-template.py`), then every intrinsic resolved for one parameter set, so
//! each Lambda function's role and identity policies can be read off.
//!
//! Names are made deterministic where CloudFormation would invent them: a resource without
//! an explicit name is called `<stack>-<LogicalId>` (CloudFormation appends a random
//! suffix; no policy in this template depends on it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// The account every resolved ARN uses (moto's fixed account).
pub const ACCOUNT_ID: &str = "123456789012";
/// The region every resolved ARN uses.
pub const REGION: &str = "us-east-1";
/// The partition.
pub const PARTITION: &str = "aws";
/// The stack name (`AWS::StackName`).
pub const STACK_NAME: &str = "ecs-tunnels";

/// `infra/template.yaml` expanded by `scripts/expand-template.py`, produced once per test
/// process and cached (the Python start and the SAM transform take about a second).
///
/// Runs `$MOTO_PYTHON` or `.venv/bin/python` (see [`crate::moto::python`]); errors say to
/// run `scripts/setup-python.sh` when aws-sam-translator is missing.
pub fn expanded_template() -> Result<Value, String> {
    static CACHE: OnceLock<Result<Value, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| expand(&crate::moto::workspace_root().join("infra/template.yaml")))
        .clone()
}

/// Expands the SAM template at `path` (not cached).
pub fn expand(path: &std::path::Path) -> Result<Value, String> {
    let root = crate::moto::workspace_root();
    let script = root.join("scripts/expand-template.py");
    let python = crate::moto::python();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(path)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .map_err(|e| format!("running {} {}: {e}", python.display(), script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}); run scripts/setup-python.sh for aws-sam-translator:\n{}",
            python.display(),
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("expanded template is not JSON: {e}"))
}

/// One identity policy of a role.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPolicy {
    /// Where it comes from: `<ManagedPolicyLogicalId>` or `<RoleLogicalId>/<PolicyName>`.
    pub name: String,
    /// The policy document, every intrinsic resolved.
    pub document: Value,
}

/// A Lambda function of the template and what its role may do.
#[derive(Debug, Clone)]
pub struct FunctionInfo {
    /// The `AWS::Lambda::Function` logical id, e.g. `SweepFunction`.
    pub logical_id: String,
    /// Its function name (`FunctionName`, else `<stack>-<LogicalId>`).
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// The logical id of its `AWS::IAM::Role`, when the role is part of the template.
    pub role_logical_id: Option<String>,
    /// The role's ARN, as the function's `Role` property resolves.
    pub role_arn: String,
    /// The role's tags (`aws:PrincipalTag/*`).
    pub role_tags: BTreeMap<String, String>,
    /// The identity policies evaluated for this function: the role's inline policies, the
    /// template's own managed policies it lists, and `AWS::IAM::Policy` /
    /// `AWS::IAM::ManagedPolicy` resources that name the role.
    pub policies: Vec<NamedPolicy>,
    /// Managed policy ARNs that are not resources of this template (AWS-managed ones such
    /// as `AWSLambdaBasicExecutionRole`): not evaluated. The product never calls what they
    /// grant (CloudWatch Logs, SQS polling are done by Lambda itself).
    pub not_evaluated: Vec<String>,
    /// The function's environment variables as deployed.
    pub environment: BTreeMap<String, String>,
}

impl FunctionInfo {
    /// The role name (last part of the role ARN).
    pub fn role_name(&self) -> &str {
        self.role_arn.rsplit('/').next().unwrap_or(&self.role_arn)
    }

    /// The principal its calls are made as: the role session Lambda opens,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<function name>`.
    pub fn principal_arn(&self) -> String {
        format!(
            "arn:{PARTITION}:sts::{ACCOUNT_ID}:assumed-role/{}/{}",
            self.role_name(),
            self.name
        )
    }
}

/// A resource whose condition (if any) holds, its properties resolved.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `Type`, e.g. `AWS::IAM::ManagedPolicy`.
    pub kind: String,
    /// `Properties`, every intrinsic resolved (`AWS::NoValue` entries removed).
    pub properties: Value,
}

/// The template resolved for one parameter set.
#[derive(Debug, Clone)]
pub struct ResolvedTemplate {
    /// Every parameter's value (given, else its default).
    pub parameters: BTreeMap<String, String>,
    /// Every condition's value.
    pub conditions: BTreeMap<String, bool>,
    /// The resources whose condition holds, by logical id.
    pub resources: BTreeMap<String, Resource>,
    /// The outputs whose condition holds: their resolved `Value`.
    pub outputs: BTreeMap<String, Value>,
    /// The `AWS::Lambda::Function` resources, by logical id.
    pub functions: BTreeMap<String, FunctionInfo>,
}

impl ResolvedTemplate {
    /// Resolves the expanded `template` with `parameters` (missing ones take their
    /// `Default`; a parameter with neither is an error).
    pub fn resolve(
        template: &Value,
        parameters: &BTreeMap<String, String>,
    ) -> Result<ResolvedTemplate, String> {
        Self::resolve_in(template, parameters, ACCOUNT_ID, REGION)
    }

    /// [`Self::resolve`] for a stack in `account` and `region` (`AWS::AccountId`,
    /// `AWS::Region` and the ARNs the template makes), e.g. a spoke stack
    /// (`infra/spoke.yaml`) in another account. The functions' principals and
    /// [`Self::function_by_name_or_arn`] keep assuming [`ACCOUNT_ID`] and [`REGION`]: only
    /// the hub template has functions.
    pub fn resolve_in(
        template: &Value,
        parameters: &BTreeMap<String, String>,
        account: &str,
        region: &str,
    ) -> Result<ResolvedTemplate, String> {
        let mut r = Resolver::new(template, parameters)?;
        r.account = account.to_string();
        r.region = region.to_string();
        let mut resources = BTreeMap::new();
        for (id, res) in r.resources.iter() {
            if !r.resource_exists(id)? {
                continue;
            }
            let properties = match res.get("Properties") {
                Some(p) => r.resolve(p, 0)?.unwrap_or(Value::Null),
                None => Value::Null,
            };
            resources.insert(
                id.clone(),
                Resource {
                    kind: res["Type"].as_str().unwrap_or_default().to_string(),
                    properties,
                },
            );
        }
        let mut outputs = BTreeMap::new();
        if let Some(outs) = template.get("Outputs").and_then(Value::as_object) {
            for (name, out) in outs {
                if let Some(c) = out.get("Condition").and_then(Value::as_str) {
                    if !r.condition(c, 0)? {
                        continue;
                    }
                }
                if let Some(v) = out.get("Value") {
                    if let Some(v) = r.resolve(v, 0)? {
                        outputs.insert(name.clone(), v);
                    }
                }
            }
        }
        let mut resolved = ResolvedTemplate {
            parameters: r.params.clone(),
            conditions: r.all_conditions()?,
            resources,
            outputs,
            functions: BTreeMap::new(),
        };
        resolved.functions = functions(&resolved, &r)?;
        Ok(resolved)
    }

    /// The function whose name or ARN is `name_or_arn` (a `FunctionName` property or an
    /// event target), if it is one of the template's.
    pub fn function_by_name_or_arn(&self, name_or_arn: &str) -> Option<&FunctionInfo> {
        let name = name_or_arn
            .strip_prefix(&format!(
                "arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:"
            ))
            .unwrap_or(name_or_arn);
        // A qualified ARN (`:alias` or `:version`) names the same function.
        let name = name.split(':').next().unwrap_or(name);
        self.functions.values().find(|f| f.name == name)
    }

    /// Resources of one type, by logical id.
    pub fn resources_of<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Resource)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }
}

fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn functions(
    t: &ResolvedTemplate,
    r: &Resolver<'_>,
) -> Result<BTreeMap<String, FunctionInfo>, String> {
    // Role ARN → logical id; managed policy ARN → logical id.
    let mut roles = BTreeMap::new();
    for (id, _) in t.resources_of("AWS::IAM::Role") {
        roles.insert(
            r.get_att(id, "Arn")?
                .map(|v| as_string(&v))
                .unwrap_or_default(),
            id.clone(),
        );
    }
    let mut managed = BTreeMap::new();
    for (id, _) in t.resources_of("AWS::IAM::ManagedPolicy") {
        managed.insert(r.physical_ref(id)?, id.clone());
    }
    let mut out = BTreeMap::new();
    for (id, f) in t.resources_of("AWS::Lambda::Function") {
        let role_arn = f.properties.get("Role").map(as_string).unwrap_or_default();
        let role_logical_id = roles.get(&role_arn).cloned();
        let mut policies = Vec::new();
        let mut not_evaluated = Vec::new();
        let mut role_tags = BTreeMap::new();
        if let Some(role_id) = &role_logical_id {
            let role = &t.resources[role_id].properties;
            let role_name = r.physical_ref(role_id)?;
            for tag in role
                .get("Tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                role_tags.insert(as_string(&tag["Key"]), as_string(&tag["Value"]));
            }
            for p in role
                .get("Policies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                policies.push(NamedPolicy {
                    name: format!("{role_id}/{}", as_string(&p["PolicyName"])),
                    document: p["PolicyDocument"].clone(),
                });
            }
            let mut attached: BTreeSet<String> = BTreeSet::new();
            for arn in role
                .get("ManagedPolicyArns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let arn = as_string(arn);
                match managed.get(&arn) {
                    Some(mp) => {
                        if attached.insert(mp.clone()) {
                            policies.push(NamedPolicy {
                                name: mp.clone(),
                                document: t.resources[mp].properties["PolicyDocument"].clone(),
                            });
                        }
                    }
                    None => not_evaluated.push(arn),
                }
            }
            // Policies that attach themselves to the role by name.
            for kind in ["AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"] {
                for (pid, p) in t.resources_of(kind) {
                    let names_role = p
                        .properties
                        .get("Roles")
                        .and_then(Value::as_array)
                        .is_some_and(|rs| rs.iter().any(|x| as_string(x) == role_name));
                    if names_role && attached.insert(pid.clone()) {
                        policies.push(NamedPolicy {
                            name: pid.clone(),
                            document: p.properties["PolicyDocument"].clone(),
                        });
                    }
                }
            }
        }
        let environment = f
            .properties
            .pointer("/Environment/Variables")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), as_string(v))).collect())
            .unwrap_or_default();
        out.insert(
            id.clone(),
            FunctionInfo {
                logical_id: id.clone(),
                name: r.physical_ref(id)?,
                arn: r
                    .get_att(id, "Arn")?
                    .map(|v| as_string(&v))
                    .unwrap_or_default(),
                role_logical_id,
                role_arn,
                role_tags,
                policies,
                not_evaluated,
                environment,
            },
        );
    }
    Ok(out)
}

const MAX_DEPTH: usize = 64;

struct Resolver<'a> {
    params: BTreeMap<String, String>,
    param_types: BTreeMap<String, String>,
    condition_defs: &'a Map<String, Value>,
    resources: &'a Map<String, Value>,
    mappings: Option<&'a Map<String, Value>>,
    /// `AWS::AccountId` and the account of every ARN the template makes.
    account: String,
    /// `AWS::Region` and the region of every ARN the template makes.
    region: String,
}

static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();

impl<'a> Resolver<'a> {
    fn new(template: &'a Value, given: &BTreeMap<String, String>) -> Result<Resolver<'a>, String> {
        let empty = EMPTY.get_or_init(Map::new);
        let mut params = BTreeMap::new();
        let mut param_types = BTreeMap::new();
        if let Some(ps) = template.get("Parameters").and_then(Value::as_object) {
            for (name, p) in ps {
                let value = match given.get(name) {
                    Some(v) => v.clone(),
                    None => match p.get("Default") {
                        Some(d) => as_string(d),
                        None => {
                            return Err(format!("parameter {name} has no value and no default"))
                        }
                    },
                };
                params.insert(name.clone(), value);
                param_types.insert(
                    name.clone(),
                    p.get("Type").map(as_string).unwrap_or_default(),
                );
            }
        }
        for name in given.keys() {
            if !params.contains_key(name) {
                return Err(format!("parameter {name} is not declared by the template"));
            }
        }
        Ok(Resolver {
            params,
            param_types,
            condition_defs: template
                .get("Conditions")
                .and_then(Value::as_object)
                .unwrap_or(empty),
            resources: template
                .get("Resources")
                .and_then(Value::as_object)
                .unwrap_or(empty),
            mappings: template.get("Mappings").and_then(Value::as_object),
            account: ACCOUNT_ID.to_string(),
            region: REGION.to_string(),
        })
    }

    fn all_conditions(&self) -> Result<BTreeMap<String, bool>, String> {
        self.condition_defs
            .keys()
            .map(|k| Ok((k.clone(), self.condition(k, 0)?)))
            .collect()
    }

    fn condition(&self, name: &str, depth: usize) -> Result<bool, String> {
        let def = self
            .condition_defs
            .get(name)
            .ok_or_else(|| format!("unknown condition {name}"))?;
        self.truth(def, depth + 1)
    }

    fn truth(&self, v: &Value, depth: usize) -> Result<bool, String> {
        match self.resolve(v, depth)? {
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(format!(
                "condition expression {v} evaluated to {other:?}, not a boolean"
            )),
        }
    }

    fn resource_exists(&self, id: &str) -> Result<bool, String> {
        match self
            .resources
            .get(id)
            .and_then(|r| r.get("Condition"))
            .and_then(Value::as_str)
        {
            Some(c) => self.condition(c, 0),
            None => Ok(self.resources.contains_key(id)),
        }
    }

    fn resource_kind(&self, id: &str) -> Option<&str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    /// The resolved string value of one of a resource's properties, if set.
    fn prop(&self, id: &str, key: &str) -> Result<Option<String>, String> {
        match self
            .resources
            .get(id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get(key))
        {
            Some(v) => Ok(self.resolve(v, 1)?.map(|v| as_string(&v))),
            None => Ok(None),
        }
    }

    fn default_name(id: &str) -> String {
        format!("{STACK_NAME}-{id}")
    }

    fn name_from(&self, id: &str, key: &str) -> Result<String, String> {
        Ok(self
            .prop(id, key)?
            .unwrap_or_else(|| Self::default_name(id)))
    }

    /// What `Ref` to a resource returns.
    fn physical_ref(&self, id: &str) -> Result<String, String> {
        let kind = self
            .resource_kind(id)
            .ok_or_else(|| format!("Ref to unknown resource {id}"))?;
        Ok(match kind {
            "AWS::Lambda::Function" => self.name_from(id, "FunctionName")?,
            "AWS::IAM::Role" => self.name_from(id, "RoleName")?,
            "AWS::IAM::ManagedPolicy" => {
                let path = self.prop(id, "Path")?.unwrap_or_else(|| "/".into());
                let name = self.name_from(id, "ManagedPolicyName")?;
                format!("arn:{PARTITION}:iam::{}:policy{path}{name}", self.account)
            }
            "AWS::SQS::Queue" => format!(
                "https://sqs.{}.amazonaws.com/{}/{}",
                self.region,
                self.account,
                self.name_from(id, "QueueName")?
            ),
            "AWS::Events::Rule" => self.name_from(id, "Name")?,
            "AWS::Logs::LogGroup" => self.name_from(id, "LogGroupName")?,
            _ => Self::default_name(id),
        })
    }

    /// What `Fn::GetAtt [id, attr]` returns.
    fn get_att(&self, id: &str, attr: &str) -> Result<Option<Value>, String> {
        let kind = self
            .resource_kind(id)
            .ok_or_else(|| format!("GetAtt of unknown resource {id}"))?;
        let s = match (kind, attr) {
            ("AWS::Lambda::Function", "Arn") => format!(
                "arn:{PARTITION}:lambda:{}:{}:function:{}",
                self.region,
                self.account,
                self.physical_ref(id)?
            ),
            ("AWS::IAM::Role", "Arn") => {
                let path = self.prop(id, "Path")?.unwrap_or_else(|| "/".into());
                format!(
                    "arn:{PARTITION}:iam::{}:role{path}{}",
                    self.account,
                    self.physical_ref(id)?
                )
            }
            ("AWS::SQS::Queue", "Arn") => format!(
                "arn:{PARTITION}:sqs:{}:{}:{}",
                self.region,
                self.account,
                self.name_from(id, "QueueName")?
            ),
            ("AWS::SQS::Queue", "QueueName") => self.name_from(id, "QueueName")?,
            ("AWS::SQS::Queue", "QueueUrl") => self.physical_ref(id)?,
            ("AWS::Events::Rule", "Arn") => format!(
                "arn:{PARTITION}:events:{}:{}:rule/{}",
                self.region,
                self.account,
                self.physical_ref(id)?
            ),
            ("AWS::Logs::LogGroup", "Arn") => format!(
                "arn:{PARTITION}:logs:{}:{}:log-group:{}:*",
                self.region,
                self.account,
                self.physical_ref(id)?
            ),
            _ => format!("{}.{attr}", Self::default_name(id)),
        };
        Ok(Some(Value::String(s)))
    }

    fn reference(&self, name: &str) -> Result<Option<Value>, String> {
        let s = |v: &str| Ok(Some(Value::String(v.to_string())));
        match name {
            "AWS::AccountId" => s(&self.account),
            "AWS::Region" => s(&self.region),
            "AWS::Partition" => s(PARTITION),
            "AWS::StackName" => s(STACK_NAME),
            "AWS::StackId" => s(&format!(
                "arn:{PARTITION}:cloudformation:{}:{}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000",
                self.region, self.account
            )),
            "AWS::URLSuffix" => s("amazonaws.com"),
            "AWS::NotificationARNs" => Ok(Some(json!([]))),
            "AWS::NoValue" => Ok(None),
            _ => {
                if let Some(v) = self.params.get(name) {
                    let ty = self.param_types.get(name).map(String::as_str).unwrap_or("");
                    if ty == "CommaDelimitedList" || ty.starts_with("List<") {
                        let items: Vec<Value> = if v.is_empty() {
                            vec![]
                        } else {
                            v.split(',').map(|x| Value::String(x.trim().to_string())).collect()
                        };
                        return Ok(Some(Value::Array(items)));
                    }
                    return s(v);
                }
                if self.resources.contains_key(name) {
                    return s(&self.physical_ref(name)?);
                }
                Err(format!("Ref to unknown name {name}"))
            }
        }
    }

    fn sub(
        &self,
        template: &str,
        vars: &Map<String, Value>,
        depth: usize,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in Fn::Sub {template:?}"))?;
            let var = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = var.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let value = if let Some(v) = vars.get(var) {
                self.resolve(v, depth + 1)?
            } else if let Some((res, attr)) = var.split_once('.') {
                if self.params.contains_key(var) {
                    self.reference(var)?
                } else {
                    self.get_att(res, attr)?
                }
            } else {
                self.reference(var)?
            };
            match value {
                Some(v) => out.push_str(&as_string(&v)),
                None => return Err(format!("${{{var}}} in Fn::Sub resolved to AWS::NoValue")),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resolve(&self, v: &Value, depth: usize) -> Result<Option<Value>, String> {
        if depth > MAX_DEPTH {
            return Err("intrinsic functions nest too deep (a reference cycle?)".into());
        }
        let d = depth + 1;
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    if let Some(x) = self.resolve(i, d)? {
                        out.push(x);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                match k.as_str() {
                    "Ref" => self.reference(&as_string(arg)),
                    "Condition" if arg.is_string() => {
                        Ok(Some(Value::Bool(self.condition(&as_string(arg), d)?)))
                    }
                    "Fn::Sub" => {
                        let (tpl, vars) = match arg {
                            Value::String(s) => (s.clone(), Map::new()),
                            Value::Array(a) if a.len() == 2 => (
                                as_string(&a[0]),
                                a[1].as_object()
                                    .cloned()
                                    .ok_or("Fn::Sub variables must be a map")?,
                            ),
                            _ => return Err(format!("bad Fn::Sub {arg}")),
                        };
                        Ok(Some(Value::String(self.sub(&tpl, &vars, d)?)))
                    }
                    "Fn::GetAtt" => {
                        let (res, attr) = match arg {
                            Value::Array(a) if a.len() == 2 => (
                                as_string(&a[0]),
                                self.resolve(&a[1], d)?
                                    .map(|x| as_string(&x))
                                    .unwrap_or_default(),
                            ),
                            Value::String(s) => match s.split_once('.') {
                                Some((a, b)) => (a.to_string(), b.to_string()),
                                None => return Err(format!("bad Fn::GetAtt {s}")),
                            },
                            _ => return Err(format!("bad Fn::GetAtt {arg}")),
                        };
                        self.get_att(&res, &attr)
                    }
                    "Fn::If" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 3)
                            .ok_or_else(|| format!("bad Fn::If {arg}"))?;
                        let branch = if self.condition(&as_string(&a[0]), d)? {
                            &a[1]
                        } else {
                            &a[2]
                        };
                        self.resolve(branch, d)
                    }
                    "Fn::Equals" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 2)
                            .ok_or_else(|| format!("bad Fn::Equals {arg}"))?;
                        let x = self.resolve(&a[0], d)?.map(|v| as_string(&v));
                        let y = self.resolve(&a[1], d)?.map(|v| as_string(&v));
                        Ok(Some(Value::Bool(x == y)))
                    }
                    "Fn::Not" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 1)
                            .ok_or_else(|| format!("bad Fn::Not {arg}"))?;
                        Ok(Some(Value::Bool(!self.truth(&a[0], d)?)))
                    }
                    "Fn::And" | "Fn::Or" => {
                        let a = arg.as_array().ok_or_else(|| format!("bad {k} {arg}"))?;
                        let mut vals = Vec::new();
                        for x in a {
                            vals.push(self.truth(x, d)?);
                        }
                        let b = if k == "Fn::And" {
                            vals.iter().all(|b| *b)
                        } else {
                            vals.iter().any(|b| *b)
                        };
                        Ok(Some(Value::Bool(b)))
                    }
                    "Fn::Join" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 2)
                            .ok_or_else(|| format!("bad Fn::Join {arg}"))?;
                        let sep = as_string(&a[0]);
                        let list = self.resolve(&a[1], d)?.unwrap_or(json!([]));
                        let parts: Vec<String> = list
                            .as_array()
                            .ok_or_else(|| format!("Fn::Join of a non-list {list}"))?
                            .iter()
                            .map(as_string)
                            .collect();
                        Ok(Some(Value::String(parts.join(&sep))))
                    }
                    "Fn::Split" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 2)
                            .ok_or_else(|| format!("bad Fn::Split {arg}"))?;
                        let sep = as_string(&a[0]);
                        let s = self
                            .resolve(&a[1], d)?
                            .map(|v| as_string(&v))
                            .unwrap_or_default();
                        Ok(Some(Value::Array(
                            s.split(sep.as_str())
                                .map(|x| Value::String(x.to_string()))
                                .collect(),
                        )))
                    }
                    "Fn::Select" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 2)
                            .ok_or_else(|| format!("bad Fn::Select {arg}"))?;
                        let idx: usize = self
                            .resolve(&a[0], d)?
                            .map(|v| as_string(&v))
                            .unwrap_or_default()
                            .parse()
                            .map_err(|_| format!("bad Fn::Select index in {arg}"))?;
                        let list = self.resolve(&a[1], d)?.unwrap_or(json!([]));
                        list.as_array()
                            .and_then(|l| l.get(idx).cloned())
                            .map(Some)
                            .ok_or_else(|| format!("Fn::Select index {idx} out of range of {list}"))
                    }
                    "Fn::FindInMap" => {
                        let a = arg
                            .as_array()
                            .filter(|a| a.len() == 3)
                            .ok_or_else(|| format!("bad Fn::FindInMap {arg}"))?;
                        let keys: Vec<String> = a
                            .iter()
                            .map(|x| {
                                self.resolve(x, d)
                                    .map(|v| v.map(|v| as_string(&v)).unwrap_or_default())
                            })
                            .collect::<Result<_, _>>()?;
                        let v = self
                            .mappings
                            .and_then(|m| m.get(&keys[0]))
                            .and_then(|m| m.get(&keys[1]))
                            .and_then(|m| m.get(&keys[2]))
                            .ok_or_else(|| format!("Fn::FindInMap {keys:?}: no such entry"))?;
                        Ok(Some(v.clone()))
                    }
                    "Fn::Base64" => self.resolve(arg, d),
                    "Fn::GetAZs" => Ok(Some(json!([
                        format!("{}a", self.region),
                        format!("{}b", self.region),
                        format!("{}c", self.region)
                    ]))),
                    _ if k.starts_with("Fn::") => Err(format!("unsupported intrinsic {k}")),
                    _ => self.resolve_map(m, d),
                }
            }
            Value::Object(m) => self.resolve_map(m, d),
            other => Ok(Some(other.clone())),
        }
    }

    fn resolve_map(&self, m: &Map<String, Value>, depth: usize) -> Result<Option<Value>, String> {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(x) = self.resolve(v, depth)? {
                out.insert(k.clone(), x);
            }
        }
        Ok(Some(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tiny() -> Value {
        json!({
            "Parameters": {
                "Prefix": {"Type": "String", "Default": "/ecs-tunnels"},
                "Store": {"Type": "String", "Default": "ssm"},
                "Token": {"Type": "String", "Default": ""}
            },
            "Conditions": {
                "Sm": {"Fn::Equals": [{"Ref": "Store"}, "secretsmanager"]},
                "HasToken": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Token"}, ""]}]},
                "Both": {"Fn::And": [{"Condition": "Sm"}, {"Condition": "HasToken"}]},
                "Either": {"Fn::Or": [{"Condition": "Sm"}, {"Condition": "HasToken"}]}
            },
            "Resources": {
                "Pol": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Fn::If": ["HasToken", {"Effect": "Allow", "Action": "ssm:GetParameter",
                        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Token}"}}, {"Ref": "AWS::NoValue"}]},
                    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": {"Fn::Sub": [
                        "arn:aws:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Name}/*",
                        {"Name": {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "Prefix"}]}]}}]}},
                    {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": {"Fn::Join": ["", ["*"]]}}
                ]}}},
                "FnRole": {"Type": "AWS::IAM::Role", "Properties": {
                    "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole", {"Ref": "Pol"}],
                    "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": {"Fn::GetAtt": ["Other", "Arn"]}}]}}],
                    "Tags": [{"Key": "lambda:createdBy", "Value": "SAM"}]}},
                "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
                    "Environment": {"Variables": {"A": {"Fn::If": ["Sm", {"Fn::GetAtt": ["Other", "Arn"]}, {"Ref": "AWS::NoValue"}]}, "N": 5, "S": "${!literal}"}}}},
                "Other": {"Type": "AWS::Lambda::Function", "Condition": "Sm", "Properties": {"FunctionName": "other-fn", "Role": "arn:aws:iam::123456789012:role/external"}}
            },
            "Outputs": {"Token": {"Value": {"Fn::GetAtt": ["Fn", "Arn"]}}, "Gone": {"Condition": "Sm", "Value": "x"}}
        })
    }

    #[test]
    fn defaults_conditions_and_intrinsics() {
        let t = ResolvedTemplate::resolve(&tiny(), &params(&[])).unwrap();
        assert!(!t.conditions["Sm"]);
        assert!(!t.conditions["Either"]);
        assert!(
            !t.resources.contains_key("Other"),
            "conditional resource dropped"
        );
        assert!(!t.outputs.contains_key("Gone"));
        assert_eq!(
            t.outputs["Token"],
            json!("arn:aws:lambda:us-east-1:123456789012:function:ecs-tunnels-Fn")
        );
        let f = &t.functions["Fn"];
        assert_eq!(f.role_logical_id.as_deref(), Some("FnRole"));
        assert_eq!(
            f.role_arn,
            "arn:aws:iam::123456789012:role/ecs-tunnels-FnRole"
        );
        assert_eq!(
            f.principal_arn(),
            "arn:aws:sts::123456789012:assumed-role/ecs-tunnels-FnRole/ecs-tunnels-Fn"
        );
        assert_eq!(
            f.not_evaluated,
            vec!["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
        );
        assert_eq!(f.role_tags["lambda:createdBy"], "SAM");
        let names: Vec<&str> = f.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["FnRole/inline", "Pol"]);
        let pol = &f.policies[1].document["Statement"];
        assert_eq!(
            pol.as_array().unwrap().len(),
            2,
            "the Fn::If NoValue statement is gone"
        );
        assert_eq!(
            pol[0]["Resource"],
            json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/*")
        );
        assert_eq!(pol[1]["Resource"], json!("*"));
        assert_eq!(f.environment.get("A"), None);
        assert_eq!(f.environment["N"], "5");
        assert_eq!(
            f.environment["S"], "${!literal}",
            "no Fn::Sub here: left alone"
        );
    }

    #[test]
    fn given_parameters_switch_conditions() {
        let t = ResolvedTemplate::resolve(
            &tiny(),
            &params(&[
                ("Store", "secretsmanager"),
                ("Token", "/cloudflare/api-token"),
            ]),
        )
        .unwrap();
        assert!(t.conditions["Both"]);
        let f = &t.functions["Fn"];
        assert_eq!(
            f.environment["A"],
            "arn:aws:lambda:us-east-1:123456789012:function:other-fn"
        );
        let stmts = f.policies[1].document["Statement"].as_array().unwrap();
        assert_eq!(
            stmts[0]["Resource"],
            json!("arn:aws:ssm:us-east-1:123456789012:parameter//cloudflare/api-token")
        );
        let other = &t.functions["Other"];
        assert_eq!(
            other.role_logical_id, None,
            "external role: no policies known"
        );
        assert!(other.policies.is_empty());
        assert_eq!(
            t.function_by_name_or_arn(
                "arn:aws:lambda:us-east-1:123456789012:function:other-fn:live"
            )
            .unwrap()
            .logical_id,
            "Other"
        );
    }

    #[test]
    fn unknown_parameter_is_an_error() {
        let e = ResolvedTemplate::resolve(&tiny(), &params(&[("Nope", "x")])).unwrap_err();
        assert!(e.contains("Nope"), "{e}");
    }
}
