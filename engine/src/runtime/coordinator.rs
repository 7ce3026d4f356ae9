//! The coordinator: owns partitions, turns every input of an execution into one interpreter
//! step and one atomic store commit, then publishes the step's outbox.
//!
//! Ownership is a lease per partition with a fencing token ([`Store::acquire_lease`]); every
//! commit carries the token, so a coordinator that lost its lease (paused, partitioned) cannot
//! write. Each owned partition is served by one task that handles its inputs strictly one at a
//! time: broker deliveries (worker replies, start/stop requests, callbacks) and due timers.
//! Nothing is published before its commit; after a takeover the new owner first republishes
//! the partition's pending outbox. Inputs are acked only after their commit, so a crash
//! between the two redelivers the input, which the interpreter then ignores (the task or timer
//! it names is gone).

use super::broker::{Broker, InputConsumer, InputMessage};
use super::clock::Clock;
use super::store::{
    partition_of, Commit, ExecutionRecord, Fence, OutboxMessage, Store, StoreError, TimerEntry,
};
use crate::asl::Definition;
use crate::interp::{Command, Context, Execution, ExecutionStatus, Input, JournalEntry};
use crate::runner::{seed_from, RunIdentity};
use crate::task_token;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stepline_worker::protocol::{Reply, TaskMessage, PROTOCOL_VERSION};
use stepline_worker::topology::{partition_queue, task_queue};
use tokio::sync::Notify;
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
    definitions: Mutex<HashMap<(String, String), Arc<Definition>>>,
    activities: Mutex<Option<(i64, BTreeSet<String>)>>,
    /// Woken whenever an execution this process drives finishes.
    finished: Notify,
    /// Partitions currently served (for health and tests).
    owned: Mutex<BTreeSet<u32>>,
}

impl<S: Store, B: Broker, C: Clock> Coordinator<S, B, C> {
    pub fn new(store: Arc<S>, broker: Arc<B>, clock: Arc<C>, config: CoordinatorConfig) -> Self {
        Coordinator {
            store,
            broker,
            clock,
            config,
            definitions: Mutex::new(HashMap::new()),
            activities: Mutex::new(None),
            finished: Notify::new(),
            owned: Mutex::new(BTreeSet::new()),
        }
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

    /// Runs until `shutdown`: acquires, renews and serves partitions; releases them on exit.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
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
    }

