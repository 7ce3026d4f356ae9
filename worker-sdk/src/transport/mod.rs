//! Transports: how a worker receives tasks and cancellations and sends its replies.
//!
//! Two transports with one set of semantics: RabbitMQ ([`amqp`], behind the default-on `amqp`
//! feature) and the in-process hub ([`crate::hub::InProcessHub`]). The worker runtime
//! (`crate::worker`) only sees three parts — a `TaskSource` it pulls from when it
//! has a free slot, a `CancelSource` it listens to all the time, and a `ReplySink` its tasks
//! publish through — and a `Delivery` per task that it settles exactly once: ack after the
//! final reply is confirmed, hand back (requeue) when it gives the task up, or reject
//! (dead-letter) when the message cannot be processed.
//!
//! This module is not a public extension point: [`Transport`] is an opaque value built from an
//! `InProcessHub` or an `AmqpTransport`.

#[cfg(feature = "amqp")]
pub mod amqp;
pub(crate) mod in_process;

use crate::hub::InProcessHub;
use crate::protocol::{Reply, ReplyRoute, TaskMessage};
use tokio_util::sync::CancellationToken;

/// Where a worker gets tasks from and sends replies to: build it from an
/// [`InProcessHub`] or (feature `amqp`) an [`amqp::AmqpTransport`].
pub struct Transport {
    kind: Kind,
}

enum Kind {
    InProcess(InProcessHub),
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpTransport),
}

impl From<InProcessHub> for Transport {
    fn from(hub: InProcessHub) -> Self {
        Transport {
            kind: Kind::InProcess(hub),
        }
    }
}

impl From<&InProcessHub> for Transport {
    fn from(hub: &InProcessHub) -> Self {
        Transport::from(hub.clone())
    }
}

#[cfg(feature = "amqp")]
impl From<amqp::AmqpTransport> for Transport {
    fn from(amqp: amqp::AmqpTransport) -> Self {
        Transport {
            kind: Kind::Amqp(amqp),
        }
    }
}

/// Failures of the transport itself (never of a task: those are [`crate::TaskError`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The broker could not be reached within the reconnect policy.
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    /// The connection is down (a reconnect may be under way).
    #[error("not connected to the broker: {0}")]
    Disconnected(String),
    /// The broker refused or did not confirm a publish.
    #[error("publish to `{queue}` not confirmed: {reason}")]
    NotConfirmed { queue: String, reason: String },
    /// No queue exists for the routing key (e.g. a `reply_to` nobody declared).
    #[error("no queue `{0}`: the message was returned unroutable")]
    Unroutable(String),
}

/// What a worker asks of a transport when it starts.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) struct Subscription<'a> {
    /// Activity ARNs to consume (their queues are `topology::task_queue(arn)`).
    pub activities: &'a [String],
    /// Activities with a limit of their own: most of their tasks handed out and not settled.
    pub limits: &'a std::collections::HashMap<String, u16>,
    /// Activities with a rate limit: their [`Pace`]s.
    pub paces: &'a std::collections::HashMap<String, Pace>,
    /// The worker's concurrency (its semaphore bounds the tasks in flight): on RabbitMQ each
    /// activity consumer's prefetch unless the activity has a lower limit or a rate limit (see
    /// `ConsumedQueue::prefetch` in the AMQP transport); unused in process.
    pub prefetch: u16,
    /// Shown to the broker (AMQP connection name).
    pub worker_name: &'a str,
}

/// An activity's rate limit, enforced where its tasks are handed out: one task per
/// `interval` at most, with no burst (after a quiet spell the next task goes at once, the one
/// after it an interval later).
#[derive(Clone)]
pub(crate) struct Pace {
    interval: std::time::Duration,
    /// When the next task may go; `None`: now.
    next: Option<tokio::time::Instant>,
}

impl Pace {
    /// `per_second` tasks a second; `None` for a rate that is not a number of at least
    /// [`MIN_RATE_PER_SECOND`].
    pub fn new(per_second: f64) -> Option<Pace> {
        (per_second.is_finite() && per_second >= MIN_RATE_PER_SECOND).then(|| Pace {
            interval: std::time::Duration::from_secs_f64(1.0 / per_second),
            next: None,
        })
    }

    /// The rate: tasks per second.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub fn per_second(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Whether a task may go at `now`.
    pub fn ready(&self, now: tokio::time::Instant) -> bool {
        self.next.is_none_or(|next| next <= now)
    }

