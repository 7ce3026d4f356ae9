//! The RabbitMQ transport (lapin), for workers and for the `TaskTokenClient`.
//!
//! Topology, shared with the engine through [`crate::topology`]: each activity's tasks wait on
//! the durable queue `task_queue(arn)` (declared here with exactly the engine's arguments);
//! replies are published persistent, `mandatory`, with publisher confirms, to the default
//! exchange with routing key = the task's `reply_to` (a partition's input queue), wrapped the
//! way the partition queue carries them (`{"kind":"worker","reply":…}`); cancellations arrive
//! from the fanout exchange [`CANCEL_EXCHANGE`] through an exclusive, auto-delete queue.
//!
//! One connection per worker with three channels: one consuming tasks (each activity's consumer
//! with its own prefetch: the activity's limit, else the worker's concurrency; no channel-wide
//! `global` prefetch, which RabbitMQ 4.3 refuses by default and quorum queues never took), one
//! in confirm mode for replies, one for cancellations. A delivery is acked only after its final
//! reply is confirmed. An activity with a rate limit and no limit of its own prefetches two
//! seconds of tasks ([`ConsumedQueue::prefetch`]); those not due yet wait in [`Tasks`], in
//! arrival order, while other deliveries go by.
//!
//! Reconnects are ours, not lapin's auto-recovery: after a connection loss the broker has
//! already requeued every unacked task and their ackers are dead, so the running handlers of
//! that connection are cancelled (their `lost` token fires) and nothing is sent for them; a
//! supervisor task reconnects with bounded exponential backoff (`backon`), redeclares and
//! resumes consuming.

