//! The pure interpreter: (definition, execution state, one input, context) → (events, commands).
//!
//! [`Execution::apply`] takes one [`Input`] (start, task result, heartbeat, timer fired, stop),
//! runs every state it can until the execution blocks on a task, a timer or its end, and
//! returns the history events and the [`Command`]s the runtime must carry out. It never does
//! IO, never reads a clock and never draws ambient randomness: `now` arrives in the
//! [`Context`] and randomness comes from a seed stored in the execution. The same inputs
//! applied to the same definition therefore always give the same events ([`replay`]).
//!
//! Concurrency (Parallel branches, Map iterations) is modelled with *frames*: each running
//! branch or iteration is a frame with its own current state; a parent frame waits for its
//! children. Stale inputs (unknown task or timer ids, anything after the end) are ignored,
//! which is what makes at-least-once delivery safe.
//!
//! An execution that ends unsuccessfully keeps where each unfinished frame stood;
//! [`Input::Redrive`] (`RedriveExecution`) restarts from there, once per redrive count. The
//! crate's `TestState` runs a single state through the same code in a probe mode.

mod run;

use crate::asl::Definition;
use crate::history::HistoryEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use run::InterpError;
pub(crate) use run::{probe_state, Fault, Probe, ProbeOutcome};

/// Maximum size of any payload (input, output, result): 256 KiB, as in AWS.
pub const PAYLOAD_LIMIT_BYTES: usize = 256 * 1024;

/// Who the execution is, as the context object and ARNs show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub execution_name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub region: String,
    pub account: String,
    pub input: Value,
    pub start_ms: i64,
    pub redrive_count: u32,
    /// EXPRESS executions have no `RedriveCount` in their context object.
    #[serde(default)]
    pub express: bool,
    /// Seed for every random draw of this execution (jitter, `$random`, `States.UUID`…).
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }
}

/// Everything that can happen to an execution from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    Start,
    /// A worker picked the task up (`ActivityStarted` / `TaskStarted`).
    TaskStarted {
        task: u64,
        worker_name: String,
    },
    TaskSucceeded {
        task: u64,
        output: Value,
    },
    TaskFailed {
        task: u64,
        error: Option<String>,
        cause: Option<String>,
    },
    TaskHeartbeat {
        task: u64,
    },
    TimerFired {
        timer: u64,
    },
    Stop {
        error: Option<String>,
        cause: Option<String>,
    },
    /// `RedriveExecution`: restart a FAILED, TIMED_OUT or ABORTED execution from the states
    /// that did not succeed. `redrive_count` is the count this redrive makes (the execution's
    /// current [`ExecutionInfo::redrive_count`] + 1, see [`Execution::redrive_input`]): a
    /// duplicate delivery names a count that is already reached and changes nothing, even when
    /// the redriven execution has failed again in between.
    Redrive {
        redrive_count: u32,
    },
}

/// What the runtime must do after committing a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    DispatchTask(TaskDispatch),
    /// The engine gave up on a task (timeout, stop, sibling failure): tell the worker.
    CancelTask {
        task: u64,
    },
    ScheduleTimer {
        timer: u64,
        fire_at_ms: i64,
    },
    CancelTimer {
        timer: u64,
    },
    ExecutionFinished {
        status: ExecutionStatus,
        output: Option<Arc<Value>>,
        error: Option<String>,
        cause: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDispatch {
    pub task: u64,
    /// The task token (`$$.Task.Token`); signed when the context carries a key.
    pub token: String,
    pub resource: String,
    pub state_name: String,
    pub input: Value,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    /// `.waitForTaskToken`: the result comes back through the token, not from a worker reply.
    pub callback: bool,
}

/// The outside world's contribution to one step.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub now_ms: i64,
    /// HMAC key for task tokens (empty: tokens are unsigned, fine for in-process runs).
    pub token_key: Vec<u8>,
    /// When known, the ARNs of the activities that exist; a Task naming another activity
    /// fails with `States.Runtime` instead of being scheduled.
    pub activities: Option<std::collections::BTreeSet<String>>,
}

