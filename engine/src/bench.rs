//! `stepline bench`: how fast the runtime is on real servers, next to what RabbitMQ alone can
//! do on the same machine, measured in one process and one run.
//!
//! 1. **Broker ceiling** (lapin directly, no Stepline code in the path): a task queue and a
//!    reply queue declared exactly as the runtime declares its queues (durable, with the
//!    topology's `x-dead-letter-exchange`), persistent messages, publisher confirms, consumer
//!    prefetch ([`BenchConfig::prefetch`] on both consumers, each consumer's own, as the
//!    runtime and the worker SDK set it), an "engine" connection and a "worker" connection. One *round trip*
//!    is: publish a task (confirmed) → the worker consumes it, publishes a reply (confirmed) and
//!    acks the task → the engine consumes the reply and acks it. Measured twice: the throughput
//!    with [`BenchConfig::ceiling_window`] round trips in flight, and the p50 latency of
//!    [`BenchConfig::sequential_round_trips`] round trips done one after another. The whole
//!    ceiling is measured once before the runtime phases and once after them (on fresh
//!    queues), and the report has the means: the machine's speed drifts over minutes, and this
//!    way a drift weighs on both sides of each ratio alike. (Should the second measurement
//!    fail, the first stands alone, with a warning, rather than losing the runtime's numbers.)
//! 2. **Tasks/s**: [`BenchConfig::executions`] executions of a one-Task state machine served by
//!    an echo worker (the SDK's `Worker` over `AmqpTransport`, concurrency
//!    [`BenchConfig::worker_concurrency`]), through the real runtime (`Service` over
//!    `RedisStore` + `AmqpBroker`), under the same load as the ceiling's throughput run:
//!    [`BenchConfig::tasks_window`] slots (loops spawned on the runtime, as the ceiling's are),
//!    each starting an execution, waiting until `Service::wait` returns it finished, and
//!    starting the next. Timed (monotonic clock) from
//!    just before the first start to the last `wait` returning. As a reference, the same number
//!    of executions is then started all at once (at most [`BenchConfig::start_window`]
//!    `StartExecution`s in flight, the tasks queue up in RabbitMQ), timed from the wall clock
//!    just before the first start to the latest `stop_ms` of the records (the engine's time of
//!    `ExecutionSucceeded`).
//! 3. **Latency**: [`BenchConfig::latency_executions`] executions of the same machine, one after
//!    another, each timed (monotonic clock) from just before `Service::start_execution` to the
//!    moment `Service::wait` returns the finished record — what a client in this process
//!    observes (the commit that finishes an execution hands its record to the waiting
//!    `wait`). The record's own `stop_ms - start_ms` (whole milliseconds) is reported alongside
//!    as a note.
//! 4. **Pass transitions/s**: [`BenchConfig::executions`] executions of a chain of
//!    [`BenchConfig::pass_states`] Pass states, started all at once as the backlog run of 2;
//!    transitions are states entered (`pass_states` per execution), timed as that run.
//!
//! Between 3 and 4, as many `PING`s as the latency run has executions, a millisecond apart,
//! through the connection the commits use: with the CPU readings they give the note on what
//! the servers alone leave to the two ratio targets ([`BenchReport::bounds`]).
//!
//! The closed loops — the ceiling's and the runtime's, sequential or in flight — run as tasks
//! on the runtime's worker threads, as the server's request handlers do, never on the thread
//! that blocks on the whole benchmark; the backlog and Pass runs start their executions from
//! the benchmark's own task (they measure to the records' stop times, not to when it notices).
//!
//! Everything lives in throwaway namespaces (a unique AMQP name prefix, a unique Redis key
//! prefix) and is deleted afterwards, whether or not the measurement succeeded
//! (`AmqpBroker::delete_namespace`, `RedisStore::purge_namespace`, and the raw queues and
//! exchange of step 1). Progress is logged at `info` under this module's target.
//!
//! Targets ([`BenchReport::rows`]): tasks/s ≥ 0.6 × the ceiling's round trips/s; latency p50 ≤
//! 1.5 × the raw round trip's p50; latency p99 ≤ 10 ms. They are reported, never adjusted.

use crate::asl::StateMachineType;
use crate::interp::ExecutionStatus;
use crate::runtime::broker::BrokerError;
use crate::runtime::broker_amqp::{AmqpBroker, AmqpConfig, QueueType};
use crate::runtime::clock::{Clock, SystemClock};
use crate::runtime::coordinator::CoordinatorConfig;
use crate::runtime::metrics::WaitTotals;
use crate::runtime::service::{Service, ServiceError};
use crate::runtime::store::{ExecutionRecord, StoreError};
use crate::runtime::store_redis::RedisStore;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stepline_worker::protocol::{Reply, TaskMessage, PROTOCOL_VERSION};
use stepline_worker::topology::{partition_queue, task_queue, DEAD_LETTER_EXCHANGE};
use stepline_worker::transport::amqp::durable_queue_arguments;
use stepline_worker::{AmqpTransport, TaskContext, TaskError, Worker};
use tokio::sync::oneshot;

/// What to measure and against which servers.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub amqp_url: String,
    pub redis_url: String,
    /// Executions of the throughput runs (tasks/s and Pass transitions/s).
    pub executions: usize,
    /// Round trips of the broker ceiling's throughput run.
    pub ceiling_round_trips: usize,
    /// Round trips in flight during the ceiling's throughput run.
    pub ceiling_window: usize,
    /// Round trips of the broker's sequential latency run.
    pub sequential_round_trips: usize,
    /// Consumer prefetch of the raw queues (the runtime's input consumers use 64 by default,
    /// and the worker's prefetch equals its concurrency).
    pub prefetch: u16,
    /// Sequential executions of the latency run.
    pub latency_executions: usize,
    /// States of the Pass chain.
    pub pass_states: usize,
    /// Concurrency (and so prefetch) of the echo worker.
    pub worker_concurrency: usize,
    /// Partitions of the benchmark's coordinator (the server's default is 16).
    pub partitions: u32,
    /// Type of every queue, raw and the runtime's (as `stepline server --queue-type`).
    pub queue_type: QueueType,
    /// Executions in flight during the tasks/s run: each of these slots starts an execution,
    /// waits for it to finish and starts the next, as each of the ceiling's round-trip loops
    /// does; the ceiling's window by default, so both are measured under the same load.
    pub tasks_window: usize,
    /// Most `StartExecution` calls in flight while starting a batch all at once (the backlog
    /// and Pass runs).
    pub start_window: usize,
    /// Longest any one phase may take.
    pub phase_timeout: Duration,
}

impl BenchConfig {
    pub fn new(amqp_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        BenchConfig {
            amqp_url: amqp_url.into(),
            redis_url: redis_url.into(),
            executions: 2000,
            ceiling_round_trips: 10_000,
            ceiling_window: 256,
            sequential_round_trips: 500,
            prefetch: 64,
            latency_executions: 200,
            pass_states: 10,
            worker_concurrency: 64,
            partitions: 16,
            queue_type: QueueType::Classic,
            tasks_window: 256,
            start_window: 256,
            phase_timeout: Duration::from_secs(300),
        }
    }
}

/// Why a benchmark could not complete.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("RabbitMQ: {0}")]
    Amqp(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}")]
    Failed(String),
}

fn amqp(context: &str) -> impl Fn(lapin::Error) -> BenchError + '_ {
    move |e| BenchError::Amqp(format!("{context}: {e}"))
}

/// The six numbers of a run (serialized exactly as these keys), plus what they came from.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub ceiling_roundtrips_per_sec: f64,
    pub ceiling_latency_p50_ms: f64,
    pub tasks_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub pass_transitions_per_sec: f64,
    #[serde(skip)]
    pub details: BenchDetails,
}

