//! The worker runtime: declare activity handlers, run them against a transport.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stepline_worker::WorkerError> {
//! use stepline_worker::{InProcessHub, TaskContext, TaskError, Worker};
//!
//! #[derive(serde::Deserialize)]
//! struct Charge { card: String, cents: u64 }
//! #[derive(serde::Serialize)]
//! struct Receipt { id: String }
//!
//! async fn charge(ctx: TaskContext, input: Charge) -> Result<Receipt, TaskError> {
//!     if input.cents == 0 {
//!         return Err(TaskError::new("Card.Invalid", "nothing to charge"));
//!     }
//!     ctx.heartbeat().await.ok(); // optional: heartbeats are also sent automatically
//!     Ok(Receipt { id: format!("{}-{}", input.card, ctx.attempt()) })
//! }
//!
//! Worker::builder()
//!     .activity("charge-card", charge)
//!     .concurrency(8)
//!     .build(InProcessHub::new())
//!     .run()
//!     .await
//! # }
//! ```
//!
//! Per task the runtime: sends `Started` once the handler has run for 2 ms (a handler done
//! sooner sends one `Finished` reply carrying both, so a fast task costs one message and one
//! engine step); decodes the input into the handler's type (a
//! mismatch fails the task with [`INVALID_INPUT`]); runs the handler in its own tokio task
//! inside a `task` span (`activity`, `execution`, `state`, `attempt`); heartbeats every third
//! of `HeartbeatSeconds` while it runs; cancels the handler's [`CancellationToken`] when the
//! engine gives the task up (a `CancelMessage`) or its deadline passes, and drops the handler
//! if it ignores that for [`WorkerBuilder::cancel_grace`]; turns the result into `Succeeded`
//! or `Failed` (a panic is a [`TASK_FAILED`] with the panic message; the worker lives on); and
//! settles the delivery only once that final reply is confirmed.
//!
//! Concurrency is bounded by a semaphore, and a task is taken from the transport only when a
//! slot is free. On RabbitMQ each activity's consumer prefetches up to the concurrency (no
//! channel-wide prefetch: RabbitMQ 4.3 refuses it by default, quorum queues never took it), so
//! a worker serving several activities may hold tasks it has received and not started while
//! its slots are busy; they start in arrival order as slots free, and go back to their queue
//! if the worker stops or loses its connection first. An activity can have a tighter
//! limit of its own ([`WorkerBuilder::activity_concurrency`]), enforced where tasks are handed
//! out: on RabbitMQ a per-consumer prefetch, so its tasks beyond the limit stay in the queue for
//! other workers, and in process by taking its tasks only while it is under the limit. A rate
//! limit ([`WorkerBuilder::activity_rate_limit`]) spaces an activity's task starts evenly, also
//! where tasks are handed out.
//! Shutdown (SIGTERM/Ctrl-C, or the
//! [`Worker::shutdown_handle`]): take no more tasks, hand back received-but-unstarted ones,
//! let in-flight ones finish for [`WorkerBuilder::shutdown_grace`], then cancel those still
//! running and hand them back; a second signal skips the rest of the grace period.
//!
//! Not here: retries (the engine's `Retry` decides, with each attempt a new task) and
//! deduplication of at-least-once deliveries (the engine drops stale replies).

use crate::hub::InProcessHub;
use crate::protocol::{Reply, ReplyRoute, TaskError, TaskMessage, PROTOCOL_VERSION};
use crate::transport::{
    Delivery, Payload, ReplySink, Settle, Started, Subscription, Transport, TransportError,
};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, error, info, warn, Instrument};

/// Error of a handler that panicked (cause: the panic message), as AWS names a task failure.
pub const TASK_FAILED: &str = "States.TaskFailed";
/// Error of a task whose input does not deserialize into the handler's input type.
pub const INVALID_INPUT: &str = "Worker.InvalidInput";
/// Error of a task whose output does not serialize to JSON.
pub const INVALID_OUTPUT: &str = "Worker.InvalidOutput";
/// Error of a task for an activity this worker has no handler for.
pub const UNKNOWN_ACTIVITY: &str = "Worker.UnknownActivity";

/// Region used for short activity names unless [`WorkerBuilder::region`] says otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Account used for short activity names unless [`WorkerBuilder::account`] says otherwise.
pub const DEFAULT_ACCOUNT: &str = "111111111111";

/// How many cancelled tokens are remembered so a task cancelled before it starts is skipped.
const RECENT_CANCELS: usize = 4096;

/// The activity ARN for a short activity name.
pub fn activity_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{account}:activity:{name}")
}

/// Errors that end [`Worker::run`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker has no activities")]
    NoActivities,
    #[error(transparent)]
    Transport(#[from] TransportError),
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>>;
type Handler = Arc<dyn Fn(TaskContext, Value) -> HandlerFuture + Send + Sync>;

/// Wraps a typed handler: JSON in, typed call, JSON out.
fn erase<F, Fut, In, Out, E>(handler: F) -> Handler
where
    F: Fn(TaskContext, In) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, E>> + Send + 'static,
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + 'static,
    E: Into<TaskError> + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx: TaskContext, input: Value| {
        let handler = handler.clone();
        Box::pin(async move {
            let input: In = serde_json::from_value(input)
                .map_err(|e| TaskError::new(INVALID_INPUT, e.to_string()))?;
            let output = handler(ctx, input).await.map_err(Into::into)?;
            serde_json::to_value(output).map_err(|e| TaskError::new(INVALID_OUTPUT, e.to_string()))
        }) as HandlerFuture
    })
}

/// Builds a [`Worker`]; see the module docs for an example.
pub struct WorkerBuilder {
    activities: Vec<(String, Handler)>,
    /// Per-activity limits, by the name given (resolved to ARNs in `build`).
    limits: Vec<(String, u16)>,
    /// Per-activity rate limits (tasks per second), likewise.
    rates: Vec<(String, f64)>,
    region: String,
    account: String,
    name: Option<String>,
    concurrency: usize,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    handle_signals: bool,
}

