//! End-to-end runs of the runtime: a coordinator ([`Service`]) over a store and a broker, with
//! activity workers from the worker SDK — once embedded (memory store, memory broker,
//! in-process workers) and once over the real servers (Redis at `STEPLINE_REDIS_URL`, RabbitMQ
//! at `STEPLINE_AMQP_URL`, AMQP workers; these fail loudly when the servers are unreachable).
//!
//! Each scenario is one generic function run on both stacks: a task served by a worker, Retry
//! then Catch on a worker's error, a heartbeat timeout when no worker picks the task up, Stop
//! cancelling the running handler, duplicate replies changing nothing, a coordinator
//! restarted mid-execution finishing it exactly once, replies queued while no coordinator
//! runs taken as group commits (each execution finished once, by its first reply), and two
//! coordinators splitting the
//! partitions, one crashing, the other taking its partitions over and finishing its work; a
//! `.waitForTaskToken` task completed by callback (not by the worker's own reply), and
//! Parallel + Map with workers and a tolerated failing item. On the real servers only: a
//! full Redis (a `redis-server` of the test's own) losing nothing.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stepline_engine::asl::StateMachineType;
use stepline_engine::history::HistoryEvent;
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::runtime::broker::Broker;
use stepline_engine::runtime::broker_amqp::{AmqpBroker, AmqpConfig};
use stepline_engine::runtime::broker_memory::MemoryBroker;
use stepline_engine::runtime::clock::SystemClock;
use stepline_engine::runtime::coordinator::CoordinatorConfig;
use stepline_engine::runtime::service::Service;
use stepline_engine::runtime::store::Store;
use stepline_engine::runtime::store_memory::MemoryStore;
use stepline_engine::runtime::store_redis::RedisStore;
use stepline_worker::hub::InProcessHub;
use stepline_worker::transport::amqp::AmqpTransport;
use stepline_worker::transport::Transport;
use stepline_worker::{TaskContext, TaskError, Worker};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn config(partitions: u32) -> CoordinatorConfig {
    CoordinatorConfig {
        partitions,
        lease_ttl_ms: 3_000,
        timer_poll_ms: 25,
        token_key: b"e2e-key".to_vec(),
        ..CoordinatorConfig::default()
    }
}

/// One stack: how to start coordinators and how workers reach them.
struct Stack<S: Store, B: Broker> {
    store: Arc<S>,
    broker: Arc<B>,
    transport: Box<dyn Fn() -> Transport + Send + Sync>,
    /// Unique per test so parallel tests never share activities or state machines.
    tag: String,
}

impl<S: Store, B: Broker> Stack<S, B> {
    fn service(&self) -> Service<S, B, SystemClock> {
        static N: AtomicU32 = AtomicU32::new(0);
        let config = CoordinatorConfig {
            owner: format!(
                "coordinator-{}-{}",
                self.tag,
                N.fetch_add(1, Ordering::Relaxed)
            ),
            ..config(4)
        };
        Service::start(
            self.store.clone(),
            self.broker.clone(),
            Arc::new(SystemClock),
            config,
        )
    }

    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.tag)
    }

    /// Starts a worker; returns its shutdown handle.
    fn worker(
        &self,
        build: impl FnOnce(stepline_worker::WorkerBuilder) -> stepline_worker::WorkerBuilder,
    ) -> CancellationToken {
        let worker = build(Worker::builder().handle_signals(false)).build((self.transport)());
        let stop = worker.shutdown_handle();
        tokio::spawn(async move {
            if let Err(e) = worker.run().await {
                panic!("worker failed: {e}");
            }
        });
        stop
    }
}

fn tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn memory_stack() -> Stack<MemoryStore, MemoryBroker> {
    let hub = InProcessHub::new();
    let cfg = config(4);
    let broker = MemoryBroker::new(hub.clone(), cfg.token_key.clone(), cfg.partitions);
    Stack {
        store: Arc::new(MemoryStore::with_system_clock(Duration::from_secs(3600))),
        broker: Arc::new(broker),
        transport: Box::new(move || Transport::from(hub.clone())),
        tag: tag(),
    }
}

fn redis_url() -> String {
    std::env::var("STEPLINE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn amqp_url() -> String {
    std::env::var("STEPLINE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn real_stack() -> Stack<RedisStore, AmqpBroker> {
    let tag = tag();
    let ns = format!("e2e-{tag}");
    let store = RedisStore::connect(&redis_url(), &format!("{ns}:"), Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis must be running at {} (start it or set STEPLINE_REDIS_URL): {e}",
                redis_url()
            )
        })
        .with_partitions(config(4).partitions)
        // Every request the runtime makes is checked for Redis Cluster in `cleanup`.
        .recording_key_sets();
    let broker = AmqpBroker::connect(AmqpConfig::new(amqp_url()).with_namespace(ns.clone()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ must be running at {} (start it or set STEPLINE_AMQP_URL): {e}",
                amqp_url()
            )
        });
    let url = amqp_url();
    Stack {
        store: Arc::new(store),
        broker: Arc::new(broker),
        transport: Box::new(move || {
            Transport::from(AmqpTransport::new(url.clone()).namespace(&ns))
        }),
        tag,
    }
}

