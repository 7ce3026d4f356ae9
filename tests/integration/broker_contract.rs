//! The `Broker` contract: one suite of behaviours, run against every adapter, so the embedded
//! mode (`MemoryBroker`) and the production mode (`AmqpBroker` on RabbitMQ) cannot drift.
//!
//! Each contract is a function generic over the broker; the `contract!` macro instantiates it
//! as `broker_contract::memory::<name>` and `broker_contract::rabbitmq::<name>`. The RabbitMQ
//! tests need a real RabbitMQ (`STEPLINE_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`)
//! and fail with a clear message when it is unreachable; each runs in its own namespace (a
//! unique prefix on every queue and exchange) and deletes it afterwards, even when it fails.
//! No sleeping for synchronisation: waits are bounded polls and timeouts.

use futures_util::FutureExt;
use serde_json::json;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use stepline_engine::runtime::broker::{
    partition_queue, task_queue, Broker, Delivery, InputConsumer, InputMessage, StartRequest,
    TaskDelivery,
};
use stepline_engine::runtime::broker_amqp::{
    AmqpBroker, AmqpConfig, CancelSubscription, QueueType,
};
use stepline_engine::runtime::broker_memory::MemoryBroker;
use stepline_engine::runtime::store::partition_of;
use stepline_engine::task_token;
use stepline_worker::hub::InProcessHub;
use stepline_worker::protocol::{CancelMessage, Reply, TaskMessage, PROTOCOL_VERSION};
use stepline_worker::topology::CALLBACK_QUEUE;
use tokio::sync::broadcast;

/// Upper bound of every wait in this suite.
const WAIT: Duration = Duration::from_secs(15);
const PARTITION: u32 = 3;
const ACTIVITY: &str = "arn:aws:states:us-east-1:123456789012:activity:contract";
const TOKEN_KEY: &[u8] = b"contract-suite-key";

// ---------------------------------------------------------------------------------------------
// What the suite needs beyond the port: raw publishing, the dead-letter queue, cancellations.

trait Fixture: Broker {
    type Cancels: Cancels;
    /// Puts raw bytes on a partition's queue (a malformed message).
    async fn raw_input(&self, partition: u32, bytes: &[u8]);
    /// Takes the oldest dead-lettered message.
    async fn dead_letter(&self) -> Option<Vec<u8>>;
    /// A subscriber to cancellations, as a worker has.
    async fn cancels(&self) -> Self::Cancels;
    /// The queue a worker replies to for `partition` (namespaced on RabbitMQ).
    fn reply_queue(&self, partition: u32) -> String;
    /// Whether the task queue `queue` exists.
    async fn queue_exists(&self, queue: &str) -> bool;
    /// `message` as a worker receives it: `reply_to` names the (namespaced) partition queue.
    fn as_received(&self, message: &TaskMessage) -> TaskMessage {
        TaskMessage {
            reply_to: self.reply_queue(PARTITION),
            reply_exchange: None,
            ..message.clone()
        }
    }
}

trait Cancels {
    async fn next_cancel(&mut self) -> Option<CancelMessage>;
}

impl Fixture for MemoryBroker {
    type Cancels = broadcast::Receiver<CancelMessage>;
    async fn raw_input(&self, partition: u32, bytes: &[u8]) {
        self.publish_raw_input(partition, bytes);
    }
    async fn dead_letter(&self) -> Option<Vec<u8>> {
        self.take_dead_letter()
    }
    async fn cancels(&self) -> Self::Cancels {
        self.hub().cancellations()
    }
    fn reply_queue(&self, partition: u32) -> String {
        partition_queue(partition)
    }
    async fn queue_exists(&self, queue: &str) -> bool {
        self.hub().has_queue(queue)
    }
}

impl Cancels for broadcast::Receiver<CancelMessage> {
    async fn next_cancel(&mut self) -> Option<CancelMessage> {
        self.recv().await.ok()
    }
}

impl Fixture for AmqpBroker {
    type Cancels = CancelSubscription;
    async fn raw_input(&self, partition: u32, bytes: &[u8]) {
        self.publish_raw_input(partition, bytes)
            .await
            .expect("raw publish to RabbitMQ");
    }
    async fn dead_letter(&self) -> Option<Vec<u8>> {
        self.take_dead_letter()
            .await
            .expect("read the dead-letter queue")
    }
    async fn cancels(&self) -> Self::Cancels {
        self.subscribe_cancels()
            .await
            .expect("subscribe to cancellations")
    }
    fn reply_queue(&self, partition: u32) -> String {
        self.name(&partition_queue(partition))
    }
    async fn queue_exists(&self, queue: &str) -> bool {
        // A passive declare answers NOT_FOUND (closing its channel) for a missing queue.
        let connection = another_connection(self).await;
        let channel = connection.create_channel().await.expect("a channel");
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let exists = channel
            .queue_declare(
                self.name(queue).as_str().into(),
                options,
                lapin::types::FieldTable::default(),
            )
            .await
            .is_ok();
        let _ = connection.close(200, "OK".into()).await;
        exists
    }
}

