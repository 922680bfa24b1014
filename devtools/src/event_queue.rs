//! The template's event queue in moto, and its messages as the Lambda event source
//! mapping delivers them: for the delayed follow-ups ecs-tunnels leaves on it.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::moto::{ACCOUNT_ID, REGION};

/// The event queue's name as the IAM checks expand the template (`<stack>-EventsQueue`).
pub const NAME: &str = "ecs-tunnels-EventsQueue";

/// Creates the event queue in moto; its URL.
///
/// # Panics
/// On an API error: this is a test fixture.
pub async fn create(cfg: &aws_config::SdkConfig) -> String {
    aws_sdk_sqs::Client::new(cfg)
        .create_queue()
        .queue_name(NAME)
        .send()
        .await
        .expect("create the event queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

/// True when a message could be received right now (a delayed one cannot).
pub async fn deliverable_now(cfg: &aws_config::SdkConfig, url: &str) -> bool {
    let out = aws_sdk_sqs::Client::new(cfg)
        .receive_message()
        .queue_url(url)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    !out.messages().is_empty()
}

/// Receives (and deletes) the next message, waiting up to `wait`, as the event source
/// mapping hands it to the function: an SQS event with one record. `None` if none came.
pub async fn next_event(cfg: &aws_config::SdkConfig, url: &str, wait: Duration) -> Option<Value> {
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let deadline = Instant::now() + wait;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if let Some(m) = out.messages().first() {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
            return Some(json!({"Records": [{
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{NAME}"),
                "awsRegion": REGION,
            }]}));
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}
