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
//! - [`spoke`]: `infra/spoke.yaml` resolved for an account, its role created in moto;
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
//! # Organization mode
//!
//! [`org_parameters`] resolves the template as a hub (`SpokeRoleName` set). A function's
//! `sts:AssumeRole` (awsQuery: `Action=AssumeRole&RoleArn=…&RoleSessionName=…&ExternalId=…`)
//! is judged on the role ARN against the function role's identity policies *and* the
//! role's trust policy as moto holds it (read with `iam:GetRole` in the role's account), as
//! AWS judges a cross-account AssumeRole: both must allow. A role that does not exist is
//! denied as STS denies it (HTTP 403 `AccessDenied`, `User: <caller> is not authorized to
//! perform: sts:AssumeRole on resource: <role arn>`); moto alone would hand out
//! credentials for any ARN. [`IamAuthorizer::with_organization`] puts accounts in an
//! organization for `aws:PrincipalOrgID` / `aws:ResourceOrgID` conditions.
//!
//! The access key moto returns for an allowed AssumeRole is remembered (the proxy shows
//! the authorizer each forwarded answer): calls signed with it are judged against the
//! assumed role's inline policies as moto holds them (what [`spoke::deploy_spoke_role`]
//! created), with ARNs of the role's account, and denied as AWS denies them
//! ([`IamAuthorizer::assumed_role_calls`] lists them). Calls with any other key (the
//! harness, [`spoke::account_access_key`]) stay unevaluated. An AssumeRole made without a
//! trace id (at cold start) is judged against every function's role, as any call is: the
//! custom-resource and rotation functions may not assume spoke roles, so it is denied.
//!
//! # What moto's own IAM enforcement cannot do
//!
//! moto (`INITIAL_NO_AUTH_ACTION_COUNT`) authorizes ECS, SSM and Secrets Manager calls
//! against resource `*` (those services have no `_determine_resource` in
//! `moto/iam/access_control.py`), so every resource-scoped Allow of this template would
//! deny, and it ignores most condition keys. Hence this module.

pub mod authorizer;
pub mod evaluator;
pub mod moto_iam;
pub mod request;
pub mod spoke;
pub mod template;
pub mod triggers;

pub use authorizer::{AssumedSession, Check, EvaluatedCall, IamAuthorizer};
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

/// The accounts [`org_parameters`] serves (`Accounts`): two spoke accounts besides the
/// hub's own ([`template::ACCOUNT_ID`], moto's default account).
pub const SPOKE_ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];

/// [`readme_parameters`] in organization mode: `SpokeRoleName` = `spoke_role`,
/// `SpokeExternalId` = `external_id` (when not empty), `Accounts` = [`SPOKE_ACCOUNTS`]
/// space-separated; `Regions`, `OrganizationId` and `OrganizationRoleArn` stay empty (the
/// hub's region, no organization). Insert further keys into the map to change those.
pub fn org_parameters(spoke_role: &str, external_id: &str) -> BTreeMap<String, String> {
    let mut p = readme_parameters();
    p.insert("SpokeRoleName".into(), spoke_role.into());
    if !external_id.is_empty() {
        p.insert("SpokeExternalId".into(), external_id.into());
    }
    p.insert("Accounts".into(), SPOKE_ACCOUNTS.join(" "));
    p
}
