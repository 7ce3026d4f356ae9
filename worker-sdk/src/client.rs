//! `TaskTokenClient`: completes `.waitForTaskToken` tasks from outside a worker — the
//! `SendTaskSuccess` / `SendTaskFailure` / `SendTaskHeartbeat` of Stepline.
//!
//! A callback needs only the task token. In process it goes into the hub's reply stream. Over
//! AMQP the client cannot know which partition owns the token's execution, so by default it
//! publishes to the durable queue [`crate::topology::CALLBACK_QUEUE`], which the engine
//! consumes and routes by the token; [`TaskTokenClient::route_to`] sends to an explicit queue
//! instead (e.g. a `reply_to` the caller already knows). Publishes are persistent and
//! confirmed; an `Ok` means the broker has the callback, not that the engine accepted it (a
//! stale or forged token is dropped there).

use crate::hub::InProcessHub;
use crate::protocol::{Reply, PROTOCOL_VERSION};
use crate::transport::TransportError;
use serde::Serialize;

/// Errors of a callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("the output does not serialize to JSON: {0}")]
    Output(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Sends task success, failure and heartbeats for task tokens.
pub struct TaskTokenClient {
    route: Route,
}

enum Route {
    InProcess(InProcessHub),
    #[cfg(feature = "amqp")]
    Amqp {
        publisher: std::sync::Arc<crate::transport::amqp::CallbackPublisher>,
        queue: String,
    },
}

impl TaskTokenClient {
    /// A client for an in-process engine.
    pub fn in_process(hub: InProcessHub) -> Self {
        TaskTokenClient {
            route: Route::InProcess(hub),
        }
    }

    /// A client for RabbitMQ, publishing to [`crate::topology::CALLBACK_QUEUE`] (in the
    /// transport's namespace, if any).
    /// Connects now, so a wrong URL fails here (after the transport's connection retries).
    #[cfg(feature = "amqp")]
    pub async fn amqp(
        transport: crate::transport::amqp::AmqpTransport,
    ) -> Result<Self, ClientError> {
        let queue = transport.name(crate::topology::CALLBACK_QUEUE);
        let publisher = crate::transport::amqp::CallbackPublisher::connect(transport).await?;
        Ok(TaskTokenClient {
            route: Route::Amqp {
                publisher: std::sync::Arc::new(publisher),
                queue,
            },
        })
    }

    /// Over AMQP, publish to `queue` (e.g. a partition's input queue) instead of the callback
    /// queue. No effect in process.
    pub fn route_to(self, queue: impl Into<String>) -> Self {
        match self.route {
            #[cfg(feature = "amqp")]
            Route::Amqp { publisher, .. } => TaskTokenClient {
                route: Route::Amqp {
                    publisher,
                    queue: queue.into(),
                },
            },
            route => {
                let _ = queue;
                TaskTokenClient { route }
            }
        }
    }

    /// Completes the task with `output` (`SendTaskSuccess`).
    pub async fn send_success(
        &self,
        task_token: &str,
        output: &impl Serialize,
    ) -> Result<(), ClientError> {
        let output =
            serde_json::to_value(output).map_err(|e| ClientError::Output(e.to_string()))?;
        self.send(Reply::Succeeded {
            version: PROTOCOL_VERSION,
            task_token: task_token.to_string(),
            output,
        })
        .await
    }

    /// Fails the task with `error` (matched by `ErrorEquals`) and `cause` (`SendTaskFailure`).
    pub async fn send_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ClientError> {
        self.send(Reply::Failed {
            version: PROTOCOL_VERSION,
            task_token: task_token.to_string(),
            error: Some(error.to_string()),
            cause: Some(cause.to_string()),
        })
        .await
    }

    /// Resets the task's heartbeat timeout (`SendTaskHeartbeat`).
    pub async fn send_heartbeat(&self, task_token: &str) -> Result<(), ClientError> {
        self.send(Reply::Heartbeat {
            version: PROTOCOL_VERSION,
            task_token: task_token.to_string(),
        })
        .await
    }

    async fn send(&self, reply: Reply) -> Result<(), ClientError> {
        match &self.route {
            Route::InProcess(hub) => {
                hub.callback(reply);
                Ok(())
            }
            #[cfg(feature = "amqp")]
            Route::Amqp { publisher, queue } => {
                let body = crate::transport::amqp::callback_body(&reply);
                Ok(publisher.publish(queue, &body).await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_callbacks_reach_the_reply_stream() {
        let hub = InProcessHub::new();
        let mut replies = hub.take_callbacks().expect("callback stream");
        let client = TaskTokenClient::in_process(hub);
        client
            .send_success("t1", &serde_json::json!({"ok": true}))
            .await
            .expect("sent");
        client
            .send_failure("t2", "Oops", "why")
            .await
            .expect("sent");
        client.send_heartbeat("t3").await.expect("sent");
        let got: Vec<Reply> = vec![
            replies.recv().await.expect("reply"),
            replies.recv().await.expect("reply"),
            replies.recv().await.expect("reply"),
        ];
        assert_eq!(
            got,
            vec![
                Reply::Succeeded {
                    version: PROTOCOL_VERSION,
                    task_token: "t1".into(),
                    output: serde_json::json!({"ok": true}),
                },
                Reply::Failed {
                    version: PROTOCOL_VERSION,
                    task_token: "t2".into(),
                    error: Some("Oops".into()),
                    cause: Some("why".into()),
                },
                Reply::Heartbeat {
                    version: PROTOCOL_VERSION,
                    task_token: "t3".into(),
                },
            ]
        );
    }
}