impl WorkerBuilder {
    /// Serves `activity` — a full activity ARN, or a short name turned into
    /// `arn:aws:states:<region>:<account>:activity:<name>` — with `handler`, an async function
    /// of a [`TaskContext`] and a typed input returning `Result<Output, E>` where
    /// `E: Into<TaskError>`; the error's name is what the state's `ErrorEquals` matches.
    ///
    /// # Panics
    ///
    /// [`WorkerBuilder::build`] panics if two handlers resolve to the same ARN.
    pub fn activity<F, Fut, In, Out, E>(mut self, activity: impl Into<String>, handler: F) -> Self
    where
        F: Fn(TaskContext, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, E>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
        E: Into<TaskError> + 'static,
    {
        self.activities.push((activity.into(), erase(handler)));
        self
    }

    /// Region of short activity names (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Account of short activity names (default `111111111111`).
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// The `worker_name` reported in `Started` (default `<host>:<pid>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Maximum tasks in flight at once, across all activities (default 8, at least 1).
    ///
    /// On RabbitMQ it is also each activity consumer's prefetch: a worker serving several
    /// busy activities may hold up to that many received tasks per activity while it runs
    /// `max_in_flight` of them (RabbitMQ 4.3 no longer offers a prefetch shared by several
    /// consumers). When that matters, for long tasks, give each busy activity a worker of its
    /// own or an [`WorkerBuilder::activity_concurrency`] limit.
    pub fn concurrency(mut self, max_in_flight: usize) -> Self {
        self.concurrency = max_in_flight.clamp(1, usize::from(u16::MAX));
        self
    }

    /// At most `max_in_flight` tasks of `activity` (a name or ARN, as in
    /// [`WorkerBuilder::activity`]) at once, at least 1 — within the worker's overall
    /// [`WorkerBuilder::concurrency`], which still bounds all activities together. For a
    /// dependency that takes only so many calls at a time (a payment API, a licence server)
    /// served next to activities that may run more. The limit holds where tasks are handed
    /// out: on RabbitMQ as the activity consumer's own prefetch, so its tasks beyond the limit
    /// stay queued for other workers instead of waiting inside this one. It counts tasks
    /// taken and not yet settled: a handler dropped after [`WorkerBuilder::cancel_grace`] that
    /// is stuck in blocking code may still be running when the next task starts.
    ///
    /// # Panics
    ///
    /// [`WorkerBuilder::build`] panics if no handler serves `activity`.
    pub fn activity_concurrency(
        mut self,
        activity: impl Into<String>,
        max_in_flight: usize,
    ) -> Self {
        let limit = u16::try_from(max_in_flight.max(1)).unwrap_or(u16::MAX);
        self.limits.push((activity.into(), limit));
        self
    }

    /// At most `per_second` tasks of `activity` (a name or ARN, as in
    /// [`WorkerBuilder::activity`]) start per second on this worker, evenly spaced: one every
    /// `1 / per_second` seconds, no burst (`0.5`: one every two seconds). For a dependency
    /// with a rate limit of its own (an API quota, a mail relay); run as many workers as the
    /// quota allows, or divide it among them, since each worker counts only its own tasks.
    /// Tasks waiting for their turn stay queued for other workers: in process they are taken
    /// only when their turn has come. On RabbitMQ the activity's consumer prefetches some,
    /// which wait in this worker, in arrival order, while its other activities' tasks go by
    /// (their `TimeoutSeconds` runs meanwhile, as it does in the queue): as many as its
    /// [`WorkerBuilder::activity_concurrency`] limit if it has one, else two seconds' worth
    /// (twice `per_second` rounded up, at least 2, at most [`WorkerBuilder::concurrency`]) —
    /// which also bounds how many of its tasks run at once, so for tasks that take longer than
    /// a second give the activity a concurrency limit of how many may run together.
    ///
    /// Each of those waits at most 20 minutes for its turn, under RabbitMQ's default
    /// `consumer_timeout` (30 minutes, after which RabbitMQ closes the channel of a delivery
    /// still unacknowledged): hence the lowest rate, one every ten minutes
    /// ([`MIN_RATE_PER_SECOND`](crate::transport::MIN_RATE_PER_SECOND)), and with a concurrency
    /// limit, `limit / per_second` of at most 1,200 seconds.
    ///
    /// # Panics
    ///
    /// [`WorkerBuilder::build`] panics if no handler serves `activity`, if `per_second` is not a
    /// number of at least one every ten minutes, or if the activity's concurrency limit would
    /// make a task wait longer than 20 minutes for its turn.
    pub fn activity_rate_limit(mut self, activity: impl Into<String>, per_second: f64) -> Self {
        self.rates.push((activity.into(), per_second));
        self
    }

    /// How long a shutdown waits for in-flight tasks before cancelling them and handing them
    /// back (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a handler may keep running after its cancellation token fired (engine gave
    /// up, or deadline) before the runtime drops it and frees its slot (default 30 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Whether [`Worker::run`] shuts down on SIGTERM/Ctrl-C (default true). Embedders that own
    /// signal handling turn this off and use [`Worker::shutdown_handle`].
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.handle_signals = yes;
        self
    }

    /// The worker, ready to [`Worker::run`] on `transport` (an [`InProcessHub`] or an
    /// `AmqpTransport`).
    pub fn build(self, transport: impl Into<Transport>) -> Worker {
        let arn_of = |name: String| {
            if name.starts_with("arn:") {
                name
            } else {
                activity_arn(&self.region, &self.account, &name)
            }
        };
        let mut activities = HashMap::new();
        for (name, handler) in self.activities {
            let arn = arn_of(name);
            assert!(
                activities.insert(arn.clone(), handler).is_none(),
                "two handlers for activity {arn}"
            );
        }
        let mut limits = HashMap::new();
        for (name, limit) in self.limits {
            let arn = arn_of(name);
            assert!(
                activities.contains_key(&arn),
                "activity_concurrency for {arn}, which no handler serves"
            );
            // The last call wins, like any other builder setting.
            limits.insert(arn, limit);
        }
        let mut paces = HashMap::new();
        for (name, per_second) in self.rates {
            let arn = arn_of(name);
            assert!(
                activities.contains_key(&arn),
                "activity_rate_limit for {arn}, which no handler serves"
            );
            let pace = crate::transport::Pace::new(per_second).unwrap_or_else(|| {
                panic!(
                    "activity_rate_limit for {arn}: {per_second} is not a number of tasks per \
                     second of at least {} (one every ten minutes)",
                    crate::transport::MIN_RATE_PER_SECOND
                )
            });
            // On RabbitMQ the activity's limit is its prefetch: the last of those tasks waits
            // `limit` turns, and must not outstay RabbitMQ's `consumer_timeout`.
            if let Some(limit) = limits.get(&arn) {
                let wait = f64::from(*limit) / per_second;
                assert!(
                    wait <= crate::transport::MAX_TURN_WAIT_SECONDS,
                    "activity_rate_limit for {arn}: with activity_concurrency {limit} at \
                     {per_second}/s a prefetched task may wait {wait:.0} s for its turn, more \
                     than {} s (RabbitMQ's consumer_timeout, 30 minutes by default, must not \
                     pass while it waits); lower the limit or raise the rate",
                    crate::transport::MAX_TURN_WAIT_SECONDS
                );
            }
            paces.insert(arn, pace);
        }
        Worker {
            activities,
            limits,
            paces,
            name: self.name.unwrap_or_else(default_worker_name),
            concurrency: self.concurrency,
            shutdown_grace: self.shutdown_grace,
            cancel_grace: self.cancel_grace,
            handle_signals: self.handle_signals,
            shutdown: CancellationToken::new(),
            transport: transport.into(),
        }
    }
}

fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}:{}", std::process::id())
}

/// A configured worker; [`Worker::run`] serves tasks until shut down.
pub struct Worker {
    activities: HashMap<String, Handler>,
    /// Activity ARN → most of its tasks in flight at once (absent: only the overall limit).
    limits: HashMap<String, u16>,
    /// Activity ARN → its rate limit (absent: none).
    paces: HashMap<String, crate::transport::Pace>,
    name: String,
    concurrency: usize,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    handle_signals: bool,
    shutdown: CancellationToken,
    transport: Transport,
}

