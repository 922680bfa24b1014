//! Does a role's identity policies allow one action on one resource? A small, pure IAM
//! evaluator for the one question a diagnosis asks (can the execution role read the
//! token?), over the documents [`crate::aws::iam`] reads:
//!
//! - an explicit `Deny` that applies wins; else an `Allow` that applies allows; else the
//!   request is implicitly denied;
//! - `Action`/`NotAction` match case-insensitively, `Resource`/`NotResource`
//!   case-sensitively, both with the `*` and `?` wildcards;
//! - a statement whose outcome hangs on something this evaluator cannot know (a
//!   `Condition`, a policy variable `${…}` in a resource, a `Principal`/`NotPrincipal`,
//!   which identity policies do not take) makes the answer [`Decision::Unjudged`] when,
//!   and only when, it would decide it;
//! - a permissions boundary must allow the request too.
//!
//! Service control policies and resource policies are not seen: the answer is what the
//! role's own policies say.

use crate::aws::iam::{PolicyDocument, RolePolicies};
use serde_json::Value;

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow applies and no Deny does.
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A Deny statement applies (its policy and Sid, when it has one).
    ExplicitDeny(String),
    /// The role's policies allow it but its permissions boundary (this policy) does not.
    NotInBoundary(String),
    /// A statement that would decide it cannot be judged (which, and why).
    Unjudged(String),
}

/// Whether one statement applies to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applies {
    No,
    Yes,
    Maybe(String),
}

/// One statement, named for messages.
struct Statement<'a> {
    name: String,
    body: &'a Value,
}

fn statements(doc: &PolicyDocument) -> Vec<Statement<'_>> {
    let list: Vec<&Value> = match doc.document.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => vec![],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, body)| Statement {
            name: match body.get("Sid").and_then(Value::as_str) {
                Some(sid) if !sid.is_empty() => format!("{} statement {sid}", doc.source),
                _ => format!("{} statement #{}", doc.source, i + 1),
            },
            body,
        })
        .collect()
}

/// A string or a list of strings.
fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    match v? {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// IAM's wildcard match: `*` any run of characters (`/` and `:` included), `?` exactly
/// one character.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn applies(st: &Statement<'_>, action: &str, resource: &str) -> Applies {
    let b = st.body;
    let action_hit = match (strings(b.get("Action")), strings(b.get("NotAction"))) {
        (Some(a), _) => a.iter().any(|p| wildcard_match(p, action, true)),
        (None, Some(n)) => !n.iter().any(|p| wildcard_match(p, action, true)),
        (None, None) => false,
    };
    if !action_hit {
        return Applies::No;
    }
    let (patterns, negated) = match (strings(b.get("Resource")), strings(b.get("NotResource"))) {
        (Some(r), _) => (r, false),
        (None, Some(n)) => (n, true),
        (None, None) => return Applies::No,
    };
    let hit = patterns.iter().any(|p| wildcard_match(p, resource, false));
    let variable = patterns.iter().any(|p| p.contains("${"));
    let mut maybe = Vec::new();
    if hit == negated {
        // It does not apply, unless a pattern with a policy variable would make it.
        if !variable {
            return Applies::No;
        }
        maybe.push("its resource uses a policy variable".to_string());
    }
    if b.get("Condition")
        .and_then(Value::as_object)
        .is_some_and(|c| !c.is_empty())
    {
        maybe.push("it has a Condition".to_string());
    }
    if b.get("Principal").is_some() || b.get("NotPrincipal").is_some() {
        maybe.push("it names a Principal or NotPrincipal".to_string());
    }
    if maybe.is_empty() {
        Applies::Yes
    } else {
        Applies::Maybe(format!("{} ({})", st.name, maybe.join(", ")))
    }
}

