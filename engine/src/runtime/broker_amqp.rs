//! The RabbitMQ [`Broker`] (AMQP 0-9-1 via lapin): the production transport.
//!
//! One connection per broker (one broker per process), with lapin's automatic recovery
//! (queues, bindings, QoS, consumers and confirm mode are replayed after a reconnect); the first
//! connection is retried with a bounded exponential backoff (`backon`). One confirm-mode
//! channel publishes, one channel serves `get_task` (basic.get), and every input consumer gets
//! its own channel with a prefetch limit, so dropping a consumer closes its channel and
//! RabbitMQ requeues whatever it had not acked.
//!
//! Topology (names from [`stepline_worker::topology`], optionally prefixed by a namespace for
//! isolated tests): the dead-letter exchange (fanout, durable) bound to the dead-letter queue;
//! durable task and partition queues, declared on first use and cached, each with
//! `x-dead-letter-exchange`; the cancellation fanout exchange. Messages are JSON, persistent
//! (delivery mode 2) and confirmed; task and input publishes are `mandatory`, and since RabbitMQ
//! *acks* an unroutable mandatory message (returning it alongside), a confirmation that carries
//! a returned message counts as a failure (the queue is redeclared and the publish retried).
//!
//! A message that cannot be decoded ([`decode_input`], [`decode_task`]: bad JSON, unknown
//! protocol version) is rejected without requeue, so RabbitMQ moves it to the dead-letter
//! queue; it is logged and counted, and the consumer keeps consuming.
//!
//! Optionally ([`AmqpConfig::with_callback_routing`]) the broker also consumes the callback
//! queue, where `.waitForTaskToken` callbacks arrive from clients that cannot know a token's
//! partition, and forwards each one whose token verifies to its execution's partition queue
//! (acked only after the forward is confirmed), as the memory broker routes the hub's replies.
//! With a namespace, a task's `reply_to` partition queue is namespaced too.
//!
//! Worker replies (see [`Inbox`]): tasks name the reply exchange `stepline.replies`, whose
//! alternate exchange `stepline.replies.unrouted` has every partition queue bound under its
//! own name. The first use declares this broker's inbox; `route_replies` binds it under a
//! partition queue's name; the partition's [`AmqpConsumer`] yields the inbox's deliveries
//! for it beside the partition queue's.
//!
//! Not here: ownership of partitions (leases in the store), retries of ASL tasks (engine logic).

use super::broker::{
    partition_queue, Acker, Broker, BrokerError, Delivery, InputConsumer, InputMessage,
    TaskDelivery,
};
use super::broker_memory::{decode_input, decode_task};
use super::store::partition_of;
use crate::task_token;
use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::AMQPErrorKind::{self, Hard, Soft};
use lapin::protocol::{AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stepline_worker::protocol::{CancelMessage, TaskMessage, PROTOCOL_VERSION};
pub use stepline_worker::topology::QueueType;
use stepline_worker::topology::{
    CALLBACK_QUEUE, CANCEL_EXCHANGE, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE,
    PARTITION_QUEUE_PREFIX, REPLY_EXCHANGE,
};
use stepline_worker::transport::amqp::{durable_queue_arguments, queue_type_arguments};
use tokio::sync::oneshot;

/// The URL of a local RabbitMQ with the default account and vhost.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How often one publish is tried (after a recovered channel error or a returned message).
const PUBLISH_ATTEMPTS: usize = 3;

/// Persistent delivery mode.
const PERSISTENT: u8 = 2;

/// The reply exchange's alternate exchange (direct, durable), where every partition queue is
/// bound under its own name; also the inboxes' dead-letter exchange, so an inbox message that
/// nobody consumed in time moves to its partition queue.
pub const UNROUTED_EXCHANGE: &str = "stepline.replies.unrouted";
/// A coordinator's inbox: `stepline.inbox.<connection name>.<pid>.<random>`.
pub const INBOX_PREFIX: &str = "stepline.inbox.";

/// How often [`Broker::retire_route`] tries to delete an inbox (one inbox TTL apart).
const RETIRE_ATTEMPTS: usize = 5;

/// How to reach RabbitMQ and how to use it.
#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (vhost URL-encoded: `%2f` is `/`).
    pub url: String,
    /// Prefix for every exchange and queue name (`"<namespace>."`); empty in production, so
    /// names are exactly those of [`stepline_worker::topology`]. Tests use a unique namespace to
    /// isolate themselves (and [`AmqpBroker::delete_namespace`] to clean up).
    pub namespace: String,
    /// Unacked deliveries one input consumer may hold.
    pub prefetch: u16,
    /// The type of the durable queues this broker declares (task, partition, callback and
    /// dead-letter queues); workers must declare the same (`AmqpTransport::queue_type`).
    pub queue_type: QueueType,
    /// Attempts to establish the first connection (exponential backoff, 200 ms to 5 s).
    pub connect_attempts: usize,
    /// TCP connection attempts per reconnection cycle after the connection is lost (lapin's
    /// recovery backoff, 100 ms to 5 s).
    pub reconnect_attempts: usize,
    /// Shown in RabbitMQ's management UI.
    pub connection_name: String,
    /// When set, this broker consumes the callback queue and routes each callback to its
    /// execution's partition (see [`AmqpConfig::with_callback_routing`]).
    pub callback_routing: Option<CallbackRouting>,
    /// How long a reply waits in this broker's inbox before it moves to its partition queue
    /// (`x-message-ttl`): what a reply left in a dead coordinator's inbox waits at most.
    pub inbox_message_ttl: Duration,
}

/// What routing callbacks by task token needs: the engine's token key and partition count.
#[derive(Clone)]
pub struct CallbackRouting {
    pub token_key: Vec<u8>,
    pub partitions: u32,
}

impl fmt::Debug for CallbackRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackRouting")
            .field("token_key", &"***")
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl AmqpConfig {
    pub fn new(url: impl Into<String>) -> Self {
        AmqpConfig {
            url: url.into(),
            namespace: String::new(),
            prefetch: 64,
            queue_type: QueueType::Classic,
            connect_attempts: 8,
            reconnect_attempts: 10,
            connection_name: "stepline-engine".into(),
            callback_routing: None,
            inbox_message_ttl: Duration::from_secs(10),
        }
    }

    pub fn with_inbox_message_ttl(mut self, ttl: Duration) -> Self {
        self.inbox_message_ttl = ttl;
        self
    }

    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    pub fn with_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    pub fn with_connect_attempts(mut self, attempts: usize) -> Self {
        self.connect_attempts = attempts;
        self
    }

    pub fn with_reconnect_attempts(mut self, attempts: usize) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// Consume [`CALLBACK_QUEUE`] (where the SDK's `TaskTokenClient` sends `.waitForTaskToken`
    /// callbacks, not knowing their partition) and move each callback whose token verifies
    /// with `token_key` to the input queue of its execution's partition; others are
    /// dead-lettered. Every engine process may do this: the queue's consumers share the work.
    pub fn with_callback_routing(mut self, token_key: impl Into<Vec<u8>>, partitions: u32) -> Self {
        self.callback_routing = Some(CallbackRouting {
            token_key: token_key.into(),
            partitions: partitions.max(1),
        });
        self
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig::new(DEFAULT_URL)
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("prefetch", &self.prefetch)
            .field("queue_type", &self.queue_type)
            .field("connect_attempts", &self.connect_attempts)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("connection_name", &self.connection_name)
            .field("callback_routing", &self.callback_routing)
            .field("inbox_message_ttl", &self.inbox_message_ttl)
            .finish()
    }
}

