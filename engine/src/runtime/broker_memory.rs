//! The in-memory [`Broker`]: embedded mode and tests. Not durable: everything is lost with the
//! process.
//!
//! Tasks and cancellations go through a [`stepline_worker::hub::InProcessHub`], so in-process
//! workers of the SDK consume exactly what the engine publishes. Worker replies arrive on the
//! hub's single reply stream; a router task verifies each reply's task token and moves it to the
//! input queue of the partition that owns its execution (`store::partition_of`). A reply whose
//! token does not verify, or whose protocol version is unknown, is dead-lettered.
//!
//! Partition input queues hold the same JSON bytes the RabbitMQ adapter carries, and consumers
//! decode them with the same [`decode_input`], so a malformed message is dead-lettered here too
//! (logged, counted, kept for inspection in [`MemoryBroker::take_dead_letter`]) and the
//! consumer keeps going. Deliveries a consumer has not acked are requeued at the front of their
//! partition's queue when the consumer is dropped (a crashed coordinator loses nothing); a task
//! fetched with `get_task` and dropped without an ack goes back to its queue.

use super::broker::{
    Acker, Broker, BrokerError, Delivery, InputConsumer, InputMessage, TaskDelivery,
};
use crate::runtime::store::partition_of;
use crate::task_token;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use stepline_worker::hub::InProcessHub;
use stepline_worker::protocol::{CancelMessage, Reply, TaskMessage, PROTOCOL_VERSION};
use tokio::sync::{oneshot, Notify};

/// How many dead-lettered messages are kept for inspection (the oldest are dropped first).
const DEAD_LETTERS_KEPT: usize = 10_000;

/// Decodes one partition input as both adapters do: JSON [`InputMessage`], and a worker reply
/// must speak [`PROTOCOL_VERSION`]. `Err` carries why the message is dead-lettered.
pub fn decode_input(bytes: &[u8]) -> Result<InputMessage, String> {
    let message: InputMessage =
        serde_json::from_slice(bytes).map_err(|e| format!("not an input message: {e}"))?;
    match &message {
        InputMessage::Worker { reply } | InputMessage::Callback { reply }
            if reply.version() != PROTOCOL_VERSION =>
        {
            Err(format!(
                "unknown reply protocol version {} (expected {PROTOCOL_VERSION})",
                reply.version()
            ))
        }
        _ => Ok(message),
    }
}

