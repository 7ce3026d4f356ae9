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

/// Arguments every durable Stepline queue (task and partition queues) is declared with:
/// `x-dead-letter-exchange = stepline.dlx`. A consumer that rejects a message without requeue
/// sends it there.
pub const QUEUE_DEAD_LETTER_ARGUMENT: (&str, &str) =
    ("x-dead-letter-exchange", DEAD_LETTER_EXCHANGE);

/// Durable queue for `.waitForTaskToken` callbacks sent from outside a task's worker (the SDK's
/// `TaskTokenClient` over AMQP): it cannot know the partition of a token, so it publishes here
/// and the engine consumes this queue and routes each callback by the token's execution.
/// Declared like every durable Stepline queue (durable, [`QUEUE_DEAD_LETTER_ARGUMENT`]).
pub const CALLBACK_QUEUE: &str = "stepline.callbacks";
/// [`CANCEL_EXCHANGE`] is a fanout exchange declared durable (not auto-delete, no arguments):
/// RabbitMQ refuses a redeclaration with a different durability.
pub const CANCEL_EXCHANGE_DURABLE: bool = true;