/// `url` without its password, for logs and errors.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single set operation; a poisoned lock leaves it consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(what: &str, e: lapin::Error) -> BrokerError {
    BrokerError::Unavailable(format!("{what}: {e}"))
}

/// A new channel on `connection`.
async fn open_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    connection
        .create_channel()
        .await
        .map_err(|e| unavailable("cannot open a channel", e))
}

/// A channel that is open or will be once the connection recovers.
fn usable(channel: &Channel) -> bool {
    let s = channel.status();
    s.connected() || s.reconnecting() || s.initializing()
}

struct Shared {
    config: AmqpConfig,
    /// `"<namespace>."` or empty.
    prefix: String,
    connection: Connection,
    publisher: tokio::sync::Mutex<Channel>,
    getter: tokio::sync::Mutex<Channel>,
    /// Queues (full names) declared by this broker.
    declared: Mutex<HashSet<String>>,
    dead_lettered: AtomicU64,
    consumer_tags: AtomicU64,
    /// Dropped with the broker, which stops the callback router.
    router_stop: Mutex<Option<oneshot::Sender<()>>>,
    /// This broker's inbox, created on first use and again after its consumer ended.
    inbox: tokio::sync::Mutex<Option<Arc<Inbox>>>,
}

impl Shared {
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn queue_arguments(&self) -> FieldTable {
        durable_queue_arguments(&self.prefix, self.config.queue_type)
    }

    /// The channel in `slot`, reopened if it was closed (a channel-level error closes it).
    async fn channel(
        &self,
        slot: &tokio::sync::Mutex<Channel>,
        confirm: bool,
    ) -> Result<Channel, BrokerError> {
        let mut channel = slot.lock().await;
        if !usable(&channel) {
            tracing::info!(confirm, "reopening a closed RabbitMQ channel");
            let fresh = open_channel(&self.connection).await?;
            if confirm {
                fresh
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| unavailable("cannot enable publisher confirms", e))?;
            }
            *channel = fresh;
        }
        Ok(channel.clone())
    }

    /// Declares a durable Stepline queue (full name) once per broker.
    async fn declare_queue(&self, queue: &str) -> Result<(), BrokerError> {
        if lock(&self.declared).contains(queue) {
            return Ok(());
        }
        let channel = self.channel(&self.publisher, true).await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                self.queue_arguments(),
            )
            .await
            .map_err(|e| unavailable(&format!("cannot declare queue {queue}"), e))?;
        if self.partition_of_queue(queue).is_some() {
            // Replies no inbox takes reach the partition queue through the reply exchange's
            // alternate exchange.
            channel
                .queue_bind(
                    queue.into(),
                    self.name(UNROUTED_EXCHANGE).as_str().into(),
                    queue.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| unavailable(&format!("cannot bind queue {queue}"), e))?;
        }
        lock(&self.declared).insert(queue.to_string());
        Ok(())
    }

    /// This broker's inbox, declared and consumed on first use, and again after its consumer
    /// ended (the server cancelled it, or the connection was lost for good).
    async fn inbox(self: &Arc<Self>) -> Result<Arc<Inbox>, BrokerError> {
        let mut slot = self.inbox.lock().await;
        if let Some(inbox) = slot.as_ref().filter(|inbox| inbox.alive()) {
            return Ok(inbox.clone());
        }
        let created: Result<Arc<Inbox>, BrokerError> = async {
            let name = self.name(&format!(
                "{INBOX_PREFIX}{}.{}.{:016x}",
                self.config.connection_name,
                std::process::id(),
                unique_u64()
            ));
            let mut arguments = queue_type_arguments(self.config.queue_type);
            let millis = |d: Duration| {
                AMQPValue::LongLongInt(i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
            };
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.name(UNROUTED_EXCHANGE).as_str().into()),
            );
            arguments.insert(
                "x-message-ttl".into(),
                millis(self.config.inbox_message_ttl),
            );
            if self.config.queue_type == QueueType::Quorum {
                // A quorum queue's dead-lettering is at-most-once unless asked otherwise.
                arguments.insert(
                    "x-dead-letter-strategy".into(),
                    AMQPValue::LongString("at-least-once".into()),
                );
                arguments.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("reject-publish".into()),
                );
            }
            let channel = open_channel(&self.connection).await?;
            channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    arguments,
                )
                .await
                .map_err(|e| unavailable(&format!("cannot declare inbox {name}"), e))?;
            let prefetch = self.config.prefetch.saturating_mul(4);
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| unavailable("cannot set the inbox prefetch", e))?;
            let consumer = channel
                .basic_consume(
                    name.as_str().into(),
                    format!("{}-inbox", self.config.connection_name)
                        .as_str()
                        .into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| unavailable(&format!("cannot consume inbox {name}"), e))?;
            let inbox = Arc::new(Inbox {
                name,
                routes: Mutex::default(),
                registrations: AtomicU64::new(0),
                shared: Arc::downgrade(self),
                ended: std::sync::atomic::AtomicBool::new(false),
                deleting: std::sync::atomic::AtomicBool::new(false),
                _channel: channel,
            });
            tokio::spawn(inbox.clone().run(consumer));
            Ok(inbox)
        }
        .await;
        let inbox = created?;
        *slot = Some(inbox.clone());
        Ok(inbox)
    }

    /// The partition whose queue `name` (full name) is.
    fn partition_of_queue(&self, name: &str) -> Option<u32> {
        name.strip_prefix(self.prefix.as_str())?
            .strip_prefix(PARTITION_QUEUE_PREFIX)?
            .parse()
            .ok()
    }

    /// Declares the exchanges and the dead-letter queue every broker needs.
    async fn declare_topology(&self) -> Result<(), BrokerError> {
        let channel = self.channel(&self.publisher, true).await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let dlx = self.name(DEAD_LETTER_EXCHANGE);
        let dead = self.name(DEAD_LETTER_QUEUE);
        let cancel = self.name(CANCEL_EXCHANGE);
        let declare_error = |what: &str, e| unavailable(&format!("cannot declare {what}"), e);
        let unrouted = self.name(UNROUTED_EXCHANGE);
        let replies = self.name(REPLY_EXCHANGE);
        let mut alternate = FieldTable::default();
        alternate.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString(unrouted.as_str().into()),
        );
        let exchanges = [
            (&dlx, ExchangeKind::Fanout, FieldTable::default()),
            (&cancel, ExchangeKind::Fanout, FieldTable::default()),
            (&unrouted, ExchangeKind::Direct, FieldTable::default()),
            (&replies, ExchangeKind::Direct, alternate),
        ];
        for (exchange, kind, arguments) in exchanges {
            channel
                .exchange_declare(exchange.as_str().into(), kind, durable, arguments)
                .await
                .map_err(|e| declare_error(exchange, e))?;
        }
        channel
            .queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                queue_type_arguments(self.config.queue_type),
            )
            .await
            .map_err(|e| declare_error(&dead, e))?;
        channel
            .queue_bind(
                dead.as_str().into(),
                dlx.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| declare_error(&dead, e))?;
        Ok(())
    }

    /// Publishes one persistent JSON message and waits for RabbitMQ's confirmation. With
    /// `queue`, the message goes to that queue (declared first) through the default exchange
    /// and must be routable.
    async fn publish(
        &self,
        exchange: &str,
        queue: Option<&str>,
        payload: &[u8],
    ) -> Result<(), BrokerError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into());
        let options = BasicPublishOptions {
            mandatory: queue.is_some(),
            immediate: false,
        };
        let mut last = BrokerError::Other("publish was not attempted".into());
        for _ in 0..PUBLISH_ATTEMPTS {
            if let Some(queue) = queue {
                self.declare_queue(queue).await?;
            }
            let channel = self.channel(&self.publisher, true).await?;
            let confirmation = match channel
                .basic_publish(
                    exchange.into(),
                    queue.unwrap_or("").into(),
                    options,
                    payload,
                    properties.clone(),
                )
                .await
            {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match confirmation {
                Ok(Confirmation::Ack(None)) => return Ok(()),
                Ok(Confirmation::Ack(Some(returned))) => {
                    // RabbitMQ acks an unroutable mandatory message and returns it: the queue
                    // is gone (deleted behind our back). Redeclare it and publish again.
                    let target = queue.unwrap_or(exchange);
                    tracing::warn!(
                        queue = target,
                        reply_code = returned.reply_code,
                        reply_text = %returned.reply_text,
                        "published message was returned as unroutable"
                    );
                    if let Some(queue) = queue {
                        lock(&self.declared).remove(queue);
                    }
                    last = BrokerError::NotConfirmed(format!(
                        "message to {target} was returned: {} {}",
                        returned.reply_code, returned.reply_text
                    ));
                }
                Ok(Confirmation::Nack(_)) => {
                    return Err(BrokerError::NotConfirmed(
                        "RabbitMQ nacked the message".into(),
                    ))
                }
                Ok(Confirmation::NotRequested) => {
                    return Err(BrokerError::NotConfirmed(
                        "publisher confirms are off on the publishing channel".into(),
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; waiting for recovery");
                    last = unavailable("publish failed", e.clone());
                    if let Err(e) = channel.wait_for_recovery(e).await {
                        tracing::debug!(error = %e, "publish error is not recoverable in place");
                    }
                }
            }
        }
        Err(last)
    }

    /// Counts and logs a malformed message at once, and returns the rejection without requeue
    /// (to the DLX) to await or spawn. Counting before the rejection is sent means the count
    /// includes every malformed message that came before the next good one handed on.
    fn dead_letter(
        &self,
        acker: lapin::Acker,
        size: usize,
        reason: String,
        queue: String,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%queue, %reason, size, "dead-lettering a malformed message");
        async move {
            if let Err(e) = acker.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!(%queue, error = %e, "rejecting a malformed message failed");
            }
        }
    }
}