/// The outcome of one [`Execution::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub events: Vec<HistoryEvent>,
    pub commands: Vec<Command>,
    /// Activities a Task named that were not in [`Context::activities`] (the step failed those
    /// tasks with `States.Runtime`); a runtime with a possibly stale activity list re-reads it
    /// and applies the input again to the unchanged execution.
    pub missing_activities: Vec<String>,
    /// The tasks this step ended, in order (for the runtime's metrics; the history says the
    /// same in AWS's shapes, which do not name an activity's resource when it ends).
    pub ended_tasks: Vec<TaskEnded>,
}

impl Step {
    /// Appends `later`, a step that followed this one (every field, in order).
    pub fn append(&mut self, later: Step) {
        let Step {
            events,
            commands,
            missing_activities,
            ended_tasks,
        } = later;
        self.events.extend(events);
        self.commands.extend(commands);
        self.missing_activities.extend(missing_activities);
        self.ended_tasks.extend(ended_tasks);
    }
}

/// A task the step ended: its resource, how, and how long after it was scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnded {
    pub resource: String,
    pub outcome: TaskOutcome,
    /// `None` for a task scheduled before the engine kept that time.
    pub after_ms: Option<i64>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Given up unfinished: the execution stopped or failed, or a sibling branch failed.
    Aborted,
}

impl TaskOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Succeeded => "succeeded",
            TaskOutcome::Failed => "failed",
            TaskOutcome::TimedOut => "timed_out",
            TaskOutcome::Aborted => "aborted",
        }
    }
}

/// The state of one execution. Serializable: the runtime snapshots it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub info: ExecutionInfo,
    pub status: ExecutionStatus,
    pub output: Option<Arc<Value>>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub stop_ms: Option<i64>,
    frames: BTreeMap<u64, run::Frame>,
    next_frame: u64,
    last_event_id: u64,
    next_task: u64,
    next_timer: u64,
    /// task id → frame id.
    tasks: BTreeMap<u64, u64>,
    timers: BTreeMap<u64, run::Timer>,
    rng: u64,
    started: bool,
    /// Where a redrive restarts: the unsuccessful frame tree as the execution ended
    /// (`None` while running, after success, or when it failed before its first state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redrive: Option<run::RedriveNode>,
    /// When the latest redrive happened (`DescribeExecution`'s `redriveDate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_ms: Option<i64>,
}

/// AWS refuses a redrive unless the history has room for `ExecutionRedriven` and at least one
/// more event: it must hold fewer than 24,999 events.
pub const REDRIVE_EVENT_LIMIT: u64 = 24_999;
/// Executions can be redriven up to 14 days after they stopped.
pub const REDRIVE_WINDOW_MS: i64 = 14 * 24 * 3600 * 1000;
/// An execution cannot stay open (or be redriven) beyond one year after its start.
pub const MAX_OPEN_MS: i64 = 365 * 24 * 3600 * 1000;

impl Execution {
    pub fn new(info: ExecutionInfo) -> Execution {
        let rng = info.seed;
        Execution {
            info,
            status: ExecutionStatus::Running,
            output: None,
            error: None,
            cause: None,
            stop_ms: None,
            frames: BTreeMap::new(),
            next_frame: 0,
            last_event_id: 0,
            next_task: 1,
            next_timer: 1,
            tasks: BTreeMap::new(),
            timers: BTreeMap::new(),
            rng,
            started: false,
            redrive: None,
            redrive_ms: None,
        }
    }