use super::{
    CancelSource, Delivery, Pace, Payload, ReplySink, Settle, Started, Subscription, TaskSource,
    TransportError,
};
use crate::protocol::{CancelMessage, Reply, ReplyRoute, TaskMessage, PROTOCOL_VERSION};
use crate::topology::{
    task_queue, QueueType, CALLBACK_QUEUE, CANCEL_EXCHANGE, CANCEL_EXCHANGE_DURABLE,
    QUEUE_DEAD_LETTER_ARGUMENT,
};
use backon::{ExponentialBuilder, Retryable};
use futures_util::stream::{self, SelectAll, Stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Acker;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use serde::Serialize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The arguments of every durable Stepline queue (task, partition and callback queues) of the
/// deployment whose names start with `prefix` (`"<namespace>."`, or empty): the dead-letter
/// exchange ([`QUEUE_DEAD_LETTER_ARGUMENT`], prefixed) and the queue type's `x-queue-type`. The
/// engine's broker declares with these too: RabbitMQ refuses a redeclaration whose arguments
/// differ.
pub fn durable_queue_arguments(prefix: &str, queue_type: QueueType) -> FieldTable {
    let mut args = queue_type_arguments(queue_type);
    let (key, dead_letter_exchange) = QUEUE_DEAD_LETTER_ARGUMENT;
    args.insert(
        key.into(),
        AMQPValue::LongString(LongString::from(format!("{prefix}{dead_letter_exchange}"))),
    );
    args
}

/// Only the queue type's `x-queue-type` (the dead-letter queue's arguments: it has no
/// dead-letter exchange of its own).
pub fn queue_type_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some((key, value)) = queue_type.argument() {
        args.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
    args
}

/// How long a stopping worker waits for the broker to confirm its consumers are cancelled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection settings of the RabbitMQ transport: `Worker::builder()…build(AmqpTransport::new(url))`.
#[derive(Debug, Clone)]
pub struct AmqpTransport {
    url: String,
    min_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<usize>,
    /// `"<namespace>."` or empty.
    prefix: String,
    queue_type: QueueType,
}

impl AmqpTransport {
    /// `url` like `amqp://guest:guest@127.0.0.1:5672/%2f`. By default the worker retries
    /// connecting forever, waiting 100 ms, then twice as long each time (with jitter), at most
    /// 30 s between attempts.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpTransport {
            url: url.into(),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            prefix: String::new(),
            queue_type: QueueType::Classic,
        }
    }

    /// Prefixes every queue and exchange name with `"<namespace>."`, as the engine's broker
    /// does with the same namespace (isolated tests); `reply_to` is used as given. Empty (the
    /// default) means exactly the names of [`crate::topology`].
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}.")
        };
        self
    }

    /// The full name of a queue or exchange (with the namespace prefix).
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The type of the queues this worker declares when they do not exist yet (default
    /// [`QueueType::Classic`]): the engine's `--queue-type`, which it must match — RabbitMQ
    /// refuses to redeclare a queue with another type, and the worker then cannot start.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Bounds of the exponential backoff between connection attempts.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// Gives up (and `Worker::run` returns an error) after `attempts` failed retries in a row.
    pub fn max_reconnect_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter();
        match self.max_attempts {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        }
    }

    pub(crate) fn start(self, subscription: Subscription<'_>) -> Started {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (cancels_tx, cancels_rx) = mpsc::unbounded_channel();
        let publisher = Arc::new(Publisher::default());
        let stop = CancellationToken::new();
        let close = CancellationToken::new();
        let supervisor = Supervisor {
            queues: subscription
                .activities
                .iter()
                .map(|arn| ConsumedQueue {
                    activity: arn.clone(),
                    queue: self.name(&task_queue(arn)),
                    limit: subscription.limits.get(arn).copied(),
                    rate: subscription.paces.get(arn).map(Pace::per_second),
                })
                .collect(),
            prefetch: subscription.prefetch.max(1),
            connection_name: subscription.worker_name.to_string(),
            config: self,
            events: events_tx,
            cancels: cancels_tx,
            publisher: publisher.clone(),
            stop: stop.clone(),
            close: close.clone(),
        };
        let handle = tokio::spawn(supervisor.run());
        Started {
            tasks: TaskSource::Amqp(Tasks {
                paces: subscription.paces.clone(),
                held: std::collections::VecDeque::new(),
                events: events_rx,
                stop,
                close,
                supervisor: Some(handle),
            }),
            cancels: CancelSource::Amqp(cancels_rx),
            replies: ReplySink::Amqp(publisher),
        }
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// What a partition queue carries: the engine's `InputMessage` (`kind`-tagged). Only the two
/// variants a worker or a callback client sends are mirrored here.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PartitionInput<'a> {
    Worker { reply: &'a Reply },
    Callback { reply: &'a Reply },
}

fn encode(input: &PartitionInput<'_>) -> Vec<u8> {
    // A Reply holds only strings, numbers and a serde_json::Value: it always serializes.
    serde_json::to_vec(input).expect("a Reply always serializes to JSON")
}

/// The body of a worker's reply on a partition queue.
pub(crate) fn worker_reply_body(reply: &Reply) -> Vec<u8> {
    encode(&PartitionInput::Worker { reply })
}

/// The body of a `.waitForTaskToken` callback (`TaskTokenClient`).
pub(crate) fn callback_body(reply: &Reply) -> Vec<u8> {
    encode(&PartitionInput::Callback { reply })
}

fn lapin_error(e: lapin::Error) -> TransportError {
    TransportError::Disconnected(e.to_string())
}

/// Publishes `body` persistent and mandatory to `exchange` (empty: the default exchange) and
/// waits for the broker's confirmation; an unroutable message comes back as an `Ack` carrying
/// it.
async fn publish_on(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<(), TransportError> {
    send_on(channel, exchange, routing_key, body).await?.await
}

/// Sends `body` (persistent, mandatory) on `channel` and returns the wait for its
/// confirmation: messages sent on one channel keep their order whether or not their
/// confirmations have been awaited.
async fn send_on(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<super::PendingConfirm, TransportError> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"));
    let pending = channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(lapin_error)?;
    let routing_key = routing_key.to_string();
    Ok(Box::pin(async move {
        let confirmation = pending.await.map_err(lapin_error)?;
        confirmed(confirmation, &routing_key)
    }))
}

fn confirmed(confirmation: Confirmation, routing_key: &str) -> Result<(), TransportError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(TransportError::Unroutable(routing_key.to_string())),
        Confirmation::Nack(_) => Err(TransportError::NotConfirmed {
            queue: routing_key.to_string(),
            reason: "the broker nacked it".to_string(),
        }),
        Confirmation::NotRequested => Err(TransportError::NotConfirmed {
            queue: routing_key.to_string(),
            reason: "publisher confirms are not enabled".to_string(),
        }),
    }
}

/// The confirm-mode channel of the current connection, shared by every running task.
#[derive(Default)]
pub(crate) struct Publisher {
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    fn set(&self, channel: Option<Channel>) {
        *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = channel;
    }

    fn current(&self) -> Option<Channel> {
        self.channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn publish(
        &self,
        route: &ReplyRoute,
        body: &[u8],
    ) -> Result<(), TransportError> {
        let Some(channel) = self.current() else {
            return Err(TransportError::Disconnected(
                "reconnecting to the broker".to_string(),
            ));
        };
        publish_on(&channel, &route.exchange, &route.routing_key, body).await
    }

    /// Sends without waiting for the confirmation; await the returned future for it.
    pub(crate) async fn send(
        &self,
        route: &ReplyRoute,
        body: &[u8],
    ) -> Result<super::PendingConfirm, TransportError> {
        let Some(channel) = self.current() else {
            return Err(TransportError::Disconnected(
                "reconnecting to the broker".to_string(),
            ));
        };
        send_on(&channel, &route.exchange, &route.routing_key, body).await
    }
}

pub(crate) async fn ack(acker: Acker) -> Result<(), TransportError> {
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(TransportError::Disconnected(
            "the delivery's channel is closed; the broker will redeliver the task".to_string(),
        )),
        Err(e) => Err(lapin_error(e)),
    }
}

pub(crate) async fn requeue(acker: Acker) -> Result<(), TransportError> {
    let options = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    // Ok(false): the channel is gone, and with it the delivery, which the broker requeued.
    acker.nack(options).await.map(drop).map_err(lapin_error)
}

pub(crate) async fn dead_letter(acker: Acker) -> Result<(), TransportError> {
    let options = BasicRejectOptions { requeue: false };
    acker.reject(options).await.map(drop).map_err(lapin_error)
}

/// What the supervisor tells the runtime's task source.
enum Event {
    Delivery(Delivery),
    /// Consumers are cancelled and every delivery they received has been forwarded.
    Drained,
    /// Connecting failed for good.
    Failed(TransportError),
}

/// The runtime's end of the supervisor.
pub(crate) struct Tasks {
    /// Rate-limited activities' paces, by ARN…
    paces: std::collections::HashMap<String, Pace>,
    /// …and their deliveries whose turn has not come, in arrival order.
    held: std::collections::VecDeque<Delivery>,
    events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
    close: CancellationToken,
    supervisor: Option<JoinHandle<()>>,
}

impl Tasks {
    /// The next delivery: a held one whose turn has come (the oldest first), else the next
    /// to arrive unless its activity's turn has not come (then it is held). Cancel-safe.
    pub(crate) async fn next(&mut self) -> Result<Delivery, TransportError> {
        loop {
            if self.paces.is_empty() {
                // Nothing is ever held: the next delivery, as it comes.
                return match self.events.recv().await {
                    Some(Event::Delivery(d)) => Ok(d),
                    event => Err(Self::ended(event)),
                };
            }
            // Lost with their connection: the broker has requeued them already.
            self.held.retain(|d| !d.lost.is_cancelled());
            let now = tokio::time::Instant::now();
            let due = self.held.iter().position(|d| self.due(d, now));
            if let Some(d) = due.and_then(|i| self.held.remove(i)) {
                self.take_turn(&d, now);
                return Ok(d);
            }
            let turn = self
                .held
                .iter()
                .filter_map(|d| self.paces.get(d.activity.as_deref()?)?.ready_at())
                .min();
            let event = tokio::select! {
                event = self.events.recv() => event,
                () = super::until(turn) => continue,
            };
            match event {
                // Not a task: dead-lettered at once, taking no turn.
                Some(Event::Delivery(d)) if matches!(d.payload, Payload::Malformed(_)) => {
                    return Ok(d);
                }
                Some(Event::Delivery(d)) => {
                    let now = tokio::time::Instant::now();
                    // Behind a held delivery of its activity, or before its turn: held.
                    let queued = self.held.iter().any(|h| h.activity == d.activity);
                    if queued || !self.due(&d, now) {
                        self.held.push_back(d);
                        continue;
                    }
                    self.take_turn(&d, now);
                    return Ok(d);
                }
                event => return Err(Self::ended(event)),
            }
        }
    }

    /// The error of an event that is not a delivery: the transport failed or was stopped.
    fn ended(event: Option<Event>) -> TransportError {
        match event {
            Some(Event::Failed(e)) => e,
            _ => TransportError::Disconnected("the transport was stopped".to_string()),
        }
    }

    /// Whether `d` may be handed out at `now` (always, unless its activity is rate-limited).
    fn due(&self, d: &Delivery, now: tokio::time::Instant) -> bool {
        d.activity
            .as_deref()
            .and_then(|a| self.paces.get(a))
            .is_none_or(|p| p.ready(now))
    }

    fn take_turn(&mut self, d: &Delivery, now: tokio::time::Instant) {
        if let Some(pace) = d.activity.as_deref().and_then(|a| self.paces.get_mut(a)) {
            pace.take(now);
        }
    }

    pub(crate) async fn stop(&mut self) -> Vec<Delivery> {
        self.stop.cancel();
        // Held ones lost with their connection are back on their queue already.
        let mut unstarted: Vec<Delivery> = self
            .held
            .drain(..)
            .filter(|d| !d.lost.is_cancelled())
            .collect();
        let drain = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    Event::Delivery(d) => unstarted.push(d),
                    Event::Drained | Event::Failed(_) => break,
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            warn!("the broker did not confirm the consumers' cancellation in time");
        }
        unstarted
    }

    pub(crate) async fn close(mut self) {
        self.stop.cancel();
        self.close.cancel();
        if let Some(handle) = self.supervisor.take() {
            if tokio::time::timeout(DRAIN_TIMEOUT, handle).await.is_err() {
                warn!("the AMQP connection did not close in time");
            }
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        // A worker that ends without `close` still stops consuming and closes its connection.
        self.stop.cancel();
        self.close.cancel();
    }
}

type TaskStream =
    Pin<Box<dyn Stream<Item = (usize, Option<lapin::Result<lapin::message::Delivery>>)> + Send>>;

/// One live connection with its channels and consumers.
struct Session {
    connection: Connection,
    consume: Channel,
    publish: Channel,
    consumer_tags: Vec<ShortString>,
    tasks: SelectAll<TaskStream>,
    cancels: Consumer,
}

impl Session {
    async fn close(self) {
        let _ = self
            .publish
            .close(200, ShortString::from("worker stopped"))
            .await;
        let _ = self
            .consume
            .close(200, ShortString::from("worker stopped"))
            .await;
        if let Err(e) = self
            .connection
            .close(200, ShortString::from("worker stopped"))
            .await
        {
            debug!(error = %e, "closing the AMQP connection");
        }
    }
}

enum End {
    /// Asked to stop; consumers cancelled and drained.
    Stopped,
    Lost(String),
}

struct ConsumedQueue {
    activity: String,
    queue: String,
    /// The activity's own limit: its consumer's prefetch…
    limit: Option<u16>,
    /// …and its rate limit (tasks per second).
    rate: Option<f64>,
}

impl ConsumedQueue {
    /// The consumer's prefetch, which bounds the activity's tasks received and not settled,
    /// running or waiting: the activity's limit (at most the worker's), which enforces it;
    /// without one, for a rate-limited activity, two seconds of tasks (twice the rate rounded
    /// up, at least 2, at most the worker's) — so those waiting their turn stay few and the
    /// rest stay queued for other workers, while tasks of up to a second still run at the full
    /// rate; else the worker's.
    fn prefetch(&self, worker: u16) -> u16 {
        let prefetch = match (self.limit, self.rate) {
            (Some(limit), _) => limit.min(worker),
            (None, Some(rate)) => {
                let two_seconds = (2.0 * rate).ceil().clamp(2.0, f64::from(u16::MAX)) as u16;
                two_seconds.min(worker)
            }
            (None, None) => worker,
        };
        prefetch.max(1)
    }
}

struct Supervisor {
    config: AmqpTransport,
    /// The activities' queues, in the order of the consumers.
    queues: Vec<ConsumedQueue>,
    prefetch: u16,
    connection_name: String,
    events: mpsc::UnboundedSender<Event>,
    cancels: mpsc::UnboundedSender<String>,
    publisher: Arc<Publisher>,
    stop: CancellationToken,
    close: CancellationToken,
}

impl Supervisor {
    async fn run(self) {
        loop {
            let connected = tokio::select! {
                _ = self.stop.cancelled() => {
                    let _ = self.events.send(Event::Drained);
                    return;
                }
                connected = self.connect() => connected,
            };
            let mut session = match connected {
                Ok(session) => session,
                Err(e) => {
                    let _ = self.events.send(Event::Failed(e));
                    return;
                }
            };
            info!(queues = ?self.queues.iter().map(|q| &q.queue).collect::<Vec<_>>(), "consuming tasks");
            self.publisher.set(Some(session.publish.clone()));
            let lost = CancellationToken::new();
            match self.pump(&mut session, &lost).await {
                End::Stopped => {
                    let _ = self.events.send(Event::Drained);
                    self.linger(&mut session, &lost).await;
                    self.publisher.set(None);
                    session.close().await;
                    return;
                }
                End::Lost(reason) => {
                    warn!(%reason, "lost the broker connection; its tasks go back to the queue; reconnecting");
                    self.publisher.set(None);
                    lost.cancel();
                    // Whatever is left of the old connection goes, so the broker requeues
                    // everything it had delivered on it.
                    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
                }
            }
        }
    }

    async fn connect(&self) -> Result<Session, TransportError> {
        (|| self.connect_once())
            .retry(self.config.backoff())
            .sleep(tokio::time::sleep)
            .notify(|e, delay| {
                warn!(error = %e, retry_in = ?delay, url = %redact(&self.config.url), "cannot connect to RabbitMQ");
            })
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))
    }

    async fn connect_once(&self) -> lapin::Result<Session> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.connection_name.as_str()));
        let connection = Connection::connect(&self.config.url, properties).await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;

        let consume = connection.create_channel().await?;
        for ConsumedQueue { queue, .. } in &self.queues {
            consume
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    durable_queue(),
                    durable_queue_arguments(&self.config.prefix, self.config.queue_type),
                )
                .await?;
        }
        let mut tasks = SelectAll::new();
        let mut consumer_tags = Vec::new();
        // Prefetch per consumer, never channel-wide: RabbitMQ 4.3 refuses a `global`
        // `basic.qos` unless the operator permits the deprecated feature, and quorum queues
        // never supported it. A per-consumer `basic.qos` binds the consumers started after it,
        // so each activity's consumer starts right after its own ([`ConsumedQueue::prefetch`]:
        // the activity's limit, else two seconds of a rate-limited activity's tasks, else the
        // worker's concurrency). The worker-wide budget is the runtime's semaphore (it takes
        // a delivery only with a free slot); a worker serving several activities may so hold
        // up to a prefetch per activity, received and not started, until a slot frees or it
        // hands them back.
        let mut current = None;
        for (index, q) in self.queues.iter().enumerate() {
            let prefetch = q.prefetch(self.prefetch);
            if current != Some(prefetch) {
                consume
                    .basic_qos(prefetch, BasicQosOptions { global: false })
                    .await?;
                current = Some(prefetch);
            }
            self.start_consumer(&consume, index, &q.queue, &mut tasks, &mut consumer_tags)
                .await?;
        }

        let cancel_exchange = ShortString::from(self.config.name(CANCEL_EXCHANGE));
        let cancel_channel = connection.create_channel().await?;
        cancel_channel
            .exchange_declare(
                cancel_exchange.clone(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: CANCEL_EXCHANGE_DURABLE,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let cancel_queue = cancel_channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        cancel_channel
            .queue_bind(
                cancel_queue.name().clone(),
                cancel_exchange,
                ShortString::from(""),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let cancels = cancel_channel
            .basic_consume(
                cancel_queue.name().clone(),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;

        Ok(Session {
            connection,
            consume,
            publish,
            consumer_tags,
            tasks,
            cancels,
        })
    }

    async fn pump(&self, session: &mut Session, lost: &CancellationToken) -> End {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return self.drain(session, lost).await,
                item = session.tasks.next() => match item {
                    Some((index, Some(Ok(delivery)))) => self.forward(index, delivery, lost),
                    Some((index, Some(Err(e)))) => {
                        return End::Lost(format!("consumer of `{}`: {e}", self.queue(index)));
                    }
                    Some((index, None)) => {
                        return End::Lost(format!("the broker cancelled the consumer of `{}`", self.queue(index)));
                    }
                    None => return End::Lost("no task consumer left".to_string()),
                },
                item = session.cancels.next() => match item {
                    Some(Ok(delivery)) => self.forward_cancel(&delivery.data),
                    Some(Err(e)) => return End::Lost(format!("cancellation consumer: {e}")),
                    None => return End::Lost("the cancellation consumer ended".to_string()),
                },
            }
        }
    }

    /// Cancels the task consumers and forwards what they had already received, so the runtime
    /// can hand it back explicitly.
    async fn drain(&self, session: &mut Session, lost: &CancellationToken) -> End {
        for tag in &session.consumer_tags {
            if let Err(e) = session
                .consume
                .basic_cancel(tag.clone(), BasicCancelOptions::default())
                .await
            {
                // The channel is gone: the broker requeued everything it had delivered.
                warn!(error = %e, "cancelling a task consumer");
                return End::Stopped;
            }
        }
        let forward_rest = async {
            while let Some((index, item)) = session.tasks.next().await {
                match item {
                    Some(Ok(delivery)) => self.forward(index, delivery, lost),
                    Some(Err(_)) => break,
                    None => {}
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, forward_rest)
            .await
            .is_err()
        {
            warn!("the broker did not end the task consumers in time");
        }
        End::Stopped
    }

    /// While the runtime finishes its in-flight tasks: keep relaying cancellations, and
    /// notice a lost connection.
    async fn linger(&self, session: &mut Session, lost: &CancellationToken) {
        loop {
            tokio::select! {
                _ = self.close.cancelled() => return,
                item = session.cancels.next() => match item {
                    Some(Ok(delivery)) => self.forward_cancel(&delivery.data),
                    Some(Err(_)) | None => {
                        warn!("lost the broker connection while stopping; in-flight tasks go back to the queue");
                        self.publisher.set(None);
                        lost.cancel();
                        self.close.cancelled().await;
                        return;
                    }
                },
            }
        }
    }

    /// Starts consuming `queue` (the activity at `index` of `self.queues`) on `channel`.
    async fn start_consumer(
        &self,
        channel: &Channel,
        index: usize,
        queue: &str,
        tasks: &mut SelectAll<TaskStream>,
        consumer_tags: &mut Vec<ShortString>,
    ) -> lapin::Result<()> {
        let consumer = channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consumer_tags.push(consumer.tag());
        // Each consumer's end shows up as `(index, None)`, so losing one is noticed.
        let stream: TaskStream = Box::pin(
            consumer
                .map(move |item| (index, Some(item)))
                .chain(stream::once(async move { (index, None) })),
        );
        tasks.push(stream);
        Ok(())
    }

    fn queue(&self, index: usize) -> &str {
        self.queues.get(index).map_or("?", |q| q.queue.as_str())
    }

    fn forward(&self, index: usize, delivery: lapin::message::Delivery, lost: &CancellationToken) {
        let payload = match serde_json::from_slice::<TaskMessage>(&delivery.data) {
            Ok(task) => Payload::Task(Box::new(task)),
            Err(e) => Payload::Malformed(e.to_string()),
        };
        let activity = self.queues.get(index).map(|q| q.activity.clone());
        // If the runtime is gone the delivery is dropped unacked; the broker requeues it.
        let _ = self.events.send(Event::Delivery(Delivery {
            payload,
            activity,
            settle: Settle::Amqp(delivery.acker),
            lost: lost.clone(),
        }));
    }

    fn forward_cancel(&self, data: &[u8]) {
        match serde_json::from_slice::<CancelMessage>(data) {
            Ok(message) if message.version == PROTOCOL_VERSION => {
                let _ = self.cancels.send(message.task_token);
            }
            Ok(message) => {
                warn!(
                    version = message.version,
                    "ignoring a cancellation of an unknown protocol version"
                );
            }
            Err(e) => warn!(error = %e, "ignoring a malformed cancellation message"),
        }
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A publishing-only connection for `TaskTokenClient`: connects on demand, reconnects once per
/// send when the connection turned out to be dead, declares [`CALLBACK_QUEUE`].
pub(crate) struct CallbackPublisher {
    config: AmqpTransport,
    current: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl CallbackPublisher {
    pub(crate) async fn connect(config: AmqpTransport) -> Result<Self, TransportError> {
        let publisher = CallbackPublisher {
            config,
            current: tokio::sync::Mutex::new(None),
        };
        publisher.channel().await?;
        Ok(publisher)
    }

    async fn channel(&self) -> Result<Channel, TransportError> {
        let mut current = self.current.lock().await;
        if let Some((connection, channel)) = current.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let opened = (|| self.open())
            .retry(self.config.backoff())
            .sleep(tokio::time::sleep)
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let channel = opened.1.clone();
        *current = Some(opened);
        Ok(channel)
    }

    async fn open(&self) -> lapin::Result<(Connection, Channel)> {
        let connection =
            Connection::connect(&self.config.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .queue_declare(
                ShortString::from(self.config.name(CALLBACK_QUEUE)),
                durable_queue(),
                durable_queue_arguments(&self.config.prefix, self.config.queue_type),
            )
            .await?;
        Ok((connection, channel))
    }

    pub(crate) async fn publish(&self, queue: &str, body: &[u8]) -> Result<(), TransportError> {
        let channel = self.channel().await?;
        match publish_on(&channel, "", queue, body).await {
            Err(TransportError::Disconnected(reason)) => {
                debug!(%reason, "callback connection was dead; reconnecting once");
                *self.current.lock().await = None;
                let channel = self.channel().await?;
                publish_on(&channel, "", queue, body).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_travel_in_the_partition_queue_envelope() {
        let reply = Reply::Heartbeat {
            version: PROTOCOL_VERSION,
            task_token: "t".into(),
        };
        let body: serde_json::Value =
            serde_json::from_slice(&worker_reply_body(&reply)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"kind": "worker", "reply": {"type": "heartbeat", "version": 1, "task_token": "t"}})
        );
        let body: serde_json::Value = serde_json::from_slice(&callback_body(&reply)).expect("json");
        assert_eq!(body["kind"], "callback");
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
