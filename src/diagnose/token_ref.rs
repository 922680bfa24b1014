//! Where `TUNNEL_TOKEN` must come from, and whether a `valueFrom` points there.
//!
//! - SSM: the parameter ARN `arn:<partition>:ssm:<region>:<account>:parameter<name>`, or
//!   the bare name (ECS accepts it for a parameter in the task's region).
//! - Secrets Manager: the secret ARN, with or without Secrets Manager's random
//!   6-character suffix, optionally followed by ECS's `:<json-key>:<version-stage>:
//!   <version-id>`. ECS takes only an ARN for a secret (a bare name is read as an SSM
//!   parameter).

/// Which store the token is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// SSM Parameter Store.
    Ssm,
    /// Secrets Manager.
    SecretsManager,
}

/// The token's expected location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The store.
    pub store: Store,
    /// Parameter or secret name.
    pub name: String,
    /// What `valueFrom` should say (for a secret: its ARN without the suffix, unless the
    /// full ARN is known).
    pub arn: String,
}

/// How a `valueFrom` relates to the expected location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// It reads our token.
    Ours,
    /// It reads our secret, but selects a JSON key (the secret is plain text).
    JsonKey(String),
    /// It reads our secret, pinned to a version stage or id other than the current one.
    Pinned(String),
    /// It reads something else.
    Elsewhere,
}

impl Expected {
    /// The expected location of the token `name` in `store`, in the service's partition,
    /// region and account.
    pub fn new(store: Store, name: &str, partition: &str, region: &str, account: &str) -> Self {
        let arn = match store {
            Store::Ssm => format!(
                "arn:{partition}:ssm:{region}:{account}:parameter{}{name}",
                if name.starts_with('/') { "" } else { "/" }
            ),
            Store::SecretsManager => {
                format!("arn:{partition}:secretsmanager:{region}:{account}:secret:{name}")
            }
        };
        Expected {
            store,
            name: name.to_string(),
            arn,
        }
    }

    /// The same, with the secret's full ARN (suffix included) once it is known.
    pub fn with_secret_arn(mut self, full: &str) -> Self {
        if self.store == Store::SecretsManager && self.matches(full) == Match::Ours {
            self.arn = full.to_string();
        }
        self
    }

    /// The ARN a policy must allow (for a secret whose suffix is unknown, `<arn>-*`).
    pub fn policy_resource(&self) -> String {
        match self.store {
            Store::SecretsManager if !has_suffix(&self.arn, &self.name) => {
                format!("{}-*", self.arn)
            }
            _ => self.arn.clone(),
        }
    }

    /// The action the execution role needs on it.
    pub fn read_action(&self) -> &'static str {
        match self.store {
            Store::Ssm => "ssm:GetParameters",
            Store::SecretsManager => "secretsmanager:GetSecretValue",
        }
    }

    /// Whether `value_from` reads this token.
    pub fn matches(&self, value_from: &str) -> Match {
        let value_from = value_from.trim();
        match self.store {
            Store::Ssm => {
                if value_from == self.arn || value_from == self.name {
                    Match::Ours
                } else {
                    Match::Elsewhere
                }
            }
            Store::SecretsManager => self.matches_secret(value_from),
        }
    }

    fn matches_secret(&self, value_from: &str) -> Match {
        let base = match self.arn.find(":secret:") {
            Some(i) => format!("{}{}", &self.arn[..i + ":secret:".len()], self.name),
            None => return Match::Elsewhere,
        };
        let Some(rest) = value_from.strip_prefix(&base) else {
            return Match::Elsewhere;
        };
        let rest = match rest.strip_prefix('-') {
            Some(r) if r.len() >= 6 && r[..6].chars().all(|c| c.is_ascii_alphanumeric()) => &r[6..],
            Some(_) => return Match::Elsewhere,
            None => rest,
        };
        if rest.is_empty() {
            return Match::Ours;
        }
        let Some(fields) = rest.strip_prefix(':') else {
            return Match::Elsewhere;
        };
        let fields: Vec<&str> = fields.split(':').collect();
        if fields.len() > 3 {
            return Match::Elsewhere;
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let (key, stage, version) = (field(0), field(1), field(2));
        if !key.is_empty() {
            Match::JsonKey(key.to_string())
        } else if !version.is_empty() {
            Match::Pinned(format!("version id {version}"))
        } else if !stage.is_empty() && stage != "AWSCURRENT" {
            Match::Pinned(format!("version stage {stage}"))
        } else {
            Match::Ours
        }
    }
}