    /// Whether `RedriveExecution` may restart this execution, ignoring time (see
    /// [`Execution::redrivable_at`]); `Err` carries AWS's reason (`ExecutionNotRedrivable`).
    pub fn redrivable(&self) -> Result<(), String> {
        if self.info.express {
            return Err("Executions of EXPRESS state machines cannot be redriven".into());
        }
        match self.status {
            ExecutionStatus::Running => {
                return Err("Execution is RUNNING and cannot be redriven".into())
            }
            ExecutionStatus::Succeeded => {
                return Err("Execution is SUCCEEDED and cannot be redriven".into())
            }
            ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        }
        if self.last_event_id >= REDRIVE_EVENT_LIMIT {
            return Err("Execution history event limit exceeded".into());
        }
        Ok(())
    }

    /// [`Execution::redrivable`] plus AWS's time limits at `now_ms`: 14 days after the stop,
    /// one year after the start.
    pub fn redrivable_at(&self, now_ms: i64) -> Result<(), String> {
        self.redrivable()?;
        if self
            .stop_ms
            .is_some_and(|s| now_ms > s.saturating_add(REDRIVE_WINDOW_MS))
        {
            return Err("Execution redrivable period exceeded".into());
        }
        if now_ms > self.info.start_ms.saturating_add(MAX_OPEN_MS) {
            return Err("Execution has exceeded the max execution time".into());
        }
        Ok(())
    }

    /// The [`Input::Redrive`] that redrives this execution once, or why it cannot be redriven.
    pub fn redrive_input(&self, now_ms: i64) -> Result<Input, String> {
        self.redrivable_at(now_ms)?;
        Ok(Input::Redrive {
            redrive_count: self.info.redrive_count.saturating_add(1),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.status != ExecutionStatus::Running
    }

    /// Ids of the tasks currently waiting for a worker.
    pub fn open_tasks(&self) -> Vec<u64> {
        self.tasks.keys().copied().collect()
    }

    /// True when `task` is open and belongs to a `.waitForTaskToken` Task state: a worker's
    /// reply to its message only means the message was handled; the result comes through the
    /// token (`SendTaskSuccess`/`SendTaskFailure`).
    pub fn is_callback_task(&self, def: &Definition, task: u64) -> bool {
        self.tasks
            .get(&task)
            .and_then(|fid| self.frames.get(fid))
            .map(|f| def.state(f.machine, f.state))
            .is_some_and(|s| matches!(&s.kind, crate::asl::StateKind::Task(t) if t.is_callback()))
    }

    /// Number of history events so far.
    pub fn event_count(&self) -> u64 {
        self.last_event_id
    }

    /// Applies one input. Inputs that no longer apply (duplicates, late results, anything
    /// after the end) yield an empty [`Step`].
    pub fn apply(
        &mut self,
        def: &Definition,
        input: &Input,
        ctx: &Context,
    ) -> Result<Step, InterpError> {
        let mut r = run::Run::new(self, def, ctx);
        r.apply(input)?;
        Ok(r.finish())
    }

    /// Variables visible at the root (for tests and TestState).
    pub fn root_variables(&self) -> Option<&Map<String, Value>> {
        self.frames.get(&0).map(|f| &f.vars)
    }
}

/// A recorded input with the time it was applied: the execution's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub now_ms: i64,
    pub input: Input,
    /// The activity set the step saw (see [`Context::activities`]).
    #[serde(default)]
    pub activities: Option<std::collections::BTreeSet<String>>,
}

/// Rebuilds an execution (and its full history) from its journal.
pub fn replay(
    def: &Definition,
    info: ExecutionInfo,
    journal: &[JournalEntry],
    token_key: &[u8],
) -> Result<(Execution, Vec<HistoryEvent>), InterpError> {
    let mut exec = Execution::new(info);
    let mut events = Vec::new();
    for entry in journal {
        let ctx = Context {
            now_ms: entry.now_ms,
            token_key: token_key.to_vec(),
            activities: entry.activities.clone(),
        };
        events.extend(exec.apply(def, &entry.input, &ctx)?.events);
    }
    Ok((exec, events))
}