/// How the report's numbers were obtained (printed as notes; not part of the JSON).
#[derive(Debug, Clone, Default)]
pub struct BenchDetails {
    pub ceiling_round_trips: usize,
    pub ceiling_window: usize,
    pub ceiling_elapsed_ms: f64,
    pub ceiling_latency_p99_ms: f64,
    /// Each ceiling measurement (before and after the runtime): round trips/s and raw p50 ms.
    pub ceiling_runs: Vec<(f64, f64)>,
    pub sequential_round_trips: usize,
    pub executions: usize,
    pub tasks_window: usize,
    pub tasks_elapsed_ms: f64,
    /// This process's CPU milliseconds per round trip of the ceiling's throughput run (the
    /// raw client: lapin only) and per execution of the tasks/s run (coordinator, worker and
    /// client), and the Redis server's per execution of that run; `None` where unreadable.
    pub ceiling_cpu_ms: Option<f64>,
    pub task_cpu_ms: Option<f64>,
    pub task_redis_cpu_ms: Option<f64>,
    /// The RabbitMQ node's CPU milliseconds per raw round trip and per execution of the same
    /// runs, when it runs on this machine (its `beam.smp` processes).
    pub ceiling_broker_cpu_ms: Option<f64>,
    pub task_broker_cpu_ms: Option<f64>,
    /// Redis memory (`used_memory`, summed over the nodes) the tasks/s run and the Pass run
    /// added, per execution: what a finished execution keeps until its retention ends (each
    /// run's executions are all finished and none has expired); `None` where unreadable.
    pub task_redis_bytes: Option<f64>,
    pub pass_redis_bytes: Option<f64>,
    /// tasks/s when all the executions are started at once (they queue up in RabbitMQ).
    pub backlog_tasks_per_sec: f64,
    pub backlog_elapsed_ms: f64,
    pub latency_executions: usize,
    /// p50/p99 of the records' `stop_ms - start_ms` (whole milliseconds).
    pub record_latency_p50_ms: f64,
    pub record_latency_p99_ms: f64,
    pub pass_states: usize,
    pub pass_elapsed_ms: f64,
    /// Mean milliseconds per leg of a one-Task execution in the tasks/s run (see [`Legs`]),
    /// over at most [`LEGS_SAMPLE`] of its executions.
    pub tasks_legs: Legs,
    /// The same for the latency run.
    pub latency_legs: Legs,
    /// What the coordinator waited on per execution of the tasks/s run and of the latency
    /// run (see [`Waited`]).
    pub tasks_waited: Waited,
    pub latency_waited: Waited,
    /// p50 of sequential `PING`s through the connection the commits use (see
    /// [`redis_round_trip_p50`]), in milliseconds; `None` when they failed.
    pub redis_ping_p50_ms: Option<f64>,
    pub partitions: u32,
    pub worker_concurrency: usize,
    /// `classic` or `quorum`: the type of every queue measured.
    pub queue_type: &'static str,
}

/// Where a one-Task execution's time went, as mean milliseconds between its history's
/// timestamps (whole milliseconds, the engine's clock): `start` is the `StartExecution` call →
/// `ExecutionStarted` (publishing the Start input, its wait in the partition queue);
/// `dispatch` → `ActivityStarted` (the Start step's commit, publishing the task, the worker
/// taking it and publishing `Started`, that reply's wait in the partition queue); `work` →
/// `ActivitySucceeded` (the Started step, the handler, publishing `Succeeded`, its wait in the
/// partition queue). The Succeeded step itself ends the execution at that timestamp.
#[derive(Debug, Clone, Copy, Default)]
pub struct Legs {
    pub start: f64,
    pub dispatch: f64,
    pub work: f64,
}

/// What the coordinator waited on during a run, per execution: its commit requests to Redis
/// (sending to reply; commits sent together count once) and its outbox publishes (publishing
/// to RabbitMQ's confirmation; the worker may have the message before), from the
/// coordinator's `stepline_store_commit_seconds` and `stepline_broker_publish_seconds`; and
/// the time spent in Redis per script call (`INFO commandstats`: every `EVALSHA` the server ran
/// meanwhile, mostly the commit scripts, also leases and outbox acks; wall time inside Redis,
/// so on a busy machine it includes the time Redis was preempted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Waited {
    pub commits_per_execution: f64,
    pub commit_ms: f64,
    pub publishes_per_execution: f64,
    pub publish_ms: f64,
    pub redis_script_ms: Option<f64>,
}

impl Waited {
    /// Between two readings of the coordinator's totals and of Redis's script time (calls,
    /// microseconds), over `executions`.
    fn between(
        before: (WaitTotals, Option<(u64, u64)>),
        after: (WaitTotals, Option<(u64, u64)>),
        executions: usize,
    ) -> Waited {
        let ((a, scripts_a), (b, scripts_b)) = (before, after);
        let n = executions.max(1) as f64;
        let mean_ms = |seconds: f64, count: u64| {
            if count == 0 {
                0.0
            } else {
                seconds * 1000.0 / count as f64
            }
        };
        let (commits, publishes) = (b.commits - a.commits, b.publishes - a.publishes);
        Waited {
            commits_per_execution: commits as f64 / n,
            commit_ms: mean_ms(b.commit_seconds - a.commit_seconds, commits),
            publishes_per_execution: publishes as f64 / n,
            publish_ms: mean_ms(b.publish_seconds - a.publish_seconds, publishes),
            // Both readings, with calls between them (a `CONFIG RESETSTAT` or a restart in
            // between gives none).
            redis_script_ms: (|| {
                let ((calls_a, usec_a), (calls_b, usec_b)) = (scripts_a?, scripts_b?);
                let calls = calls_b.checked_sub(calls_a).filter(|c| *c > 0)?;
                Some(usec_b.checked_sub(usec_a)? as f64 / 1000.0 / calls as f64)
            })(),
        }
    }
}

/// What the servers of this machine alone leave to the two ratio targets, from parts measured
/// in the same run (see [`BenchReport::bounds`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// The raw round trip's p50 plus, for each of the latency run's commits, a bare Redis round
    /// trip (`PING` p50) and the mean time of a script call in Redis: milliseconds before any
    /// work of the coordinator or the worker. An estimate, not a strict floor: it sums a p50
    /// and means, and the raw p50 is measured before and after the latency run, not during it.
    /// `None` when the `PING`s or Redis's script time were not measured.
    pub latency_floor_ms: Option<f64>,
    /// `None` when a CPU reading is missing or there is no ceiling to divide by.
    pub cpu: Option<CpuEstimate>,
}

/// The tasks/s run's CPU against the raw round trip's (see [`Bounds::cpu`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuEstimate {
    /// The cores the tasks/s run kept busy: its tasks/s × the CPU per task of this process,
    /// RabbitMQ and Redis.
    pub cores: f64,
    /// At those cores, the tasks/s ÷ ceiling if a task cost only what a raw round trip costs
    /// (this process and RabbitMQ) plus Redis's CPU per task.
    pub ratio: f64,
    /// At those cores, the CPU milliseconds per task the coordinator and the worker may spend
    /// beyond a raw round trip's for tasks/s to reach [`TASKS_TARGET`] × the ceiling
    /// (negative: not even with nothing spent)…
    pub budget_ms: f64,
    /// …and what they spent in the tasks/s run: this process and RabbitMQ per task above their
    /// CPU per raw round trip.
    pub spent_ms: f64,
}

/// The tasks/s target, as a fraction of the ceiling's round trips/s.
pub const TASKS_TARGET: f64 = 0.6;
/// The latency p50 target, as a multiple of the raw round trip's p50.
pub const LATENCY_TARGET: f64 = 1.5;

