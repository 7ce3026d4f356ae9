//! The coordinator: owns partitions, turns every input of an execution into one interpreter
//! step and one atomic store commit, then publishes the step's outbox.
//!
//! Ownership is a lease per partition with a fencing token ([`Store::acquire_lease`]); every
//! commit carries the token, so a coordinator that lost its lease (paused, partitioned) cannot
//! write. Each owned partition is served by one task that handles its inputs strictly in
//! order: broker deliveries (worker replies, start/stop requests, callbacks) and due timers.
//! Deliveries that are already waiting are taken together as a *group commit*: their steps are
//! prepared one after another, committed in one store round trip (each commit atomic and
//! version-checked on its own) and acked with one acknowledgement; an execution appears at
//! most once per group, so its next input is applied to its committed state.
//! Nothing is published before its commit; after a takeover the new owner first republishes
//! the partition's pending outbox. Inputs are acked only after their commit, so a crash
//! between the two redelivers the input, which the interpreter then ignores (the task or timer
//! it names is gone).
//!
//! Performance: a served partition publishes its outbox from a companion task, woken after
//! each commit that wrote outbox messages, so waiting for the broker's confirmations never
//! holds up the partition's next input (the messages are durable in the store from the commit
//! on; the input is acked after the commit, as always). The committing step hands the
//! messages to the companion in memory, with the sequence numbers the store gave them
//! ([`super::store::outbox_seq`]), so publishing reads nothing; the companion publishes
//! everything handed over at once and acks those sequence numbers after the confirmations
//! (a new owner replays whatever is still unacked from the store). Within one ownership term
//! (one fencing token) this coordinator is the only writer of the partition's executions and
//! timers, so it keeps the executions it just committed in memory (a step then reads nothing
//! before its commit) and learns about new timers from its own commits instead of reading the
//! partition's earliest timer before every input.

use super::broker::{
    ack_in_order, Acker, Broker, Delivery, InputConsumer, InputMessage, StartRequest,
};
use super::cache::TtlCache;
use super::clock::Clock;
use super::metrics::{Metrics, StepMetrics};
use super::store::{
    outbox_seq, partition_of, Commit, ExecutionRecord, Fence, OutboxEntry, OutboxMessage, Snapshot,
    Store, StoreError, SweepStep, TimerEntry,
};
use crate::asl::Definition;
use crate::interp::{Command, Context, Execution, ExecutionStatus, Input, JournalEntry};
use crate::runner::{seed_from, RunIdentity};
use crate::task_token;
use futures_util::future::join_all;
use futures_util::FutureExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use stepline_worker::protocol::{Reply, TaskMessage, PROTOCOL_VERSION};
use stepline_worker::topology::{partition_queue, task_queue, REPLY_EXCHANGE};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Number of partitions executions are hashed to (the same on every coordinator).
    pub partitions: u32,
    /// This process's identity in leases.
    pub owner: String,
    pub lease_ttl_ms: u64,
    /// Most partitions this coordinator takes (others are left for peers).
    pub max_partitions: u32,
    /// HMAC key of task tokens (the same on every coordinator).
    pub token_key: Vec<u8>,
    pub account: String,
    pub region: String,
    /// Longest sleep between timer scans of a partition.
    pub timer_poll_ms: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            partitions: 8,
            owner: format!("coordinator-{}", std::process::id()),
            lease_ttl_ms: 10_000,
            max_partitions: u32::MAX,
            token_key: b"stepline-development-key".to_vec(),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            timer_poll_ms: 250,
        }
    }
}

/// Why an input could not be processed (IO, not ASL failures).
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] super::broker::BrokerError),
    #[error("state machine {0} (revision {1}) not found")]
    MissingDefinition(String, String),
    #[error("stored definition of {0} is invalid: {1}")]
    BadDefinition(String, String),
    #[error("execution snapshot of {0} is unreadable: {1}")]
    BadSnapshot(String, String),
    #[error(transparent)]
    Interp(#[from] crate::interp::InterpError),
}

impl CoordinatorError {
    /// True when retrying cannot help (the input itself is bad), false for IO trouble.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            CoordinatorError::MissingDefinition(..)
                | CoordinatorError::BadDefinition(..)
                | CoordinatorError::BadSnapshot(..)
                | CoordinatorError::Interp(_)
        )
    }
}

/// Drives executions of the partitions it owns.
pub struct Coordinator<S: Store, B: Broker, C: Clock> {
    store: Arc<S>,
    broker: Arc<B>,
    clock: Arc<C>,
    config: CoordinatorConfig,
    /// Compiled definitions by `"<state machine ARN> <revision>"` (revisions never change, so
    /// only the bound matters: throwaway state machines must not grow the process forever).
    definitions: TtlCache<String, Arc<Definition>>,
    /// The activities that exist, read at most [`ACTIVITIES_CACHE_MS`] ago.
    activities: TtlCache<(), Arc<BTreeSet<String>>>,
    /// What the committed steps added up to (served at `/metrics`).
    metrics: Metrics,
    /// Per execution: the callers of [`Coordinator::wait_finished`] waiting for it, each
    /// handed the finished record by the commit that finishes it here.
    finish_waiters: Mutex<HashMap<String, Vec<oneshot::Sender<ExecutionRecord>>>>,
    /// Partitions currently served (for health and tests).
    owned: Mutex<BTreeSet<u32>>,
    /// Executions as this coordinator last committed them (see [`CachedExecution`]).
    executions: Mutex<HashMap<String, CachedExecution>>,
    /// Per served partition: its fencing token and what wakes its outbox publisher.
    publishers: Mutex<HashMap<u32, (u64, Arc<Notify>)>>,
    /// Per partition: the earliest timer committed since its serving task last looked.
    timer_hints: Mutex<HashMap<u32, i64>>,
    /// Per served partition: outbox entries committed but not yet published, handed to its
    /// publisher in memory (so publishing needs no store read; the store keeps them until
    /// acked, for a new owner to replay).
    handoff: Mutex<HashMap<u32, Vec<OutboxEntry>>>,
    /// Per partition: outbox entries the publisher has published (confirmed) but not yet
    /// acked in the store. The execution's next commit acks them (`Commit::outbox_ack`, no
    /// extra store call); the publisher acks those still here one to two [`ACK_TICK`]s later.
    published: Mutex<HashMap<u32, Published>>,
}

/// See [`Coordinator::published`]: execution → highest published seq, in two generations.
/// Every [`ACK_TICK`] the publisher acks `older` and moves `newer` there.
#[derive(Default)]
struct Published {
    newer: HashMap<String, u64>,
    older: HashMap<String, u64>,
}

/// An execution as this coordinator committed it under `fence`. While the coordinator holds
/// that fence nobody else can commit to the execution (commits are fenced), so the entry is
/// exactly what the store holds; under any other fence it is ignored and dropped.
struct CachedExecution {
    fence: Fence,
    /// The record without its snapshot (`exec` is the snapshot, deserialized).
    record: ExecutionRecord,
    exec: Execution,
}

