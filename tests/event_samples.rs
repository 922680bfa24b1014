//! Every sample in `events/` is fed to the binary through the Lambda Runtime API against
//! moto and the simulator, and must be recognised (and handled); malformed events give a
//! clear error that says what arrived.

mod common;
use common::*;
use devtools::response_sink::ResponseSink;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_is_accepted() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    // Create before Update before Delete; the task events before the untag and delete.
    names.sort_by_key(|n| match n.as_str() {
        n if n.contains("untag") || n.contains("delete") => 2,
        n if n.starts_with("cloudformation-update") => 1,
        _ => 0,
    });
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        let mut event = sample(name);
        if event.get("ResponseURL").is_some() {
            event["ResponseURL"] = json!(sink.response_url(name));
        }
        if name.contains("untag") {
            w.remove_tags("demo", "web", &["ecs-tunnels:hostname"])
                .await;
        }
        if name.contains("delete-service") {
            w.delete_service("demo", "web").await;
        }
        let inv = w.invoke(event).await;
        match &inv.outcome {
            devtools::runtime_api::Outcome::Response(r) => {
                if name.starts_with("cloudformation-") {
                    let put = sink
                        .received()
                        .into_iter()
                        .rev()
                        .find(|p| p.uri.contains(name.as_str()))
                        .expect("response PUT");
                    assert_eq!(put.json()["Status"], "SUCCESS", "{name}: {}", put.json());
                }
                if name.starts_with("ecs-task-running") || name.starts_with("sqs-") {
                    assert_eq!(r["outcomes"][0]["state"], "ready", "{name}: {r}");
                }
                if name.contains("status-only")
                    || name.contains("failed") && name.starts_with("cloudtrail")
                {
                    assert_eq!(
                        r["outcomes"],
                        json!([]),
                        "{name}: ignored without any call: {r}"
                    );
                }
            }
            devtools::runtime_api::Outcome::Error { error_message, .. } => {
                // Secrets Manager steps need the Secrets Manager store; everything else must succeed.
                assert!(
                    name.starts_with("secretsmanager-"),
                    "{name}: {error_message}"
                );
                assert!(
                    error_message.contains("ECS_TUNNELS_TOKEN_STORE"),
                    "{name}: {error_message}"
                );
            }
        }
    }

    // Malformed events: an error that names what arrived.
    for (event, needle) in [
        (json!({"hello": "world"}), "hello"),
        (
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
            "EC2 Instance State-change Notification",
        ),
        (
            json!({"Records": [{"eventSource": "aws:sqs", "body": "not json"}]}),
            "messageId",
        ),
        (
            json!({"Records": [{"eventSource": "aws:sns", "Sns": {}}]}),
            "aws:sns",
        ),
        (json!({"ecs-tunnels": "dance"}), "dance"),
    ] {
        // (An SQS message that cannot be read fails alone: see below.)
        let inv = w.invoke(event.clone()).await;
        match &inv.outcome {
            devtools::runtime_api::Outcome::Error { error_message, .. } => {
                assert!(
                    error_message.contains("unrecognised") && error_message.contains(needle),
                    "{event}: {error_message}"
                )
            }
            other => panic!("{event}: expected an error, got {other:?}"),
        }
    }

    // An SQS message that cannot be read is reported as that message's failure.
    let r = w
        .invoke_ok(json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": "not json"}]}))
        .await;
    assert_eq!(
        r["batchItemFailures"],
        json!([{"itemIdentifier": "m-1"}]),
        "{r}"
    );
}