/// Decodes one task message as both adapters do: JSON [`TaskMessage`] of [`PROTOCOL_VERSION`].
pub fn decode_task(bytes: &[u8]) -> Result<TaskMessage, String> {
    let task: TaskMessage =
        serde_json::from_slice(bytes).map_err(|e| format!("not a task message: {e}"))?;
    if task.version != PROTOCOL_VERSION {
        return Err(format!(
            "unknown task protocol version {} (expected {PROTOCOL_VERSION})",
            task.version
        ));
    }
    Ok(task)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the queues stay
    // consistent because every critical section is a single push or pop.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One partition's input queue.
#[derive(Default)]
struct PartitionQueue {
    messages: Mutex<VecDeque<Vec<u8>>>,
    ready: Notify,
}

impl PartitionQueue {
    fn push_back(&self, bytes: Vec<u8>) {
        lock(&self.messages).push_back(bytes);
        self.ready.notify_waiters();
    }
}

struct Inner {
    hub: InProcessHub,
    token_key: Vec<u8>,
    partitions: u32,
    inputs: Mutex<HashMap<u32, Arc<PartitionQueue>>>,
    dead: Mutex<VecDeque<Vec<u8>>>,
    dead_count: AtomicU64,
    router_started: AtomicBool,
    /// Dropped with the broker, which stops the router task.
    _router_stop: oneshot::Sender<()>,
    router_stop_rx: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Inner {
    fn partition(&self, partition: u32) -> Arc<PartitionQueue> {
        lock(&self.inputs).entry(partition).or_default().clone()
    }

    fn dead_letter(&self, bytes: Vec<u8>, reason: &str, source: &str) {
        tracing::warn!(source, reason, "dead-lettering a message");
        self.dead_count.fetch_add(1, Ordering::Relaxed);
        let mut dead = lock(&self.dead);
        if dead.len() == DEAD_LETTERS_KEPT {
            dead.pop_front();
        }
        dead.push_back(bytes);
    }

    /// Moves a worker reply to the input queue of its execution's partition.
    fn route_reply(&self, reply: Reply, callback: bool) {
        let message = if callback {
            InputMessage::Callback {
                reply: reply.clone(),
            }
        } else {
            InputMessage::Worker {
                reply: reply.clone(),
            }
        };
        let bytes = match serde_json::to_vec(&message) {
            Ok(b) => b,
            Err(e) => {
                // Serializing an owned Reply cannot fail; keep the evidence if it ever does.
                self.dead_letter(format!("{reply:?}").into_bytes(), &e.to_string(), "reply");
                return;
            }
        };
        if reply.version() != PROTOCOL_VERSION {
            self.dead_letter(bytes, "unknown reply protocol version", "reply");
            return;
        }
        match task_token::verify(&self.token_key, reply.task_token()) {
            Some((execution_arn, _task)) => {
                let p = partition_of(&execution_arn, self.partitions);
                self.partition(p).push_back(bytes);
            }
            None => self.dead_letter(bytes, "task token does not verify", "reply"),
        }
    }
}

/// The in-memory broker. Cheap to clone; clones share the queues.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl MemoryBroker {
    /// A broker over `hub`. `token_key` is the engine's task-token key and `partitions` the
    /// partition count, so worker replies can be routed to their execution's partition.
    ///
    /// The reply router starts at once when called inside a tokio runtime, else on the first
    /// use of the broker. It takes the hub's reply stream, which can be taken only once.
    pub fn new(hub: InProcessHub, token_key: impl Into<Vec<u8>>, partitions: u32) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let broker = MemoryBroker {
            inner: Arc::new(Inner {
                hub,
                token_key: token_key.into(),
                partitions: partitions.max(1),
                inputs: Mutex::new(HashMap::new()),
                dead: Mutex::new(VecDeque::new()),
                dead_count: AtomicU64::new(0),
                router_started: AtomicBool::new(false),
                _router_stop: stop,
                router_stop_rx: Mutex::new(Some(stop_rx)),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            broker.ensure_router();
        }
        broker
    }

    /// The hub in-process workers use.
    pub fn hub(&self) -> &InProcessHub {
        &self.inner.hub
    }

    /// Puts raw bytes on a partition's input queue, bypassing encoding (tests, tooling).
    pub fn publish_raw_input(&self, partition: u32, bytes: &[u8]) {
        self.ensure_router();
        self.inner.partition(partition).push_back(bytes.to_vec());
    }

    /// Takes the oldest dead-lettered message, if any (the `stepline.dead` queue of RabbitMQ).
    pub fn take_dead_letter(&self) -> Option<Vec<u8>> {
        lock(&self.inner.dead).pop_front()
    }

    /// Number of inputs waiting (not delivered) on a partition's queue.
    pub fn queued_inputs(&self, partition: u32) -> usize {
        lock(&self.inner.partition(partition).messages).len()
    }

    /// Starts the task that routes worker replies, once; must run inside a tokio runtime.
    fn ensure_router(&self) {
        if self.inner.router_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(mut replies) = self.inner.hub.take_replies() else {
            tracing::warn!(
                "the hub's reply stream was already taken; worker replies will not be routed"
            );
            return;
        };
        let Some(mut callbacks) = self.inner.hub.take_callbacks() else {
            tracing::warn!(
                "the hub's callback stream was already taken; callbacks will not be routed"
            );
            return;
        };
        let Some(mut stop) = lock(&self.inner.router_stop_rx).take() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    reply = replies.recv() => {
                        let Some(reply) = reply else { return };
                        let Some(inner) = weak.upgrade() else { return };
                        inner.route_reply(reply, false);
                    }
                    reply = callbacks.recv() => {
                        let Some(reply) = reply else { return };
                        let Some(inner) = weak.upgrade() else { return };
                        inner.route_reply(reply, true);
                    }
                }
            }
        });
    }
}

impl Broker for MemoryBroker {
    type Consumer = MemoryConsumer;

    async fn publish_task(&self, queue: &str, message: &TaskMessage) -> Result<(), BrokerError> {
        self.ensure_router();
        self.inner.hub.push_task(queue, message.clone());
        Ok(())
    }

    async fn publish_cancel(&self, task_token: &str) -> Result<(), BrokerError> {
        self.ensure_router();
        self.inner.hub.cancel(CancelMessage {
            version: PROTOCOL_VERSION,
            task_token: task_token.to_string(),
        });
        Ok(())
    }