/// An input of a partition, decoded: what it asks of which execution.
enum Decoded {
    /// Create and start (the `Start` message).
    Start(StartRequest),
    /// Apply `inputs` to an existing execution (see [`Coordinator::prepare_step`]).
    Step {
        execution_arn: String,
        inputs: Vec<Input>,
        delivery_only: bool,
    },
}

impl Decoded {
    fn execution_arn(&self) -> &str {
        match self {
            Decoded::Start(StartRequest { execution_arn, .. })
            | Decoded::Step { execution_arn, .. } => execution_arn,
        }
    }
}

/// A step applied to an execution but not committed yet.
struct Prepared {
    commit: Commit,
    after: AfterCommit,
}

/// What [`Coordinator::settle`] does once a step's commit is through.
struct AfterCommit {
    execution_arn: String,
    expected_version: u64,
    /// The record (without snapshot) and execution to keep in memory: a running execution.
    keep: Option<(ExecutionRecord, Execution)>,
    /// The commit's outbox entries, for the publisher.
    handed: Vec<OutboxEntry>,
    earliest_timer: Option<i64>,
    /// The published outbox entries the commit acks (noted again if it fails).
    outbox_ack: Option<u64>,
    /// The finished record, for the execution's waiters.
    done: Option<ExecutionRecord>,
    /// What the step adds to the metrics once it landed.
    metrics: StepMetrics,
}

/// One input of a group commit: its ack handle and its prepared step (`None`: nothing to
/// write, the input is only acked).
type BatchItem = (Box<dyn Acker>, Option<Prepared>);

/// Most inputs of one partition handled as one group commit (one store round trip, one
/// broker acknowledgement).
const INPUT_BATCH: usize = 32;

/// Most executions kept in memory; beyond that, arbitrary ones are dropped (and read from the
/// store at their next input).
const CACHED_EXECUTIONS: usize = 10_000;

/// How long a step may check Task resources against a list of activities read earlier (an
/// activity missing from it is looked up again before the task fails).
const ACTIVITIES_CACHE_MS: i64 = 1_000;

/// Compiled definitions never expire (revisions never change, and a running execution keeps
/// using its own even after its state machine was deleted)…
const DEFINITIONS_CACHE_MS: i64 = i64::MAX;
/// …but at most this many are kept (beyond, any one makes room).
const DEFINITIONS_CACHED: usize = 1_024;

/// How often the index sweep takes a step when the last one found nothing to drop…
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// …or while steps find some (a backlog: at most ten steps a second, so the sweep never
/// crowds out commits)…
const SWEEP_BACKLOG_EVERY: Duration = Duration::from_millis(100);
/// A pass over every index starts at most this often (an idle store is not scanned over and
/// over; expired entries wait that much longer at worst, against a retention of days).
const SWEEP_PASS_EVERY: Duration = Duration::from_secs(60);
/// How many index entries a step looks at.
const SWEEP_BUDGET: usize = 1_000;

/// Most outbox messages read, published and acked in one go.
const OUTBOX_BATCH: usize = 256;

/// How often the publisher acks published outbox entries that no commit acked; an entry
/// waits one to two ticks for its execution's next commit.
const ACK_TICK: Duration = Duration::from_secs(1);

