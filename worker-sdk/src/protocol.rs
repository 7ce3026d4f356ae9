//! The wire protocol between coordinators and workers (JSON over AMQP, or in-process values).
//!
//! Every message carries a `version`; receivers reject versions they do not know (the broker
//! dead-letters them). Task tokens are opaque, signed by the engine, and name one task attempt.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the task/reply wire format; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// A task handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub version: u32,
    /// Opaque, signed task token: echo it back in every reply.
    pub task_token: String,
    /// Activity ARN (or other resource) the task is for; also its queue name.
    pub resource: String,
    pub execution_arn: String,
    pub state_name: String,
    pub input: Value,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    /// Epoch milliseconds after which the engine no longer waits (from TimeoutSeconds).
    pub deadline_ms: Option<i64>,
    /// Where replies go: the routing key (the execution's partition queue), on
    /// `reply_exchange` when the task names one, else on the default exchange (straight to
    /// the queue of that name).
    pub reply_to: String,
    /// The exchange to publish replies to (`stepline.replies`: it routes a partition's replies
    /// to the inbox of the coordinator serving it, and to the partition queue when none does).
    /// Absent in tasks of engines without inboxes; a worker that ignores it still replies
    /// correctly, through the partition queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_exchange: Option<String>,
}

impl TaskMessage {
    /// Where this task's replies go.
    pub fn reply_route(&self) -> ReplyRoute {
        ReplyRoute {
            exchange: self.reply_exchange.clone().unwrap_or_default(),
            routing_key: self.reply_to.clone(),
        }
    }
}

/// An exchange (empty: the default exchange) and a routing key: where a task's replies go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyRoute {
    pub exchange: String,
    pub routing_key: String,
}

/// What a worker sends back for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The worker picked the task up (`ActivityStarted` in the history).
    Started {
        version: u32,
        task_token: String,
        worker_name: String,
    },
    Succeeded {
        version: u32,
        task_token: String,
        output: Value,
    },
    Failed {
        version: u32,
        task_token: String,
        error: Option<String>,
        cause: Option<String>,
    },
    Heartbeat {
        version: u32,
        task_token: String,
    },
    /// `Started` and the final reply (`Succeeded` or `Failed`) in one message: a handler that
    /// finished before its `Started` went out. The engine records `ActivityStarted` (naming
    /// `worker_name`) and the result in one step.
    Finished {
        version: u32,
        worker_name: String,
        result: Box<Reply>,
    },
}

impl Reply {
    pub fn task_token(&self) -> &str {
        match self {
            Reply::Finished { result, .. } => result.task_token(),
            Reply::Started { task_token, .. }
            | Reply::Succeeded { task_token, .. }
            | Reply::Failed { task_token, .. }
            | Reply::Heartbeat { task_token, .. } => task_token,
        }
    }

    pub fn version(&self) -> u32 {
        match self {
            Reply::Finished { version, .. } => *version,
            Reply::Started { version, .. }
            | Reply::Succeeded { version, .. }
            | Reply::Failed { version, .. }
            | Reply::Heartbeat { version, .. } => *version,
        }
    }
}

/// The engine gave up on a task (timeout, stop, sibling failure): its handler should stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelMessage {
    pub version: u32,
    pub task_token: String,
}

/// An error a handler returns; `error` is matched by the state's `ErrorEquals`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{error}: {cause}")]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

impl TaskError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskError {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_wire_format_is_tagged_and_round_trips() {
        let r = Reply::Failed {
            version: PROTOCOL_VERSION,
            task_token: "t".into(),
            error: Some("Card.Declined".into()),
            cause: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""type":"failed""#), "{text}");
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), r);
        assert_eq!(r.task_token(), "t");
    }

    /// A task from an engine without inboxes (no `reply_exchange`) is replied to on the default
    /// exchange, straight to the queue `reply_to` names; one that names an exchange, there.
    #[test]
    fn a_task_says_where_its_replies_go() {
        let wire = serde_json::json!({
            "version": 1, "task_token": "t", "resource": "r", "execution_arn": "e",
            "state_name": "S", "input": {}, "attempt": 1, "timeout_seconds": null,
            "heartbeat_seconds": null, "deadline_ms": null, "reply_to": "stepline.partition.3"
        });
        let old: TaskMessage = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(old.reply_exchange, None);
        assert_eq!(
            old.reply_route(),
            ReplyRoute {
                exchange: String::new(),
                routing_key: "stepline.partition.3".into()
            }
        );
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            wire,
            "nothing added on the wire"
        );
        let new = TaskMessage {
            reply_exchange: Some("stepline.replies".into()),
            ..old
        };
        assert_eq!(new.reply_route().exchange, "stepline.replies");
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<TaskMessage>(&text).unwrap(), new);
    }
}
