//! The event queue, as a place to leave a delayed message for a later invocation (SQS
//! `SendMessage` with `DelaySeconds`).

use super::AwsError;
use std::time::Duration;

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    /// The queue at `url`.
    pub fn new(cfg: &aws_config::SdkConfig, url: &str) -> Self {
        Queue {
            client: aws_sdk_sqs::Client::new(cfg),
            url: url.to_string(),
        }
    }

    /// Sends `body`, delivered no sooner than `delay` (at most 15 minutes) from now.
    pub async fn send_delayed(&self, body: &str, delay: Duration) -> Result<(), AwsError> {
        let seconds = delay.as_secs().min(900) as i32;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))?;
        Ok(())
    }
}