/// One line of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: String,
    pub value: f64,
    /// `None` for a reference number without a target.
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl BenchReport {
    /// The table's rows: the two ceiling numbers (references), then the four runtime numbers
    /// with their targets.
    pub fn rows(&self) -> Vec<Row> {
        let d = &self.details;
        let task_floor = TASKS_TARGET * self.ceiling_roundtrips_per_sec;
        let p50_ceiling = LATENCY_TARGET * self.ceiling_latency_p50_ms;
        vec![
            Row {
                metric: format!(
                    "broker ceiling, round trips/s ({} in flight)",
                    d.ceiling_window
                ),
                value: self.ceiling_roundtrips_per_sec,
                target: None,
                met: None,
            },
            Row {
                metric: "broker round trip p50, ms (sequential)".into(),
                value: self.ceiling_latency_p50_ms,
                target: None,
                met: None,
            },
            Row {
                metric: format!(
                    "tasks/s ({} one-Task executions, {} in flight)",
                    d.executions, d.tasks_window
                ),
                value: self.tasks_per_sec,
                target: Some(format!(">= {task_floor:.1} ({TASKS_TARGET} x ceiling)")),
                met: Some(self.tasks_per_sec >= task_floor),
            },
            Row {
                metric: "tasks/s (all started at once, a backlog)".into(),
                value: d.backlog_tasks_per_sec,
                target: None,
                met: None,
            },
            Row {
                metric: "latency p50, ms (start -> wait returns)".into(),
                value: self.latency_p50_ms,
                target: Some(format!("<= {p50_ceiling:.2} ({LATENCY_TARGET} x raw p50)")),
                met: Some(self.latency_p50_ms <= p50_ceiling),
            },
            Row {
                metric: "latency p99, ms".into(),
                value: self.latency_p99_ms,
                target: Some("<= 10".into()),
                met: Some(self.latency_p99_ms <= 10.0),
            },
            Row {
                metric: format!("Pass transitions/s ({}-state chain)", d.pass_states),
                value: self.pass_transitions_per_sec,
                target: None,
                met: None,
            },
        ]
    }

    /// What the measured parts leave to the two ratio targets (see [`Bounds`]): estimates,
    /// printed as a note, never used to judge a target.
    pub fn bounds(&self) -> Bounds {
        let d = &self.details;
        let w = &d.latency_waited;
        let latency_floor_ms = match (d.redis_ping_p50_ms, w.redis_script_ms) {
            (Some(ping), Some(script)) => {
                Some(self.ceiling_latency_p50_ms + w.commits_per_execution * (ping + script))
            }
            _ => None,
        };
        let cpu = (|| {
            let (process, broker, redis) =
                (d.task_cpu_ms?, d.task_broker_cpu_ms?, d.task_redis_cpu_ms?);
            let raw = d.ceiling_cpu_ms? + d.ceiling_broker_cpu_ms?;
            let cores = self.tasks_per_sec * (process + broker + redis) / 1000.0;
            let ceiling = self.ceiling_roundtrips_per_sec;
            (raw + redis > 0.0 && ceiling > 0.0).then(|| CpuEstimate {
                cores,
                ratio: cores * 1000.0 / (raw + redis) / ceiling,
                budget_ms: cores * 1000.0 / (TASKS_TARGET * ceiling) - raw - redis,
                spent_ms: process + broker - raw,
            })
        })();
        Bounds {
            latency_floor_ms,
            cpu,
        }
    }

    /// True when every target is met.
    pub fn all_met(&self) -> bool {
        self.rows().iter().all(|r| r.met != Some(false))
    }

    /// The rows as a text table, followed by notes on how they were measured.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<50} {:>10}  {:<30} met?",
            "metric", "value", "target"
        );
        for r in self.rows() {
            let _ = writeln!(
                out,
                "{:<50} {:>10.2}  {:<30} {}",
                r.metric,
                r.value,
                r.target.as_deref().unwrap_or("(reference)"),
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            );
        }
        let d = &self.details;
        let _ = writeln!(
            out,
            "notes: ceiling = mean of {} runs of {} round trips, {:.0} ms in all (worse p99 under load \
             {:.2} ms); raw p50 over {} sequential round trips per run; per run (before, after the \
             runtime): {}",
            d.ceiling_runs.len(),
            d.ceiling_round_trips,
            d.ceiling_elapsed_ms,
            d.ceiling_latency_p99_ms,
            d.sequential_round_trips,
            d.ceiling_runs
                .iter()
                .map(|(per_sec, p50)| format!("{per_sec:.0}/s p50 {p50:.2} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "       tasks/s = {} executions in {:.0} ms (first start -> last wait returns), {} \
             partitions, worker concurrency {}, {} queues; backlog: {} in {:.0} ms (first start \
             -> last record stop_ms)",
            d.executions,
            d.tasks_elapsed_ms,
            d.partitions,
            d.worker_concurrency,
            d.queue_type,
            d.executions,
            d.backlog_elapsed_ms
        );
        let cpu = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "       CPU ms: this process {} per raw round trip, {} per task; RabbitMQ {} per raw \
             round trip, {} per task; Redis {} per task",
            cpu(d.ceiling_cpu_ms),
            cpu(d.task_cpu_ms),
            cpu(d.ceiling_broker_cpu_ms),
            cpu(d.task_broker_cpu_ms),
            cpu(d.task_redis_cpu_ms)
        );
        let bytes = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        let _ = writeln!(
            out,
            "       Redis memory per finished execution (kept for the retention): one-Task {} \
             bytes, {}-state Pass chain {} bytes",
            bytes(d.task_redis_bytes),
            d.pass_states,
            bytes(d.pass_redis_bytes)
        );
        let _ = writeln!(
            out,
            "       latency over {} sequential executions; record stop_ms - start_ms: p50 {:.0} ms, \
             p99 {:.0} ms",
            d.latency_executions, d.record_latency_p50_ms, d.record_latency_p99_ms
        );
        for (run, legs) in [("tasks/s", d.tasks_legs), ("latency", d.latency_legs)] {
            let _ = writeln!(
                out,
                "       {run} run, mean ms per leg: start call -> ExecutionStarted {:.1}, -> \
                 ActivityStarted {:.1}, -> ActivitySucceeded {:.1}",
                legs.start, legs.dispatch, legs.work
            );
        }
        for (run, w) in [("tasks/s", d.tasks_waited), ("latency", d.latency_waited)] {
            let _ = writeln!(
                out,
                "       {run} run, per execution: {:.2} Redis commit requests of {:.3} ms mean \
                 (sending to reply; time in Redis per script call {} ms), {:.2} task \
                 publishes of {:.3} ms mean (publishing to RabbitMQ's confirmation)",
                w.commits_per_execution,
                w.commit_ms,
                w.redis_script_ms
                    .map_or("n/a".to_string(), |ms| format!("{ms:.3}")),
                w.publishes_per_execution,
                w.publish_ms
            );
        }
        let _ = writeln!(
            out,
            "       Pass: {} executions x {} states entered in {:.0} ms",
            d.executions, d.pass_states, d.pass_elapsed_ms
        );
        let bounds = self.bounds();
        let w = &d.latency_waited;
        let na = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_string(), f);
        let _ = writeln!(
            out,
            "       estimates from these parts (sums of p50s and means, not strict floors): the \
             latency run's {:.2} commits per execution each wait a Redis round trip (PING p50 {} \
             ms, sequential) and a script (mean {} ms per script call in Redis): raw p50 + those \
             = {} before any work of the coordinator or worker",
            w.commits_per_execution,
            na(d.redis_ping_p50_ms, &|ms| format!("{ms:.3}")),
            na(w.redis_script_ms, &|ms| format!("{ms:.3}")),
            na(bounds.latency_floor_ms, &|ms| format!(
                "{ms:.2} ms ({:.2} x raw p50)",
                ms / self.ceiling_latency_p50_ms
            )),
        );
        let _ = writeln!(
            out,
            "       at the {} cores the tasks/s run kept busy, a task costing only a raw round \
             trip's CPU plus Redis's (commits, leases, outbox acks) would make {} x the \
             ceiling; {TASKS_TARGET} x leaves the coordinator and worker {} ms of CPU per task \
             beyond a raw round trip's, against {} ms spent (this process and RabbitMQ above \
             their CPU per raw round trip)",
            na(bounds.cpu.map(|c| c.cores), &|c| format!("{c:.2}")),
            na(bounds.cpu.map(|c| c.ratio), &|r| format!("{r:.2}")),
            na(bounds.cpu.map(|c| c.budget_ms), &|ms| format!("{ms:.3}")),
            na(bounds.cpu.map(|c| c.spent_ms), &|ms| format!("{ms:.3}")),
        );
        out
    }
}

