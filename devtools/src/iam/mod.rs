//! Checks every AWS call a function process makes against the IAM policies the SAM
//! template (`infra/template.yaml`) gives that function, with a real IAM policy evaluator
//! (`@cloud-copilot/iam-simulate` under Node), so a call the template does not allow fails
//! the test that made it.
//!
//! - [`template`]: the SAM-expanded template resolved for one parameter set; each
//!   function's role and identity policies;
//! - [`triggers`]: which function receives which event, read off the template;
//! - [`request`]: a recorded call → the IAM request(s) AWS would authorize;
//! - [`evaluator`]: the Node child process that evaluates them;
//! - [`IamAuthorizer`]: all of it behind the [`crate::aws_proxy::Authorizer`] hook.
//!
//! # Which calls are evaluated
//!
//! A function process is recognised by its access key id, [`FUNCTION_ACCESS_KEY_ID`]
//! (`ASIAECSTUNNELSLAMBDA`: `ASIA` like the temporary keys Lambda hands a function, then a
//! name no real key has). Give it to every function process
//! ([`function_credentials_env`]) and to nothing else. Its calls are evaluated:
//! - with an `x-amzn-trace-id`: against the role of the function that receives that
//!   invocation's event (looked up in the Runtime API emulator by trace id);
//! - without one (cold-start initialisation, before any invocation): against every
//!   function's role, since every function runs the same initialisation.
//!
//! Calls with other keys (the test harness seeding moto, a person running the CLI) are
//! forwarded unevaluated.
//!
//! # What moto's own IAM enforcement cannot do
//!
//! moto (`INITIAL_NO_AUTH_ACTION_COUNT`) authorizes ECS, SSM and Secrets Manager calls
//! against resource `*` (those services have no `_determine_resource` in
//! `moto/iam/access_control.py`), so every resource-scoped Allow of this template would
//! deny, and it ignores most condition keys. Hence this module.

pub mod authorizer;
pub mod evaluator;
pub mod request;
pub mod template;
pub mod triggers;

pub use authorizer::{Check, EvaluatedCall, IamAuthorizer};
pub use template::{expanded_template, FunctionInfo, ResolvedTemplate};

use std::collections::BTreeMap;

/// The access key id that marks a process as a Lambda function of the template.
pub const FUNCTION_ACCESS_KEY_ID: &str = "ASIAECSTUNNELSLAMBDA";

/// The secret key that goes with [`FUNCTION_ACCESS_KEY_ID`] (moto does not check it).
pub const FUNCTION_SECRET_ACCESS_KEY: &str = "ecs-tunnels-lambda-test-secret";

/// The credentials a function process needs for its calls to be evaluated:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (Lambda gives
/// temporary credentials, so a session token is set too).
pub fn function_credentials_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", FUNCTION_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", FUNCTION_SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", "ecs-tunnels-lambda-test-session"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The README's example parameters: a 32-hex-character account id, the API token in the
/// SSM parameter `/cloudflare/api-token`, tunnel tokens in Secrets Manager.
pub fn readme_parameters() -> BTreeMap<String, String> {
    [
        ("CloudflareAccountId", "0123456789abcdef0123456789abcdef"),
        ("CloudflareApiTokenParameter", "/cloudflare/api-token"),
        ("TokenStore", "secretsmanager"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