    /// When a task may go next (`None`: now).
    pub fn ready_at(&self) -> Option<tokio::time::Instant> {
        self.next
    }

    /// A task goes at `now`: the next one waits an interval, counted from the turn this one
    /// had when it came less than an interval late (a timer's lateness is not lost at every
    /// turn, so a high rate is reached), else from `now` (no burst after an idle spell).
    pub fn take(&mut self, now: tokio::time::Instant) {
        let from = match self.next {
            Some(turn) if now < turn + self.interval => turn,
            _ => now,
        };
        self.next = Some(from + self.interval);
    }
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s", self.per_second())
    }
}

/// The lowest rate limit: one task every ten minutes. A task waiting its turn in a worker is a
/// RabbitMQ delivery not yet acknowledged, and RabbitMQ closes the channel of one unacked for
/// longer than its `consumer_timeout` (30 minutes by default), handing every task of the
/// worker back.
pub const MIN_RATE_PER_SECOND: f64 = 1.0 / 600.0;

/// The longest a task may wait in a worker for its rate-limited turn: 20 minutes, under
/// RabbitMQ's default `consumer_timeout` of 30. Two turns at the lowest rate (the prefetch of a
/// rate-limited activity without a concurrency limit is at least 2), or an activity's
/// concurrency limit divided by its rate.
pub const MAX_TURN_WAIT_SECONDS: f64 = 1_200.0;

/// Sleeps until `at`; never returns without one (a `select!` arm for the next turn of some
/// [`Pace`], if any).
pub(crate) async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The three halves of a started transport.
pub(crate) struct Started {
    pub tasks: TaskSource,
    pub cancels: CancelSource,
    pub replies: ReplySink,
}

impl Transport {
    /// Starts consuming. For AMQP this spawns the connection supervisor, which connects (and
    /// reconnects) in the background; a connection that cannot be made within the policy
    /// surfaces as an `Err` from [`TaskSource::next`].
    pub(crate) fn start(self, subscription: Subscription<'_>) -> Started {
        match self.kind {
            Kind::InProcess(hub) => in_process::start(hub, subscription),
            #[cfg(feature = "amqp")]
            Kind::Amqp(amqp) => amqp.start(subscription),
        }
    }
}

/// One task as received, with how to settle it.
pub(crate) struct Delivery {
    pub payload: Payload,
    /// The activity whose queue it came from, when the transport knows it.
    pub activity: Option<String>,
    pub settle: Settle,
    /// Cancelled when the delivery is lost with its connection: the broker has already put the
    /// task back, so its handler must stop and nothing may be sent for it.
    pub lost: CancellationToken,
}

#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) enum Payload {
    Task(Box<TaskMessage>),
    /// Not a task message at all (bad JSON, wrong shape): dead-letter it.
    Malformed(String),
}

/// How a delivery is settled; each consumes the handle, so it happens once.
pub(crate) enum Settle {
    /// With the activity's own slot when it has a limit (enforced here in process; RabbitMQ
    /// does it with the consumer's prefetch): freed as the delivery is settled.
    InProcess(InProcessHub, Option<in_process::ActivitySlot>),
    #[cfg(feature = "amqp")]
    Amqp(lapin::Acker),
}

impl Settle {
    /// Done: the final reply is confirmed (or the task needs no reply).
    pub async fn ack(self) -> Result<(), TransportError> {
        match self {
            Settle::InProcess(..) => Ok(()),
            #[cfg(feature = "amqp")]
            Settle::Amqp(acker) => amqp::ack(acker).await,
        }
    }

    /// Given up unfinished: put the task back for another worker.
    pub async fn hand_back(self, task: TaskMessage) -> Result<(), TransportError> {
        match self {
            Settle::InProcess(hub, _slot) => {
                in_process::hand_back(&hub, task);
                Ok(())
            }
            #[cfg(feature = "amqp")]
            Settle::Amqp(acker) => amqp::requeue(acker).await,
        }
    }

    /// Cannot be processed: dead-letter it (AMQP); dropped in process, where it cannot occur
    /// short of a bug.
    pub async fn reject(self) -> Result<(), TransportError> {
        match self {
            Settle::InProcess(..) => Ok(()),
            #[cfg(feature = "amqp")]
            Settle::Amqp(acker) => amqp::dead_letter(acker).await,
        }
    }
}