/// Runs the whole benchmark; everything it created is deleted before it returns.
pub async fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let id = unique_id();
    // Connected first, so an unreachable Redis is reported before the ceiling is measured.
    let store = RedisStore::connect(
        &config.redis_url,
        &format!("{id}:"),
        Duration::from_secs(3600),
    )
    .await?
    .with_partitions(config.partitions.max(1));
    tracing::info!(namespace = %id, "measuring the RabbitMQ ceiling");
    let before = broker_ceiling(config, &format!("{id}-raw")).await?;
    tracing::info!(
        round_trips_per_sec = before.per_sec,
        p50_ms = before.p50_ms,
        "ceiling measured; starting the runtime"
    );
    let runtime = runtime_phases(config, &id, store).await?;
    tracing::info!("measuring the RabbitMQ ceiling again");
    let (ceiling, ceiling_runs) = match broker_ceiling(config, &format!("{id}-raw-after")).await {
        Ok(after) => {
            tracing::info!(
                round_trips_per_sec = after.per_sec,
                p50_ms = after.p50_ms,
                "ceiling measured again"
            );
            let runs = vec![
                (before.per_sec, before.p50_ms),
                (after.per_sec, after.p50_ms),
            ];
            (Ceiling::mean(&before, &after), runs)
        }
        // The runtime's numbers are measured already: keep them, against the first ceiling.
        Err(e) => {
            tracing::warn!(error = %e, "the second ceiling measurement failed; using the first alone");
            let runs = vec![(before.per_sec, before.p50_ms)];
            (before, runs)
        }
    };
    Ok(BenchReport {
        ceiling_roundtrips_per_sec: ceiling.per_sec,
        ceiling_latency_p50_ms: ceiling.p50_ms,
        tasks_per_sec: runtime.tasks_per_sec,
        latency_p50_ms: runtime.latency_p50_ms,
        latency_p99_ms: runtime.latency_p99_ms,
        pass_transitions_per_sec: runtime.pass_per_sec,
        details: BenchDetails {
            ceiling_round_trips: config.ceiling_round_trips,
            ceiling_window: config.ceiling_window,
            ceiling_elapsed_ms: ceiling.elapsed_ms,
            ceiling_latency_p99_ms: ceiling.load_p99_ms,
            ceiling_runs,
            sequential_round_trips: config.sequential_round_trips,
            executions: config.executions,
            tasks_window: config.tasks_window,
            tasks_elapsed_ms: runtime.tasks_elapsed_ms,
            ceiling_cpu_ms: ceiling.cpu_ms,
            task_cpu_ms: runtime.task_cpu_ms,
            task_redis_cpu_ms: runtime.task_redis_cpu_ms,
            ceiling_broker_cpu_ms: ceiling.broker_cpu_ms,
            task_broker_cpu_ms: runtime.task_broker_cpu_ms,
            task_redis_bytes: runtime.task_redis_bytes,
            pass_redis_bytes: runtime.pass_redis_bytes,
            backlog_tasks_per_sec: runtime.backlog_per_sec,
            backlog_elapsed_ms: runtime.backlog_elapsed_ms,
            latency_executions: config.latency_executions,
            record_latency_p50_ms: runtime.record_p50_ms,
            record_latency_p99_ms: runtime.record_p99_ms,
            pass_states: config.pass_states,
            pass_elapsed_ms: runtime.pass_elapsed_ms,
            tasks_legs: runtime.tasks_legs,
            latency_legs: runtime.latency_legs,
            tasks_waited: runtime.tasks_waited,
            latency_waited: runtime.latency_waited,
            redis_ping_p50_ms: runtime.redis_ping_p50_ms,
            partitions: config.partitions,
            queue_type: config.queue_type.as_str(),
            worker_concurrency: config.worker_concurrency,
        },
    })
}

/// `stepline-bench-<pid>-<nanoseconds, hex>`: unique per run, valid as an AMQP name prefix and
/// a Redis key prefix.
fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("stepline-bench-{}-{nanos:x}", std::process::id())
}

/// The `p`-quantile (nearest rank) of `samples` (sorted here).
fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (p * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn within<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| BenchError::Timeout(what.to_string(), limit))?
}

// ------------------------------------------------------------------------------------------
// 1. The broker ceiling

struct Ceiling {
    per_sec: f64,
    elapsed_ms: f64,
    load_p99_ms: f64,
    p50_ms: f64,
    /// This process's CPU milliseconds per round trip of the throughput run…
    cpu_ms: Option<f64>,
    /// …and the RabbitMQ node's, when it runs on this machine.
    broker_cpu_ms: Option<f64>,
}

impl Ceiling {
    /// Two measurements as one: mean rates, latencies and CPU; total time; the worse p99.
    fn mean(a: &Ceiling, b: &Ceiling) -> Ceiling {
        Ceiling {
            per_sec: (a.per_sec + b.per_sec) / 2.0,
            elapsed_ms: a.elapsed_ms + b.elapsed_ms,
            load_p99_ms: a.load_p99_ms.max(b.load_p99_ms),
            p50_ms: (a.p50_ms + b.p50_ms) / 2.0,
            cpu_ms: a.cpu_ms.zip(b.cpu_ms).map(|(x, y)| (x + y) / 2.0),
            broker_cpu_ms: a
                .broker_cpu_ms
                .zip(b.broker_cpu_ms)
                .map(|(x, y)| (x + y) / 2.0),
        }
    }
}

/// CPU seconds this process has used so far (all threads; Linux `/proc/self/stat`, in the
/// kernel's 1/100 s ticks), `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("/proc/self/stat")
}

/// CPU seconds the RabbitMQ node has used so far: every `beam.smp` process of this machine,
/// when `amqp_url` names this machine (`localhost`, `127.0.0.1`, `[::1]`); `None` otherwise or
/// where `/proc` cannot be read.
fn rabbitmq_cpu_seconds(amqp_url: &str) -> Option<f64> {
    if !matches!(url_host(amqp_url)?, "localhost" | "127.0.0.1" | "::1") {
        return None;
    }
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let is_beam =
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "beam.smp");
        if is_beam {
            if let Some(seconds) = cpu_seconds_of(dir.join("stat")) {
                *total.get_or_insert(0.0) += seconds;
            }
        }
    }
    total
}

/// The host of a URL (`scheme://[user:pass@]host[:port][/…]`, IPv6 in brackets).
fn url_host(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => Some(v6.split_once(']')?.0),
        None => host_port.split(':').next(),
    }
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds.
fn cpu_seconds_of(path: impl AsRef<std::path::Path>) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the whole line.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds the store's Redis nodes have used so far (`INFO cpu`, summed over the
/// nodes), `None` when it cannot be read.
async fn redis_cpu_seconds(store: &RedisStore) -> Option<f64> {
    let mut total = 0.0;
    for (_, info) in store.info("cpu").await.ok()? {
        total += info.get::<f64>("used_cpu_sys")? + info.get::<f64>("used_cpu_user")?;
    }
    Some(total)
}

/// The coordinator's commit and publish totals, and Redis's script calls and microseconds
/// (`INFO commandstats`, summed over the nodes; `None` when unreadable).
async fn waits(service: &BenchService, store: &RedisStore) -> (WaitTotals, Option<(u64, u64)>) {
    let totals = service.coordinator().metrics().wait_totals();
    (totals, redis_script_time(store).await)
}

async fn redis_script_time(store: &RedisStore) -> Option<(u64, u64)> {
    let (mut calls, mut usec) = (0, 0);
    for (_, info) in store.info("commandstats").await.ok()? {
        let (c, u) = evalsha_stats(&info)?;
        calls += c;
        usec += u;
    }
    Some((calls, usec))
}

/// `EVALSHA`'s calls and microseconds in an `INFO commandstats` reply
/// (`cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,…`); none yet when it has no line.
fn evalsha_stats(info: &redis::InfoDict) -> Option<(u64, u64)> {
    let Some(stats) = info.get::<String>("cmdstat_evalsha") else {
        return Some((0, 0));
    };
    let field = |name: &str| {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse::<u64>()
            .ok()
    };
    Some((field("calls")?, field("usec")?))
}

/// The memory the store's Redis nodes use, summed; `None` when it cannot be read.
async fn redis_used_bytes(store: &RedisStore) -> Option<u64> {
    let nodes = store.memory().await.ok()?;
    Some(nodes.iter().map(|n| n.used_bytes).sum())
}

/// Bytes per unit between two readings.
fn bytes_per(before: Option<u64>, after: Option<u64>, units: usize) -> Option<f64> {
    Some((after? as f64 - before? as f64) / units.max(1) as f64)
}

/// Milliseconds of CPU per unit between two readings.
fn cpu_ms_per(before: Option<f64>, after: Option<f64>, units: usize) -> Option<f64> {
    Some((after? - before?) * 1000.0 / units.max(1) as f64)
}

