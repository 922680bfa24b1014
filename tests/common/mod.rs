//! Shared test world: moto server (AWS), the project's Cloudflare simulator and a Lambda
//! Runtime API emulator, all on 127.0.0.1, plus the built `ecs-tunnels` binary serving
//! invocations through the Runtime API.
#![allow(dead_code)]

use devtools::aws_proxy::AwsProxy;
use devtools::cloudflare_sim::{self, RunningSim, SimOptions};
use devtools::function::FunctionProcess;
use devtools::iam::IamAuthorizer;
use devtools::moto::Moto;
use devtools::runtime_api::{Invocation, RuntimeApi};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The Cloudflare API token the tests use: distinctive, so a leak is easy to find.
pub const API_TOKEN: &str = "cfat-test-token-must-never-be-printed-7f3a";
/// Where the README's deployment keeps the API token (CloudflareApiTokenParameter).
pub const API_TOKEN_PARAMETER: &str = "/cloudflare/api-token";
/// moto's fixed account.
pub const ACCOUNT: &str = "123456789012";
/// The owner id ecs-tunnels derives for moto's account and region.
pub const OWNER: &str = "123456789012-us-east-1";

/// Everything a test talks to.
pub struct World {
    pub moto: Moto,
    /// Between the function processes and moto: records every call, injects faults, and
    /// has each call of a function judged against its role's policies in the
    /// SAM-expanded template (README parameters) by a real IAM policy simulator. A call
    /// the template does not allow is denied as AWS denies it, and fails the test.
    pub aws: AwsProxy,
    pub iam: Arc<IamAuthorizer>,
    pub sim: RunningSim,
    pub rt: RuntimeApi,
    pub sdk: aws_config::SdkConfig,
    pub http: reqwest::Client,
    pub functions: Vec<FunctionProcess>,
    pub extra_env: Vec<(String, String)>,
    /// Custom resources CloudFormation holds (created and not yet deleted), by their
    /// objects' key `cfn.<stack>/<logical id>`; see [`World::custom_resource_answered`].
    pub live_custom_resources: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Two independent judges watch every end-to-end test: a test whose functions made an
/// AWS call the template's IAM policies deny, or sent a request Cloudflare's OpenAPI
/// document rejects, fails here, even when the function tolerated the refusal.
impl Drop for World {
    fn drop(&mut self) {
        // What the IAM evaluator could not judge, for scripts/test.sh's summary.
        let unjudged = self.iam.unjudged();
        if !unjudged.is_empty() {
            use std::io::Write;
            let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("iam-unjudged.log");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{}", unjudged.join("\n"));
            }
        }
        if std::thread::panicking() {
            return;
        }
        let denials = self.aws.take_denials();
        assert!(
            denials.is_empty(),
            "the template's IAM policies deny calls the functions made:\n{denials:#?}"
        );
        let violations = self.sim.violations();
        assert!(
            violations.is_empty(),
            "requests Cloudflare's OpenAPI document rejects: {violations:#?}"
        );
        // No orphan, ever: whatever a test did, it ends with no object of ours that lacks
        // a live, tagged service or a live custom resource, and with no object of another
        // owner changed by the functions.
        let problems = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(self.ownership_problems()))
            }
            _ => vec![],
        };
        assert!(
            problems.is_empty(),
            "the test ended with objects of ours and no owner, or another owner's objects changed:\n{}",
            problems.join("\n")
        );
    }
}

/// The service of a token's name `…/<cluster>/<service>/token` (parameter or secret).
fn token_key_of(name: &str) -> Option<ecs_tunnels::ownership::ServiceId> {
    let parts: Vec<&str> = name.trim_matches('/').rsplitn(4, '/').collect();
    match parts.as_slice() {
        ["token", service, cluster, ..] => {
            Some(ecs_tunnels::ownership::ServiceId::new(*cluster, *service))
        }
        _ => None,
    }
}

/// Loads a sample event from `events/`.
pub fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

pub fn service_arn(cluster: &str, service: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{ACCOUNT}:service/{cluster}/{service}")
}

