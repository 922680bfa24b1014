//! The spoke stack (`infra/spoke.yaml`) for organization-mode tests: resolved for one
//! account with the hub template's function roles, and its role created in that account of
//! moto (IAM only: moto's CloudFormation is not involved).
//!
//! moto keeps one IAM per account; a harness call reaches account X with the header
//! `x-moto-account-id: X` (a test may instead assume any role ARN of X with a non-function
//! key: moto hands out credentials that act in X).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::moto_iam::{iam_call, xml_members};
use super::template::{NamedPolicy, ResolvedTemplate, ACCOUNT_ID, PARTITION, REGION};

/// The spoke stack's parameters, as a StackSet would pass them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokeParams {
    /// `HubFunctionRoleArns`: the roles the spoke role trusts.
    pub hub_function_role_arns: Vec<String>,
    /// `HubEventBusArn`.
    pub hub_event_bus_arn: String,
    /// `ExternalId` (empty: none required).
    pub external_id: String,
    /// `OrganizationId` (empty: none).
    pub organization_id: String,
    /// `SpokeRoleName`.
    pub role_name: String,
    /// `ParameterPrefix`.
    pub parameter_prefix: String,
    /// `TokenStore` (`ssm` or `secretsmanager`).
    pub token_store: String,
}

impl SpokeParams {
    /// The parameters that match a hub template resolved in organization mode (e.g. with
    /// [`super::org_parameters`]): its `HubFunctionRoleArns` and `HubEventBusArn` outputs,
    /// its `SpokeExternalId`, `OrganizationId`, `SpokeRoleName`, `ParameterPrefix` and
    /// `TokenStore`. Errors when the hub is not in organization mode.
    pub fn for_hub(hub: &ResolvedTemplate) -> Result<SpokeParams, String> {
        let output = |name: &str| {
            hub.outputs
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    format!("the hub template has no {name} output (is SpokeRoleName set?)")
                })
        };
        let param = |name: &str| hub.parameters.get(name).cloned().unwrap_or_default();
        Ok(SpokeParams {
            hub_function_role_arns: output("HubFunctionRoleArns")?
                .split(',')
                .map(str::to_string)
                .collect(),
            hub_event_bus_arn: output("HubEventBusArn")?,
            external_id: param("SpokeExternalId"),
            organization_id: param("OrganizationId"),
            role_name: param("SpokeRoleName"),
            parameter_prefix: param("ParameterPrefix"),
            token_store: param("TokenStore"),
        })
    }

    /// The stack parameters (`RoleRegion` = [`REGION`], `HubAccountId` = [`ACCOUNT_ID`]).
    pub fn stack_parameters(&self) -> BTreeMap<String, String> {
        [
            ("HubAccountId", ACCOUNT_ID.to_string()),
            ("HubEventBusArn", self.hub_event_bus_arn.clone()),
            ("HubFunctionRoleArns", self.hub_function_role_arns.join(",")),
            ("ExternalId", self.external_id.clone()),
            ("OrganizationId", self.organization_id.clone()),
            ("SpokeRoleName", self.role_name.clone()),
            ("RoleRegion", REGION.to_string()),
            ("ParameterPrefix", self.parameter_prefix.clone()),
            ("TokenStore", self.token_store.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// `infra/spoke.yaml` parsed (short-form intrinsics in their long form), cached.
pub fn spoke_template() -> Result<Value, String> {
    static CACHE: OnceLock<Result<Value, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            super::template::expand(&crate::moto::workspace_root().join("infra/spoke.yaml"))
        })
        .clone()
}

/// The spoke stack resolved for `account` in [`REGION`] (the role's region).
pub fn resolve_spoke(account: &str, params: &SpokeParams) -> Result<ResolvedTemplate, String> {
    ResolvedTemplate::resolve_in(
        &spoke_template()?,
        &params.stack_parameters(),
        account,
        REGION,
    )
}

/// The spoke role of a resolved spoke stack.
#[derive(Debug, Clone)]
pub struct SpokeRole {
    /// `arn:aws:iam::<account>:role/<SpokeRoleName>`.
    pub arn: String,
    /// `SpokeRoleName`.
    pub name: String,
    /// Its trust policy.
    pub trust_policy: Value,
    /// Its inline policies (`SpokeRole/<PolicyName>`).
    pub policies: Vec<NamedPolicy>,
}

/// The `SpokeRole` resource of `spoke` (resolved for `account`).
pub fn spoke_role(spoke: &ResolvedTemplate, account: &str) -> Result<SpokeRole, String> {
    let role = spoke
        .resources
        .get("SpokeRole")
        .ok_or("the spoke stack creates no SpokeRole (RoleRegion is another region?)")?;
    let p = &role.properties;
    let name = p["RoleName"]
        .as_str()
        .ok_or("SpokeRole has no RoleName")?
        .to_string();
    let policies = p["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| NamedPolicy {
            name: format!("SpokeRole/{}", x["PolicyName"].as_str().unwrap_or_default()),
            document: x["PolicyDocument"].clone(),
        })
        .collect();
    Ok(SpokeRole {
        arn: format!("arn:{PARTITION}:iam::{account}:role/{name}"),
        name,
        trust_policy: p["AssumeRolePolicyDocument"].clone(),
        policies,
    })
}