/// The raw queues: an engine side (confirming publisher, reply consumer) and a worker side
/// (task consumer, confirming reply publisher), on two connections.
struct RawBroker {
    engine: Connection,
    worker: Connection,
    publisher: Channel,
    task_queue: String,
    reply_queue: String,
    dead_letter_exchange: String,
    /// The arguments the task and reply queues are declared with (as the runtime's).
    queue_arguments: FieldTable,
    task_body: Vec<u8>,
    /// Round trips waiting for their reply, by correlation id.
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
    /// Publishes or acks that failed on the worker side (their round trips never end).
    worker_errors: Arc<AtomicU64>,
    next_id: AtomicU64,
}

fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

/// Publishes to `queue` through the default exchange, mandatory, and waits for the
/// confirmation, as the runtime's broker and the worker SDK do.
async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), BenchError> {
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let confirmation = channel
        .basic_publish("".into(), queue.into(), options, body, properties)
        .await
        .map_err(amqp("publish"))?
        .await
        .map_err(amqp("publisher confirm"))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(BenchError::Amqp(format!(
            "message to {queue} was returned unroutable"
        ))),
        Confirmation::Nack(_) => Err(BenchError::Amqp(format!(
            "RabbitMQ nacked a message to {queue}"
        ))),
        Confirmation::NotRequested => Err(BenchError::Amqp("confirms are off".into())),
    }
}

/// Realistic message bodies: a task message and a worker's reply of the runtime's shapes.
fn sample_bodies() -> (Vec<u8>, Vec<u8>) {
    let token = "x".repeat(160);
    let task = TaskMessage {
        version: PROTOCOL_VERSION,
        task_token: token.clone(),
        resource: "arn:aws:states:us-east-1:111111111111:activity:bench".into(),
        execution_arn: "arn:aws:states:us-east-1:111111111111:execution:bench:0123456789abcdef"
            .into(),
        state_name: "Echo".into(),
        input: json!({"i": 1}),
        attempt: 1,
        timeout_seconds: None,
        heartbeat_seconds: None,
        deadline_ms: None,
        reply_to: partition_queue(0),
        reply_exchange: None,
    };
    let reply = json!({"kind": "worker", "reply": Reply::Succeeded {
        version: PROTOCOL_VERSION,
        task_token: token,
        output: json!({"i": 1}),
    }});
    (
        serde_json::to_vec(&task).unwrap_or_default(),
        serde_json::to_vec(&reply).unwrap_or_default(),
    )
}

impl RawBroker {
    async fn connect(config: &BenchConfig, namespace: &str) -> Result<RawBroker, BenchError> {
        let properties = |side: &str| {
            ConnectionProperties::default()
                .with_connection_name(format!("stepline-bench-ceiling-{side}").into())
        };
        let engine = Connection::connect(&config.amqp_url, properties("engine"))
            .await
            .map_err(amqp("cannot connect"))?;
        let worker = Connection::connect(&config.amqp_url, properties("worker"))
            .await
            .map_err(amqp("cannot connect"))?;
        let dead_letter_exchange = format!("{namespace}.{DEAD_LETTER_EXCHANGE}");
        let raw = RawBroker {
            publisher: engine
                .create_channel()
                .await
                .map_err(amqp("cannot open a channel"))?,
            engine,
            worker,
            task_queue: format!("{namespace}.{}", task_queue("bench")),
            reply_queue: format!("{namespace}.{}", partition_queue(0)),
            dead_letter_exchange,
            queue_arguments: durable_queue_arguments(&format!("{namespace}."), config.queue_type),
            task_body: sample_bodies().0,
            pending: Arc::new(Mutex::new(HashMap::new())),
            worker_errors: Arc::new(AtomicU64::new(0)),
            next_id: AtomicU64::new(0),
        };
        Ok(raw)
    }

    /// Declares the exchange and queues, and starts both consumers.
    async fn start(&self, prefetch: u16) -> Result<(), BenchError> {
        self.publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("cannot enable confirms"))?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        self.publisher
            .exchange_declare(
                self.dead_letter_exchange.as_str().into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp("cannot declare the dead-letter exchange"))?;
        for queue in [&self.task_queue, &self.reply_queue] {
            self.publisher
                .queue_declare(queue.as_str().into(), durable, self.queue_arguments.clone())
                .await
                .map_err(amqp("cannot declare a queue"))?;
        }

