//! An event storm through the event door, delivered the way `infra/template.yaml` wires
//! it: an SQS queue read by an event source mapping with the template's `BatchSize`,
//! `MaximumBatchingWindowInSeconds` and `ScalingConfig.MaximumConcurrency`, partial batch
//! responses (a failed message comes back after the queue's visibility timeout, and goes
//! to the dead-letter queue after `maxReceiveCount` receives), and each invocation given
//! the function's `Timeout`.
//!
//! [`EventDoor::from_template`] reads those settings off the SAM-expanded template;
//! [`Storm::run`] plays the queue against function processes polling a
//! [`RuntimeApi`]. While it runs it also plays ECS: once a service's tunnel token is in
//! SSM, a simulated cloudflared connects with it and the service's new task reports
//! RUNNING (an "ECS Task State Change" event on the queue), as after the redeploy
//! ecs-tunnels asks for.
//!
//! Used by `tests/storm.rs` and `bench-storm`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::iam::ResolvedTemplate;
use crate::runtime_api::{Outcome, RuntimeApi};

/// The event door's delivery settings, as the template sets them.
#[derive(Debug, Clone)]
pub struct EventDoor {
    /// The function the queue feeds (logical id, e.g. `EventsFunction`).
    pub function: String,
    /// The queue's ARN (the records' `eventSourceARN`).
    pub queue_arn: String,
    /// `BatchSize`: most messages per invocation.
    pub batch_size: usize,
    /// `ScalingConfig.MaximumConcurrency`: most invocations at once.
    pub max_concurrency: usize,
    /// `MaximumBatchingWindowInSeconds`: how long a partial batch waits to fill.
    pub batching_window: Duration,
    /// The queue's `VisibilityTimeout`: when a failed message comes back.
    pub visibility_timeout: Duration,
    /// The queue's `RedrivePolicy.maxReceiveCount`: receives before the dead-letter queue.
    pub max_receive_count: u32,
    /// The function's `Timeout`.
    pub timeout: Duration,
    /// The function's environment variables, resolved.
    pub environment: BTreeMap<String, String>,
    /// The function's `ReservedConcurrentExecutions`, if set.
    pub reserved_concurrency: Option<u64>,
}

fn number(v: &Value, what: &str) -> Result<u64, String> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("{what} is not a number: {v}"))
}

impl EventDoor {
    /// Reads the SQS event source mapping (there must be exactly one), its queue and its
    /// function off the resolved template.
    pub fn from_template(t: &ResolvedTemplate) -> Result<EventDoor, String> {
        let mappings: Vec<_> = t
            .resources_of("AWS::Lambda::EventSourceMapping")
            .filter(|(_, m)| {
                m.properties["EventSourceArn"]
                    .as_str()
                    .is_some_and(|a| a.contains(":sqs:"))
            })
            .collect();
        let [(_, m)] = mappings.as_slice() else {
            return Err(format!(
                "expected one SQS event source mapping, found {}",
                mappings.len()
            ));
        };
        let p = &m.properties;
        let queue_arn = p["EventSourceArn"].as_str().unwrap_or_default().to_string();
        let function = t
            .function_by_name_or_arn(p["FunctionName"].as_str().unwrap_or_default())
            .ok_or("the event source mapping names no function of the template")?;
        // The queue with a redrive policy is the one the mapping reads (the other is its
        // dead-letter queue); its ARN ends with its physical name.
        let queues: Vec<_> = t
            .resources_of("AWS::SQS::Queue")
            .filter(|(_, q)| q.properties.get("RedrivePolicy").is_some())
            .collect();
        let [(_, queue)] = queues.as_slice() else {
            return Err(format!(
                "expected one queue with a dead-letter queue, found {}",
                queues.len()
            ));
        };
        let fn_props = &t
            .resources
            .get(&function.logical_id)
            .ok_or("the function resource is missing")?
            .properties;
        Ok(EventDoor {
            function: function.logical_id.clone(),
            queue_arn,
            batch_size: number(&p["BatchSize"], "BatchSize")? as usize,
            max_concurrency: number(
                &p["ScalingConfig"]["MaximumConcurrency"],
                "ScalingConfig.MaximumConcurrency",
            )? as usize,
            batching_window: Duration::from_secs(
                number(
                    &p["MaximumBatchingWindowInSeconds"],
                    "MaximumBatchingWindowInSeconds",
                )
                .unwrap_or(0),
            ),
            visibility_timeout: Duration::from_secs(number(
                &queue.properties["VisibilityTimeout"],
                "VisibilityTimeout",
            )?),
            max_receive_count: number(
                &queue.properties["RedrivePolicy"]["maxReceiveCount"],
                "RedrivePolicy.maxReceiveCount",
            )? as u32,
            timeout: Duration::from_secs(number(&fn_props["Timeout"], "Timeout")?),
            environment: function.environment.clone(),
            reserved_concurrency: fn_props
                .get("ReservedConcurrentExecutions")
                .and_then(|v| number(v, "ReservedConcurrentExecutions").ok()),
        })
    }
}

