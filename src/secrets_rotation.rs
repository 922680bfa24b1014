//! Secrets Manager's four-step rotation protocol for a service's token secret
//! (`ECS_TUNNELS_TOKEN_STORE=secretsmanager`):
//!
//! - `createSecret`: a new 32-byte tunnel secret → the token for it as the AWSPENDING
//!   version (`ClientRequestToken`), unless that version already has a value;
//! - `setSecret`: PATCH the tunnel with the pending token's secret (skipped when
//!   Cloudflare already serves the pending token);
//! - `testSecret`: the pending token is the one Cloudflare serves;
//! - `finishSecret`: AWSCURRENT moves to the pending version, AWSPENDING is removed, and
//!   the service is redeployed (marked first, so a crash before the redeploy is finished
//!   by the retry or the next reconcile).
//!
//! Every step is idempotent under Secrets Manager's retries; a version that is already
//! AWSCURRENT means the rotation finished. `RotationToken` is passed through.

use crate::aws::secrets::{SecretInfo, SecretTokens};
use crate::aws::token_store::{
    rotated_now, TokenStore, REDEPLOY_SERVICE_TAG, REDEPLOY_TAG, ROTATION_TAG, TUNNEL_ID_TAG,
};
use crate::context::Deps;
use crate::error::ReconcileError;
use crate::ownership::{ServiceId, SSM_SERVICE_TAG};
use serde_json::{json, Value};
use tracing::info;

/// One step of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Make the pending version.
    Create,
    /// Apply it at Cloudflare.
    Set,
    /// Check Cloudflare serves it.
    Test,
    /// Make it current and redeploy.
    Finish,
}

impl Step {
    /// Parses `createSecret` (or `create_secret`) and the others.
    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "createSecret" | "create_secret" => Some(Step::Create),
            "setSecret" | "set_secret" => Some(Step::Set),
            "testSecret" | "test_secret" => Some(Step::Test),
            "finishSecret" | "finish_secret" => Some(Step::Finish),
            _ => None,
        }
    }
}

fn setup(msg: impl Into<String>) -> ReconcileError {
    ReconcileError::Setup(msg.into())
}

