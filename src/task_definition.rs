//! A task definition as ecs-tunnels reads it: the containers, their images, commands,
//! secrets and ports, the execution role and the network mode. Parsed once from
//! `DescribeTaskDefinition` ([`crate::aws::ecs::Ecs::task_definition`]); the default
//! origin and the sidecar checks of [`crate::diagnose`] are pure functions of it.
//!
//! Nothing here holds a secret: environment values are dropped (only their names are
//! kept) and the value of a `--token` on a command line is replaced by [`REDACTED`].

use serde::Serialize;

/// What replaces the value of a `--token` flag in a parsed command.
pub const REDACTED: &str = "<redacted>";

/// A parsed task definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskDefinition {
    /// `taskDefinitionArn`.
    pub arn: String,
    /// `<family>:<revision>`, how a person names it.
    pub name: String,
    /// `networkMode`: `awsvpc`, `bridge`, `host`, `none`, or `None` (EC2's default, bridge).
    pub network_mode: Option<String>,
    /// `executionRoleArn`: the role ECS uses to pull images and read secrets.
    pub execution_role_arn: Option<String>,
    /// The containers, in order.
    pub containers: Vec<Container>,
}

/// One container definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Container {
    /// `name`.
    pub name: String,
    /// `image`.
    pub image: String,
    /// `essential` (ECS's default is true).
    pub essential: bool,
    /// `entryPoint`, when set (a `--token` value redacted).
    pub entry_point: Option<Vec<String>>,
    /// `command`, when set (a `--token` value redacted).
    pub command: Option<Vec<String>>,
    /// Names of the plain `environment` variables (values are never kept).
    pub environment: Vec<String>,
    /// `secrets`: (name, valueFrom).
    pub secrets: Vec<(String, String)>,
    /// Container ports and port ranges, inclusive (a single port is `(p, p)`).
    pub ports: Vec<(u16, u16)>,
}

impl Container {
    /// True for the cloudflared sidecar: a container named `cloudflared`, or whose image
    /// is cloudflared ([`is_cloudflared_image`]).
    pub fn is_cloudflared(&self) -> bool {
        self.name == "cloudflared" || is_cloudflared_image(&self.image)
    }

    /// The `valueFrom` of the secret called `name`.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True when the container declares `port` (a container port, or inside a range).
    pub fn declares_port(&self, port: u16) -> bool {
        self.ports.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// True for the cloudflared image: `cloudflare/cloudflared` with any tag or digest, on
/// Docker Hub (`docker.io/…`, `registry-1.docker.io/…`) or any registry or mirror whose
/// repository path ends in `cloudflared` (`<account>.dkr.ecr.<region>.amazonaws.com/
/// mirror/cloudflared:2024.1.0`, `public.ecr.aws/…/cloudflared@sha256:…`).
pub fn is_cloudflared_image(image: &str) -> bool {
    repository(image).rsplit('/').next() == Some("cloudflared")
}

/// The repository part of an image reference: without `@digest` and without `:tag` (a
/// `:` before the last `/` is a registry port, not a tag).
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// Replaces the value of every `--token`/`-token` flag (`--token X` and `--token=X`) by
/// [`REDACTED`], and any argument that looks like a tunnel token (a long base64 JSON
/// object, `eyJ…`).
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut after_flag = false;
    for a in args {
        let flag = a.trim_start_matches('-');
        if after_flag {
            out.push(REDACTED.to_string());
            after_flag = false;
        } else if a.starts_with('-') && flag == "token" {
            out.push(a.clone());
            after_flag = true;
        } else if a.starts_with('-') && flag.starts_with("token=") {
            out.push(format!("{}={REDACTED}", a.split('=').next().unwrap_or(a)));
        } else if looks_like_token(a) {
            out.push(REDACTED.to_string());
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// A tunnel token is base64 of a JSON object: it starts with `eyJ` and is long.
fn looks_like_token(arg: &str) -> bool {
    arg.len() >= 40 && arg.starts_with("eyJ") && !arg.contains(' ')
}

impl TaskDefinition {
    /// The cloudflared containers.
    pub fn cloudflared(&self) -> Vec<&Container> {
        self.containers
            .iter()
            .filter(|c| c.is_cloudflared())
            .collect()
    }

    /// `http://localhost:<port>` for the first container port of the first essential
    /// container that is not cloudflared.
    pub fn default_origin(&self) -> Option<String> {
        self.containers
            .iter()
            .find(|c| c.essential && !c.is_cloudflared())
            .and_then(|c| c.ports.first())
            .map(|(p, _)| format!("http://localhost:{p}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cloudflared_images_with_tags_digests_and_mirrors() {
        for image in [
            "cloudflare/cloudflared",
            "cloudflare/cloudflared:latest",
            "cloudflare/cloudflared:2024.1.0",
            "docker.io/cloudflare/cloudflared@sha256:0123abcd",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/cloudflared:2024.1.0",
            "registry.local:5000/cloudflared",
            "public.ecr.aws/x/cloudflared:latest@sha256:00",
        ] {
            assert!(is_cloudflared_image(image), "{image}");
        }
        for image in [
            "nginx",
            "cloudflare/cloudflared-proxy:1",
            "registry.local:5000/cloudflared/app",
            "my-cloudflared",
        ] {
            assert!(!is_cloudflared_image(image), "{image}");
        }
    }

    #[test]
    fn token_values_are_redacted() {
        let tok = format!("eyJ{}", "a".repeat(60));
        assert_eq!(
            redact_args(&s(&["tunnel", "run", "--token", &tok])),
            s(&["tunnel", "run", "--token", REDACTED])
        );
        assert_eq!(
            redact_args(&s(&["tunnel", "run", &format!("--token={tok}")])),
            s(&["tunnel", "run", &format!("--token={REDACTED}")])
        );
        assert_eq!(
            redact_args(&s(&["sh", "-c", &tok])),
            s(&["sh", "-c", REDACTED])
        );
        assert_eq!(
            redact_args(&s(&["tunnel", "--no-autoupdate", "run"])),
            s(&["tunnel", "--no-autoupdate", "run"])
        );
    }

    #[test]
    fn default_origin_skips_cloudflared_and_non_essential_containers() {
        let c = |name: &str, image: &str, essential: bool, port: u16| Container {
            name: name.into(),
            image: image.into(),
            essential,
            ports: vec![(port, port)],
            ..Container::default()
        };
        let td = TaskDefinition {
            containers: vec![
                c("tunnel", "mirror/cloudflared:1", true, 2000),
                c("logs", "fluent-bit", false, 2020),
                c("app", "nginx", true, 8080),
            ],
            ..TaskDefinition::default()
        };
        assert_eq!(
            td.default_origin().as_deref(),
            Some("http://localhost:8080")
        );
    }
}
