//! The sidecar checks, pure over a parsed task definition: each says `Ok` (with what it
//! saw), the problems it found (each with its fix), or why it cannot judge.

use super::token_ref::{Expected, Match, Store};
use super::Finding;
use crate::task_definition::{Container, TaskDefinition, REDACTED};

/// Check names, as the report lists them.
pub mod name {
    /// A cloudflared container exists.
    pub const CONTAINER: &str = "cloudflared container";
    /// It runs `cloudflared tunnel run`.
    pub const COMMAND: &str = "command";
    /// `TUNNEL_TOKEN` comes from our parameter or secret.
    pub const TOKEN: &str = "TUNNEL_TOKEN";
    /// The execution role exists and may read the token.
    pub const ROLE: &str = "execution role";
    /// Something listens on the origin's port.
    pub const ORIGIN: &str = "origin";
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fine; what was seen.
    Ok(String),
    /// What is wrong.
    Problems(Vec<Finding>),
    /// Why it cannot be told.
    NotJudged(String),
}

/// The entry point and arguments of the stock image: `cloudflared --no-autoupdate`,
/// then `version` when no command is given.
const IMAGE_ENTRY_POINT: [&str; 2] = ["cloudflared", "--no-autoupdate"];
const IMAGE_COMMAND: &str = "version";

/// The command the contract asks for, as JSON.
pub const COMMAND_JSON: &str = r#"["tunnel", "--no-autoupdate", "run"]"#;

/// cloudflared's subcommands of `tunnel` other than `run` (none of them connects).
/// `info` is left out: it is also a `--loglevel` value.
const OTHER_SUBCOMMANDS: &[&str] = &[
    "login",
    "create",
    "route",
    "vnet",
    "list",
    "delete",
    "cleanup",
    "token",
    "ingress",
    "diag",
    "ready",
    "version",
    "update",
    "help",
    "access",
    "service",
    "proxy-dns",
    "tail",
];

fn finding(code: &'static str, message: String, fix: String) -> Finding {
    Finding { code, message, fix }
}

fn secret_json(expected: &Expected) -> String {
    format!(
        r#"{{"name": "TUNNEL_TOKEN", "valueFrom": "{}"}}"#,
        expected.arn
    )
}

/// The cloudflared sidecar: the first cloudflared container, essential ones first.
pub fn sidecar<'a>(td: &'a TaskDefinition, expected: &Expected) -> Result<&'a Container, Finding> {
    let mut all = td.cloudflared();
    all.sort_by_key(|c| !c.essential);
    all.into_iter().next().ok_or_else(|| {
        finding(
            "no-cloudflared",
            format!(
                "the task definition {} has no cloudflared container (image cloudflare/cloudflared)",
                td.name
            ),
            format!(
                r#"add an essential container with image cloudflare/cloudflared:latest, command {COMMAND_JSON} and the secret {}"#,
                secret_json(expected)
            ),
        )
    })
}

/// `Ok` when the container runs `cloudflared … tunnel … run …`.
pub fn command(c: &Container) -> Verdict {
    let entry: Vec<String> = match &c.entry_point {
        Some(e) => e.clone(),
        None => IMAGE_ENTRY_POINT.iter().map(|s| s.to_string()).collect(),
    };
    let binary = entry.first().map(String::as_str).unwrap_or_default();
    if binary.rsplit('/').next() != Some("cloudflared") {
        return Verdict::Problems(vec![finding(
            "entrypoint-override",
            format!(
                "the cloudflared container {} overrides the entry point with `{}`, which is not cloudflared",
                c.name,
                entry.join(" ")
            ),
            format!(
                "remove entryPoint from the container (the image's is cloudflared) and set its command to {COMMAND_JSON}"
            ),
        )]);
    }
    // Docker drops the image's command when the entry point is overridden.
    let args: Vec<String> = match (&c.command, &c.entry_point) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => vec![],
        (None, None) => vec![IMAGE_COMMAND.to_string()],
    };
    let mut argv: Vec<String> = entry[1..].to_vec();
    argv.extend(args.iter().cloned());
    let shown = format!("{binary} {}", argv.join(" ")).trim().to_string();
    if is_tunnel_run(&argv) {
        return Verdict::Ok(format!("runs `{shown}`"));
    }
    let (message, fix) = if c.command.is_none() && c.entry_point.is_none() {
        (
            format!(
                "the cloudflared container {} has no command, so the image's default runs (`{shown}`), which prints the version and exits",
                c.name
            ),
            format!("set its command to {COMMAND_JSON}"),
        )
    } else if c.entry_point.is_none()
        && args
            .first()
            .is_some_and(|a| a.rsplit('/').next() == Some("cloudflared"))
    {
        (
            format!(
                "the cloudflared container {} runs `{shown}`: its command repeats cloudflared, which the image's entry point already is",
                c.name
            ),
            format!("drop \"cloudflared\" from the start of its command: {COMMAND_JSON}"),
        )
    } else {
        (
            format!(
                "the cloudflared container {} runs `{shown}`, not `cloudflared tunnel run`",
                c.name
            ),
            format!("set its command to {COMMAND_JSON}"),
        )
    };
    Verdict::Problems(vec![finding("not-tunnel-run", message, fix)])
}