/// Handles one rotation step event `{Step, SecretId, ClientRequestToken, RotationToken?}`.
pub async fn handle(deps: &Deps, event: &Value) -> Result<Value, ReconcileError> {
    let field = |k: &str| event.get(k).and_then(Value::as_str);
    let step_name = field("Step").unwrap_or_default();
    let step = Step::parse(step_name).ok_or_else(|| setup(format!("unknown rotation step {step_name:?}: expected createSecret, setSecret, testSecret or finishSecret")))?;
    let secret_id = field("SecretId").ok_or_else(|| setup("rotation event without SecretId"))?;
    let version = field("ClientRequestToken")
        .ok_or_else(|| setup("rotation event without ClientRequestToken"))?;
    let rotation_token = field("RotationToken");
    let TokenStore::SecretsManager(sm) = &deps.tokens else {
        return Err(setup("a Secrets Manager rotation step arrived but ECS_TUNNELS_TOKEN_STORE is not secretsmanager"));
    };
    let info = sm
        .describe(secret_id)
        .await?
        .ok_or_else(|| setup(format!("secret {secret_id} does not exist")))?;
    let account = info.arn.split(':').nth(4).map(str::to_string);
    let owner = deps.owner(account.as_deref()).map_err(setup)?;
    if !owner.owns_ssm(&info.tags) {
        return Err(ReconcileError::Conflict(vec![format!(
            "secret {} is not managed by this ecs-tunnels install",
            info.name
        )]));
    }
    let svc = info
        .tags
        .get(SSM_SERVICE_TAG)
        .and_then(|k| k.split_once('/'))
        .map(|(c, s)| ServiceId::new(c, s))
        .ok_or_else(|| setup(format!("secret {} has no {SSM_SERVICE_TAG} tag", info.name)))?;

    if info.has_stage(version, "AWSCURRENT") {
        // Already finished (a retry). Settle a redeploy a crash may have skipped.
        if step == Step::Finish && info.tags.contains_key(REDEPLOY_TAG) {
            redeploy(deps, sm, &info, &svc).await?;
        }
        if step == Step::Finish
            && info.tags.get(ROTATION_TAG).map(String::as_str) == Some("compromised")
        {
            let name = owner.tunnel_name(&svc);
            if let Some(t) = deps.cf.find_tunnel_by_name(&name).await? {
                deps.cf.delete_tunnel_connections(&t.id).await?;
            }
            sm.add_tags_by_id(&info.arn, &rotated_now("compromised"))
                .await?;
            sm.remove_tag_by_id(&info.arn, ROTATION_TAG).await?;
        }
        return Ok(json!({"step": step_name, "service": svc, "result": "already current"}));
    }
    if step != Step::Create && !info.has_stage(version, "AWSPENDING") {
        return Err(setup(format!(
            "version {version} of secret {} is not pending rotation",
            info.name
        )));
    }
    let tunnel_name = owner.tunnel_name(&svc);
    let tunnel = deps
        .cf
        .find_tunnel_by_name(&tunnel_name)
        .await?
        .ok_or_else(|| setup(format!("{svc} has no tunnel: run ecs-tunnels apply first")))?;
    let pending = sm
        .value(&info.arn, Some(version), Some("AWSPENDING"))
        .await?;
    let result = match step {
        Step::Create => match pending {
            Some(_) => "pending version exists",
            None => {
                let secret = crate::token::new_tunnel_secret();
                let token = crate::token::encode_token(deps.cf.account_id(), &tunnel.id, &secret);
                sm.put_pending(&info.arn, version, &token, rotation_token)
                    .await?;
                "pending version created"
            }
        },
        Step::Set => {
            let pending = pending.ok_or_else(|| {
                setup("setSecret: the pending version has no value (createSecret has not run)")
            })?;
            let secret = crate::token::token_secret(&pending)
                .ok_or_else(|| setup("setSecret: the pending value is not a tunnel token"))?;
            if crate::token::token_identity(&pending).map(|(_, t)| t) != Some(tunnel.id.clone()) {
                return Err(setup("setSecret: the pending token is for another tunnel"));
            }
            if crate::token::same_token(&deps.cf.tunnel_token(&tunnel.id).await?, &pending) {
                "Cloudflare already serves the pending token"
            } else {
                deps.cf.rotate_tunnel_secret(&tunnel.id, &secret).await?;
                info!(service = %svc, tunnel_id = %tunnel.id, "tunnel secret rotated at Cloudflare (Secrets Manager setSecret)");
                "tunnel secret set"
            }
        }
        Step::Test => {
            let pending =
                pending.ok_or_else(|| setup("testSecret: the pending version has no value"))?;
            if !crate::token::same_token(&deps.cf.tunnel_token(&tunnel.id).await?, &pending) {
                return Err(setup("testSecret: Cloudflare does not serve the pending token yet (setSecret has not completed)"));
            }
            "Cloudflare serves the pending token"
        }
        Step::Finish => {
            let current = info.version_with("AWSCURRENT").map(str::to_string);
            // The tunnel the new version is for is tagged with the redeploy mark, before
            // that version becomes current.
            let tunnel_of_new = pending
                .as_ref()
                .and_then(crate::token::token_identity)
                .map_or_else(|| tunnel.id.clone(), |(_, t)| t);
            sm.add_tags_by_id(
                &info.arn,
                &[
                    (REDEPLOY_TAG.to_string(), "pending".to_string()),
                    (TUNNEL_ID_TAG.to_string(), tunnel_of_new),
                ],
            )
            .await?;
            sm.move_stage(&info.arn, "AWSCURRENT", Some(version), current.as_deref())
                .await?;
            sm.move_stage(&info.arn, "AWSPENDING", None, Some(version))
                .await?;
            redeploy(deps, sm, &info, &svc).await?;
            let compromised =
                info.tags.get(ROTATION_TAG).map(String::as_str) == Some("compromised");
            if compromised {
                deps.cf.delete_tunnel_connections(&tunnel.id).await?;
                info!(service = %svc, tunnel_id = %tunnel.id, "every connection dropped (compromised token)");
            }
            sm.add_tags_by_id(
                &info.arn,
                &rotated_now(if compromised {
                    "compromised"
                } else {
                    "secretsmanager"
                }),
            )
            .await?;
            sm.remove_tag_by_id(&info.arn, ROTATION_TAG).await?;
            info!(service = %svc, "rotation finished: AWSCURRENT moved, service redeployed");
            "current version moved, service redeployed"
        }
    };
    Ok(json!({"step": step_name, "service": svc, "result": result}))
}

/// Redeploys the service whose tasks run with the token: the one the secret is named
/// after, or a custom resource's `ServiceArn` (recorded on the secret). A custom
/// resource without a `ServiceArn` has nothing to redeploy.
async fn redeploy(
    deps: &Deps,
    sm: &SecretTokens,
    info: &SecretInfo,
    svc: &ServiceId,
) -> Result<(), ReconcileError> {
    let target = match info
        .tags
        .get(REDEPLOY_SERVICE_TAG)
        .and_then(|k| k.split_once('/'))
    {
        Some((c, s)) => Some(ServiceId::new(c, s)),
        None if crate::doors::custom_resource::is_resource_key(svc) => None,
        None => Some(svc.clone()),
    };
    let started = match &target {
        Some(t) => crate::apply::redeploy(deps, t).await?.is_none(),
        None => true,
    };
    if started {
        sm.remove_tag_by_id(&info.arn, REDEPLOY_TAG).await?;
    }
    Ok(())
}
