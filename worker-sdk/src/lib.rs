//! Stepline's worker SDK: activity workers that consume tasks, heartbeat and reply.
//!
//! ```no_run
//! # #[cfg(feature = "amqp")]
//! # mod example {
//! use stepline_worker::{AmqpTransport, TaskContext, TaskError, Worker, WorkerError};
//!
//! async fn greet(ctx: TaskContext, name: String) -> Result<String, TaskError> {
//!     Ok(format!("hello {name} (attempt {})", ctx.attempt()))
//! }
//!
//! async fn serve() -> Result<(), WorkerError> {
//!     Worker::builder()
//!         .activity("greet", greet) // arn:aws:states:us-east-1:111111111111:activity:greet
//!         .build(AmqpTransport::new("amqp://guest:guest@127.0.0.1:5672/%2f"))
//!         .run() // until SIGTERM/Ctrl-C, then drains gracefully
//!         .await
//! }
//! # }
//! ```
//!
//! * [`worker`]: the runtime — [`Worker`], its builder, the handler's [`TaskContext`]
//!   (heartbeats, cancellation, deadline), error mapping, concurrency (per worker and per activity), rate limits (per activity), graceful shutdown.
//! * [`client`]: [`TaskTokenClient`], completing `.waitForTaskToken` tasks from outside.
//! * [`transport`]: RabbitMQ ([`AmqpTransport`], default feature `amqp`) and in-process.
//! * [`protocol`]: the versioned wire messages shared with the engine.
//! * [`hub`]: the in-process transport (embedded mode and tests).
//! * [`topology`]: AMQP names and queue arguments shared with the engine.

pub mod client;
pub mod hub;
pub mod protocol;
pub mod topology;
pub mod transport;
pub mod worker;

pub use client::{ClientError, TaskTokenClient};
pub use hub::InProcessHub;
pub use protocol::{Reply, TaskError, TaskMessage, PROTOCOL_VERSION};
pub use tokio_util::sync::CancellationToken;
pub use topology::QueueType;
#[cfg(feature = "amqp")]
pub use transport::amqp::AmqpTransport;
pub use transport::{Transport, TransportError};
pub use worker::{activity_arn, TaskContext, Worker, WorkerBuilder, WorkerError};