/// True when `args` (after the cloudflared binary) are `tunnel … run …`: flags (and
/// their values) may come before `tunnel` and between `tunnel` and `run`.
pub fn is_tunnel_run(args: &[String]) -> bool {
    let Some(tunnel) = next_word(args, 0) else {
        return false;
    };
    if args[tunnel] != "tunnel" {
        return false;
    }
    next_word(args, tunnel + 1).is_some_and(|run| args[run] == "run")
}

/// cloudflared's flags that take no value.
const BOOLEAN_FLAGS: &[&str] = &[
    "no-autoupdate",
    "no-tls-verify",
    "post-quantum",
    "no-chunked-encoding",
    "disable-chunked-encoding",
    "http2-origin",
    "hello-world",
    "bastion",
    "socks5",
    "ui",
];

/// The index of the first word (not a flag, not a flag's value) from `start`. A word
/// right after a flag that takes a value (and is written without `=`) is that flag's
/// value, unless it is a subcommand (or `cloudflared` itself).
fn next_word(args: &[String], start: usize) -> Option<usize> {
    let mut after_flag = false;
    for (i, a) in args.iter().enumerate().skip(start) {
        if a.starts_with('-') {
            let name = a.trim_start_matches('-');
            after_flag = !a.contains('=') && !BOOLEAN_FLAGS.contains(&name);
            continue;
        }
        let subcommand = matches!(a.as_str(), "tunnel" | "run" | "cloudflared")
            || OTHER_SUBCOMMANDS.contains(&a.as_str());
        if after_flag && !subcommand {
            after_flag = false;
            continue;
        }
        return Some(i);
    }
    None
}

/// `TUNNEL_TOKEN` comes from our parameter or secret, and from nowhere else.
pub fn token(c: &Container, expected: &Expected) -> Verdict {
    let mut problems = Vec::new();
    let argv: Vec<&String> = c
        .entry_point
        .iter()
        .chain(c.command.iter())
        .flatten()
        .collect();
    let on_command_line = argv.iter().any(|a| {
        let flag = a.trim_start_matches('-');
        a.starts_with('-') && (flag == "token" || flag.starts_with("token="))
    }) || argv.iter().any(|a| a.as_str() == REDACTED);
    if on_command_line {
        problems.push(finding(
            "token-on-command-line",
            format!(
                "the cloudflared container {} passes a token with --token on its command line: it never rotates, and anyone who can read the task definition can read it",
                c.name
            ),
            format!(
                "remove --token and its value from the command, rotate the token (ecs-tunnels rotate --compromised), and use the secret {}",
                secret_json(expected)
            ),
        ));
    }
    if c.environment.iter().any(|n| n == "TUNNEL_TOKEN") {
        problems.push(finding(
            "token-plain",
            format!(
                "TUNNEL_TOKEN is a plain environment value in the cloudflared container {}: it never rotates (ecs-tunnels rotates the token in {}), and anyone who can read the task definition can read it",
                c.name, expected.name
            ),
            format!(
                "remove TUNNEL_TOKEN from environment, rotate the token (ecs-tunnels rotate --compromised), and add to secrets {}",
                secret_json(expected)
            ),
        ));
    }
    let set = format!("set its valueFrom to {}", expected.arn);
    match c.secret("TUNNEL_TOKEN").map(|v| (v, expected.matches(v))) {
        Some((v, Match::Ours)) if problems.is_empty() => {
            return Verdict::Ok(format!("a secret from {v}"));
        }
        Some((_, Match::Ours)) => {}
        Some((v, Match::Elsewhere)) => {
            let bare = expected.store == Store::SecretsManager && !v.starts_with("arn:");
            problems.push(finding(
                "token-elsewhere",
                format!(
                    "TUNNEL_TOKEN in the cloudflared container {} reads {v}, not the token ecs-tunnels writes ({}){}",
                    c.name,
                    expected.arn,
                    if bare { "; ECS reads a name that is not an ARN as an SSM parameter" } else { "" }
                ),
                set,
            ));
        }
        Some((_, Match::JsonKey(key))) => problems.push(finding(
            "token-json-key",
            format!(
                "TUNNEL_TOKEN in the cloudflared container {} selects the JSON key {key} of the secret, but the secret holds the token as plain text",
                c.name
            ),
            set,
        )),
        Some((_, Match::Pinned(what))) => problems.push(finding(
            "token-pinned",
            format!(
                "TUNNEL_TOKEN in the cloudflared container {} is pinned to {what} of the secret: after a rotation the sidecar keeps starting with an old token",
                c.name
            ),
            set,
        )),
        None if problems.is_empty() => problems.push(finding(
            "token-missing",
            format!(
                "the cloudflared container {} has no TUNNEL_TOKEN secret, so cloudflared has no token to connect with",
                c.name
            ),
            format!("add to its secrets {}", secret_json(expected)),
        )),
        None => {}
    }
    Verdict::Problems(problems)
}

