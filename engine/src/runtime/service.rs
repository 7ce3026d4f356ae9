//! The runtime's service layer: what the control plane, the CLI, examples and tests call to
//! create state machines and activities, start, stop and inspect executions, and complete
//! callback tasks. It validates requests, writes definitions to the [`Store`], and sends every
//! execution-changing request through the execution's partition queue, so the partition owner
//! stays the only writer of executions.

use super::broker::{Broker, InputMessage, StartRequest};
use super::cache::TtlCache;
use super::clock::Clock;
use super::coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use super::store::{ActivityRecord, ExecutionRecord, Page, StateMachineRecord, Store, StoreError};
use crate::asl::{validate, Diagnostic, StateMachineType};
use crate::history::HistoryEvent;
use crate::interp::{Execution, ExecutionStatus, Input};
use crate::task_token;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stepline_worker::protocol::{Reply, TaskMessage, PROTOCOL_VERSION};
use tokio_util::sync::CancellationToken;

/// Why a request was refused (maps to AWS error codes in the control plane).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid definition: {}", validate::invalid_definition_message(.0))]
    InvalidDefinition(Vec<Diagnostic>),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("state machine does not exist: {0}")]
    StateMachineDoesNotExist(String),
    #[error("state machine already exists: {0}")]
    StateMachineAlreadyExists(String),
    #[error("activity does not exist: {0}")]
    ActivityDoesNotExist(String),
    #[error("execution does not exist: {0}")]
    ExecutionDoesNotExist(String),
    #[error("execution already exists with a different input: {0}")]
    ExecutionAlreadyExists(String),
    #[error("invalid execution input: {0}")]
    InvalidExecutionInput(String),
    #[error("invalid task token")]
    InvalidToken,
    #[error("task does not exist: {0}")]
    TaskDoesNotExist(String),
    #[error("task timed out: the task is no longer open")]
    TaskTimedOut,
    #[error("execution not redrivable: {0}")]
    ExecutionNotRedrivable(String),
    #[error("resource not found: {0}")]
    ResourceNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] super::broker::BrokerError),
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