/// The RabbitMQ broker. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

impl AmqpBroker {
    /// Connects (retrying with bounded exponential backoff) and declares the topology.
    pub async fn connect(config: AmqpConfig) -> Result<AmqpBroker, BrokerError> {
        let shown = redact(&config.url);
        let properties = ConnectionProperties::default()
            .with_connection_name(config.connection_name.clone().into())
            .with_backoff(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(config.reconnect_attempts),
            )
            .enable_auto_recover();
        let url = config.url.clone();
        let connection = (|| Connection::connect(&url, properties.clone()))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(config.connect_attempts),
            )
            .sleep(tokio::time::sleep)
            .notify(|e, after| {
                tracing::warn!(url = %shown, error = %e, ?after, "cannot connect to RabbitMQ; retrying");
            })
            .await
            .map_err(|e| {
                BrokerError::Unavailable(format!("cannot connect to RabbitMQ at {shown}: {e}"))
            })?;
        let publisher = open_channel(&connection).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| unavailable("cannot enable publisher confirms", e))?;
        let getter = open_channel(&connection).await?;
        let prefix = if config.namespace.is_empty() {
            String::new()
        } else {
            format!("{}.", config.namespace)
        };
        let shared = Arc::new(Shared {
            config,
            prefix,
            connection,
            publisher: tokio::sync::Mutex::new(publisher),
            getter: tokio::sync::Mutex::new(getter),
            declared: Mutex::new(HashSet::new()),
            dead_lettered: AtomicU64::new(0),
            consumer_tags: AtomicU64::new(0),
            router_stop: Mutex::new(None),
            inbox: tokio::sync::Mutex::new(None),
        });
        shared.declare_topology().await?;
        if let Some(routing) = shared.config.callback_routing.clone() {
            start_callback_router(&shared, routing).await?;
        }
        Ok(AmqpBroker { shared })
    }

    /// The configuration this broker was connected with.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    /// The full name of a queue or exchange (with the namespace prefix).
    pub fn name(&self, name: &str) -> String {
        self.shared.name(name)
    }

    /// Publishes raw bytes as a worker publishes a reply for `partition`: to the reply
    /// exchange, under the partition queue's name, confirmed (tests, tooling).
    pub async fn publish_raw_reply(&self, partition: u32, bytes: &[u8]) -> Result<(), BrokerError> {
        let key = self.name(&partition_queue(partition));
        self.shared
            .publish(&self.name(REPLY_EXCHANGE), Some(&key), bytes)
            .await
    }

    /// Publishes raw bytes onto a partition's input queue, bypassing encoding (tests, tooling).
    pub async fn publish_raw_input(&self, partition: u32, bytes: &[u8]) -> Result<(), BrokerError> {
        self.publish_raw(&partition_queue(partition), bytes).await
    }

    /// Publishes raw bytes onto a durable Stepline queue (`queue` without the namespace, e.g.
    /// [`CALLBACK_QUEUE`]), confirmed, bypassing encoding (tests, tooling).
    pub async fn publish_raw(&self, queue: &str, bytes: &[u8]) -> Result<(), BrokerError> {
        let queue = self.name(queue);
        self.shared.publish("", Some(&queue), bytes).await
    }

    /// Takes (and acks) the oldest message of the dead-letter queue, if any.
    pub async fn take_dead_letter(&self) -> Result<Option<Vec<u8>>, BrokerError> {
        let channel = self.shared.channel(&self.shared.getter, false).await?;
        let queue = self.name(DEAD_LETTER_QUEUE);
        let message = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .map_err(|e| unavailable(&format!("cannot read {queue}"), e))?;
        Ok(message.map(|m| m.delivery.data))
    }

    /// Subscribes to cancellations: a server-named, exclusive queue bound to the cancellation
    /// exchange, deleted when the subscription is dropped.
    pub async fn subscribe_cancels(&self) -> Result<CancelSubscription, BrokerError> {
        let channel = open_channel(&self.shared.connection).await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable("cannot declare a cancellation queue", e))?;
        let queue = queue.name().to_string();
        channel
            .queue_bind(
                queue.as_str().into(),
                self.name(CANCEL_EXCHANGE).into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable("cannot bind the cancellation queue", e))?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.consumer_tag().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable("cannot consume cancellations", e))?;
        Ok(CancelSubscription {
            _channel: channel,
            consumer,
        })
    }

    /// Deletes every queue this broker declared, the dead-letter queue and the exchanges.
    /// Only for a namespaced broker (tests): the shared production topology is never deleted.
    pub async fn delete_namespace(&self) -> Result<(), BrokerError> {
        if self.shared.prefix.is_empty() {
            return Err(BrokerError::Other(
                "refusing to delete the topology of a broker without a namespace".into(),
            ));
        }
        let channel = open_channel(&self.shared.connection).await?;
        let mut queues: Vec<String> = lock(&self.shared.declared).drain().collect();
        queues.push(self.name(DEAD_LETTER_QUEUE));
        let inbox = self.shared.inbox.lock().await.clone();
        if let Some(inbox) = &inbox {
            inbox.deleting.store(true, Ordering::SeqCst);
            queues.push(inbox.name.clone());
        }
        for queue in queues {
            if let Err(e) = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
            {
                // The inbox may live on: its consumer's end is news again.
                if let Some(inbox) = &inbox {
                    inbox.deleting.store(false, Ordering::SeqCst);
                }
                return Err(unavailable(&format!("cannot delete queue {queue}"), e));
            }
        }
        for exchange in [
            self.name(DEAD_LETTER_EXCHANGE),
            self.name(CANCEL_EXCHANGE),
            self.name(REPLY_EXCHANGE),
            self.name(UNROUTED_EXCHANGE),
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|e| unavailable(&format!("cannot delete exchange {exchange}"), e))?;
        }
        Ok(())
    }

    /// Closes the connection (consumers end, unacked deliveries are requeued).
    pub async fn close(&self) -> Result<(), BrokerError> {
        self.shared
            .connection
            .close(200, "OK".into())
            .await
            .map_err(|e| unavailable("cannot close the connection", e))
    }

    fn consumer_tag(&self) -> String {
        let n = self.shared.consumer_tags.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{n}",
            self.shared.config.connection_name,
            std::process::id()
        )
    }
}