/// What `policies` say of `action` on `resource`.
pub fn evaluate(policies: &[PolicyDocument], action: &str, resource: &str) -> Decision {
    let mut allow = false;
    let mut allow_maybe: Option<String> = None;
    let mut deny_maybe: Option<String> = None;
    for doc in policies {
        for st in statements(doc) {
            let effect = st.body.get("Effect").and_then(Value::as_str).unwrap_or("");
            match (effect, applies(&st, action, resource)) {
                (_, Applies::No) => {}
                ("Deny", Applies::Yes) => return Decision::ExplicitDeny(st.name),
                ("Deny", Applies::Maybe(why)) => {
                    deny_maybe.get_or_insert(why);
                }
                ("Allow", Applies::Yes) => allow = true,
                ("Allow", Applies::Maybe(why)) => {
                    allow_maybe.get_or_insert(why);
                }
                _ => {}
            }
        }
    }
    match (allow, allow_maybe, deny_maybe) {
        // A Deny that may apply decides only when something allows.
        (true, _, Some(d)) | (false, Some(_), Some(d)) => {
            Decision::Unjudged(format!("a Deny may apply: {d}"))
        }
        (true, _, None) => Decision::Allowed,
        (false, Some(a), None) => Decision::Unjudged(format!("only a conditional Allow: {a}")),
        (false, None, _) => Decision::ImplicitDeny,
    }
}