/// An "ECS Task State Change" for a task of `cluster/service` (RUNNING unless `stopped`).
pub fn task_event(cluster: &str, service: &str, stopped: bool) -> Value {
    let mut e = sample(if stopped {
        "ecs-task-stopped.json"
    } else {
        "ecs-task-running.json"
    });
    e["detail"]["group"] = json!(format!("service:{service}"));
    e["detail"]["clusterArn"] = json!(format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{cluster}"));
    e
}

/// A CloudTrail UntagResource event.
pub fn untag_event(cluster: &str, service: &str, keys: &[&str]) -> Value {
    let mut e = sample("cloudtrail-untag-resource.json");
    e["detail"]["requestParameters"] =
        json!({"resourceArn": service_arn(cluster, service), "tagKeys": keys});
    e
}

/// A CloudTrail TagResource event.
pub fn tag_event(cluster: &str, service: &str, tags: &[(&str, &str)]) -> Value {
    devtools::storm::tag_event(cluster, service, tags)
}

/// A CloudTrail DeleteService event.
pub fn delete_event(cluster: &str, service: &str) -> Value {
    let mut e = sample("cloudtrail-delete-service.json");
    e["detail"]["requestParameters"] =
        json!({"cluster": cluster, "service": service, "force": true});
    e
}

impl World {
    /// Starts moto, the simulator and the Runtime API emulator. The simulator answers
    /// the way Cloudflare's API does (server shapes: zero values spelled out, server-only
    /// fields, canonical hostnames, emails and durations), not by echoing requests.
    pub async fn start() -> World {
        Self::start_with(SimOptions {
            server_shapes: true,
            ..SimOptions::default()
        })
        .await
    }

    /// Same, with simulator options.
    pub async fn start_with(opts: SimOptions) -> World {
        Self::start_with_template(opts, &devtools::iam::readme_parameters()).await
    }

    /// Same, with the functions' calls judged against the template resolved with
    /// `parameters` (e.g. [`devtools::iam::org_parameters`] for an organization hub).
    pub async fn start_with_template(
        mut opts: SimOptions,
        parameters: &BTreeMap<String, String>,
    ) -> World {
        opts.api_token = API_TOKEN.into();
        let moto = Moto::start()
            .await
            .expect("moto server (pip install 'moto[server]')");
        let sim = cloudflare_sim::start(opts).await.expect("simulator");
        let rt = RuntimeApi::start().await.expect("runtime api");
        let sdk = moto.sdk_config().await;
        let aws = AwsProxy::start(&moto.endpoint()).await.expect("AWS proxy");
        let iam = Arc::new(
            IamAuthorizer::for_template(parameters, &moto.endpoint())
                .await
                .unwrap_or_else(|e| {
                    panic!("IAM checks (scripts/setup-python.sh installs them): {e}")
                })
                .with_runtime(&rt),
        );
        aws.set_authorizer(iam.clone());
        World {
            moto,
            aws,
            iam,
            sim,
            rt,
            sdk,
            http: reqwest::Client::new(),
            functions: vec![],
            extra_env: vec![],
            live_custom_resources: Default::default(),
        }
    }

    /// The owner id the functions run as (`ECS_TUNNELS_OWNER`, or moto's account-region).
    pub fn owner(&self) -> ecs_tunnels::ownership::Owner {
        let id = self
            .extra_env
            .iter()
            .rev()
            .find(|(k, _)| k == "ECS_TUNNELS_OWNER")
            .map_or(OWNER, |(_, v)| v.as_str());
        ecs_tunnels::ownership::Owner::parse(id).expect("owner id")
    }

    fn extra(&self, key: &str) -> Option<&str> {
        self.extra_env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Tracks what CloudFormation holds from a custom-resource request and its answer: a
    /// Create or Update answered SUCCESS holds the resource; a Delete answered SUCCESS
    /// releases it.
    pub fn custom_resource_answered(&self, request: &Value, answer: &Value) {
        if answer["Status"] != "SUCCESS" {
            return;
        }
        let stack = request["StackId"]
            .as_str()
            .and_then(|s| s.split(':').nth(5))
            .and_then(|r| r.split('/').nth(1))
            .unwrap_or_default();
        let key = format!(
            "cfn.{stack}/{}",
            request["LogicalResourceId"].as_str().unwrap_or("")
        );
        let mut live = self.live_custom_resources.lock().unwrap();
        if request["RequestType"] == "Delete" {
            live.remove(&key);
        } else {
            live.insert(key);
        }
    }

    /// Whether `svc` still wants its objects: an ACTIVE ECS service carrying the hostname
    /// tag, or a custom resource CloudFormation holds.
    async fn wants_objects(&self, svc: &ecs_tunnels::ownership::ServiceId) -> bool {
        if svc.cluster.starts_with("cfn.") {
            return self
                .live_custom_resources
                .lock()
                .unwrap()
                .contains(&svc.key());
        }
        let sdk = match &svc.scope {
            Some(scope) => {
                devtools::seed::sdk_in_account(&self.sdk, &scope.account, &scope.region).await
            }
            None => self.sdk.clone(),
        };
        let out = aws_sdk_ecs::Client::new(&sdk)
            .describe_services()
            .cluster(&svc.cluster)
            .services(&svc.service)
            .include(aws_sdk_ecs::types::ServiceField::Tags)
            .send()
            .await;
        out.ok()
            .and_then(|o| o.services().first().cloned())
            .is_some_and(|s| {
                s.status() == Some("ACTIVE")
                    && s.tags()
                        .iter()
                        .any(|t| t.key() == Some("ecs-tunnels:hostname"))
            })
    }

    /// Objects of ours whose service or custom resource no longer wants them, and writes
    /// the functions made to objects that were not theirs. Empty when all is well.
    pub async fn ownership_problems(&self) -> Vec<String> {
        use ecs_tunnels::ownership::ServiceId;
        let owner = self.owner();
        let st = self.state().await;
        let list = |k: &str| st[k].as_array().cloned().unwrap_or_default();
        let mut ours: Vec<(ServiceId, String)> = Vec::new();
        for t in list("tunnels").iter().filter(|t| t["deleted_at"].is_null()) {
            let name = t["name"].as_str().unwrap_or_default();
            if let Some(s) = tunnel_key(&owner, name) {
                ours.push((s, format!("tunnel {name}")));
            }
        }
        for r in list("dns_records") {
            if let Some(s) = r["comment"]
                .as_str()
                .and_then(|c| owner.service_of_dns_comment(c))
            {
                ours.push((s, format!("DNS record {}", r["name"])));
            }
        }
        for a in list("access_apps") {
            let name = a["name"].as_str().unwrap_or_default();
            let tags: Vec<String> = a["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            if owner.owns_access_app(name, &tags) {
                if let Some(s) = owner.service_of_access_app(name) {
                    ours.push((s, format!("Access application {name}")));
                }
            }
        }
        for p in list("access_policies") {
            let name = p["name"].as_str().unwrap_or_default();
            // A policy another owner's app still uses is kept on purpose (and reported).
            let in_use = p["app_count"].as_u64().unwrap_or(0) > 0;
            if let Some(s) = owner.service_of_policy(name).filter(|_| !in_use) {
                ours.push((s, format!("Access policy {name}")));
            }
        }
        for (name, s) in self.owned_tokens(&owner).await {
            ours.push((s, format!("token {name}")));
        }
        let mut problems = Vec::new();
        let mut wanted: BTreeMap<String, bool> = BTreeMap::new();
        for (svc, what) in ours {
            let wants = match wanted.get(&svc.key()) {
                Some(w) => *w,
                None => {
                    let w = self.wants_objects(&svc).await;
                    wanted.insert(svc.key(), w);
                    w
                }
            };
            if !wants {
                problems.push(format!(
                    "orphan: {what} of {svc}, which is gone, untagged or deleted"
                ));
            }
        }
        let audit = self.hook(reqwest::Method::GET, "/audit", None).await;
        for w in audit["writes"].as_array().cloned().unwrap_or_default() {
            let before = &w["before"];
            if before.is_null() || before["missing"] == true {
                continue;
            }
            let name = before["name"].as_str().unwrap_or_default();
            let mine = match before["kind"].as_str().unwrap_or_default() {
                "tunnel" => tunnel_key(&owner, name).is_some(),
                "dns_record" => owner.owns_dns_comment(before["comment"].as_str()),
                "access_app" => {
                    let tags: Vec<String> = before["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect();
                    owner.owns_access_app(name, &tags)
                }
                "access_policy" => owner.owns_policy(name),
                _ => true,
            };
            if !mine {
                problems.push(format!(
                    "changed another owner's object: {} {} (was {before})",
                    w["method"], w["path"]
                ));
            }
        }
        problems
    }

    /// Token parameters (or secrets) carrying our owner tag, with the key they belong to.
    async fn owned_tokens(
        &self,
        owner: &ecs_tunnels::ownership::Owner,
    ) -> Vec<(String, ecs_tunnels::ownership::ServiceId)> {
        let mut out = Vec::new();
        if self.extra("ECS_TUNNELS_TOKEN_STORE") == Some("secretsmanager") {
            let sm = aws_sdk_secretsmanager::Client::new(&self.sdk);
            let mut next = None;
            loop {
                let Ok(page) = sm.list_secrets().set_next_token(next).send().await else {
                    break;
                };
                for s in page.secret_list() {
                    let tags: BTreeMap<String, String> = s
                        .tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or_default().to_string(),
                                t.value().unwrap_or_default().to_string(),
                            )
                        })
                        .collect();
                    let name = s.name().unwrap_or_default();
                    if owner.owns_ssm(&tags) && s.deleted_date().is_none() {
                        if let Some(k) = token_key_of(name) {
                            out.push((name.to_string(), k));
                        }
                    }
                }
                next = page.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
            return out;
        }
        let prefix = self
            .extra("ECS_TUNNELS_PARAMETER_PREFIX")
            .unwrap_or("/ecs-tunnels")
            .to_string();
        for (sdk, scope) in self.token_accounts().await {
            for (name, key) in self.owned_parameters(&sdk, &prefix, owner).await {
                out.push((name, key.in_scope(scope.clone())));
            }
        }
        out
    }

    /// The SDK configurations of every account and region whose SSM may hold tokens: the
    /// test's own, and in an organization install each covered spoke's.
    async fn token_accounts(
        &self,
    ) -> Vec<(aws_config::SdkConfig, Option<ecs_tunnels::ownership::Scope>)> {
        let mut out = vec![(self.sdk.clone(), None)];
        if let (Some(accounts), Some(regions)) = (
            self.extra("ECS_TUNNELS_ACCOUNTS"),
            self.extra("ECS_TUNNELS_REGIONS"),
        ) {
            for a in accounts.split_whitespace() {
                for r in regions.split_whitespace() {
                    out.push((
                        devtools::seed::sdk_in_account(&self.sdk, a, r).await,
                        Some(ecs_tunnels::ownership::Scope::new(a, r)),
                    ));
                }
            }
        }
        out
    }

    /// Token parameters under `prefix` in `sdk`'s account and region with our owner tag.
    async fn owned_parameters(
        &self,
        sdk: &aws_config::SdkConfig,
        prefix: &str,
        owner: &ecs_tunnels::ownership::Owner,
    ) -> Vec<(String, ecs_tunnels::ownership::ServiceId)> {
        let mut out = Vec::new();
        let ssm = aws_sdk_ssm::Client::new(sdk);
        let mut names = Vec::new();
        let mut next = None;
        loop {
            let Ok(page) = ssm
                .get_parameters_by_path()
                .path(prefix)
                .recursive(true)
                .set_next_token(next)
                .send()
                .await
            else {
                break;
            };
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        for name in names {
            let Some(key) = token_key_of(&name) else {
                continue;
            };
            let Ok(listed) = ssm
                .list_tags_for_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .send()
                .await
            else {
                continue;
            };
            let tags: BTreeMap<String, String> = listed
                .tag_list()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            if owner.owns_ssm(&tags) {
                out.push((name, key));
            }
        }
        out
    }

    /// The environment a function process runs with: [`World::env`], AWS through the
    /// proxy, and the credentials that mark its calls as a function's (judged against
    /// the template's policies).
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("AWS_ENDPOINT_URL".into(), self.aws.endpoint()));
        env.extend(devtools::iam::function_credentials_env());
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// The function ARN the template deploys for `logical_id` (e.g. the Secrets Manager
    /// rotation function), for variables a test sets like the template does.
    pub fn template_function_arn(&self, logical_id: &str) -> String {
        self.iam.template().functions[logical_id].arn.clone()
    }

    /// The environment the CLI (a person, not a function) runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.aws_env();
        env.extend([
            (
                "CLOUDFLARE_ACCOUNT_ID".to_string(),
                "0123456789abcdef0123456789abcdef".to_string(),
            ),
            ("CLOUDFLARE_API_TOKEN".to_string(), API_TOKEN.to_string()),
            ("CLOUDFLARE_API_URL".to_string(), self.sim.base_url.clone()),
            ("ECS_TUNNELS_RETRY_BASE_MS".to_string(), "20".to_string()),
            // A budget no ordinary test reaches (the limiter still runs on every call);
            // tests/storm.rs sets the template's.
            ("ECS_TUNNELS_API_BUDGET".to_string(), "1000000".to_string()),
            // Tests of other capabilities publish hostnames at once, as before connector-
            // aware publishing; tests/publish.rs runs the default (`connected`) with
            // simulated sidecars.
            ("ECS_TUNNELS_PUBLISH".to_string(), "immediately".to_string()),
            ("RUST_LOG".to_string(), "info".to_string()),
        ]);
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts one more function process polling the Runtime API.
    pub async fn spawn_function(&mut self) {
        let bin = Path::new(env!("CARGO_BIN_EXE_ecs-tunnels"));
        let f = FunctionProcess::spawn(bin, &self.rt.endpoint(), &self.function_env())
            .expect("spawn ecs-tunnels");
        self.functions.push(f);
        assert!(
            self.rt
                .wait_for_pollers(self.functions.len(), Duration::from_secs(20))
                .await,
            "function did not start polling: {}",
            self.output()
        );
    }

    /// Stops every function process and starts one new one: a cold start, with no
    /// credentials or caches kept from before.
    pub async fn restart_functions(&mut self) {
        for f in std::mem::take(&mut self.functions) {
            f.stop().await;
        }
        self.spawn_function().await;
    }

    /// Starts a function process that reads the API token from the SSM parameter
    /// `/cloudflare/api-token` (the README's deployment) instead of its environment.
    /// Unlike [`World::spawn_function`] it does not wait for the process to poll: its
    /// cold start may be meant to fail.
    pub fn spawn_function_reading_the_api_token_from_ssm(&mut self) {
        let mut env: Vec<(String, String)> = self
            .function_env()
            .into_iter()
            .filter(|(k, _)| k != "CLOUDFLARE_API_TOKEN")
            .collect();
        env.push((
            "CLOUDFLARE_API_TOKEN_PARAMETER".into(),
            API_TOKEN_PARAMETER.into(),
        ));
        let bin = Path::new(env!("CARGO_BIN_EXE_ecs-tunnels"));
        self.functions.push(
            FunctionProcess::spawn(bin, &self.rt.endpoint(), &env).expect("spawn ecs-tunnels"),
        );
    }

    /// Overwrites the SSM token parameter `name` with a token for `tunnel_id` that
    /// Cloudflare refuses and that any run can tell is wrong without asking Cloudflare:
    /// it names another account (a copy from another install). A token whose secret
    /// alone is stale, with no rotation mark, is the sweep's to find (see
    /// tests/sweep.rs).
    pub async fn make_token_stale(&self, name: &str, tunnel_id: &str) {
        let stale = ecs_tunnels::token::encode_token(
            "fedcba9876543210fedcba9876543210",
            tunnel_id,
            &ecs_tunnels::token::new_tunnel_secret(),
        );
        self.overwrite_token(name, &stale).await;
    }

    /// Overwrites the SSM token parameter `name` with `token`, behind ecs-tunnels' back.
    pub async fn overwrite_token(&self, name: &str, token: &ecs_tunnels::secret::Secret) {
        aws_sdk_ssm::Client::new(&self.sdk)
            .put_parameter()
            .name(name)
            .value(token.expose())
            .overwrite(true)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("overwrite the token parameter");
    }

    /// Writes `value` as the API token parameter `/cloudflare/api-token`.
    pub async fn put_api_token_parameter(&self, value: &str) {
        aws_sdk_ssm::Client::new(&self.sdk)
            .put_parameter()
            .name(API_TOKEN_PARAMETER)
            .value(value)
            .overwrite(true)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("put the API token parameter");
    }

    /// Invokes the function with an event and waits for the answer.
    pub async fn invoke(&self, event: Value) -> Invocation {
        self.rt
            .invoke(event, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}\n{}", self.output()))
    }

    /// Invokes and expects a successful response.
    pub async fn invoke_ok(&self, event: Value) -> Value {
        let inv = self.invoke(event).await;
        inv.outcome
            .response()
            .cloned()
            .unwrap_or_else(|| panic!("invocation failed: {:?}\n{}", inv.outcome, self.output()))
    }

    /// Everything every function process printed.
    pub fn output(&self) -> String {
        self.functions
            .iter()
            .map(|f| f.output())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Seeds a Fargate service with the cloudflared sidecar and tags.
    pub async fn seed(&self, cluster: &str, service: &str, tags: &[(&str, &str)]) -> String {
        devtools::seed::seed_service(&self.sdk, cluster, service, tags).await
    }

    pub async fn hook(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.hooks_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("hook");
        resp.json().await.unwrap_or(Value::Null)
    }

    /// The simulator's whole state.
    pub async fn state(&self) -> Value {
        self.hook(reqwest::Method::GET, "/state", None).await
    }

    /// Request counters since the last reset.
    pub async fn requests(&self) -> Value {
        self.hook(reqwest::Method::GET, "/requests", None).await
    }

    pub async fn reset_requests(&self) {
        self.hook(reqwest::Method::DELETE, "/requests", None).await;
    }

    /// Writes (non-GET API requests) since the last reset.
    pub async fn writes(&self) -> u64 {
        self.requests().await["writes"].as_u64().unwrap_or(0)
    }

    pub async fn fault(&self, spec: Value) {
        self.hook(reqwest::Method::POST, "/faults", Some(spec))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.hook(reqwest::Method::DELETE, "/faults", None).await;
    }

    /// A raw Cloudflare API call to the simulator (to seed objects like a user would).
    pub async fn cf(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url))
            .bearer_auth(API_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .expect("cf call")
            .json()
            .await
            .expect("cf json")
    }

    /// Live (not deleted) tunnels in the simulator.
    pub async fn live_tunnels(&self) -> Vec<Value> {
        let st = self.state().await;
        st["tunnels"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["deleted_at"].is_null())
            .collect()
    }

    pub async fn dns_records(&self) -> Vec<Value> {
        self.state().await["dns_records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn access_apps(&self) -> Vec<Value> {
        self.state().await["access_apps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn policies(&self) -> Vec<Value> {
        self.state().await["access_policies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The service's tags in moto.
    pub async fn service_tags(&self, cluster: &str, service: &str) -> BTreeMap<String, String> {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let out = ecs
            .list_tags_for_resource()
            .resource_arn(service_arn(cluster, service))
            .send()
            .await
            .expect("list tags");
        out.tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub async fn set_tags(&self, cluster: &str, service: &str, tags: &[(&str, &str)]) {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build())
            .collect();
        ecs.tag_resource()
            .resource_arn(service_arn(cluster, service))
            .set_tags(Some(tags))
            .send()
            .await
            .expect("tag");
    }

    pub async fn remove_tags(&self, cluster: &str, service: &str, keys: &[&str]) {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        ecs.untag_resource()
            .resource_arn(service_arn(cluster, service))
            .set_tag_keys(Some(keys))
            .send()
            .await
            .expect("untag");
    }

    pub async fn delete_service(&self, cluster: &str, service: &str) {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        ecs.delete_service()
            .cluster(cluster)
            .service(service)
            .force(true)
            .send()
            .await
            .expect("delete service");
    }

    /// The primary deployment id of a service (changes on a forced new deployment).
    pub async fn deployment_id(&self, cluster: &str, service: &str) -> Option<String> {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let out = ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .expect("describe");
        let svc = out.services().first()?;
        svc.deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.id())
            .map(str::to_string)
    }

    /// The token parameter's value and version.
    pub async fn token_parameter(&self, cluster: &str, service: &str) -> Option<(String, i64)> {
        let ssm = aws_sdk_ssm::Client::new(&self.sdk);
        let name = format!("/ecs-tunnels/{cluster}/{service}/token");
        match ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(o) => o
                .parameter()
                .map(|p| (p.value().unwrap_or_default().to_string(), p.version())),
            Err(_) => None,
        }
    }

    /// The token parameter's tags.
    pub async fn token_parameter_tags(
        &self,
        cluster: &str,
        service: &str,
    ) -> BTreeMap<String, String> {
        self.parameter_tags(&format!("/ecs-tunnels/{cluster}/{service}/token"))
            .await
            .unwrap_or_default()
    }

    /// An SSM parameter's tags; `None` when it cannot be read (e.g. it is gone).
    pub async fn parameter_tags(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let out = aws_sdk_ssm::Client::new(&self.sdk)
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .ok()?;
        Some(
            out.tag_list()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        )
    }

    /// The AWS calls the function processes made (through the proxy) since the last
    /// `w.aws.clear_calls()`, counted by `service:Operation`.
    pub fn function_aws_calls(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.aws.calls() {
            if c.call.access_key_id.as_deref() == Some(devtools::iam::FUNCTION_ACCESS_KEY_ID) {
                *out.entry(c.call.name()).or_default() += 1;
            }
        }
        out
    }

    /// The calls of the function processes since the last `w.aws.clear_calls()` that read
    /// a tunnel token's value (not the API token's): SSM `GetParameter`, `GetParameters`
    /// or `GetParametersByPath` on the token prefix, Secrets Manager `GetSecretValue` or
    /// `BatchGetSecretValue` on a token secret. Each as `operation names...`.
    pub fn token_value_reads(&self) -> Vec<String> {
        // The default prefix: a path, a parameter name, a secret name or ARN under it.
        let is_token = |n: &str| n == "/ecs-tunnels" || n.contains("ecs-tunnels/");
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            }
        };
        let mut out = Vec::new();
        for c in self.aws.calls() {
            if c.call.access_key_id.as_deref() != Some(devtools::iam::FUNCTION_ACCESS_KEY_ID) {
                continue;
            }
            let p = &c.call.params;
            let names = match c.call.name().as_str() {
                "ssm:GetParameter" => strings(&p["Name"]),
                "ssm:GetParameters" => strings(&p["Names"]),
                "ssm:GetParametersByPath" => strings(&p["Path"]),
                "secretsmanager:GetSecretValue" => strings(&p["SecretId"]),
                "secretsmanager:BatchGetSecretValue" => vec!["ecs-tunnels/?".into()],
                _ => continue,
            };
            let names: Vec<String> = names.into_iter().filter(|n| is_token(n)).collect();
            if !names.is_empty() {
                out.push(format!("{} {}", c.call.name(), names.join(" ")));
            }
        }
        out
    }

    /// The only token values a sweep reads are those of the services in its
    /// verification slice (`configs_checked` in its report), each compared with the
    /// token Cloudflare serves; everything else it learns from the tokens' tags.
    pub fn assert_only_verified_tokens_read(&self, report: &Value) {
        let reads = self.token_value_reads();
        assert_eq!(
            reads.len() as u64,
            report["configs_checked"].as_u64().unwrap(),
            "only the slice's tokens are read: {reads:?}\n{report}"
        );
        assert!(
            reads.iter().all(|r| r.starts_with("ssm:GetParameter")
                || r.starts_with("secretsmanager:GetSecretValue ")),
            "one token at a time: {reads:?}"
        );
    }

    /// Connects a simulated cloudflared with `token`: true when the tunnel accepts it.
    pub async fn token_connects(&self, token: &str) -> bool {
        let conn = self
            .hook(
                reqwest::Method::POST,
                "/connectors",
                Some(json!({ "token": token })),
            )
            .await;
        conn["client_id"].is_string()
    }
}

/// The key of one of our tunnels: `<prefix><cluster>.<service>`, where a custom
/// resource's cluster is `cfn.<stack>` (stack names have no dots).
fn tunnel_key(
    owner: &ecs_tunnels::ownership::Owner,
    name: &str,
) -> Option<ecs_tunnels::ownership::ServiceId> {
    let rest = name.strip_prefix(&owner.tunnel_prefix())?;
    match rest.strip_prefix("cfn.") {
        Some(r) => {
            let (stack, logical) = r.split_once('.')?;
            Some(ecs_tunnels::ownership::ServiceId::new(
                format!("cfn.{stack}"),
                logical,
            ))
        }
        None => owner.service_of_tunnel(name),
    }
}

/// The standard tags of an exposed service.
pub fn exposed(host: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ecs-tunnels:hostname", host),
        ("ecs-tunnels:allow-email-domains", "example.com"),
    ]
}
