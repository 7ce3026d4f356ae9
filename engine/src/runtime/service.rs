//! The runtime's service layer: what the control plane, the CLI, examples and tests call to
//! create state machines and activities, start, stop and inspect executions, and complete
//! callback tasks. It validates requests, writes definitions to the [`Store`], and sends every
//! execution-changing request through the execution's partition queue, so the partition owner
//! stays the only writer of executions.

use super::broker::{Broker, InputMessage};
use super::clock::Clock;
use super::coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use super::store::{ActivityRecord, ExecutionRecord, StateMachineRecord, Store, StoreError};
use crate::asl::{validate, Diagnostic, StateMachineType};
use crate::history::HistoryEvent;
use crate::task_token;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use stepline_worker::protocol::{Reply, PROTOCOL_VERSION};
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
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<S: Store, B: Broker, C: Clock> Service<S, B, C> {
    /// Starts a coordinator over the given adapters.
    pub fn start(store: Arc<S>, broker: Arc<B>, clock: Arc<C>, config: CoordinatorConfig) -> Self {
        let coordinator = Arc::new(Coordinator::new(store, broker, clock, config));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(coordinator.clone().run(shutdown.clone()));
        Service {
            coordinator,
            shutdown,
            task: Some(task),
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

    /// Starts an execution; the same name with the same input returns the same execution.
    pub async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<String>,
        input: Value,
    ) -> Result<String, ServiceError> {
        let sm = self
            .coordinator
            .store()
            .get_state_machine(state_machine_arn)
            .await?
            .ok_or_else(|| ServiceError::StateMachineDoesNotExist(state_machine_arn.into()))?;
        let now = self.coordinator.clock().now_ms();
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
        if let Some(existing) = self
            .coordinator
            .store()
            .get_execution(&execution_arn)
            .await?
        {
            return if existing.input == input {
                Ok(execution_arn)
            } else {
                Err(ServiceError::ExecutionAlreadyExists(execution_arn))
            };
        }
        let partition = self.coordinator.partition_of(&execution_arn);
        self.coordinator
            .broker()
            .publish_input(
                partition,
                &InputMessage::Start {
                    execution_arn: execution_arn.clone(),
                    state_machine_arn: sm.arn,
                    revision_id: sm.revision_id,
                    name,
                    input,
                    start_ms: now,
                },
            )
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
