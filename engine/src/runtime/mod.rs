//! The distributed runtime: coordinators that drive the pure interpreter over a [`store::Store`]
//! (Redis or memory) and a [`broker::Broker`] (RabbitMQ or memory).
//!
//! Flow of one input: the owner of the execution's partition loads the execution, applies the
//! input with [`crate::interp::Execution::apply`], and commits events, snapshot, journal,
//! timers and an outbox of messages in one atomic, version- and fence-checked
//! [`store::Store::commit`]; only then does it publish the outbox. Every consumer tolerates
//! duplicates (task tokens name the task; the interpreter ignores stale inputs).

pub mod broker;
pub mod broker_amqp;
pub mod broker_memory;
pub mod cache;
pub mod clock;
pub mod coordinator;
pub mod metrics;
pub mod service;
pub mod store;
pub mod store_memory;
pub mod store_redis;

/// The name in an ARN: what follows its last `:` (a state machine's or activity's name).
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(_, name)| name)
}
