//! The worker SDK's AMQP transport against a real RabbitMQ (`STEPLINE_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): a task published on an activity queue (declared
//! with the topology's arguments, as the engine declares it) is served by a `Worker`, whose
//! replies (one `Finished` for a fast handler; `Started` then `Succeeded` for a slow one)
//! arrive on the task's `reply_to` queue in the envelope the
//! engine's partition consumer decodes (`InputMessage::Worker`); a `CancelMessage` on the
//! cancellation fanout reaches a running handler's token; the task is acked only after its
//! reply; an activity's own concurrency limit keeps its other tasks on the queue (the
//! consumer's prefetch); the worker-wide limit holds across activities, a received task
//! waiting in the worker until a slot frees and going back to its queue if the worker stops
//! first; a rate-limited activity's tasks start evenly spaced, about two seconds of them
//! prefetched, without holding other activities up, and those held go back to the queue
//! unstarted when the worker stops. Fails loudly, never skips, when RabbitMQ
//! is unreachable.

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::runtime::broker::InputMessage;
use stepline_worker::protocol::{CancelMessage, Reply, TaskMessage, PROTOCOL_VERSION};
use stepline_worker::topology::{task_queue, CANCEL_EXCHANGE};
use stepline_worker::transport::amqp::durable_queue_arguments;
use stepline_worker::{
    activity_arn, AmqpTransport, QueueType, TaskContext, TaskError, Worker, WorkerBuilder,
    WorkerError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn amqp_url() -> String {
    std::env::var("STEPLINE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

async fn connect(url: &str) -> Connection {
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => panic!(
            "worker_amqp needs a real RabbitMQ at STEPLINE_AMQP_URL (or the default \
             amqp://guest:guest@127.0.0.1:5672/%2f): {e}. Start rabbitmq-server or point \
             STEPLINE_AMQP_URL at one."
        ),
        Err(_) => panic!("worker_amqp: connecting to RabbitMQ at {url} timed out"),
    }
}

/// Publishes `body` persistent on a confirming `channel` and checks it was confirmed.
pub(crate) async fn publish(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmation");
    assert_eq!(
        confirmation,
        Confirmation::Ack(None),
        "publish to {exchange}/{routing_key}"
    );
}

async fn next_reply(replies: &mut Consumer) -> Reply {
    let delivery = tokio::time::timeout(WAIT, replies.next())
        .await
        .unwrap_or_else(|_| panic!("no reply within {WAIT:?}"))
        .expect("reply consumer open")
        .expect("reply delivery");
    match serde_json::from_slice::<InputMessage>(&delivery.data) {
        Ok(InputMessage::Worker { reply }) => reply,
        other => panic!(
            "expected a worker reply, got {other:?} from {}",
            String::from_utf8_lossy(&delivery.data)
        ),
    }
}

#[derive(serde::Deserialize)]
struct Input {
    n: i64,
    #[serde(default)]
    wait_for_cancel: bool,
    /// Makes the handler slow enough to get `Started` before its result.
    #[serde(default)]
    sleep_ms: u64,
}

/// Set by the handler once a cancellation reached it.
static HANDLER_SAW_CANCEL: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

async fn double(ctx: TaskContext, input: Input) -> Result<Value, TaskError> {
    if input.wait_for_cancel {
        ctx.cancelled().await;
        HANDLER_SAW_CANCEL.store(true, std::sync::atomic::Ordering::SeqCst);
        return Err(TaskError::new("Test.Cancelled", "the engine gave up"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(input.sleep_ms)).await;
    Ok(json!({"doubled": input.n * 2, "attempt": ctx.attempt()}))
}

/// Handlers that run until the test opens the gate, counting how many run at once (so a
/// queue can be read while the first task certainly still runs).
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    running: AtomicUsize,
    most: AtomicUsize,
}

type Handled =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, TaskError>> + Send>>;

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// A handler that echoes its input once the gate is open.
    fn handler(
        self: &Arc<Self>,
    ) -> impl Fn(TaskContext, Value) -> Handled + Clone + Send + Sync + 'static {
        let gate = self.clone();
        move |_ctx, input| {
            let gate = gate.clone();
            Box::pin(async move {
                let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
                gate.most.fetch_max(now, Ordering::SeqCst);
                while !gate.open.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                gate.running.fetch_sub(1, Ordering::SeqCst);
                Ok(input)
            })
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Most handlers that ran at once.
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

/// Runs the worker `builder` makes (signals off) on `transport`: its shutdown handle and its
/// task.
fn spawn_worker(
    builder: WorkerBuilder,
    transport: AmqpTransport,
) -> (CancellationToken, JoinHandle<Result<(), WorkerError>>) {
    let worker = builder.handle_signals(false).build(transport);
    (worker.shutdown_handle(), tokio::spawn(worker.run()))
}

/// A task queue declared as the engine declares it, an exclusive reply queue consumed here,
/// and a confirming channel to publish tasks on; named uniquely per test run.
struct Fixture {
    connection: Connection,
    channel: Channel,
    arn: String,
    queue: String,
    arguments: FieldTable,
    reply_to: String,
    replies: Consumer,
}

impl Fixture {
    async fn new(name: &str) -> Fixture {
        Fixture::of_type(name, QueueType::Classic).await
    }

    /// A fixture whose task queue is declared as an engine with `--queue-type <queue_type>`
    /// declares it.
    async fn of_type(name: &str, queue_type: QueueType) -> Fixture {
        let connection = connect(&amqp_url()).await;
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let unique = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        );
        let arn = activity_arn("us-east-1", "111111111111", &unique);
        let queue = task_queue(&arn);
        let arguments = durable_queue_arguments("", queue_type);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments.clone(),
            )
            .await
            .expect("declare the task queue as the engine does");
        let reply_to = format!("stepline.test.replies.{unique}");
        channel
            .queue_declare(
                reply_to.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the reply queue");
        let replies = channel
            .basic_consume(
                reply_to.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        Fixture {
            connection,
            channel,
            arn,
            queue,
            arguments,
            reply_to,
            replies,
        }
    }

    /// Publishes a task of the fixture's activity (persistent, confirmed).
    async fn publish_task(&self, token: &str, input: Value) {
        let task = TaskMessage {
            version: PROTOCOL_VERSION,
            task_token: token.to_string(),
            resource: self.arn.clone(),
            execution_arn: "arn:aws:states:us-east-1:111111111111:execution:it:run".to_string(),
            state_name: "Double".to_string(),
            input,
            attempt: 1,
            timeout_seconds: None,
            heartbeat_seconds: None,
            deadline_ms: None,
            reply_to: self.reply_to.clone(),
            reply_exchange: None,
        };
        let body = serde_json::to_vec(&task).expect("json");
        publish(&self.channel, "", &self.queue, &body).await;
    }

    /// Tasks ready on the queue (neither delivered nor acked).
    async fn ready(&self) -> u32 {
        self.channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                self.arguments.clone(),
            )
            .await
            .expect("task queue still there")
            .message_count()
    }

    /// Waits (at most [`WAIT`]) until the count of ready tasks satisfies `done`.
    async fn wait_ready(&self, what: &str, done: impl Fn(u32) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self.ready().await) {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the worker, checks every task was acked, deletes the task queue.
    async fn finish(
        self,
        shutdown: CancellationToken,
        running: JoinHandle<Result<(), WorkerError>>,
    ) {
        shutdown.cancel();
        tokio::time::timeout(WAIT, running)
            .await
            .expect("the worker stops within the wait")
            .expect("worker task")
            .expect("worker ran");
        self.cleanup().await;
    }

    /// Checks every task was acked (with the worker's connection closed, an unacked one
    /// would be back on the queue) and deletes the task queue.
    async fn cleanup(self) {
        assert_eq!(self.ready().await, 0, "tasks left on {}", self.queue);
        self.channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete the task queue");
        let _ = self.connection.close(200, "done".into()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_a_task_from_real_rabbitmq_and_honours_cancellation() {
    let url = amqp_url();
    let mut f = Fixture::new("it-worker").await;
    f.publish_task("tok-1", json!({"n": 21})).await;

    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(f.arn.clone(), double)
            .name("it-worker")
            .concurrency(2),
        AmqpTransport::new(url.clone()),
    );

    // A fast handler: started and result in one `Finished` reply.
    assert_eq!(
        next_reply(&mut f.replies).await,
        Reply::Finished {
            version: PROTOCOL_VERSION,
            worker_name: "it-worker".into(),
            result: Box::new(Reply::Succeeded {
                version: PROTOCOL_VERSION,
                task_token: "tok-1".into(),
                output: json!({"doubled": 42, "attempt": 1}),
            }),
        }
    );

    // A running handler is cancelled by a CancelMessage on the fanout exchange.
    f.publish_task("tok-2", json!({"n": 1, "wait_for_cancel": true}))
        .await;
    assert!(matches!(
        next_reply(&mut f.replies).await,
        Reply::Started { task_token, .. } if task_token == "tok-2"
    ));
    let cancel = serde_json::to_vec(&CancelMessage {
        version: PROTOCOL_VERSION,
        task_token: "tok-2".into(),
    })
    .expect("json");
    publish(&f.channel, CANCEL_EXCHANGE, "", &cancel).await;
    // The handler sees the cancellation; since the engine gave tok-2 up, the worker sends no
    // final reply for it (the engine decides the outcome): the next replies are tok-3's.
    f.publish_task("tok-3", json!({"n": 5})).await;
    assert!(matches!(
        next_reply(&mut f.replies).await,
        Reply::Finished { result, .. } if result.task_token() == "tok-3"
    ));
    // A slow handler: `Started` first (its confirmation overlaps the handler), then the result.
    f.publish_task("tok-4", json!({"n": 2, "sleep_ms": 50}))
        .await;
    assert_eq!(
        next_reply(&mut f.replies).await,
        Reply::Started {
            version: PROTOCOL_VERSION,
            task_token: "tok-4".into(),
            worker_name: "it-worker".into(),
        }
    );
    assert_eq!(
        next_reply(&mut f.replies).await,
        Reply::Succeeded {
            version: PROTOCOL_VERSION,
            task_token: "tok-4".into(),
            output: json!({"doubled": 4, "attempt": 1}),
        }
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !HANDLER_SAW_CANCEL.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancellation never reached the handler"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    f.finish(shutdown, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_limit_leaves_its_other_tasks_on_the_queue() {
    let gate = Gate::new();
    let mut f = Fixture::new("it-limited").await;
    // Tokens of their own: the other test's cancellation of `tok-2` reaches every worker.
    for n in 0..3 {
        f.publish_task(&format!("limited-{n}"), json!(n)).await;
    }
    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(f.arn.clone(), gate.handler())
            .activity_concurrency(f.arn.clone(), 1)
            .concurrency(8),
        AmqpTransport::new(amqp_url()),
    );

    // The first task runs; the broker holds the other two back for other workers (with only
    // the worker-wide prefetch of 8 they would all sit in this worker).
    assert!(matches!(
        next_reply(&mut f.replies).await,
        Reply::Started { .. }
    ));
    assert_eq!(
        f.ready().await,
        2,
        "tasks still on the queue while one runs"
    );
    gate.open();
    let mut done = Vec::new();
    while done.len() < 3 {
        // A handler started after the release ends within the combine window: its
        // `Started` and result come as one `Finished`.
        let reply = match next_reply(&mut f.replies).await {
            Reply::Finished { result, .. } => *result,
            other => other,
        };
        if let Reply::Succeeded { task_token, .. } = reply {
            done.push(task_token);
        }
    }
    assert_eq!(
        done,
        ["limited-0", "limited-1", "limited-2"],
        "one at a time, in queue order"
    );
    assert_eq!(gate.most(), 1);
    f.finish(shutdown, running).await;
}

/// Starts a worker with concurrency 1 serving both fixtures' activities with `handler`, waits
/// until one of the two published tasks has started and the other one has been delivered to
/// the worker too (off its queue: each activity's consumer has its own prefetch, there is no
/// channel-wide one), and returns which fixture's task started first.
async fn one_started_one_held<F, Fut>(
    a: &mut Fixture,
    b: &mut Fixture,
    handler: F,
) -> (bool, CancellationToken, JoinHandle<Result<(), WorkerError>>)
where
    F: Fn(TaskContext, Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(a.arn.clone(), handler.clone())
            .activity(b.arn.clone(), handler)
            .concurrency(1),
        AmqpTransport::new(amqp_url()),
    );
    let (first, a_first) = tokio::select! {
        reply = next_reply(&mut a.replies) => (reply, true),
        reply = next_reply(&mut b.replies) => (reply, false),
    };
    assert!(matches!(first, Reply::Started { .. }), "{first:?}");
    let other = if a_first { &*b } else { &*a };
    other
        .wait_ready(
            "the other activity's task was never delivered to the worker",
            |n| n == 0,
        )
        .await;
    (a_first, shutdown, running)
}

/// The worker-wide budget holds across activities on the broker: with concurrency 1, the other
/// activity's task, delivered while one runs, waits in the worker and starts only once the
/// slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_budget_holds_across_activities_on_the_broker() {
    let gate = Gate::new();
    let mut a = Fixture::new("it-budget-a").await;
    let mut b = Fixture::new("it-budget-b").await;
    a.publish_task("budget-a", json!("a")).await;
    b.publish_task("budget-b", json!("b")).await;
    let (a_first, shutdown, running) = one_started_one_held(&mut a, &mut b, gate.handler()).await;
    let second = if a_first { &mut b } else { &mut a };

    // Delivered, and still not started: a second handler would have begun within this time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gate.most(), 1, "two tasks ran at once");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), second.replies.next())
            .await
            .is_err(),
        "the held task must not report anything before it starts"
    );
    gate.open();
    let later = next_reply(&mut second.replies).await;
    assert!(
        matches!(&later, Reply::Finished { result, .. } if matches!(**result, Reply::Succeeded { .. })),
        "{later:?}"
    );
    assert_eq!(gate.most(), 1);
    a.finish(shutdown, running).await;
    b.cleanup().await;
}

/// A task the worker received and never started goes back to its queue when the worker stops,
/// while the running one finishes within the shutdown grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_unstarted_task_goes_back_to_its_queue_on_shutdown() {
    let gate = Gate::new();
    let mut a = Fixture::new("it-handback-a").await;
    let mut b = Fixture::new("it-handback-b").await;
    a.publish_task("handback-a", json!("a")).await;
    b.publish_task("handback-b", json!("b")).await;
    let (a_first, shutdown, running) = one_started_one_held(&mut a, &mut b, gate.handler()).await;
    let (first, second) = if a_first { (&mut a, &b) } else { (&mut b, &a) };

    shutdown.cancel();
    second
        .wait_ready("the unstarted task was not handed back", |n| n == 1)
        .await;
    gate.open();
    let done = next_reply(&mut first.replies).await;
    assert!(matches!(done, Reply::Succeeded { .. }), "{done:?}");
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the worker stops within the wait")
        .expect("worker task")
        .expect("worker ran");
    assert_eq!(second.ready().await, 1, "still queued for another worker");
    second
        .channel
        .queue_purge(second.queue.as_str().into(), Default::default())
        .await
        .expect("purge");
    a.cleanup().await;
    b.cleanup().await;
}

/// On quorum queues (`--queue-type quorum` on the engine, `queue_type` on the worker) a worker
/// serves several activities at once — quorum queues take no channel-wide prefetch — while a
/// worker left on classic queues cannot start against them and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_quorum_queues_declared_the_same_way() {
    let mut a = Fixture::of_type("it-quorum-a", QueueType::Quorum).await;
    let mut b = Fixture::of_type("it-quorum-b", QueueType::Quorum).await;
    a.publish_task("quorum-a", json!({"n": 1})).await;
    b.publish_task("quorum-b", json!({"n": 2})).await;

    let mismatched = Worker::builder()
        .activity(a.arn.clone(), double)
        .handle_signals(false)
        .build(AmqpTransport::new(amqp_url()).max_reconnect_attempts(1));
    let refused = tokio::time::timeout(WAIT, mismatched.run())
        .await
        .expect("a worker that cannot declare its queue gives up");
    let message = refused
        .expect_err("classic declaration of a quorum queue")
        .to_string();
    assert!(message.contains("x-queue-type"), "{message}");

    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(a.arn.clone(), double)
            .activity(b.arn.clone(), double)
            .concurrency(2),
        AmqpTransport::new(amqp_url()).queue_type(QueueType::Quorum),
    );
    for (fixture, doubled) in [(&mut a, 2), (&mut b, 4)] {
        match next_reply(&mut fixture.replies).await {
            Reply::Finished { result, .. } => match *result {
                Reply::Succeeded { output, .. } => assert_eq!(output["doubled"], doubled),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    a.finish(shutdown, running).await;
    b.cleanup().await;
}

/// A worker stopping while it holds a rate-limited activity's tasks, waiting their turn: it does
/// not run them early on its way out, they are back on the queue once it has stopped, and
/// another worker runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_hands_back_the_paced_tasks_it_holds() {
    let mut paced = Fixture::new("it-paced-stop").await;
    for n in 0..6 {
        paced.publish_task(&format!("held-{n}"), json!(n)).await;
    }
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = started.clone();
    // One every ten seconds: the consumer prefetches two (at least 2), the first runs at once,
    // and once it is acked the two that follow wait their turn in the worker.
    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(paced.arn.clone(), move |_ctx: TaskContext, input: Value| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { Ok::<_, TaskError>(input) }
            })
            .activity_rate_limit(paced.arn.clone(), 0.1)
            .concurrency(8),
        AmqpTransport::new(amqp_url()),
    );
    assert!(matches!(
        next_reply(&mut paced.replies).await,
        Reply::Finished { .. }
    ));
    paced
        .wait_ready("the worker takes the next tasks to hold", |n| n <= 3)
        .await;
    assert_eq!(
        paced.ready().await,
        3,
        "two held, the rest left on the queue"
    );

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the worker stops within the wait")
        .expect("worker task")
        .expect("worker ran");
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
    paced
        .wait_ready("the held task goes back to the queue", |n| n >= 5)
        .await;

    // Another worker, unpaced, runs the five that are left.
    let (shutdown, running) = spawn_worker(
        Worker::builder().activity(
            paced.arn.clone(),
            |_ctx: TaskContext, input: Value| async move { Ok::<_, TaskError>(input) },
        ),
        AmqpTransport::new(amqp_url()),
    );
    for _ in 0..5 {
        assert!(matches!(
            next_reply(&mut paced.replies).await,
            Reply::Finished { .. }
        ));
    }
    paced.finish(shutdown, running).await;
}