/// Deletes what a real-servers scenario created (its Redis keys and RabbitMQ namespace), then
/// checks that every request the store sent stayed in one Redis Cluster hash slot.
async fn cleanup(stack: &Stack<RedisStore, AmqpBroker>) {
    stack
        .store
        .purge_namespace()
        .await
        .expect("purge the Redis namespace");
    stack
        .broker
        .delete_namespace()
        .await
        .expect("delete the RabbitMQ namespace");
    crate::store_contract::assert_single_slot(&stack.store.recorded_key_sets());
}

fn types(h: &[HistoryEvent]) -> Vec<String> {
    h.iter().map(|e| e.kind.type_name()).collect()
}

fn count(h: &[HistoryEvent], t: &str) -> usize {
    h.iter().filter(|e| e.kind.type_name() == t).count()
}

async fn create<S: Store, B: Broker>(
    svc: &Service<S, B, SystemClock>,
    stack: &Stack<S, B>,
    base: &str,
    definition: Value,
) -> String {
    svc.create_state_machine(
        &stack.name(base),
        &definition.to_string(),
        StateMachineType::Standard,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("create_state_machine: {e}"))
    .arn
}

async fn activity<S: Store, B: Broker>(
    svc: &Service<S, B, SystemClock>,
    stack: &Stack<S, B>,
    base: &str,
) -> String {
    svc.create_activity(&stack.name(base))
        .await
        .expect("create_activity")
        .arn
}

/// An activity and a state machine of one Task state on it, both named after `base`:
/// `(activity arn, state machine arn)`.
async fn one_task_machine<S: Store, B: Broker>(
    svc: &Service<S, B, SystemClock>,
    stack: &Stack<S, B>,
    base: &str,
) -> (String, String) {
    let act = activity(svc, stack, base).await;
    let sm = create(
        svc,
        stack,
        base,
        json!({
            "StartAt": "Work",
            "States": {"Work": {"Type": "Task", "Resource": act, "End": true}}
        }),
    )
    .await;
    (act, sm)
}

