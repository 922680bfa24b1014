//! The world a benchmark runs the release binary in: moto behind the AWS proxy (which
//! counts AWS calls by operation and can add a latency to each), the Cloudflare simulator,
//! and the Lambda Runtime API emulator the function polls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sim_log::{self, SimRequests};
use crate::aws_proxy::AwsProxy;
use crate::cloudflare_sim::{self, RunningSim, SimOptions};
use crate::function::FunctionProcess;
use crate::moto::Moto;
use crate::runtime_api::{Invocation, RuntimeApi};

/// The Cloudflare API token the benchmarks use.
pub const API_TOKEN: &str = "bench-token";

/// How long one invocation may take (a sweep of 1,000 services included).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(900);

/// moto, the AWS proxy, the simulator and the Runtime API emulator.
pub struct Peers {
    /// AWS.
    pub moto: Moto,
    /// Between the function and moto.
    pub proxy: AwsProxy,
    /// Cloudflare.
    pub sim: RunningSim,
    /// The Lambda Runtime API the function polls.
    pub rt: RuntimeApi,
    /// For seeding and inspecting moto directly (not through the proxy).
    pub sdk: aws_config::SdkConfig,
    /// For the simulator's hooks.
    pub http: reqwest::Client,
    binary: PathBuf,
    extra_env: Vec<(String, String)>,
}

/// What one invocation cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The invocation and the function's answer.
    pub invocation: Invocation,
    /// The Cloudflare requests it made, as the simulator logged them.
    pub cf: SimRequests,
    /// The AWS calls it made, by `service:Operation`.
    pub aws: BTreeMap<String, usize>,
    /// From handing the event over to the answer.
    pub wall: Duration,
}

impl Measured {
    /// AWS calls in all.
    pub fn aws_total(&self) -> usize {
        self.aws.values().sum()
    }

    /// The function's answer (`Null` for an error outcome).
    pub fn response(&self) -> Value {
        self.invocation
            .outcome
            .response()
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The first outcome's `state` of an event answer (`ready`, `removed`, ...),
    /// `ignored (why)` for an event the function ignored, or what went wrong.
    pub fn state(&self) -> String {
        let Some(r) = self.invocation.outcome.response() else {
            return format!("error: {:?}", self.invocation.outcome);
        };
        if let Some(state) = r["outcomes"][0]["state"].as_str() {
            return state.to_string();
        }
        match r["ignored"].as_array().filter(|a| !a.is_empty()) {
            Some(why) => {
                let why: Vec<&str> = why.iter().filter_map(Value::as_str).collect();
                format!("ignored ({})", why.join("; "))
            }
            None => format!("no outcome: {r}"),
        }
    }
}

/// Resolves a binary path given relative to the workspace.
pub fn binary_path(binary: &Path) -> PathBuf {
    if binary.is_absolute() {
        binary.to_path_buf()
    } else {
        crate::moto::workspace_root().join(binary)
    }
}

impl Peers {
    /// Starts everything; `sim` gets [`API_TOKEN`]. `extra_env` is added to the function's
    /// environment (after the defaults, so it can override them).
    pub async fn start(
        binary: &Path,
        mut sim: SimOptions,
        extra_env: &[(&str, &str)],
    ) -> Result<Peers, String> {
        sim.api_token = API_TOKEN.into();
        let moto = Moto::start().await?;
        let proxy = AwsProxy::start(&moto.endpoint())
            .await
            .map_err(|e| format!("AWS proxy: {e}"))?;
        let sim = cloudflare_sim::start(sim)
            .await
            .map_err(|e| format!("Cloudflare simulator: {e}"))?;
        let rt = RuntimeApi::start()
            .await
            .map_err(|e| format!("Runtime API emulator: {e}"))?;
        let sdk = moto.sdk_config().await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let binary = binary_path(binary);
        if !binary.exists() {
            return Err(format!(
                "{} does not exist: cargo build --release -p ecs-tunnels --bin ecs-tunnels",
                binary.display()
            ));
        }
        Ok(Peers {
            moto,
            proxy,
            sim,
            rt,
            sdk,
            http,
            binary,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// The function's environment: AWS through the proxy, Cloudflare at the simulator,
    /// `RUST_LOG=warn`, no API budget pacing, then the extra variables.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.aws_env();
        env.extend(
            [
                ("AWS_ENDPOINT_URL", self.proxy.endpoint()),
                (
                    "CLOUDFLARE_ACCOUNT_ID",
                    SimOptions::default().account_id.clone(),
                ),
                ("CLOUDFLARE_API_TOKEN", API_TOKEN.to_string()),
                ("CLOUDFLARE_API_URL", self.sim.base_url.clone()),
                ("RUST_LOG", "warn".to_string()),
                // The operations' own cost and speed, not the API budget's pacing
                // (scripts/bench-storm.sh measures that).
                ("ECS_TUNNELS_API_BUDGET", "0".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts a function process and waits until it polls for an event (its cold start
    /// is done then; its first event still pays for what it loads lazily).
    pub async fn spawn(&self) -> Result<FunctionProcess, String> {
        let before = self.rt.polling();
        let f = FunctionProcess::spawn(&self.binary, &self.rt.endpoint(), &self.function_env())
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        if !self
            .rt
            .wait_for_pollers(before + 1, Duration::from_secs(30))
            .await
        {
            return Err(format!("the function did not start: {}", f.output()));
        }
        Ok(f)
    }

    /// Invokes the function with `event` and measures what it cost: the simulator's
    /// counters and the proxy's record are emptied first.
    pub async fn measure(&self, event: Value) -> Result<Measured, String> {
        sim_log::reset_requests(&self.http, &self.sim.hooks_url).await?;
        self.proxy.clear_calls();
        let started = Instant::now();
        let invocation = self
            .rt
            .invoke_with_deadline(event, INVOKE_TIMEOUT, INVOKE_TIMEOUT)
            .await?;
        let wall = started.elapsed();
        let cf = sim_log::requests(&self.http, &self.sim.hooks_url).await?;
        Ok(Measured {
            invocation,
            cf,
            aws: self.proxy.calls_by_operation(),
            wall,
        })
    }
}