/// How long a partition that stops being served waits for its last outbox messages.
const PUBLISHER_DRAIN: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its map consistent; a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Store, B: Broker, C: Clock> Coordinator<S, B, C> {
    pub fn new(store: Arc<S>, broker: Arc<B>, clock: Arc<C>, config: CoordinatorConfig) -> Self {
        Coordinator {
            store,
            broker,
            clock,
            config,
            definitions: TtlCache::new(DEFINITIONS_CACHE_MS, DEFINITIONS_CACHED),
            activities: TtlCache::new(ACTIVITIES_CACHE_MS, 1),
            metrics: Metrics::new(),
            finish_waiters: Mutex::new(HashMap::new()),
            owned: Mutex::new(BTreeSet::new()),
            executions: Mutex::new(HashMap::new()),
            publishers: Mutex::new(HashMap::new()),
            handoff: Mutex::new(HashMap::new()),
            timer_hints: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
        }
    }

    /// What this coordinator's committed steps added up to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The partitions this coordinator serves right now.
    pub fn owned_partitions(&self) -> BTreeSet<u32> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn broker(&self) -> &Arc<B> {
        &self.broker
    }

    pub fn clock(&self) -> &Arc<C> {
        &self.clock
    }

    /// The partition of an execution.
    pub fn partition_of(&self, execution_arn: &str) -> u32 {
        partition_of(execution_arn, self.config.partitions)
    }

    /// The fence under which this coordinator currently serves `partition`, if it does.
    pub fn local_fence(&self, partition: u32) -> Option<Fence> {
        lock(&self.publishers)
            .get(&partition)
            .map(|(token, _)| Fence {
                partition,
                token: *token,
            })
    }

    /// Creates and starts an execution directly when this coordinator serves its partition
    /// (no broker hop): `Some(true)` created, `Some(false)` it already existed (nothing
    /// written), `None` this coordinator does not serve the partition (the caller sends the
    /// `Start` through the partition queue instead). Safe beside the partition's serving task:
    /// a `Start` is the first input of its execution, so no other input of it can be in
    /// flight, and the commit is fenced and version-checked like every other.
    pub async fn start_locally(
        &self,
        start: StartRequest,
    ) -> Result<Option<bool>, CoordinatorError> {
        let Some(fence) = self.local_fence(self.partition_of(&start.execution_arn)) else {
            return Ok(None);
        };
        match self.create(fence, start).await {
            Ok(created) => Ok(Some(created)),
            // Lost the partition meanwhile: let the queue carry it to the new owner.
            Err(CoordinatorError::Store(StoreError::Fenced { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs until `shutdown`: acquires, renews and serves partitions; releases them on exit.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let sweeper = tokio::spawn(self.clone().sweep_indexes(shutdown.clone()));
        let mut owned: HashMap<u32, (Fence, CancellationToken, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        let tick = Duration::from_millis((self.config.lease_ttl_ms / 3).max(50));
        loop {
            // Drop partitions whose task ended (lost fence, broker gone).
            owned.retain(|_, (_, _, h)| !h.is_finished());
            // Fair share: ceil(partitions / live coordinators), so peers converge on an even
            // split; extra partitions are handed back for a peer to take.
            let members = self
                .store
                .heartbeat_member(&self.config.owner, self.config.lease_ttl_ms)
                .await
                .unwrap_or(1)
                .max(1);
            let share = self
                .config
                .partitions
                .div_ceil(members)
                .min(self.config.max_partitions);
            while owned.len() as u32 > share {
                let Some(&p) = owned.keys().max() else { break };
                if let Some((fence, cancel, handle)) = owned.remove(&p) {
                    tracing::info!(partition = p, members, "handing a partition to a peer");
                    cancel.cancel();
                    let _ = handle.await;
                    let _ = self.store.release_lease(fence, &self.config.owner).await;
                }
            }
            for p in 0..self.config.partitions {
                if let Some((fence, cancel, _)) = owned.get(&p) {
                    match self
                        .store
                        .renew_lease(*fence, &self.config.owner, self.config.lease_ttl_ms)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) | Err(_) => {
                            tracing::warn!(partition = p, "lease lost; stopping partition");
                            cancel.cancel();
                            owned.remove(&p);
                        }
                    }
                    continue;
                }
                if owned.len() as u32 >= share {
                    continue;
                }
                match self
                    .store
                    .acquire_lease(p, &self.config.owner, self.config.lease_ttl_ms)
                    .await
                {
                    Ok(Some(fence)) => {
                        tracing::info!(partition = p, token = fence.token, "partition acquired");
                        let cancel = shutdown.child_token();
                        let me = self.clone();
                        let c2 = cancel.clone();
                        let handle =
                            tokio::spawn(async move { me.serve_partition(fence, c2).await });
                        owned.insert(p, (fence, cancel, handle));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(partition = p, error = %e, "lease acquisition failed"),
                }
            }
            *self.owned.lock().unwrap_or_else(|p| p.into_inner()) = owned.keys().copied().collect();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
        }
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for (_, (fence, cancel, handle)) in owned {
            cancel.cancel();
            let _ = handle.await;
            let _ = self.store.release_lease(fence, &self.config.owner).await;
        }
        let _ = sweeper.await;
    }

    /// Until `shutdown`: sweeps the list indexes of the partitions served here, so the indexes
    /// of state machines nobody lists do not grow for ever: a bounded step every
    /// [`SWEEP_EVERY`] (every [`SWEEP_BACKLOG_EVERY`] while steps find expired executions),
    /// and after a full pass a rest until [`SWEEP_PASS_EVERY`] has passed since it started.
    async fn sweep_indexes(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pass_due = tokio::time::Instant::now();
        let mut cursor = S::SweepCursor::default();
        loop {
            let owned = self.owned_partitions();
            let pause = if owned.is_empty() {
                SWEEP_EVERY
            } else {
                let step = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    step = self.store.sweep_indexes(&mut cursor, &owned, SWEEP_BUDGET) => step,
                };
                match step {
                    // The next step starts another pass: rest until it is due.
                    Ok(SweepStep {
                        pass_over: true, ..
                    }) => {
                        let now = tokio::time::Instant::now();
                        pass_due = (pass_due + SWEEP_PASS_EVERY).max(now + SWEEP_EVERY);
                        pass_due - now
                    }
                    Ok(SweepStep { unlisted: 0, .. }) => SWEEP_EVERY,
                    Ok(SweepStep { unlisted, .. }) => {
                        tracing::debug!(unlisted, "swept expired executions from the indexes");
                        SWEEP_BACKLOG_EVERY
                    }
                    // The store starts over after an error: so does the pass.
                    Err(e) => {
                        tracing::warn!(error = %e, "sweeping the indexes failed");
                        pass_due = tokio::time::Instant::now() + SWEEP_EVERY * 5;
                        SWEEP_EVERY * 5
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Serves one partition until cancelled or fenced out: replays its pending outbox, starts
    /// its outbox publisher, handles its inputs and timers, then lets the publisher send what
    /// the last steps committed.
    async fn serve_partition(self: Arc<Self>, fence: Fence, cancel: CancellationToken) {
        let p = fence.partition;
        let wake = Arc::new(Notify::new());
        if let Err(e) = self.flush_outbox(p).await {
            tracing::warn!(partition = p, error = %e, "outbox replay failed");
            wake.notify_one(); // The publisher tries again at once.
        }
        let failed = CancellationToken::new();
        let stop = CancellationToken::new();
        lock(&self.handoff).remove(&p);
        lock(&self.publishers).insert(p, (fence.token, wake.clone()));
        // Stops the publisher however this task ends, even when it is aborted.
        let stop_guard = stop.clone().drop_guard();
        let publisher = tokio::spawn(self.clone().publish_outbox(p, wake, stop, failed.clone()));
        self.serve_inputs(fence, &cancel, &failed).await;
        {
            let mut publishers = lock(&self.publishers);
            if publishers
                .get(&p)
                .is_some_and(|(token, _)| *token == fence.token)
            {
                publishers.remove(&p);
            }
        }
        lock(&self.executions).retain(|_, c| c.fence != fence);
        drop(stop_guard);
        if tokio::time::timeout(PUBLISHER_DRAIN, publisher)
            .await
            .is_err()
        {
            tracing::warn!(partition = p, "the outbox publisher did not finish in time");
        }
    }

    /// Publishes what commits handed over whenever `wake` fires (wake-ups that arrive
    /// meanwhile coalesce into one batch) and once more when `stop` fires; every [`ACK_TICK`]
    /// acks in the store what was published and no commit acked meanwhile, and everything left
    /// when `stop` fires. On a failure it fires `failed` and ends: the serving task then gives the
    /// partition up, and whoever serves it next republishes what is still pending (duplicates
    /// that every consumer tolerates).
    async fn publish_outbox(
        self: Arc<Self>,
        partition: u32,
        wake: Arc<Notify>,
        stop: CancellationToken,
        failed: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + ACK_TICK, ACK_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The rare tick first, so steady wake-ups cannot starve it.
            let (stopping, acking) = tokio::select! {
                biased;
                _ = ticks.tick() => (false, true),
                _ = stop.cancelled() => (true, true),
                _ = wake.notified() => (false, false),
            };
            let mut done = self.publish_handoff(partition).await;
            if done.is_ok() && acking {
                done = self.ack_published(partition, stopping).await;
            }
            if let Err(e) = done {
                tracing::error!(partition, error = %e, "publishing the outbox failed");
                failed.cancel();
                return;
            }
            if stopping {
                return;
            }
        }
    }

    /// Routes the partition's worker replies to this broker's inbox (if it has one): records
    /// the inbox as the partition's route first, then binds it, then unbinds the route
    /// recorded before when it is another coordinator's (one that died holding the partition
    /// — a graceful one unbinds its own — whose inbox would otherwise keep getting copies),
    /// and retires that inbox once no partition records it. In that order a crash at any
    /// point leaves no binding unrecorded. On a failure the replies keep reaching the
    /// partition queue (through the reply exchange's alternate exchange, or the dead inbox's
    /// TTL): slower, never lost; it is logged.
    async fn take_reply_route(&self, p: u32) {
        let route = match self.broker.reply_inbox().await {
            Ok(Some(route)) => route,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "no inbox: replies go through the partition queue");
                return;
            }
        };
        let swap = match self.store.swap_reply_route(p, &route).await {
            Ok(swap) => swap,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "cannot record the reply route: replies go through the partition queue");
                return;
            }
        };
        if let Err(e) = self.broker.route_replies(p).await {
            tracing::warn!(partition = p, error = %e, "cannot route replies to the inbox");
        }
        let Some(previous) = swap.previous.filter(|previous| *previous != route) else {
            return;
        };
        tracing::info!(partition = p, %previous, "unbinding the previous owner's inbox");
        if let Err(e) = self.broker.unroute(p, &previous).await {
            // Its copies of the partition's replies reach the partition queue after the TTL
            // (duplicates, dropped) until it is retired, or its partitions change hands.
            tracing::warn!(partition = p, %previous, error = %e, "cannot unbind the previous owner's inbox");
        }
        if !swap.previous_in_use {
            self.broker.retire_route(&previous, self.config.partitions);
        }
    }

    /// Handles a partition's inputs and due timers, one at a time, until cancelled, fenced
    /// out, or the store, broker or outbox publisher fails (then the lease is released).
    async fn serve_inputs(
        &self,
        fence: Fence,
        cancel: &CancellationToken,
        publish_failed: &CancellationToken,
    ) {
        let p = fence.partition;
        let mut consumer = match self.broker.consume_inputs(p).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition = p, error = %e, "cannot consume partition inputs");
                return;
            }
        };
        self.take_reply_route(p).await;
        self.serve_consumer(fence, cancel, publish_failed, &mut consumer)
            .await;
        // The partition's replies stop coming here before anyone else may serve it.
        consumer.close().await;
    }

    /// [`Coordinator::serve_inputs`]'s loop over the partition's consumer.
    async fn serve_consumer(
        &self,
        fence: Fence,
        cancel: &CancellationToken,
        publish_failed: &CancellationToken,
        consumer: &mut B::Consumer,
    ) {
        let p = fence.partition;
        let poll_ms = self.config.timer_poll_ms as i64;
        // The partition's earliest timer: read at least every poll interval and after timers
        // fire; timers this coordinator commits in between arrive through `timer_hints`. Only
        // the owner adds timers, so the value is never later than the truth (removed timers
        // only make it early: a wake-up that finds nothing due, then a fresh read).
        let mut next_timer: Option<i64> = None;
        let mut timers_read_at: Option<i64> = None;
        loop {
            let now = self.clock.now_ms();
            if timers_read_at.is_none_or(|at| now - at >= poll_ms) {
                next_timer = self.store.next_timer(p).await.unwrap_or(None);
                timers_read_at = Some(now);
            }
            if let Some(hint) = lock(&self.timer_hints).remove(&p) {
                next_timer = Some(next_timer.map_or(hint, |at| at.min(hint)));
            }
            let sleep_ms = next_timer.map_or(poll_ms, |at| (at - now).clamp(0, poll_ms));
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = publish_failed.cancelled() => {
                    tracing::error!(partition = p, "outbox publishing failed; releasing the partition");
                    let _ = self.store.release_lease(fence, &self.config.owner).await;
                    return;
                }
                d = consumer.next() => match d {
                    None => return,
                    Some(first) => {
                        // Group commit: whatever else has arrived already goes with it.
                        let mut batch = vec![first];
                        while batch.len() < INPUT_BATCH {
                            match consumer.next().now_or_never() {
                                Some(Some(d)) => batch.push(d),
                                _ => break,
                            }
                        }
                        self.handle_batch(fence, batch).await
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {
                    timers_read_at = None;
                    self.fire_due_timers(fence).await
                }
            };
            match result {
                Ok(()) => {}
                Err(CoordinatorError::Store(StoreError::Fenced { .. })) => {
                    tracing::warn!(partition = p, "fenced out by a newer owner");
                    return;
                }
                Err(e) if e.is_permanent() => {}
                Err(e) => {
                    // Give the partition up so its unacked input is redelivered, to us or a
                    // peer, once the store or broker is back.
                    tracing::error!(partition = p, error = %e, "input failed; releasing the partition");
                    let _ = self.store.release_lease(fence, &self.config.owner).await;
                    return;
                }
            }
        }
    }

    /// Handles inputs of a partition in arrival order as group commits: each input's step is
    /// prepared, then the steps are committed together ([`Store::commit_all`]: one round trip,
    /// each commit atomic on its own) and the inputs acked together. An execution's second
    /// input in the batch first commits those before it, so it is applied to the committed
    /// state. Permanent problems (a message naming a deleted definition, an unreadable
    /// snapshot) would fail forever: they are logged and their input acked. A transient one
    /// (store or broker down) ends the batch: what was prepared before it is committed and
    /// acked, and it and the inputs after it stay unacked (the caller gives the partition up,
    /// so they are redelivered).
    async fn handle_batch(
        &self,
        fence: Fence,
        batch: Vec<Delivery>,
    ) -> Result<(), CoordinatorError> {
        let p = fence.partition;
        let mut items: Vec<BatchItem> = Vec::with_capacity(batch.len());
        let mut executions: std::collections::HashSet<String> = Default::default();
        for d in batch {
            let Some(decoded) = self.decode(d.message) else {
                items.push((d.acker, None));
                continue;
            };
            if !executions.insert(decoded.execution_arn().to_string()) {
                self.commit_batch(fence, std::mem::take(&mut items)).await?;
                executions.clear();
                executions.insert(decoded.execution_arn().to_string());
            }
            match self.prepare_input(fence, decoded).await {
                Ok(prepared) => items.push((d.acker, prepared)),
                Err(e) if e.is_permanent() => {
                    dropping_input(p, &e);
                    items.push((d.acker, None));
                }
                Err(e) => {
                    self.commit_batch(fence, items).await?;
                    return Err(e);
                }
            }
        }
        self.commit_batch(fence, items).await
    }

    /// Commits the prepared steps of `items` together, settles each, and acks the inputs:
    /// all with one acknowledgement when every one succeeded (or failed permanently), else
    /// only those that did, one by one, returning the first transient error.
    async fn commit_batch(
        &self,
        fence: Fence,
        items: Vec<BatchItem>,
    ) -> Result<(), CoordinatorError> {
        let mut ackers = Vec::with_capacity(items.len());
        let mut commits = Vec::new();
        let mut afters = Vec::new();
        for (i, (acker, prepared)) in items.into_iter().enumerate() {
            ackers.push(Some(acker));
            if let Some(Prepared { commit, after }) = prepared {
                commits.push(commit);
                afters.push((i, after));
            }
        }
        let results = if commits.is_empty() {
            Vec::new()
        } else {
            let sent = Instant::now();
            let results = self.store.commit_all(commits).await;
            self.metrics.observe_commit(sent.elapsed());
            results
        };
        let mut first_error = None;
        for ((i, after), committed) in afters.into_iter().zip(results) {
            match self.settle(fence, after, committed).await {
                Ok(_) => {}
                Err(e) if e.is_permanent() => dropping_input(fence.partition, &e),
                Err(e) => {
                    ackers[i] = None; // Not acked: redelivered once the partition is given up.
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut ackers: Vec<_> = ackers.into_iter().flatten().collect();
        if let Some(last) = ackers.pop() {
            let acked = match first_error {
                None => last.ack_with(ackers).await,
                // Not every earlier delivery is in `ackers`: no acknowledgement for all.
                Some(_) => ack_in_order(ackers, last.ack()).await,
            };
            if let Err(e) = acked {
                tracing::warn!(partition = fence.partition, error = %e, "ack failed");
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn fire_due_timers(&self, fence: Fence) -> Result<(), CoordinatorError> {
        let due = self
            .store
            .due_timers(fence.partition, self.clock.now_ms(), 256)
            .await?;
        for t in due {
            let arn = t.execution_arn.clone();
            self.step(fence, &arn, Input::TimerFired { timer: t.timer }, Some(t))
                .await?;
        }
        Ok(())
    }

    /// Publishes every pending outbox message of a partition, then acks them. The messages
    /// of one read are published concurrently (their confirmations are awaited together), and
    /// nothing of the read is acked unless all of them were confirmed.
    pub async fn flush_outbox(&self, partition: u32) -> Result<(), CoordinatorError> {
        loop {
            let pending = self.store.pending_outbox(partition, OUTBOX_BATCH).await?;
            if pending.is_empty() {
                return Ok(());
            }
            let published = self.publish(&pending).await?;
            self.ack(partition, published).await?;
            // A short read took everything pending when it was made; later commits wake the
            // publisher (or flush) themselves.
            if pending.len() < OUTBOX_BATCH {
                return Ok(());
            }
        }
    }

    /// After a commit that wrote outbox messages: hands them to the partition's publisher and
    /// wakes it, or publishes what the store holds here when no publisher serves the partition
    /// under `fence` any more (a local start that raced the partition's release).
    async fn publish_committed(
        &self,
        fence: Fence,
        entries: Vec<OutboxEntry>,
    ) -> Result<(), CoordinatorError> {
        let publisher = lock(&self.publishers)
            .get(&fence.partition)
            .filter(|(token, _)| *token == fence.token)
            .map(|(_, wake)| wake.clone());
        match publisher {
            Some(wake) => {
                lock(&self.handoff)
                    .entry(fence.partition)
                    .or_default()
                    .extend(entries);
                wake.notify_one();
                Ok(())
            }
            None => self.flush_outbox(fence.partition).await,
        }
    }

    /// Publishes the entries handed over in memory (concurrently; confirmations awaited
    /// together), then notes them as published: each execution's next commit acks them in the
    /// store, or [`Self::ack_published`] does. On an error nothing more is noted: the entries
    /// stay in the store for whoever serves the partition next.
    async fn publish_handoff(&self, partition: u32) -> Result<(), CoordinatorError> {
        loop {
            let pending = lock(&self.handoff)
                .get_mut(&partition)
                .map(std::mem::take)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            for (arn, seq) in self.publish(&pending).await? {
                self.note_published(partition, arn, seq);
            }
        }
    }

    /// Acks in the store what was published for `partition` and no commit acked since the
    /// previous tick (with `all`, everything), and starts the next generation.
    async fn ack_published(&self, partition: u32, all: bool) -> Result<(), CoordinatorError> {
        let due = {
            let mut published = lock(&self.published);
            let Some(p) = published.get_mut(&partition) else {
                return Ok(());
            };
            let mut due = std::mem::replace(&mut p.older, std::mem::take(&mut p.newer));
            if all {
                due.extend(p.older.drain());
            }
            if p.older.is_empty() {
                published.remove(&partition);
            }
            due
        };
        self.ack(partition, due.iter().map(|(arn, seq)| (arn.as_str(), *seq)))
            .await
    }

    /// Records that `execution_arn`'s outbox entries up to `seq` were published.
    fn note_published(&self, partition: u32, execution_arn: &str, seq: u64) {
        let mut published = lock(&self.published);
        let s = published
            .entry(partition)
            .or_default()
            .newer
            .entry(execution_arn.to_string())
            .or_default();
        *s = (*s).max(seq);
    }

    /// Takes what was published of `execution_arn`'s outbox for its next commit to ack.
    fn take_published(&self, partition: u32, execution_arn: &str) -> Option<u64> {
        let mut published = lock(&self.published);
        let p = published.get_mut(&partition)?;
        let newer = p.newer.remove(execution_arn);
        let older = p.older.remove(execution_arn);
        newer.max(older)
    }

    /// Publishes `pending` (concurrently; the confirmations awaited together) and returns, per
    /// execution, the highest seq published; an error if any publish failed.
    async fn publish<'a>(
        &self,
        pending: &'a [OutboxEntry],
    ) -> Result<HashMap<&'a str, u64>, CoordinatorError> {
        join_all(pending.iter().map(|entry| async move {
            let sent = Instant::now();
            let published = match &entry.message {
                OutboxMessage::Task { queue, message } => {
                    self.broker.publish_task(queue, message).await
                }
                OutboxMessage::Cancel { task_token } => {
                    self.broker.publish_cancel(task_token).await
                }
            };
            self.metrics.observe_publish(sent.elapsed());
            published
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
        let mut last: HashMap<&str, u64> = HashMap::new();
        for entry in pending {
            let l = last.entry(entry.execution_arn.as_str()).or_default();
            *l = (*l).max(entry.seq);
        }
        Ok(last)
    }

    /// Acks outbox entries in the store: per execution, those up to the seq given.
    async fn ack<'a>(
        &self,
        partition: u32,
        published: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<(), CoordinatorError> {
        join_all(
            published
                .into_iter()
                .map(|(arn, seq)| self.store.ack_outbox(partition, arn, seq)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    /// Takes the cached execution if it was committed under `fence` (any other entry is
    /// dropped).
    fn take_cached(&self, fence: Fence, arn: &str) -> Option<(ExecutionRecord, Execution)> {
        let hit = lock(&self.executions).remove(arn)?;
        (hit.fence == fence).then_some((hit.record, hit.exec))
    }

    fn remember(&self, fence: Fence, record: ExecutionRecord, exec: Execution) {
        let mut cache = lock(&self.executions);
        if cache.len() >= CACHED_EXECUTIONS && !cache.contains_key(&record.execution_arn) {
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(
            record.execution_arn.clone(),
            CachedExecution {
                fence,
                record,
                exec,
            },
        );
    }

    /// What an input asks for, and of which execution; `None` for a reply whose task token
    /// is invalid (dropped with a warning).
    fn decode(&self, msg: InputMessage) -> Option<Decoded> {
        Some(match msg {
            InputMessage::Start(start) => Decoded::Start(start),
            InputMessage::Stop {
                execution_arn,
                error,
                cause,
            } => Decoded::Step {
                execution_arn,
                inputs: vec![Input::Stop { error, cause }],
                delivery_only: false,
            },
            InputMessage::Redrive {
                execution_arn,
                redrive_count,
            } => Decoded::Step {
                execution_arn,
                inputs: vec![Input::Redrive { redrive_count }],
                delivery_only: false,
            },
            msg @ (InputMessage::Worker { .. } | InputMessage::Callback { .. }) => {
                let from_worker = matches!(msg, InputMessage::Worker { .. });
                let (InputMessage::Worker { reply } | InputMessage::Callback { reply }) = msg
                else {
                    return None;
                };
                let Some((execution_arn, task)) =
                    task_token::verify(&self.config.token_key, reply.task_token())
                else {
                    tracing::warn!("dropping a reply with an invalid task token");
                    return None;
                };
                let inputs = reply_inputs(reply, task);
                // A worker's success reply to a `.waitForTaskToken` task's message only
                // confirms delivery; the result comes through the token.
                let delivery_only = from_worker
                    && inputs
                        .iter()
                        .any(|i| matches!(i, Input::TaskSucceeded { .. }));
                Decoded::Step {
                    execution_arn,
                    inputs,
                    delivery_only,
                }
            }
        })
    }

    /// Applies a decoded input: the commit to write, or `None` when nothing is to be written.
    async fn prepare_input(
        &self,
        fence: Fence,
        decoded: Decoded,
    ) -> Result<Option<Prepared>, CoordinatorError> {
        match decoded {
            Decoded::Start(start) => self.prepare_create(fence, start).await,
            Decoded::Step {
                execution_arn,
                inputs,
                delivery_only,
            } => {
                self.prepare_step(fence, &execution_arn, inputs, None, delivery_only)
                    .await
            }
        }
    }

    /// Creates and starts an execution from a `Start` input; `Ok(false)` when it already
    /// existed (the input was a duplicate or reused a name: nothing is written).
    async fn create(&self, fence: Fence, start: StartRequest) -> Result<bool, CoordinatorError> {
        let prepared = self.prepare_create(fence, start).await?;
        self.commit_one(fence, prepared).await
    }

    /// The commit creating and starting an execution from a `Start` input; `None` when it
    /// exists (as far as this coordinator can tell without a read).
    async fn prepare_create(
        &self,
        fence: Fence,
        start: StartRequest,
    ) -> Result<Option<Prepared>, CoordinatorError> {
        let StartRequest {
            execution_arn,
            state_machine_arn,
            revision_id,
            name,
            input,
            start_ms,
        } = start;
        // Starting is idempotent (a duplicate delivery, a reused name). Without a read
        // first: creating commits at version 0, which fails with `AlreadyExists` when
        // the execution exists, and that ends the input as a no-op.
        if lock(&self.executions)
            .get(&execution_arn)
            .is_some_and(|c| c.fence == fence)
        {
            return Ok(None);
        }
        let def = match self.definition(&state_machine_arn, &revision_id).await {
            Ok(def) => def,
            Err(e) => {
                if self.store.get_execution(&execution_arn).await?.is_some() {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        let sm_name = super::arn_name(&state_machine_arn).to_string();
        let identity = RunIdentity {
            account: self.config.account.clone(),
            region: self.config.region.clone(),
            state_machine_name: sm_name,
            execution_name: name.clone(),
            role_arn: None,
            express: false,
            execution_arn: Some(execution_arn.clone()),
        };
        let info = identity.info(input.clone(), start_ms, seed_from(&execution_arn));
        let exec = Execution::new(info);
        let record = ExecutionRecord {
            execution_arn: execution_arn.clone(),
            state_machine_arn,
            revision_id,
            name,
            partition: fence.partition,
            status: ExecutionStatus::Running,
            start_ms,
            stop_ms: None,
            input,
            output: None,
            error: None,
            cause: None,
            version: 0,
            snapshot: Snapshot::default(),
        };
        self.prepare(fence, record, exec, &def, vec![Input::Start], None)
            .await
    }

    /// Loads an execution and applies one input to it, committed on its own.
    async fn step(
        &self,
        fence: Fence,
        execution_arn: &str,
        input: Input,
        fired: Option<TimerEntry>,
    ) -> Result<(), CoordinatorError> {
        let prepared = self
            .prepare_step(fence, execution_arn, vec![input], fired, false)
            .await?;
        self.commit_one(fence, prepared).await.map(|_| ())
    }

    /// Loads an execution and applies one or more inputs to it in order (committed
    /// together); with `delivery_only`, a task success for a `.waitForTaskToken` task is
    /// dropped (the worker only handled the task's message).
    async fn prepare_step(
        &self,
        fence: Fence,
        execution_arn: &str,
        mut inputs: Vec<Input>,
        fired: Option<TimerEntry>,
        delivery_only: bool,
    ) -> Result<Option<Prepared>, CoordinatorError> {
        let (record, exec) = match self.take_cached(fence, execution_arn) {
            Some(hit) => hit,
            None => match self.load_execution(execution_arn).await? {
                Some(loaded) => loaded,
                None => return Ok(None), // Expired or never existed: nothing to do.
            },
        };
        let def = self
            .definition(&record.state_machine_arn, &record.revision_id)
            .await?;
        if delivery_only {
            inputs.retain(|i| match i {
                Input::TaskSucceeded { task, .. } => !exec.is_callback_task(&def, *task),
                _ => true,
            });
            if inputs.is_empty() {
                self.remember(fence, record, exec);
                return Ok(None);
            }
        }
        self.prepare(fence, record, exec, &def, inputs, fired).await
    }

    /// An execution as the store holds it: its record (the snapshot taken out) and its
    /// interpreter state; `None` when it does not exist.
    async fn load_execution(
        &self,
        execution_arn: &str,
    ) -> Result<Option<(ExecutionRecord, Execution)>, CoordinatorError> {
        let Some(mut record) = self.store.get_execution(execution_arn).await? else {
            return Ok(None);
        };
        let exec = std::mem::take(&mut record.snapshot)
            .parse()
            .map_err(|e| CoordinatorError::BadSnapshot(execution_arn.to_string(), e.to_string()))?;
        Ok(Some((record, exec)))
    }

    /// The activities that exist, cached for a second; `fresh` re-reads them.
    async fn known_activities(
        &self,
        fresh: bool,
    ) -> Result<Arc<BTreeSet<String>>, CoordinatorError> {
        let now = self.clock.now_ms();
        let load = || async {
            let mut set = BTreeSet::new();
            let mut token = None;
            loop {
                let page = self.store.list_activities(1000, token).await?;
                set.extend(page.items.into_iter().map(|a| a.arn));
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            Ok(Arc::new(set))
        };
        if fresh {
            self.activities.refresh(&(), now, load).await
        } else {
            self.activities.get(&(), now, load).await
        }
    }

    /// Applies `inputs`: the step's commit and what follows it, or `None` when there is
    /// nothing to write (a stale or duplicate input).
    async fn prepare(
        &self,
        fence: Fence,
        mut record: ExecutionRecord,
        mut exec: Execution,
        def: &Definition,
        inputs: Vec<Input>,
        fired: Option<TimerEntry>,
    ) -> Result<Option<Prepared>, CoordinatorError> {
        let now = self.clock.now_ms();
        // Only the activities this definition names matter to the step, so only they are
        // journaled (replay sees the same answers), however many exist.
        let relevant = |known: &BTreeSet<String>| -> BTreeSet<String> {
            def.activity_resources()
                .filter(|a| known.contains(*a))
                .map(str::to_string)
                .collect()
        };
        let mut ctx = Context {
            now_ms: now,
            token_key: self.config.token_key.clone(),
            activities: Some(relevant(&*self.known_activities(false).await?)),
        };
        // A new execution is cheap to keep for a second try (see below).
        let pristine = (record.version == 0).then(|| exec.clone());
        let span = tracing::debug_span!("step", execution = %record.execution_arn);
        let _enter = span.enter();
        let mut step = apply_all(&mut exec, def, &inputs, &ctx)?;
        drop(_enter);
        if !step.missing_activities.is_empty() {
            // The cached activity list may predate a CreateActivity: re-read it, and if a
            // missing activity exists after all, apply the input again to the execution as it
            // was before this (uncommitted) step.
            let fresh = self.known_activities(true).await?;
            if step.missing_activities.iter().any(|a| fresh.contains(a)) {
                exec = match pristine {
                    Some(e) => e,
                    None => match self.load_execution(&record.execution_arn).await? {
                        Some((_, stored)) => stored,
                        None => return Ok(None),
                    },
                };
                ctx.activities = Some(relevant(&fresh));
                step = apply_all(&mut exec, def, &inputs, &ctx)?;
            }
        }
        let activities = ctx.activities.clone();
        let nothing_changed = step.events.is_empty() && step.commands.is_empty();
        if nothing_changed && fired.is_none() && record.version > 0 {
            return Ok(None); // A stale or duplicate input: exactly-once transitions.
        }
        let metrics = StepMetrics::of(
            &record.state_machine_arn,
            // A redriven execution's run is timed from its redrive.
            exec.redrive_ms.unwrap_or(record.start_ms),
            exec.stop_ms,
            &step.events,
            &step.commands,
            std::mem::take(&mut step.ended_tasks),
        );
        let partition = fence.partition;
        let mut outbox = Vec::new();
        let mut timers_add = Vec::new();
        let mut timers_remove: Vec<TimerEntry> = fired.into_iter().collect();
        for c in &step.commands {
            match c {
                Command::DispatchTask(d) => outbox.push(OutboxMessage::Task {
                    queue: task_queue(&d.resource),
                    message: TaskMessage {
                        version: PROTOCOL_VERSION,
                        task_token: d.token.clone(),
                        resource: d.resource.clone(),
                        execution_arn: record.execution_arn.clone(),
                        state_name: d.state_name.clone(),
                        input: d.input.clone(),
                        attempt: d.attempt,
                        timeout_seconds: d.timeout_seconds,
                        heartbeat_seconds: d.heartbeat_seconds,
                        deadline_ms: d
                            .timeout_seconds
                            .map(|t| now.saturating_add(t as i64 * 1000)),
                        reply_to: partition_queue(partition),
                        reply_exchange: Some(REPLY_EXCHANGE.to_string()),
                    },
                }),
                Command::CancelTask { task } => outbox.push(OutboxMessage::Cancel {
                    task_token: task_token::mint(
                        &self.config.token_key,
                        &record.execution_arn,
                        *task,
                    ),
                }),
                Command::ScheduleTimer { timer, fire_at_ms } => timers_add.push(TimerEntry {
                    partition,
                    execution_arn: record.execution_arn.clone(),
                    timer: *timer,
                    fire_at_ms: *fire_at_ms,
                }),
                Command::CancelTimer { timer } => timers_remove.push(TimerEntry {
                    partition,
                    execution_arn: record.execution_arn.clone(),
                    timer: *timer,
                    fire_at_ms: 0,
                }),
                Command::ExecutionFinished { .. } => {}
            }
        }
        let expected_version = record.version;
        record.version += 1;
        record.status = exec.status;
        record.stop_ms = exec.stop_ms;
        record.output = exec.output.as_deref().cloned();
        record.error = exec.error.clone();
        record.cause = exec.cause.clone();
        let snapshot = Snapshot::of(&exec).map_err(|e| {
            CoordinatorError::BadSnapshot(record.execution_arn.clone(), e.to_string())
        })?;
        let finished = record.status != ExecutionStatus::Running;
        // What stays in memory after the commit: the record without its snapshot, while the
        // execution runs (a finished one gets no more steps worth caching).
        record.snapshot = Snapshot::default();
        let keep = (!finished).then(|| record.clone());
        record.snapshot = snapshot;
        // The callers waiting for this execution to finish get the record as committed. A
        // waiter that registers after this check finds the execution out of the cache (a step
        // takes it out while it runs), so it reads the store: it sees this commit at that read
        // or at its next poll.
        let done = (finished && lock(&self.finish_waiters).contains_key(&record.execution_arn))
            .then(|| record.clone());
        // What the publisher sends once the commit succeeded, with the sequence numbers the
        // store gives these messages (so it can ack them without reading the outbox).
        let handed: Vec<OutboxEntry> = outbox
            .iter()
            .enumerate()
            .map(|(i, message)| OutboxEntry {
                execution_arn: record.execution_arn.clone(),
                seq: outbox_seq(record.version, i),
                message: message.clone(),
            })
            .collect();
        let earliest_timer = timers_add.iter().map(|t| t.fire_at_ms).min();
        // What the publisher published of this execution: acked by this commit.
        let outbox_ack = self.take_published(partition, &record.execution_arn);
        let after = AfterCommit {
            execution_arn: record.execution_arn.clone(),
            expected_version,
            keep: keep.map(|record| (record, exec)),
            handed,
            earliest_timer,
            outbox_ack,
            done,
            metrics,
        };
        let commit = Commit {
            fence,
            expected_version,
            execution: record,
            events: step.events,
            journal: inputs
                .into_iter()
                .map(|input| JournalEntry {
                    now_ms: now,
                    input,
                    activities: activities.clone(),
                })
                .collect(),
            outbox,
            timers_add,
            timers_remove,
            outbox_ack,
        };
        Ok(Some(Prepared { commit, after }))
    }

    /// Commits one prepared step (none: nothing to write) and settles it; `Ok(false)` when
    /// nothing was written.
    async fn commit_one(
        &self,
        fence: Fence,
        prepared: Option<Prepared>,
    ) -> Result<bool, CoordinatorError> {
        let Some(Prepared { commit, after }) = prepared else {
            return Ok(false);
        };
        let sent = Instant::now();
        let committed = self.store.commit(commit).await;
        self.metrics.observe_commit(sent.elapsed());
        self.settle(fence, after, committed).await
    }

    /// What follows a step's commit, once its outcome is known: on success the execution is
    /// kept in memory, its timers noted, its outbox handed to the publisher and its waiters
    /// told; `Ok(false)` when the commit created nothing (the execution existed).
    async fn settle(
        &self,
        fence: Fence,
        after: AfterCommit,
        committed: Result<(), StoreError>,
    ) -> Result<bool, CoordinatorError> {
        let partition = fence.partition;
        if let (Err(_), Some(seq)) = (&committed, after.outbox_ack) {
            // Not acked after all: the publisher acks it later.
            self.note_published(partition, &after.execution_arn, seq);
        }
        match committed {
            Ok(()) => {}
            // Creating an execution that exists: a duplicate Start, a no-op.
            Err(StoreError::AlreadyExists(_)) if after.expected_version == 0 => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.metrics.record(&after.metrics);
        if let Some((record, exec)) = after.keep {
            self.remember(fence, record, exec);
        }
        if let Some(at) = after.earliest_timer {
            lock(&self.timer_hints)
                .entry(partition)
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        if !after.handed.is_empty() {
            self.publish_committed(fence, after.handed).await?;
        }
        if let Some(done) = after.done {
            let waiters = lock(&self.finish_waiters).remove(&done.execution_arn);
            for waiter in waiters.into_iter().flatten() {
                let _ = waiter.send(done.clone());
            }
        }
        Ok(true)
    }

    /// The compiled definition of a state machine revision (cached).
    pub async fn definition(
        &self,
        state_machine_arn: &str,
        revision_id: &str,
    ) -> Result<Arc<Definition>, CoordinatorError> {
        let key = format!("{state_machine_arn} {revision_id}");
        let now = self.clock.now_ms();
        self.definitions
            .get(key.as_str(), now, || async {
                let sm = self
                    .store
                    .get_state_machine_revision(state_machine_arn, revision_id)
                    .await?
                    .ok_or_else(|| {
                        CoordinatorError::MissingDefinition(
                            state_machine_arn.into(),
                            revision_id.into(),
                        )
                    })?;
                let def = Definition::parse_text(&sm.definition, sm.machine_type).map_err(|e| {
                    CoordinatorError::BadDefinition(state_machine_arn.into(), e.to_string())
                })?;
                Ok(Arc::new(def))
            })
            .await
    }

    /// Waits until the execution is no longer RUNNING (or `timeout` passes); returns its record.
    ///
    /// An execution that finishes under this coordinator hands its record over at once (no
    /// store read); one driven by another coordinator is seen by reading the store, every
    /// 50 ms at first and less often the longer it runs (at most every second). While the
    /// execution runs here (cached under the partition's current fence, so its finish will be
    /// handed over), the store is read only once a second, in case the fence was lost.
    pub async fn wait_finished(
        &self,
        execution_arn: &str,
        timeout: Duration,
    ) -> Result<Option<ExecutionRecord>, CoordinatorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Declared before the receiver, so it is dropped after it and prunes its sender.
        let _registered = WaiterGuard {
            waiters: &self.finish_waiters,
            execution_arn,
        };
        let (tx, mut finished) = oneshot::channel();
        lock(&self.finish_waiters)
            .entry(execution_arn.to_string())
            .or_default()
            .push(tx);
        let mut listening = true;
        let mut poll = Duration::from_millis(50);
        // Running here, the execution's cache entry stands for a read, for a second at a time.
        let mut read_at = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            let here = listening && self.running_here(execution_arn);
            if !here || now - read_at >= Duration::from_secs(1) || now >= deadline {
                let rec = self.store.get_execution(execution_arn).await?;
                read_at = now;
                let over = rec
                    .as_ref()
                    .is_some_and(|r| r.status != ExecutionStatus::Running);
                if over || now >= deadline {
                    return Ok(rec);
                }
            }
            tokio::select! {
                done = &mut finished, if listening => match done {
                    Ok(record) => return Ok(Some(record)),
                    // The sender is gone unsent: only the store tells from now on.
                    Err(_) => listening = false,
                },
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            poll = (poll * 3 / 2).min(Duration::from_secs(1));
        }
    }
}

impl<S: Store, B: Broker, C: Clock> Coordinator<S, B, C> {
    /// True when the execution runs under this coordinator: cached as committed under the
    /// fence its partition is served with now.
    fn running_here(&self, execution_arn: &str) -> bool {
        self.local_fence(self.partition_of(execution_arn))
            .is_some_and(|fence| {
                lock(&self.executions)
                    .get(execution_arn)
                    .is_some_and(|c| c.fence == fence)
            })
    }
}

/// Removes a finished or abandoned [`Coordinator::wait_finished`] call's sender (and the
/// execution's entry once nobody waits for it).
struct WaiterGuard<'a> {
    waiters: &'a Mutex<HashMap<String, Vec<oneshot::Sender<ExecutionRecord>>>>,
    execution_arn: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = lock(self.waiters);
        if let Some(list) = waiters.get_mut(self.execution_arn) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(self.execution_arn);
            }
        }
    }
}

/// The interpreter inputs of a worker reply for `task`: a `Finished` reply is `TaskStarted`
/// followed by its result.
fn reply_inputs(reply: Reply, task: u64) -> Vec<Input> {
    match reply {
        Reply::Started { worker_name, .. } => vec![Input::TaskStarted { task, worker_name }],
        Reply::Succeeded { output, .. } => vec![Input::TaskSucceeded { task, output }],
        Reply::Failed { error, cause, .. } => vec![Input::TaskFailed { task, error, cause }],
        Reply::Heartbeat { .. } => vec![Input::TaskHeartbeat { task }],
        Reply::Finished {
            worker_name,
            result,
            ..
        } => {
            let mut inputs = vec![Input::TaskStarted { task, worker_name }];
            // A nested `Finished` or `Started` makes no sense; only results count.
            inputs.extend(
                reply_inputs(*result, task).into_iter().filter(|i| {
                    matches!(i, Input::TaskSucceeded { .. } | Input::TaskFailed { .. })
                }),
            );
            inputs
        }
    }
}

/// Logs an input that is dropped (acked without effect) because it can never be processed:
/// a message naming a deleted definition, an unreadable snapshot.
fn dropping_input(partition: u32, e: &CoordinatorError) {
    tracing::error!(partition, error = %e, "dropping an input that cannot be processed");
}

/// Applies `inputs` in order; one [`Step`] with all their events and commands.
fn apply_all(
    exec: &mut Execution,
    def: &Definition,
    inputs: &[Input],
    ctx: &Context,
) -> Result<crate::interp::Step, crate::interp::InterpError> {
    let mut all = crate::interp::Step::default();
    for input in inputs {
        all.append(exec.apply(def, input, ctx)?);
    }
    Ok(all)
}