    async fn publish_input(
        &self,
        partition: u32,
        message: &InputMessage,
    ) -> Result<(), BrokerError> {
        self.ensure_router();
        let bytes = serde_json::to_vec(message).map_err(|e| BrokerError::Other(e.to_string()))?;
        self.inner.partition(partition).push_back(bytes);
        Ok(())
    }

    async fn consume_inputs(&self, partition: u32) -> Result<MemoryConsumer, BrokerError> {
        self.ensure_router();
        Ok(MemoryConsumer {
            partition,
            queue: self.inner.partition(partition),
            inner: self.inner.clone(),
            unacked: Arc::new(Mutex::new(Unacked {
                open: true,
                messages: BTreeMap::new(),
            })),
            next_id: 0,
        })
    }

    async fn get_task(&self, queue: &str) -> Result<Option<TaskDelivery>, BrokerError> {
        self.ensure_router();
        let hub = &self.inner.hub;
        Ok(hub
            .try_take_task(&[queue.to_string()])
            .map(|message| TaskDelivery {
                message: message.clone(),
                acker: Box::new(MemoryTaskAcker {
                    hub: hub.clone(),
                    queue: queue.to_string(),
                    message: Some(message),
                }),
            }))
    }

    /// In-process workers hold no subscription, so only waiting tasks keep a queue.
    async fn delete_idle_queue(&self, queue: &str) -> Result<bool, BrokerError> {
        Ok(self.inner.hub.remove_queue_if_empty(queue))
    }

    fn dead_lettered(&self) -> u64 {
        self.inner.dead_count.load(Ordering::Relaxed)
    }
}

/// Deliveries of one consumer that were not acked yet, by delivery order.
struct Unacked {
    /// False once the consumer is dropped (its deliveries were requeued).
    open: bool,
    messages: BTreeMap<u64, Vec<u8>>,
}

/// Consumes one partition's inputs. Dropping it requeues its unacked deliveries.
pub struct MemoryConsumer {
    partition: u32,
    queue: Arc<PartitionQueue>,
    inner: Arc<Inner>,
    unacked: Arc<Mutex<Unacked>>,
    next_id: u64,
}

impl InputConsumer for MemoryConsumer {
    /// Cancel-safe: a message is taken from the queue and returned in the same poll.
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.queue.ready.notified();
            let popped = lock(&self.queue.messages).pop_front();
            let Some(bytes) = popped else {
                notified.await;
                continue;
            };
            match decode_input(&bytes) {
                Ok(message) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    lock(&self.unacked).messages.insert(id, bytes);
                    return Some(Delivery {
                        message,
                        acker: Box::new(MemoryAcker {
                            unacked: self.unacked.clone(),
                            id,
                        }),
                    });
                }
                Err(reason) => {
                    let source = format!("partition {}", self.partition);
                    self.inner.dead_letter(bytes, &reason, &source);
                }
            }
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let pending = {
            let mut unacked = lock(&self.unacked);
            unacked.open = false;
            std::mem::take(&mut unacked.messages)
        };
        if pending.is_empty() {
            return;
        }
        {
            let mut queue = lock(&self.queue.messages);
            for (_, bytes) in pending.into_iter().rev() {
                queue.push_front(bytes);
            }
        }
        self.queue.ready.notify_waiters();
    }
}

struct MemoryAcker {
    unacked: Arc<Mutex<Unacked>>,
    id: u64,
}

impl Acker for MemoryAcker {
    fn ack(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        let result = {
            let mut unacked = lock(&self.unacked);
            if unacked.open {
                unacked.messages.remove(&self.id);
                Ok(())
            } else {
                Err(BrokerError::Other(
                    "the consumer was dropped and the input requeued; it will be redelivered"
                        .into(),
                ))
            }
        };
        Box::pin(std::future::ready(result))
    }
}

/// Acks a task taken with `get_task`; dropped without an ack, the task goes back to its queue.
struct MemoryTaskAcker {
    hub: InProcessHub,
    queue: String,
    message: Option<TaskMessage>,
}

impl Acker for MemoryTaskAcker {
    fn ack(mut self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        self.message = None;
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for MemoryTaskAcker {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.hub.push_task(&self.queue, message);
        }
    }
}
