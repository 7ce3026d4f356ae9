//! Stepline's worker SDK: activity workers that consume tasks, heartbeat and reply.
//!
//! * [`protocol`]: the versioned wire messages shared with the engine.
//! * [`hub`]: the in-process transport (embedded mode and tests).
//! * [`topology`]: AMQP names and queue arguments shared with the engine.

pub mod hub;
pub mod protocol;
pub mod topology;

pub use protocol::{Reply, TaskError, TaskMessage, PROTOCOL_VERSION};
