//! The README's recipe for trying the CLI, run as written: `scripts/sandbox.sh start`,
//! `source .sandbox/env`, `ecs-tunnels plan` / `apply`, `scripts/sandbox.sh stop`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sandbox(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(repo().join("scripts/sandbox.sh"))
        .args(args)
        .env("SANDBOX_DIR", dir)
        .output()
        .expect("run scripts/sandbox.sh")
}

/// The `export K=V` lines of the env file, as `source` would read them.
fn exports(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .expect("env file")
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cli(env: &[(String, String)], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-tunnels"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run ecs-tunnels");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_cli_recipe_against_the_sandbox_works_as_written() {
    let dir = std::env::temp_dir().join(format!("ecs-tunnels-sandbox-{}", std::process::id()));
    // The test build already made the binaries the script would build.
    let started = sandbox(&dir, &["start", "--no-build"]);
    let stop = || {
        sandbox(&dir, &["stop"]);
    };
    if !started.status.success() {
        stop();
        panic!(
            "sandbox did not start: {}{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr)
        );
    }
    let env = exports(&dir.join("env"));
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "CLOUDFLARE_ACCOUNT_ID",
        "CLOUDFLARE_API_TOKEN",
        "CLOUDFLARE_API_URL",
    ] {
        assert!(env.iter().any(|(k, _)| k == key), "{key} missing: {env:?}");
    }
    let plan = cli(&env, &["plan", "--cluster", "demo", "--service", "web"]);
    let apply = cli(&env, &["apply", "--cluster", "demo", "--service", "web"]);
    let again = cli(&env, &["plan", "--cluster", "demo", "--service", "web"]);
    stop();
    assert_eq!(plan.0, 0, "{}", plan.1);
    assert!(
        plan.1.contains("create_tunnel") && plan.1.contains("create_dns"),
        "{}",
        plan.1
    );
    assert!(
        !plan.1.contains("IMDS") && !plan.1.contains("credentials"),
        "{}",
        plan.1
    );
    assert_eq!(apply.0, 0, "{}", apply.1);
    assert_eq!(again.0, 0, "{}", again.1);
    assert!(again.1.contains("demo/web: ready"), "{}", again.1);
    assert!(!dir.join("env").exists(), "stop removes the env file");
}