/// The execution role's name, or the finding that there is none.
pub fn execution_role(td: &TaskDefinition, expected: &Expected) -> Result<String, Finding> {
    match &td.execution_role_arn {
        Some(arn) => Ok(arn.rsplit('/').next().unwrap_or(arn).to_string()),
        None => Err(finding(
            "no-execution-role",
            format!(
                "the task definition {} has no execution role, so ECS cannot read the TUNNEL_TOKEN secret and the task does not start",
                td.name
            ),
            format!(
                "set executionRoleArn to a role that ecs-tasks.amazonaws.com may assume, allowed {} on {}",
                expected.read_action(),
                expected.policy_resource()
            ),
        )),
    }
}

/// The role's verdict from the policy evaluator's decision.
pub fn role_permission(
    role_arn: &str,
    decision: &super::policy::Decision,
    expected: &Expected,
) -> Verdict {
    use super::policy::Decision;
    let (action, resource) = (expected.read_action(), expected.policy_resource());
    let statement =
        format!(r#"{{"Effect": "Allow", "Action": "{action}", "Resource": "{resource}"}}"#);
    let f = |message: String, fix: String| {
        Verdict::Problems(vec![finding("role-cannot-read-token", message, fix)])
    };
    match decision {
        Decision::Allowed => Verdict::Ok(format!("{role_arn} may {action} on {resource}")),
        Decision::Unjudged(why) => Verdict::NotJudged(format!(
            "whether {role_arn} may {action} on {resource} depends on {why}"
        )),
        Decision::ImplicitDeny => f(
            format!(
                "the execution role {role_arn} is not allowed {action} on {resource}, so ECS cannot read the token and the task does not start"
            ),
            format!("add to the role's policies the statement {statement}"),
        ),
        Decision::ExplicitDeny(by) => f(
            format!(
                "the execution role {role_arn} is denied {action} on {resource} by {by}, so ECS cannot read the token and the task does not start"
            ),
            "change that statement so that it does not deny the token".to_string(),
        ),
        Decision::NotInBoundary(boundary) => f(
            format!(
                "the permissions boundary {boundary} of the execution role {role_arn} does not allow {action} on {resource}, so ECS cannot read the token"
            ),
            format!("allow it in the boundary: {statement}"),
        ),
    }
}

/// The finding for an execution role that does not exist.
pub fn role_missing(role_arn: &str, expected: &Expected) -> Finding {
    finding(
        "role-missing",
        format!("the execution role {role_arn} does not exist, so the task does not start"),
        format!(
            "create it (trusting ecs-tasks.amazonaws.com, allowed {} on {}) or point executionRoleArn at one that does",
            expected.read_action(),
            expected.policy_resource()
        ),
    )
}

/// An origin URL's host and port (the scheme's default for http and https).
pub fn origin_host_port(origin: &str) -> Option<(String, Option<u16>)> {
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        },
    };
    Some((host.to_ascii_lowercase(), port))
}