/// Takes the next task message of `activity` from its queue, as an external system would
/// (waiting up to [`WAIT`] for one to arrive).
async fn take_task<S: Store, B: Broker>(
    stack: &Stack<S, B>,
    activity: &str,
) -> stepline_engine::runtime::broker::TaskDelivery {
    let queue = stepline_worker::topology::task_queue(activity);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(t) = stack.broker.get_task(&queue).await.expect("get_task") {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no task for {activity} arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_to_end<S: Store, B: Broker>(
    svc: &Service<S, B, SystemClock>,
    sm: &str,
    input: Value,
) -> (
    stepline_engine::runtime::store::ExecutionRecord,
    Vec<HistoryEvent>,
) {
    let arn = svc.start_execution(sm, None, input).await.expect("start");
    let rec = svc.wait(&arn, WAIT).await.expect("wait");
    assert_ne!(
        rec.status,
        ExecutionStatus::Running,
        "execution did not finish in {WAIT:?}"
    );
    let h = svc.history(&arn).await.expect("history");
    (rec, h)
}

// ------------------------------------------------------------------------------------------
// Scenarios

async fn worker_serves_a_task<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    for other in ["unrelated-a", "unrelated-b", "unrelated-c"] {
        activity(&svc, stack, other).await;
    }
    let act = activity(&svc, stack, "double").await;
    let stop = stack.worker(|w| {
        w.activity(act.clone(), |_ctx: TaskContext, n: i64| async move {
            Ok::<_, TaskError>(json!({"doubled": n * 2}))
        })
    });
    let sm = create(&svc, stack, "double", json!({
        "StartAt": "Double",
        "States": {"Double": {"Type": "Task", "Resource": act, "InputPath": "$.n", "ResultPath": "$.out", "End": true}}
    })).await;
    let (rec, h) = run_to_end(&svc, &sm, json!({"n": 21})).await;
    assert_eq!(
        rec.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?}",
        rec.error,
        rec.cause
    );
    assert_eq!(rec.output, Some(json!({"n": 21, "out": {"doubled": 42}})));
    assert_eq!(
        types(&h),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivitySucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    // Each step journals the activities its definition names that exist, not every one.
    let journal = stack
        .store
        .journal(&rec.execution_arn)
        .await
        .expect("journal");
    assert!(!journal.is_empty());
    for entry in &journal {
        assert_eq!(
            entry.activities,
            Some([act.clone()].into_iter().collect()),
            "{entry:?}"
        );
    }
    // Over RabbitMQ, the coordinator routed its partitions' worker replies to its inbox and
    // recorded that (what a successor unbinds should it die).
    if let Some(inbox) = stack.broker.reply_inbox().await.expect("reply_inbox") {
        let p = svc.coordinator().partition_of(&rec.execution_arn);
        let swap = stack
            .store
            .swap_reply_route(p, "probe")
            .await
            .expect("swap_reply_route");
        assert_eq!(swap.previous.as_deref(), Some(inbox.as_str()));
        stack
            .store
            .swap_reply_route(p, &inbox)
            .await
            .expect("swap_reply_route");
    }

    // A Task naming an activity that does not exist fails the execution, as in AWS.
    let missing = act.replace("double", "never-created");
    let sm = create(
        &svc,
        stack,
        "missing",
        json!({
            "StartAt": "Nobody",
            "States": {"Nobody": {"Type": "Task", "Resource": missing, "End": true}}
        }),
    )
    .await;
    let (rec, _) = run_to_end(&svc, &sm, json!({})).await;
    assert_eq!(rec.status, ExecutionStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("States.Runtime"));
    assert!(
        rec.cause
            .as_deref()
            .is_some_and(|c| c.contains("does not exist")),
        "{:?}",
        rec.cause
    );
    stop.cancel();
    svc.shutdown().await;
}

async fn retry_then_catch<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let act = activity(&svc, stack, "flaky").await;
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let stop = stack.worker(move |w| {
        w.activity(act.clone(), move |ctx: TaskContext, _: Value| {
            let c = c2.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err::<Value, _>(TaskError::new(
                    "Gateway.Busy",
                    format!("attempt {}", ctx.attempt()),
                ))
            }
        })
    });
    let sm = create(&svc, stack, "flaky", json!({
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", "Resource": stack_activity_arn(&svc, stack, "flaky"),
                     "Retry": [{"ErrorEquals": ["Gateway.Busy"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1.0}],
                     "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recovered"}],
                     "End": true},
            "Recovered": {"Type": "Pass", "End": true}
        }
    })).await;
    let (rec, h) = run_to_end(&svc, &sm, json!({})).await;
    assert_eq!(
        rec.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?}",
        rec.error,
        rec.cause
    );
    assert_eq!(
        rec.output,
        Some(json!({"error": {"Error": "Gateway.Busy", "Cause": "attempt 3"}}))
    );
    assert_eq!(count(&h, "ActivityScheduled"), 3, "{:?}", types(&h));
    assert_eq!(count(&h, "ActivityFailed"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Retries wait IntervalSeconds (1 s, BackoffRate 1) between attempts.
    let scheduled: Vec<i64> = h
        .iter()
        .filter(|e| e.kind.type_name() == "ActivityScheduled")
        .map(|e| e.timestamp_ms)
        .collect();
    for w in scheduled.windows(2) {
        assert!(w[1] - w[0] >= 1_000, "retry came after {} ms", w[1] - w[0]);
    }
    // The metrics count what was committed: one execution, three tries (two of them retries),
    // each failed after at least the handler ran.
    let metrics = svc.coordinator().metrics().render();
    let sm_name = sm.rsplit(':').next().unwrap();
    let resource = stack_activity_arn(&svc, stack, "flaky");
    for expected in [
        format!("stepline_executions_started_total{{state_machine=\"{sm_name}\"}} 1"),
        format!(
            "stepline_executions_finished_total{{state_machine=\"{sm_name}\",status=\"SUCCEEDED\"}} 1"
        ),
        format!(
            "stepline_execution_duration_seconds_count{{state_machine=\"{sm_name}\",status=\"SUCCEEDED\"}} 1"
        ),
        format!("stepline_tasks_scheduled_total{{resource=\"{resource}\"}} 3"),
        format!("stepline_task_retries_total{{resource=\"{resource}\"}} 2"),
        format!("stepline_tasks_ended_total{{resource=\"{resource}\",outcome=\"failed\"}} 3"),
        format!(
            "stepline_task_duration_seconds_count{{resource=\"{resource}\",outcome=\"failed\"}} 3"
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    // And what the coordinator waited on: a commit per step at least (a batch counts once),
    // and each of the three tasks published (an outbox replay may publish one again).
    let count = |family: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{family}_count "))?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {family}_count in\n{metrics}"))
    };
    assert!(count("stepline_store_commit_seconds") >= 4, "{metrics}");
    assert!(count("stepline_broker_publish_seconds") >= 3, "{metrics}");
    stop.cancel();
    svc.shutdown().await;
}

fn stack_activity_arn<S: Store, B: Broker>(
    svc: &Service<S, B, SystemClock>,
    stack: &Stack<S, B>,
    base: &str,
) -> String {
    let c = svc.coordinator().config();
    format!(
        "arn:aws:states:{}:{}:activity:{}",
        c.region,
        c.account,
        stack.name(base)
    )
}