impl Broker for AmqpBroker {
    type Consumer = AmqpConsumer;

    async fn publish_task(&self, queue: &str, message: &TaskMessage) -> Result<(), BrokerError> {
        let payload = if !self.shared.prefix.is_empty()
            && message.reply_to.starts_with(PARTITION_QUEUE_PREFIX)
        {
            // In a namespace, workers must reply to the namespaced partition queue, through
            // the namespaced reply exchange.
            let mut message = message.clone();
            message.reply_to = self.name(&message.reply_to);
            message.reply_exchange = message.reply_exchange.as_deref().map(|e| self.name(e));
            serde_json::to_vec(&message)
        } else {
            serde_json::to_vec(message)
        }
        .map_err(|e| BrokerError::Other(e.to_string()))?;
        let queue = self.name(queue);
        self.shared.publish("", Some(&queue), &payload).await
    }

    async fn publish_cancel(&self, task_token: &str) -> Result<(), BrokerError> {
        let payload = serde_json::to_vec(&CancelMessage {
            version: PROTOCOL_VERSION,
            task_token: task_token.to_string(),
        })
        .map_err(|e| BrokerError::Other(e.to_string()))?;
        // Not mandatory: a fanout exchange without subscribers is not an error.
        let exchange = self.name(CANCEL_EXCHANGE);
        self.shared.publish(&exchange, None, &payload).await
    }

    async fn publish_input(
        &self,
        partition: u32,
        message: &InputMessage,
    ) -> Result<(), BrokerError> {
        let payload = serde_json::to_vec(message).map_err(|e| BrokerError::Other(e.to_string()))?;
        let queue = self.name(&partition_queue(partition));
        self.shared.publish("", Some(&queue), &payload).await
    }