        // Worker side: the task consumer's own prefetch, a confirming publisher.
        let consume = self
            .worker
            .create_channel()
            .await
            .map_err(amqp("cannot open a channel"))?;
        consume
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(amqp("cannot set the prefetch"))?;
        let replies = self
            .worker
            .create_channel()
            .await
            .map_err(amqp("cannot open a channel"))?;
        replies
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("cannot enable confirms"))?;
        let mut tasks = consume
            .basic_consume(
                self.task_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("cannot consume the task queue"))?;
        let reply_queue = self.reply_queue.clone();
        let errors = self.worker_errors.clone();
        let reply_body: Arc<[u8]> = sample_bodies().1.into();
        tokio::spawn(async move {
            let _channel = consume;
            while let Some(Ok(delivery)) = tasks.next().await {
                let (replies, queue, body, errors) = (
                    replies.clone(),
                    reply_queue.clone(),
                    reply_body.clone(),
                    errors.clone(),
                );
                // One task per delivery, as the worker SDK runs each task.
                tokio::spawn(async move {
                    let mut properties = persistent();
                    if let Some(id) = delivery.properties.correlation_id() {
                        properties = properties.with_correlation_id(id.clone());
                    }
                    let sent = publish_confirmed(&replies, &queue, &body, properties).await;
                    let acked = delivery.acker.ack(BasicAckOptions::default()).await;
                    if sent.is_err() || acked.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });

        // Engine side: a prefetch-limited reply consumer that completes round trips.
        let channel = self
            .engine
            .create_channel()
            .await
            .map_err(amqp("cannot open a channel"))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp("cannot set the prefetch"))?;
        let mut consumer = channel
            .basic_consume(
                self.reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("cannot consume the reply queue"))?;
        let pending = self.pending.clone();
        tokio::spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                let waiter = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| lock(&pending).remove(id.as_str()));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
                if delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(())
    }

    /// One publish → consume → reply → consume; returns how long it took.
    async fn round_trip(&self) -> Result<Duration, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (done, reply) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), done);
        let started = Instant::now();
        let properties = persistent().with_correlation_id(id.as_str().into());
        publish_confirmed(
            &self.publisher,
            &self.task_queue,
            &self.task_body,
            properties,
        )
        .await?;
        reply
            .await
            .map_err(|_| BenchError::Amqp("the reply consumer stopped".into()))?;
        Ok(started.elapsed())
    }

    /// Deletes the queues and the exchange, then closes both connections.
    async fn delete(&self) -> Result<(), BenchError> {
        let channel = self
            .engine
            .create_channel()
            .await
            .map_err(amqp("cannot open a channel"))?;
        for queue in [&self.task_queue, &self.reply_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(amqp("cannot delete a queue"))?;
        }
        channel
            .exchange_delete(
                self.dead_letter_exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(amqp("cannot delete the dead-letter exchange"))?;
        let _ = self.worker.close(200, "OK".into()).await;
        let _ = self.engine.close(200, "OK".into()).await;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn broker_ceiling(config: &BenchConfig, namespace: &str) -> Result<Ceiling, BenchError> {
    let raw = Arc::new(RawBroker::connect(config, namespace).await?);
    let measured = async {
        raw.start(config.prefetch).await?;
        within(
            "the broker ceiling",
            config.phase_timeout,
            measure_ceiling(config, raw.clone()),
        )
        .await
    }
    .await;
    let deleted = raw.delete().await;
    let ceiling = measured?;
    deleted?;
    let failed = raw.worker_errors.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(BenchError::Failed(format!(
            "{failed} raw replies were not confirmed or acked"
        )));
    }
    Ok(ceiling)
}

async fn measure_ceiling(config: &BenchConfig, raw: Arc<RawBroker>) -> Result<Ceiling, BenchError> {
    // Warm-up (connections, queues, the broker's caches), then one at a time (one loop).
    let round_trip = {
        let raw = raw.clone();
        move |_| {
            let raw = raw.clone();
            async move { Ok(ms(raw.round_trip().await?)) }
        }
    };
    closed_loops(1, 50, round_trip.clone()).await?;
    let mut sequential = closed_loops(1, config.sequential_round_trips.max(1), round_trip).await?;
    let p50_ms = percentile(&mut sequential, 0.5);

    // Under load: `window` loops, each doing round trips back to back.
    let (cpu_before, broker_before) = (
        process_cpu_seconds(),
        rabbitmq_cpu_seconds(&config.amqp_url),
    );
    let started = Instant::now();
    let mut under_load = closed_loops(
        config.ceiling_window,
        config.ceiling_round_trips,
        move |_| {
            let raw = raw.clone();
            async move { Ok(ms(raw.round_trip().await?)) }
        },
    )
    .await?;
    let elapsed = started.elapsed();
    Ok(Ceiling {
        per_sec: under_load.len() as f64 / elapsed.as_secs_f64(),
        elapsed_ms: ms(elapsed),
        cpu_ms: cpu_ms_per(cpu_before, process_cpu_seconds(), under_load.len()),
        broker_cpu_ms: cpu_ms_per(
            broker_before,
            rabbitmq_cpu_seconds(&config.amqp_url),
            under_load.len(),
        ),
        load_p99_ms: percentile(&mut under_load, 0.99),
        p50_ms,
    })
}

// ------------------------------------------------------------------------------------------
// 2–4. The runtime

struct RuntimeNumbers {
    tasks_per_sec: f64,
    tasks_elapsed_ms: f64,
    task_cpu_ms: Option<f64>,
    task_redis_cpu_ms: Option<f64>,
    task_broker_cpu_ms: Option<f64>,
    task_redis_bytes: Option<f64>,
    pass_redis_bytes: Option<f64>,
    backlog_per_sec: f64,
    backlog_elapsed_ms: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    record_p50_ms: f64,
    record_p99_ms: f64,
    pass_per_sec: f64,
    pass_elapsed_ms: f64,
    tasks_legs: Legs,
    latency_legs: Legs,
    tasks_waited: Waited,
    latency_waited: Waited,
    redis_ping_p50_ms: Option<f64>,
}

type BenchService = Service<RedisStore, AmqpBroker, SystemClock>;

/// Phases 2–4 on `store` (connected under the namespace `id`).
async fn runtime_phases(
    config: &BenchConfig,
    id: &str,
    store: RedisStore,
) -> Result<RuntimeNumbers, BenchError> {
    let broker = match AmqpBroker::connect(
        AmqpConfig::new(config.amqp_url.clone())
            .with_namespace(id)
            .with_queue_type(config.queue_type)
            .with_connect_attempts(3),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let _ = store.purge_namespace().await;
            return Err(e.into());
        }
    };
    let store = Arc::new(store);
    let broker = Arc::new(broker);
    let service = Service::start(
        store.clone(),
        broker.clone(),
        Arc::new(SystemClock),
        CoordinatorConfig {
            partitions: config.partitions.max(1),
            owner: format!("{id}-coordinator"),
            token_key: format!("{id}-token-key").into_bytes(),
            ..CoordinatorConfig::default()
        },
    );
    let service = Arc::new(service);
    let mut worker = None;
    let measured = measure_runtime(config, id, &service, &store, &mut worker).await;

    // Clean up whatever happened: worker, coordinator, queues and exchanges, Redis keys.
    if let Some((stop, handle)) = worker {
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    }
    if let Ok(service) = Arc::try_unwrap(service) {
        service.shutdown().await;
    }
    let deleted = broker.delete_namespace().await;
    let _ = broker.close().await;
    let purged = store.purge_namespace().await;
    let numbers = measured?;
    deleted?;
    purged?;
    Ok(numbers)
}

type WorkerHandle = (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), stepline_worker::WorkerError>>,
);

