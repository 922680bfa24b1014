//! The IAM policy evaluator: `devtools/iam/evaluate.mjs` (the npm package
//! `@cloud-copilot/iam-simulate`, pinned in `devtools/iam/package-lock.json`) run under Node
//! as a child process that speaks JSON lines. The roles' policies are loaded once; each
//! evaluation is one line out and one line back. The child exits when its stdin closes,
//! i.e. when the [`Evaluator`] is dropped (it is also killed then).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::request::IamRequest;
use super::template::NamedPolicy;

/// The evaluator script.
pub fn script() -> PathBuf {
    crate::moto::workspace_root().join("devtools/iam/evaluate.mjs")
}

/// The Node.js binary: `$NODE`, else `node` on the PATH.
pub fn node() -> PathBuf {
    std::env::var_os("NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// The evaluator's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Decision {
    /// An identity policy allows it and none denies it.
    Allowed,
    /// No policy allows it.
    ImplicitlyDenied,
    /// A policy denies it.
    ExplicitlyDenied,
    /// It could not be evaluated (unknown action, invalid policy or request).
    Error,
}

/// A condition whose key the request could not supply, so the evaluator could not judge it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UnjudgedCondition {
    /// `identity`, ...
    #[serde(rename = "policyType")]
    pub policy_type: String,
    /// `Allow` or `Deny`: the effect of the statement it belongs to.
    pub effect: String,
    /// The operator, e.g. `IpAddress`.
    pub op: String,
    /// The context key, e.g. `aws:SourceIp`.
    pub key: String,
    /// The values the condition compares with.
    pub values: Vec<String>,
}

/// The evaluator's full answer for one request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvalResult {
    /// Strict evaluation with the context exactly as supplied (absent keys are absent).
    pub result: Decision,
    /// Discovery evaluation, where keys outside `known_keys` count as unknown: `Allowed`
    /// while `result` is a denial means "allowed only if the unjudged conditions hold".
    #[serde(rename = "discoveryResult", default)]
    pub discovery_result: Option<Decision>,
    /// Supplied keys iam-data does not list for this action and resource (dropped).
    #[serde(rename = "ignoredContextKeys", default)]
    pub ignored_context_keys: Vec<String>,
    /// The resource type iam-data matched (`service`, `parameter`, `Secret`, ...).
    #[serde(rename = "resourceType", default)]
    pub resource_type: Option<String>,
    /// iam-data says the action takes no resource-level permissions (resource `*`).
    #[serde(rename = "wildcardOnly", default)]
    pub wildcard_only: Option<bool>,
    /// Conditions that mattered but whose keys were not supplied.
    #[serde(default)]
    pub unjudged: Vec<UnjudgedCondition>,
    /// Validation or evaluation errors.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// One request to evaluate as one role.
#[derive(Debug, Clone)]
pub struct EvalItem {
    /// The role whose policies apply (a name given to [`Evaluator::start`]).
    pub role: String,
    /// The calling principal's ARN.
    pub principal: String,
    /// The request; its resource's account is read from the ARN.
    pub request: IamRequest,
}