    async fn consume_inputs(&self, partition: u32) -> Result<AmqpConsumer, BrokerError> {
        let queue = self.name(&partition_queue(partition));
        self.shared.declare_queue(&queue).await?;
        let channel = open_channel(&self.shared.connection).await?;
        channel
            .basic_qos(self.shared.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| unavailable("cannot set the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.consumer_tag().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable(&format!("cannot consume {queue}"), e))?;
        let inbox = self.shared.inbox().await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let registration = inbox.register(partition, tx, queued.clone());
        Ok(AmqpConsumer {
            _channel: channel,
            consumer,
            shared: self.shared.clone(),
            queue,
            state: Arc::default(),
            inbox: Some(InboxReceiver {
                inbox,
                partition,
                registration,
                rx,
                queued,
                released: false,
            }),
        })
    }

    async fn reply_inbox(&self) -> Result<Option<String>, BrokerError> {
        Ok(Some(self.shared.inbox().await?.name.clone()))
    }

    async fn route_replies(&self, partition: u32) -> Result<(), BrokerError> {
        let inbox = self.shared.inbox().await?;
        set_binding(&self.shared, &inbox.name, partition, true).await
    }

    async fn unroute(&self, partition: u32, route: &str) -> Result<(), BrokerError> {
        set_binding(&self.shared, route, partition, false).await
    }

    fn retire_route(&self, route: &str, partitions: u32) {
        let broker = self.clone();
        let route = route.to_string();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // No partition may route to it any more (a binding its owner's store record
            // missed, an unbind that failed): nothing new arrives once these are gone.
            for partition in 0..partitions {
                if let Err(e) = set_binding(&broker.shared, &route, partition, false).await {
                    tracing::info!(inbox = %route, error = %e, "cannot unbind an inbox to retire; kept");
                    return;
                }
            }
            // What the inbox still holds moves to the partition queues within its TTL.
            let wait = broker.shared.config.inbox_message_ttl + Duration::from_secs(1);
            for _ in 0..RETIRE_ATTEMPTS {
                tokio::time::sleep(wait).await;
                match broker.delete_idle(&route).await {
                    Ok(true) => {
                        tracing::info!(inbox = %route, "deleted an inbox no partition routes to");
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(inbox = %route, error = %e, "deleting an inbox"),
                }
            }
            // A live coordinator that serves no partition any more still consumes its inbox.
            tracing::info!(inbox = %route, "an inbox no partition routes to is still consumed or not empty; kept");
        });
    }

    async fn get_task(&self, queue: &str) -> Result<Option<TaskDelivery>, BrokerError> {
        let queue = self.name(queue);
        // basic.get on a missing queue would close the channel: declare it first.
        self.shared.declare_queue(&queue).await?;
        let mut channel = self.shared.channel(&self.shared.getter, false).await?;
        let mut retried = false;
        loop {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await;
            let message = match got {
                Ok(message) => message,
                // The queue was deleted behind this broker's back (a `DeleteActivity` on
                // another server), or the shared channel was closed under this call: declare
                // the queue again and retry once on a fresh channel.
                Err(e) if !retried => {
                    retried = true;
                    tracing::debug!(queue = %queue, error = %e, "basic.get failed; retrying once");
                    if amqp_error_is(&e, Soft(AMQPSoftError::NOTFOUND)) {
                        lock(&self.shared.declared).remove(&queue);
                        self.shared.declare_queue(&queue).await?;
                    }
                    channel = self.shared.channel(&self.shared.getter, false).await?;
                    continue;
                }
                Err(e) => return Err(unavailable(&format!("cannot get from {queue}"), e)),
            };
            let Some(message) = message else {
                return Ok(None);
            };
            let delivery = message.delivery;
            match decode_task(&delivery.data) {
                Ok(task) => {
                    return Ok(Some(TaskDelivery {
                        message: task,
                        acker: Box::new(RequeueOnDropAcker {
                            acker: Some(delivery.acker),
                        }),
                    }))
                }
                Err(reason) => {
                    self.shared
                        .dead_letter(delivery.acker, delivery.data.len(), reason, queue.clone())
                        .await
                }
            }
        }
    }

    async fn delete_idle_queue(&self, queue: &str) -> Result<bool, BrokerError> {
        let queue = self.name(queue);
        // Declared again on its next use unless it is kept (forgotten first, so no use of it
        // here can skip declaring a queue that is being deleted).
        lock(&self.shared.declared).remove(&queue);
        let deleted = self.delete_idle(&queue).await;
        if !matches!(deleted, Ok(true)) {
            // Kept, or not known to be gone: still ours to clean up.
            lock(&self.shared.declared).insert(queue.clone());
        }
        deleted
    }

    fn dead_lettered(&self) -> u64 {
        self.shared.dead_lettered.load(Ordering::Relaxed)
    }
}

impl AmqpBroker {
    /// Deletes the queue `queue` (full name) if it is idle — no consumer, no message — with
    /// whichever check its type allows; `Ok(false)` when it was kept.
    async fn delete_idle(&self, queue: &str) -> Result<bool, BrokerError> {
        let deleted = match self.shared.config.queue_type {
            QueueType::Classic => match self.delete_if_idle(queue).await {
                // A quorum queue after all (a vhost whose default queue type is quorum).
                Err(e) if amqp_error_is(&e, Hard(AMQPHardError::NOTIMPLEMENTED)) => {
                    self.delete_checked_idle(queue).await
                }
                other => other,
            },
            QueueType::Quorum => self.delete_checked_idle(queue).await,
        };
        deleted.map_err(|e| unavailable(&format!("cannot delete queue {queue}"), e))
    }

    /// Deletes `queue` if no consumer uses it and no message waits in it, in one step (a
    /// classic queue: `if-unused` and `if-empty`); `false` when RabbitMQ kept it. On a
    /// short-lived connection of its own: a refusal closes the channel, and a quorum queue
    /// answers these flags with a *connection* error (540 NOT_IMPLEMENTED) that must not reach
    /// the engine's connection.
    async fn delete_if_idle(&self, queue: &str) -> Result<bool, lapin::Error> {
        let config = &self.shared.config;
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("{}-delete-queue", config.connection_name).into());
        let connection = Connection::connect(&config.url, properties).await?;
        let options = QueueDeleteOptions {
            if_unused: true,
            if_empty: true,
            ..QueueDeleteOptions::default()
        };
        let deleted = match connection.create_channel().await {
            Ok(channel) => channel.queue_delete(queue.into(), options).await,
            Err(e) => Err(e),
        };
        if connection.status().connected() {
            let _ = connection.close(200, "OK".into()).await;
        }
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if amqp_error_is(&e, Soft(AMQPSoftError::PRECONDITIONFAILED)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `queue` if a passive declaration finds it without consumers and messages (quorum
    /// queues take no `if-unused`/`if-empty`), on a channel of its own. Not atomic: a task
    /// published between the look and the delete goes with the queue — `DeleteActivity` has
    /// already removed the activity, so only a task scheduled in that instant by a coordinator
    /// that had not yet seen it gone, which then ends by its state's timeout. A missing queue
    /// counts as deleted.
    async fn delete_checked_idle(&self, queue: &str) -> Result<bool, lapin::Error> {
        let channel = self.shared.connection.create_channel().await?;
        let looked = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let deleted = match looked {
            Ok(q) if q.message_count() == 0 && q.consumer_count() == 0 => channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .map(|_| true),
            Ok(_) => Ok(false),
            Err(e) if amqp_error_is(&e, Soft(AMQPSoftError::NOTFOUND)) => Ok(true),
            Err(e) => Err(e),
        };
        // A NOT_FOUND closed the channel already; otherwise it goes now.
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        deleted
    }
}

/// Whether RabbitMQ answered `e` with the error `kind`: a channel error (`PRECONDITIONFAILED`:
/// a queue in use or not empty was not deleted; `NOTFOUND`: no such queue) or a connection
/// error (`NOTIMPLEMENTED`: a conditional delete of a quorum queue).
fn amqp_error_is(e: &lapin::Error, kind: AMQPErrorKind) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(err) if *err.kind() == kind)
}

/// Consumes one partition's input queue on its own channel. Dropping it closes the channel,
/// so RabbitMQ requeues every delivery it had not acked.
pub struct AmqpConsumer {
    _channel: Channel,
    consumer: lapin::Consumer,
    shared: Arc<Shared>,
    queue: String,
    /// Shared with every acker of this consumer (see [`AmqpAcker`]).
    state: Arc<ConsumerState>,
    /// The partition's replies that arrive through this broker's inbox.
    inbox: Option<InboxReceiver>,
}

/// A partition's share of the inbox: registered while its consumer lives; dropping it
/// unbinds the partition from the inbox, and the replies it had not handed on go back to the
/// inbox, which moves them to the partition queue.
struct InboxReceiver {
    inbox: Arc<Inbox>,
    partition: u32,
    registration: u64,
    rx: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    /// How many deliveries wait in `rx` (the inbox's count, see [`Route`]).
    queued: Arc<AtomicUsize>,
    /// Set by [`InboxReceiver::release`] (a closed consumer): nothing left for its drop.
    released: bool,
}

impl InboxReceiver {
    /// Unregisters the partition and hands back what was not taken: the deliveries' ackers
    /// requeue them as they drop, and the inbox, which no longer routes this partition here,
    /// forwards them to the partition queue.
    fn release(&mut self) {
        self.released = true;
        self.inbox.unregister(self.partition, self.registration);
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for InboxReceiver {
    /// Without [`InputConsumer::close`] (a consumer dropped, an aborted task): the unbinding
    /// runs in the background.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.release();
        let inbox = self.inbox.clone();
        let partition = self.partition;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { inbox.unbind_own(partition).await });
        }
    }
}