async fn heartbeat_timeout_without_a_worker<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let act = activity(&svc, stack, "nobody").await;
    let sm = create(&svc, stack, "hb", json!({
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Task", "Resource": act, "HeartbeatSeconds": 1, "TimeoutSeconds": 60,
                     "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "TimedOut"}], "End": true},
            "TimedOut": {"Type": "Pass", "Result": "no heartbeat", "End": true}
        }
    })).await;
    let (rec, h) = run_to_end(&svc, &sm, json!({})).await;
    assert_eq!(rec.status, ExecutionStatus::Succeeded, "{:?}", types(&h));
    assert_eq!(rec.output, Some(json!("no heartbeat")));
    assert_eq!(count(&h, "ActivityTimedOut"), 1);
    svc.shutdown().await;
}

async fn stop_cancels_the_running_handler<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let act = activity(&svc, stack, "slow").await;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (cancelled_tx, mut cancelled_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stop = stack.worker(move |w| {
        w.activity(act.clone(), move |ctx: TaskContext, _: Value| {
            let started = started_tx.clone();
            let cancelled = cancelled_tx.clone();
            async move {
                let _ = started.send(());
                ctx.cancelled().await;
                let _ = cancelled.send(());
                Err::<Value, _>(TaskError::new("Cancelled", "stopped"))
            }
        })
    });
    let sm = create(&svc, stack, "slow", json!({
        "StartAt": "Slow",
        "States": {"Slow": {"Type": "Task", "Resource": stack_activity_arn(&svc, stack, "slow"), "End": true}}
    })).await;
    let arn = svc
        .start_execution(&sm, None, json!({}))
        .await
        .expect("start");
    tokio::time::timeout(WAIT, started_rx.recv())
        .await
        .expect("handler never started");
    svc.stop_execution(
        &arn,
        Some("Operator".into()),
        Some("stopped by test".into()),
    )
    .await
    .expect("stop");
    let rec = svc.wait(&arn, WAIT).await.expect("wait");
    assert_eq!(rec.status, ExecutionStatus::Aborted);
    tokio::time::timeout(WAIT, cancelled_rx.recv())
        .await
        .expect("the handler's cancellation token never fired");
    stop.cancel();
    svc.shutdown().await;
}

async fn duplicate_replies_change_nothing<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let (act, sm) = one_task_machine(&svc, stack, "callback").await;
    let arn = svc
        .start_execution(&sm, None, json!({}))
        .await
        .expect("start");
    // Take the task ourselves, as an external system would, and answer twice.
    let task = take_task(stack, &act).await;
    let token = task.message.task_token.clone();
    task.acker.ack().await.expect("ack");
    svc.send_task_success(&token, json!({"approved": true}))
        .await
        .expect("first reply");
    let rec = svc.wait(&arn, WAIT).await.expect("wait");
    assert_eq!(rec.status, ExecutionStatus::Succeeded);
    let before = svc.history(&arn).await.expect("history");
    svc.send_task_success(&token, json!({"approved": false}))
        .await
        .expect("duplicate reply is accepted by the API");
    // Give the duplicate time to be processed, then check nothing changed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = svc.history(&arn).await.expect("history");
    assert_eq!(before, after);
    assert_eq!(
        svc.describe_execution(&arn).await.expect("describe").output,
        Some(json!({"approved": true}))
    );
    svc.shutdown().await;
}

async fn restart_mid_execution_finishes_once<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let sm = create(
        &svc,
        stack,
        "restart",
        json!({
            "StartAt": "Pause",
            "States": {
                "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
                "Done": {"Type": "Pass", "Result": "finished", "End": true}
            }
        }),
    )
    .await;
    let mut arns = Vec::new();
    for _ in 0..5 {
        arns.push(
            svc.start_execution(&sm, None, json!({}))
                .await
                .expect("start"),
        );
    }
    // Wait until every execution is waiting, then stop the coordinator mid-flight.
    for arn in &arns {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let h = svc.history(arn).await.expect("history");
            if count(&h, "WaitStateEntered") == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "execution never reached its Wait"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    svc.shutdown().await;
    let svc = stack.service();
    for arn in &arns {
        let rec = svc.wait(arn, WAIT).await.expect("wait");
        assert_eq!(rec.status, ExecutionStatus::Succeeded);
        let h = svc.history(arn).await.expect("history");
        assert_eq!(count(&h, "ExecutionSucceeded"), 1, "{:?}", types(&h));
        assert_eq!(count(&h, "WaitStateExited"), 1);
    }
    svc.shutdown().await;
}