    /// Serves one partition until cancelled or fenced out.
    async fn serve_partition(self: Arc<Self>, fence: Fence, cancel: CancellationToken) {
        let p = fence.partition;
        if let Err(e) = self.flush_outbox(p).await {
            tracing::warn!(partition = p, error = %e, "outbox replay failed");
        }
        let mut consumer = match self.broker.consume_inputs(p).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition = p, error = %e, "cannot consume partition inputs");
                return;
            }
        };
        loop {
            let sleep_ms = match self.store.next_timer(p).await {
                Ok(Some(at)) => {
                    (at - self.clock.now_ms()).clamp(0, self.config.timer_poll_ms as i64)
                }
                _ => self.config.timer_poll_ms as i64,
            };
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                d = consumer.next() => match d {
                    None => return,
                    Some(d) => {
                        let r = self.handle_input(fence, d.message).await;
                        // Permanent problems (a message naming a deleted definition, an
                        // unreadable snapshot) would fail forever: log and drop them.
                        // Transient ones (store or broker down) leave the input unacked.
                        let settle = match &r {
                            Ok(()) => true,
                            Err(e) if e.is_permanent() => {
                                tracing::error!(partition = p, error = %e, "dropping an input that cannot be processed");
                                true
                            }
                            Err(_) => false,
                        };
                        if settle {
                            if let Err(e) = d.acker.ack().await {
                                tracing::warn!(partition = p, error = %e, "ack failed");
                            }
                        }
                        r
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {
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

    /// Publishes every pending outbox message of a partition, then acks them.
    pub async fn flush_outbox(&self, partition: u32) -> Result<(), CoordinatorError> {
        loop {
            let pending = self.store.pending_outbox(partition, 256).await?;
            if pending.is_empty() {
                return Ok(());
            }
            let mut last: HashMap<String, u64> = HashMap::new();
            for entry in &pending {
                match &entry.message {
                    OutboxMessage::Task { queue, message } => {
                        self.broker.publish_task(queue, message).await?
                    }
                    OutboxMessage::Cancel { task_token } => {
                        self.broker.publish_cancel(task_token).await?
                    }
                }
                let l = last.entry(entry.execution_arn.clone()).or_default();
                *l = (*l).max(entry.seq);
            }
            for (arn, seq) in last {
                self.store.ack_outbox(partition, &arn, seq).await?;
            }
        }
    }

    /// Handles one message of a partition's input queue.
    pub async fn handle_input(
        &self,
        fence: Fence,
        msg: InputMessage,
    ) -> Result<(), CoordinatorError> {
        match msg {
            InputMessage::Start {
                execution_arn,
                state_machine_arn,
                revision_id,
                name,
                input,
                start_ms,
            } => {
                if self.store.get_execution(&execution_arn).await?.is_some() {
                    return Ok(()); // Duplicate delivery or name reuse: starting is idempotent.
                }
                let def = self.definition(&state_machine_arn, &revision_id).await?;
                let sm_name = state_machine_arn
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
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
                    snapshot: Value::Null,
                };
                self.apply_and_commit(fence, record, exec, &def, Input::Start, None)
                    .await
            }
            InputMessage::Stop {
                execution_arn,
                error,
                cause,
            } => {
                self.step(fence, &execution_arn, Input::Stop { error, cause }, None)
                    .await
            }
            InputMessage::Worker { reply } | InputMessage::Callback { reply } => {
                let Some((arn, task)) =
                    task_token::verify(&self.config.token_key, reply.task_token())
                else {
                    tracing::warn!("dropping a reply with an invalid task token");
                    return Ok(());
                };
                let input = match reply {
                    Reply::Started { worker_name, .. } => Input::TaskStarted { task, worker_name },
                    Reply::Succeeded { output, .. } => Input::TaskSucceeded { task, output },
                    Reply::Failed { error, cause, .. } => Input::TaskFailed { task, error, cause },
                    Reply::Heartbeat { .. } => Input::TaskHeartbeat { task },
                };
                self.step(fence, &arn, input, None).await
            }
        }
    }

    /// Loads an execution and applies one input to it.
    async fn step(
        &self,
        fence: Fence,
        execution_arn: &str,
        input: Input,
        fired: Option<TimerEntry>,
    ) -> Result<(), CoordinatorError> {
        let Some(record) = self.store.get_execution(execution_arn).await? else {
            return Ok(()); // Expired or never existed: nothing to do.
        };
        let def = self
            .definition(&record.state_machine_arn, &record.revision_id)
            .await?;
        let exec: Execution = serde_json::from_value(record.snapshot.clone())
            .map_err(|e| CoordinatorError::BadSnapshot(execution_arn.to_string(), e.to_string()))?;
        self.apply_and_commit(fence, record, exec, &def, input, fired)
            .await
    }

    async fn known_activities(&self) -> Result<BTreeSet<String>, CoordinatorError> {
        let now = self.clock.now_ms();
        if let Some((at, set)) = self
            .activities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if now - at < 1_000 {
                return Ok(set.clone());
            }
        }
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
        *self.activities.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, set.clone()));
        Ok(set)
    }

    async fn apply_and_commit(
        &self,
        fence: Fence,
        mut record: ExecutionRecord,
        mut exec: Execution,
        def: &Definition,
        input: Input,
        fired: Option<TimerEntry>,
    ) -> Result<(), CoordinatorError> {
        let now = self.clock.now_ms();
        let activities = Some(self.known_activities().await?);
        let ctx = Context {
            now_ms: now,
            token_key: self.config.token_key.clone(),
            activities: activities.clone(),
        };
        let span = tracing::debug_span!("step", execution = %record.execution_arn);
        let _enter = span.enter();
        let step = exec.apply(def, &input, &ctx)?;
        drop(_enter);
        let nothing_changed = step.events.is_empty() && step.commands.is_empty();
        if nothing_changed && fired.is_none() && record.version > 0 {
            return Ok(()); // A stale or duplicate input: exactly-once transitions.
        }
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
        record.snapshot = serde_json::to_value(&exec).map_err(|e| {
            CoordinatorError::BadSnapshot(record.execution_arn.clone(), e.to_string())
        })?;
        let finished = record.status != ExecutionStatus::Running;
        self.store
            .commit(Commit {
                fence,
                expected_version,
                execution: record,
                events: step.events,
                journal: vec![JournalEntry {
                    now_ms: now,
                    input,
                    activities,
                }],
                outbox,
                timers_add,
                timers_remove,
            })
            .await?;
        self.flush_outbox(partition).await?;
        if finished {
            self.finished.notify_waiters();
        }
        Ok(())
    }

    /// The compiled definition of a state machine revision (cached).
    pub async fn definition(
        &self,
        state_machine_arn: &str,
        revision_id: &str,
    ) -> Result<Arc<Definition>, CoordinatorError> {
        let key = (state_machine_arn.to_string(), revision_id.to_string());
        if let Some(d) = self
            .definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(d.clone());
        }
        let sm = self
            .store
            .get_state_machine_revision(state_machine_arn, revision_id)
            .await?
            .ok_or_else(|| {
                CoordinatorError::MissingDefinition(state_machine_arn.into(), revision_id.into())
            })?;
        let def = Definition::parse_text(&sm.definition, sm.machine_type).map_err(|e| {
            CoordinatorError::BadDefinition(state_machine_arn.into(), e.to_string())
        })?;
        let def = Arc::new(def);
        self.definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, def.clone());
        Ok(def)
    }

    /// Waits until the execution is no longer RUNNING (or `timeout` passes); returns its record.
    pub async fn wait_finished(
        &self,
        execution_arn: &str,
        timeout: Duration,
    ) -> Result<Option<ExecutionRecord>, CoordinatorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.finished.notified();
            let rec = self.store.get_execution(execution_arn).await?;
            if let Some(r) = &rec {
                if r.status != ExecutionStatus::Running {
                    return Ok(rec);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(rec);
            }
            // Local completions wake us at once; other coordinators' are seen by polling.
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
