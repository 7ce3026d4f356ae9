//! Shared wiring of the runnable examples (`cargo run -p stepline-examples --bin <name>`).
//!
//! Every example is one binary that runs in one of two modes, chosen by [`StackArgs`]:
//!
//! * **embedded** (the default): a [`MemoryStore`], a [`MemoryBroker`] and SDK workers on the
//!   broker's [`InProcessHub`], all in this process, on the wall clock. Needs no servers.
//! * **servers** (`--amqp-url URL --redis-url URL`, or `STEPLINE_AMQP_URL` and
//!   `STEPLINE_REDIS_URL`): executions, history and timers in Redis ([`RedisStore`]), tasks,
//!   replies and callbacks through RabbitMQ ([`AmqpBroker`]), workers speaking AMQP
//!   ([`AmqpTransport`]) — the code paths of a deployment, with the coordinator and the workers
//!   sharing one process only for convenience. Each run uses its own namespace (Redis key
//!   prefix and RabbitMQ name prefix `stepline-examples-<example>-<pid>`) and deletes it at the
//!   end.
//!
//! An example implements [`Example`] once, generically over the store and broker; [`main`]
//! builds the chosen [`Stack`], runs the example, stops everything and turns the outcome into
//! the exit code. Examples narrate as they go ([`say`]), then walk each execution's history
//! ([`Finished::print`], [`print_history`]: states entered and exited with their time, task
//! attempts, retries, failures, Map iterations and Parallel branches indented under their
//! state) and state what they expect ([`Checks`]): a process whose outcome is not the expected
//! one exits with status 1 (2 when it could not run at all, e.g. a server is unreachable).

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stepline_engine::asl::StateMachineType;
use stepline_engine::history::{EventKind, HistoryEvent};
use stepline_engine::interp::ExecutionStatus;
use stepline_engine::runtime::broker::Broker;
use stepline_engine::runtime::broker_amqp::{AmqpBroker, AmqpConfig};
use stepline_engine::runtime::broker_memory::MemoryBroker;
use stepline_engine::runtime::clock::{Clock, SystemClock};
use stepline_engine::runtime::coordinator::CoordinatorConfig;
use stepline_engine::runtime::service::Service;
use stepline_engine::runtime::store::Store;
use stepline_engine::runtime::store_memory::MemoryStore;
use stepline_engine::runtime::store_redis::RedisStore;
use stepline_engine::timestamp::format_millis;
use stepline_worker::protocol::{Reply, PROTOCOL_VERSION};
use stepline_worker::{
    AmqpTransport, InProcessHub, TaskTokenClient, Transport, WorkerBuilder, WorkerError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long an example waits for one execution before calling it stuck.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(20);

/// How long finished executions are kept (they are deleted with the namespace anyway).
const RETENTION: Duration = Duration::from_secs(3600);

/// Where the example runs; both URLs together select the servers mode.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StackArgs {
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (with --redis-url: run against
    /// the servers instead of embedded).
    #[arg(long, env = "STEPLINE_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379 (with --amqp-url: run against the servers).
    #[arg(long, env = "STEPLINE_REDIS_URL")]
    pub redis_url: Option<String>,
}

/// One runnable scenario, written once for both stacks.
pub trait Example {
    /// The binary's name; also names the servers-mode namespace.
    const NAME: &'static str;

    /// Creates its activities and state machines, starts workers, runs executions, prints
    /// what happened and records what it expects in `checks`. `Err` means the example could
    /// not run (an API call failed), not that an outcome was unexpected.
    fn run<S: Store, B: Broker>(
        &self,
        stack: &Stack<S, B>,
        checks: &mut Checks,
    ) -> impl Future<Output = Result<()>>;
}

/// Runs `example` on the stack `args` selects; the process's exit code: 0 when every
/// expectation held, 1 when one did not, 2 when the example could not run.
pub async fn main<E: Example>(example: &E, args: &StackArgs) -> ExitCode {
    init_tracing();
    let ran = match (&args.amqp_url, &args.redis_url) {
        (None, None) => run_embedded(example).await,
        (Some(amqp), Some(redis)) => run_on_servers(example, amqp, redis).await,
        _ => Err(anyhow!(
            "give both --amqp-url and --redis-url (or STEPLINE_AMQP_URL and STEPLINE_REDIS_URL) \
             to run against the servers, or neither to run embedded"
        )),
    };
    match ran {
        Ok(checks) => checks.exit_code(),
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Library logs go to stderr at `warn` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second initialisation (never done here) would only fail to replace the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The coordinator settings of the examples: the defaults (8 partitions, account
/// 111111111111, region us-east-1, the development token key) with a shorter timer poll, so
/// retries and timeouts visibly fire on time.
pub fn coordinator_config() -> CoordinatorConfig {
    CoordinatorConfig {
        timer_poll_ms: 50,
        ..CoordinatorConfig::default()
    }
}

async fn run_embedded<E: Example>(example: &E) -> Result<Checks> {
    let config = coordinator_config();
    let hub = InProcessHub::new();
    let broker = Arc::new(MemoryBroker::new(
        hub.clone(),
        config.token_key.clone(),
        config.partitions,
    ));
    let store = Arc::new(MemoryStore::with_system_clock(RETENTION));
    banner(
        E::NAME,
        "embedded — memory store, memory broker, in-process workers (pass --amqp-url and \
         --redis-url to use RabbitMQ and Redis)",
    );
    let stack = Stack {
        service: Service::start(store, broker, Arc::new(SystemClock), config),
        transport: Box::new(move || Transport::from(hub.clone())),
        callbacks: Callbacks::Service,
        workers: Mutex::new(Vec::new()),
    };
    let mut checks = Checks::default();
    let ran = run_interruptibly(example, &stack, &mut checks).await;
    stack.stop().await;
    ran.map(|()| checks)
}

async fn run_on_servers<E: Example>(example: &E, amqp: &str, redis: &str) -> Result<Checks> {
    let config = coordinator_config();
    let namespace = format!("stepline-examples-{}-{}", E::NAME, std::process::id());
    let store = RedisStore::connect(redis, &format!("{namespace}:"), RETENTION)
        .await
        .with_context(|| format!("Redis must be running at {}", redact(redis)))?
        .with_partitions(config.partitions);
    let broker = AmqpBroker::connect(AmqpConfig {
        connection_name: format!("stepline-examples {}", E::NAME),
        ..AmqpConfig::new(amqp)
            .with_namespace(namespace.clone())
            // Fail within seconds when RabbitMQ is not there (each connect attempt also
            // makes `reconnect_attempts` TCP attempts; the defaults take minutes).
            .with_connect_attempts(2)
            .with_reconnect_attempts(2)
            // Callbacks sent with the SDK's TaskTokenClient arrive on the callback queue.
            .with_callback_routing(config.token_key.clone(), config.partitions)
    })
    .await
    .with_context(|| format!("RabbitMQ must be running at {}", redact(amqp)))?;
    let (store, broker) = (Arc::new(store), Arc::new(broker));
    banner(
        E::NAME,
        &format!(
            "servers — Redis at {}, RabbitMQ at {}, workers over AMQP; namespace {namespace}",
            redact(redis),
            redact(amqp)
        ),
    );
    let transport = AmqpTransport::new(amqp).namespace(&namespace);
    let for_workers = transport.clone();
    let stack = Stack {
        service: Service::start(store.clone(), broker.clone(), Arc::new(SystemClock), config),
        transport: Box::new(move || Transport::from(for_workers.clone())),
        callbacks: Callbacks::Client {
            transport,
            client: tokio::sync::OnceCell::new(),
        },
        workers: Mutex::new(Vec::new()),
    };
    let mut checks = Checks::default();
    let ran = run_interruptibly(example, &stack, &mut checks).await;
    stack.stop().await;
    // Leave nothing behind: the namespace's Redis keys, queues and exchanges.
    if let Err(e) = store.purge_namespace().await {
        eprintln!("warning: could not delete the Redis keys {namespace}:*: {e}");
    }
    if let Err(e) = broker.delete_namespace().await {
        eprintln!("warning: could not delete the RabbitMQ namespace {namespace}: {e}");
    }
    ran.map(|()| checks)
}

/// Runs the example until it ends or Ctrl-C, so the stack is always stopped (and the servers'
/// namespace deleted).
async fn run_interruptibly<E: Example, S: Store, B: Broker>(
    example: &E,
    stack: &Stack<S, B>,
    checks: &mut Checks,
) -> Result<()> {
    tokio::select! {
        ran = example.run(stack, checks) => ran,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    }
}

fn banner(name: &str, mode: &str) {
    println!("=== Stepline example `{name}`");
    println!("    mode: {mode}\n");
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user_info, host)) if user_info.contains(':') => {
                let user = user_info.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// How callbacks (`SendTaskSuccess`, `SendTaskHeartbeat`) reach the engine.
enum Callbacks {
    /// Embedded: straight through the service API.
    Service,
    /// Servers: the worker SDK's `TaskTokenClient` over RabbitMQ (connected on first use).
    Client {
        transport: AmqpTransport,
        client: tokio::sync::OnceCell<TaskTokenClient>,
    },
}

/// A started worker: its shutdown handle and its task.
struct RunningWorker {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), WorkerError>>,
}

/// A running engine (one coordinator behind the service API) plus how workers reach it.
pub struct Stack<S: Store, B: Broker> {
    service: Service<S, B, SystemClock>,
    transport: Box<dyn Fn() -> Transport + Send + Sync>,
    callbacks: Callbacks,
    workers: Mutex<Vec<RunningWorker>>,
}

impl<S: Store, B: Broker> Stack<S, B> {
    /// The service API (create, start, wait, history, callbacks).
    pub fn service(&self) -> &Service<S, B, SystemClock> {
        &self.service
    }

    /// `arn:aws:states:us-east-1:111111111111:activity:<name>` (the coordinator's region and
    /// account, which are also the worker SDK's defaults for short names).
    pub fn activity_arn(&self, name: &str) -> String {
        let c = self.service.coordinator().config();
        format!("arn:aws:states:{}:{}:activity:{name}", c.region, c.account)
    }

    /// Creates (idempotently) an activity; returns its ARN.
    pub async fn create_activity(&self, name: &str) -> Result<String> {
        let arn = self
            .service
            .create_activity(name)
            .await
            .with_context(|| format!("creating activity {name}"))?
            .arn;
        say("setup", format!("activity {arn}"));
        Ok(arn)
    }

    /// Validates and stores a STANDARD state machine; returns its ARN.
    pub async fn create_state_machine(&self, name: &str, definition: &str) -> Result<String> {
        let arn = self
            .service
            .create_state_machine(name, definition, StateMachineType::Standard, None)
            .await
            .with_context(|| format!("creating state machine {name}"))?
            .arn;
        say("setup", format!("state machine {arn}"));
        Ok(arn)
    }

    /// Starts a worker on this stack's transport (in-process hub or AMQP). It runs until the
    /// stack stops; `builder` should name it (`.name(…)`) for the history's `workerName`.
    pub fn spawn_worker(&self, name: &str, builder: WorkerBuilder) {
        let worker = builder
            .name(name)
            .handle_signals(false)
            .shutdown_grace(Duration::from_secs(2))
            .cancel_grace(Duration::from_secs(2))
            .build((self.transport)());
        say(
            "setup",
            format!("worker {name} serves {:?}", worker.activity_arns()),
        );
        let stop = worker.shutdown_handle();
        let task = tokio::spawn(worker.run());
        lock(&self.workers).push(RunningWorker {
            name: name.to_string(),
            stop,
            task,
        });
    }

    /// Starts an execution named `name`; returns its ARN.
    pub async fn start(&self, state_machine_arn: &str, name: &str, input: Value) -> Result<String> {
        say(
            "client",
            format!(
                "starting execution {name} with input {}",
                compact(&input, 100)
            ),
        );
        self.service
            .start_execution(state_machine_arn, Some(name.to_string()), input)
            .await
            .with_context(|| format!("starting execution {name}"))
    }

    /// Waits (at most [`EXECUTION_TIMEOUT`]) for an execution to finish; returns its outcome
    /// and full history.
    pub async fn finish(&self, execution_arn: &str) -> Result<Finished> {
        let record = self
            .service
            .wait(execution_arn, EXECUTION_TIMEOUT)
            .await
            .with_context(|| format!("waiting for {execution_arn}"))?;
        if record.status == ExecutionStatus::Running {
            bail!("{execution_arn} did not finish within {EXECUTION_TIMEOUT:?}");
        }
        let history = self
            .service
            .history(execution_arn)
            .await
            .with_context(|| format!("reading the history of {execution_arn}"))?;
        say(
            "client",
            format!(
                "execution {} finished: {}",
                record.name,
                record.status.as_str()
            ),
        );
        Ok(Finished {
            name: record.name,
            status: record.status,
            output: record.output,
            error: record.error,
            cause: record.cause,
            history,
        })
    }

    /// [`Stack::start`] then [`Stack::finish`].
    pub async fn run_execution(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: Value,
    ) -> Result<Finished> {
        let arn = self.start(state_machine_arn, name, input).await?;
        self.finish(&arn).await
    }

    /// How callbacks travel in this mode (for the narration).
    pub fn callback_route(&self) -> &'static str {
        match self.callbacks {
            Callbacks::Service => "Service::send_task_success",
            Callbacks::Client { .. } => "TaskTokenClient over RabbitMQ",
        }
    }

    /// `SendTaskSuccess`: embedded through [`Service::send_task_success`], on the servers
    /// through the SDK's [`TaskTokenClient`] (RabbitMQ callback queue).
    pub async fn send_task_success(&self, task_token: &str, output: Value) -> Result<()> {
        match &self.callbacks {
            Callbacks::Service => self
                .service
                .send_task_success(task_token, output)
                .await
                .context("send_task_success"),
            Callbacks::Client { .. } => self
                .client()
                .await?
                .send_success(task_token, &output)
                .await
                .context("TaskTokenClient::send_success"),
        }
    }

    /// `SendTaskHeartbeat`, by the same route as [`Stack::send_task_success`].
    pub async fn send_task_heartbeat(&self, task_token: &str) -> Result<()> {
        match &self.callbacks {
            Callbacks::Service => self
                .service
                .send_task_reply(Reply::Heartbeat {
                    version: PROTOCOL_VERSION,
                    task_token: task_token.to_string(),
                })
                .await
                .context("send_task_reply(Heartbeat)"),
            Callbacks::Client { .. } => self
                .client()
                .await?
                .send_heartbeat(task_token)
                .await
                .context("TaskTokenClient::send_heartbeat"),
        }
    }

    async fn client(&self) -> Result<&TaskTokenClient> {
        let Callbacks::Client { transport, client } = &self.callbacks else {
            bail!("no task token client in embedded mode");
        };
        client
            .get_or_try_init(|| TaskTokenClient::amqp(transport.clone()))
            .await
            .context("connecting the TaskTokenClient")
    }

    /// Stops the workers (letting in-flight tasks finish) and the coordinator.
    async fn stop(self) {
        let workers = std::mem::take(&mut *lock(&self.workers));
        for w in &workers {
            w.stop.cancel();
        }
        for w in workers {
            match w.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("warning: worker {} ended with: {e}", w.name),
                Err(e) => eprintln!("warning: worker {} crashed: {e}", w.name),
            }
        }
        self.service.shutdown().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The list is only pushed to and taken; a poisoned lock leaves it consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The end of one execution: its status, result and history.
#[derive(Debug, Clone)]
pub struct Finished {
    pub name: String,
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub history: Vec<HistoryEvent>,
}

impl Finished {
    /// From an in-process, virtual-time run (`stepline_engine::runner`).
    pub fn from_outcome(name: &str, o: stepline_engine::runner::Outcome) -> Finished {
        Finished {
            name: name.to_string(),
            status: o.status,
            output: o.output,
            error: o.error,
            cause: o.cause,
            history: o.history,
        }
    }

    /// How many events of this AWS type (`ActivityFailed`, `MapIterationFailed`, …).
    pub fn count(&self, event_type: &str) -> usize {
        self.history
            .iter()
            .filter(|e| e.kind.type_name() == event_type)
            .count()
    }

    /// Whether the execution entered state `name`.
    pub fn entered(&self, name: &str) -> bool {
        self.history
            .iter()
            .any(|e| matches!(&e.kind, EventKind::StateEntered { name: n, .. } if &**n == name))
    }

    /// The output value at `pointer` (`/payment/chargeId`), if any.
    pub fn output_at(&self, pointer: &str) -> Option<&Value> {
        self.output.as_ref().and_then(|o| o.pointer(pointer))
    }

    /// The Map iterations that failed, each with the last task failure or timeout inside it
    /// (found by following the iteration's chain of events), in history order.
    pub fn failed_iterations(&self) -> Vec<FailedIteration> {
        let traces = trace(&self.history);
        let mut out = Vec::new();
        for (at, e) in self.history.iter().enumerate() {
            let EventKind::MapIteration {
                status,
                name,
                index,
            } = &e.kind
            else {
                continue;
            };
            if status != "Failed" {
                continue;
            }
            let why = self.history[..at]
                .iter()
                .zip(&traces[..at])
                .rev()
                .filter(|(e, t)| t.item == Some(*index) && !is_container_event(&e.kind))
                .find_map(|(e, _)| match &e.kind {
                    EventKind::ActivityFailed { error, cause }
                    | EventKind::ActivityTimedOut { error, cause }
                    | EventKind::TaskFailed { error, cause, .. }
                    | EventKind::TaskTimedOut { error, cause, .. } => {
                        Some((error.clone(), cause.clone()))
                    }
                    _ => None,
                });
            let (error, cause) = why.unwrap_or((None, None));
            out.push(FailedIteration {
                map_state: name.to_string(),
                index: *index,
                error,
                cause,
            });
        }
        out
    }

    /// Prints the history walk, then the final status and output (or error and cause).
    pub fn print(&self) {
        println!(
            "\n--- history of execution {} ({} events)",
            self.name,
            self.history.len()
        );
        print_history(&self.history);
        match self.status {
            ExecutionStatus::Succeeded => println!(
                "--- {}: SUCCEEDED, output {}\n",
                self.name,
                compact(self.output.as_ref().unwrap_or(&Value::Null), 400)
            ),
            status => println!(
                "--- {}: {}, error {} ({})\n",
                self.name,
                status.as_str(),
                self.error.as_deref().unwrap_or("-"),
                self.cause.as_deref().unwrap_or("no cause")
            ),
        }
    }
}

/// A Map iteration that failed (`MapIterationFailed`) and, when a task failed it, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedIteration {
    /// The Map state's name.
    pub map_state: String,
    /// The item's index in the Map's input array.
    pub index: usize,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// What an event belongs to, worked out by following `previousEventId` (each running branch
/// and Map iteration has its own chain of events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The state the event happened in.
    pub state: Option<Arc<str>>,
    /// Nesting: 0 for the top level, +1 inside each Parallel branch or Map iteration.
    pub depth: usize,
    /// The task attempt (1 first, +1 per retry) of task events; 0 before the first.
    pub attempt: u32,
    /// The Map iteration (item index) the event belongs to.
    pub item: Option<usize>,
    /// The event starts child chains (a Parallel's start, a Map iteration's start).
    opens: bool,
}

fn is_container(state_type: &str) -> bool {
    state_type == "Parallel" || state_type == "Map"
}

/// Events of a Parallel or Map state itself (not of its branches or iterations).
fn is_container_event(kind: &EventKind) -> bool {
    match kind {
        EventKind::MapStateStarted { .. }
        | EventKind::MapIteration { .. }
        | EventKind::MapRunStarted { .. }
        | EventKind::MapRunFailed { .. } => true,
        EventKind::Plain { event_type } => {
            event_type.starts_with("Parallel") || event_type.starts_with("Map")
        }
        EventKind::StateExited { state_type, .. } | EventKind::StateAborted { state_type } => {
            is_container(state_type)
        }
        _ => false,
    }
}

/// One [`Trace`] per event, in history order.
pub fn trace(history: &[HistoryEvent]) -> Vec<Trace> {
    let mut by_id: HashMap<u64, Trace> = HashMap::new();
    // Depths of the Parallel/Map states currently open, innermost last.
    let mut containers: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(history.len());
    for e in history {
        let prev = by_id.get(&e.previous_event_id).cloned().unwrap_or_default();
        let mut t = Trace {
            opens: false,
            ..prev.clone()
        };
        match &e.kind {
            EventKind::StateEntered {
                state_type, name, ..
            } => {
                t.depth = if prev.opens {
                    prev.depth + 1
                } else {
                    prev.depth
                };
                t.state = Some(name.clone());
                t.attempt = 0;
                if is_container(state_type) {
                    containers.push(t.depth);
                }
            }
            EventKind::ActivityScheduled { .. } | EventKind::TaskScheduled { .. } => {
                t.attempt = prev.attempt + 1;
            }
            EventKind::ExecutionStarted { .. }
            | EventKind::ExecutionSucceeded { .. }
            | EventKind::ExecutionFailed { .. }
            | EventKind::ExecutionAborted { .. }
            | EventKind::ExecutionTimedOut { .. } => {
                // The execution's own events, wherever their chain comes from.
                t = Trace::default();
                containers.clear();
            }
            kind if is_container_event(kind) => {
                t.depth = containers.last().copied().unwrap_or(prev.depth);
                match kind {
                    EventKind::MapIteration { status, index, .. } => {
                        t.item = Some(*index);
                        t.opens = status == "Started";
                    }
                    EventKind::Plain { event_type } => {
                        t.opens = event_type == "ParallelStateStarted";
                    }
                    EventKind::StateExited { name, .. } => {
                        containers.pop();
                        t.state = Some(name.clone());
                        t.item = None;
                    }
                    EventKind::StateAborted { .. } => {
                        containers.pop();
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        by_id.insert(e.id, t.clone());
        out.push(t);
    }
    out
}

/// Prints one line per event: wall-clock time (UTC), seconds since the execution started,
/// and what happened, indented under its Parallel branch or Map iteration.
pub fn print_history(history: &[HistoryEvent]) {
    let Some(first) = history.first() else {
        println!("  (no events)");
        return;
    };
    for (e, t) in history.iter().zip(trace(history)) {
        let offset = format!(
            "+{:.3}s",
            (e.timestamp_ms - first.timestamp_ms) as f64 / 1000.0
        );
        let indent = "    ".repeat(t.depth);
        let item = match (t.item, is_container_event(&e.kind)) {
            (Some(i), false) => format!("[item {i}] "),
            _ => String::new(),
        };
        println!(
            "  {}  {offset:>8}  {indent}{item}{}",
            clock(e.timestamp_ms),
            describe(&e.kind, &t)
        );
    }
}

fn error_text(error: &Option<String>, cause: &Option<String>) -> String {
    match (error, cause) {
        (Some(e), Some(c)) => format!("{e}: {c}"),
        (Some(e), None) => e.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => "(no error name)".into(),
    }
}

fn limits(timeout: &Option<u64>, heartbeat: &Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(t) = timeout {
        parts.push(format!("TimeoutSeconds {t}"));
    }
    if let Some(h) = heartbeat {
        parts.push(format!("HeartbeatSeconds {h}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", {}", parts.join(", "))
    }
}

fn attempt_text(attempt: u32) -> String {
    if attempt > 1 {
        format!("attempt {attempt}, a retry")
    } else {
        format!("attempt {attempt}")
    }
}

/// The last `:`-separated part of an activity ARN (its name).
fn short_activity(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

fn describe(kind: &EventKind, t: &Trace) -> String {
    let state = t.state.as_deref().unwrap_or("?");
    match kind {
        EventKind::ExecutionStarted { input, .. } => {
            format!("ExecutionStarted   input {}", compact(input, 90))
        }
        EventKind::ExecutionSucceeded { .. } => "ExecutionSucceeded".into(),
        EventKind::ExecutionFailed { error, cause } => {
            format!("ExecutionFailed    {}", error_text(error, cause))
        }
        EventKind::ExecutionAborted { error, cause } => {
            format!("ExecutionAborted   {}", error_text(error, cause))
        }
        EventKind::ExecutionTimedOut { error, cause } => {
            format!("ExecutionTimedOut  {}", error_text(error, cause))
        }
        EventKind::ExecutionRedriven { redrive_count } => {
            format!("ExecutionRedriven  redrive #{redrive_count}")
        }
        EventKind::StateEntered {
            state_type, name, ..
        } => format!("→ enter {name} ({state_type})"),
        EventKind::StateExited { name, output, .. } => {
            format!("← exit  {name}  output {}", compact(output, 70))
        }
        EventKind::StateAborted { state_type } => format!("{state_type}StateAborted"),
        EventKind::ActivityScheduled {
            resource,
            timeout_seconds,
            heartbeat_seconds,
            ..
        } => format!(
            "  ActivityScheduled  {} for {state} ({}{})",
            short_activity(resource),
            attempt_text(t.attempt),
            limits(timeout_seconds, heartbeat_seconds)
        ),
        EventKind::ActivityStarted { worker_name } => {
            format!("  ActivityStarted    picked up by worker {worker_name}")
        }
        EventKind::ActivitySucceeded { output } => {
            format!("  ActivitySucceeded  result {}", compact(output, 70))
        }
        EventKind::ActivityFailed { error, cause } => {
            format!("  ActivityFailed     {}", error_text(error, cause))
        }
        EventKind::ActivityTimedOut { error, cause } => {
            format!("  ActivityTimedOut   {}", error_text(error, cause))
        }
        EventKind::ActivityScheduleFailed { error, cause } => {
            format!("  ActivityScheduleFailed {}", error_text(error, cause))
        }
        EventKind::TaskScheduled {
            resource_type,
            resource,
            timeout_seconds,
            heartbeat_seconds,
            ..
        } => format!(
            "  TaskScheduled      {resource_type}:{resource} for {state} ({}{})",
            attempt_text(t.attempt),
            limits(timeout_seconds, heartbeat_seconds)
        ),
        EventKind::TaskStarted { .. } => "  TaskStarted".into(),
        EventKind::TaskSucceeded { output, .. } => {
            format!("  TaskSucceeded      result {}", compact(output, 70))
        }
        EventKind::TaskFailed { error, cause, .. } => {
            format!("  TaskFailed         {}", error_text(error, cause))
        }
        EventKind::TaskTimedOut { error, cause, .. } => {
            format!("  TaskTimedOut       {}", error_text(error, cause))
        }
        EventKind::MapStateStarted { length } => format!("  MapStateStarted    {length} items"),
        EventKind::MapIteration { status, index, .. } => {
            format!("  MapIteration{status:<9} item {index}")
        }
        EventKind::MapRunStarted { map_run_arn } => format!("  MapRunStarted      {map_run_arn}"),
        EventKind::MapRunFailed { error, cause } => {
            format!("  MapRunFailed       {}", error_text(error, cause))
        }
        EventKind::Plain { event_type } => format!("  {event_type}"),
        EventKind::EvaluationFailed {
            error,
            cause,
            state,
            ..
        } => format!("  EvaluationFailed in {state}: {error}: {cause}"),
    }
}

/// JSON on one line, cut at `max` characters.
pub fn compact(v: &Value, max: usize) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// `HH:MM:SS.mmm` (UTC) of epoch milliseconds.
pub fn clock(ms: i64) -> String {
    let full = format_millis(ms);
    full.get(11..23).map_or(full.clone(), str::to_string)
}

/// Prints a live narration line: the current time, who speaks, what happened.
pub fn say(who: &str, what: impl Display) {
    println!("  {}  [{who}] {what}", clock(SystemClock.now_ms()));
}

/// The expected outcomes of an example, printed as they are checked.
#[derive(Debug, Default)]
pub struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    /// Records (and prints) one expectation.
    pub fn expect(&mut self, ok: bool, what: impl Display) {
        if ok {
            self.passed += 1;
            println!("  ✔ {what}");
        } else {
            println!("  ✘ {what}");
            self.failed.push(what.to_string());
        }
    }

    /// Whether every expectation so far held.
    pub fn all_passed(&self) -> bool {
        self.failed.is_empty()
    }

    /// Prints the summary; 0 when every expectation held, else 1.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed.is_empty() {
            println!(
                "\n=== all {} expectations met: the engine behaved as described",
                self.passed
            );
            ExitCode::SUCCESS
        } else {
            println!(
                "\n=== {} of {} expectations NOT met:",
                self.failed.len(),
                self.passed + self.failed.len()
            );
            for f in &self.failed {
                println!("    ✘ {f}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_cuts_long_values() {
        assert_eq!(compact(&json!({"a": 1}), 20), r#"{"a":1}"#);
        assert_eq!(compact(&json!("abcdefghij"), 6), "\"abcd…");
    }

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn clock_shows_time_of_day() {
        assert_eq!(clock(1_700_000_000_123), "22:13:20.123");
    }
}