/// Replies that pile up while no coordinator serves their partitions are taken as group
/// commits when one starts: every execution finishes once, with its first reply's result
/// (a duplicate of it queued right behind is in the same batch and changes nothing), and
/// nothing comes back after a further restart.
async fn queued_replies_are_group_committed_in_order<S: Store, B: Broker>(stack: &Stack<S, B>) {
    use stepline_engine::runtime::broker::InputMessage;
    use stepline_worker::protocol::{Reply, PROTOCOL_VERSION};
    let svc = stack.service();
    let (act, sm) = one_task_machine(&svc, stack, "queued").await;
    let mut arns = Vec::new();
    for i in 0..24 {
        arns.push(
            svc.start_execution(&sm, None, json!({"i": i}))
                .await
                .expect("start"),
        );
    }
    // Let every task message out, then stop the coordinator: the replies below queue up.
    let mut tasks = Vec::new();
    for _ in &arns {
        tasks.push(take_task(stack, &act).await);
    }
    let partitions = svc.coordinator().config().partitions;
    svc.shutdown().await;
    for task in tasks {
        let m = task.message.clone();
        task.acker.ack().await.expect("ack");
        let partition = stepline_engine::runtime::store::partition_of(&m.execution_arn, partitions);
        for (n, copy) in [(1, "first"), (2, "duplicate")] {
            let reply = Reply::Succeeded {
                version: PROTOCOL_VERSION,
                task_token: m.task_token.clone(),
                output: json!({"i": m.input["i"], "reply": n, "copy": copy}),
            };
            stack
                .broker
                .publish_input(partition, &InputMessage::Callback { reply })
                .await
                .expect("publish_input");
        }
    }
    let svc = stack.service();
    let mut histories = Vec::new();
    for (i, arn) in arns.iter().enumerate() {
        let rec = svc.wait(arn, WAIT).await.expect("wait");
        assert_eq!(rec.status, ExecutionStatus::Succeeded, "{arn}");
        assert_eq!(
            rec.output,
            Some(json!({"i": i, "reply": 1, "copy": "first"})),
            "the first reply decides"
        );
        let h = svc.history(arn).await.expect("history");
        assert_eq!(count(&h, "ActivitySucceeded"), 1, "{:?}", types(&h));
        assert_eq!(count(&h, "ExecutionSucceeded"), 1, "{:?}", types(&h));
        histories.push(h);
    }
    svc.shutdown().await;
    // Every input was acked: a new coordinator finds nothing to apply.
    let svc = stack.service();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (arn, before) in arns.iter().zip(&histories) {
        assert_eq!(&svc.history(arn).await.expect("history"), before);
    }
    svc.shutdown().await;
}

async fn two_coordinators_share_and_take_over<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let a = stack.service();
    let b = stack.service();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (pa, pb) = (
            a.coordinator().owned_partitions(),
            b.coordinator().owned_partitions(),
        );
        if pa.len() == 2 && pb.len() == 2 && pa.is_disjoint(&pb) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions never split: {pa:?} / {pb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sm = create(
        &a,
        stack,
        "failover",
        json!({
            "StartAt": "Pause",
            "States": {
                "Pause": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
                "Done": {"Type": "Pass", "Result": "finished", "End": true}
            }
        }),
    )
    .await;
    // Starts through `a`: those of `a`'s partitions are created by `a` directly, the others
    // travel through the partition queue to `b`. Make sure both paths are taken.
    let pb = b.coordinator().owned_partitions();
    let mut arns: Vec<String> = Vec::new();
    while arns.len() < 8
        || !arns
            .iter()
            .any(|arn| pb.contains(&a.coordinator().partition_of(arn)))
    {
        assert!(arns.len() < 64, "no execution hashed to b's partitions");
        arns.push(
            a.start_execution(&sm, None, json!({}))
                .await
                .expect("start"),
        );
    }
    // Give both coordinators time to start their executions, then crash one of them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill();
    for arn in &arns {
        let rec = a.wait(arn, WAIT).await.expect("wait");
        assert_eq!(rec.status, ExecutionStatus::Succeeded, "{arn}");
        let h = a.history(arn).await.expect("history");
        assert_eq!(count(&h, "ExecutionSucceeded"), 1, "{:?}", types(&h));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.coordinator().owned_partitions().len() != 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead coordinator's partitions were not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await;
}

async fn wait_for_task_token_completes_by_callback<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let resource = "arn:aws:states:::sqs:sendMessage.waitForTaskToken".to_string();
    let (token_tx, mut token_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let r2 = resource.clone();
    // The "service" receiving the message (an SQS stand-in): it records the token and
    // returns at once; that return must not complete the task.
    let stop = stack.worker(move |w| {
        w.activity(r2, move |_ctx: TaskContext, msg: Value| {
            let tx = token_tx.clone();
            async move {
                let token = msg["MessageBody"]["token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(token);
                Ok::<_, TaskError>(json!({"MessageId": "m-1"}))
            }
        })
    });
    let sm = create(&svc, stack, "approval", json!({
        "StartAt": "AskHuman",
        "States": {"AskHuman": {
            "Type": "Task", "Resource": resource,
            "Parameters": {"QueueUrl": "approvals", "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
            "End": true}}
    })).await;
    let arn = svc
        .start_execution(&sm, None, json!({"order": 7}))
        .await
        .expect("start");
    let token = tokio::time::timeout(WAIT, token_rx.recv())
        .await
        .expect("message never delivered")
        .expect("token");
    assert!(!token.is_empty());
    // The worker's own success reply did not finish the execution.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        svc.describe_execution(&arn).await.expect("describe").status,
        ExecutionStatus::Running
    );
    svc.send_task_success(&token, json!({"approved": true}))
        .await
        .expect("callback");
    let rec = svc.wait(&arn, WAIT).await.expect("wait");
    assert_eq!(rec.status, ExecutionStatus::Succeeded);
    assert_eq!(rec.output, Some(json!({"approved": true})));
    // A forged token is refused before it reaches the engine.
    let forged = format!("{}x", token);
    assert!(svc.send_task_success(&forged, json!({})).await.is_err());
    stop.cancel();
    svc.shutdown().await;
}

async fn parallel_and_map_with_workers<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let square = activity(&svc, stack, "square").await;
    let label = activity(&svc, stack, "label").await;
    let (sq, lb) = (square.clone(), label.clone());
    let stop = stack.worker(move |w| {
        w.activity(sq, |_c: TaskContext, n: i64| async move {
            if n < 0 {
                return Err(TaskError::new("Negative", format!("{n} is negative")));
            }
            Ok(n * n)
        })
        .activity(lb, |_c: TaskContext, v: Value| async move {
            Ok::<_, TaskError>(json!(format!("items: {v}")))
        })
        .concurrency(4)
    });
    let sm = create(&svc, stack, "fanout", json!({
        "StartAt": "Both",
        "States": {
            "Both": {"Type": "Parallel", "Next": "Done", "ResultSelector": {"squares.$": "$[0]", "label.$": "$[1]"},
                "Branches": [
                    {"StartAt": "Squares", "States": {"Squares": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                        "ToleratedFailureCount": 1,
                        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Sq",
                            "States": {"Sq": {"Type": "Task", "Resource": square, "End": true}}},
                        "End": true}}},
                    {"StartAt": "Label", "States": {"Label": {"Type": "Task", "Resource": label, "InputPath": "$.items", "End": true}}}
                ]},
            "Done": {"Type": "Succeed"}
        }
    })).await;
    let (rec, h) = run_to_end(&svc, &sm, json!({"items": [1, 2, -3, 4]})).await;
    assert_eq!(
        rec.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?} {:?}",
        rec.error,
        rec.cause,
        types(&h)
    );
    assert_eq!(
        rec.output,
        Some(
            json!({"squares": [1, 4, {"Error": "Negative", "Cause": "-3 is negative"}, 16], "label": "items: [1,2,-3,4]"})
        )
    );
    assert_eq!(count(&h, "MapIterationFailed"), 1);
    assert_eq!(count(&h, "MapIterationSucceeded"), 3);
    stop.cancel();
    svc.shutdown().await;
}