/// True when `arn` ends in `<name>-<6 characters>`.
fn has_suffix(arn: &str, name: &str) -> bool {
    arn.rsplit_once(&format!("{name}-"))
        .is_some_and(|(_, s)| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssm() -> Expected {
        Expected::new(
            Store::Ssm,
            "/ecs-tunnels/demo/web/token",
            "aws",
            "us-east-1",
            "123456789012",
        )
    }

    fn sm() -> Expected {
        Expected::new(
            Store::SecretsManager,
            "ecs-tunnels/demo/web/token",
            "aws",
            "us-east-1",
            "123456789012",
        )
    }

    #[test]
    fn ssm_accepts_the_arn_and_the_bare_name() {
        let e = ssm();
        assert_eq!(
            e.arn,
            "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/demo/web/token"
        );
        assert_eq!(e.matches(&e.arn), Match::Ours);
        assert_eq!(e.matches("/ecs-tunnels/demo/web/token"), Match::Ours);
        for other in [
            "arn:aws:ssm:eu-west-1:123456789012:parameter/ecs-tunnels/demo/web/token",
            "arn:aws:ssm:us-east-1:210987654321:parameter/ecs-tunnels/demo/web/token",
            "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/demo/api/token",
            "ecs-tunnels/demo/web/token",
            "/ecs-tunnels/demo/web/token2",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/demo/web/token",
        ] {
            assert_eq!(e.matches(other), Match::Elsewhere, "{other}");
        }
        assert_eq!(e.read_action(), "ssm:GetParameters");
        assert_eq!(e.policy_resource(), e.arn);
    }

    #[test]
    fn secrets_manager_accepts_the_arn_with_or_without_suffix_and_ecs_fields() {
        let e = sm();
        let base =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/demo/web/token";
        assert_eq!(e.arn, base);
        for ours in [
            base.to_string(),
            format!("{base}-AbC123"),
            format!("{base}-AbC123::AWSCURRENT:"),
            format!("{base}-AbC123:::"),
            format!("{base}::AWSCURRENT:"),
        ] {
            assert_eq!(e.matches(&ours), Match::Ours, "{ours}");
        }
        assert_eq!(
            e.matches(&format!("{base}-AbC123:token::")),
            Match::JsonKey("token".into())
        );
        assert_eq!(
            e.matches(&format!("{base}-AbC123::AWSPREVIOUS:")),
            Match::Pinned("version stage AWSPREVIOUS".into())
        );
        assert_eq!(
            e.matches(&format!("{base}-AbC123:::0123-v1")),
            Match::Pinned("version id 0123-v1".into())
        );
        for other in [
            "ecs-tunnels/demo/web/token".to_string(),
            format!("{base}2"),
            format!("{base}-AbC"),
            format!("{base}/x"),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/demo/api/token-AbC123"
                .to_string(),
        ] {
            assert_eq!(e.matches(&other), Match::Elsewhere, "{other}");
        }
        assert_eq!(e.policy_resource(), format!("{base}-*"));
        let full = e.with_secret_arn(&format!("{base}-XyZ789"));
        assert_eq!(full.arn, format!("{base}-XyZ789"));
        assert_eq!(full.policy_resource(), full.arn);
        assert_eq!(full.matches(&format!("{base}-AbC123")), Match::Ours);
        assert_eq!(full.read_action(), "secretsmanager:GetSecretValue");
    }
}
