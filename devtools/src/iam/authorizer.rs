//! [`IamAuthorizer`]: plugs the template's policies and the Node evaluator into the AWS
//! proxy (see the module docs of [`crate::iam`] for which calls are evaluated as whom).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::evaluator::{Decision, EvalItem, EvalResult, Evaluator};
use super::moto_iam::{iam_call, percent_decode, xml_members, xml_text};
use super::request::{self, Facts, IamRequest, Lookup, SecretFacts};
use super::template::{NamedPolicy, ResolvedTemplate, ACCOUNT_ID, REGION};
use super::triggers::TriggerMap;
use super::FUNCTION_ACCESS_KEY_ID;
use crate::aws_proxy::{Authorization, Authorizer, CallInfo};
use crate::runtime_api::{InvocationEvents, RuntimeApi};

/// One evaluated (function, request) pair.
#[derive(Debug, Clone)]
pub struct Check {
    /// The function (logical id) whose role was evaluated.
    pub function: String,
    /// The principal it was evaluated as.
    pub principal: String,
    /// The IAM request.
    pub request: IamRequest,
    /// The evaluator's answer.
    pub result: EvalResult,
}

/// One call the authorizer evaluated.
#[derive(Debug, Clone)]
pub struct EvaluatedCall {
    /// The call.
    pub call: CallInfo,
    /// The functions whose roles were evaluated.
    pub functions: Vec<String>,
    /// Why those functions (the trigger, or "cold start").
    pub routing: String,
    /// Every check made.
    pub checks: Vec<Check>,
    /// Set when the call could not be mapped or evaluated at all (then it was denied).
    pub error: Option<String>,
    /// Whether it was allowed.
    pub allowed: bool,
    /// The role ARN, when the call was made with credentials a function's AssumeRole
    /// returned (then `functions` holds that ARN, and it was judged against its policies).
    pub assumed_role: Option<String>,
}

/// Evaluates function-process calls against the template's policies (see [`crate::iam`]).
pub struct IamAuthorizer {
    template: Arc<ResolvedTemplate>,
    triggers: TriggerMap,
    evaluator: Evaluator,
    moto: MotoLookup,
    events: Mutex<Option<InvocationEvents>>,
    log: Mutex<Vec<EvaluatedCall>>,
    organization: Option<Organization>,
    /// Sessions opened by the functions' AssumeRole calls, by access key id.
    sessions: Mutex<BTreeMap<String, AssumedSession>>,
    /// Assumed roles whose policies the evaluator holds, by role ARN.
    assumed_roles: tokio::sync::Mutex<BTreeMap<String, Vec<NamedPolicy>>>,
}