impl Worker {
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder {
            activities: Vec::new(),
            limits: Vec::new(),
            rates: Vec::new(),
            region: DEFAULT_REGION.to_string(),
            account: DEFAULT_ACCOUNT.to_string(),
            name: None,
            concurrency: 8,
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(30),
            handle_signals: true,
        }
    }

    /// Cancelling this token starts a graceful shutdown, as SIGTERM does.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The activity ARNs this worker serves, sorted.
    pub fn activity_arns(&self) -> Vec<String> {
        let mut arns: Vec<String> = self.activities.keys().cloned().collect();
        arns.sort();
        arns
    }

    /// Serves tasks until shutdown; returns once every task taken is finished or handed back.
    /// `Err` if there is nothing to serve or the transport gave up reconnecting.
    pub async fn run(self) -> Result<(), WorkerError> {
        if self.activities.is_empty() {
            return Err(WorkerError::NoActivities);
        }
        let arns = self.activity_arns();
        let prefetch = u16::try_from(self.concurrency).unwrap_or(u16::MAX);
        let Started {
            mut tasks,
            mut cancels,
            replies,
        } = self.transport.start(Subscription {
            activities: &arns,
            limits: &self.limits,
            paces: &self.paces,
            prefetch,
            worker_name: &self.name,
        });
        info!(worker = %self.name, activities = ?arns, concurrency = self.concurrency, limits = ?self.limits, rates = ?self.paces, "worker started");

        let shutdown = self.shutdown;
        let force = CancellationToken::new();
        let signals = self
            .handle_signals
            .then(|| tokio::spawn(watch_signals(shutdown.clone(), force.clone())));
        let env = Arc::new(Env {
            activities: self.activities,
            worker_name: self.name,
            replies,
            cancels: Mutex::new(Cancels::default()),
            force: force.clone(),
            cancel_grace: self.cancel_grace,
        });

        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running = JoinSet::new();
        let mut slot: Option<OwnedSemaphorePermit> = None;
        let mut cancels_open = true;
        let failure = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break None,
                token = cancels.next(), if cancels_open => match token {
                    Some(token) => env.cancel(&token),
                    None => cancels_open = false,
                },
                Some(joined) = running.join_next(), if !running.is_empty() => log_join(joined),
                permit = slots.clone().acquire_owned(), if slot.is_none() => slot = permit.ok(),
                delivery = tasks.next(), if slot.is_some() => match (delivery, slot.take()) {
                    (Ok(delivery), Some(permit)) => {
                        running.spawn(drive(env.clone(), delivery, permit));
                    }
                    // Not reachable (the branch needs a slot); never run a task without one.
                    (Ok(delivery), None) => hand_back_unstarted(delivery).await,
                    (Err(e), _) => break Some(e),
                },
            }
        };

        match &failure {
            None => info!(
                in_flight = running.len(),
                "shutting down: taking no more tasks"
            ),
            Some(e) => error!(error = %e, in_flight = running.len(), "transport failed; stopping"),
        }
        for delivery in tasks.stop().await {
            hand_back_unstarted(delivery).await;
        }
        let grace = tokio::time::sleep(self.shutdown_grace);
        tokio::pin!(grace);
        while !running.is_empty() {
            tokio::select! {
                biased;
                _ = force.cancelled() => break,
                _ = &mut grace => {
                    warn!(in_flight = running.len(), "shutdown grace period over: cancelling and handing back");
                    break;
                }
                token = cancels.next(), if cancels_open => match token {
                    Some(token) => env.cancel(&token),
                    None => cancels_open = false,
                },
                Some(joined) = running.join_next() => log_join(joined),
            }
        }
        force.cancel();
        while let Some(joined) = running.join_next().await {
            log_join(joined);
        }
        tasks.close().await;
        if let Some(signals) = signals {
            signals.abort();
        }
        info!("worker stopped");
        failure.map_or(Ok(()), |e| Err(e.into()))
    }
}

fn log_join(joined: Result<(), JoinError>) {
    if let Err(e) = joined {
        error!(error = %e, "a task driver failed");
    }
}

async fn hand_back_unstarted(delivery: Delivery) {
    let result = match delivery.payload {
        Payload::Task(task) => delivery.settle.hand_back(*task).await,
        // Malformed: handing it back would only bring it back; dead-letter it now.
        Payload::Malformed(_) => delivery.settle.reject().await,
    };
    if let Err(e) = result {
        debug!(error = %e, "handing back an unstarted task");
    }
}

/// First SIGTERM/Ctrl-C: graceful shutdown; second: skip the rest of the grace period.
async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    loop {
        signal().await;
        if shutdown.is_cancelled() {
            warn!("second shutdown signal: cancelling in-flight tasks now");
            force.cancel();
            return;
        }
        info!("shutdown signal received");
        shutdown.cancel();
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}

/// What every task driver shares.
struct Env {
    activities: HashMap<String, Handler>,
    worker_name: String,
    replies: ReplySink,
    cancels: Mutex<Cancels>,
    /// Fired when the shutdown grace period is over.
    force: CancellationToken,
    cancel_grace: Duration,
}

/// Cancellation tokens of running tasks, and tokens cancelled recently (bounded).
#[derive(Default)]
struct Cancels {
    running: HashMap<String, (CancellationToken, usize)>,
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
}

impl Env {
    fn cancels(&self) -> std::sync::MutexGuard<'_, Cancels> {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self, task_token: &str) {
        let mut cancels = self.cancels();
        if let Some((token, _)) = cancels.running.get(task_token) {
            debug!("the engine gave up a running task: cancelling its handler");
            token.cancel();
        }
        if cancels.recent.insert(task_token.to_string()) {
            cancels.recent_order.push_back(task_token.to_string());
            if cancels.recent_order.len() > RECENT_CANCELS {
                if let Some(old) = cancels.recent_order.pop_front() {
                    cancels.recent.remove(&old);
                }
            }
        }
    }

    /// The cancellation token of a starting task, or `None` if it was already cancelled.
    fn register(self: &Arc<Self>, task_token: &str) -> Option<Registration> {
        let mut cancels = self.cancels();
        if cancels.recent.contains(task_token) {
            return None;
        }
        let entry = cancels
            .running
            .entry(task_token.to_string())
            .or_insert_with(|| (CancellationToken::new(), 0));
        entry.1 += 1;
        Some(Registration {
            env: self.clone(),
            task_token: task_token.to_string(),
            token: entry.0.clone(),
        })
    }
}

/// A running task's entry in [`Cancels`]; removed on drop.
struct Registration {
    env: Arc<Env>,
    task_token: String,
    token: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut cancels = self.env.cancels();
        if let Some(entry) = cancels.running.get_mut(&self.task_token) {
            entry.1 -= 1;
            if entry.1 == 0 {
                cancels.running.remove(&self.task_token);
            }
        }
    }
}

/// Runs one delivery from receipt to settlement; holds its concurrency slot throughout.
async fn drive(env: Arc<Env>, delivery: Delivery, _slot: OwnedSemaphorePermit) {
    let Delivery {
        payload,
        activity,
        settle,
        lost,
    } = delivery;
    let task = match payload {
        Payload::Task(task) => *task,
        Payload::Malformed(reason) => {
            warn!(%reason, "dead-lettering a message that is not a task");
            if let Err(e) = settle.reject().await {
                debug!(error = %e, "dead-lettering");
            }
            return;
        }
    };
    if task.version != PROTOCOL_VERSION {
        warn!(
            version = task.version,
            "dead-lettering a task of an unknown protocol version"
        );
        if let Err(e) = settle.reject().await {
            debug!(error = %e, "dead-lettering");
        }
        return;
    }
    let activity = activity.unwrap_or_else(|| task.resource.clone());
    let span = tracing::info_span!(
        "task",
        activity = %activity,
        execution = %task.execution_arn,
        state = %task.state_name,
        attempt = task.attempt,
    );
    run_task(env, activity, task, settle, lost)
        .instrument(span)
        .await;
}

