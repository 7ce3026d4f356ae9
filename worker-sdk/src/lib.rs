//! Stepline's worker SDK: the wire protocol between the engine and activity workers.
//!
//! This crate currently holds the versioned message types that the coordinator publishes for
//! a task and that a worker sends back (success, failure, heartbeat). The async worker runtime
//! (AMQP and in-process transports, heartbeating, cancellation, graceful shutdown) is built on
//! these types by the runtime work; see ARCHITECTURE.md.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the task/reply wire format; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// A task handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub version: u32,
    /// Opaque, signed task token: echo it back in the reply.
    pub task_token: String,
    /// Activity ARN or resource the task is for.
    pub resource: String,
    pub input: Value,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
}

/// What a worker sends back for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
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
    }
}
