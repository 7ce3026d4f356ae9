//! The `Broker` port: how task messages reach workers and how their replies (and the control
//! plane's start/stop requests) reach the coordinator that owns an execution's partition.
//!
//! Topology (RabbitMQ adapter): one durable queue per activity/resource (persistent messages,
//! publisher confirms, consumer prefetch); one durable input queue per partition
//! (`stepline.partition.<n>`), which is the `reply_to` of every task message (the routing key
//! of its replies on the `stepline.replies` exchange, which delivers them to the serving
//! coordinator's inbox, or to the partition queue when no inbox is bound); a fanout
//! exchange for cancellations; a dead-letter exchange (`stepline.dlx` → `stepline.dead`) for
//! messages that cannot be parsed — logged, counted, never fatal to the consumer. The memory
//! adapter keeps the same semantics with in-process channels
//! ([`stepline_worker::hub::InProcessHub`]). One contract suite runs against both.

use serde::{Deserialize, Serialize};
use std::future::Future;
use stepline_worker::protocol::{Reply, TaskMessage};

/// Everything that enters a partition: worker replies and control-plane requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputMessage {
    /// A worker's reply (routed by the token's execution).
    Worker { reply: Reply },
    /// Create and start an execution. The partition owner creates the record (so creation is
    /// fenced like every other write); a second Start for an existing ARN with the same input
    /// is a no-op.
    Start(StartRequest),
    /// Stop an execution.
    Stop {
        execution_arn: String,
        error: Option<String>,
        cause: Option<String>,
    },
    /// Complete a `.waitForTaskToken` task from outside (SendTask* API, SDK client).
    Callback { reply: Reply },
    /// Redrive a failed execution; `redrive_count` is the count after this redrive, so a
    /// duplicate is ignored.
    Redrive {
        execution_arn: String,
        redrive_count: u32,
    },
}

/// The fields of a `Start` input (on the wire, beside its `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub revision_id: String,
    pub name: String,
    pub input: serde_json::Value,
    pub start_ms: i64,
}

pub use stepline_worker::topology::{partition_queue, task_queue};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    #[error("broker: {0}")]
    Other(String),
}

/// Acknowledges one delivery. Dropping it without acking leaves the message to be redelivered
/// (after the consumer/connection goes away).
pub trait Acker: std::any::Any + Send + Sync + 'static {
    fn ack(
        self: Box<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>;

    /// Acks this delivery and `earlier`: deliveries of the same consumer received before this
    /// one and not acked yet (a coordinator's group commit acks its whole batch). By default
    /// each is acked on its own, oldest first; an adapter may send one acknowledgement for all
    /// (AMQP's `multiple`).
    fn ack_with(
        self: Box<Self>,
        earlier: Vec<Box<dyn Acker>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        ack_in_order(earlier, Box::pin(async move { self.ack().await }))
    }
}

/// Acks `earlier` one by one, then awaits `last` (the default [`Acker::ack_with`], and an
/// adapter's fallback). A failed ack does not stop the others (a batch may mix channels, and
/// one closed channel must not leave another's deliveries unacked); the first error is
/// returned.
pub fn ack_in_order(
    earlier: Vec<Box<dyn Acker>>,
    last: std::pin::Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
    Box::pin(async move {
        let mut first_error = None;
        for a in earlier {
            if let Err(e) = a.ack().await {
                first_error.get_or_insert(e);
            }
        }
        let last = last.await;
        match first_error {
            Some(e) => Err(e),
            None => last,
        }
    })
}

/// One received input with its acknowledgement handle.
pub struct Delivery {
    pub message: InputMessage,
    pub acker: Box<dyn Acker>,
}

/// A stream of a partition's inputs. `next` returns `None` when the consumer was cancelled.
pub trait InputConsumer: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Option<Delivery>> + Send;
    /// Stops consuming, and waits until the partition's replies are no longer routed here
    /// (dropping the consumer does the same in the background).
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        drop(self);
        std::future::ready(())
    }
}

/// A task fetched with `get_task` (the GetActivityTask path).
pub struct TaskDelivery {
    pub message: TaskMessage,
    pub acker: Box<dyn Acker>,
}

pub trait Broker: Send + Sync + 'static {
    type Consumer: InputConsumer;

    /// Publishes a task on the durable queue `queue` (declared on first use) and waits for
    /// the broker's confirmation.
    fn publish_task(
        &self,
        queue: &str,
        message: &TaskMessage,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Broadcasts that a task was given up.
    fn publish_cancel(
        &self,
        task_token: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Sends an input to a partition's queue (confirmed).
    fn publish_input(
        &self,
        partition: u32,
        message: &InputMessage,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Starts consuming a partition's inputs; malformed messages are dead-lettered, not
    /// returned.
    fn consume_inputs(
        &self,
        partition: u32,
    ) -> impl Future<Output = Result<Self::Consumer, BrokerError>> + Send;
    /// Takes one task from `queue` if one is waiting (no long poll here).
    fn get_task(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<Option<TaskDelivery>, BrokerError>> + Send;
    /// Deletes the task queue `queue` if it is idle — no message waiting, no consumer — as
    /// `DeleteActivity` does for the activity's queue, so deleted activities do not leave
    /// queues behind. `Ok(false)` when it was kept (a consumer or a message would be lost).
    fn delete_idle_queue(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;
    /// Messages dead-lettered so far by this process (malformed input).
    fn dead_lettered(&self) -> u64;

    /// This broker's reply inbox, declared and consumed on the first call: where, besides the
    /// partition queues, it can receive worker replies (`None`: it has no such thing, as the
    /// memory adapter, whose replies are routed in process).
    fn reply_inbox(&self) -> impl Future<Output = Result<Option<String>, BrokerError>> + Send {
        std::future::ready(Ok(None))
    }
    /// Routes `partition`'s worker replies to this broker's inbox, where the consumer from
    /// `consume_inputs(partition)` gets them (until it is dropped).
    fn route_replies(
        &self,
        partition: u32,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = partition;
        std::future::ready(Ok(()))
    }
    /// Stops routing `partition`'s worker replies to `route`: another coordinator's inbox,
    /// left bound when it died. Harmless when `route` is gone or not bound.
    fn unroute(
        &self,
        partition: u32,
        route: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = (partition, route);
        std::future::ready(Ok(()))
    }
    /// Deletes the inbox `route`, which no partition records any more: unbinds it from all
    /// `partitions`, then deletes it once whatever is left in it has moved on and nobody
    /// consumes it (in the background; kept otherwise).
    fn retire_route(&self, route: &str, partitions: u32) {
        let _ = (route, partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `Start` keeps its wire shape: its fields beside `kind`, as before it had a struct.
    #[test]
    fn a_start_is_its_fields_beside_its_kind() {
        let wire = json!({
            "kind": "start",
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:sm:e1",
            "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:sm",
            "revision_id": "r1",
            "name": "e1",
            "input": {"n": 1},
            "start_ms": 1_700_000_000_000_i64,
        });
        let start: InputMessage = serde_json::from_value(wire.clone()).unwrap();
        let InputMessage::Start(request) = &start else {
            panic!("not a start: {start:?}");
        };
        assert_eq!(request.name, "e1");
        assert_eq!(request.input, json!({"n": 1}));
        assert_eq!(serde_json::to_value(&start).unwrap(), wire);
    }
}