impl Cancels for CancelSubscription {
    async fn next_cancel(&mut self) -> Option<CancelMessage> {
        self.next().await
    }
}

fn memory_broker() -> MemoryBroker {
    MemoryBroker::new(InProcessHub::new(), TOKEN_KEY.to_vec(), 8)
}

async fn rabbitmq() -> AmqpBroker {
    rabbitmq_with(|config| config).await
}

async fn rabbitmq_quorum() -> AmqpBroker {
    rabbitmq_with(|config| config.with_queue_type(QueueType::Quorum)).await
}

/// A broker on the test RabbitMQ in a fresh namespace; `configure` may adjust its config.
async fn rabbitmq_with(configure: impl FnOnce(AmqpConfig) -> AmqpConfig) -> AmqpBroker {
    let url = std::env::var("STEPLINE_AMQP_URL")
        .unwrap_or_else(|_| stepline_engine::runtime::broker_amqp::DEFAULT_URL.to_string());
    let config = AmqpConfig::new(url)
        .with_namespace(unique_namespace())
        .with_connect_attempts(3)
        .with_reconnect_attempts(3);
    match AmqpBroker::connect(configure(config)).await {
        Ok(broker) => broker,
        Err(e) => panic!(
            "the RabbitMQ broker contract tests need a running RabbitMQ, and none answered at \
             STEPLINE_AMQP_URL (or the default amqp://guest:guest@127.0.0.1:5672/%2f): {e}. \
             Start one (`.ci/services`, or `rabbitmq-server -detached`) or point \
             STEPLINE_AMQP_URL at one."
        ),
    }
}

fn unique_namespace() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "stepline-test-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn clean_up(broker: &AmqpBroker) {
    if let Err(e) = broker.delete_namespace().await {
        eprintln!(
            "could not delete test namespace {}: {e}",
            broker.config().namespace
        );
    }
    let _ = broker.close().await;
}

/// Runs `test` on `broker` and deletes the broker's namespace afterwards, whether the test
/// passed or panicked (the panic is raised again after the clean-up).
async fn on_rabbitmq(broker: AmqpBroker, test: impl AsyncFnOnce(&AmqpBroker)) {
    let outcome = AssertUnwindSafe(test(&broker)).catch_unwind().await;
    clean_up(&broker).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&super::memory_broker()).await
                }
            )*
        }

        /// These need a real RabbitMQ.
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::on_rabbitmq(super::rabbitmq().await, super::$test).await
                }
            )*
        }

        /// The same on quorum queues (`--queue-type quorum`).
        mod rabbitmq_quorum {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::on_rabbitmq(super::rabbitmq_quorum().await, super::$test).await
                }
            )*
        }
    };
}