/// What a role's policies and its permissions boundary say together.
pub fn evaluate_role(role: &RolePolicies, action: &str, resource: &str) -> Decision {
    let identity = evaluate(&role.policies, action, resource);
    let Some(boundary) = &role.boundary else {
        return identity;
    };
    match (
        identity,
        evaluate(std::slice::from_ref(boundary), action, resource),
    ) {
        (d @ Decision::ExplicitDeny(_), _) | (_, d @ Decision::ExplicitDeny(_)) => d,
        (Decision::ImplicitDeny, _) => Decision::ImplicitDeny,
        (Decision::Allowed, Decision::ImplicitDeny) => {
            Decision::NotInBoundary(boundary.source.clone())
        }
        (Decision::Allowed, b) => b,
        (u @ (Decision::Unjudged(_) | Decision::NotInBoundary(_)), _) => u,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PARAM: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/demo/web/token";
    const GET: &str = "ssm:GetParameters";

    fn doc(statements: Value) -> PolicyDocument {
        PolicyDocument {
            source: "inline read".into(),
            document: json!({"Version": "2012-10-17", "Statement": statements}),
        }
    }

    fn eval(statements: Value) -> Decision {
        evaluate(&[doc(statements)], GET, PARAM)
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("ssm:Get*", "ssm:GetParameters", true));
        assert!(wildcard_match(
            "SSM:getparameter?",
            "ssm:GetParameters",
            true
        ));
        assert!(!wildcard_match(
            "ssm:GetParameter",
            "ssm:GetParameters",
            true
        ));
        assert!(!wildcard_match(
            "SSM:GetParameters",
            "ssm:GetParameters",
            false
        ));
        assert!(wildcard_match(
            "arn:aws:ssm:*:*:parameter/ecs-tunnels/*",
            PARAM,
            false
        ));
        assert!(wildcard_match("*", PARAM, false));
        assert!(wildcard_match(
            "arn:aws:secretsmanager:us-east-1:1:secret:ecs-tunnels/a/b/token-??????",
            "arn:aws:secretsmanager:us-east-1:1:secret:ecs-tunnels/a/b/token-AbCdEf",
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:secretsmanager:us-east-1:1:secret:ecs-tunnels/a/b/token-??????",
            "arn:aws:secretsmanager:us-east-1:1:secret:ecs-tunnels/a/b/token-AbCdE",
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:ssm:*:*:parameter/ecs-tunnels/*/other",
            PARAM,
            false
        ));
        assert!(wildcard_match("a*b*c", "aXbYbZc", false));
        assert!(!wildcard_match("a*b*c", "aXbYbZ", false));
    }

    #[test]
    fn allows_and_implicit_denies() {
        assert_eq!(
            eval(json!([{"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": PARAM}])),
            Decision::Allowed
        );
        assert_eq!(
            eval(
                json!({"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws:ssm:*:*:parameter/ecs-tunnels/*"})
            ),
            Decision::Allowed
        );
        assert_eq!(
            eval(json!([{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}])),
            Decision::ImplicitDeny,
            "GetParameter is not GetParameters"
        );
        assert_eq!(
            eval(
                json!([{"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "arn:aws:ssm:*:*:parameter/other/*"}])
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(eval(json!([])), Decision::ImplicitDeny);
        assert_eq!(
            eval(json!([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}])),
            Decision::Allowed
        );
        assert_eq!(
            eval(json!([{"Effect": "Allow", "Action": "*", "NotResource": PARAM}])),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn an_explicit_deny_wins() {
        let d = eval(json!([
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Sid": "NoSecrets", "Effect": "Deny", "Action": "ssm:Get*", "Resource": "arn:aws:ssm:*:*:parameter/ecs-tunnels/*"}
        ]));
        assert_eq!(
            d,
            Decision::ExplicitDeny("inline read statement NoSecrets".into())
        );
        let d = eval(json!([
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "NotAction": "ecr:*", "Resource": "*"}
        ]));
        assert_eq!(d, Decision::ExplicitDeny("inline read statement #2".into()));
    }

    #[test]
    fn conditions_make_it_unjudged_only_when_they_decide() {
        let conditional_allow = json!({"Effect": "Allow", "Action": GET, "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/team": "x"}}});
        assert!(matches!(
            eval(json!([conditional_allow])),
            Decision::Unjudged(w) if w.contains("Condition")
        ));
        // An unconditional Allow next to it decides.
        assert_eq!(
            eval(json!([conditional_allow, {"Effect": "Allow", "Action": GET, "Resource": "*"}])),
            Decision::Allowed
        );
        let conditional_deny = json!({"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        assert!(matches!(
            eval(json!([{"Effect": "Allow", "Action": GET, "Resource": "*"}, conditional_deny])),
            Decision::Unjudged(w) if w.contains("Deny may apply")
        ));
        // With nothing allowing, a conditional Deny changes nothing.
        assert_eq!(eval(json!([conditional_deny])), Decision::ImplicitDeny);
        // A policy variable that could match.
        assert!(matches!(
            eval(json!([{"Effect": "Allow", "Action": GET, "Resource": "arn:aws:ssm:*:*:parameter/${aws:PrincipalTag/team}/*"}])),
            Decision::Unjudged(w) if w.contains("policy variable")
        ));
        assert!(matches!(
            eval(
                json!([{"Effect": "Allow", "Action": GET, "Resource": "*", "NotPrincipal": {"AWS": "x"}}])
            ),
            Decision::Unjudged(_)
        ));
        // A Condition on a statement whose action does not match is irrelevant.
        assert_eq!(
            eval(json!([{"Effect": "Allow", "Action": GET, "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"x": "y"}}}])),
            Decision::Allowed
        );
    }

    #[test]
    fn a_boundary_must_allow_too() {
        let role = |boundary: Option<Value>| RolePolicies {
            arn: "arn:aws:iam::123456789012:role/exec".into(),
            policies: vec![doc(
                json!([{"Effect": "Allow", "Action": GET, "Resource": "*"}]),
            )],
            boundary: boundary.map(|s| PolicyDocument {
                source: "arn:aws:iam::123456789012:policy/boundary".into(),
                document: json!({"Statement": s}),
            }),
        };
        assert_eq!(evaluate_role(&role(None), GET, PARAM), Decision::Allowed);
        assert_eq!(
            evaluate_role(
                &role(Some(
                    json!([{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}])
                )),
                GET,
                PARAM
            ),
            Decision::Allowed
        );
        assert!(matches!(
            evaluate_role(
                &role(Some(json!([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]))),
                GET,
                PARAM
            ),
            Decision::NotInBoundary(b) if b.ends_with("policy/boundary")
        ));
    }
}