async fn measure_runtime(
    config: &BenchConfig,
    id: &str,
    service: &Arc<BenchService>,
    store: &Arc<RedisStore>,
    worker: &mut Option<WorkerHandle>,
) -> Result<RuntimeNumbers, BenchError> {
    let partitions = config.partitions.max(1) as usize;
    within("acquiring partitions", config.phase_timeout, async {
        while service.coordinator().owned_partitions().len() < partitions {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await?;

    let activity = service.create_activity("bench-echo").await?.arn;
    let echo = Worker::builder()
        .handle_signals(false)
        .name(format!("{id}-worker"))
        .concurrency(config.worker_concurrency)
        .activity(
            activity.clone(),
            |_ctx: TaskContext, input: Value| async move { Ok::<_, TaskError>(input) },
        )
        .build(
            AmqpTransport::new(config.amqp_url.clone())
                .namespace(id)
                .queue_type(config.queue_type)
                .max_reconnect_attempts(5),
        );
    let stop = echo.shutdown_handle();
    *worker = Some((stop, tokio::spawn(echo.run())));

    let task_machine = service
        .create_state_machine(
            "bench-task",
            &json!({
                "StartAt": "Echo",
                "States": {"Echo": {"Type": "Task", "Resource": activity, "End": true}}
            })
            .to_string(),
            StateMachineType::Standard,
            None,
        )
        .await?
        .arn;
    let states = config.pass_states.max(1);
    let mut chain = serde_json::Map::new();
    for i in 1..=states {
        let state = if i == states {
            json!({"Type": "Pass", "End": true})
        } else {
            json!({"Type": "Pass", "Next": format!("S{}", i + 1)})
        };
        chain.insert(format!("S{i}"), state);
    }
    let pass_machine = service
        .create_state_machine(
            "bench-pass",
            &json!({"StartAt": "S1", "States": chain}).to_string(),
            StateMachineType::Standard,
            None,
        )
        .await?
        .arn;

    // Warm-up: the worker connects, definitions and activities are cached.
    tracing::info!("warming up");
    within(
        "the warm-up",
        config.phase_timeout,
        run_batch(config, service, store, &task_machine, "warm", 64),
    )
    .await?;
    within(
        "the warm-up",
        config.phase_timeout,
        run_batch(config, service, store, &pass_machine, "warm", 64),
    )
    .await?;

    let n = config.executions.max(1);
    let window = config.tasks_window.max(1);
    tracing::info!(executions = n, in_flight = window, "measuring tasks/s");
    let (cpu_before, redis_before, broker_before, memory_before) = (
        process_cpu_seconds(),
        redis_cpu_seconds(store).await,
        rabbitmq_cpu_seconds(&config.amqp_url),
        redis_used_bytes(store).await,
    );
    let waits_before = waits(service, store).await;
    let (tasks_elapsed_ms, task_arns) = within(
        "the tasks/s run",
        config.phase_timeout,
        run_closed(service, &task_machine, "tasks", n, window),
    )
    .await?;
    let tasks_waited = Waited::between(waits_before, waits(service, store).await, n);
    let task_cpu_ms = cpu_ms_per(cpu_before, process_cpu_seconds(), n);
    let task_redis_cpu_ms = cpu_ms_per(redis_before, redis_cpu_seconds(store).await, n);
    let task_broker_cpu_ms = cpu_ms_per(broker_before, rabbitmq_cpu_seconds(&config.amqp_url), n);
    let task_redis_bytes = bytes_per(memory_before, redis_used_bytes(store).await, n);
    let tasks_legs = legs(service, &task_arns[..task_arns.len().min(LEGS_SAMPLE)]).await?;

    tracing::info!(executions = n, "measuring tasks/s with a backlog");
    let (backlog_elapsed_ms, _) = within(
        "the backlog run",
        config.phase_timeout,
        run_batch(config, service, store, &task_machine, "backlog", n),
    )
    .await?;

    tracing::info!(executions = config.latency_executions, "measuring latency");
    let waits_before = waits(service, store).await;
    let (mut waited, mut recorded, latency_arns) = within(
        "the latency run",
        config.phase_timeout,
        sequential_latency(service, &task_machine, config.latency_executions.max(1)),
    )
    .await?;
    let latency_waited = Waited::between(
        waits_before,
        waits(service, store).await,
        latency_arns.len(),
    );
    let latency_legs = legs(service, &latency_arns).await?;

    tracing::info!("measuring the Redis round trip");
    // Only a note depends on it: a failure costs that note, not the run's numbers.
    let redis_ping_p50_ms = match within(
        "the Redis round trips",
        config.phase_timeout,
        redis_round_trip_p50(store, config.latency_executions.max(1)),
    )
    .await
    {
        Ok(p50) => Some(p50),
        Err(e) => {
            tracing::warn!(error = %e, "the Redis round trips failed; the estimates go without them");
            None
        }
    };

    tracing::info!(executions = n, states, "measuring Pass transitions/s");
    let memory_before = redis_used_bytes(store).await;
    let (pass_elapsed_ms, _) = within(
        "the Pass run",
        config.phase_timeout,
        run_batch(config, service, store, &pass_machine, "pass", n),
    )
    .await?;
    let pass_redis_bytes = bytes_per(memory_before, redis_used_bytes(store).await, n);

    Ok(RuntimeNumbers {
        tasks_per_sec: n as f64 / (tasks_elapsed_ms / 1000.0),
        tasks_elapsed_ms,
        task_cpu_ms,
        task_redis_cpu_ms,
        task_broker_cpu_ms,
        task_redis_bytes,
        pass_redis_bytes,
        backlog_per_sec: n as f64 / (backlog_elapsed_ms / 1000.0),
        backlog_elapsed_ms,
        latency_p50_ms: percentile(&mut waited, 0.5),
        latency_p99_ms: percentile(&mut waited, 0.99),
        record_p50_ms: percentile(&mut recorded, 0.5),
        record_p99_ms: percentile(&mut recorded, 0.99),
        pass_per_sec: (n * states) as f64 / (pass_elapsed_ms / 1000.0),
        pass_elapsed_ms,
        tasks_legs,
        latency_legs,
        tasks_waited,
        latency_waited,
        redis_ping_p50_ms,
    })
}

/// p50 milliseconds of `count` `PING`s through the connection the commits use, one after
/// another, a millisecond apart (about the pace of the latency run's commits, so Redis and
/// this process are as warm, or as cold, as they are there), from a task on the runtime's
/// worker threads as the latency run's loop. (On a Redis Cluster the client sends each `PING`
/// to every primary: the slowest answer counts.)
async fn redis_round_trip_p50(store: &Arc<RedisStore>, count: usize) -> Result<f64, BenchError> {
    let store = store.clone();
    tokio::spawn(async move {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            tokio::time::sleep(Duration::from_millis(1)).await;
            samples.push(ms(store.ping().await?));
        }
        Ok(percentile(&mut samples, 0.5))
    })
    .await
    .map_err(|e| BenchError::Failed(format!("the Redis round trips failed: {e}")))?
}

/// Most executions of a run whose histories [`legs`] reads.
const LEGS_SAMPLE: usize = 500;

/// The mean [`Legs`] of finished one-Task executions (read after the timed runs).
async fn legs(service: &BenchService, arns: &[String]) -> Result<Legs, BenchError> {
    let mut sum = Legs::default();
    for arn in arns {
        let record = service.describe_execution(arn).await?;
        let history = service.history(arn).await?;
        let at = |kind: &str| {
            history
                .iter()
                .find(|e| e.kind.type_name() == kind)
                .map(|e| e.timestamp_ms)
                .ok_or_else(|| BenchError::Failed(format!("{arn} has no {kind} event")))
        };
        let (started, picked_up, done) = (
            at("ExecutionStarted")?,
            at("ActivityStarted")?,
            at("ActivitySucceeded")?,
        );
        sum.start += (started - record.start_ms) as f64;
        sum.dispatch += (picked_up - started) as f64;
        sum.work += (done - picked_up) as f64;
    }
    let n = arns.len().max(1) as f64;
    Ok(Legs {
        start: sum.start / n,
        dispatch: sum.dispatch / n,
        work: sum.work / n,
    })
}

/// Runs `op(0)` … `op(total - 1)` with `window` of them in flight: `window` loops spawned on
/// the runtime, each taking the next index as soon as its previous `op` finished (a closed
/// loop, as clients under load behave). Returns every `op`'s output; the first error ends it.
async fn closed_loops<T, F, Fut>(window: usize, total: usize, op: F) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, BenchError>> + Send,
{
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..window.max(1) {
        let (op, claimed) = (op.clone(), claimed.clone());
        loops.spawn(async move {
            let mut outputs = Vec::new();
            loop {
                let i = claimed.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, BenchError>(outputs);
                }
                outputs.push(op(i).await?);
            }
        });
    }
    let mut outputs = Vec::with_capacity(total);
    while let Some(joined) = loops.join_next().await {
        outputs.extend(joined.map_err(|e| BenchError::Failed(format!("a loop failed: {e}")))??);
    }
    Ok(outputs)
}

/// Runs `count` executions of `machine` with `window` of them in flight ([`closed_loops`]):
/// each loop starts an execution, waits for it to finish (checking it succeeded) and starts
/// the next. Returns the milliseconds from the first start to the last finish seen, and the
/// executions' ARNs.
async fn run_closed(
    service: &Arc<BenchService>,
    machine: &str,
    label: &str,
    count: usize,
    window: usize,
) -> Result<(f64, Vec<String>), BenchError> {
    let (service, machine, label) = (service.clone(), machine.to_string(), label.to_string());
    let started = Instant::now();
    let arns = closed_loops(window, count, move |i| {
        let (service, machine, name) = (service.clone(), machine.clone(), format!("{label}-{i}"));
        async move {
            let arn = service
                .start_execution(&machine, Some(name), json!({"i": i}))
                .await?;
            succeeded(&service.wait(&arn, Duration::from_secs(60)).await?)?;
            Ok(arn)
        }
    })
    .await?;
    Ok((ms(started.elapsed()), arns))
}

/// The execution's `stop_ms`; an error unless it ended SUCCEEDED.
fn succeeded(record: &ExecutionRecord) -> Result<i64, BenchError> {
    match (record.status, record.stop_ms) {
        (ExecutionStatus::Succeeded, Some(stop)) => Ok(stop),
        (status, _) => Err(BenchError::Failed(format!(
            "{} ended {} ({:?}: {:?})",
            record.execution_arn,
            status.as_str(),
            record.error,
            record.cause
        ))),
    }
}

/// Starts `count` executions of `machine` concurrently, waits until all have finished, checks
/// they succeeded, and returns the milliseconds from just before the first start to the
/// latest `stop_ms`, with the executions' ARNs.
async fn run_batch(
    config: &BenchConfig,
    service: &BenchService,
    store: &RedisStore,
    machine: &str,
    label: &str,
    count: usize,
) -> Result<(f64, Vec<String>), BenchError> {
    let before = store.count_executions(machine, None).await?;
    let started_ms = SystemClock.now_ms();
    let starts = futures_util::stream::iter(0..count)
        .map(|i| service.start_execution(machine, Some(format!("{label}-{i}")), json!({"i": i})))
        .buffer_unordered(config.start_window.max(1))
        .collect::<Vec<_>>()
        .await;
    let arns = starts.into_iter().collect::<Result<Vec<_>, _>>()?;
    // Finished = created and no longer RUNNING; read in that order so a start that lands in
    // between cannot make an unfinished batch look finished.
    loop {
        let all = store.count_executions(machine, None).await?;
        let running = store
            .count_executions(machine, Some(ExecutionStatus::Running))
            .await?;
        if all >= before + count as u64 && running == 0 {
            break;
        }
        // The result comes from the records' stop times, not from when this loop notices the
        // end; poll gently so the probe (a ZCARD per partition) does not load the Redis it
        // measures.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut last_stop = started_ms;
    for arn in &arns {
        let record = service.describe_execution(arn).await?;
        last_stop = last_stop.max(succeeded(&record)?);
    }
    Ok((((last_stop - started_ms) as f64).max(1.0), arns))
}

/// Runs `count` executions one after another (one loop of [`closed_loops`]); returns the
/// client-observed latencies (start call → `wait` returns) and the records' `stop_ms -
/// start_ms`, in milliseconds, and the executions' ARNs.
async fn sequential_latency(
    service: &Arc<BenchService>,
    machine: &str,
    count: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<String>), BenchError> {
    let (service, machine) = (service.clone(), machine.to_string());
    let runs = closed_loops(1, count, move |i| {
        let (service, machine) = (service.clone(), machine.clone());
        async move {
            let started = Instant::now();
            let arn = service
                .start_execution(&machine, Some(format!("latency-{i}")), json!({"i": i}))
                .await?;
            let record = service.wait(&arn, Duration::from_secs(30)).await?;
            let waited = ms(started.elapsed());
            Ok((waited, (succeeded(&record)? - record.start_ms) as f64, arn))
        }
    })
    .await?;
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (waited, recorded, arn) in runs {
        out.0.push(waited);
        out.1.push(recorded);
        out.2.push(arn);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc_on_linux() {
        if cfg!(target_os = "linux") {
            let before = process_cpu_seconds().expect("/proc/self/stat is readable");
            let spin = Instant::now();
            let mut x = 0u64;
            while spin.elapsed() < Duration::from_millis(60) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let after = process_cpu_seconds().expect("/proc/self/stat is readable");
            assert!(after >= before + 0.02, "{before} -> {after}");
        }
    }

    #[test]
    fn the_brokers_host_is_read_from_its_url() {
        for (url, host) in [
            ("amqp://guest:guest@127.0.0.1:5672/%2f", Some("127.0.0.1")),
            ("amqp://localhost", Some("localhost")),
            ("amqps://u:p@[::1]:5671/vhost?heartbeat=10", Some("::1")),
            ("amqp://rabbit.internal:5672", Some("rabbit.internal")),
            ("not a url", None),
        ] {
            assert_eq!(url_host(url), host, "{url}");
        }
        assert_eq!(rabbitmq_cpu_seconds("amqp://rabbit.internal:5672"), None);
    }

    #[test]
    fn redis_script_time_is_read_from_commandstats() {
        let info = "# Commandstats\r\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00\r\n\
                    cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,\
                    failed_calls=1\r\n";
        assert_eq!(evalsha_stats(&redis::InfoDict::new(info)), Some((12, 345)));
        assert_eq!(
            evalsha_stats(&redis::InfoDict::new("# Commandstats\r\n")),
            Some((0, 0)),
            "no script ran yet"
        );
        assert_eq!(
            evalsha_stats(&redis::InfoDict::new("cmdstat_evalsha:usec=1\r\n")),
            None,
            "unreadable"
        );
    }

    #[test]
    fn waits_are_means_per_call_and_counts_per_execution() {
        let before = WaitTotals {
            commits: 10,
            commit_seconds: 1.0,
            publishes: 5,
            publish_seconds: 0.5,
        };
        let after = WaitTotals {
            commits: 14,
            commit_seconds: 1.0012,
            publishes: 7,
            publish_seconds: 0.5009,
        };
        let w = Waited::between((before, Some((100, 1_000))), (after, Some((104, 1_480))), 2);
        assert_eq!(w.commits_per_execution, 2.0);
        assert!((w.commit_ms - 0.3).abs() < 1e-9, "{}", w.commit_ms);
        assert_eq!(w.publishes_per_execution, 1.0);
        assert!((w.publish_ms - 0.45).abs() < 1e-9, "{}", w.publish_ms);
        assert_eq!(w.redis_script_ms, Some(0.12));
        let idle = Waited::between((before, None), (before, Some((1, 1))), 3);
        assert_eq!(
            (idle.commit_ms, idle.publish_ms, idle.redis_script_ms),
            (0.0, 0.0, None)
        );
        let reset = Waited::between((before, Some((100, 1_000))), (after, Some((50, 10))), 2);
        assert_eq!(reset.redis_script_ms, None, "statistics reset in between");
    }

    #[test]
    fn bounds_come_from_the_measured_parts() {
        let mut report = BenchReport {
            ceiling_roundtrips_per_sec: 8000.0,
            ceiling_latency_p50_ms: 0.8,
            tasks_per_sec: 4000.0,
            latency_p50_ms: 1.4,
            latency_p99_ms: 3.0,
            pass_transitions_per_sec: 100_000.0,
            details: BenchDetails {
                ceiling_cpu_ms: Some(0.1),
                ceiling_broker_cpu_ms: Some(0.15),
                task_cpu_ms: Some(0.2),
                task_broker_cpu_ms: Some(0.15),
                task_redis_cpu_ms: Some(0.15),
                redis_ping_p50_ms: Some(0.1),
                latency_waited: Waited {
                    commits_per_execution: 2.0,
                    redis_script_ms: Some(0.12),
                    ..Waited::default()
                },
                ..BenchDetails::default()
            },
        };
        let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
        let b = report.bounds();
        // 0.8 + 2 × (0.1 + 0.12)
        assert!(close(b.latency_floor_ms, 1.24), "{b:?}");
        // 4000/s × (0.2 + 0.15 + 0.15) ms = 2 cores; 2000 ms/s ÷ (0.25 + 0.15) ms ÷ 8000/s
        assert!(close(b.cpu.map(|c| c.cores), 2.0), "{b:?}");
        assert!(close(b.cpu.map(|c| c.ratio), 0.625), "{b:?}");
        // 2000 ÷ (0.6 × 8000) − 0.4 ms left; (0.2 + 0.15) − 0.25 ms spent
        assert!(
            close(b.cpu.map(|c| c.budget_ms), 2000.0 / 4800.0 - 0.4),
            "{b:?}"
        );
        assert!(close(b.cpu.map(|c| c.spent_ms), 0.1), "{b:?}");
        let table = report.table();
        assert!(table.contains("= 1.24 ms (1.55 x raw p50)"), "{table}");
        assert!(table.contains("make 0.62 x the ceiling"), "{table}");
        assert!(table.contains("0.017 ms of CPU per task"), "{table}");

        // Each missing reading costs its own estimate only.
        report.details.latency_waited.redis_script_ms = None;
        let b = report.bounds();
        assert_eq!(b.latency_floor_ms, None);
        assert!(close(b.cpu.map(|c| c.ratio), 0.625), "{b:?}");
        assert!(report.table().contains("raw p50 + those = n/a"));
        report.details.latency_waited.redis_script_ms = Some(0.12);
        report.details.redis_ping_p50_ms = None;
        assert_eq!(report.bounds().latency_floor_ms, None);
        report.details.redis_ping_p50_ms = Some(0.1);
        for missing in 0..5 {
            let mut r = report.clone();
            let d = &mut r.details;
            *[
                &mut d.ceiling_cpu_ms,
                &mut d.ceiling_broker_cpu_ms,
                &mut d.task_cpu_ms,
                &mut d.task_broker_cpu_ms,
                &mut d.task_redis_cpu_ms,
            ][missing] = None;
            let b = r.bounds();
            assert!(close(b.latency_floor_ms, 1.24), "{b:?}");
            assert_eq!(b.cpu, None, "reading {missing} missing");
        }
        // No ceiling (or no CPU at all): nothing to divide by.
        report.ceiling_roundtrips_per_sec = 0.0;
        assert_eq!(report.bounds().cpu, None);
        assert!(report.table().contains("make n/a x the ceiling"));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), 100.0);
        assert_eq!(percentile(&mut v, 0.99), 198.0);
        assert_eq!(percentile(&mut [7.0], 0.99), 7.0);
        assert!(percentile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn the_json_has_exactly_the_six_keys() {
        let report = BenchReport {
            ceiling_roundtrips_per_sec: 1000.0,
            ceiling_latency_p50_ms: 1.0,
            tasks_per_sec: 700.0,
            latency_p50_ms: 1.4,
            latency_p99_ms: 11.0,
            pass_transitions_per_sec: 5000.0,
            details: BenchDetails::default(),
        };
        let value = serde_json::to_value(&report).expect("serializes");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ceiling_latency_p50_ms",
                "ceiling_roundtrips_per_sec",
                "latency_p50_ms",
                "latency_p99_ms",
                "pass_transitions_per_sec",
                "tasks_per_sec"
            ]
        );
        let met: Vec<Option<bool>> = report.rows().iter().map(|r| r.met).collect();
        assert_eq!(
            met,
            [None, None, Some(true), None, Some(true), Some(false), None]
        );
        assert!(!report.all_met());
    }
}