enum Outcome {
    /// The handler returned (or panicked): send this as the final reply.
    Finished(Result<Value, TaskError>),
    /// The handler returned after the engine gave the task up (its deadline passed or the
    /// engine cancelled it): the engine already decided (timeout, stop), so no reply is sent —
    /// a late failure must not race the engine's own timeout.
    FinishedAfterGiveUp,
    /// Shutdown grace over: the handler was cancelled and dropped; hand the task back.
    HandBack,
    /// The delivery was lost with its connection; the broker already requeued it.
    Lost,
    /// The handler ignored its cancellation for `cancel_grace`; it was dropped.
    Abandoned,
}

/// How long a task's `Started` is held back: a handler done by then sends one `Finished` reply.
const COMBINE_WINDOW: Duration = Duration::from_millis(2);

async fn run_task(
    env: Arc<Env>,
    activity: String,
    task: TaskMessage,
    settle: Settle,
    lost: CancellationToken,
) {
    let Some(registration) = env.register(&task.task_token) else {
        debug!("skipping a task the engine already gave up");
        settle_or_log(settle.ack().await);
        return;
    };
    let ctx = TaskContext::new(&task, &activity, registration.token.clone(), &env.replies);
    let input = task.input.clone();
    let mut supervised = Box::pin(async {
        match env.activities.get(&activity) {
            Some(handler) => {
                let handler = handler.clone();
                let running = handler(ctx.clone(), input).instrument(tracing::Span::current());
                if task.heartbeat_seconds.is_some_and(|s| s > 0) {
                    // On a task of its own, so automatic heartbeats go on even while the
                    // handler computes without yielding.
                    // Dropping the handle aborts the task, as dropping the future would.
                    let joined = AbortOnDropHandle::new(tokio::spawn(running))
                        .map(|j| j.map_err(panic_to_error).and_then(|r| r));
                    supervise(&env, &ctx, joined, &lost).await
                } else {
                    // Polled right here (one task and one wake-up less per task); a panic is
                    // caught all the same, and dropping the future cancels it.
                    let caught = AssertUnwindSafe(running)
                        .catch_unwind()
                        .map(|r| r.map_err(panic_message_to_error).and_then(|r| r));
                    supervise(&env, &ctx, caught, &lost).await
                }
            }
            None => Outcome::Finished(Err(TaskError::new(
                UNKNOWN_ACTIVITY,
                format!("this worker has no handler for {activity}"),
            ))),
        }
    });
    // A handler that finishes within `COMBINE_WINDOW` gets one `Finished` reply (started and
    // result together: one message and one engine step instead of two). A longer one gets
    // `Started` then; the handler keeps running while the broker confirms it, and the final
    // reply waits for that confirmation (and follows `Started` on the same channel), so the
    // delivery is acked only once both replies are safe.
    let early = tokio::select! {
        biased;
        outcome = &mut supervised => Some(outcome),
        _ = tokio::time::sleep(COMBINE_WINDOW) => None,
    };
    let (outcome, started_confirm) = match early {
        Some(outcome) => {
            drop(supervised);
            (outcome, None)
        }
        None => {
            let started = Reply::Started {
                version: PROTOCOL_VERSION,
                task_token: task.task_token.clone(),
                worker_name: env.worker_name.clone(),
            };
            match env
                .replies
                .send_pipelined(&task.reply_route(), &started)
                .await
            {
                Ok(pending) => {
                    debug!("task started");
                    (supervised.await, Some(pending))
                }
                Err(e) => {
                    // Nothing can be reported for this delivery: stop the handler.
                    ctx.cancellation_token().cancel();
                    let _ = supervised.await;
                    drop(registration);
                    undeliverable(settle, task, &lost, e).await;
                    return;
                }
            }
        }
    };
    drop(registration);

    match outcome {
        Outcome::Finished(result) => {
            let reply = match result {
                Ok(output) => {
                    info!("task succeeded");
                    Reply::Succeeded {
                        version: PROTOCOL_VERSION,
                        task_token: task.task_token.clone(),
                        output,
                    }
                }
                Err(TaskError { error, cause }) => {
                    info!(%error, %cause, "task failed");
                    Reply::Failed {
                        version: PROTOCOL_VERSION,
                        task_token: task.task_token.clone(),
                        error: Some(error),
                        cause: Some(cause),
                    }
                }
            };
            let reply = match started_confirm {
                Some(pending) => {
                    if let Err(e) = pending.await {
                        undeliverable(settle, task, &lost, e).await;
                        return;
                    }
                    reply
                }
                None => Reply::Finished {
                    version: PROTOCOL_VERSION,
                    worker_name: env.worker_name.clone(),
                    result: Box::new(reply),
                },
            };
            match env.replies.send(&task.reply_route(), &reply).await {
                Ok(()) => settle_or_log(settle.ack().await),
                Err(e) => undeliverable(settle, task, &lost, e).await,
            }
        }
        Outcome::FinishedAfterGiveUp => {
            info!("handler finished after the engine gave the task up: no reply sent");
            settle_or_log(settle.ack().await);
        }
        Outcome::HandBack => {
            info!("task cancelled by shutdown: handing it back");
            settle_or_log(settle.hand_back(task).await);
        }
        Outcome::Lost => warn!("task lost with the broker connection; it will be redelivered"),
        Outcome::Abandoned => {
            warn!(grace = ?env.cancel_grace, "handler ignored its cancellation: dropped it");
            settle_or_log(settle.ack().await);
        }
    }
}

fn settle_or_log(result: Result<(), TransportError>) {
    if let Err(e) = result {
        warn!(error = %e, "settling a task");
    }
}

/// A reply could not be sent: the task cannot finish here.
async fn undeliverable(
    settle: Settle,
    task: TaskMessage,
    lost: &CancellationToken,
    e: TransportError,
) {
    if lost.is_cancelled() {
        // The broker already requeued it.
        return;
    }
    match e {
        TransportError::Unroutable(queue) => {
            error!(reply_to = %queue, "reply queue does not exist: dead-lettering the task");
            settle_or_log(settle.reject().await);
        }
        e => {
            warn!(error = %e, "cannot send a reply: handing the task back");
            settle_or_log(settle.hand_back(task).await);
        }
    }
}