/// This broker's inbox: a durable queue bound to the reply exchange under the name of every
/// partition queue this broker serves ([`Broker::route_replies`]), so workers' replies for those partitions reach it
/// without passing through the partition queues (one busy queue instead of one per
/// partition; RabbitMQ spends markedly less per message). One consumer takes every delivery
/// and hands it to the partition's [`AmqpConsumer`]; a delivery for a partition not served
/// here (any more) is forwarded to its partition queue (published there, confirmed, then
/// acked). The inbox's messages expire into the partition queues after
/// [`AmqpConfig::inbox_message_ttl`] when nobody takes them (the inbox of a dead coordinator);
/// the inbox is deleted by a successor once no partition routes to it
/// ([`Broker::retire_route`]), never by RabbitMQ on its own (a queue RabbitMQ expires drops
/// what it holds).
struct Inbox {
    /// Full name.
    name: String,
    /// Partition → the local consumer's sender and its registration number.
    routes: Mutex<std::collections::HashMap<u32, Route>>,
    registrations: AtomicU64,
    shared: std::sync::Weak<Shared>,
    /// Set when its consumer ended: a new inbox is made on next use.
    ended: std::sync::atomic::AtomicBool,
    /// Set just before this broker deletes it ([`AmqpBroker::delete_namespace`]): the end of
    /// its consumer is then expected, not a fault.
    deleting: std::sync::atomic::AtomicBool,
    _channel: Channel,
}

type InboxSender = tokio::sync::mpsc::UnboundedSender<Delivery>;

/// A registered partition consumer: its registration number, its sender, and how many
/// deliveries wait in its channel (handed on, not yet taken).
struct Route {
    registration: u64,
    tx: InboxSender,
    queued: Arc<AtomicUsize>,
}

impl Inbox {
    fn alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst)
    }

    fn register(&self, partition: u32, tx: InboxSender, queued: Arc<AtomicUsize>) -> u64 {
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        let route = Route {
            registration,
            tx,
            queued,
        };
        lock(&self.routes).insert(partition, route);
        registration
    }

    fn unregister(&self, partition: u32, registration: u64) {
        let mut routes = lock(&self.routes);
        if routes
            .get(&partition)
            .is_some_and(|route| route.registration == registration)
        {
            routes.remove(&partition);
        }
    }

    /// Unbinds this inbox from `partition` unless a consumer of it was registered again —
    /// checked again after the unbind, which then binds it back (a re-registration's bind may
    /// have landed before this unbind).
    async fn unbind_own(&self, partition: u32) {
        if lock(&self.routes).contains_key(&partition) {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if let Err(e) = set_binding(&shared, &self.name, partition, false).await {
            tracing::warn!(inbox = %self.name, partition, error = %e, "cannot unbind the inbox");
            return;
        }
        if lock(&self.routes).contains_key(&partition) {
            if let Err(e) = set_binding(&shared, &self.name, partition, true).await {
                tracing::warn!(inbox = %self.name, partition, error = %e, "cannot bind the inbox again");
            }
        }
    }

    /// Its consumer ended: partitions' consumers end too (their senders go), and the next
    /// use makes a new inbox.
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        lock(&self.routes).clear();
    }

    /// Hands each delivery to its partition's consumer, or forwards it to the partition queue.
    async fn run(self: Arc<Self>, consumer: lapin::Consumer) {
        self.consume(consumer).await;
        // Deleted or closed by this broker: expected. Otherwise (RabbitMQ cancelled it, the
        // connection failed) an operator wants to know.
        let expected = self.deleting.load(Ordering::SeqCst)
            || self.shared.upgrade().is_none_or(|shared| {
                let status = shared.connection.status();
                status.closing() || status.closed()
            });
        if expected {
            tracing::debug!(inbox = %self.name, "inbox consumer ended");
        } else {
            tracing::warn!(inbox = %self.name, "inbox consumer ended");
        }
        self.end();
    }

    async fn consume(&self, mut consumer: lapin::Consumer) {
        while let Some(item) = consumer.next().await {
            let delivery = match item {
                Ok(delivery) => delivery,
                Err(e) => {
                    let Some(shared) = self.shared.upgrade() else {
                        return;
                    };
                    let status = shared.connection.status();
                    if status.closed() || status.errored() {
                        tracing::warn!(inbox = %self.name, error = %e, "inbox consumer failed");
                        return;
                    }
                    tracing::warn!(inbox = %self.name, error = %e, "inbox consumer error; waiting for the connection to recover");
                    continue;
                }
            };
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let Some(partition) = shared.partition_of_queue(delivery.routing_key.as_str()) else {
                // Not a partition's reply (published to the inbox by name): nothing can route
                // it, and the inbox's own dead-letter exchange leads to partition queues only.
                shared.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    queue = %self.name,
                    routing_key = %delivery.routing_key,
                    "dead-lettering an inbox message that names no partition queue"
                );
                let dlx = shared.name(DEAD_LETTER_EXCHANGE);
                tokio::spawn(move_delivery(shared, dlx, None, delivery));
                continue;
            };
            // A partition that does not keep up (a slow store, a stuck step) gets no more than
            // a consumer prefetch's worth waiting here; the rest goes to its partition queue,
            // so it cannot hold the inbox's prefetch, which every partition shares.
            let limit = usize::from(shared.config.prefetch.max(1));
            let route = lock(&self.routes)
                .get(&partition)
                .filter(|route| route.queued.load(Ordering::SeqCst) < limit)
                .map(|route| (route.tx.clone(), route.queued.clone()));
            let decoded = route.as_ref().map(|_| decode_input(&delivery.data));
            match (route, decoded) {
                (Some((tx, queued)), Some(Ok(message))) => {
                    queued.fetch_add(1, Ordering::SeqCst);
                    let handed = tx.send(Delivery {
                        message,
                        // Acked on its own: the inbox's channel carries every partition's
                        // deliveries, so a `multiple` ack could settle another partition's.
                        acker: Box::new(RequeueOnDropAcker {
                            acker: Some(delivery.acker),
                        }),
                    });
                    // A consumer that just went away: the delivery's acker requeues it as it
                    // drops, and it comes back here to be forwarded.
                    drop(handed);
                }
                // Not served here, behind, or malformed (the partition queue's consumer
                // dead-letters it, as it would have without the inbox): forward it.
                _ => {
                    let queue = delivery.routing_key.to_string();
                    tokio::spawn(move_delivery(shared, String::new(), Some(queue), delivery));
                }
            }
        }
    }
}