struct Io {
    _child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

/// A running evaluator. Requests are answered one at a time, in order; a reply left
/// unread by a cancelled caller is skipped by the next one.
pub struct Evaluator {
    io: tokio::sync::Mutex<Io>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The account that owns a resource, for the simulator's same-account test. AWS managed
/// IAM policies (`arn:aws:iam::aws:policy/…`) belong to no customer account and every
/// account may read them without a resource policy, and `*` (an action without
/// resource-level scope) is in the caller's account: both count as the caller's, the
/// account of `principal` (else [`super::template::ACCOUNT_ID`]).
fn account_of(arn: &str, principal: &str) -> String {
    let account = |a: &str| {
        a.split(':')
            .nth(4)
            .filter(|a| !a.is_empty() && *a != "aws")
            .map(str::to_string)
    };
    account(arn)
        .or_else(|| account(principal))
        .unwrap_or_else(|| super::template::ACCOUNT_ID.to_string())
}

impl Evaluator {
    /// Starts Node with the evaluator and loads `roles` (role name → its policies).
    ///
    /// Fails with a hint to run `scripts/setup-python.sh` when the npm package is missing.
    pub async fn start(roles: &BTreeMap<String, Vec<NamedPolicy>>) -> Result<Evaluator, String> {
        let script = script();
        let modules = script.with_file_name("node_modules/@cloud-copilot/iam-simulate");
        if !modules.exists() {
            return Err(format!(
                "{} is missing: run scripts/setup-python.sh (npm ci --prefix devtools/iam)",
                modules.display()
            ));
        }
        let mut child = Command::new(node())
            .arg(&script)
            .current_dir(script.parent().unwrap_or(&script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} (install Node.js 18+ or set NODE): {e}",
                    node().display()
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let lines = stderr.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(err).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                }
            });
        }
        let ev = Evaluator {
            io: tokio::sync::Mutex::new(Io {
                _child: child,
                stdin,
                stdout,
                next_id: 1,
            }),
            stderr,
        };
        ev.load(roles).await?;
        Ok(ev)
    }

    /// Loads (more) roles: role name → its policies; a name already loaded is replaced.
    pub async fn load(&self, roles: &BTreeMap<String, Vec<NamedPolicy>>) -> Result<(), String> {
        let roles: serde_json::Map<String, Value> = roles
            .iter()
            .map(|(name, ps)| {
                let policies: Vec<Value> = ps
                    .iter()
                    .map(|p| json!({"name": p.name, "policy": p.document}))
                    .collect();
                (name.clone(), json!({"policies": policies}))
            })
            .collect();
        let answer = self
            .round_trip(json!({"op": "load", "roles": roles}))
            .await?;
        if answer["ok"] != json!(true) {
            return Err(format!("evaluator refused the policies: {answer}"));
        }
        Ok(())
    }

    async fn round_trip(&self, mut msg: Value) -> Result<Value, String> {
        let mut io = self.io.lock().await;
        let id = io.next_id;
        io.next_id += 1;
        msg["id"] = json!(id);
        let mut line = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stdin = io.stdin.as_mut().ok_or("evaluator stdin closed")?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("writing to the evaluator: {e}; {}", self.stderr()))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("writing to the evaluator: {e}"))?;
        // Replies come in request order. A caller that was cancelled between its write
        // and its read (its client hung up, e.g. a function process killed mid-call)
        // leaves its reply unread: skip such stale replies, which carry smaller ids.
        let v = loop {
            let reply = io
                .stdout
                .next_line()
                .await
                .map_err(|e| format!("reading from the evaluator: {e}"))?
                .ok_or_else(|| format!("the evaluator exited: {}", self.stderr()))?;
            let v: Value = serde_json::from_str(&reply)
                .map_err(|e| format!("evaluator answered non-JSON ({e}): {reply}"))?;
            match v["id"].as_u64() {
                Some(got) if got == id => break v,
                Some(got) if got < id => continue,
                _ => return Err(format!("evaluator answered out of order: {reply}")),
            }
        };
        if let Some(e) = v.get("error") {
            return Err(format!("evaluator error: {e}"));
        }
        Ok(v)
    }

    /// Evaluates `items` (in one round trip); one result per item, in order.
    pub async fn evaluate(&self, items: &[EvalItem]) -> Result<Vec<EvalResult>, String> {
        let items: Vec<Value> = items
            .iter()
            .map(|i| {
                json!({
                    "role": i.role,
                    "principal": i.principal,
                    "action": i.request.action,
                    "resource": i.request.resource,
                    "accountId": account_of(&i.request.resource, &i.principal),
                    "context": i.request.context,
                    "knownKeys": i.request.known_keys,
                    "resourcePolicy": i.request.resource_policy,
                })
            })
            .collect();
        let n = items.len();
        let answer = self
            .round_trip(json!({"op": "evaluate", "items": items}))
            .await?;
        let results: Vec<EvalResult> = serde_json::from_value(answer["results"].clone())
            .map_err(|e| format!("bad evaluator answer ({e}): {answer}"))?;
        if results.len() != n {
            return Err(format!(
                "evaluator answered {} results for {n} requests",
                results.len()
            ));
        }
        Ok(results)
    }

    /// What the evaluator printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Closes the evaluator's stdin (it then exits by itself).
    pub async fn close(&self) {
        self.io.lock().await.stdin.take();
    }
}

#[cfg(test)]
mod tests {
    use super::account_of;

    #[test]
    fn aws_managed_policies_count_as_the_callers() {
        let hub = "arn:aws:sts::123456789012:assumed-role/r/f";
        let spoke = "arn:aws:sts::111111111111:assumed-role/ecs-tunnels-spoke/s";
        assert_eq!(
            account_of("arn:aws:iam::999999999999:policy/x", hub),
            "999999999999"
        );
        assert_eq!(
            account_of(
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
                hub
            ),
            super::super::template::ACCOUNT_ID
        );
        assert_eq!(account_of("*", hub), super::super::template::ACCOUNT_ID);
        // A spoke session's `*` and AWS managed policies are in the spoke's account.
        assert_eq!(account_of("*", spoke), "111111111111");
        assert_eq!(
            account_of("arn:aws:iam::aws:policy/x", spoke),
            "111111111111"
        );
    }
}
