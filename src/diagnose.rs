//! Why a service's cloudflared sidecar does not connect: the task definition and the
//! execution role, checked against what the contract asks of the sidecar ("Where the
//! token goes"). Used by `ecs-tunnels doctor` and by a reconcile that finds running
//! tasks and no connection.
//!
//! - [`checks`]: the checks, pure over a parsed [`crate::task_definition::TaskDefinition`];
//! - [`token_ref`]: where `TUNNEL_TOKEN` must come from, and `valueFrom` matching;
//! - [`policy`]: a small IAM evaluator for "may the execution role read the token?";
//! - [`diagnose`]: reads what they need (one cached `DescribeTaskDefinition`, IAM reads
//!   of the execution role, the secret's ARN) and runs them in order.

pub mod checks;
pub mod policy;
pub mod token_ref;

use crate::aws::token_store::TokenStore;
use crate::context::Deps;
use crate::ownership::ServiceId;
use checks::{name, Verdict};
use serde::Serialize;
use token_ref::{Expected, Store};

/// Longest [`Diagnosis::status_reason`].
pub const MAX_REASON: usize = 200;

/// One problem, in the user's words, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `token-missing` (README, "Troubleshooting").
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// The result of every check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Problems, most fundamental first.
    pub findings: Vec<Finding>,
    /// Checks that could not be judged, and why (`<check>: <why>`).
    pub unjudged: Vec<String>,
    /// Checks that passed, and what they saw (`<check>: <what>`).
    pub passed: Vec<String>,
}

impl Diagnosis {
    /// True when no check found a problem (some may not have been judged).
    pub fn is_healthy(&self) -> bool {
        self.findings.is_empty()
    }

    /// A short reason for the `ecs-tunnels:status` tag: the first finding's message,
    /// ECS-tag-safe, at most [`MAX_REASON`] characters (cut at a word).
    pub fn status_reason(&self) -> Option<String> {
        let first = self.findings.first()?;
        let safe = crate::status::tag_safe(&first.message);
        if safe.len() <= MAX_REASON {
            return Some(safe);
        }
        let cut = &safe[..MAX_REASON];
        let cut = cut.rsplit_once(' ').map_or(cut, |(head, _)| head);
        Some(cut.trim_end().to_string())
    }

    fn record(&mut self, check: &str, verdict: Verdict) {
        match verdict {
            Verdict::Ok(what) => self.passed.push(format!("{check}: {what}")),
            Verdict::Problems(found) => self.findings.extend(found),
            Verdict::NotJudged(why) => self.unjudged.push(format!("{check}: {why}")),
        }
    }
}

/// Where the service's token is expected, in the service's own partition, region and
/// account.
fn expected(deps: &Deps, svc: &ServiceId, info: &crate::aws::ecs::ServiceInfo) -> Expected {
    let parts: Vec<&str> = info.arn.split(':').collect();
    let at = |i: usize, default: &str| {
        parts
            .get(i)
            .filter(|p| !p.is_empty())
            .map_or(default.to_string(), |p| p.to_string())
    };
    let store = match deps.tokens {
        TokenStore::Ssm(_) => Store::Ssm,
        TokenStore::SecretsManager(_) => Store::SecretsManager,
    };
    Expected::new(
        store,
        &deps.tokens.location(svc),
        &at(1, "aws"),
        &at(3, &deps.region),
        &at(4, ""),
    )
}

