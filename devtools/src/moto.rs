//! Starts moto's server (an AWS API emulator) on a free `127.0.0.1` port.
//!
//! moto is started through `moto_launcher.py` (embedded here), which fixes moto's Secrets
//! Manager stale-default-version bug and silences request logging. The interpreter is
//! `$MOTO_PYTHON`, else `<workspace>/.venv/bin/python` if it exists, else `python3`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The launcher script, run with `python -c`.
pub const LAUNCHER: &str = include_str!("../moto_launcher.py");

/// The region every helper here uses.
pub const REGION: &str = "us-east-1";

/// moto's fixed account id.
pub const ACCOUNT_ID: &str = "123456789012";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 3;

/// A running moto server. It is killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// The Python interpreter used to run moto.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// The cargo workspace root (the parent of the devtools crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

impl Moto {
    /// Starts moto on a free port and waits (up to 30 s) until `GET /moto-api/` answers.
    ///
    /// Errors say how to install moto when the interpreter cannot import it.
    pub async fn start() -> Result<Moto, String> {
        let python = python();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building HTTP client: {e}"))?;
        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
            match Self::start_on(&python, port, http.clone()).await {
                Ok(m) => return Ok(m),
                Err(StartError::Fatal(e)) => return Err(e),
                // Most likely someone else took the port between our probe and moto's bind.
                Err(StartError::Retry(e)) => last_err = e,
            }
        }
        Err(last_err)
    }

    async fn start_on(
        python: &PathBuf,
        port: u16,
        http: reqwest::Client,
    ) -> Result<Moto, StartError> {
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(LAUNCHER)
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            StartError::Fatal(format!(
                "cannot run {} ({e}); install Python 3 and moto: \
                 python3 -m venv .venv && .venv/bin/pip install 'moto[server]' \
                 (or set MOTO_PYTHON)",
                python.display()
            ))
        })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect(err, output.clone()));
        }
        let mut moto = Moto {
            child,
            port,
            output,
            http,
        };
        let started = Instant::now();
        let probe = format!("{}/moto-api/", moto.endpoint());
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                // Let the readers drain the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let out = moto.logs();
                if out.contains("MOTO_NOT_INSTALLED") {
                    return Err(StartError::Fatal(format!(
                        "moto is not installed for {}: pip install 'moto[server]' \
                         (e.g. python3 -m venv .venv && .venv/bin/pip install 'moto[server]', \
                         or set MOTO_PYTHON)\n{out}",
                        python.display()
                    )));
                }
                let msg = format!("moto exited during start-up ({status}):\n{out}");
                return Err(if out.contains("Address already in use") {
                    StartError::Retry(msg)
                } else {
                    StartError::Fatal(msg)
                });
            }
            let ok = moto
                .http
                .get(&probe)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(moto);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(StartError::Fatal(format!(
                    "moto did not answer GET {probe} within {START_TIMEOUT:?}:\n{}",
                    moto.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points an AWS SDK at this moto: `AWS_ENDPOINT_URL`,
    /// `AWS_REGION` and `AWS_DEFAULT_REGION` (`us-east-1`), dummy keys
    /// (`AWS_ACCESS_KEY_ID=test`, `AWS_SECRET_ACCESS_KEY=test`) and
    /// `AWS_EC2_METADATA_DISABLED=true`.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// An SDK configuration for this moto (endpoint, `us-east-1`, static test keys), for
    /// tests that create or inspect resources directly. Ignores the caller's AWS
    /// environment and profile files.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_sdk_ecs::config::{Credentials, Region};
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .load()
            .await
    }

    /// Clears all of moto's state (`POST /moto-api/reset`).
    ///
    /// # Panics
    /// If moto does not accept the reset (a test helper: failing loudly is the point).
    pub async fn reset(&self) {
        let url = format!("{}/moto-api/reset", self.endpoint());
        let res = self.http.post(&url).send().await;
        match res {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => panic!("POST {url}: HTTP {}", r.status()),
            Err(e) => panic!("POST {url}: {e}"),
        }
    }

    /// moto's own output so far (stdout and stderr; request logging is off).
    pub fn logs(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

enum StartError {
    Retry(String),
    Fatal(String),
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Keeps at most this many lines of moto output.
const MAX_LINES: usize = 2000;

async fn collect(stream: impl AsyncRead + Unpin, lines: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(stream).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() >= MAX_LINES {
            l.remove(0);
        }
        l.push(line);
    }
}
