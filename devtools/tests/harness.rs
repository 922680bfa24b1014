//! Tests of the harness pieces themselves: moto + seeding, the Runtime API emulator
//! (driven by a fake function written with reqwest), and the function process wrapper.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use devtools::function::FunctionProcess;
use devtools::moto::Moto;
use devtools::runtime_api::{Outcome, RuntimeApi, FUNCTION_ARN};
use devtools::seed::seed_service;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One `next` call by a fake function: (request id, headers, event).
async fn next(
    c: &reqwest::Client,
    api: &RuntimeApi,
) -> (String, reqwest::header::HeaderMap, Value) {
    let r = c
        .get(format!(
            "{}/2018-06-01/runtime/invocation/next",
            api.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let id = headers["lambda-runtime-aws-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    (id, headers, r.json().await.unwrap())
}

async fn respond(c: &reqwest::Client, api: &RuntimeApi, id: &str, body: Value) -> u16 {
    c.post(format!(
        "{}/2018-06-01/runtime/invocation/{id}/response",
        api.base_url()
    ))
    .json(&body)
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

// ---------------------------------------------------------------------------------------
// moto

#[tokio::test]
async fn moto_seeded_service_shows_tags() {
    let moto = Moto::start().await.expect("moto starts");
    let cfg = moto.sdk_config().await;
    let arn = seed_service(
        &cfg,
        "apps",
        "web",
        &[("cloudflare:hostname", "web.example.com"), ("team", "blue")],
    )
    .await;
    assert!(
        arn.starts_with("arn:aws:ecs:us-east-1:123456789012:service/apps/web"),
        "{arn}"
    );
    // Seeding a second service into the same cluster reuses the cluster.
    seed_service(&cfg, "apps", "api", &[]).await;

    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let out = ecs
        .describe_services()
        .cluster("apps")
        .services("web")
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .unwrap();
    let svc = &out.services()[0];
    let mut tags: Vec<(String, String)> = svc
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("cloudflare:hostname".into(), "web.example.com".into()),
            ("team".into(), "blue".into())
        ]
    );
    assert_eq!(svc.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    assert_eq!(svc.propagate_tags().map(|p| p.as_str()), Some("SERVICE"));

    let td = ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    let sidecar = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("cloudflared"))
        .expect("sidecar");
    assert_eq!(sidecar.command(), ["tunnel", "--no-autoupdate", "run"]);
    assert_eq!(
        sidecar.secrets()[0].value_from(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/apps/web/token"
    );

    let services = ecs.list_services().cluster("apps").send().await.unwrap();
    assert_eq!(services.service_arns().len(), 2);
    moto.reset().await;
    let after = ecs
        .describe_clusters()
        .clusters("apps")
        .send()
        .await
        .unwrap();
    assert!(
        after
            .clusters()
            .iter()
            .all(|c| c.status() != Some("ACTIVE")),
        "reset clears state: {after:?}"
    );

    assert!(
        !moto.logs().contains("HTTP/1.1\""),
        "request logging is off: {}",
        moto.logs()
    );

    let env = moto.aws_env();
    assert!(env.contains(&("AWS_ENDPOINT_URL".into(), moto.endpoint())));
    assert!(env.contains(&("AWS_DEFAULT_REGION".into(), "us-east-1".into())));
}

/// Calls a JSON-protocol AWS API on moto directly (moto does not check signatures; it
/// finds the service from the credential scope).
async fn aws_json(moto: &Moto, service: &str, target: &str, body: Value) -> Value {
    aws_json_at(&moto.endpoint(), service, target, body).await
}

/// [`aws_json`] at another endpoint (the AWS proxy).
async fn aws_json_at(endpoint: &str, service: &str, target: &str, body: Value) -> Value {
    let r = http()
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{target}: {status} {v}");
    v
}

#[tokio::test]
async fn moto_launcher_fixes_stale_awscurrent() {
    let moto = Moto::start().await.expect("moto starts");
    let sm = |t: &str| format!("secretsmanager.{t}");
    let created = aws_json(
        &moto,
        "secretsmanager",
        &sm("CreateSecret"),
        json!({"Name": "s", "SecretString": "one", "ClientRequestToken": "00000000-0000-0000-0000-000000000001"}),
    )
    .await;
    let v1 = created["VersionId"].as_str().unwrap().to_string();
    aws_json(
        &moto,
        "secretsmanager",
        &sm("PutSecretValue"),
        json!({"SecretId": "s", "SecretString": "two", "ClientRequestToken": "00000000-0000-0000-0000-000000000002", "VersionStages": ["AWSPENDING"]}),
    )
    .await;
    aws_json(
        &moto,
        "secretsmanager",
        &sm("UpdateSecretVersionStage"),
        json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "RemoveFromVersionId": v1, "MoveToVersionId": "00000000-0000-0000-0000-000000000002"}),
    )
    .await;
    let got = aws_json(
        &moto,
        "secretsmanager",
        &sm("GetSecretValue"),
        json!({"SecretId": "s"}),
    )
    .await;
    assert_eq!(got["SecretString"], "two", "{got}; logs: {}", moto.logs());
    assert!(
        !moto.logs().contains("patch not applied"),
        "{}",
        moto.logs()
    );
}

#[tokio::test]
async fn aws_proxy_latency_delays_each_call_and_calls_are_counted_by_operation() {
    use devtools::aws_proxy::AwsProxy;
    use std::time::Instant;
    let moto = Moto::start().await.expect("moto starts");
    let proxy = AwsProxy::start(&moto.endpoint()).await.expect("proxy");
    let ep = proxy.endpoint();
    let ecs = "AmazonEC2ContainerServiceV20141113.ListClusters";
    let ssm = "AmazonSSM.DescribeParameters";
    // What three concurrent calls take without the latency (moto's own time, which a
    // busy machine stretches).
    let started = Instant::now();
    let _ = tokio::join!(
        aws_json_at(&ep, "ecs", ecs, json!({})),
        aws_json_at(&ep, "ssm", ssm, json!({})),
        aws_json_at(&ep, "ssm", ssm, json!({})),
    );
    let base = started.elapsed();
    proxy.clear_calls();
    proxy.set_latency(Duration::from_millis(400));
    let started = Instant::now();
    aws_json_at(&ep, "ecs", ecs, json!({})).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Concurrent calls wait side by side, not one after the other (3 × 400 ms).
    let started = Instant::now();
    let _ = tokio::join!(
        aws_json_at(&ep, "ecs", ecs, json!({})),
        aws_json_at(&ep, "ssm", ssm, json!({})),
        aws_json_at(&ep, "ssm", ssm, json!({})),
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // One after the other would take at least 1,200 ms more than moto's own time.
    assert!(
        took < Duration::from_millis(1100) + base,
        "{took:?} (base {base:?})"
    );
    proxy.set_latency(Duration::ZERO);
    let started = Instant::now();
    aws_json_at(&ep, "ssm", ssm, json!({})).await;
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(
        proxy.calls_by_operation(),
        [
            ("ecs:ListClusters".to_string(), 2),
            ("ssm:DescribeParameters".to_string(), 3)
        ]
        .into_iter()
        .collect()
    );
}

// ---------------------------------------------------------------------------------------
// Runtime API emulator

#[tokio::test]
async fn runtime_api_response_roundtrip_and_headers() {
    let api = RuntimeApi::start().await.unwrap();
    assert!(api.endpoint().starts_with("127.0.0.1:"));
    let c = http();
    let inv = api.invoke(json!({"hello": "world"}), T);
    let func = async {
        let (id, h, ev) = next(&c, &api).await;
        assert_eq!(ev, json!({"hello": "world"}));
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["lambda-runtime-invoked-function-arn"], FUNCTION_ARN);
        assert!(h["lambda-runtime-trace-id"]
            .to_str()
            .unwrap()
            .starts_with("Root=1-"));
        let deadline: u64 = h["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let left = deadline as i64 - now_ms() as i64;
        assert!(
            (58_000..=60_500).contains(&left),
            "default deadline: {left} ms"
        );
        uuid::Uuid::parse_str(&id).expect("request id is a uuid");
        assert_eq!(respond(&c, &api, &id, json!({"echo": ev})).await, 202);
        // A second answer for the same id is refused.
        assert_eq!(respond(&c, &api, &id, json!(1)).await, 400);
        id
    };
    let (res, id) = tokio::join!(inv, func);
    let res = res.unwrap();
    assert_eq!(res.request_id, id);
    assert_eq!(
        res.outcome,
        Outcome::Response(json!({"echo": {"hello": "world"}}))
    );
    assert!(res.duration < T);
    assert_eq!(
        api.rejected_requests().len(),
        1,
        "{:?}",
        api.rejected_requests()
    );
}

#[tokio::test]
async fn runtime_api_error_outcome() {
    let api = RuntimeApi::start().await.unwrap();
    let c = http();
    let func = async {
        let (id, _, _) = next(&c, &api).await;
        let r = c
            .post(format!(
                "{}/2018-06-01/runtime/invocation/{id}/error",
                api.base_url()
            ))
            .header("lambda-runtime-function-error-type", "unhandled")
            .json(&json!({"errorType": "ReconcileError", "errorMessage": "boom"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    };
    let (res, ()) = tokio::join!(api.invoke(json!({}), T), func);
    assert_eq!(
        res.unwrap().outcome,
        Outcome::Error {
            error_type: "ReconcileError".into(),
            error_message: "boom".into()
        }
    );
}

#[tokio::test]
async fn runtime_api_queues_concurrent_invokes_for_one_function() {
    let api = RuntimeApi::start().await.unwrap();
    let c = http();
    let func = async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (id, _, ev) = next(&c, &api).await;
            seen.push(ev["n"].as_i64().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(respond(&c, &api, &id, json!({"n": ev["n"]})).await, 202);
        }
        seen
    };
    let (a, b, d, seen) = tokio::join!(
        api.invoke(json!({"n": 1}), T),
        api.invoke(json!({"n": 2}), T),
        api.invoke(json!({"n": 3}), T),
        func
    );
    for (res, n) in [(a, 1), (b, 2), (d, 3)] {
        assert_eq!(res.unwrap().outcome, Outcome::Response(json!({"n": n})));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3]);
    assert_eq!(api.queued(), 0);
}

#[tokio::test]
async fn runtime_api_two_pollers_each_take_one() {
    let api = RuntimeApi::start().await.unwrap();
    let worker = |name: &'static str| {
        let c = http();
        let api = &api;
        async move {
            let (id, _, ev) = next(&c, api).await;
            // Hold the event so the other poller has to take the second one.
            tokio::time::sleep(Duration::from_millis(200)).await;
            respond(&c, api, &id, json!({"worker": name, "n": ev["n"]})).await;
            name
        }
    };
    let both_ready = async {
        assert!(api.wait_for_pollers(2, T).await);
        tokio::join!(
            api.invoke(json!({"n": 1}), T),
            api.invoke(json!({"n": 2}), T)
        )
    };
    let ((a, b), _, _) = tokio::join!(both_ready, worker("w1"), worker("w2"));
    let wa = a.unwrap().outcome.response().unwrap()["worker"].clone();
    let wb = b.unwrap().outcome.response().unwrap()["worker"].clone();
    assert_ne!(wa, wb, "each poller served one invocation");
}

#[tokio::test]
async fn runtime_api_deadline_header() {
    let api = RuntimeApi::start().await.unwrap();
    let c = http();
    let func = async {
        let (id, h, _) = next(&c, &api).await;
        let deadline: u64 = h["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let left = deadline as i64 - now_ms() as i64;
        respond(&c, &api, &id, json!(null)).await;
        left
    };
    let (res, left) = tokio::join!(
        api.invoke_with_deadline(json!({}), Duration::from_secs(3), T),
        func
    );
    res.unwrap();
    assert!((2_500..=3_000).contains(&left), "deadline in {left} ms");
}

#[tokio::test]
async fn runtime_api_timeout_withdraws_unclaimed_event() {
    let api = RuntimeApi::start().await.unwrap();
    let err = api
        .invoke(json!({"n": 1}), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.contains("no function picked the event up"), "{err}");
    assert_eq!(api.queued(), 0);

    // A function that takes the event but never answers.
    let c = http();
    let (res, _) = tokio::join!(
        api.invoke(json!({"n": 2}), Duration::from_millis(300)),
        next(&c, &api)
    );
    assert!(res.unwrap_err().contains("never answered"));
}

#[tokio::test]
async fn runtime_api_abandoned_poll_does_not_swallow_events() {
    let api = RuntimeApi::start().await.unwrap();
    // A poller that goes away (its process died) while long-polling.
    let dead = http();
    assert_eq!(api.polling(), 0);
    let r = dead
        .get(format!(
            "{}/2018-06-01/runtime/invocation/next",
            api.base_url()
        ))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(r.is_err());
    drop(dead);
    // The server notices the closed connection and forgets the poll.
    let start = std::time::Instant::now();
    while api.polling() != 0 {
        assert!(start.elapsed() < T, "abandoned poll still counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let c = http();
    let func = async {
        let (id, _, ev) = next(&c, &api).await;
        respond(&c, &api, &id, ev).await;
    };
    let (res, ()) = tokio::join!(api.invoke(json!({"n": 7}), T), func);
    assert_eq!(res.unwrap().outcome, Outcome::Response(json!({"n": 7})));
}

#[tokio::test]
async fn runtime_api_init_error_fails_queued_invoke() {
    let api = RuntimeApi::start().await.unwrap();
    let c = http();
    let func = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = c
            .post(format!("{}/2018-06-01/runtime/init/error", api.base_url()))
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .json(&json!({"errorType": "Config", "errorMessage": "missing CLOUDFLARE_API_TOKEN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    };
    let (res, ()) = tokio::join!(api.invoke(json!({}), T), func);
    let err = res.unwrap_err();
    assert!(err.contains("missing CLOUDFLARE_API_TOKEN"), "{err}");
    assert_eq!(
        api.init_error().unwrap()["errorMessage"],
        "missing CLOUDFLARE_API_TOKEN"
    );
    assert_eq!(api.queued(), 0);
}

// ---------------------------------------------------------------------------------------
// Function process

#[tokio::test]
async fn function_process_env_output_and_rss() {
    let dir = std::env::temp_dir().join(format!("devtools-fn-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("fake-function");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         echo \"api=$AWS_LAMBDA_RUNTIME_API name=$AWS_LAMBDA_FUNCTION_NAME mem=$AWS_LAMBDA_FUNCTION_MEMORY_SIZE ver=$AWS_LAMBDA_FUNCTION_VERSION fmt=$AWS_LAMBDA_LOG_FORMAT extra=$EXTRA args=$#\"\n\
         echo \"home=${HOME:-unset}\" >&2\n\
         echo ready\n\
         exec sleep 30\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let p = FunctionProcess::spawn(
        &script,
        "127.0.0.1:9",
        &[("EXTRA".to_string(), "x".to_string())],
    )
    .unwrap();
    assert!(p.wait_for_output("ready", T).await, "{}", p.output());
    assert!(p.peak_rss_kb().unwrap() > 0);
    let out = p.stop().await;
    assert!(
        out.contains(
            "api=127.0.0.1:9 name=ecs-tunnels mem=128 ver=$LATEST fmt=JSON extra=x args=0"
        ),
        "{out}"
    );
    assert!(out.contains("home=unset"), "environment is cleared: {out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn runtime_api_cancelled_invoke_is_withdrawn() {
    let api = RuntimeApi::start().await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        api.invoke(json!({"n": 1}), Duration::from_secs(60)),
    )
    .await;
    assert!(r.is_err(), "outer timeout fired");
    assert_eq!(api.queued(), 0, "dropped invoke left its event queued");
}