/// A sample event from the workspace's `events/` directory.
pub fn sample_event(name: &str) -> Value {
    let path = crate::moto::workspace_root().join("events").join(name);
    read_json(&path)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn service_arn(cluster: &str, service: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:service/{cluster}/{service}",
        crate::moto::REGION,
        crate::moto::ACCOUNT_ID
    )
}

/// A CloudTrail `TagResource` event putting `tags` on `cluster/service`.
pub fn tag_event(cluster: &str, service: &str, tags: &[(&str, &str)]) -> Value {
    let mut e = sample_event("cloudtrail-tag-resource.json");
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    e["detail"]["requestParameters"] =
        json!({"resourceArn": service_arn(cluster, service), "tags": tags});
    e
}

/// An "ECS Task State Change" (RUNNING) for a task of `cluster/service`.
pub fn task_event(cluster: &str, service: &str) -> Value {
    let mut e = sample_event("ecs-task-running.json");
    e["detail"]["group"] = json!(format!("service:{service}"));
    e["detail"]["clusterArn"] = json!(format!(
        "arn:aws:ecs:{}:{}:cluster/{cluster}",
        crate::moto::REGION,
        crate::moto::ACCOUNT_ID
    ));
    e
}

/// One message on the queue.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: Value,
    receives: u32,
    /// When it became visible (for the batching window).
    visible_since: Instant,
}

#[derive(Default)]
struct Queue {
    visible: VecDeque<Message>,
    /// Failed messages waiting out the visibility timeout.
    hidden: Vec<(Instant, Message)>,
    dead: Vec<Message>,
    in_flight: usize,
    next_id: u64,
}

impl Queue {
    fn send(&mut self, body: Value) {
        self.next_id += 1;
        self.visible.push_back(Message {
            id: format!("msg-{:05}", self.next_id),
            body,
            receives: 0,
            visible_since: Instant::now(),
        });
    }
}

/// What a storm did.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    /// From the first message to an empty queue with nothing in flight.
    pub wall: Duration,
    /// Invocations of the function.
    pub invocations: usize,
    /// Largest number of invocations in flight at once.
    pub peak_concurrency: usize,
    /// Messages delivered, redeliveries included.
    pub deliveries: usize,
    /// Messages delivered again after a failure.
    pub redeliveries: usize,
    /// Invocations that failed as a whole (every message of the batch comes back).
    pub failed_invocations: usize,
    /// Bodies of the messages that ended in the dead-letter queue.
    pub dead_letters: Vec<Value>,
    /// Services whose simulated cloudflared connected and whose task event was sent.
    pub tasks_started: BTreeSet<(String, String)>,
}

/// A storm: the queue, the function processes' Runtime API, and ECS's part.
pub struct Storm<'a> {
    /// The Runtime API the function processes poll.
    pub rt: &'a RuntimeApi,
    /// moto's SDK configuration (to read the tunnel tokens as ECS would).
    pub sdk: &'a aws_config::SdkConfig,
    /// The simulator's hooks base (`…/__sim`), to connect simulated cloudflared replicas.
    pub sim_hooks_url: String,
    /// The delivery settings.
    pub door: EventDoor,
    /// How much faster than AWS's the storm's clock runs: the batching window, the
    /// visibility timeout and the function's timeout are divided by it.
    pub speedup: f64,
    /// Where tunnel tokens are (`ECS_TUNNELS_PARAMETER_PREFIX`).
    pub parameter_prefix: String,
}