/// Checks the service's sidecar: the cloudflared container, its `TUNNEL_TOKEN`, its
/// command, the execution role, and the origin's port. `origin` is the resolved origin
/// (the `ecs-tunnels:origin` tag), when known; without it the task definition's default
/// is checked.
///
/// Errors only when ECS cannot be read; an IAM or Secrets Manager read that fails
/// (AccessDenied included) makes its check unjudged.
pub async fn diagnose(
    deps: &Deps,
    svc: &ServiceId,
    info: &crate::aws::ecs::ServiceInfo,
    origin: Option<&str>,
) -> Result<Diagnosis, crate::aws::AwsError> {
    let mut d = Diagnosis::default();
    let mut expected = expected(deps, svc, info);
    if let TokenStore::SecretsManager(sm) = &deps.tokens {
        // The full ARN (with its suffix) makes the role check exact; without it (the
        // secret not there yet, or not readable) the check tries any suffix.
        if let Ok(Some(secret)) = sm.describe(&expected.name).await {
            expected = expected.with_secret_arn(&secret.arn);
        }
    }
    let Some(td_ref) = info.task_definition.as_deref() else {
        for check in [
            name::CONTAINER,
            name::TOKEN,
            name::COMMAND,
            name::ROLE,
            name::ORIGIN,
        ] {
            d.record(
                check,
                Verdict::NotJudged("the service names no task definition".into()),
            );
        }
        return Ok(d);
    };
    let Some(td) = deps.task_definition(td_ref).await? else {
        d.unjudged
            .push(format!("task definition: ECS does not know {td_ref}"));
        return Ok(d);
    };
    match checks::sidecar(&td, &expected) {
        Ok(c) => {
            d.record(
                name::CONTAINER,
                Verdict::Ok(format!("{} ({})", c.name, c.image)),
            );
            d.record(name::TOKEN, checks::token(c, &expected));
            d.record(name::COMMAND, checks::command(c));
        }
        Err(f) => {
            d.findings.push(f);
            for check in [name::TOKEN, name::COMMAND] {
                d.record(
                    check,
                    Verdict::NotJudged("there is no cloudflared container".into()),
                );
            }
        }
    }
    let role = role(deps, &td, &expected, info).await;
    d.record(name::ROLE, role);
    let default_origin = td.default_origin();
    d.record(
        name::ORIGIN,
        checks::origin(&td, origin.or(default_origin.as_deref())),
    );
    Ok(d)
}

/// The execution role check: it exists, and its policies allow reading the token.
async fn role(
    deps: &Deps,
    td: &crate::task_definition::TaskDefinition,
    expected: &Expected,
    info: &crate::aws::ecs::ServiceInfo,
) -> Verdict {
    let name = match checks::execution_role(td, expected) {
        Ok(n) => n,
        Err(f) => return Verdict::Problems(vec![f]),
    };
    let arn = td.execution_role_arn.clone().unwrap_or_default();
    let role_account = arn.split(':').nth(4).unwrap_or_default();
    let service_account = info.account_region().map(|(a, _)| a).unwrap_or_default();
    if arn.starts_with("arn:") && role_account != service_account {
        return Verdict::NotJudged(format!(
            "{arn} is in another account than the service, whose IAM is not read"
        ));
    }
    let role = match deps.iam.role_policies(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => return Verdict::Problems(vec![checks::role_missing(&arn, expected)]),
        Err(e) => {
            return Verdict::NotJudged(format!("{arn}'s policies cannot be read ({e})"));
        }
    };
    let action = expected.read_action();
    let decision = match (expected.store, expected.policy_resource()) {
        // The secret's suffix is unknown: judge only when any suffix gets the same answer.
        (Store::SecretsManager, r) if r.ends_with("-*") => {
            let base = r.trim_end_matches('*');
            let a = policy::evaluate_role(&role, action, &format!("{base}AAAAAA"));
            let b = policy::evaluate_role(&role, action, &format!("{base}zz09zz"));
            if a == b {
                a
            } else {
                policy::Decision::Unjudged(
                    "the secret's 6-character suffix, unknown until it exists".into(),
                )
            }
        }
        (_, r) => policy::evaluate_role(&role, action, &r),
    };
    checks::role_permission(&role.arn, &decision, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reason_is_the_first_finding_short_and_tag_safe() {
        let mut d = Diagnosis::default();
        assert!(d.is_healthy());
        assert_eq!(d.status_reason(), None);
        d.unjudged.push("origin: not localhost".into());
        assert!(d.is_healthy(), "unjudged checks are not problems");
        d.findings.push(Finding {
            code: "token-missing",
            message: "the cloudflared container \"cloudflared\" has no TUNNEL_TOKEN secret, so cloudflared has no token to connect with".into(),
            fix: "x".into(),
        });
        d.findings.push(Finding {
            code: "not-tunnel-run",
            message: "second".into(),
            fix: "y".into(),
        });
        assert!(!d.is_healthy());
        assert_eq!(
            d.status_reason().unwrap(),
            "the cloudflared container cloudflared has no TUNNEL_TOKEN secret so cloudflared has no token to connect with"
        );
        d.findings[0].message = "word ".repeat(100);
        let r = d.status_reason().unwrap();
        assert!(r.len() <= MAX_REASON && r.ends_with("word"), "{r}");
        assert_eq!(crate::status::tag_safe(&r), r);
    }
}