/// Creates the spoke role of `infra/spoke.yaml`, resolved for `account` with `params`, in
/// that account of the moto at `moto_endpoint`: the role with its trust policy and its
/// inline policies. A role of that name already there is replaced. Returns the role's ARN.
pub async fn deploy_spoke_role(
    moto_endpoint: &str,
    account: &str,
    params: &SpokeParams,
) -> Result<String, String> {
    let role = spoke_role(&resolve_spoke(account, params)?, account)?;
    delete_spoke_role(moto_endpoint, account, &role.name).await?;
    let trust = role.trust_policy.to_string();
    iam_call(
        moto_endpoint,
        account,
        &[
            ("Action", "CreateRole"),
            ("RoleName", &role.name),
            ("AssumeRolePolicyDocument", &trust),
        ],
    )
    .await
    .map_err(|e| format!("CreateRole {} in {account}: {e}", role.name))?;
    for p in &role.policies {
        let name = p.name.rsplit('/').next().unwrap_or(&p.name);
        let doc = p.document.to_string();
        iam_call(
            moto_endpoint,
            account,
            &[
                ("Action", "PutRolePolicy"),
                ("RoleName", &role.name),
                ("PolicyName", name),
                ("PolicyDocument", &doc),
            ],
        )
        .await
        .map_err(|e| format!("PutRolePolicy {name} on {} in {account}: {e}", role.name))?;
    }
    Ok(role.arn)
}

/// Deletes the role `role_name` (and its inline policies) from `account` of the moto at
/// `moto_endpoint`; a role that is not there is not an error.
pub async fn delete_spoke_role(
    moto_endpoint: &str,
    account: &str,
    role_name: &str,
) -> Result<(), String> {
    let listed = match iam_call(
        moto_endpoint,
        account,
        &[("Action", "ListRolePolicies"), ("RoleName", role_name)],
    )
    .await
    {
        Ok(body) => body,
        Err(code) if code == "NoSuchEntity" => return Ok(()),
        Err(e) => return Err(format!("ListRolePolicies {role_name} in {account}: {e}")),
    };
    for name in xml_members(&listed) {
        iam_call(
            moto_endpoint,
            account,
            &[
                ("Action", "DeleteRolePolicy"),
                ("RoleName", role_name),
                ("PolicyName", &name),
            ],
        )
        .await
        .map_err(|e| format!("DeleteRolePolicy {name} of {role_name} in {account}: {e}"))?;
    }
    match iam_call(
        moto_endpoint,
        account,
        &[("Action", "DeleteRole"), ("RoleName", role_name)],
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(code) if code == "NoSuchEntity" => Ok(()),
        Err(e) => Err(format!("DeleteRole {role_name} in {account}: {e}")),
    }
}

/// An access key id that acts in `account` of the moto at `moto_endpoint`, for the test
/// harness (seeding a spoke account's ECS services, reading its SSM): moto's credentials
/// for an AssumeRole of `arn:aws:iam::<account>:role/ecs-tunnels-test-harness`, asked
/// with a key that is no function's (moto lets anyone assume any role; the proxy does not
/// judge this key, nor the one returned).
pub async fn account_access_key(moto_endpoint: &str, account: &str) -> Result<String, String> {
    let role = format!("arn:{PARTITION}:iam::{account}:role/ecs-tunnels-test-harness");
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=harness",
        super::moto_iam::percent_encode(&role)
    );
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?
        .post(format!("{}/", moto_endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/sts/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("AssumeRole {role}: {e}"))?;
    let text = resp.text().await.unwrap_or_default();
    super::moto_iam::xml_text(&text, "AccessKeyId")
        .ok_or_else(|| format!("AssumeRole {role}: no credentials in {text}"))
}