async fn task_timeout_cancels_the_handler_and_is_caught<S: Store, B: Broker>(stack: &Stack<S, B>) {
    let svc = stack.service();
    let act = activity(&svc, stack, "hang").await;
    let (cancelled_tx, mut cancelled_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stop = stack.worker(move |w| {
        w.activity(act.clone(), move |ctx: TaskContext, _: Value| {
            let cancelled = cancelled_tx.clone();
            async move {
                ctx.cancelled().await;
                let _ = cancelled.send(());
                Err::<Value, _>(TaskError::new("Gave.Up", "cancelled"))
            }
        })
    });
    let sm = create(&svc, stack, "timeout", json!({
        "StartAt": "Hang",
        "States": {
            "Hang": {"Type": "Task", "Resource": stack_activity_arn(&svc, stack, "hang"), "TimeoutSeconds": 1,
                     "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
                               {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "TimedOut"}],
                     "End": true},
            "Wrong": {"Type": "Fail", "Error": "Wrong", "Cause": "States.TaskFailed must not match a timeout"},
            "TimedOut": {"Type": "Succeed"}
        }
    })).await;
    let (rec, h) = run_to_end(&svc, &sm, json!({})).await;
    assert_eq!(rec.status, ExecutionStatus::Succeeded, "{:?}", types(&h));
    assert_eq!(
        rec.output,
        // AWS's error output for a timeout: an empty `Cause`.
        Some(json!({"timeout": {"Error": "States.Timeout", "Cause": ""}}))
    );
    assert_eq!(count(&h, "ActivityTimedOut"), 1);
    tokio::time::timeout(WAIT, cancelled_rx.recv())
        .await
        .expect("the handler was not cancelled after the timeout");
    stop.cancel();
    svc.shutdown().await;
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::memory_stack()).await;
                }
            )*
        }
        mod real_servers {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let stack = super::real_stack().await;
                    super::$name(&stack).await;
                    super::cleanup(&stack).await;
                }
            )*
        }
    };
}

