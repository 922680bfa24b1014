//! Simulated cloudflared sidecars for a whole install: a background task that watches
//! the token parameters in moto (as ECS would start new tasks with each new token) and
//! connects one replica to the simulator for each new token value. Benchmarks use it so
//! that a create publishes its hostname as it would on AWS, after the sidecar connects.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

/// The running watcher; dropping it stops the sidecars from connecting new tokens.
pub struct Sidecars(JoinHandle<()>);

impl Drop for Sidecars {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching the SSM parameters under `prefix` every `every`; a token value not
/// seen before is connected at `hooks_url` (`/__sim` of the simulator) after `delay`.
pub fn start(
    cfg: &aws_config::SdkConfig,
    prefix: &str,
    hooks_url: &str,
    every: Duration,
    delay: Duration,
) -> Sidecars {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    let prefix = prefix.to_string();
    let connect_url = format!("{hooks_url}/connectors");
    Sidecars(tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let mut next = None;
            loop {
                let Ok(page) = ssm
                    .get_parameters_by_path()
                    .path(&prefix)
                    .recursive(true)
                    .with_decryption(true)
                    .set_next_token(next.take())
                    .send()
                    .await
                else {
                    break;
                };
                for p in page.parameters() {
                    let (Some(name), Some(value)) = (p.name(), p.value()) else {
                        continue;
                    };
                    if seen.get(name).map(String::as_str) == Some(value) {
                        continue;
                    }
                    seen.insert(name.to_string(), value.to_string());
                    let (http, url, token) = (http.clone(), connect_url.clone(), value.to_string());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = http.post(url).json(&json!({ "token": token })).send().await;
                    });
                }
                match page.next_token() {
                    Some(t) => next = Some(t.to_string()),
                    None => break,
                }
            }
            tokio::time::sleep(every).await;
        }
    }))
}