/// Runs `handler` (the handler's future, its panic already turned into an error) while
/// heartbeating and watching cancellation, deadline, shutdown and connection loss: to its end,
/// or until the task is handed back, lost or abandoned (then the handler is dropped, which
/// stops it).
async fn supervise(
    env: &Env,
    ctx: &TaskContext,
    handler: impl Future<Output = Result<Value, TaskError>>,
    lost: &CancellationToken,
) -> Outcome {
    let mut handle = std::pin::pin!(handler);
    let cancel = ctx.cancellation_token().clone();
    let mut heartbeat = ctx.inner.heartbeat_seconds.filter(|s| *s > 0).map(|s| {
        let period =
            Duration::from_millis(s.saturating_mul(1000) / 3).max(Duration::from_millis(1));
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut deadline = ctx.inner.deadline_at;
    let mut abandon_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            finished = &mut handle => {
                if cancel.is_cancelled() {
                    return Outcome::FinishedAfterGiveUp;
                }
                return Outcome::Finished(finished);
            }
            _ = env.force.cancelled() => {
                cancel.cancel();
                return Outcome::HandBack;
            }
            _ = lost.cancelled() => {
                cancel.cancel();
                return Outcome::Lost;
            }
            _ = sleep_until(abandon_at), if abandon_at.is_some() => {
                return Outcome::Abandoned;
            }
            _ = cancel.cancelled(), if abandon_at.is_none() => {
                abandon_at = Some(Instant::now() + env.cancel_grace);
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                debug!("task deadline passed: cancelling its handler");
                deadline = None;
                cancel.cancel();
            }
            _ = tick(&mut heartbeat), if heartbeat.is_some() => {
                if let Err(e) = ctx.heartbeat().await {
                    warn!(error = %e, "automatic heartbeat not sent");
                }
            }
        }
    }
}

/// An instant no timer reaches (for deadlines beyond what `Instant` can represent).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn panic_to_error(e: JoinError) -> TaskError {
    if e.is_panic() {
        panic_message_to_error(e.into_panic())
    } else {
        TaskError::new(TASK_FAILED, "the handler was cancelled")
    }
}

/// A handler's panic as the task's failure, with the panic message as the cause.
fn panic_message_to_error(payload: Box<dyn std::any::Any + Send>) -> TaskError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the handler panicked".to_string());
    TaskError::new(TASK_FAILED, message)
}

/// What a handler knows about its task, and how it talks back.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    task_token: String,
    activity_arn: String,
    execution_arn: String,
    state_name: String,
    attempt: u32,
    heartbeat_seconds: Option<u64>,
    deadline: Option<SystemTime>,
    deadline_at: Option<Instant>,
    cancel: CancellationToken,
    replies: ReplySink,
    reply_to: ReplyRoute,
}

impl TaskContext {
    fn new(
        task: &TaskMessage,
        activity: &str,
        cancel: CancellationToken,
        replies: &ReplySink,
    ) -> Self {
        // The engine's deadline is wall-clock time; timers run on tokio's clock. Without one,
        // TimeoutSeconds counted from receipt is a deadline no earlier than the engine's.
        let deadline = match (task.deadline_ms, task.timeout_seconds) {
            (Some(ms), _) => Some(
                u64::try_from(ms)
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                    .unwrap_or(UNIX_EPOCH),
            ),
            (None, Some(seconds)) => SystemTime::now().checked_add(Duration::from_secs(seconds)),
            (None, None) => None,
        };
        let deadline_at = deadline.map(|deadline| {
            let remaining = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Instant::now()
                .checked_add(remaining)
                .unwrap_or_else(far_future)
        });
        TaskContext {
            inner: Arc::new(ContextInner {
                task_token: task.task_token.clone(),
                activity_arn: activity.to_string(),
                execution_arn: task.execution_arn.clone(),
                state_name: task.state_name.clone(),
                attempt: task.attempt,
                heartbeat_seconds: task.heartbeat_seconds,
                deadline,
                deadline_at,
                cancel,
                replies: replies.clone(),
                reply_to: task.reply_route(),
            }),
        }
    }

    /// A context for unit-testing a handler without a worker: heartbeats go to a private
    /// in-process hub, nothing cancels it unless you cancel its token.
    pub fn detached(task_token: impl Into<String>) -> Self {
        let task = TaskMessage {
            version: PROTOCOL_VERSION,
            task_token: task_token.into(),
            resource: String::new(),
            execution_arn: String::new(),
            state_name: String::new(),
            input: Value::Null,
            attempt: 1,
            timeout_seconds: None,
            heartbeat_seconds: None,
            deadline_ms: None,
            reply_to: String::new(),
            reply_exchange: None,
        };
        let replies = ReplySink::InProcess(InProcessHub::new());
        TaskContext::new(&task, "", CancellationToken::new(), &replies)
    }

    /// The opaque task token (what `.waitForTaskToken` callbacks need).
    pub fn task_token(&self) -> &str {
        &self.inner.task_token
    }

    pub fn activity_arn(&self) -> &str {
        &self.inner.activity_arn
    }

    pub fn execution_arn(&self) -> &str {
        &self.inner.execution_arn
    }

    pub fn state_name(&self) -> &str {
        &self.inner.state_name
    }