/// A number no other inbox name of this host is likely to have had: the clock's nanoseconds
/// mixed by the standard library's randomly keyed hasher.
fn unique_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

/// Moves an inbox delivery on: publishes it to `exchange` (with `queue`: to that queue,
/// routable), confirmed, then acks it; on failure, requeues it into the inbox after a pause.
async fn move_delivery(
    shared: Arc<Shared>,
    exchange: String,
    queue: Option<String>,
    delivery: lapin::message::Delivery,
) {
    match shared
        .publish(&exchange, queue.as_deref(), &delivery.data)
        .await
    {
        Ok(()) => {
            if let Err(e) = ack(delivery.acker, BasicAckOptions::default()).await {
                tracing::debug!(?queue, error = %e, "acking a delivery moved from the inbox");
            }
        }
        Err(e) => {
            tracing::warn!(%exchange, ?queue, error = %e, "cannot move a delivery from the inbox; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) = delivery.acker.nack(requeue).await {
                tracing::debug!(?queue, error = %e, "requeueing a delivery to move");
            }
        }
    }
}

/// Binds (`bound`) or unbinds the inbox `inbox` (full name) under `partition`'s routing key,
/// on a short-lived channel of its own: lapin replays the bindings made on a channel when it
/// recovers the connection, and a binding removed since must not come back; an inbox that no
/// longer exists closes the channel (and is no error for an unbind).
async fn set_binding(
    shared: &Shared,
    inbox: &str,
    partition: u32,
    bound: bool,
) -> Result<(), BrokerError> {
    let channel = open_channel(&shared.connection).await?;
    let (exchange, key) = (
        shared.name(REPLY_EXCHANGE),
        shared.name(&partition_queue(partition)),
    );
    let result = if bound {
        let options = QueueBindOptions::default();
        channel
            .queue_bind(
                inbox.into(),
                exchange.as_str().into(),
                key.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await
    } else {
        channel
            .queue_unbind(
                inbox.into(),
                exchange.as_str().into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await
    };
    let _ = channel.close(200, "OK".into()).await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if !bound && amqp_error_is(&e, Soft(AMQPSoftError::NOTFOUND)) => Ok(()),
        Err(e) => Err(unavailable(&format!("cannot (un)bind inbox {inbox}"), e)),
    }
}

/// What the ackers of one input consumer (one channel) share.
#[derive(Default)]
struct ConsumerState {
    /// Malformed deliveries being rejected in the background: while there are any, a
    /// `multiple` ack could reach RabbitMQ before a reject and settle that delivery (and the
    /// reject would then name an unknown delivery tag), so acks go one by one.
    rejecting: std::sync::atomic::AtomicUsize,
}

impl InputConsumer for AmqpConsumer {
    async fn close(mut self) {
        if let Some(mut inbox) = self.inbox.take() {
            inbox.release();
            inbox.inbox.unbind_own(inbox.partition).await;
        }
    }

    /// Cancel-safe: the only awaits are the consumer stream and the inbox channel; a
    /// malformed message is rejected in a background task.
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let from_queue = match &mut self.inbox {
                Some(inbox) => tokio::select! {
                    item = self.consumer.next() => item,
                    delivery = inbox.rx.recv() => match delivery {
                        Some(delivery) => {
                            inbox.queued.fetch_sub(1, Ordering::SeqCst);
                            return Some(delivery);
                        }
                        None => {
                            // The inbox's consumer ended (cancelled by the server, or the
                            // connection is gone): so does this consumer, and whoever serves
                            // the partition next routes its replies to a new inbox.
                            tracing::warn!(queue = %self.queue, "the inbox consumer ended; ending the partition's consumer");
                            return None;
                        }
                    },
                },
                None => self.consumer.next().await,
            };
            match from_queue {
                None => return None,
                Some(Err(e)) => {
                    let status = self.shared.connection.status();
                    if status.closed() || status.errored() {
                        tracing::warn!(queue = %self.queue, error = %e, "input consumer ended");
                        return None;
                    }
                    tracing::warn!(
                        queue = %self.queue,
                        error = %e,
                        "input consumer error; waiting for the connection to recover"
                    );
                }
                Some(Ok(delivery)) => match decode_input(&delivery.data) {
                    Ok(message) => {
                        return Some(Delivery {
                            message,
                            acker: Box::new(AmqpAcker {
                                acker: delivery.acker,
                                consumer: self.state.clone(),
                            }),
                        })
                    }
                    Err(reason) => {
                        let size = delivery.data.len();
                        let state = self.state.clone();
                        state.rejecting.fetch_add(1, Ordering::SeqCst);
                        let reject = self.shared.dead_letter(
                            delivery.acker,
                            size,
                            reason,
                            self.queue.clone(),
                        );
                        tokio::spawn(async move {
                            reject.await;
                            state.rejecting.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                },
            }
        }
    }
}

async fn ack(acker: lapin::Acker, options: BasicAckOptions) -> Result<(), BrokerError> {
    match acker.ack(options).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(BrokerError::Other(
            "the delivery's channel was closed or recovered; it will be redelivered".into(),
        )),
        Err(e) => Err(unavailable("ack failed", e)),
    }
}

/// Acks an input delivery; [`Acker::ack_with`] sends one `multiple` ack for a batch of one
/// consumer's deliveries (every earlier unacked delivery of its channel is in the batch: the
/// coordinator settles each input before it takes the next batch, or drops the consumer).
struct AmqpAcker {
    acker: lapin::Acker,
    consumer: Arc<ConsumerState>,
}

impl Acker for AmqpAcker {
    fn ack(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        Box::pin(ack(self.acker, BasicAckOptions::default()))
    }

    fn ack_with(
        self: Box<Self>,
        earlier: Vec<Box<dyn Acker>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        let same_consumer = earlier.iter().all(|a| {
            (&**a as &dyn std::any::Any)
                .downcast_ref::<AmqpAcker>()
                .is_some_and(|a| Arc::ptr_eq(&a.consumer, &self.consumer))
        });
        if earlier.is_empty()
            || !same_consumer
            || self.consumer.rejecting.load(Ordering::SeqCst) > 0
        {
            return crate::runtime::broker::ack_in_order(
                earlier,
                Box::pin(ack(self.acker, BasicAckOptions::default())),
            );
        }
        drop(earlier);
        Box::pin(ack(self.acker, BasicAckOptions { multiple: true }))
    }
}

/// Acks one delivery on its own; dropped without an ack, it nacks the delivery back onto its
/// queue at once. For a task taken with basic.get (the `get_task` channel lives as long as the
/// broker, so waiting for it to close would strand the task) and an inbox delivery (the inbox
/// then forwards it if its partition is no longer served here).
struct RequeueOnDropAcker {
    acker: Option<lapin::Acker>,
}

impl Acker for RequeueOnDropAcker {
    fn ack(mut self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        match self.acker.take() {
            Some(acker) => Box::pin(ack(acker, BasicAckOptions::default())),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }
}

impl Drop for RequeueOnDropAcker {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime, no connection: RabbitMQ requeues the task when the channel closes.
            return;
        };
        runtime.spawn(async move {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) = acker.nack(requeue).await {
                tracing::warn!(error = %e, "returning an unacked delivery failed");
            }
        });
    }
}

