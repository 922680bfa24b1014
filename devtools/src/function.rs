//! Runs the function binary as a Lambda would: no arguments, the Lambda environment
//! variables set, and its output captured.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Function name, as in `AWS_LAMBDA_FUNCTION_NAME`.
pub const FUNCTION_NAME: &str = "ecs-tunnels";

/// Variables copied from the test's own environment into the function's; everything else
/// is left out, so a developer's `AWS_PROFILE`, `AWS_ENDPOINT_URL_*` or
/// `AWS_LAMBDA_LOG_LEVEL` can never leak into a test.
pub const PASSTHROUGH_ENV: &[&str] = &[
    "PATH",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "LLVM_PROFILE_FILE",
    "CARGO_LLVM_COV",
    "CARGO_LLVM_COV_TARGET_DIR",
];

/// A running function process. It is killed when dropped.
pub struct FunctionProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl FunctionProcess {
    /// Starts `binary` with no arguments and a Lambda-like environment.
    ///
    /// The environment is cleared except for [`PASSTHROUGH_ENV`], then these are set:
    /// `AWS_LAMBDA_RUNTIME_API=<runtime_api_endpoint>`, `AWS_LAMBDA_FUNCTION_NAME=ecs-tunnels`,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, `AWS_LAMBDA_FUNCTION_VERSION=$LATEST`,
    /// `AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_LOG_GROUP_NAME`, `AWS_LAMBDA_LOG_STREAM_NAME`,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=on-demand`, `AWS_EXECUTION_ENV=AWS_Lambda_provided.al2023`
    /// and `TZ=:UTC`; finally `env`, which overrides any of them.
    ///
    /// stdout and stderr are read line by line into one buffer by background tasks, so
    /// this must be called within a tokio runtime.
    pub fn spawn(
        binary: &Path,
        runtime_api_endpoint: &str,
        env: &[(String, String)],
    ) -> std::io::Result<FunctionProcess> {
        let mut cmd = Command::new(binary);
        cmd.env_clear();
        for key in PASSTHROUGH_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("AWS_LAMBDA_RUNTIME_API", runtime_api_endpoint)
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{FUNCTION_NAME}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("2026/01/01/[$LATEST]{}", uuid::Uuid::new_v4().simple()),
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("TZ", ":UTC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(collect(out, lines.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(collect(err, lines.clone())));
        }
        Ok(FunctionProcess {
            child,
            lines,
            readers,
        })
    }

    /// Everything printed so far on stdout and stderr, one line per line, in arrival order.
    pub fn output(&self) -> String {
        join_lines(&self.lines)
    }

    /// The output lines printed so far.
    pub fn output_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until a printed line contains `needle`; false if `timeout` passes first.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let start = tokio::time::Instant::now();
        loop {
            if self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process id (None once the process has been reaped).
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Kills the process (SIGKILL), waits for it, and returns all of its output.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        for r in std::mem::take(&mut self.readers) {
            // The pipes close with the process; do not hang on a grandchild holding them.
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        join_lines(&self.lines)
    }

    /// Peak resident set size (`VmHWM` from `/proc/<pid>/status`) in KiB, while the
    /// process is alive.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        // None once reaped, so a recycled pid is never read.
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn collect(stream: impl AsyncRead + Unpin, lines: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        }
    }
}

fn join_lines(lines: &Mutex<Vec<String>>) -> String {
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