/// On `localhost`, some container of the task declares the origin's port, and the task
/// shares localhost between its containers.
pub fn origin(td: &TaskDefinition, origin: Option<&str>) -> Verdict {
    let Some(origin) = origin else {
        return Verdict::NotJudged(
            "no origin is known (no ecs-tunnels:origin tag, no container port to default to)"
                .into(),
        );
    };
    let Some((host, port)) = origin_host_port(origin) else {
        return Verdict::NotJudged(format!("the origin {origin} is not a URL"));
    };
    if !matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1") {
        return Verdict::NotJudged(format!(
            "the origin's host {host} is not localhost: whether it answers cannot be seen from the task definition"
        ));
    }
    let Some(port) = port else {
        return Verdict::NotJudged(format!("the origin {origin} names no port"));
    };
    let mode = td.network_mode.as_deref().unwrap_or("bridge");
    if !matches!(mode, "awsvpc" | "host") {
        return Verdict::Problems(vec![finding(
            "origin-not-shared",
            format!(
                "the origin {origin} is on localhost, but the task definition {} uses network mode {mode}, where each container has its own localhost",
                td.name
            ),
            "use network mode awsvpc, or point the ecs-tunnels:origin tag at an address the app container answers on".into(),
        )]);
    }
    let others: Vec<&Container> = td
        .containers
        .iter()
        .filter(|c| !c.is_cloudflared())
        .collect();
    if let Some(c) = others.iter().find(|c| c.declares_port(port)) {
        return Verdict::Ok(format!(
            "{origin}: container {} declares port {port}",
            c.name
        ));
    }
    let declared: Vec<String> = others
        .iter()
        .flat_map(|c| c.ports.iter())
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    Verdict::Problems(vec![finding(
        "origin-port-not-declared",
        format!(
            "the origin {origin} is port {port} on localhost, but no container of the task definition {} declares port {port}{}",
            td.name,
            if declared.is_empty() {
                String::new()
            } else {
                format!(" (they declare {})", declared.join(", "))
            }
        ),
        format!(
            "set the ecs-tunnels:origin tag to the port the app listens on, or add a portMappings entry for {port} to the app container"
        ),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn expected() -> Expected {
        Expected::new(
            Store::Ssm,
            "/ecs-tunnels/demo/web/token",
            "aws",
            "us-east-1",
            "123456789012",
        )
    }

    fn sidecar_with(command: Option<&[&str]>) -> Container {
        Container {
            name: "cloudflared".into(),
            image: "cloudflare/cloudflared:latest".into(),
            essential: true,
            command: command.map(s),
            secrets: vec![("TUNNEL_TOKEN".into(), expected().arn)],
            ..Container::default()
        }
    }

    fn codes(v: &Verdict) -> Vec<&'static str> {
        match v {
            Verdict::Problems(p) => p.iter().map(|f| f.code).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn tunnel_run_with_flags_anywhere() {
        for ok in [
            &["tunnel", "run"][..],
            &["--no-autoupdate", "tunnel", "--no-autoupdate", "run"],
            &[
                "tunnel",
                "--loglevel",
                "debug",
                "--metrics=0.0.0.0:2000",
                "run",
            ],
            &["--loglevel", "info", "tunnel", "run", "my-tunnel"],
            &["tunnel", "--protocol", "http2", "run", "--token", REDACTED],
        ] {
            assert!(is_tunnel_run(&s(ok)), "{ok:?}");
        }
        for bad in [
            &[][..],
            &["version"],
            &["tunnel"],
            &["tunnel", "login"],
            &["tunnel", "list", "run"],
            &["tunnel", "--config", "list", "run"],
            &["cloudflared", "tunnel", "run"],
            &["run", "tunnel"],
            &["access", "tcp"],
        ] {
            assert!(!is_tunnel_run(&s(bad)), "{bad:?}");
        }
    }

    #[test]
    fn commands_that_do_not_connect() {
        assert!(matches!(
            command(&sidecar_with(Some(&["tunnel", "--no-autoupdate", "run"]))),
            Verdict::Ok(m) if m == "runs `cloudflared --no-autoupdate tunnel --no-autoupdate run`"
        ));
        let none = command(&sidecar_with(None));
        assert_eq!(codes(&none), ["not-tunnel-run"]);
        let Verdict::Problems(p) = none else { panic!() };
        assert!(p[0].message.contains("no command") && p[0].message.contains("version"));
        let repeated = command(&sidecar_with(Some(&["cloudflared", "tunnel", "run"])));
        let Verdict::Problems(p) = repeated else {
            panic!()
        };
        assert!(p[0].fix.contains("drop \"cloudflared\""), "{p:?}");
        assert_eq!(
            codes(&command(&sidecar_with(Some(&["tunnel", "login"])))),
            ["not-tunnel-run"]
        );
        let mut shell = sidecar_with(Some(&["cloudflared tunnel run"]));
        shell.entry_point = Some(s(&["sh", "-c"]));
        assert_eq!(codes(&command(&shell)), ["entrypoint-override"]);
        let mut full_path = sidecar_with(Some(&["tunnel", "run"]));
        full_path.entry_point = Some(s(&["/usr/local/bin/cloudflared", "--no-autoupdate"]));
        assert!(matches!(command(&full_path), Verdict::Ok(_)));
        let mut no_cmd = sidecar_with(None);
        no_cmd.entry_point = Some(s(&["cloudflared"]));
        assert_eq!(codes(&command(&no_cmd)), ["not-tunnel-run"]);
    }

    #[test]
    fn token_wiring() {
        let e = expected();
        assert!(matches!(token(&sidecar_with(None), &e), Verdict::Ok(_)));
        let mut bare = sidecar_with(None);
        bare.secrets = vec![("TUNNEL_TOKEN".into(), e.name.clone())];
        assert!(matches!(token(&bare, &e), Verdict::Ok(_)));

        let mut missing = sidecar_with(None);
        missing.secrets.clear();
        assert_eq!(codes(&token(&missing, &e)), ["token-missing"]);

        let mut plain = missing.clone();
        plain.environment = vec!["TUNNEL_TOKEN".into()];
        let v = token(&plain, &e);
        assert_eq!(codes(&v), ["token-plain"]);
        let Verdict::Problems(p) = v else { panic!() };
        assert!(p[0].message.contains("never rotates"), "{p:?}");

        let mut elsewhere = sidecar_with(None);
        elsewhere.secrets = vec![(
            "TUNNEL_TOKEN".into(),
            "arn:aws:ssm:us-east-1:123456789012:parameter/my/token".into(),
        )];
        let v = token(&elsewhere, &e);
        assert_eq!(codes(&v), ["token-elsewhere"]);
        let Verdict::Problems(p) = v else { panic!() };
        assert!(p[0].fix.contains(&e.arn), "{p:?}");

        let mut flag = sidecar_with(Some(&["tunnel", "run", "--token", REDACTED]));
        flag.secrets.clear();
        assert_eq!(codes(&token(&flag, &e)), ["token-on-command-line"]);
        let both = sidecar_with(Some(&["tunnel", "run", &format!("--token={REDACTED}")]));
        assert_eq!(codes(&token(&both, &e)), ["token-on-command-line"]);
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_host_port("http://localhost:8080"),
            Some(("localhost".into(), Some(8080)))
        );
        assert_eq!(
            origin_host_port("https://127.0.0.1/x"),
            Some(("127.0.0.1".into(), Some(443)))
        );
        assert_eq!(
            origin_host_port("http://[::1]"),
            Some(("::1".into(), Some(80)))
        );
        assert_eq!(
            origin_host_port("tcp://localhost"),
            Some(("localhost".into(), None))
        );
        assert_eq!(origin_host_port("localhost:80"), None);

        let app = |ports: Vec<(u16, u16)>| Container {
            name: "app".into(),
            image: "nginx".into(),
            essential: true,
            ports,
            ..Container::default()
        };
        let td = |mode: &str, ports| TaskDefinition {
            name: "web:1".into(),
            network_mode: Some(mode.into()),
            containers: vec![app(ports), sidecar_with(None)],
            ..TaskDefinition::default()
        };
        assert!(matches!(
            origin(
                &td("awsvpc", vec![(8080, 8080)]),
                Some("http://localhost:8080")
            ),
            Verdict::Ok(_)
        ));
        assert!(matches!(
            origin(
                &td("awsvpc", vec![(8000, 8100)]),
                Some("http://localhost:8080")
            ),
            Verdict::Ok(_)
        ));
        let v = origin(&td("awsvpc", vec![(8080, 8080)]), Some("http://localhost"));
        assert_eq!(codes(&v), ["origin-port-not-declared"]);
        let Verdict::Problems(p) = v else { panic!() };
        assert!(p[0].message.contains("port 80 ") && p[0].message.contains("they declare 8080"));
        assert_eq!(
            codes(&origin(
                &td("bridge", vec![(8080, 8080)]),
                Some("http://localhost:8080")
            )),
            ["origin-not-shared"]
        );
        assert!(matches!(
            origin(&td("awsvpc", vec![]), Some("http://app.internal:8080")),
            Verdict::NotJudged(_)
        ));
        assert!(matches!(
            origin(&td("awsvpc", vec![]), None),
            Verdict::NotJudged(_)
        ));
    }
}