/// Cancellations received from the fanout exchange (see [`AmqpBroker::subscribe_cancels`]).
pub struct CancelSubscription {
    _channel: Channel,
    consumer: lapin::Consumer,
}

impl CancelSubscription {
    /// The next cancellation; `None` once the subscription ended. Malformed ones are skipped.
    pub async fn next(&mut self) -> Option<CancelMessage> {
        loop {
            match self.consumer.next().await? {
                Ok(delivery) => match serde_json::from_slice::<CancelMessage>(&delivery.data) {
                    Ok(cancel) if cancel.version == PROTOCOL_VERSION => return Some(cancel),
                    Ok(cancel) => {
                        tracing::warn!(version = cancel.version, "skipping a cancellation")
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping a malformed cancellation"),
                },
                Err(e) => tracing::warn!(error = %e, "cancellation subscription error"),
            }
        }
    }
}

/// Starts the task that routes callbacks from [`CALLBACK_QUEUE`] (own channel, prefetch).
async fn start_callback_router(
    shared: &Arc<Shared>,
    routing: CallbackRouting,
) -> Result<(), BrokerError> {
    let queue = shared.name(CALLBACK_QUEUE);
    shared.declare_queue(&queue).await?;
    let channel = open_channel(&shared.connection).await?;
    channel
        .basic_qos(shared.config.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| unavailable("cannot set the prefetch", e))?;
    let n = shared.consumer_tags.fetch_add(1, Ordering::Relaxed);
    let tag = format!(
        "{}-{}-callbacks-{n}",
        shared.config.connection_name,
        std::process::id()
    );
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| unavailable(&format!("cannot consume {queue}"), e))?;
    let (stop, mut stopped) = oneshot::channel();
    *lock(&shared.router_stop) = Some(stop);
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let _channel = channel;
        loop {
            let next = tokio::select! {
                _ = &mut stopped => return,
                next = consumer.next() => next,
            };
            let Some(shared) = weak.upgrade() else {
                return;
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    let status = shared.connection.status();
                    if status.closed() || status.errored() {
                        tracing::warn!(%queue, error = %e, "callback router ended");
                        return;
                    }
                    tracing::warn!(%queue, error = %e, "callback router error; waiting for recovery");
                }
                Some(Ok(delivery)) => route_callback(&shared, &routing, &queue, delivery).await,
            }
        }
    });
    Ok(())
}

/// Forwards one callback to its partition's input queue, then acks it; dead-letters it if it
/// is malformed or its token does not verify; requeues it if forwarding failed.
async fn route_callback(
    shared: &Arc<Shared>,
    routing: &CallbackRouting,
    queue: &str,
    delivery: lapin::message::Delivery,
) {
    let reply = match decode_input(&delivery.data) {
        Ok(InputMessage::Callback { reply } | InputMessage::Worker { reply }) => reply,
        Ok(_) => {
            let reason = "only worker replies and callbacks belong on the callback queue";
            let size = delivery.data.len();
            return shared
                .dead_letter(delivery.acker, size, reason.into(), queue.into())
                .await;
        }
        Err(reason) => {
            let size = delivery.data.len();
            return shared
                .dead_letter(delivery.acker, size, reason, queue.into())
                .await;
        }
    };
    let Some((execution_arn, _task)) = task_token::verify(&routing.token_key, reply.task_token())
    else {
        let size = delivery.data.len();
        return shared
            .dead_letter(
                delivery.acker,
                size,
                "task token does not verify".into(),
                queue.into(),
            )
            .await;
    };
    let partition = partition_of(&execution_arn, routing.partitions);
    let target = shared.name(&partition_queue(partition));
    match shared.publish("", Some(&target), &delivery.data).await {
        Ok(()) => {
            if let Err(e) = ack(delivery.acker, BasicAckOptions::default()).await {
                // Redelivered later and forwarded again: a duplicate the engine ignores.
                tracing::warn!(%queue, error = %e, "acking a routed callback failed");
            }
        }
        Err(e) => {
            tracing::warn!(%queue, %target, error = %e, "forwarding a callback failed; requeueing it");
            // Do not spin on a broker that keeps refusing: give it a moment first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) = delivery.acker.nack(requeue).await {
                tracing::warn!(%queue, error = %e, "requeueing a callback failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://host/%2f"), "amqp://host/%2f");
        assert_eq!(redact("not a url"), "not a url");
    }
}