/// Tasks, pulled by the runtime only when it has room for one more.
pub(crate) enum TaskSource {
    InProcess(in_process::Tasks),
    #[cfg(feature = "amqp")]
    Amqp(amqp::Tasks),
}

impl TaskSource {
    /// The next task. Cancel-safe. `Err` is final: the transport gave up reconnecting.
    pub async fn next(&mut self) -> Result<Delivery, TransportError> {
        match self {
            TaskSource::InProcess(t) => Ok(t.next().await),
            #[cfg(feature = "amqp")]
            TaskSource::Amqp(t) => t.next().await,
        }
    }

    /// Stops taking tasks and returns those received but not yet handed to the runtime (the
    /// caller hands them back). Replies and acks keep working until [`TaskSource::close`].
    pub async fn stop(&mut self) -> Vec<Delivery> {
        match self {
            TaskSource::InProcess(_) => Vec::new(),
            #[cfg(feature = "amqp")]
            TaskSource::Amqp(t) => t.stop().await,
        }
    }

    /// Closes the transport once every delivery is settled.
    pub async fn close(self) {
        match self {
            TaskSource::InProcess(_) => {}
            #[cfg(feature = "amqp")]
            TaskSource::Amqp(t) => t.close().await,
        }
    }
}

/// Task tokens the engine gave up on.
pub(crate) enum CancelSource {
    InProcess(in_process::Cancels),
    #[cfg(feature = "amqp")]
    Amqp(tokio::sync::mpsc::UnboundedReceiver<String>),
}

impl CancelSource {
    /// The next cancelled task token; `None` once the source is closed for good. Cancel-safe.
    pub async fn next(&mut self) -> Option<String> {
        match self {
            CancelSource::InProcess(c) => c.next().await,
            #[cfg(feature = "amqp")]
            CancelSource::Amqp(rx) => rx.recv().await,
        }
    }
}

/// Sends replies; cheap to clone, one per running task.
#[derive(Clone)]
pub(crate) enum ReplySink {
    InProcess(InProcessHub),
    #[cfg(feature = "amqp")]
    Amqp(std::sync::Arc<amqp::Publisher>),
}

/// The broker's confirmation of a message already sent.
pub(crate) type PendingConfirm =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TransportError>> + Send>>;

impl ReplySink {
    /// Sends `reply` to `reply_to` now and returns the wait for the broker's confirmation, so
    /// the caller can work meanwhile (replies sent later still arrive after this one).
    pub async fn send_pipelined(
        &self,
        reply_to: &ReplyRoute,
        reply: &Reply,
    ) -> Result<PendingConfirm, TransportError> {
        match self {
            ReplySink::InProcess(_) => {
                self.send(reply_to, reply).await?;
                Ok(Box::pin(async { Ok(()) }))
            }
            #[cfg(feature = "amqp")]
            ReplySink::Amqp(publisher) => {
                let body = amqp::worker_reply_body(reply);
                publisher.send(reply_to, &body).await
            }
        }
    }

    /// Sends `reply` to `reply_to` and waits until the broker has confirmed it.
    pub async fn send(&self, reply_to: &ReplyRoute, reply: &Reply) -> Result<(), TransportError> {
        match self {
            ReplySink::InProcess(hub) => {
                // The hub has one reply stream; the engine routes by the token.
                let _ = reply_to;
                hub.reply(reply.clone());
                Ok(())
            }
            #[cfg(feature = "amqp")]
            ReplySink::Amqp(publisher) => {
                let body = amqp::worker_reply_body(reply);
                publisher.publish(reply_to, &body).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_pace_keeps_its_rate_when_turns_come_late_and_does_not_burst_after_idling() {
        let ms = Duration::from_millis;
        let t0 = tokio::time::Instant::now();
        let mut pace = Pace::new(10.0).expect("a rate");
        assert!(pace.ready(t0));
        pace.take(t0);
        assert_eq!(pace.ready_at(), Some(t0 + ms(100)));
        assert!(!pace.ready(t0 + ms(99)));
        // Taken 3 ms late (a timer's lateness): the next turn stays on the 100 ms grid.
        pace.take(t0 + ms(103));
        assert_eq!(pace.ready_at(), Some(t0 + ms(200)));
        // Idle for a second: counted from now, so no burst of the missed turns.
        pace.take(t0 + ms(1_200));
        assert_eq!(pace.ready_at(), Some(t0 + ms(1_300)));
        assert!((pace.per_second() - 10.0).abs() < 1e-9);
    }
}