/// A session a function opened with `sts:AssumeRole` (moto answered with credentials).
#[derive(Debug, Clone, PartialEq)]
pub struct AssumedSession {
    /// The access key id moto returned: calls signed with it are this session's.
    pub access_key_id: String,
    /// The role assumed.
    pub role_arn: String,
    /// The role's account (where the session's calls act).
    pub account: String,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<RoleSessionName>`.
    pub principal_arn: String,
}

/// An AWS Organization the accounts of a test belong to (see
/// [`IamAuthorizer::with_organization`]).
#[derive(Debug, Clone)]
struct Organization {
    id: String,
    accounts: Vec<String>,
}

impl IamAuthorizer {
    /// Loads every function's policies into a new evaluator; facts about existing resources
    /// (tags, secret ARNs) are read from the moto at `moto_endpoint` (directly, not through
    /// the proxy).
    pub async fn start(
        template: ResolvedTemplate,
        moto_endpoint: &str,
    ) -> Result<IamAuthorizer, String> {
        let roles: BTreeMap<_, _> = template
            .functions
            .iter()
            .map(|(id, f)| (id.clone(), f.policies.clone()))
            .collect();
        let evaluator = Evaluator::start(&roles).await?;
        Ok(IamAuthorizer {
            triggers: TriggerMap::from_template(&template),
            template: Arc::new(template),
            evaluator,
            moto: MotoLookup::new(moto_endpoint),
            events: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            organization: None,
            sessions: Mutex::new(BTreeMap::new()),
            assumed_roles: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Puts `accounts` (the template's account, [`super::template::ACCOUNT_ID`], among
    /// them if it belongs) in the AWS Organization `org_id` (`o-…`): requests then carry
    /// `aws:PrincipalOrgID` (when the caller's account is a member) and `aws:ResourceOrgID`
    /// (when the resource's account is). Without it no account belongs to an organization,
    /// so a condition on either key does not hold.
    pub fn with_organization(mut self, org_id: &str, accounts: &[&str]) -> IamAuthorizer {
        self.organization = Some(Organization {
            id: org_id.to_string(),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// Resolves `infra/template.yaml` with `parameters` and starts an authorizer for it.
    pub async fn for_template(
        parameters: &BTreeMap<String, String>,
        moto_endpoint: &str,
    ) -> Result<IamAuthorizer, String> {
        let t = ResolvedTemplate::resolve(&super::expanded_template()?, parameters)?;
        Self::start(t, moto_endpoint).await
    }

    /// Learns each invocation's event from `rt` (by trace id), to pick the function whose
    /// role applies. Without it, every call is evaluated against every function's role.
    pub fn with_runtime(self, rt: &RuntimeApi) -> IamAuthorizer {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt.invocation_events());
        self
    }

    /// The resolved template.
    pub fn template(&self) -> &ResolvedTemplate {
        &self.template
    }

    /// The trigger → function map in use.
    pub fn triggers(&self) -> &TriggerMap {
        &self.triggers
    }

    /// Every call evaluated so far.
    pub fn evaluated(&self) -> Vec<EvaluatedCall> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lines describing what the evaluator could not judge so far: conditions on keys we
    /// could not supply, supplied keys iam-data does not know for the action, requests
    /// built on an assumption (notes), calls that could not be mapped. Deduplicated.
    pub fn unjudged(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !out.contains(&s) {
                out.push(s);
            }
        };
        for e in self.log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(err) = &e.error {
                push(format!("{}: {err}", e.call.name()));
            }
            for c in &e.checks {
                for u in &c.result.unjudged {
                    push(format!(
                        "{} as {}: {} condition {} {} {:?} not judged (key not supplied)",
                        c.request.action, c.function, u.effect, u.op, u.key, u.values
                    ));
                }
                for k in &c.result.ignored_context_keys {
                    // One line per tag-key family, not per tag.
                    let k = match k.to_ascii_lowercase().find("tag/") {
                        Some(i) => format!("{}*", &k[..i + 4]),
                        None => k.clone(),
                    };
                    push(format!(
                        "{}: context key {k} dropped (iam-data does not know it for this action/resource)",
                        c.request.action
                    ));
                }
                if let Some(n) = &c.request.note {
                    push(format!(
                        "{} on {}: {n}",
                        c.request.action, c.request.resource
                    ));
                }
            }
        }
        out
    }

    /// Evaluates `call` as if made by `function` (logical id); nothing is recorded. For
    /// tests and one-off questions ("may SweepFunction GetParameter /x?").
    pub async fn check(&self, function: &str, call: &CallInfo) -> Result<Vec<Check>, String> {
        let requests = self.requests(call).await?;
        self.evaluate(&[function.to_string()], &requests).await
    }

    async fn requests(&self, call: &CallInfo) -> Result<Vec<IamRequest>, String> {
        let region = call.region.as_deref().unwrap_or(REGION);
        let needed = request::lookups(&call.service, &call.operation, &call.params, region);
        let facts = self.moto.facts(&needed, ACCOUNT_ID, region).await;
        request::map_call(&call.service, &call.operation, &call.params, region, &facts)
    }

    async fn evaluate(
        &self,
        functions: &[String],
        requests: &[IamRequest],
    ) -> Result<Vec<Check>, String> {
        let mut items = Vec::new();
        let mut owners = Vec::new();
        for id in functions {
            let f = self
                .template
                .functions
                .get(id)
                .ok_or_else(|| format!("no function {id} in the template"))?;
            let principal = f.principal_arn();
            for r in requests {
                let mut r = r.clone();
                add_principal_context(&mut r, f, ACCOUNT_ID, REGION);
                self.add_organization_context(&mut r, ACCOUNT_ID);
                items.push(EvalItem {
                    role: id.clone(),
                    principal: principal.clone(),
                    request: r,
                });
                owners.push(id.clone());
            }
        }
        // AssumeRole of a role that does not exist: STS denies without any policy to
        // evaluate (moto would hand out credentials).
        let (missing, judged): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| is_assume_role_of_missing_role(&items[i].request));
        let to_judge: Vec<EvalItem> = judged.iter().map(|&i| items[i].clone()).collect();
        let mut results: Vec<Option<EvalResult>> = vec![None; items.len()];
        for (i, r) in judged
            .into_iter()
            .zip(self.evaluator.evaluate(&to_judge).await?)
        {
            results[i] = Some(r);
        }
        for i in missing {
            results[i] = Some(missing_role_result());
        }
        Ok(items
            .into_iter()
            .zip(results)
            .zip(owners)
            .map(|((item, result), function)| Check {
                function,
                principal: item.principal,
                request: item.request,
                result: result.unwrap_or_else(missing_role_result),
            })
            .collect())
    }

    /// `aws:PrincipalOrgID` and `aws:ResourceOrgID` from [`Self::with_organization`];
    /// both keys are known either way (absent: not in an organization).
    fn add_organization_context(&self, r: &mut IamRequest, principal_account: &str) {
        if let Some(org) = &self.organization {
            let member = |a: &str| org.accounts.iter().any(|m| m == a);
            if member(principal_account) {
                r.context.insert("aws:PrincipalOrgID".into(), json!(org.id));
            }
            if r.resource.split(':').nth(4).is_some_and(member) {
                r.context.insert("aws:ResourceOrgID".into(), json!(org.id));
            }
        }
        r.known_keys.push("aws:PrincipalOrgID".into());
        r.known_keys.push("aws:ResourceOrgID".into());
    }

    fn route(&self, call: &CallInfo) -> (Vec<String>, String) {
        let all: Vec<String> = self.template.functions.keys().cloned().collect();
        let Some(trace) = &call.trace_id else {
            return (
                all,
                "no trace id (cold-start initialisation): every function runs it".into(),
            );
        };
        let events = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(event) = events.and_then(|ev| ev.get(trace)) else {
            return (
                all,
                format!("trace id {trace} unknown to the runtime emulator: every function"),
            );
        };
        match self.triggers.functions_for_event(&event) {
            Ok(fs) => {
                let why = format!("invocation {trace} receives this event: {}", fs.join(", "));
                (fs, why)
            }
            Err(e) => (all, format!("{e}: every function")),
        }
    }

    async fn decide(&self, call: &CallInfo) -> Authorization {
        let key = call.access_key_id.as_deref().unwrap_or_default();
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(s) = session {
            return self.decide_assumed(call, s).await;
        }
        if key != FUNCTION_ACCESS_KEY_ID {
            return Authorization::Unevaluated;
        }
        let (functions, routing) = self.route(call);
        let outcome = match self.requests(call).await {
            Err(e) => Err(e),
            Ok(reqs) => self.evaluate(&functions, &reqs).await,
        };
        let principal = functions
            .first()
            .and_then(|f| self.template.functions.get(f))
            .map(|f| f.principal_arn())
            .unwrap_or_default();
        let policy_names = |function: &str| -> Vec<String> {
            self.template.functions[function]
                .policies
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        let entry = EvaluatedCall {
            call: call.clone(),
            functions: functions.clone(),
            routing,
            checks: vec![],
            error: None,
            allowed: false,
            assumed_role: None,
        };
        self.record(entry, outcome, principal, policy_names)
    }

    /// A call made with the credentials a function's AssumeRole returned: judged against
    /// the assumed role's policies as moto holds them, in the role's account.
    async fn decide_assumed(&self, call: &CallInfo, s: AssumedSession) -> Authorization {
        let region = call.region.as_deref().unwrap_or(REGION).to_string();
        let outcome = async {
            let policies = self.assumed_role_policies(&s.role_arn).await?;
            let needed = request::lookups_in(
                &call.service,
                &call.operation,
                &call.params,
                &region,
                &s.account,
            );
            let facts = self.moto.facts(&needed, &s.account, &region).await;
            let requests = request::map_call_in(
                &call.service,
                &call.operation,
                &call.params,
                &region,
                &s.account,
                &facts,
            )?;
            let items: Vec<EvalItem> = requests
                .into_iter()
                .map(|mut r| {
                    add_session_context(&mut r, &s, &region);
                    self.add_organization_context(&mut r, &s.account);
                    EvalItem {
                        role: s.role_arn.clone(),
                        principal: s.principal_arn.clone(),
                        request: r,
                    }
                })
                .collect();
            let results = self.evaluator.evaluate(&items).await?;
            Ok::<_, String>((
                policies,
                items
                    .into_iter()
                    .zip(results)
                    .map(|(item, result)| Check {
                        function: s.role_arn.clone(),
                        principal: item.principal,
                        request: item.request,
                        result,
                    })
                    .collect::<Vec<_>>(),
            ))
        }
        .await;
        let names: Vec<String> = match &outcome {
            Ok((p, _)) => p.iter().map(|p| p.name.clone()).collect(),
            Err(_) => vec![],
        };
        let entry = EvaluatedCall {
            call: call.clone(),
            functions: vec![s.role_arn.clone()],
            routing: format!(
                "assumed-role session {} (access key {})",
                s.principal_arn, s.access_key_id
            ),
            checks: vec![],
            error: None,
            allowed: false,
            assumed_role: Some(s.role_arn.clone()),
        };
        self.record(
            entry,
            outcome.map(|(_, checks)| checks),
            s.principal_arn.clone(),
            |_| names.clone(),
        )
    }

    /// The assumed role's policies, read from moto and loaded into the evaluator (under
    /// the role's ARN) on first use.
    async fn assumed_role_policies(&self, role_arn: &str) -> Result<Vec<NamedPolicy>, String> {
        let mut loaded = self.assumed_roles.lock().await;
        if let Some(p) = loaded.get(role_arn) {
            return Ok(p.clone());
        }
        let (policies, managed) = self.moto.role_policies(role_arn).await?;
        if !managed.is_empty() {
            return Err(format!(
                "{role_arn} has attached managed policies {managed:?}: only inline policies are evaluated for assumed roles"
            ));
        }
        let mut roles = BTreeMap::new();
        roles.insert(role_arn.to_string(), policies.clone());
        self.evaluator.load(&roles).await?;
        loaded.insert(role_arn.to_string(), policies.clone());
        Ok(policies)
    }

    /// Records the evaluated call and turns its outcome into the proxy's answer.
    fn record(
        &self,
        mut entry: EvaluatedCall,
        outcome: Result<Vec<Check>, String>,
        principal: String,
        policy_names: impl Fn(&str) -> Vec<String>,
    ) -> Authorization {
        let call = entry.call.clone();
        let routing = entry.routing.clone();
        let verdict = match outcome {
            Err(e) => {
                entry.error = Some(e.clone());
                Authorization::Denied {
                    message: format!("User: {principal} is not authorized to perform: {} (devtools IAM check: {e})", call.name()),
                    principal,
                    action: call.name(),
                    resource: String::new(),
                    detail: format!("{routing}; {e}"),
                }
            }
            Ok(checks) => {
                entry.checks = checks.clone();
                match checks.iter().find(|c| c.result.result != Decision::Allowed) {
                    None => {
                        entry.allowed = true;
                        Authorization::Allowed
                    }
                    Some(c) => {
                        let a = &c.request.action;
                        let why = match c.result.result {
                            // STS names no policy type in its denials.
                            _ if a == "sts:AssumeRole" => String::new(),
                            Decision::ExplicitlyDenied => {
                                "with an explicit deny in an identity-based policy".to_string()
                            }
                            Decision::Error => format!(
                                "because the evaluator failed: {}",
                                c.result.errors.join("; ")
                            ),
                            _ => format!("because no identity-based policy allows the {a} action"),
                        };
                        let mut detail = format!(
                            "{routing}; {} evaluated with policies [{}]",
                            c.function,
                            policy_names(&c.function).join(", ")
                        );
                        if let Some(n) = &c.request.note {
                            detail.push_str(&format!("; {n}"));
                        }
                        if !c.result.unjudged.is_empty() {
                            detail.push_str(&format!("; not judged: {:?}", c.result.unjudged));
                        }
                        Authorization::Denied {
                            principal: c.principal.clone(),
                            action: a.clone(),
                            resource: c.request.resource.clone(),
                            message: format!(
                                "User: {} is not authorized to perform: {a} on resource: {}{}{why}",
                                c.principal,
                                c.request.resource,
                                if why.is_empty() { "" } else { " " }
                            ),
                            detail,
                        }
                    }
                }
            }
        };
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
        verdict
    }

    /// Learns the credentials of a function's successful `sts:AssumeRole` from moto's
    /// answer (`AccessKeyId`, `AssumedRoleUser/Arn`).
    fn learn_session(&self, call: &CallInfo, status: u16, body: &[u8]) {
        if call.service != "sts"
            || call.operation != "AssumeRole"
            || status != 200
            || call.access_key_id.as_deref() != Some(FUNCTION_ACCESS_KEY_ID)
        {
            return;
        }
        let text = String::from_utf8_lossy(body);
        let (Some(key), Some(role_arn)) = (
            xml_text(&text, "AccessKeyId"),
            call.params.get("RoleArn").and_then(Value::as_str),
        ) else {
            return;
        };
        let account = role_arn.split(':').nth(4).unwrap_or_default().to_string();
        let role_name = role_arn.rsplit('/').next().unwrap_or(role_arn);
        let session_name = call
            .params
            .get("RoleSessionName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let session = AssumedSession {
            access_key_id: key.clone(),
            role_arn: role_arn.to_string(),
            principal_arn: format!(
                "arn:{}:sts::{account}:assumed-role/{role_name}/{session_name}",
                super::template::PARTITION
            ),
            account,
        };
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, session);
    }

    /// The sessions the functions opened with `sts:AssumeRole` so far.
    pub fn assumed_sessions(&self) -> Vec<AssumedSession> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The calls made with those sessions' credentials so far (each judged against the
    /// assumed role's policies).
    pub fn assumed_role_calls(&self) -> Vec<EvaluatedCall> {
        self.evaluated()
            .into_iter()
            .filter(|e| e.assumed_role.is_some())
            .collect()
    }
}

impl Authorizer for IamAuthorizer {
    fn authorize<'a>(
        &'a self,
        call: &'a CallInfo,
    ) -> Pin<Box<dyn Future<Output = Authorization> + Send + 'a>> {
        Box::pin(self.decide(call))
    }

    fn observe(&self, call: &CallInfo, status: u16, body: &[u8]) {
        self.learn_session(call, status, body);
    }
}

/// Global keys every request of an assumed-role session carries (the spoke role's).
fn add_session_context(r: &mut IamRequest, s: &AssumedSession, region: &str) {
    let f = super::template::FunctionInfo {
        logical_id: String::new(),
        name: String::new(),
        arn: String::new(),
        role_logical_id: None,
        role_arn: s.role_arn.clone(),
        role_tags: BTreeMap::new(),
        policies: vec![],
        not_evaluated: vec![],
        environment: BTreeMap::new(),
    };
    add_principal_context(r, &f, &s.account, region);
}

fn is_assume_role_of_missing_role(r: &IamRequest) -> bool {
    r.action == "sts:AssumeRole" && r.resource_policy.is_none()
}

/// The verdict on an `sts:AssumeRole` of a role that does not exist.
fn missing_role_result() -> EvalResult {
    EvalResult {
        result: Decision::ImplicitlyDenied,
        discovery_result: Some(Decision::ImplicitlyDenied),
        ignored_context_keys: vec![],
        resource_type: Some("role".into()),
        wildcard_only: Some(false),
        unjudged: vec![],
        errors: vec![],
    }
}

/// Global keys every request of a Lambda role session carries.
fn add_principal_context(
    r: &mut IamRequest,
    f: &super::template::FunctionInfo,
    principal_account: &str,
    region: &str,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let account = r
        .resource
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .unwrap_or(principal_account)
        .to_string();
    let mut ctx = vec![
        ("aws:PrincipalArn", json!(f.role_arn)),
        ("aws:PrincipalAccount", json!(principal_account)),
        ("aws:PrincipalType", json!("AssumedRole")),
        ("aws:PrincipalIsAWSService", json!("false")),
        ("aws:ViaAWSService", json!("false")),
        ("aws:SecureTransport", json!("true")),
        ("aws:RequestedRegion", json!(region)),
        ("aws:EpochTime", json!(now.to_string())),
        ("aws:CurrentTime", json!(humantime_utc(now))),
    ];
    if r.resource != "*" {
        ctx.push(("aws:ResourceAccount", json!(account)));
    }
    for (k, v) in ctx {
        r.context.entry(k.to_string()).or_insert(v);
        r.known_keys.push(k.to_string());
    }
    for (k, v) in &f.role_tags {
        r.context.insert(format!("aws:PrincipalTag/{k}"), json!(v));
    }
    r.known_keys.push("/^aws:principaltag\\//".into());
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
fn humantime_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads facts about existing resources from moto with the harness's own (unevaluated)
/// credentials.
struct MotoLookup {
    endpoint: String,
    http: reqwest::Client,
}

impl MotoLookup {
    fn new(endpoint: &str) -> MotoLookup {
        MotoLookup {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(
        &self,
        account: &str,
        region: &str,
        scope: &str,
        target: &str,
        body: Value,
    ) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("x-moto-account-id", account)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/{region}/{scope}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .body(body.to_string())
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// The trust policy of the role `arn` in its account (moto's `x-moto-account-id`), if
    /// the role exists.
    async fn role_trust(&self, arn: &str) -> Option<Value> {
        let account = arn.split(':').nth(4).filter(|a| !a.is_empty())?;
        let name = arn.rsplit('/').next()?;
        let body = iam_call(
            &self.endpoint,
            account,
            &[("Action", "GetRole"), ("RoleName", name)],
        )
        .await
        .ok()?;
        // The role's ARN must be the one asked for (a path in between would differ).
        if xml_text(&body, "Arn").as_deref() != Some(arn) {
            return None;
        }
        policy_json(&xml_text(&body, "AssumeRolePolicyDocument")?)
    }

    /// The inline policies of the role `arn` (as moto holds them), and the ARNs of the
    /// managed policies attached to it (not evaluated).
    async fn role_policies(&self, arn: &str) -> Result<(Vec<NamedPolicy>, Vec<String>), String> {
        let account = arn
            .split(':')
            .nth(4)
            .filter(|a| !a.is_empty())
            .ok_or("no account")?;
        let role = arn.rsplit('/').next().unwrap_or(arn);
        let names = iam_call(
            &self.endpoint,
            account,
            &[("Action", "ListRolePolicies"), ("RoleName", role)],
        )
        .await?;
        let mut out = Vec::new();
        for name in xml_members(&names) {
            let body = iam_call(
                &self.endpoint,
                account,
                &[
                    ("Action", "GetRolePolicy"),
                    ("RoleName", role),
                    ("PolicyName", &name),
                ],
            )
            .await?;
            let doc = xml_text(&body, "PolicyDocument")
                .and_then(|d| policy_json(&d))
                .ok_or_else(|| format!("GetRolePolicy {name} of {arn}: no policy document"))?;
            out.push(NamedPolicy {
                name: format!("{role}/{name}"),
                document: doc,
            });
        }
        let attached = iam_call(
            &self.endpoint,
            account,
            &[("Action", "ListAttachedRolePolicies"), ("RoleName", role)],
        )
        .await?;
        let managed = attached
            .split("<PolicyArn>")
            .skip(1)
            .filter_map(|m| m.split("</PolicyArn>").next())
            .map(str::to_string)
            .collect();
        Ok((out, managed))
    }

    /// The facts about resources of `account` in `region`.
    async fn facts(&self, lookups: &[Lookup], account: &str, region: &str) -> Facts {
        let mut facts = Facts::default();
        for l in lookups {
            match l {
                Lookup::EcsTags(arn) => {
                    let v = self
                        .call(
                            account,
                            region,
                            "ecs",
                            "AmazonEC2ContainerServiceV20141113.ListTagsForResource",
                            json!({"resourceArn": arn}),
                        )
                        .await;
                    facts.tags.insert(
                        arn.clone(),
                        tag_map(v.as_ref().and_then(|v| v.get("tags")), "key", "value"),
                    );
                }
                Lookup::SsmTags(name) => {
                    let v = self
                        .call(
                            account,
                            region,
                            "ssm",
                            "AmazonSSM.ListTagsForResource",
                            json!({"ResourceType": "Parameter", "ResourceId": name}),
                        )
                        .await;
                    facts.tags.insert(
                        name.clone(),
                        tag_map(v.as_ref().and_then(|v| v.get("TagList")), "Key", "Value"),
                    );
                }
                Lookup::Role(arn) => {
                    if let Some(trust) = self.role_trust(arn).await {
                        facts.role_trust.insert(arn.clone(), trust);
                    }
                }
                Lookup::Secret(id) => {
                    if let Some(v) = self
                        .call(
                            account,
                            region,
                            "secretsmanager",
                            "secretsmanager.DescribeSecret",
                            json!({"SecretId": id}),
                        )
                        .await
                    {
                        if let Some(arn) = v.get("ARN").and_then(Value::as_str) {
                            facts.secrets.insert(
                                id.clone(),
                                SecretFacts {
                                    arn: arn.to_string(),
                                    tags: tag_map(v.get("Tags"), "Key", "Value"),
                                    rotation_lambda_arn: v
                                        .get("RotationLambdaARN")
                                        .and_then(Value::as_str)
                                        .filter(|s| !s.is_empty())
                                        .map(str::to_string),
                                },
                            );
                        }
                    }
                }
            }
        }
        facts
    }
}

/// A policy document as IAM answers it: JSON, URL-encoded or not.
fn policy_json(doc: &str) -> Option<Value> {
    serde_json::from_str(doc)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(doc)).ok())
}

fn tag_map(v: Option<&Value>, k: &str, val: &str) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get(k)?.as_str()?.to_string(),
                        t.get(val).and_then(Value::as_str).unwrap_or("").to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::humantime_utc;

    #[test]
    fn utc_timestamps() {
        assert_eq!(humantime_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(humantime_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