/// A rate-limited activity on RabbitMQ: its tasks start evenly spaced, its consumer
/// prefetches two seconds of them (the rest stay on the queue for other workers), and
/// another activity's tasks, published after them, are not held up behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_activity_is_paced_on_the_broker() {
    let mut paced = Fixture::new("it-paced").await;
    let mut other = Fixture::new("it-unpaced").await;
    for n in 0..8 {
        paced.publish_task(&format!("paced-{n}"), json!(n)).await;
    }
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stamp = |starts: &Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>>| {
        let starts = starts.clone();
        move |ctx: TaskContext, input: Value| {
            starts
                .lock()
                .expect("starts")
                .push((ctx.task_token().to_string(), std::time::Instant::now()));
            async move { Ok::<_, TaskError>(input) }
        }
    };
    let (shutdown, running) = spawn_worker(
        Worker::builder()
            .activity(paced.arn.clone(), stamp(&starts))
            .activity(other.arn.clone(), stamp(&starts))
            .activity_rate_limit(paced.arn.clone(), 2.0)
            .concurrency(8),
        AmqpTransport::new(amqp_url()),
    );

    // The first paced task goes at once; the consumer holds at most 4 (two seconds at 2/s;
    // the worker-wide prefetch of 8 would take them all): until the third has finished, a
    // second from now, at least 8 - 2 - 4 are still on the queue.
    assert!(matches!(
        next_reply(&mut paced.replies).await,
        Reply::Finished { .. }
    ));
    let ready = paced.ready().await;
    assert!(ready >= 2, "only {ready} of 8 tasks left on the queue");
    for n in 0..2 {
        other.publish_task(&format!("unpaced-{n}"), json!(n)).await;
    }
    for _ in 0..2 {
        assert!(matches!(
            next_reply(&mut other.replies).await,
            Reply::Finished { .. }
        ));
    }
    for _ in 1..8 {
        assert!(matches!(
            next_reply(&mut paced.replies).await,
            Reply::Finished { .. }
        ));
    }
    let starts = starts.lock().expect("starts").clone();
    let paced_starts: Vec<std::time::Instant> = starts
        .iter()
        .filter(|(t, _)| t.starts_with("paced-"))
        .map(|(_, at)| *at)
        .collect();
    assert_eq!(paced_starts.len(), 8);
    // Each start at least its turn after the first: 500 ms apart. (Measured from the first,
    // so one late start cannot fail the next gap; a little slack for the first running late.)
    for (k, at) in paced_starts.iter().enumerate() {
        let since = *at - paced_starts[0];
        let turn = Duration::from_millis(500 * k as u64);
        assert!(
            since + Duration::from_millis(100) >= turn,
            "paced start {k} came {since:?} after the first"
        );
    }
    let unpaced_last = starts
        .iter()
        .filter(|(t, _)| t.starts_with("unpaced-"))
        .map(|(_, at)| *at)
        .max()
        .expect("unpaced tasks started");
    assert!(
        unpaced_last < paced_starts[5],
        "the other activity's tasks waited behind the paced ones"
    );
    paced.finish(shutdown, running).await;
    other.cleanup().await;
}