scenarios!(
    worker_serves_a_task,
    retry_then_catch,
    heartbeat_timeout_without_a_worker,
    stop_cancels_the_running_handler,
    duplicate_replies_change_nothing,
    restart_mid_execution_finishes_once,
    queued_replies_are_group_committed_in_order,
    two_coordinators_share_and_take_over,
    wait_for_task_token_completes_by_callback,
    parallel_and_map_with_workers,
    task_timeout_cancels_the_handler_and_is_caught,
);

/// `stepline bench` end to end at a small scale on the real servers: every phase runs, every
/// execution succeeds (the bench fails otherwise), the numbers are real measurements, and the
/// JSON holds exactly the six documented keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_every_phase_on_the_real_servers() {
    use stepline_engine::bench::{run, BenchConfig};
    let config = BenchConfig {
        executions: 120,
        ceiling_round_trips: 300,
        ceiling_window: 16,
        sequential_round_trips: 30,
        latency_executions: 20,
        pass_states: 5,
        worker_concurrency: 8,
        partitions: 4,
        tasks_window: 16,
        ..BenchConfig::new(amqp_url(), redis_url())
    };
    let report = run(&config).await.expect("the benchmark runs");
    for (name, value) in [
        ("ceiling", report.ceiling_roundtrips_per_sec),
        ("raw p50", report.ceiling_latency_p50_ms),
        ("tasks/s", report.tasks_per_sec),
        ("backlog tasks/s", report.details.backlog_tasks_per_sec),
        ("latency p50", report.latency_p50_ms),
        ("latency p99", report.latency_p99_ms),
        ("pass", report.pass_transitions_per_sec),
        (
            "Redis PING p50",
            report.details.redis_ping_p50_ms.unwrap_or(f64::NAN),
        ),
    ] {
        assert!(value.is_finite() && value > 0.0, "{name} = {value}");
    }
    assert!(report.latency_p99_ms >= report.latency_p50_ms);
    // The ceiling is measured before and after the runtime; the report has the means.
    let runs = &report.details.ceiling_runs;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter()
            .all(|(per_sec, p50)| *per_sec > 0.0 && *p50 > 0.0),
        "{runs:?}"
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(
        report.ceiling_roundtrips_per_sec,
        (runs[0].0 + runs[1].0) / 2.0
    ));
    assert!(close(
        report.ceiling_latency_p50_ms,
        (runs[0].1 + runs[1].1) / 2.0
    ));
    let table = report.table();
    assert!(
        table.contains("tasks/s (120 one-Task executions, 16 in flight)"),
        "{table}"
    );
    // The floors note: the latency run's script time is read from Redis, so the latency
    // floor is there and above the raw round trip.
    let floor = report
        .bounds()
        .latency_floor_ms
        .expect("Redis's script time is readable");
    assert!(floor > report.ceiling_latency_p50_ms, "{floor} {table}");
    assert!(table.contains("estimates from these parts"), "{table}");
    // RabbitMQ on this machine (CI's, the default URL): its CPU is measured on both sides
    // (at this scale a few 10 ms ticks, so possibly 0).
    if amqp_url().contains("@127.0.0.1:") || amqp_url().contains("@localhost:") {
        for (side, cpu) in [
            ("raw round trip", report.details.ceiling_broker_cpu_ms),
            ("task", report.details.task_broker_cpu_ms),
        ] {
            assert!(
                cpu.is_some_and(|ms| ms >= 0.0),
                "RabbitMQ CPU per {side}: {cpu:?}"
            );
        }
        assert!(table.contains("RabbitMQ "), "{table}");
        // With every CPU reading, the CPU estimate is there: some cores busy, and a task
        // costing at least a raw round trip's CPU plus Redis's cannot beat the busy cores.
        let cpu = report.bounds().cpu.expect("every CPU reading is there");
        assert!(cpu.cores > 0.0 && cpu.ratio > 0.0, "{cpu:?}");
    }
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json.as_object().map(|o| o.len()), Some(6), "{json}");
}

/// `DeleteActivity` deletes the activity's queue once it is idle: kept while a task waits in
/// it, removed by the next `DeleteActivity` (the activity being gone already) once it is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_activity_deletes_its_idle_queue() {
    use stepline_worker::protocol::{TaskMessage, PROTOCOL_VERSION};
    use stepline_worker::topology::{partition_queue, task_queue};
    let stack = memory_stack();
    let svc = stack.service();
    let arn = svc
        .create_activity(&stack.name("deleted"))
        .await
        .expect("create_activity")
        .arn;
    let queue = task_queue(&arn);
    let message = TaskMessage {
        version: PROTOCOL_VERSION,
        task_token: "token".into(),
        resource: arn.clone(),
        execution_arn: "arn:aws:states:us-east-1:111111111111:execution:sm:e".into(),
        state_name: "Work".into(),
        input: json!({}),
        attempt: 1,
        timeout_seconds: None,
        heartbeat_seconds: None,
        deadline_ms: None,
        reply_to: partition_queue(0),
        reply_exchange: None,
    };
    stack
        .broker
        .publish_task(&queue, &message)
        .await
        .expect("publish_task");
    let hub = stack.broker.hub();
    svc.delete_activity(&arn).await.expect("delete_activity");
    assert!(hub.has_queue(&queue), "a task waits: the queue is kept");
    let waiting = stack
        .broker
        .get_task(&queue)
        .await
        .expect("get_task")
        .expect("the waiting task");
    waiting.acker.ack().await.expect("ack");
    svc.delete_activity(&arn)
        .await
        .expect("deleting a deleted activity succeeds");
    assert!(!hub.has_queue(&queue), "the idle queue is deleted");
    svc.shutdown().await;
}

