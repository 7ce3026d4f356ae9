//! AMQP names and queue arguments shared by the engine's RabbitMQ broker and the worker SDK's
//! AMQP transport. Both sides declare the same queues with the same arguments (RabbitMQ
//! refuses a redeclaration with different arguments), so they are defined once, here.

/// Exchange for messages that could not be processed (malformed, unknown version).
pub const DEAD_LETTER_EXCHANGE: &str = "stepline.dlx";
/// Queue bound to [`DEAD_LETTER_EXCHANGE`] that keeps dead-lettered messages for inspection.
pub const DEAD_LETTER_QUEUE: &str = "stepline.dead";
/// Fanout exchange carrying [`crate::protocol::CancelMessage`]s to every worker.
pub const CANCEL_EXCHANGE: &str = "stepline.cancel";
/// Prefix of task queues: the queue of resource `R` is `stepline.task.R`.
pub const TASK_QUEUE_PREFIX: &str = "stepline.task.";
/// Prefix of partition input queues: `stepline.partition.<n>`.
pub const PARTITION_QUEUE_PREFIX: &str = "stepline.partition.";

/// The queue that carries tasks for `resource` (an activity ARN or another resource name).
pub fn task_queue(resource: &str) -> String {
    format!("{TASK_QUEUE_PREFIX}{resource}")
}

/// The input queue of a coordinator partition.
pub fn partition_queue(partition: u32) -> String {
    format!("{PARTITION_QUEUE_PREFIX}{partition}")
}

/// The exchange (direct, durable) workers publish replies to when a task names it
/// (`TaskMessage::reply_exchange`), with the partition queue's name as routing key: the engine
/// binds the inbox of the coordinator serving the partition under that key, and the exchange's
/// alternate exchange delivers to the partition queue itself when no inbox is bound.
pub const REPLY_EXCHANGE: &str = "stepline.replies";

/// Arguments every durable Stepline queue (task and partition queues) is declared with:
/// `x-dead-letter-exchange = stepline.dlx` (plus [`QueueType::argument`]). A consumer that
/// rejects a message without requeue sends it there.
pub const QUEUE_DEAD_LETTER_ARGUMENT: (&str, &str) =
    ("x-dead-letter-exchange", DEAD_LETTER_EXCHANGE);

/// The RabbitMQ queue type of every durable Stepline queue (task, partition, callback and
/// dead-letter queues). The engine and its workers must agree: RabbitMQ refuses to redeclare a
/// queue with another `x-queue-type` (`PRECONDITION_FAILED - inequivalent arg`), so a queue
/// keeps the type it was first declared with until it is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueType {
    /// Classic queues, declared without an `x-queue-type` argument (the default: what a
    /// Stepline broker has always declared, so existing queues stay valid).
    #[default]
    Classic,
    /// Quorum queues (`x-queue-type: quorum`): replicated across a RabbitMQ cluster's nodes
    /// with Raft, so a node lost with its disk loses no task or reply. Since RabbitMQ 4.0
    /// removed classic queue mirroring, the type to run on a cluster.
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` argument this type is declared with, if any.
    pub fn argument(self) -> Option<(&'static str, &'static str)> {
        match self {
            QueueType::Classic => None,
            QueueType::Quorum => Some(("x-queue-type", "quorum")),
        }
    }

    /// `classic` or `quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(format!(
                "unknown queue type `{other}`: expected `classic` or `quorum`"
            )),
        }
    }
}

/// Durable queue for `.waitForTaskToken` callbacks sent from outside a task's worker (the SDK's
/// `TaskTokenClient` over AMQP): it cannot know the partition of a token, so it publishes here
/// and the engine consumes this queue and routes each callback by the token's execution.
/// Declared like every durable Stepline queue (durable, [`QUEUE_DEAD_LETTER_ARGUMENT`]).
pub const CALLBACK_QUEUE: &str = "stepline.callbacks";
/// [`CANCEL_EXCHANGE`] is a fanout exchange declared durable (not auto-delete, no arguments):
/// RabbitMQ refuses a redeclaration with a different durability.
pub const CANCEL_EXCHANGE_DURABLE: bool = true;

#[cfg(test)]
mod tests {
    use super::QueueType;

    #[test]
    fn queue_types_parse_from_their_names_and_nothing_else() {
        assert_eq!("classic".parse(), Ok(QueueType::Classic));
        assert_eq!(" Quorum ".parse(), Ok(QueueType::Quorum));
        assert!("stream"
            .parse::<QueueType>()
            .unwrap_err()
            .contains("`stream`"));
        assert_eq!(QueueType::default(), QueueType::Classic);
        assert_eq!(QueueType::Classic.argument(), None);
        assert_eq!(
            QueueType::Quorum.argument(),
            Some(("x-queue-type", "quorum"))
        );
        assert_eq!(QueueType::Quorum.to_string(), "quorum");
    }
}