/// AWS's naming rule for state machines, executions and activities: 1–80 characters, no
/// whitespace, brackets, wildcards, quotes or control characters.
pub fn valid_name(name: &str) -> bool {
    let len = name.chars().count();
    (1..=80).contains(&len)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

/// A fresh execution name in UUID form, unique per process (a counter) and across processes
/// (the pid and the coordinator's owner id), as AWS names unnamed executions.
fn generated_name(state_machine_arn: &str, now_ms: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = crate::runner::seed_from(&format!(
        "{state_machine_arn}|{now_ms}|{}|{n}",
        std::process::id()
    ));
    let b = crate::runner::seed_from(&format!("{n}|{now_ms}|{a}"));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A running runtime: a coordinator serving partitions plus the service calls.
pub struct Service<S: Store, B: Broker, C: Clock> {
    coordinator: Arc<Coordinator<S, B, C>>,
    shutdown: CancellationToken,
    /// Cancelled when the process starts shutting down: long polls answer at once.
    draining: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    /// State machines as recently read for starts (ARN → (read at, record)), kept for
    /// [`SM_CACHE_MS`]; this process's own updates and deletes drop their entry at once.
    sm_cache: TtlCache<String, Arc<StateMachineRecord>>,
}

/// How long a start may use a state machine read earlier. AWS documents the same eventual
/// consistency: executions started right after `UpdateStateMachine` may use the previous
/// definition. Updates made through this process are seen at once.
pub const SM_CACHE_MS: i64 = 1_000;

impl<S: Store, B: Broker, C: Clock> Service<S, B, C> {
    /// Starts a coordinator over the given adapters.
    pub fn start(store: Arc<S>, broker: Arc<B>, clock: Arc<C>, config: CoordinatorConfig) -> Self {
        let coordinator = Arc::new(Coordinator::new(store, broker, clock, config));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(coordinator.clone().run(shutdown.clone()));
        Service {
            coordinator,
            shutdown,
            draining: CancellationToken::new(),
            task: Some(task),
            sm_cache: TtlCache::new(SM_CACHE_MS, 10_000),
        }
    }

    pub fn coordinator(&self) -> &Arc<Coordinator<S, B, C>> {
        &self.coordinator
    }

    fn config(&self) -> &CoordinatorConfig {
        self.coordinator.config()
    }

    fn arn(&self, kind: &str, rest: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:{kind}:{rest}",
            self.config().region,
            self.config().account
        )
    }

    /// Validates and stores a new state machine.
    pub async fn create_state_machine(
        &self,
        name: &str,
        definition: &str,
        machine_type: StateMachineType,
        role_arn: Option<String>,
    ) -> Result<StateMachineRecord, ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::InvalidName(name.to_string()));
        }
        let diags = validate::validate_text(definition, machine_type);
        if diags.iter().any(|d| d.severity == "ERROR") {
            return Err(ServiceError::InvalidDefinition(diags));
        }
        let now = self.coordinator.clock().now_ms();
        let arn = self.arn("stateMachine", name);
        let record = StateMachineRecord {
            arn: arn.clone(),
            name: name.to_string(),
            definition: definition.to_string(),
            machine_type,
            role_arn: role_arn.unwrap_or_else(|| {
                format!(
                    "arn:aws:iam::{}:role/stepline-execution-role",
                    self.config().account
                )
            }),
            created_ms: now,
            revision_id: format!("{now:x}"),
            updated_ms: None,
            tags: Default::default(),
        };
        match self
            .coordinator
            .store()
            .create_state_machine(record.clone())
            .await
        {
            Ok(()) => Ok(record),
            Err(StoreError::AlreadyExists(_)) => Err(ServiceError::StateMachineAlreadyExists(arn)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_activity(&self, name: &str) -> Result<ActivityRecord, ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::InvalidName(name.to_string()));
        }
        let arn = self.arn("activity", name);
        if let Some(a) = self.coordinator.store().get_activity(&arn).await? {
            return Ok(a); // CreateActivity is idempotent in AWS.
        }
        let record = ActivityRecord {
            arn,
            name: name.to_string(),
            created_ms: self.coordinator.clock().now_ms(),
            tags: Default::default(),
        };
        match self
            .coordinator
            .store()
            .create_activity(record.clone())
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => Ok(record),
            Err(e) => Err(e.into()),
        }
    }

    /// The state machine a start uses: read at most [`SM_CACHE_MS`] ago.
    async fn state_machine_for_start(
        &self,
        arn: &str,
        now: i64,
    ) -> Result<Arc<StateMachineRecord>, ServiceError> {
        self.sm_cache
            .get(arn, now, || async {
                match self.coordinator.store().get_state_machine(arn).await? {
                    Some(sm) => Ok(Arc::new(sm)),
                    None => Err(ServiceError::StateMachineDoesNotExist(arn.into())),
                }
            })
            .await
    }

    /// Starts an execution; the same name with the same input returns the same execution.
    pub async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<String>,
        input: Value,
    ) -> Result<String, ServiceError> {
        let now = self.coordinator.clock().now_ms();
        let sm = self.state_machine_for_start(state_machine_arn, now).await?;
        let name = match name {
            Some(n) if !valid_name(&n) => return Err(ServiceError::InvalidName(n)),
            Some(n) => n,
            None => generated_name(state_machine_arn, now),
        };
        let text = serde_json::to_string(&input).unwrap_or_default();
        if text.len() > crate::interp::PAYLOAD_LIMIT_BYTES {
            return Err(ServiceError::InvalidExecutionInput(
                "the input exceeds the maximum size of 262144 bytes".into(),
            ));
        }
        let execution_arn = self.arn("execution", &format!("{}:{name}", sm.name));
        let start = StartRequest {
            execution_arn: execution_arn.clone(),
            state_machine_arn: sm.arn.clone(),
            revision_id: sm.revision_id.clone(),
            name,
            input: input.clone(),
            start_ms: now,
        };
        // When this process serves the execution's partition, create it right here (one
        // broker round trip less, and no read first: creating an existing execution writes
        // nothing and says so); otherwise the partition queue carries it to its owner.
        let existed = match self.coordinator.start_locally(start.clone()).await? {
            Some(true) => return Ok(execution_arn),
            Some(false) => true,
            None => false,
        };
        if let Some(existing) = self
            .coordinator
            .store()
            .get_execution(&execution_arn)
            .await?
        {
            // Same name and input: the same execution (idempotent start).
            return if existing.input == input {
                Ok(execution_arn)
            } else {
                Err(ServiceError::ExecutionAlreadyExists(execution_arn))
            };
        }
        if existed {
            // It existed a moment ago and has expired since: nothing to start under its name.
            return Err(ServiceError::ExecutionAlreadyExists(execution_arn));
        }
        let partition = self.coordinator.partition_of(&execution_arn);
        self.coordinator
            .broker()
            .publish_input(partition, &InputMessage::Start(start))
            .await?;
        Ok(execution_arn)
    }

    pub async fn stop_execution(
        &self,
        execution_arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<(), ServiceError> {
        if self
            .coordinator
            .store()
            .get_execution(execution_arn)
            .await?
            .is_none()
        {
            return Err(ServiceError::ExecutionDoesNotExist(execution_arn.into()));
        }
        let partition = self.coordinator.partition_of(execution_arn);
        self.coordinator
            .broker()
            .publish_input(
                partition,
                &InputMessage::Stop {
                    execution_arn: execution_arn.into(),
                    error,
                    cause,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> Result<ExecutionRecord, ServiceError> {
        self.coordinator
            .store()
            .get_execution(execution_arn)
            .await?
            .ok_or_else(|| ServiceError::ExecutionDoesNotExist(execution_arn.into()))
    }

    pub async fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, ServiceError> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map_or(0, |e: &HistoryEvent| e.id);
            let page = self
                .coordinator
                .store()
                .history(execution_arn, after, 1000)
                .await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// Waits for the execution to leave RUNNING (it may not exist yet right after a start).
    pub async fn wait(
        &self,
        execution_arn: &str,
        timeout: Duration,
    ) -> Result<ExecutionRecord, ServiceError> {
        self.coordinator
            .wait_finished(execution_arn, timeout)
            .await?
            .ok_or_else(|| ServiceError::ExecutionDoesNotExist(execution_arn.into()))
    }

    /// Completes (or heartbeats) a task from outside: `.waitForTaskToken` callbacks.
    pub async fn send_task_reply(&self, reply: Reply) -> Result<(), ServiceError> {
        let (arn, _) = task_token::verify(&self.config().token_key, reply.task_token())
            .ok_or(ServiceError::InvalidToken)?;
        let partition = self.coordinator.partition_of(&arn);
        self.coordinator
            .broker()
            .publish_input(partition, &InputMessage::Callback { reply })
            .await?;
        Ok(())
    }

    /// `SendTaskSuccess`.
    pub async fn send_task_success(
        &self,
        task_token: &str,
        output: Value,
    ) -> Result<(), ServiceError> {
        self.send_task_reply(Reply::Succeeded {
            version: PROTOCOL_VERSION,
            task_token: task_token.into(),
            output,
        })
        .await
    }

    /// The state machine's current record.
    pub async fn describe_state_machine(
        &self,
        arn: &str,
    ) -> Result<StateMachineRecord, ServiceError> {
        self.coordinator
            .store()
            .get_state_machine(arn)
            .await?
            .ok_or_else(|| ServiceError::StateMachineDoesNotExist(arn.into()))
    }

    /// Replaces the definition and/or role; a changed definition gets a new revision, and
    /// running executions keep the revision they started with.
    pub async fn update_state_machine(
        &self,
        arn: &str,
        definition: Option<&str>,
        role_arn: Option<String>,
    ) -> Result<StateMachineRecord, ServiceError> {
        let mut sm = self.describe_state_machine(arn).await?;
        if let Some(text) = definition {
            let diags = validate::validate_text(text, sm.machine_type);
            if diags.iter().any(|d| d.severity == "ERROR") {
                return Err(ServiceError::InvalidDefinition(diags));
            }
            sm.definition = text.to_string();
        }
        if let Some(role) = role_arn {
            sm.role_arn = role;
        }
        let now = self.coordinator.clock().now_ms();
        // Revision ids must differ even for two updates within one millisecond.
        sm.revision_id = format!(
            "{now:x}-{:x}",
            crate::runner::seed_from(&sm.definition) >> 40
        );
        if sm.revision_id == self.describe_state_machine(arn).await?.revision_id {
            sm.revision_id.push('b');
        }
        sm.updated_ms = Some(now);
        self.sm_cache.invalidate(arn);
        match self
            .coordinator
            .store()
            .update_state_machine(sm.clone())
            .await
        {
            Ok(()) => Ok(sm),
            Err(StoreError::NotFound(_)) => Err(ServiceError::StateMachineDoesNotExist(arn.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a state machine; its running executions go on with their revision.
    pub async fn delete_state_machine(&self, arn: &str) -> Result<(), ServiceError> {
        self.sm_cache.invalidate(arn);
        match self.coordinator.store().delete_state_machine(arn).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Its metrics go with it (executions still running bring them back as they finish).
        self.coordinator
            .metrics()
            .forget_state_machine(super::arn_name(arn));
        Ok(())
    }

    pub async fn list_state_machines(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<StateMachineRecord>, ServiceError> {
        Ok(self
            .coordinator
            .store()
            .list_state_machines(limit, next_token)
            .await?)
    }

    pub async fn describe_activity(&self, arn: &str) -> Result<ActivityRecord, ServiceError> {
        self.coordinator
            .store()
            .get_activity(arn)
            .await?
            .ok_or_else(|| ServiceError::ActivityDoesNotExist(arn.into()))
    }

    /// Deletes an activity (deleting one that does not exist succeeds, as in AWS), and its
    /// task queue if that is idle (no task waiting, no worker consuming it); a queue kept, or
    /// a broker that cannot be reached, leaves the queue for a later `DeleteActivity`.
    pub async fn delete_activity(&self, arn: &str) -> Result<(), ServiceError> {
        match self.coordinator.store().delete_activity(arn).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.coordinator.metrics().forget_resource(arn);
        let queue = super::broker::task_queue(arn);
        match self.coordinator.broker().delete_idle_queue(&queue).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%queue, "kept the deleted activity's queue: tasks wait in it or a worker consumes it")
            }
            Err(e) => {
                tracing::warn!(%queue, error = %e, "could not delete the deleted activity's queue")
            }
        }
        Ok(())
    }

    pub async fn list_activities(
        &self,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ActivityRecord>, ServiceError> {
        Ok(self
            .coordinator
            .store()
            .list_activities(limit, next_token)
            .await?)
    }

    /// Executions of a state machine, newest first.
    pub async fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        next_token: Option<String>,
    ) -> Result<Page<ExecutionRecord>, ServiceError> {
        let store = self.coordinator.store();
        if store.get_state_machine(state_machine_arn).await?.is_none() {
            return Err(ServiceError::StateMachineDoesNotExist(
                state_machine_arn.into(),
            ));
        }
        Ok(store
            .list_executions(state_machine_arn, status, limit, next_token)
            .await?)
    }

    /// The definition revision an execution runs.
    pub async fn state_machine_for_execution(
        &self,
        execution_arn: &str,
    ) -> Result<StateMachineRecord, ServiceError> {
        let exec = self.describe_execution(execution_arn).await?;
        self.coordinator
            .store()
            .get_state_machine_revision(&exec.state_machine_arn, &exec.revision_id)
            .await?
            .ok_or(ServiceError::StateMachineDoesNotExist(
                exec.state_machine_arn,
            ))
    }

    /// Waits until the execution record exists (a start is processed by the partition owner,
    /// asynchronously); `None` if it did not appear within `timeout`.
    pub async fn wait_created(
        &self,
        execution_arn: &str,
        timeout: Duration,
    ) -> Result<Option<ExecutionRecord>, ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(rec) = self
                .coordinator
                .store()
                .get_execution(execution_arn)
                .await?
            {
                return Ok(Some(rec));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Checks a task token against the execution's state: `InvalidToken` when forged,
    /// `TaskDoesNotExist` when its execution is gone, `TaskTimedOut` when the task is no longer
    /// open (finished, timed out, stopped — so a replayed token is refused).
    pub async fn check_task(&self, task_token: &str) -> Result<(String, u64), ServiceError> {
        let (arn, task) = task_token::verify(&self.config().token_key, task_token)
            .ok_or(ServiceError::InvalidToken)?;
        let Some(record) = self.coordinator.store().get_execution(&arn).await? else {
            return Err(ServiceError::TaskDoesNotExist(arn));
        };
        if record.status != ExecutionStatus::Running {
            return Err(ServiceError::TaskTimedOut);
        }
        let exec: Execution = record
            .snapshot
            .parse()
            .map_err(|e| StoreError::Backend(format!("snapshot of {arn}: {e}")))?;
        if !exec.open_tasks().contains(&task) {
            return Err(ServiceError::TaskTimedOut);
        }
        Ok((arn, task))
    }

    /// `SendTaskSuccess` / `SendTaskFailure` / `SendTaskHeartbeat` with AWS's checks.
    pub async fn send_checked_reply(&self, reply: Reply) -> Result<(), ServiceError> {
        self.check_task(reply.task_token()).await?;
        self.send_task_reply(reply).await
    }

    /// `GetActivityTask`: long-polls the activity's queue (the one SDK workers consume) for up
    /// to `timeout` (or until the service shuts down). Tasks whose execution no longer waits for them are dropped. The task's
    /// `ActivityStarted` event names `worker_name`.
    pub async fn get_activity_task(
        &self,
        activity_arn: &str,
        worker_name: Option<String>,
        timeout: Duration,
    ) -> Result<Option<TaskMessage>, ServiceError> {
        self.describe_activity(activity_arn).await?;
        let queue = super::broker::task_queue(activity_arn);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(delivery) = self.coordinator.broker().get_task(&queue).await? {
                let message = delivery.message;
                delivery.acker.ack().await?;
                if self.check_task(&message.task_token).await.is_err() {
                    tracing::debug!(state = %message.state_name, "dropping a task nobody waits for");
                    continue;
                }
                self.send_task_reply(Reply::Started {
                    version: PROTOCOL_VERSION,
                    task_token: message.task_token.clone(),
                    worker_name: worker_name.unwrap_or_else(|| "activity-poller".into()),
                })
                .await?;
                return Ok(Some(message));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline || self.draining.is_cancelled() {
                return Ok(None);
            }
            // A shutting-down server answers pending long polls at once (empty, as AWS does
            // when no task arrives), so graceful shutdown is not held up for a minute.
            tokio::select! {
                _ = tokio::time::sleep(pause.min(deadline - now)) => {}
                _ = self.draining.cancelled() => return Ok(None),
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `RedriveExecution`: checks the execution can be redriven (AWS's reasons otherwise),
    /// sends the redrive to its partition and waits until the owner has applied it. Returns
    /// the redrive time.
    pub async fn redrive_execution(&self, execution_arn: &str) -> Result<i64, ServiceError> {
        let record = self.describe_execution(execution_arn).await?;
        let sm = self
            .coordinator
            .store()
            .get_state_machine_revision(&record.state_machine_arn, &record.revision_id)
            .await?;
        if sm.is_some_and(|s| s.machine_type == crate::asl::StateMachineType::Express) {
            return Err(ServiceError::ExecutionNotRedrivable(
                "Executions of EXPRESS state machines cannot be redriven".into(),
            ));
        }
        let exec: Execution = record
            .snapshot
            .parse()
            .map_err(|e| StoreError::Backend(format!("snapshot of {execution_arn}: {e}")))?;
        let now = self.coordinator.clock().now_ms();
        let Input::Redrive { redrive_count } = exec
            .redrive_input(now)
            .map_err(ServiceError::ExecutionNotRedrivable)?
        else {
            return Err(ServiceError::ExecutionNotRedrivable(
                "the execution cannot be redriven".into(),
            ));
        };
        let partition = self.coordinator.partition_of(execution_arn);
        self.coordinator
            .broker()
            .publish_input(
                partition,
                &InputMessage::Redrive {
                    execution_arn: execution_arn.into(),
                    redrive_count,
                },
            )
            .await?;
        // Answer once the redrive is visible (DescribeExecution shows RUNNING / the new count).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rec = self.describe_execution(execution_arn).await?;
            let redrives = rec.snapshot.redrives();
            if redrives.count >= redrive_count {
                return Ok(redrives.last_ms.unwrap_or(now));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Tags of a state machine or activity.
    pub async fn tags(&self, resource_arn: &str) -> Result<BTreeMap<String, String>, ServiceError> {
        let store = self.coordinator.store();
        if let Some(sm) = store.get_state_machine(resource_arn).await? {
            return Ok(sm.tags);
        }
        if let Some(a) = store.get_activity(resource_arn).await? {
            return Ok(a.tags);
        }
        Err(ServiceError::ResourceNotFound(resource_arn.into()))
    }

    /// Adds (`add`) and removes (`remove`) tags of a state machine or activity.
    pub async fn change_tags(
        &self,
        resource_arn: &str,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), ServiceError> {
        let store = self.coordinator.store();
        let apply = |tags: &mut BTreeMap<String, String>| {
            tags.extend(add.clone());
            for k in remove {
                tags.remove(k);
            }
        };
        if let Some(mut sm) = store.get_state_machine(resource_arn).await? {
            apply(&mut sm.tags);
            return Ok(store.update_state_machine(sm).await?);
        }
        if let Some(mut a) = store.get_activity(resource_arn).await? {
            apply(&mut a.tags);
            return Ok(store.update_activity(a).await?);
        }
        Err(ServiceError::ResourceNotFound(resource_arn.into()))
    }

    /// Starts shutting down: pending `GetActivityTask` long polls return empty at once.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// Simulates a crash: the coordinator stops at once and keeps its leases until they expire
    /// (for failover tests).
    pub fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Stops the coordinator (releases its partitions).
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl<S: Store, B: Broker, C: Clock> Drop for Service<S, B, C> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