impl Storm<'_> {
    fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.speedup)
    }

    /// Sends `events` to the queue and runs until the queue is empty and nothing is in
    /// flight (then every message was handled or is in the dead-letter queue), or until
    /// `limit` passes (an error).
    pub async fn run(&self, events: Vec<Value>, limit: Duration) -> Result<StormReport, String> {
        let queue = Mutex::new(Queue::default());
        for e in events {
            queue.lock().unwrap().send(e);
        }
        let report = Mutex::new(StormReport::default());
        let started = Instant::now();
        let pollers = (0..self.door.max_concurrency.max(1)).map(|_| self.poll(&queue, &report));
        tokio::time::timeout(limit, futures::future::join_all(pollers))
            .await
            .map_err(|_| {
                let q = queue.lock().unwrap();
                format!(
                    "the storm did not end within {limit:?}: {} messages visible, {} waiting to be visible again, {} in flight",
                    q.visible.len(),
                    q.hidden.len(),
                    q.in_flight
                )
            })?;
        let mut report = report.into_inner().unwrap();
        report.wall = started.elapsed();
        report.dead_letters = queue
            .into_inner()
            .unwrap()
            .dead
            .into_iter()
            .map(|m| m.body)
            .collect();
        Ok(report)
    }

    /// One poller of the event source mapping: takes a batch when one is full or its
    /// oldest message has waited the batching window, invokes, and settles the answer.
    async fn poll(&self, queue: &Mutex<Queue>, report: &Mutex<StormReport>) {
        loop {
            let batch = {
                let mut q = queue.lock().unwrap();
                let now = Instant::now();
                let (due, hidden): (Vec<_>, Vec<_>) =
                    q.hidden.drain(..).partition(|(at, _)| *at <= now);
                q.hidden = hidden;
                for (_, mut m) in due {
                    m.visible_since = now;
                    q.visible.push_back(m);
                }
                let waited = q.visible.front().is_some_and(|m| {
                    now - m.visible_since >= self.scaled(self.door.batching_window)
                });
                if q.visible.len() >= self.door.batch_size || (waited && !q.visible.is_empty()) {
                    let n = q.visible.len().min(self.door.batch_size);
                    let batch: Vec<Message> = q.visible.drain(..n).collect();
                    q.in_flight += 1;
                    let mut r = report.lock().unwrap();
                    r.peak_concurrency = r.peak_concurrency.max(q.in_flight);
                    Some(batch)
                } else if q.visible.is_empty() && q.hidden.is_empty() && q.in_flight == 0 {
                    return;
                } else {
                    None
                }
            };
            match batch {
                None => tokio::time::sleep(Duration::from_millis(20)).await,
                Some(batch) => {
                    self.deliver(batch, queue, report).await;
                    queue.lock().unwrap().in_flight -= 1;
                }
            }
        }
    }

    /// One invocation with one batch; failed messages go back (or to the dead-letter
    /// queue), and ECS starts the tasks of services whose token now exists.
    async fn deliver(
        &self,
        mut batch: Vec<Message>,
        queue: &Mutex<Queue>,
        report: &Mutex<StormReport>,
    ) {
        for m in &mut batch {
            m.receives += 1;
        }
        let records: Vec<Value> = batch
            .iter()
            .map(|m| {
                json!({"messageId": m.id, "receiptHandle": format!("rh-{}-{}", m.id, m.receives),
                       "body": m.body.to_string(),
                       "attributes": {"ApproximateReceiveCount": m.receives.to_string()},
                       "messageAttributes": {}, "eventSource": "aws:sqs",
                       "eventSourceARN": self.door.queue_arn, "awsRegion": crate::moto::REGION})
            })
            .collect();
        let deadline = self.scaled(self.door.timeout);
        let answer = self
            .rt
            .invoke_with_deadline(
                json!({ "Records": records }),
                deadline,
                deadline + Duration::from_secs(30),
            )
            .await;
        let failed: BTreeSet<String> = match &answer {
            Ok(inv) => match &inv.outcome {
                Outcome::Response(v) => v["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                    .collect(),
                Outcome::Error { .. } => batch.iter().map(|m| m.id.clone()).collect(),
            },
            Err(_) => batch.iter().map(|m| m.id.clone()).collect(),
        };
        {
            let mut r = report.lock().unwrap();
            r.invocations += 1;
            r.deliveries += batch.len();
            if !matches!(&answer, Ok(inv) if inv.outcome.response().is_some()) {
                r.failed_invocations += 1;
            }
        }
        if let Ok(inv) = &answer {
            if let Some(v) = inv.outcome.response() {
                self.start_tasks(v, queue, report).await;
            }
        }
        let mut q = queue.lock().unwrap();
        let back_at = Instant::now() + self.scaled(self.door.visibility_timeout);
        for m in batch.into_iter().filter(|m| failed.contains(&m.id)) {
            if m.receives >= self.door.max_receive_count {
                q.dead.push(m);
            } else {
                report.lock().unwrap().redeliveries += 1;
                q.hidden.push((back_at, m));
            }
        }
    }

    /// ECS's part: for each service the answer names whose token is now in SSM, a
    /// cloudflared replica connects with it and the new task's RUNNING event is queued.
    async fn start_tasks(&self, answer: &Value, queue: &Mutex<Queue>, report: &Mutex<StormReport>) {
        let ssm = aws_sdk_ssm::Client::new(self.sdk);
        let http = reqwest::Client::new();
        for o in answer["outcomes"].as_array().into_iter().flatten() {
            let (Some(cluster), Some(service)) = (
                o["service"]["cluster"].as_str(),
                o["service"]["service"].as_str(),
            ) else {
                continue;
            };
            let key = (cluster.to_string(), service.to_string());
            if report.lock().unwrap().tasks_started.contains(&key) {
                continue;
            }
            let name = format!("{}/{cluster}/{service}/token", self.parameter_prefix);
            let Ok(out) = ssm
                .get_parameter()
                .name(&name)
                .with_decryption(true)
                .send()
                .await
            else {
                continue;
            };
            let Some(token) = out.parameter().and_then(|p| p.value()) else {
                continue;
            };
            let connected = http
                .post(format!("{}/connectors", self.sim_hooks_url))
                .json(&json!({ "token": token }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if connected {
                report.lock().unwrap().tasks_started.insert(key);
                queue.lock().unwrap().send(task_event(cluster, service));
            }
        }
    }
}

/// Sums an Embedded Metric Format metric over the invocations in a function's output.
pub fn emf_total(output: &str, metric: &str) -> f64 {
    output
        .lines()
        .filter(|l| l.contains("CloudWatchMetrics"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v[metric].as_f64())
        .sum()
}