    /// 1 for the first try, 2 for the first retry, …
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The state's `HeartbeatSeconds` (the runtime heartbeats every third of it by itself).
    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        self.inner.heartbeat_seconds.map(Duration::from_secs)
    }

    /// When the engine stops waiting for this task (from `TimeoutSeconds`).
    pub fn deadline(&self) -> Option<SystemTime> {
        self.inner.deadline
    }

    /// Time left until [`TaskContext::deadline`] (zero once passed).
    pub fn time_remaining(&self) -> Option<Duration> {
        self.inner
            .deadline_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Fires when the engine gives the task up (timeout, stop, …) or the deadline passes: stop
    /// work and return; whatever is returned after that is ignored by the engine.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the task is cancelled.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Tells the engine the task is alive now (on top of the automatic heartbeats).
    pub async fn heartbeat(&self) -> Result<(), TransportError> {
        let reply = Reply::Heartbeat {
            version: PROTOCOL_VERSION,
            task_token: self.inner.task_token.clone(),
        };
        self.inner.replies.send(&self.inner.reply_to, &reply).await
    }
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("activity_arn", &self.inner.activity_arn)
            .field("execution_arn", &self.inner.execution_arn)
            .field("state_name", &self.inner.state_name)
            .field("attempt", &self.inner.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CancelMessage;
    use crate::topology::task_queue;
    use serde::Deserialize;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    const ARN: &str = "arn:aws:states:us-east-1:111111111111:activity:test";
    /// A second activity, for tests of several.
    const OTHER: &str = "arn:aws:states:us-east-1:111111111111:activity:other";

    fn task(token: &str, input: Value) -> TaskMessage {
        TaskMessage {
            version: PROTOCOL_VERSION,
            task_token: token.into(),
            resource: ARN.into(),
            execution_arn: "arn:aws:states:us-east-1:111111111111:execution:m:e".into(),
            state_name: "Work".into(),
            input,
            attempt: 1,
            timeout_seconds: None,
            heartbeat_seconds: None,
            deadline_ms: None,
            reply_to: "stepline.partition.0".into(),
            reply_exchange: None,
        }
    }

    /// A task of [`OTHER`].
    fn other_task(token: &str, input: Value) -> TaskMessage {
        TaskMessage {
            resource: OTHER.into(),
            ..task(token, input)
        }
    }

    fn started(token: &str) -> Reply {
        Reply::Started {
            version: PROTOCOL_VERSION,
            task_token: token.into(),
            worker_name: "w".into(),
        }
    }

    /// The one reply of a handler that finished within the combine window.
    fn finished(result: Reply) -> Reply {
        Reply::Finished {
            version: PROTOCOL_VERSION,
            worker_name: "w".into(),
            result: Box::new(result),
        }
    }

    fn succeeded(token: &str, output: Value) -> Reply {
        Reply::Succeeded {
            version: PROTOCOL_VERSION,
            task_token: token.into(),
            output,
        }
    }

    fn failed(token: &str, error: &str, cause: &str) -> Reply {
        Reply::Failed {
            version: PROTOCOL_VERSION,
            task_token: token.into(),
            error: Some(error.into()),
            cause: Some(cause.into()),
        }
    }

    struct Running {
        hub: InProcessHub,
        replies: mpsc::UnboundedReceiver<Reply>,
        shutdown: CancellationToken,
        worker: tokio::task::JoinHandle<Result<(), WorkerError>>,
    }

    fn start(builder: WorkerBuilder) -> Running {
        let hub = InProcessHub::new();
        let replies = hub.take_replies().expect("reply stream");
        let worker = builder.name("w").handle_signals(false).build(&hub);
        let shutdown = worker.shutdown_handle();
        Running {
            hub,
            replies,
            shutdown,
            worker: tokio::spawn(worker.run()),
        }
    }

    impl Running {
        fn push(&self, task: TaskMessage) {
            self.hub.push_task(&task_queue(&task.resource), task);
        }

        /// The next reply; time is paused, so a stuck worker trips the timeout at once.
        async fn reply(&mut self) -> Reply {
            tokio::time::timeout(Duration::from_secs(3600), self.replies.recv())
                .await
                .expect("a reply within an hour of virtual time")
                .expect("reply stream open")
        }

        fn cancel(&self, token: &str) {
            self.hub.cancel(CancelMessage {
                version: PROTOCOL_VERSION,
                task_token: token.into(),
            });
        }

        async fn stop(mut self) -> Self {
            self.shutdown.cancel();
            (&mut self.worker)
                .await
                .expect("worker task")
                .expect("worker ran");
            self
        }

        fn no_more_replies(&mut self) {
            assert!(self.replies.try_recv().is_err(), "unexpected reply");
        }
    }

    #[derive(Deserialize)]
    struct Charge {
        cents: u64,
    }

    #[derive(Serialize)]
    struct Receipt {
        charged: u64,
        attempt: u32,
        state: String,
    }

    async fn charge(ctx: TaskContext, input: Charge) -> Result<Receipt, TaskError> {
        if input.cents > 1000 {
            return Err(TaskError::new("Card.Declined", "insufficient funds"));
        }
        Ok(Receipt {
            charged: input.cents,
            attempt: ctx.attempt(),
            state: ctx.state_name().to_string(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_typed_handler_sends_one_finished_reply() {
        let mut w = start(Worker::builder().activity("test", charge));
        w.push(task("t1", json!({"cents": 42})));
        assert_eq!(
            w.reply().await,
            finished(succeeded(
                "t1",
                json!({"charged": 42, "attempt": 1, "state": "Work"})
            ))
        );
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn task_error_becomes_failed_with_its_name() {
        let mut w = start(Worker::builder().activity("test", charge));
        w.push(task("t1", json!({"cents": 5000})));
        assert_eq!(
            w.reply().await,
            finished(failed("t1", "Card.Declined", "insufficient funds"))
        );
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_input_fails_with_the_serde_message() {
        let mut w = start(Worker::builder().activity("test", charge));
        w.push(task("t1", json!({"cents": "lots"})));
        let Reply::Finished { result, .. } = w.reply().await else {
            panic!("expected one Finished reply");
        };
        match *result {
            Reply::Failed {
                error: Some(error),
                cause: Some(cause),
                ..
            } => {
                assert_eq!(error, INVALID_INPUT);
                assert!(cause.contains("invalid type"), "{cause}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_fails_the_task_and_the_worker_keeps_serving() {
        let mut w = start(Worker::builder().activity(
            "test",
            |_ctx: TaskContext, input: Value| async move {
                if input["boom"] == true {
                    panic!("card reader on fire");
                }
                Ok::<_, TaskError>(json!("fine"))
            },
        ));
        w.push(task("t1", json!({"boom": true})));
        assert_eq!(
            w.reply().await,
            finished(failed("t1", TASK_FAILED, "card reader on fire"))
        );
        w.push(task("t2", json!({})));
        assert_eq!(w.reply().await, finished(succeeded("t2", json!("fine"))));
        w.stop().await;
    }

    /// A task with `HeartbeatSeconds` runs its handler on a task of its own (see
    /// `run_task`): a panic there fails the task the same way.
    #[tokio::test(start_paused = true)]
    async fn a_panic_on_a_heartbeating_task_fails_it_too() {
        let mut w = start(Worker::builder().activity(
            "test",
            |_ctx: TaskContext, _input: Value| async move {
                panic!("card reader on fire");
                #[allow(unreachable_code)]
                Ok::<_, TaskError>(json!("never"))
            },
        ));
        let mut t = task("t1", json!({}));
        t.heartbeat_seconds = Some(10);
        w.push(t);
        assert_eq!(
            w.reply().await,
            finished(failed("t1", TASK_FAILED, "card reader on fire"))
        );
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_every_third_of_heartbeat_seconds() {
        let mut w = start(Worker::builder().activity(
            "test",
            |_ctx: TaskContext, _input: Value| async move {
                tokio::time::sleep(Duration::from_millis(3500)).await;
                Ok::<_, TaskError>(json!("done"))
            },
        ));
        let mut t = task("t1", json!({}));
        t.heartbeat_seconds = Some(3);
        let pushed = Instant::now();
        w.push(t);
        // A handler still running after the combine window gets `Started` then.
        assert_eq!(w.reply().await, started("t1"));
        assert_eq!(pushed.elapsed(), COMBINE_WINDOW);
        let t0 = Instant::now();
        let heartbeat = Reply::Heartbeat {
            version: PROTOCOL_VERSION,
            task_token: "t1".into(),
        };
        for n in 1..=3u64 {
            assert_eq!(w.reply().await, heartbeat);
            let at = t0.elapsed().as_millis();
            assert!(
                at.abs_diff(u128::from(n * 1000)) <= 10,
                "heartbeat {n} at {at} ms"
            );
        }
        assert_eq!(w.reply().await, succeeded("t1", json!("done")));

        // No HeartbeatSeconds, no heartbeats.
        w.push(task("t2", json!({})));
        assert_eq!(w.reply().await, started("t2"));
        assert_eq!(w.reply().await, succeeded("t2", json!("done")));
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_message_reaches_the_handler_token() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let mut w = start(Worker::builder().activity(
            "test",
            move |ctx: TaskContext, input: Value| {
                let seen_tx = seen_tx.clone();
                async move {
                    if input["wait"] == json!(true) {
                        ctx.cancelled().await;
                        let _ = seen_tx.send("cancelled");
                    }
                    Ok::<_, TaskError>(json!("done"))
                }
            },
        ));
        w.push(task("t1", json!({"wait": true})));
        assert_eq!(w.reply().await, started("t1"));
        w.cancel("t1");
        assert_eq!(seen.recv().await, Some("cancelled"));
        // The engine gave t1 up, so no final reply is sent for it: the next replies are t2's.
        w.push(task("t2", json!({"wait": false})));
        assert_eq!(w.reply().await, finished(succeeded("t2", json!("done"))));
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_the_handler_token() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let mut w = start(Worker::builder().activity(
            "test",
            move |ctx: TaskContext, input: Value| {
                let seen_tx = seen_tx.clone();
                async move {
                    if input["wait"] == json!(true) {
                        ctx.cancelled().await;
                        let _ = seen_tx.send(ctx.time_remaining() == Some(Duration::ZERO));
                    }
                    Ok::<_, TaskError>(json!("done"))
                }
            },
        ));
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        let mut t = task("t1", json!({"wait": true}));
        t.deadline_ms = Some(i64::try_from(now_ms).expect("ms fit") + 2000);
        w.push(t);
        assert_eq!(w.reply().await, started("t1"));
        let t0 = Instant::now();
        assert_eq!(seen.recv().await, Some(true));
        let waited = t0.elapsed().as_millis();
        assert!(
            (1900..=2000).contains(&waited),
            "cancelled after {waited} ms"
        );

        // Without a deadline, TimeoutSeconds counts from receipt.
        let mut t = task("t2", json!({"wait": true}));
        t.timeout_seconds = Some(3);
        w.push(t);
        assert_eq!(w.reply().await, started("t2"));
        let t0 = Instant::now();
        assert_eq!(seen.recv().await, Some(true));
        let waited = t0.elapsed().as_millis();
        assert!(
            (2900..=3000).contains(&waited),
            "cancelled after {waited} ms"
        );
        // Timed-out tasks get no final reply (the engine times them out itself).
        w.push(task("t3", json!({"wait": false})));
        assert_eq!(w.reply().await, finished(succeeded("t3", json!("done"))));
        w.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_cancelled_before_it_starts_is_skipped() {
        let mut w = start(Worker::builder().concurrency(1).activity(
            "test",
            |_ctx: TaskContext, input: Value| async move {
                if input == "slow" {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok::<_, TaskError>(input)
            },
        ));
        w.push(task("t1", json!("slow")));
        assert_eq!(w.reply().await, started("t1"));
        w.push(task("t2", json!("fast")));
        w.cancel("t2");
        w.push(task("t3", json!("fast")));
        assert_eq!(w.reply().await, succeeded("t1", json!("slow")));
        assert_eq!(w.reply().await, finished(succeeded("t3", json!("fast"))));
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_ignoring_cancellation_is_dropped_after_the_cancel_grace() {
        let mut w = start(
            Worker::builder()
                .concurrency(1)
                .cancel_grace(Duration::from_secs(5))
                .activity("test", |_ctx: TaskContext, input: Value| async move {
                    if input == "stubborn" {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, TaskError>(input)
                }),
        );
        w.push(task("t1", json!("stubborn")));
        assert_eq!(w.reply().await, started("t1"));
        w.push(task("t2", json!("fast")));
        let t0 = Instant::now();
        w.cancel("t1");
        assert_eq!(w.reply().await, finished(succeeded("t2", json!("fast"))));
        assert!(t0.elapsed() >= Duration::from_secs(5));
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_limit_is_respected() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (a, b) = (in_flight.clone(), most.clone());
        let mut w = start(Worker::builder().concurrency(2).activity(
            "test",
            move |_ctx: TaskContext, input: Value| {
                let (in_flight, most) = (a.clone(), b.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, TaskError>(input)
                }
            },
        ));
        for n in 0..5 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        let mut finished = 0;
        while finished < 5 {
            if let Reply::Succeeded { .. } = w.reply().await {
                finished += 1;
            }
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        w.stop().await.no_more_replies();
    }

    /// A handler that records how many of its tasks run at once (the most in `most`), and
    /// takes a second of virtual time.
    fn counting(
        most: &Arc<AtomicUsize>,
    ) -> impl Fn(TaskContext, Value) -> HandlerFuture + Send + Sync + 'static {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = most.clone();
        move |_ctx: TaskContext, input: Value| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            Box::pin(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, TaskError>(input)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_activity_limit_holds_while_other_activities_use_the_rest() {
        let (limited, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut w = start(
            Worker::builder()
                .concurrency(4)
                .activity("test", counting(&limited))
                .activity(OTHER, counting(&other))
                // A short name, resolved like the handler's.
                .activity_concurrency("test", 1),
        );
        for n in 0..3 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        for n in 0..3 {
            w.push(other_task(&format!("o{n}"), json!(n)));
        }
        let mut finished = Vec::new();
        while finished.len() < 6 {
            if let Reply::Succeeded { task_token, .. } = w.reply().await {
                finished.push(task_token);
            }
        }
        finished.sort();
        assert_eq!(finished, ["o0", "o1", "o2", "t0", "t1", "t2"]);
        assert_eq!(
            limited.load(Ordering::SeqCst),
            1,
            "the limited activity ran one at a time"
        );
        assert_eq!(
            other.load(Ordering::SeqCst),
            3,
            "the other activity used the slots the limited one could not"
        );
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn a_limited_activity_gets_its_slot_back_however_a_task_ends() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (a, b) = (in_flight.clone(), most.clone());
        let mut w = start(
            Worker::builder()
                .concurrency(4)
                .cancel_grace(Duration::from_secs(5))
                .activity("test", move |_ctx: TaskContext, input: Value| {
                    let (in_flight, most) = (a.clone(), b.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Counted out before the outcome (a panic or a drop skips the rest).
                        let _out = scopeguard(in_flight);
                        if input == "stubborn" {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match input.as_str() {
                            Some("panic") => panic!("the handler blew up"),
                            Some("fail") => Err(TaskError::new("Test.Failed", "no")),
                            _ => Ok(input),
                        }
                    }
                })
                .activity_concurrency("test", 1),
        );
        // t1 holds the only slot and ignores its cancellation: dropped after the grace.
        w.push(task("t1", json!("stubborn")));
        assert_eq!(w.reply().await, started("t1"));
        // t2 is cancelled before it starts: skipped when its turn comes.
        w.push(task("t2", json!("ok")));
        w.cancel("t2");
        for (token, input) in [("t3", "panic"), ("t4", "fail"), ("t5", "ok")] {
            w.push(task(token, json!(input)));
        }
        w.cancel("t1");
        let mut replies = Vec::new();
        for _ in 0..6 {
            replies.push(w.reply().await);
        }
        // One at a time, in order: each way a task ended gave the slot back to the next.
        let tokens: Vec<&str> = replies.iter().map(Reply::task_token).collect();
        assert_eq!(tokens, ["t3", "t3", "t4", "t4", "t5", "t5"]);
        assert!(matches!(&replies[1], Reply::Failed { error: Some(e), .. } if e == TASK_FAILED));
        assert_eq!(replies[3], failed("t4", "Test.Failed", "no"));
        assert_eq!(replies[5], succeeded("t5", json!("ok")));
        assert_eq!(most.load(Ordering::SeqCst), 1);
        w.stop().await.no_more_replies();
    }

    /// Decrements the counter when dropped.
    fn scopeguard(counter: Arc<AtomicUsize>) -> impl Drop {
        struct Out(Arc<AtomicUsize>);
        impl Drop for Out {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Out(counter)
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_limit_still_bounds_an_activity_with_a_higher_one() {
        let most = Arc::new(AtomicUsize::new(0));
        let mut w = start(
            Worker::builder()
                .concurrency(1)
                .activity("test", counting(&most))
                .activity_concurrency("test", 3),
        );
        for n in 0..3 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        let mut finished = 0;
        while finished < 3 {
            if let Reply::Succeeded { .. } = w.reply().await {
                finished += 1;
            }
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_activity_does_not_starve_the_others() {
        let echo = |_ctx: TaskContext, input: Value| async move { Ok::<_, TaskError>(input) };
        let mut w = start(
            Worker::builder()
                .concurrency(1)
                .activity("test", echo)
                .activity(OTHER, echo),
        );
        // `other` is looked at first (the queues are in ARN order) and is always busy.
        for n in 0..3 {
            w.push(other_task(&format!("o{n}"), json!(n)));
        }
        w.push(task("t0", json!(0)));
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(w.reply().await.task_token().to_string());
        }
        assert_eq!(order, ["o0", "t0", "o1", "o2"], "served in turn");
        w.stop().await.no_more_replies();
    }

    #[test]
    #[should_panic(expected = "which no handler serves")]
    fn a_limit_for_an_activity_nobody_serves_is_refused() {
        let _ = Worker::builder()
            .activity("test", charge)
            .activity_concurrency("tset", 2)
            .build(InProcessHub::new());
    }

    #[test]
    #[should_panic(expected = "which no handler serves")]
    fn a_rate_limit_for_an_activity_nobody_serves_is_refused() {
        let _ = Worker::builder()
            .activity("test", charge)
            .activity_rate_limit("tset", 2.0)
            .build(InProcessHub::new());
    }

    #[test]
    #[should_panic(expected = "may wait 2000 s for its turn")]
    fn a_limit_that_holds_tasks_past_the_consumer_timeout_is_refused() {
        let _ = Worker::builder()
            .activity("test", charge)
            .activity_concurrency("test", 10)
            .activity_rate_limit("test", 0.005)
            .build(InProcessHub::new());
    }

    #[test]
    fn a_rate_must_be_a_number_of_at_least_one_every_ten_minutes() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1.0 / 3600.0] {
            let built = std::panic::catch_unwind(|| {
                Worker::builder()
                    .activity("test", charge)
                    .activity_rate_limit("test", rate)
                    .build(InProcessHub::new())
            });
            let message = built.err().and_then(|p| p.downcast::<String>().ok());
            assert!(
                message.is_some_and(|m| m.contains("one every ten minutes")),
                "rate {rate} was accepted"
            );
        }
    }

    /// Records when each task started (virtual time).
    fn stamping(
        starts: &Arc<Mutex<Vec<(String, Instant)>>>,
    ) -> impl Fn(TaskContext, Value) -> HandlerFuture + Send + Sync + 'static {
        let starts = starts.clone();
        move |ctx: TaskContext, input: Value| {
            starts
                .lock()
                .expect("starts")
                .push((ctx.task_token().to_string(), Instant::now()));
            Box::pin(async move { Ok::<_, TaskError>(input) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_activity_starts_its_tasks_evenly_while_others_go_by() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut w = start(
            Worker::builder()
                .concurrency(4)
                .activity("test", stamping(&starts))
                .activity(OTHER, stamping(&starts))
                .activity_rate_limit("test", 2.0),
        );
        let t0 = Instant::now();
        for n in 0..4 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        for n in 0..2 {
            w.push(other_task(&format!("o{n}"), json!(n)));
        }
        for _ in 0..6 {
            assert!(matches!(w.reply().await, Reply::Finished { .. }));
        }
        let starts = starts.lock().expect("starts").clone();
        let at = |token: &str| {
            starts
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, at)| (*at - t0).as_millis())
                .unwrap_or_else(|| panic!("{token} never started: {starts:?}"))
        };
        // Two a second, one every 500 ms, the first at once.
        assert_eq!(
            ["t0", "t1", "t2", "t3"].map(at),
            [0, 500, 1000, 1500],
            "{starts:?}"
        );
        assert_eq!(
            ["o0", "o1"].map(at),
            [0, 0],
            "the other activity waits for nothing"
        );
        w.stop().await.no_more_replies();
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_task_waits_in_the_hub_for_its_turn() {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut w = start(
            Worker::builder()
                .activity("test", stamping(&starts))
                .activity_rate_limit("test", 1.0),
        );
        for n in 0..3 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        assert!(matches!(w.reply().await, Reply::Finished { .. }));
        assert_eq!(
            w.hub.queued(&task_queue(ARN)),
            2,
            "the others wait in the hub, not in the worker"
        );
        let w = w.stop().await;
        assert_eq!(w.hub.queued(&task_queue(ARN)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_finishes_in_flight_tasks_and_leaves_the_rest_queued() {
        let mut w = start(Worker::builder().concurrency(2).activity(
            "test",
            |_ctx: TaskContext, input: Value| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, TaskError>(input)
            },
        ));
        for n in 0..4 {
            w.push(task(&format!("t{n}"), json!(n)));
        }
        assert_eq!(w.reply().await, started("t0"));
        assert_eq!(w.reply().await, started("t1"));
        w.shutdown.cancel();
        let mut done = vec![w.reply().await, w.reply().await];
        done.sort_by_key(|r| r.task_token().to_string());
        assert_eq!(
            done,
            vec![succeeded("t0", json!(0)), succeeded("t1", json!(1))]
        );
        let mut w = w.stop().await;
        w.no_more_replies();
        assert_eq!(w.hub.queued(&task_queue(ARN)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_grace_period_running_tasks_are_cancelled_and_handed_back() {
        let (tokens_tx, mut tokens) = mpsc::unbounded_channel();
        let mut w = start(
            Worker::builder()
                .shutdown_grace(Duration::from_secs(1))
                .activity("test", move |ctx: TaskContext, _input: Value| {
                    let tokens_tx = tokens_tx.clone();
                    async move {
                        let _ = tokens_tx.send(ctx.cancellation_token().clone());
                        std::future::pending::<()>().await;
                        Ok::<_, TaskError>(Value::Null)
                    }
                }),
        );
        w.push(task("t1", json!({})));
        assert_eq!(w.reply().await, started("t1"));
        let token = tokens.recv().await.expect("handler ran");
        let t0 = Instant::now();
        let mut w = w.stop().await;
        assert!(t0.elapsed() >= Duration::from_secs(1));
        assert!(token.is_cancelled());
        w.no_more_replies();
        assert_eq!(w.hub.queued(&task_queue(ARN)), 1);
        let back = w
            .hub
            .try_take_task(&[task_queue(ARN)])
            .expect("handed back");
        assert_eq!(back.task_token, "t1");
    }

    #[tokio::test]
    async fn short_names_become_activity_arns() {
        async fn noop(_ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
            Ok(Value::Null)
        }
        let worker = Worker::builder()
            .activity("a", noop)
            .region("eu-west-1")
            .account("222222222222")
            .activity("arn:aws:states:us-east-1:1:activity:b", noop)
            .build(InProcessHub::new());
        assert_eq!(
            worker.activity_arns(),
            vec![
                "arn:aws:states:eu-west-1:222222222222:activity:a".to_string(),
                "arn:aws:states:us-east-1:1:activity:b".to_string(),
            ]
        );
        let empty = Worker::builder().build(InProcessHub::new());
        assert_eq!(empty.run().await, Err(WorkerError::NoActivities));
    }

    #[tokio::test]
    async fn a_detached_context_lets_handlers_be_unit_tested() {
        let ctx = TaskContext::detached("t");
        let receipt = charge(ctx.clone(), Charge { cents: 7 }).await.expect("ok");
        assert_eq!(receipt.charged, 7);
        ctx.heartbeat().await.expect("heartbeat goes nowhere");
        assert!(!ctx.is_cancelled());
    }
}