/// A `redis-server` of the test's own (on a free port, no persistence), killed when dropped:
/// for scenarios that change the server's configuration, which must not touch the shared
/// Redis other tests use.
struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = crate::console::free_port().port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server must be installed (.ci/services installs it): {e}")
            });
        let own = OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if own.connection().await.is_some() {
                return own;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the test's redis-server on port {port} did not start");
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
        Some(conn)
    }

    async fn set_maxmemory(&self, bytes: u64) {
        let mut conn = self.connection().await.expect("the test's Redis");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .expect("CONFIG SET maxmemory");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A full Redis (`maxmemory` reached, `noeviction`) loses nothing: a start is refused whole
/// (nothing of it stored), steps that would add data are refused and wait (the coordinator
/// gives its partitions up, their inputs and timers stay), the server reports it; once memory
/// is there again every execution finishes, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_loses_nothing() {
    let redis = OwnRedis::start().await;
    let tag = tag();
    let ns = format!("e2e-{tag}");
    let store = RedisStore::connect(&redis.url, &format!("{ns}:"), Duration::from_secs(3600))
        .await
        .expect("the test's Redis")
        .with_partitions(config(4).partitions);
    let broker = AmqpBroker::connect(AmqpConfig::new(amqp_url()).with_namespace(ns.clone()))
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ must be running at {}: {e}", amqp_url()));
    let url = amqp_url();
    let stack = Stack {
        store: Arc::new(store),
        broker: Arc::new(broker),
        transport: Box::new(move || {
            Transport::from(AmqpTransport::new(url.clone()).namespace(&ns))
        }),
        tag,
    };
    let svc = stack.service();
    let sm = create(
        &svc,
        &stack,
        "full",
        json!({
            "StartAt": "First",
            "States": {
                // Long enough for the starts and filling Redis up to happen before it ends,
                // on a loaded machine too.
                "First": {"Type": "Wait", "Seconds": 5, "Next": "Second"},
                "Second": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
                "Done": {"Type": "Pass", "Result": "finished", "End": true}
            }
        }),
    )
    .await;
    let mut arns = Vec::new();
    for i in 0..5 {
        let arn = svc
            .start_execution(&sm, Some(format!("full-{i}")), json!({"i": i}))
            .await
            .expect("start");
        arns.push(arn);
    }
    // A start is an input of the partition's owner, which may still be taking its partitions
    // up: wait until every execution exists before filling Redis.
    for arn in &arns {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while svc.describe_execution(arn).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{arn} was not created in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Full: any limit below what is used.
    redis.set_maxmemory(1).await;
    let memory = stack.store.memory().await.expect("INFO memory");
    assert!(
        memory[0].fullness_warning().is_some(),
        "the server would warn: {memory:?}"
    );
    let refused = svc
        .start_execution(&sm, Some("refused".into()), json!({}))
        .await
        .expect_err("a start into a full Redis must fail");
    assert!(refused.to_string().contains("OOM"), "{refused}");
    // Past both timers (6 s after the starts): every execution is still at its first Wait,
    // its step refused. (Only a step that finishes an execution gets through a full Redis —
    // its first write frees memory — and no execution got that far.)
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    for arn in &arns {
        let rec = svc.describe_execution(arn).await.expect("describe");
        assert_eq!(rec.status, ExecutionStatus::Running, "{arn}");
    }
    for arn in &arns {
        let stuck = svc.history(arn).await.expect("history");
        assert_eq!(count(&stuck, "WaitStateExited"), 0, "{:?}", types(&stuck));
    }

    // Memory again: everything finishes, once.
    redis.set_maxmemory(0).await;
    for arn in &arns {
        let rec = svc.wait(arn, WAIT).await.expect("wait");
        assert_eq!(rec.status, ExecutionStatus::Succeeded, "{arn}");
        let h = svc.history(arn).await.expect("history");
        assert_eq!(count(&h, "ExecutionSucceeded"), 1, "{:?}", types(&h));
        assert_eq!(count(&h, "WaitStateExited"), 2, "{:?}", types(&h));
    }
    let refused_arn = arns[0].replace("full-0", "refused");
    assert!(
        svc.describe_execution(&refused_arn).await.is_err(),
        "the refused start left nothing behind"
    );
    svc.shutdown().await;
    stack
        .broker
        .delete_namespace()
        .await
        .expect("delete the RabbitMQ namespace");
}