contract!(
    task_round_trip,
    task_dropped_without_ack_is_redelivered,
    inputs_arrive_in_order_and_acked_ones_are_gone,
    unacked_inputs_are_redelivered_after_the_consumer_is_dropped,
    a_batch_is_acked_at_once,
    malformed_inputs_are_dead_lettered_and_the_consumer_goes_on,
    cancellations_reach_subscribers,
    idle_task_queues_are_deleted_and_busy_ones_kept,
);

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// Polls `get_task` (which does not long-poll) until a task arrives, at most [`WAIT`].
async fn poll_task<B: Broker>(broker: &B, queue: &str) -> TaskDelivery {
    within(&format!("a task on {queue}"), async {
        loop {
            if let Some(task) = broker.get_task(queue).await.expect("get_task") {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Starts consuming the test partition's inputs.
async fn consume<B: Broker>(broker: &B) -> B::Consumer {
    broker
        .consume_inputs(PARTITION)
        .await
        .expect("consume_inputs")
}

/// Sends an input to the test partition.
async fn publish<B: Broker>(broker: &B, message: &InputMessage) {
    broker
        .publish_input(PARTITION, message)
        .await
        .expect("publish_input");
}

async fn next_delivery<C: InputConsumer>(consumer: &mut C) -> Delivery {
    within("an input", consumer.next())
        .await
        .expect("the consumer ended unexpectedly")
}

async fn ack_next<C: InputConsumer>(consumer: &mut C) -> InputMessage {
    let delivery = next_delivery(consumer).await;
    within("an ack", delivery.acker.ack()).await.expect("ack");
    delivery.message
}

/// Publishes `task(n)` to `queue`, takes it and acks it.
async fn a_task_goes_through<B: Broker>(broker: &B, queue: &str, n: u32) {
    broker
        .publish_task(queue, &task(n))
        .await
        .expect("publish_task");
    let got = poll_task(broker, queue).await;
    assert_eq!(got.message.task_token, task(n).task_token);
    within("an ack", got.acker.ack()).await.expect("ack");
}

/// A connection of its own to `broker`'s RabbitMQ (another client: a worker, an inspector).
async fn another_connection(broker: &AmqpBroker) -> lapin::Connection {
    lapin::Connection::connect(&broker.config().url, lapin::ConnectionProperties::default())
        .await
        .expect("another connection to RabbitMQ")
}

fn task(n: u32) -> TaskMessage {
    TaskMessage {
        version: PROTOCOL_VERSION,
        task_token: format!("token-{n}"),
        resource: ACTIVITY.into(),
        execution_arn: format!("arn:aws:states:us-east-1:123456789012:execution:sm:e{n}"),
        state_name: "Work".into(),
        input: json!({ "n": n, "nested": { "list": [1, 2.5, "x", null] } }),
        attempt: 1,
        timeout_seconds: Some(30),
        heartbeat_seconds: Some(10),
        deadline_ms: Some(1_700_000_030_000),
        reply_to: partition_queue(PARTITION),
        reply_exchange: None,
    }
}

fn start(n: u32) -> InputMessage {
    InputMessage::Start(StartRequest {
        execution_arn: format!("arn:aws:states:us-east-1:123456789012:execution:sm:e{n}"),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sm".into(),
        revision_id: "r1".into(),
        name: format!("e{n}"),
        input: json!({ "n": n }),
        start_ms: 1_700_000_000_000 + i64::from(n),
    })
}

// ---------------------------------------------------------------------------------------------
// The contract.

async fn task_round_trip<B: Fixture>(broker: &B) {
    let queue = task_queue(ACTIVITY);
    let first = task(1);
    broker
        .publish_task(&queue, &first)
        .await
        .expect("publish_task");
    let got = poll_task(broker, &queue).await;
    assert_eq!(
        got.message,
        broker.as_received(&first),
        "get_task returns the published payload"
    );
    within("an ack", got.acker.ack()).await.expect("ack");
    assert!(
        broker.get_task(&queue).await.expect("get_task").is_none(),
        "nothing is left after the ack"
    );
    // Had the first task been requeued, it would come back before a later one.
    let second = task(2);
    broker
        .publish_task(&queue, &second)
        .await
        .expect("publish_task");
    let got = poll_task(broker, &queue).await;
    assert_eq!(
        got.message,
        broker.as_received(&second),
        "an acked task never comes back"
    );
    within("an ack", got.acker.ack()).await.expect("ack");
}

async fn task_dropped_without_ack_is_redelivered<B: Fixture>(broker: &B) {
    let queue = task_queue(ACTIVITY);
    let message = task(3);
    broker
        .publish_task(&queue, &message)
        .await
        .expect("publish_task");
    let got = poll_task(broker, &queue).await;
    assert_eq!(got.message, broker.as_received(&message));
    drop(got); // e.g. the API handler crashed before recording ActivityStarted
    let again = poll_task(broker, &queue).await;
    assert_eq!(
        again.message,
        broker.as_received(&message),
        "the unacked task is delivered again"
    );
    within("an ack", again.acker.ack()).await.expect("ack");
}

async fn inputs_arrive_in_order_and_acked_ones_are_gone<B: Fixture>(broker: &B) {
    let mut consumer = consume(broker).await;
    let reply = Reply::Succeeded {
        version: PROTOCOL_VERSION,
        task_token: "token-1".into(),
        output: json!({ "ok": true }),
    };
    let sent = vec![
        start(1),
        InputMessage::Worker {
            reply: reply.clone(),
        },
        InputMessage::Callback { reply },
        InputMessage::Stop {
            execution_arn: "arn:aws:states:us-east-1:123456789012:execution:sm:e1".into(),
            error: Some("Halt".into()),
            cause: None,
        },
        start(2),
    ];
    for message in &sent {
        publish(broker, message).await;
    }
    for message in &sent {
        assert_eq!(
            &ack_next(&mut consumer).await,
            message,
            "inputs keep their order"
        );
    }
    drop(consumer);
    // A fresh consumer sees only what is published now: the acked inputs are gone.
    let mut consumer = consume(broker).await;
    let marker = start(99);
    publish(broker, &marker).await;
    assert_eq!(ack_next(&mut consumer).await, marker);
}

async fn unacked_inputs_are_redelivered_after_the_consumer_is_dropped<B: Fixture>(broker: &B) {
    let mut first = consume(broker).await;
    let (a, b, c) = (start(1), start(2), start(3));
    for message in [&a, &b, &c] {
        publish(broker, message).await;
    }
    assert_eq!(ack_next(&mut first).await, a);
    let delivery = next_delivery(&mut first).await;
    assert_eq!(delivery.message, b);
    drop(delivery); // dropped without an ack…
    drop(first); // …and the coordinator crashed
    let mut second = consume(broker).await;
    assert_eq!(
        ack_next(&mut second).await,
        b,
        "the unacked input comes back first"
    );
    assert_eq!(ack_next(&mut second).await, c, "then the rest, in order");
    let marker = start(99);
    publish(broker, &marker).await;
    assert_eq!(
        ack_next(&mut second).await,
        marker,
        "the acked input was not redelivered"
    );
}

/// `ack_with` (a coordinator's group commit) settles the whole batch and nothing after it,
/// also when a malformed message between the batch's inputs is being dead-lettered.
async fn a_batch_is_acked_at_once<B: Fixture>(broker: &B) {
    let dead_before = broker.dead_lettered();
    let mut first = consume(broker).await;
    let (a, b, c, d) = (start(1), start(2), start(3), start(4));
    publish(broker, &a).await;
    broker.raw_input(PARTITION, b"{not json").await;
    for message in [&b, &c, &d] {
        publish(broker, message).await;
    }
    let mut batch = Vec::new();
    for expected in [&a, &b, &c] {
        let delivery = next_delivery(&mut first).await;
        assert_eq!(&delivery.message, expected);
        batch.push(delivery.acker);
    }
    let last = batch.pop().expect("three deliveries");
    within("the batch ack", last.ack_with(batch))
        .await
        .expect("ack_with");
    let unacked = next_delivery(&mut first).await;
    assert_eq!(unacked.message, d);
    drop(unacked);
    drop(first); // d is not acked: it comes back, and nothing of the batch does.
    let mut second = consume(broker).await;
    assert_eq!(ack_next(&mut second).await, d);
    let marker = start(99);
    publish(broker, &marker).await;
    assert_eq!(ack_next(&mut second).await, marker);
    assert_eq!(broker.dead_lettered(), dead_before + 1);
}

async fn malformed_inputs_are_dead_lettered_and_the_consumer_goes_on<B: Fixture>(broker: &B) {
    let before = broker.dead_lettered();
    let mut consumer = consume(broker).await;
    let garbage = b"{not json".to_vec();
    let unknown_kind = br#"{"kind":"teleport","execution_arn":"x"}"#.to_vec();
    let future_version = serde_json::to_vec(&json!({
        "kind": "worker",
        "reply": { "type": "heartbeat", "version": PROTOCOL_VERSION + 1, "task_token": "t" }
    }))
    .expect("json");
    for bytes in [&garbage, &unknown_kind, &future_version] {
        broker.raw_input(PARTITION, bytes).await;
    }
    let good = start(7);
    publish(broker, &good).await;
    assert_eq!(
        ack_next(&mut consumer).await,
        good,
        "the consumer skips malformed messages and keeps working"
    );
    assert_eq!(broker.dead_lettered(), before + 3, "each one is counted");
    let mut dead = Vec::new();
    within("three dead letters", async {
        while dead.len() < 3 {
            match broker.dead_letter().await {
                Some(message) => dead.push(message),
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    dead.sort();
    let mut expected = vec![garbage, unknown_kind, future_version];
    expected.sort();
    assert_eq!(
        dead, expected,
        "they land, unchanged, in the dead-letter queue"
    );
    // And the consumer still works afterwards.
    let after = start(8);
    publish(broker, &after).await;
    assert_eq!(ack_next(&mut consumer).await, after);
}

async fn cancellations_reach_subscribers<B: Fixture>(broker: &B) {
    let mut subscriber = broker.cancels().await;
    broker
        .publish_cancel("token-9")
        .await
        .expect("publish_cancel");
    let cancel = within("a cancellation", subscriber.next_cancel())
        .await
        .expect("subscription open");
    assert_eq!(
        cancel,
        CancelMessage {
            version: PROTOCOL_VERSION,
            task_token: "token-9".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// The memory adapter's own duty: routing the hub's worker replies by task token.

#[tokio::test]
async fn memory_routes_worker_replies_to_their_execution_partition() {
    let hub = InProcessHub::new();
    let partitions = 8;
    let broker = MemoryBroker::new(hub.clone(), TOKEN_KEY.to_vec(), partitions);
    let arn = "arn:aws:states:us-east-1:123456789012:execution:sm:routed";
    let partition = partition_of(arn, partitions);
    let token = task_token::mint(TOKEN_KEY, arn, 4);
    let queue = task_queue(ACTIVITY);
    let message = TaskMessage {
        task_token: token.clone(),
        execution_arn: arn.into(),
        reply_to: partition_queue(partition),
        reply_exchange: None,
        ..task(4)
    };
    broker
        .publish_task(&queue, &message)
        .await
        .expect("publish_task");
    // An in-process worker of the SDK takes it from the hub.
    let taken = within(
        "the worker's task",
        hub.take_task(std::slice::from_ref(&queue)),
    )
    .await;
    assert_eq!(taken, message);
    let reply = Reply::Succeeded {
        version: PROTOCOL_VERSION,
        task_token: token,
        output: json!({ "done": true }),
    };
    hub.reply(reply.clone());
    let mut consumer = broker
        .consume_inputs(partition)
        .await
        .expect("consume_inputs");
    assert_eq!(
        ack_next(&mut consumer).await,
        InputMessage::Worker { reply }
    );

    // A forged token and an unknown version are dead-lettered, not routed.
    hub.reply(Reply::Heartbeat {
        version: PROTOCOL_VERSION,
        task_token: task_token::mint(b"another key", arn, 4),
    });
    hub.reply(Reply::Heartbeat {
        version: PROTOCOL_VERSION + 1,
        task_token: task_token::mint(TOKEN_KEY, arn, 4),
    });
    within("two dead letters", async {
        while broker.dead_lettered() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(broker.take_dead_letter().is_some());
    assert!(broker.take_dead_letter().is_some());
    assert_eq!(broker.queued_inputs(partition), 0);
}

#[tokio::test]
async fn memory_ack_after_consumer_drop_is_an_error_and_the_input_is_redelivered() {
    let broker = memory_broker();
    let mut consumer = broker.consume_inputs(1).await.expect("consume_inputs");
    broker
        .publish_input(1, &start(1))
        .await
        .expect("publish_input");
    let delivery = next_delivery(&mut consumer).await;
    drop(consumer);
    assert!(delivery.acker.ack().await.is_err());
    let mut consumer = broker.consume_inputs(1).await.expect("consume_inputs");
    assert_eq!(ack_next(&mut consumer).await, start(1));
}

/// What `DeleteActivity` does to the activity's queue: kept while a task waits in it, deleted
/// once idle, and back when it is used again.
async fn idle_task_queues_are_deleted_and_busy_ones_kept<B: Fixture>(broker: &B) {
    let queue = task_queue("arn:aws:states:us-east-1:123456789012:activity:deleted");
    broker
        .publish_task(&queue, &task(1))
        .await
        .expect("publish_task");
    let kept = broker.delete_idle_queue(&queue).await.expect("delete");
    assert!(!kept, "a queue with a waiting task must be kept");
    assert!(broker.queue_exists(&queue).await);
    let first = poll_task(broker, &queue).await;
    assert_eq!(first.message.task_token, task(1).task_token);
    within("an ack", first.acker.ack()).await.expect("ack");

    // RabbitMQ settles an ack after sending it (a quorum queue through its log), so the
    // queue may still count the task for a moment.
    let mut deleted = false;
    for _ in 0..50 {
        deleted = broker.delete_idle_queue(&queue).await.expect("delete");
        if deleted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(deleted, "an idle queue is deleted");
    assert!(!broker.queue_exists(&queue).await, "the queue is gone");
    assert!(
        broker.delete_idle_queue(&queue).await.expect("delete"),
        "deleting a missing queue succeeds"
    );

    // A publish declares the queue again.
    a_task_goes_through(broker, &queue, 2).await;
}

// ---------------------------------------------------------------------------------------------
// The RabbitMQ adapter's own duty: an unroutable publish is not a success.

/// A queue another server deleted (its `DeleteActivity`) does not break this server's
/// `GetActivityTask`: the poll declares it again and answers "no task".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_get_task_survives_a_queue_deleted_elsewhere() {
    on_rabbitmq(rabbitmq().await, async |broker| {
        let queue = task_queue(ACTIVITY);
        assert!(broker.get_task(&queue).await.expect("get_task").is_none());
        let config = broker.config().clone().with_connect_attempts(1);
        let other = AmqpBroker::connect(config)
            .await
            .expect("second connection");
        assert!(other.delete_idle_queue(&queue).await.expect("delete"));
        let _ = other.close().await;
        assert!(broker
            .get_task(&queue)
            .await
            .expect("get_task after the queue was deleted elsewhere")
            .is_none());
        assert!(broker.queue_exists(&queue).await, "declared again");
        a_task_goes_through(broker, &queue, 1).await;
    })
    .await
}

/// A queue a worker consumes is kept, even empty: deleting it would cancel the worker's
/// consumer.
async fn keeps_a_queue_a_worker_consumes(broker: &AmqpBroker) {
    let queue = task_queue(ACTIVITY);
    a_task_goes_through(broker, &queue, 1).await;
    let connection = another_connection(broker).await;
    let channel = connection.create_channel().await.expect("a channel");
    let _consumer = channel
        .basic_consume(
            broker.name(&queue).as_str().into(),
            "worker".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("consume");
    assert!(
        !broker.delete_idle_queue(&queue).await.expect("delete"),
        "a consumed queue must be kept"
    );
    let _ = connection.close(200, "OK".into()).await;
    // RabbitMQ drops the closed connection's consumer on its own time (a quorum queue through
    // its Raft log): kept until then, deleted once the worker is gone.
    within("the queue deleted once the worker is gone", async {
        while !broker.delete_idle_queue(&queue).await.expect("delete") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_keeps_a_queue_a_worker_consumes() {
    on_rabbitmq(rabbitmq().await, keeps_a_queue_a_worker_consumes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_quorum_keeps_a_queue_a_worker_consumes() {
    on_rabbitmq(rabbitmq_quorum().await, keeps_a_queue_a_worker_consumes).await
}

/// A broker configured for classic queues that meets a quorum queue (one a vhost whose default
/// queue type is quorum made) still deletes it only when idle — RabbitMQ answers the classic
/// conditional delete with a connection error, which must not reach the broker's own
/// connection — and goes on publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_classic_broker_deletes_an_idle_quorum_queue_and_keeps_its_connection() {
    on_rabbitmq(rabbitmq().await, async |broker| {
        let queue = task_queue(ACTIVITY);
        let connection = another_connection(broker).await;
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms: the task is in the queue once confirmed");
        // Declared as an engine with `--queue-type quorum` declares it.
        let arguments = stepline_worker::transport::amqp::durable_queue_arguments(
            &broker.name(""),
            stepline_worker::QueueType::Quorum,
        );
        channel
            .queue_declare(
                broker.name(&queue).as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .expect("declare a quorum queue");

        let waiting = task(1);
        let body = serde_json::to_vec(&waiting).expect("json");
        crate::worker_amqp::publish(&channel, "", &broker.name(&queue), &body).await;

        assert!(
            !broker.delete_idle_queue(&queue).await.expect("delete"),
            "a quorum queue with a waiting task must be kept"
        );
        // (The broker itself cannot read it: on RabbitMQ 3.x its declaration without a type is
        // refused. Another client takes the task.)
        let got = channel
            .basic_get(
                broker.name(&queue).as_str().into(),
                lapin::options::BasicGetOptions::default(),
            )
            .await
            .expect("basic.get")
            .expect("the task is still there");
        assert_eq!(
            serde_json::from_slice::<TaskMessage>(&got.delivery.data)
                .expect("a task")
                .task_token,
            waiting.task_token
        );
        got.delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .expect("ack");
        let _ = connection.close(200, "OK".into()).await;
        assert!(
            broker.delete_idle_queue(&queue).await.expect("delete"),
            "an idle quorum queue is deleted"
        );
        assert!(!broker.queue_exists(&queue).await, "the queue is gone");
        // And the broker goes on publishing and consuming.
        a_task_goes_through(
            broker,
            &task_queue("arn:aws:states:us-east-1:123456789012:activity:after"),
            2,
        )
        .await;
    })
    .await
}

/// RabbitMQ *acks* a `mandatory` message it cannot route and returns it alongside: the broker
/// must notice, redeclare the queue that was deleted behind its back, and publish again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_publish_redeclares_a_queue_deleted_behind_its_back() {
    on_rabbitmq(rabbitmq().await, async |broker| {
        let queue = task_queue(ACTIVITY);
        a_task_goes_through(broker, &queue, 1).await;
        // A second broker in the same namespace deletes the queue the first one has cached.
        let config = broker.config().clone().with_connect_attempts(1);
        let other = AmqpBroker::connect(config)
            .await
            .expect("second connection");
        assert!(other.get_task(&queue).await.expect("get_task").is_none());
        other.delete_namespace().await.expect("delete the queue");
        let _ = other.close().await;
        broker
            .publish_task(&queue, &task(2))
            .await
            .expect("the publish is retried after the queue is redeclared");
        let second = poll_task(broker, &queue).await;
        assert_eq!(second.message.task_token, task(2).task_token);
        within("an ack", second.acker.ack()).await.expect("ack");
    })
    .await
}

/// `.waitForTaskToken` callbacks published to the callback queue (by the SDK's
/// `TaskTokenClient`, which cannot know a token's partition) reach the partition of the
/// token's execution; a forged token is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_routes_callbacks_to_their_execution_partition() {
    let partitions = 8;
    on_rabbitmq(
        rabbitmq_with(|config| config.with_callback_routing(TOKEN_KEY.to_vec(), partitions)).await,
        async |broker| {
            let arn = "arn:aws:states:us-east-1:123456789012:execution:sm:callback";
            let partition = partition_of(arn, partitions);
            let mut consumer = broker
                .consume_inputs(partition)
                .await
                .expect("consume_inputs");
            let callback = InputMessage::Callback {
                reply: Reply::Succeeded {
                    version: PROTOCOL_VERSION,
                    task_token: task_token::mint(TOKEN_KEY, arn, 2),
                    output: json!({ "approved": true }),
                },
            };
            let forged = InputMessage::Callback {
                reply: Reply::Heartbeat {
                    version: PROTOCOL_VERSION,
                    task_token: task_token::mint(b"another key", arn, 2),
                },
            };
            let body = |m: &InputMessage| serde_json::to_vec(m).expect("json");
            broker
                .publish_raw(CALLBACK_QUEUE, &body(&forged))
                .await
                .expect("publish");
            broker
                .publish_raw(CALLBACK_QUEUE, &body(&callback))
                .await
                .expect("publish");
            assert_eq!(ack_next(&mut consumer).await, callback);
            let dead = within("the forged callback in the dead-letter queue", async {
                loop {
                    match broker.dead_letter().await {
                        Some(message) => return message,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
            .await;
            assert_eq!(dead, body(&forged));
            assert_eq!(broker.dead_lettered(), 1);
        },
    )
    .await
}

/// A worker's heartbeat for the task token `token-<n>`, as a partition receives it.
fn heartbeat(n: u32) -> InputMessage {
    InputMessage::Worker {
        reply: Reply::Heartbeat {
            version: PROTOCOL_VERSION,
            task_token: format!("token-{n}"),
        },
    }
}

/// Routes `partition`'s replies to `broker`'s inbox and returns the inbox's name.
async fn routed_inbox(broker: &AmqpBroker, partition: u32) -> String {
    broker
        .route_replies(partition)
        .await
        .expect("route_replies");
    broker
        .reply_inbox()
        .await
        .expect("inbox")
        .expect("an inbox")
}

/// Publishes [`heartbeat`]`(n)` for `partition` as a worker does: to the reply exchange.
async fn send_heartbeat(broker: &AmqpBroker, partition: u32, n: u32) {
    let bytes = serde_json::to_vec(&heartbeat(n)).expect("encode");
    broker
        .publish_raw_reply(partition, &bytes)
        .await
        .expect("publish a reply");
}

/// Worker replies published to the reply exchange reach the partition's consumer through the
/// coordinator's inbox once it routes them there, and the partition queue when no inbox is
/// routed. When that coordinator dies, the replies left in (or still routed to) its inbox move
/// to the partition queue after the inbox's message TTL, where the new owner gets them; once
/// the new owner unroutes the dead inbox, a reply reaches it exactly once, and retiring the
/// dead inbox deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_replies_go_through_the_owners_inbox_and_survive_its_death() {
    let ttl = Duration::from_millis(400);
    on_rabbitmq(
        rabbitmq_with(|config| config.with_inbox_message_ttl(ttl)).await,
        async |broker| {
            let send = async |n: u32| send_heartbeat(broker, 1, n).await;
            // The old owner: a broker of its own (its own connection and inbox).
            let old = AmqpBroker::connect(broker.config().clone())
                .await
                .expect("the old owner's connection");
            let mut old_consumer = old.consume_inputs(1).await.expect("consume_inputs");
            // Not routed yet: through the alternate exchange to the partition queue.
            send(1).await;
            assert_eq!(ack_next(&mut old_consumer).await, heartbeat(1));
            let dead_inbox = routed_inbox(&old, 1).await;
            send(2).await;
            assert_eq!(ack_next(&mut old_consumer).await, heartbeat(2));

            // It dies: its connection goes without unbinding, its inbox stays bound.
            old.close().await.expect("close");
            drop(old_consumer);
            send(3).await;
            let started = std::time::Instant::now();
            let mut consumer = broker.consume_inputs(1).await.expect("consume_inputs");
            let own_inbox = routed_inbox(broker, 1).await;
            assert_ne!(own_inbox, dead_inbox);
            assert_eq!(
                ack_next(&mut consumer).await,
                heartbeat(3),
                "the reply left in the dead inbox reaches the new owner"
            );
            assert!(
                started.elapsed() >= ttl / 2,
                "it came through the partition queue once the inbox TTL passed"
            );

            broker.unroute(1, &dead_inbox).await.expect("unroute");
            send(4).await;
            assert_eq!(ack_next(&mut consumer).await, heartbeat(4));
            let more = tokio::time::timeout(ttl * 3, consumer.next()).await;
            assert!(
                more.is_err(),
                "a reply reaches the new owner once, not again through the dead inbox"
            );

            // Retired, the dead inbox is deleted once idle (after about one TTL).
            broker.retire_route(&dead_inbox, 2);
            let inspector = another_connection(broker).await;
            let mut gone = false;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let channel = inspector.create_channel().await.expect("channel");
                let passive = lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                let looked = channel
                    .queue_declare(dead_inbox.as_str().into(), passive, Default::default())
                    .await;
                if looked.is_err() {
                    gone = true;
                    break;
                }
                let _ = channel.close(200, "OK".into()).await;
            }
            let _ = inspector.close(200, "OK".into()).await;
            assert!(gone, "the retired inbox {dead_inbox} was deleted");
        },
    )
    .await
}

/// An inbox deleted under a broker (by an operator, a failover) ends its consumer, and with it
/// the partitions' consumers, so their coordinator serves them again; the next use makes a
/// new inbox, and replies go through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_a_lost_inbox_ends_its_consumers_and_is_made_again() {
    on_rabbitmq(rabbitmq().await, async |broker| {
        let mut consumer = broker.consume_inputs(1).await.expect("consume_inputs");
        let first = routed_inbox(broker, 1).await;
        let inspector = another_connection(broker).await;
        let channel = inspector.create_channel().await.expect("channel");
        channel
            .queue_delete(first.as_str().into(), Default::default())
            .await
            .expect("delete the inbox");
        let _ = inspector.close(200, "OK".into()).await;
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match consumer.next().await {
                    None => break,
                    Some(other) => drop(other),
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the partition's consumer ended with its inbox"
        );
        drop(consumer);

        let mut consumer = broker.consume_inputs(1).await.expect("consume_inputs");
        let second = routed_inbox(broker, 1).await;
        assert_ne!(first, second, "a new inbox");
        send_heartbeat(broker, 1, 0).await;
        assert_eq!(ack_next(&mut consumer).await, heartbeat(0));
    })
    .await
}

/// A partition that does not take its replies holds at most a consumer prefetch's worth of
/// the inbox; the rest goes to its partition queue, so another partition's replies are not
/// held up behind them (before, they waited for the inbox's TTL), and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_a_slow_partition_does_not_hold_up_the_inbox() {
    on_rabbitmq(
        rabbitmq_with(|config| config.with_prefetch(2)).await,
        async |broker| {
            let send = async |partition: u32, n: u32| send_heartbeat(broker, partition, n).await;
            let mut slow = broker.consume_inputs(1).await.expect("consume_inputs");
            broker.route_replies(1).await.expect("route_replies");
            let mut other = broker.consume_inputs(2).await.expect("consume_inputs");
            broker.route_replies(2).await.expect("route_replies");
            // Partition 1 takes nothing yet: twelve replies, more than the inbox's prefetch (8).
            for n in 0..12 {
                send(1, n).await;
            }
            send(2, 100).await;
            let got = tokio::time::timeout(Duration::from_secs(3), ack_next(&mut other)).await;
            assert_eq!(
                got.expect("partition 2's reply is not held up by partition 1's"),
                heartbeat(100)
            );
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..12 {
                let InputMessage::Worker { reply } = ack_next(&mut slow).await else {
                    panic!("not a worker reply");
                };
                seen.insert(reply.task_token().to_string());
            }
            assert_eq!(seen.len(), 12, "every reply of partition 1, once: {seen:?}");
        },
    )
    .await
}
