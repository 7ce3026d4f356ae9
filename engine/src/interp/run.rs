//! One interpreter step: the state-by-state logic behind [`super::Execution::apply`].
//!
//! Invariants: every event goes through [`Run::emit`] (ids are dense and increasing); a frame
//! is either running a state, waiting on exactly one thing (task, timer, children) or gone;
//! timers and tasks are registered in the execution's tables before a command for them is
//! emitted, and removed before they are acted on, so a second delivery finds nothing.

use super::{
    Command, Context, Execution, ExecutionStatus, Input, Step, TaskDispatch, TaskEnded,
    TaskOutcome, PAYLOAD_LIMIT_BYTES,
};
use crate::asl::choice::{compare, ChoiceRule, Op, Operand};
use crate::asl::template::Template;
use crate::asl::{
    Definition, MapMode, MapSpec, NumberSource, OptionalPath, QueryLanguage, State, StateKind,
    Transition, WaitSpec,
};
use crate::dataflow::{next_random, Scope};
use crate::error::{names, Failure};
use crate::history::{EventKind, HistoryEvent};
use crate::{task_token, timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A broken invariant inside the interpreter (never an ASL failure).
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("internal interpreter error: {0}")]
    Invariant(String),
}

fn invariant(msg: impl Into<String>) -> InterpError {
    InterpError::Invariant(msg.into())
}

/// An ASL failure whose fields may be absent (a Fail state without Error/Cause).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Fault {
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Raised by the engine's own TimeoutSeconds/HeartbeatSeconds timer (not an error a
    /// worker, a Fail state or a mock named so): reported the way AWS reports those.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

impl Fault {
    pub(crate) fn new(error: Option<String>, cause: Option<String>) -> Fault {
        Fault {
            error,
            cause,
            timed_out: false,
        }
    }

    fn error_name(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }

    /// The error output a Catch (or a tolerated Map item) sees. A timeout the engine raised is
    /// reported as AWS reports it: `States.Timeout` (a heartbeat timeout too) with an empty
    /// `Cause`.
    fn output(&self) -> Value {
        let mut m = Map::new();
        if let Some(e) = self.reported_error() {
            m.insert("Error".into(), Value::String(e.to_string()));
        }
        match &self.cause {
            Some(c) => {
                m.insert("Cause".into(), Value::String(c.clone()));
            }
            None if self.timed_out => {
                m.insert("Cause".into(), Value::String(String::new()));
            }
            None => {}
        }
        Value::Object(m)
    }

    /// The error name as it leaves the state that raised it. For an engine heartbeat timeout,
    /// `States.HeartbeatTimeout` exists only for that state's Retry and Catch to match; AWS
    /// reports the error as `States.Timeout` (history events, the execution's error, an
    /// enclosing Parallel or Map). Errors named by workers, Fail states or mocks pass as they are.
    fn reported_error(&self) -> Option<&str> {
        if self.heartbeat_timed_out() {
            Some(names::TIMEOUT)
        } else {
            self.error.as_deref()
        }
    }

    /// The fault with its [`Self::reported_error`].
    fn into_reported(mut self) -> Fault {
        if self.heartbeat_timed_out() {
            self.error = Some(names::TIMEOUT.into());
        }
        self
    }

    /// An engine heartbeat timeout (reported outside its state as `States.Timeout`).
    fn heartbeat_timed_out(&self) -> bool {
        self.timed_out && self.error.as_deref() == Some(names::HEARTBEAT_TIMEOUT)
    }
}

impl From<Failure> for Fault {
    fn from(f: Failure) -> Fault {
        Fault::new(Some(f.error), Some(f.cause))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Frame {
    parent: Option<(u64, usize)>,
    pub(crate) machine: usize,
    pub(crate) state: usize,
    /// The current state's raw input (shared with its `…StateEntered` event).
    input: Arc<Value>,
    phase: Phase,
    pub(crate) vars: Map<String, Value>,
    last_event: u64,
    entered_event: u64,
    /// `previousEventId` of the current state's Entered event.
    #[serde(default)]
    entered_prev: u64,
    entered_ms: i64,
    retry_counts: Vec<u32>,
    retry_total: u32,
    /// Events of distributed-map item executions are not part of the parent's history.
    silent: bool,
    /// After a Parallel/inline Map state failed: what its branches or iterations left behind,
    /// so that a redrive reruns only the unsuccessful ones. Cleared when the state runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_kids: Option<Box<RedriveKids>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    Idle,
    Task {
        task: u64,
        resource: String,
        activity: bool,
        timeout_timer: Option<u64>,
        heartbeat_timer: Option<u64>,
        heartbeat_seconds: Option<u64>,
        /// When the task was scheduled (absent in snapshots from before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled_ms: Option<i64>,
    },
    RetryWait {
        timer: u64,
    },
    Waiting {
        timer: u64,
        effective: Value,
    },
    Parallel(Children),
    Map(Box<MapRun>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Children {
    results: Vec<Option<Value>>,
    running: BTreeSet<u64>,
    failure: Option<Fault>,
    launching: bool,
    /// Branches that failed or were aborted (or, during a redrive, wait to be restarted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    redo: BTreeMap<usize, RedriveNode>,
    /// Every branch's input (a branch not launched before a failure restarts from it).
    #[serde(default)]
    branch_input: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MapRun {
    items: Vec<Value>,
    next: usize,
    max: usize,
    results: Vec<Option<Value>>,
    /// child frame → item index.
    running: BTreeMap<u64, usize>,
    failures: usize,
    tolerated_count: Option<u64>,
    tolerated_pct: Option<f64>,
    failure: Option<Fault>,
    launching: bool,
    distributed: bool,
    /// Id of the latest `MapIteration{Succeeded,Failed}` event.
    last_iteration_event: u64,
    /// Inline iterations that failed or were aborted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    redo: BTreeMap<usize, RedriveNode>,
    /// During a redrive: iterations to restart from where they stopped when launched.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resume: BTreeMap<usize, RedriveNode>,
}

/// What a redrive restarts for one frame: its unsuccessful state, the raw input that state
/// had (its `…StateEntered` input) and the variables it saw; for a Parallel or inline Map
/// state also what each branch or iteration left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RedriveNode {
    machine: usize,
    state: usize,
    input: Arc<Value>,
    vars: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kids: Option<Box<RedriveKids>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum RedriveKids {
    Parallel {
        input: Value,
        slots: Vec<Slot>,
    },
    Map {
        slots: Vec<Slot>,
        max: usize,
        tolerated_count: Option<u64>,
        tolerated_pct: Option<f64>,
    },
}

/// One branch or iteration of a redriven Parallel/Map state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Slot {
    /// Succeeded: its output is kept, it does not run again.
    Done(Value),
    /// Failed or aborted: restarted from where it stopped.
    Redo(RedriveNode),
    /// Never launched: starts from the beginning with this input.
    Fresh(Value),
}

/// TestState: the interpreter runs exactly one state, answers a Task (or a Parallel/Map
/// state) from a mock instead of dispatching it, and records the data-flow stages.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    /// The mocked result (`Ok`) or error (`Err`) of a Task, Parallel or Map state.
    pub mock: Option<Result<Value, Fault>>,
    /// Retries already made (`stateConfiguration.retrierRetryCount`).
    pub retry_count: u32,
    /// Members replacing the generated context object's (`context`).
    pub context: Option<Value>,
    pub after_input_path: Option<Value>,
    pub after_parameters: Option<Value>,
    pub result: Option<Value>,
    pub after_result_selector: Option<Value>,
    pub after_result_path: Option<Value>,
    /// Variables the state assigned on the path it took.
    pub assigned: Option<Map<String, Value>>,
    /// The error a Catcher caught, with the Catcher's index.
    pub caught: Option<(usize, Fault)>,
    pub outcome: Option<ProbeOutcome>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeOutcome {
    /// The state exited with this output, to `next` (a state of the same machine) or ending.
    Exited {
        output: Value,
        next: Option<usize>,
    },
    Failed(Fault),
    /// A Retrier (`index`) still had attempts; it would wait `backoff_seconds`.
    Retriable {
        fault: Fault,
        index: usize,
        backoff_seconds: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Timer {
    Wait { frame: u64 },
    Retry { frame: u64 },
    TaskTimeout { frame: u64, task: u64 },
    Heartbeat { frame: u64, task: u64 },
    ExecutionTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The frame moved to a new state that must now be entered.
    Continue,
    /// The frame waits for a task, a timer or children.
    Blocked,
    /// The frame ended (or the execution did).
    Done,
}

/// Extra context-object members for the current evaluation.
#[derive(Default, Clone)]
struct CtxExtra {
    token: Option<String>,
    map_item: Option<(usize, Value)>,
}

pub(crate) struct Run<'a> {
    ex: &'a mut Execution,
    def: &'a Definition,
    ctx: &'a Context,
    events: Vec<HistoryEvent>,
    commands: Vec<Command>,
    /// Set only for TestState runs.
    probe: Option<Box<Probe>>,
    missing_activities: Vec<String>,
    ended_tasks: Vec<TaskEnded>,
}

type R<T> = Result<T, InterpError>;

/// Variables a state assigns (recorded in its Exited event).
type Assigned = Option<Map<String, Value>>;

/// An upper bound of a value's serialized size, computed without formatting.
fn size_upper_bound(v: &Value, budget: usize) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 32,
        // Each char escapes to at most 6 bytes.
        Value::String(s) => s.len() * 6 + 2,
        Value::Array(a) => {
            let mut n = 2;
            for x in a {
                n += size_upper_bound(x, budget) + 1;
                if n > budget {
                    break;
                }
            }
            n
        }
        Value::Object(m) => {
            let mut n = 2;
            for (k, x) in m {
                n += k.len() * 6 + 4 + size_upper_bound(x, budget);
                if n > budget {
                    break;
                }
            }
            n
        }
    }
}

/// True when the value's JSON text is larger than the payload limit.
fn over_limit(v: &Value) -> bool {
    size_upper_bound(v, PAYLOAD_LIMIT_BYTES) > PAYLOAD_LIMIT_BYTES
        && payload_size(v) > PAYLOAD_LIMIT_BYTES
}

fn payload_size(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The largest number of seconds ASL accepts in Seconds/TimeoutSeconds/HeartbeatSeconds.
const MAX_SECONDS: u64 = 99_999_999;

/// The maximum number of history events of one execution; AWS fails the execution there.
pub const HISTORY_LIMIT: u64 = 25_000;

/// `now + seconds`, saturating instead of overflowing.
fn deadline(now_ms: i64, seconds: u64) -> i64 {
    now_ms.saturating_add((seconds.min(MAX_SECONDS) as i64).saturating_mul(1000))
}

fn is_task_like(kind: &StateKind) -> bool {
    matches!(
        kind,
        StateKind::Task(_) | StateKind::Parallel { .. } | StateKind::Map(_)
    )
}

/// AWS's ErrorEquals matching.
fn error_matches(error_equals: &[String], error: &str, in_task: bool) -> bool {
    if error == names::RUNTIME || error == names::DATA_LIMIT_EXCEEDED {
        return false;
    }
    error_equals.iter().any(|e| {
        e == error
            || e == names::ALL
            || (e == names::TIMEOUT && error == names::HEARTBEAT_TIMEOUT)
            || (e == names::TASK_FAILED
                && in_task
                && error != names::TIMEOUT
                && error != names::HEARTBEAT_TIMEOUT)
    })
}

fn json_display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => crate::history::json_text(other),
    }
}

fn build_context(
    ex: &super::ExecutionInfo,
    state: &State,
    entered_ms: i64,
    retry: u32,
    extra: &CtxExtra,
) -> Value {
    let mut execution = Map::new();
    execution.insert("Id".into(), Value::String(ex.execution_arn.clone()));
    execution.insert("Input".into(), ex.input.clone());
    execution.insert(
        "StartTime".into(),
        Value::String(timestamp::format_millis(ex.start_ms)),
    );
    execution.insert("Name".into(), Value::String(ex.execution_name.clone()));
    execution.insert("RoleArn".into(), Value::String(ex.role_arn.clone()));
    if !ex.express {
        execution.insert("RedriveCount".into(), json!(ex.redrive_count));
    }
    let mut st = Map::new();
    st.insert("Name".into(), Value::String(state.name.to_string()));
    st.insert(
        "EnteredTime".into(),
        Value::String(timestamp::format_millis(entered_ms)),
    );
    if is_task_like(&state.kind) {
        st.insert("RetryCount".into(), json!(retry));
    }
    let mut m = Map::new();
    m.insert("Execution".into(), Value::Object(execution));
    m.insert(
        "StateMachine".into(),
        json!({"Id": ex.state_machine_arn, "Name": ex.state_machine_name}),
    );
    m.insert("State".into(), Value::Object(st));
    if let Some(t) = &extra.token {
        m.insert("Task".into(), json!({ "Token": t }));
    }
    if let Some((i, v)) = &extra.map_item {
        m.insert("Map".into(), json!({"Item": {"Index": i, "Value": v}}));
    }
    Value::Object(m)
}

impl<'a> Run<'a> {
    pub(crate) fn new(ex: &'a mut Execution, def: &'a Definition, ctx: &'a Context) -> Run<'a> {
        Run {
            ex,
            def,
            ctx,
            events: Vec::new(),
            commands: Vec::new(),
            probe: None,
            missing_activities: Vec::new(),
            ended_tasks: Vec::new(),
        }
    }

    pub(crate) fn finish(self) -> Step {
        Step {
            events: self.events,
            commands: self.commands,
            missing_activities: self.missing_activities,
            ended_tasks: self.ended_tasks,
        }
    }

    fn now(&self) -> i64 {
        self.ctx.now_ms
    }

    fn frame(&self, fid: u64) -> R<&Frame> {
        self.ex
            .frames
            .get(&fid)
            .ok_or_else(|| invariant(format!("frame {fid} missing")))
    }

    fn frame_mut(&mut self, fid: u64) -> R<&mut Frame> {
        self.ex
            .frames
            .get_mut(&fid)
            .ok_or_else(|| invariant(format!("frame {fid} missing")))
    }

    fn state_of(&self, fid: u64) -> R<&'a State> {
        let f = self.frame(fid)?;
        Ok(self.def.state(f.machine, f.state))
    }

    /// Appends an event in `fid`'s chain (or the execution's when `None`).
    fn emit(&mut self, fid: Option<u64>, kind: EventKind) -> u64 {
        self.emit_linked(fid, kind, None, true)
    }

    /// Appends an event whose `previousEventId` is `prev` (the frame's last event when
    /// `None`); `advance` says whether later events of the frame link to it. AWS links a few
    /// events off the main chain (`EvaluationFailed` to 0, `MapStateSucceeded` beside it).
    fn emit_linked(
        &mut self,
        fid: Option<u64>,
        kind: EventKind,
        prev: Option<u64>,
        advance: bool,
    ) -> u64 {
        let mut chain = self.ex.last_event_id;
        if let Some(fid) = fid {
            if let Some(f) = self.ex.frames.get(&fid) {
                if f.silent {
                    return 0;
                }
                chain = f.last_event;
            }
        }
        self.ex.last_event_id += 1;
        let id = self.ex.last_event_id;
        self.events.push(HistoryEvent {
            id,
            previous_event_id: prev.unwrap_or(chain),
            timestamp_ms: self.ctx.now_ms,
            kind,
        });
        if advance {
            if let Some(f) = fid.and_then(|fid| self.ex.frames.get_mut(&fid)) {
                f.last_event = id;
            }
        }
        id
    }

    fn schedule_timer(&mut self, fire_at_ms: i64, timer: Timer) -> u64 {
        let id = self.ex.next_timer;
        self.ex.next_timer += 1;
        self.ex.timers.insert(id, timer);
        self.commands.push(Command::ScheduleTimer {
            timer: id,
            fire_at_ms,
        });
        id
    }

    fn cancel_timer(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            if self.ex.timers.remove(&id).is_some() {
                self.commands.push(Command::CancelTimer { timer: id });
            }
        }
    }

    /// Wraps a failure raised while running a state with AWS's standard prefix.
    fn in_state(&self, fid: u64, f: Failure) -> Fault {
        let prefixed = if f.error == names::RUNTIME || f.error == names::QUERY_EVALUATION_ERROR {
            match (self.frame(fid), self.state_of(fid)) {
                (Ok(fr), Ok(st)) => format!(
                    "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
                    st.name, fr.entered_event, f.cause
                ),
                _ => f.cause,
            }
        } else {
            f.cause
        };
        Fault::new(Some(f.error), Some(prefixed))
    }

    /// Evaluates `f` in a [`Scope`] over `doc` for frame `fid`.
    fn scoped<T>(
        &mut self,
        fid: u64,
        doc: &Value,
        extra: &CtxExtra,
        states: (Option<&Value>, Option<&Value>),
        f: impl FnOnce(&mut Scope) -> Result<T, Failure>,
    ) -> R<Result<T, Failure>> {
        let mut rng = self.ex.rng;
        let out = {
            let frame = self
                .ex
                .frames
                .get(&fid)
                .ok_or_else(|| invariant("frame missing"))?;
            let state = self.def.state(frame.machine, frame.state);
            let info = &self.ex.info;
            let (entered, retry) = (frame.entered_ms, frame.retry_total);
            let ex2 = extra.clone();
            let over = self.probe.as_ref().and_then(|p| p.context.as_ref());
            let ctxf = move || {
                let mut c = build_context(info, state, entered, retry, &ex2);
                if let Some(o) = over {
                    merge_into(&mut c, o);
                }
                c
            };
            let mut scope = Scope::new(doc, &ctxf, &frame.vars, &mut rng);
            scope.states_result = states.0;
            scope.states_error_output = states.1;
            f(&mut scope)
        };
        self.ex.rng = rng;
        Ok(out)
    }

    // ----------------------------------------------------------------------------------
    // Inputs

    pub(crate) fn apply(&mut self, input: &Input) -> R<()> {
        if let Input::Redrive { redrive_count } = input {
            return self.redrive(*redrive_count);
        }
        if self.ex.is_finished() {
            return Ok(());
        }
        match input {
            Input::Redrive { .. } => Ok(()),
            Input::Start => {
                if self.ex.started {
                    return Ok(());
                }
                self.ex.started = true;
                let info_input = Arc::new(self.ex.info.input.clone());
                let role = self.ex.info.role_arn.clone();
                self.emit(
                    None,
                    EventKind::ExecutionStarted {
                        input: info_input.clone(),
                        role_arn: role,
                    },
                );
                self.start_root(info_input, 0)
            }
            Input::TaskStarted { task, worker_name } => {
                let Some(&fid) = self.ex.tasks.get(task) else {
                    return Ok(());
                };
                let (activity, resource, hb_timer, hb) = match &self.frame(fid)?.phase {
                    Phase::Task {
                        activity,
                        resource,
                        heartbeat_timer,
                        heartbeat_seconds,
                        ..
                    } => (
                        *activity,
                        resource.clone(),
                        *heartbeat_timer,
                        *heartbeat_seconds,
                    ),
                    _ => return Ok(()),
                };
                let kind = if activity {
                    EventKind::ActivityStarted {
                        worker_name: worker_name.clone(),
                    }
                } else {
                    EventKind::TaskStarted {
                        resource_type: resource_type(&resource),
                        resource: resource_name(&resource),
                    }
                };
                self.emit(Some(fid), kind);
                if hb.is_some() {
                    self.restart_heartbeat(fid, *task, hb_timer, hb)?;
                }
                Ok(())
            }
            Input::TaskHeartbeat { task } => {
                let Some(&fid) = self.ex.tasks.get(task) else {
                    return Ok(());
                };
                if let Phase::Task {
                    heartbeat_timer,
                    heartbeat_seconds,
                    ..
                } = &self.frame(fid)?.phase
                {
                    let (t, h) = (*heartbeat_timer, *heartbeat_seconds);
                    if h.is_some() {
                        self.restart_heartbeat(fid, *task, t, h)?;
                    }
                }
                Ok(())
            }
            Input::TaskSucceeded { task, output } => {
                let Some(fid) = self.take_task(*task)? else {
                    return Ok(());
                };
                let (activity, resource) = self.task_ended(fid, TaskOutcome::Succeeded)?;
                let kind = if activity {
                    EventKind::ActivitySucceeded {
                        output: output.clone(),
                    }
                } else {
                    EventKind::TaskSucceeded {
                        resource_type: resource_type(resource),
                        resource: resource_name(resource),
                        output: output.clone(),
                    }
                };
                self.emit(Some(fid), kind);
                self.frame_mut(fid)?.phase = Phase::Idle;
                let flow = self.complete_with_result(fid, output.clone())?;
                self.drive(fid, flow)
            }
            Input::TaskFailed { task, error, cause } => {
                let Some(fid) = self.take_task(*task)? else {
                    return Ok(());
                };
                let (activity, resource) = self.task_ended(fid, TaskOutcome::Failed)?;
                let kind = if activity {
                    EventKind::ActivityFailed {
                        error: error.clone(),
                        cause: cause.clone(),
                    }
                } else {
                    EventKind::TaskFailed {
                        resource_type: resource_type(resource),
                        resource: resource_name(resource),
                        error: error.clone(),
                        cause: cause.clone(),
                    }
                };
                self.emit(Some(fid), kind);
                self.frame_mut(fid)?.phase = Phase::Idle;
                let fault = Fault::new(
                    Some(error.clone().unwrap_or_else(|| names::TASK_FAILED.into())),
                    cause.clone(),
                );
                let flow = self.state_failed(fid, fault)?;
                self.drive(fid, flow)
            }
            Input::TimerFired { timer } => {
                let Some(t) = self.ex.timers.remove(timer) else {
                    return Ok(());
                };
                self.timer_fired(*timer, t)
            }
            Input::Stop { error, cause } => {
                let fault = Fault::new(error.clone(), cause.clone());
                self.end_execution(ExecutionStatus::Aborted, None, Some(fault))
            }
        }
    }

    /// Runs the root machine from its StartAt (after `ExecutionStarted`, or when redriving an
    /// execution that failed before its first state); `last_event` links the first state.
    fn start_root(&mut self, input: Arc<Value>, last_event: u64) -> R<()> {
        if over_limit(&input) {
            return self.end_execution(
                ExecutionStatus::Failed,
                None,
                Some(Fault::new(
                    Some(names::DATA_LIMIT_EXCEEDED.into()),
                    Some(
                        "The execution input exceeds the maximum number of bytes service limit."
                            .into(),
                    ),
                )),
            );
        }
        if let Some(t) = self.def.timeout_seconds {
            let at = deadline(self.now(), t);
            self.schedule_timer(at, Timer::ExecutionTimeout);
        }
        let node = RedriveNode {
            machine: 0,
            state: self.def.root().start_at,
            input,
            vars: Map::new(),
            kids: None,
        };
        // AWS gives the first state's event previousEventId 0.
        self.insert_frame(0, None, node, last_event, false);
        self.ex.next_frame = self.ex.next_frame.max(1);
        self.run_frame(0)
    }

    /// Creates frame `id` at `node`'s state (idle, about to be entered).
    fn insert_frame(
        &mut self,
        id: u64,
        parent: Option<(u64, usize)>,
        node: RedriveNode,
        last_event: u64,
        silent: bool,
    ) {
        let now = self.now();
        self.ex.frames.insert(
            id,
            Frame {
                parent,
                machine: node.machine,
                state: node.state,
                input: node.input,
                phase: Phase::Idle,
                vars: node.vars,
                last_event,
                entered_event: 0,
                entered_prev: 0,
                entered_ms: now,
                retry_counts: Vec::new(),
                retry_total: 0,
                silent,
                failed_kids: None,
            },
        );
    }

    // ----------------------------------------------------------------------------------
    // Redrive

    /// `RedriveExecution`: restarts the unsuccessful states with the input they had. Applied
    /// once per redrive count, and only while the execution is redrivable.
    fn redrive(&mut self, count: u32) -> R<()> {
        if self.ex.redrivable_at(self.now()).is_err()
            || count != self.ex.info.redrive_count.saturating_add(1)
        {
            return Ok(());
        }
        self.ex.info.redrive_count = count;
        self.ex.status = ExecutionStatus::Running;
        self.ex.output = None;
        self.ex.error = None;
        self.ex.cause = None;
        self.ex.stop_ms = None;
        self.ex.redrive_ms = Some(self.now());
        let id = self.emit(
            None,
            EventKind::ExecutionRedriven {
                redrive_count: count,
            },
        );
        let Some(mut node) = self.ex.redrive.take() else {
            // It failed before its first state: start over.
            let input = Arc::new(self.ex.info.input.clone());
            return self.start_root(input, id);
        };
        // AWS restarts the execution-level timeout from zero.
        if let Some(t) = self.def.timeout_seconds {
            let at = deadline(self.now(), t);
            self.schedule_timer(at, Timer::ExecutionTimeout);
        }
        let kids = node.kids.take();
        self.insert_frame(0, None, node, id, false);
        self.ex.next_frame = self.ex.next_frame.max(1);
        self.resume_frame(0, kids)
    }

    /// Runs a restored frame: its state is entered again; a Parallel/Map state only restarts
    /// the branches or iterations that did not succeed.
    fn resume_frame(&mut self, fid: u64, kids: Option<Box<RedriveKids>>) -> R<()> {
        let Some(kids) = kids else {
            return self.run_frame(fid);
        };
        if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
            return Ok(());
        }
        let flow = self.enter_redriven(fid, *kids)?;
        self.drive(fid, flow)
    }

    fn enter_redriven(&mut self, fid: u64, kids: RedriveKids) -> R<Flow> {
        self.begin_state(fid)?;
        let state = self.state_of(fid)?;
        match (kids, &state.kind) {
            (RedriveKids::Parallel { input, slots }, StateKind::Parallel { branches })
                if slots.len() == branches.len() =>
            {
                self.emit(
                    Some(fid),
                    EventKind::Plain {
                        event_type: "ParallelStateStarted".into(),
                    },
                );
                let mut results = vec![None; slots.len()];
                let mut redo = BTreeMap::new();
                for (i, s) in slots.iter().enumerate() {
                    match s {
                        Slot::Done(v) => results[i] = Some(v.clone()),
                        Slot::Redo(n) => {
                            redo.insert(i, n.clone());
                        }
                        Slot::Fresh(_) => {}
                    }
                }
                self.frame_mut(fid)?.phase = Phase::Parallel(Children {
                    results,
                    running: BTreeSet::new(),
                    failure: None,
                    launching: true,
                    redo,
                    branch_input: input,
                });
                for (slot, s) in slots.into_iter().enumerate() {
                    if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
                        return Ok(Flow::Done);
                    }
                    let phase = &self.frame(fid)?.phase;
                    if matches!(phase, Phase::Parallel(ch) if ch.failure.is_some()) {
                        break;
                    }
                    let node = match s {
                        Slot::Done(_) => continue,
                        Slot::Redo(_) => {
                            let taken = match &mut self.frame_mut(fid)?.phase {
                                Phase::Parallel(ch) => ch.redo.remove(&slot),
                                _ => None,
                            };
                            match taken {
                                Some(n) => n,
                                None => continue,
                            }
                        }
                        Slot::Fresh(v) => RedriveNode {
                            machine: branches[slot],
                            state: self.def.machines[branches[slot]].start_at,
                            input: Arc::new(v),
                            vars: self.frame(fid)?.vars.clone(),
                            kids: None,
                        },
                    };
                    let child = self.restore_child(fid, slot, node)?;
                    if let Phase::Parallel(ch) = &mut self.frame_mut(fid)?.phase {
                        ch.running.insert(child.0);
                    }
                    self.resume_frame(child.0, child.1)?;
                }
                if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
                    return Ok(Flow::Done);
                }
                if let Phase::Parallel(ch) = &mut self.frame_mut(fid)?.phase {
                    ch.launching = false;
                }
                self.parallel_settle(fid)
            }
            (
                RedriveKids::Map {
                    slots,
                    max,
                    tolerated_count,
                    tolerated_pct,
                },
                StateKind::Map(_),
            ) => {
                self.emit(
                    Some(fid),
                    EventKind::MapStateStarted {
                        length: slots.len(),
                    },
                );
                let n = slots.len();
                let mut items = vec![Value::Null; n];
                let mut results = vec![None; n];
                let mut resume = BTreeMap::new();
                for (i, s) in slots.into_iter().enumerate() {
                    match s {
                        Slot::Done(v) => results[i] = Some(v),
                        Slot::Redo(node) => {
                            resume.insert(i, node);
                        }
                        Slot::Fresh(v) => items[i] = v,
                    }
                }
                self.frame_mut(fid)?.phase = Phase::Map(Box::new(MapRun {
                    items,
                    next: 0,
                    max,
                    results,
                    running: BTreeMap::new(),
                    failures: 0,
                    tolerated_count,
                    tolerated_pct,
                    failure: None,
                    launching: false,
                    distributed: false,
                    last_iteration_event: 0,
                    redo: BTreeMap::new(),
                    resume,
                }));
                self.map_advance(fid)
            }
            // The definition does not match what was recorded: run the whole state again.
            _ => self.execute_state(fid),
        }
    }

    /// A child frame of `parent` restored from `node`; returns it with the kids to resume.
    fn restore_child(
        &mut self,
        parent: u64,
        slot: usize,
        mut node: RedriveNode,
    ) -> R<(u64, Option<Box<RedriveKids>>)> {
        let (last, silent) = {
            let p = self.frame(parent)?;
            (p.last_event, p.silent)
        };
        let id = self.ex.next_frame;
        self.ex.next_frame += 1;
        let kids = node.kids.take();
        self.insert_frame(id, Some((parent, slot)), node, last, silent);
        Ok((id, kids))
    }

    /// What a redrive of frame `fid` would restart, as the frame is now.
    fn node_of(&self, fid: u64) -> R<RedriveNode> {
        let f = self.frame(fid)?;
        let kids = match &f.phase {
            Phase::Parallel(_) | Phase::Map(_) => self.live_kids(fid)?,
            _ => f.failed_kids.clone(),
        };
        Ok(RedriveNode {
            machine: f.machine,
            state: f.state,
            input: f.input.clone(),
            vars: f.vars.clone(),
            kids,
        })
    }

    /// The branches/iterations of a running Parallel or inline Map frame.
    fn live_kids(&self, fid: u64) -> R<Option<Box<RedriveKids>>> {
        let slot_of = |c: &u64| -> Option<usize> {
            self.ex.frames.get(c).and_then(|f| f.parent).map(|(_, s)| s)
        };
        Ok(match &self.frame(fid)?.phase {
            Phase::Parallel(ch) => {
                let running: BTreeMap<usize, u64> = ch
                    .running
                    .iter()
                    .filter_map(|c| slot_of(c).map(|s| (s, *c)))
                    .collect();
                let mut slots = Vec::with_capacity(ch.results.len());
                for (i, r) in ch.results.iter().enumerate() {
                    slots.push(if let Some(v) = r {
                        Slot::Done(v.clone())
                    } else if let Some(n) = ch.redo.get(&i) {
                        Slot::Redo(n.clone())
                    } else if let Some(c) = running.get(&i) {
                        Slot::Redo(self.node_of(*c)?)
                    } else {
                        Slot::Fresh(ch.branch_input.clone())
                    });
                }
                Some(Box::new(RedriveKids::Parallel {
                    input: ch.branch_input.clone(),
                    slots,
                }))
            }
            Phase::Map(m) if !m.distributed => {
                let running: BTreeMap<usize, u64> =
                    m.running.iter().map(|(c, i)| (*i, *c)).collect();
                let mut slots = Vec::with_capacity(m.results.len());
                for (i, r) in m.results.iter().enumerate() {
                    slots.push(if let Some(n) = m.redo.get(&i) {
                        Slot::Redo(n.clone())
                    } else if let Some(c) = running.get(&i) {
                        Slot::Redo(self.node_of(*c)?)
                    } else if let Some(v) = r {
                        Slot::Done(v.clone())
                    } else if let Some(n) = m.resume.get(&i) {
                        Slot::Redo(n.clone())
                    } else {
                        Slot::Fresh(m.items.get(i).cloned().unwrap_or(Value::Null))
                    });
                }
                Some(Box::new(RedriveKids::Map {
                    slots,
                    max: m.max,
                    tolerated_count: m.tolerated_count,
                    tolerated_pct: m.tolerated_pct,
                }))
            }
            _ => None,
        })
    }

    fn restart_heartbeat(
        &mut self,
        fid: u64,
        task: u64,
        old: Option<u64>,
        seconds: Option<u64>,
    ) -> R<()> {
        self.cancel_timer(old);
        let Some(s) = seconds else { return Ok(()) };
        let at = deadline(self.now(), s);
        let new = self.schedule_timer(at, Timer::Heartbeat { frame: fid, task });
        if let Phase::Task {
            heartbeat_timer, ..
        } = &mut self.frame_mut(fid)?.phase
        {
            *heartbeat_timer = Some(new);
        }
        Ok(())
    }

    /// Removes an open task and its timers; `None` if the task is unknown (stale input).
    fn take_task(&mut self, task: u64) -> R<Option<u64>> {
        let Some(fid) = self.ex.tasks.remove(&task) else {
            return Ok(None);
        };
        let (t1, t2) = match &self.frame(fid)?.phase {
            Phase::Task {
                timeout_timer,
                heartbeat_timer,
                ..
            } => (*timeout_timer, *heartbeat_timer),
            _ => return Ok(None),
        };
        self.cancel_timer(t1);
        self.cancel_timer(t2);
        Ok(Some(fid))
    }

    /// Notes that the task of frame `fid` (still in its task phase) ended; returns whether it
    /// is an activity, and its resource.
    fn task_ended(&mut self, fid: u64, outcome: TaskOutcome) -> R<(bool, &str)> {
        let now = self.now();
        let (activity, ended) = match &self.frame(fid)?.phase {
            Phase::Task {
                resource,
                activity,
                scheduled_ms,
                ..
            } => (
                *activity,
                TaskEnded {
                    resource: resource.clone(),
                    outcome,
                    after_ms: scheduled_ms.map(|at| now.saturating_sub(at)),
                },
            ),
            _ => return Err(invariant("task frame without task phase")),
        };
        self.ended_tasks.push(ended);
        let resource = self.ended_tasks.last().map_or("", |t| t.resource.as_str());
        Ok((activity, resource))
    }

    fn timer_fired(&mut self, _id: u64, t: Timer) -> R<()> {
        match t {
            Timer::ExecutionTimeout => self.end_execution(
                ExecutionStatus::TimedOut,
                None,
                Some(Fault::new(None, None)),
            ),
            Timer::Wait { frame } => {
                let effective = match &self.frame(frame)?.phase {
                    Phase::Waiting { effective, .. } => effective.clone(),
                    _ => return Ok(()),
                };
                self.frame_mut(frame)?.phase = Phase::Idle;
                let flow = self.finish_simple(frame, effective)?;
                self.drive(frame, flow)
            }
            Timer::Retry { frame } => {
                if !matches!(self.frame(frame)?.phase, Phase::RetryWait { .. }) {
                    return Ok(());
                }
                self.frame_mut(frame)?.phase = Phase::Idle;
                let flow = self.execute_state(frame)?;
                self.drive(frame, flow)
            }
            Timer::TaskTimeout { frame, task } | Timer::Heartbeat { frame, task } => {
                let heartbeat = matches!(t, Timer::Heartbeat { .. });
                if self.take_task(task)?.is_none() {
                    return Ok(());
                }
                let error = if heartbeat {
                    names::HEARTBEAT_TIMEOUT
                } else {
                    names::TIMEOUT
                };
                let fault = Fault {
                    error: Some(error.into()),
                    cause: None,
                    timed_out: true,
                };
                // The history has the reported error (`States.Timeout` either way, as AWS's
                // does); the state's Retry and Catch still tell a heartbeat timeout apart.
                let reported = fault.reported_error().map(str::to_string);
                let (activity, resource) = self.task_ended(frame, TaskOutcome::TimedOut)?;
                let kind = if activity {
                    EventKind::ActivityTimedOut {
                        error: reported,
                        cause: None,
                    }
                } else {
                    EventKind::TaskTimedOut {
                        resource_type: resource_type(resource),
                        resource: resource_name(resource),
                        error: reported,
                        cause: None,
                    }
                };
                self.emit(Some(frame), kind);
                self.commands.push(Command::CancelTask { task });
                self.frame_mut(frame)?.phase = Phase::Idle;
                let flow = self.state_failed(frame, fault)?;
                self.drive(frame, flow)
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Frames

    fn drive(&mut self, fid: u64, flow: Flow) -> R<()> {
        if flow == Flow::Continue {
            self.run_frame(fid)
        } else {
            Ok(())
        }
    }

    fn run_frame(&mut self, fid: u64) -> R<()> {
        loop {
            if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
                return Ok(());
            }
            if self.ex.last_event_id >= HISTORY_LIMIT {
                // AWS fails an execution whose history reaches its size limit; this also
                // bounds a step over an endless loop of non-blocking states.
                return self.end_execution(
                    ExecutionStatus::Failed,
                    None,
                    Some(Fault::new(
                        Some(names::RUNTIME.into()),
                        Some(format!(
                            "The execution reached the maximum number of history events ({HISTORY_LIMIT})."
                        )),
                    )),
                );
            }
            match self.enter_state(fid)? {
                Flow::Continue => continue,
                Flow::Blocked | Flow::Done => return Ok(()),
            }
        }
    }

    fn enter_state(&mut self, fid: u64) -> R<Flow> {
        self.begin_state(fid)?;
        self.execute_state(fid)
    }

    /// Emits the current state's `…StateEntered` and resets its per-entry counters.
    fn begin_state(&mut self, fid: u64) -> R<()> {
        let state = self.state_of(fid)?;
        let f_prev = self.frame(fid)?.last_event;
        let input = self.frame(fid)?.input.clone();
        let now = self.now();
        let id = self.emit(
            Some(fid),
            EventKind::StateEntered {
                state_type: Cow::Borrowed(state.kind.type_name()),
                name: state.name.clone(),
                input,
            },
        );
        let f = self.frame_mut(fid)?;
        f.entered_prev = f_prev;
        f.entered_event = id;
        f.entered_ms = now;
        f.retry_counts.clear();
        f.retry_counts.resize(state.retry.len(), 0);
        f.retry_total = 0;
        Ok(())
    }

    /// Runs the body of the current state (also used for retries, without a new Entered).
    fn execute_state(&mut self, fid: u64) -> R<Flow> {
        self.frame_mut(fid)?.failed_kids = None;
        let state = self.state_of(fid)?;
        let result = match &state.kind {
            StateKind::Pass { result } => self.exec_pass(fid, state, result.as_ref()),
            StateKind::Succeed => {
                let raw = self.frame(fid)?.input.clone();
                match self.input_path(fid, state, &raw)? {
                    Ok(eff) => self.finish_simple(fid, eff).map(Ok),
                    Err(f) => Ok(Err(f)),
                }
            }
            StateKind::Fail(spec) => {
                let raw = self.frame(fid)?.input.clone();
                let ev = |run: &mut Self,
                          t: &Option<Template>,
                          p: &Option<Template>,
                          field: &str|
                 -> R<Result<Option<String>, Failure>> {
                    if let Some(t) = t {
                        let v = run.scoped(fid, &raw, &CtxExtra::default(), (None, None), |s| {
                            s.eval(t, field)
                        })?;
                        return Ok(v.map(|v| Some(json_display(&v))));
                    }
                    match p {
                        Some(Template::Path { path, .. }) => {
                            let v =
                                run.scoped(fid, &raw, &CtxExtra::default(), (None, None), |s| {
                                    s.lookup(path)
                                })?;
                            Ok(match v {
                                Ok(Some(v)) => Ok(Some(json_display(&v))),
                                Ok(None) => Err(Failure::runtime(format!(
                                    "The JSONPath '{}' specified for the field '{field}Path' could not be found in the input '{}'",
                                    path.source(),
                                    crate::history::json_text(&raw)
                                ))),
                                Err(e) => Err(e),
                            })
                        }
                        Some(t) => {
                            let v =
                                run.scoped(fid, &raw, &CtxExtra::default(), (None, None), |s| {
                                    s.eval(t, field)
                                })?;
                            Ok(v.map(|v| Some(json_display(&v))))
                        }
                        None => Ok(Ok(None)),
                    }
                };
                let error = ev(self, &spec.error, &spec.error_path, "Error")?;
                let cause = ev(self, &spec.cause, &spec.cause_path, "Cause")?;
                match (error, cause) {
                    (Ok(error), Ok(cause)) => {
                        return self.frame_failed(fid, Fault::new(error, cause));
                    }
                    (Err(f), _) | (_, Err(f)) => Ok(Err(f)),
                }
            }
            StateKind::Choice { choices, default } => {
                self.exec_choice(fid, state, choices, *default)
            }
            StateKind::Wait(spec) => self.exec_wait(fid, state, spec),
            StateKind::Task(_) => self.exec_task(fid, state),
            StateKind::Parallel { branches } => self.exec_parallel(fid, state, branches),
            StateKind::Map(spec) => self.exec_map(fid, state, spec),
        }?;
        match result {
            Ok(flow) => Ok(flow),
            Err(failure) => self.fail_in_state(fid, failure),
        }
    }

    // ----------------------------------------------------------------------------------
    // Data flow helpers

    fn input_path(&mut self, fid: u64, state: &State, raw: &Value) -> R<Result<Value, Failure>> {
        if state.query_language == QueryLanguage::JSONata {
            return Ok(Ok(Value::clone(raw)));
        }
        let v = match &state.io.input_path {
            OptionalPath::Default => Ok(Value::clone(raw)),
            OptionalPath::Null => Ok(json!({})),
            OptionalPath::Path(p) => {
                self.scoped(fid, raw, &CtxExtra::default(), (None, None), |s| {
                    s.select(p)
                })?
            }
        };
        if let (Some(p), Ok(v)) = (self.probe.as_deref_mut(), &v) {
            p.after_input_path = Some(v.clone());
        }
        Ok(v)
    }

    fn output_path(&mut self, fid: u64, state: &State, v: Value) -> R<Result<Value, Failure>> {
        match &state.io.output_path {
            OptionalPath::Default => Ok(Ok(v)),
            OptionalPath::Null => Ok(Ok(json!({}))),
            OptionalPath::Path(p) => {
                self.scoped(fid, &v, &CtxExtra::default(), (None, None), |s| s.select(p))
            }
        }
    }

    fn result_path(
        &self,
        rp: &OptionalPath,
        raw: Arc<Value>,
        result: Value,
    ) -> Result<Value, Failure> {
        match rp {
            OptionalPath::Default => Ok(result),
            OptionalPath::Null => Ok(Arc::unwrap_or_clone(raw)),
            OptionalPath::Path(p) => {
                if p.is_root() {
                    return Ok(result);
                }
                let mut doc = Arc::unwrap_or_clone(raw);
                p.set(&mut doc, result)
                    .map_err(|e| Failure::new(names::RESULT_PATH_MATCH_FAILURE, e.0))?;
                Ok(doc)
            }
        }
    }

    fn eval_assign(
        &mut self,
        fid: u64,
        assign: Option<&Template>,
        doc: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
    ) -> R<Result<Option<Map<String, Value>>, Failure>> {
        let Some(t) = assign else {
            if let Some(p) = self.probe.as_deref_mut() {
                p.assigned = None;
            }
            return Ok(Ok(None));
        };
        let v = self.scoped(
            fid,
            doc,
            &CtxExtra::default(),
            (result, error_output),
            |s| s.eval(t, "Assign"),
        )?;
        // AWS records `assignedVariables` only when something was assigned.
        let v = v.map(|v| match v {
            Value::Object(m) if !m.is_empty() => Some(m),
            _ => None,
        });
        if let (Some(p), Ok(a)) = (self.probe.as_deref_mut(), &v) {
            p.assigned = a.clone();
        }
        Ok(v)
    }

    /// JSONata `Output` (or the default) for a state.
    fn jsonata_output(
        &mut self,
        fid: u64,
        output: Option<&Template>,
        raw: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
        default: Value,
    ) -> R<Result<Value, Failure>> {
        let Some(t) = output else {
            return Ok(Ok(default));
        };
        self.scoped(
            fid,
            raw,
            &CtxExtra::default(),
            (result, error_output),
            |s| s.eval(t, "Output"),
        )
    }

    /// JSONata states: `Assign` and `Output` (or `default`), evaluated with the same
    /// `$states` bindings before any variable changes.
    #[allow(clippy::too_many_arguments)]
    fn jsonata_exit(
        &mut self,
        fid: u64,
        assign: Option<&Template>,
        output: Option<&Template>,
        raw: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
        default: Value,
    ) -> R<Result<(Value, Assigned), Failure>> {
        let assigned = match self.eval_assign(fid, assign, raw, result, error_output)? {
            Ok(a) => a,
            Err(f) => return Ok(Err(f)),
        };
        Ok(self
            .jsonata_output(fid, output, raw, result, error_output, default)?
            .map(|out| (out, assigned)))
    }

    /// Emits `…StateExited`, applies assigned variables and follows the transition.
    fn exit_state(
        &mut self,
        fid: u64,
        state: &State,
        output: Value,
        assigned: Option<Map<String, Value>>,
        next: Option<usize>,
    ) -> R<Flow> {
        if over_limit(&output) {
            let fault = Fault::new(
                Some(names::DATA_LIMIT_EXCEEDED.into()),
                Some(format!(
                    "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                    state.name
                )),
            );
            return self.frame_failed(fid, fault);
        }
        let next = match next {
            Some(n) => Some(n),
            None => match state.transition {
                Transition::Next(n) => Some(n),
                _ => None,
            },
        };
        if let Some(p) = self.probe.as_deref_mut() {
            p.outcome = Some(ProbeOutcome::Exited { output, next });
            return Ok(Flow::Done);
        }
        let output = Arc::new(output);
        self.emit(
            Some(fid),
            EventKind::StateExited {
                state_type: Cow::Borrowed(state.kind.type_name()),
                name: state.name.clone(),
                output: output.clone(),
                assigned: assigned.clone(),
            },
        );
        let f = self.frame_mut(fid)?;
        if let Some(a) = assigned {
            f.vars.extend(a);
        }
        f.failed_kids = None;
        match next {
            Some(n) => {
                f.state = n;
                f.input = output;
                f.phase = Phase::Idle;
                Ok(Flow::Continue)
            }
            None => self.finish_frame(fid, Ok(output)),
        }
    }

    /// Output step for states without a result (Succeed, Wait): OutputPath / JSONata Output.
    fn finish_simple(&mut self, fid: u64, effective: Value) -> R<Flow> {
        let state = self.state_of(fid)?;
        let raw = self.frame(fid)?.input.clone();
        let (output, assigned) = if state.query_language == QueryLanguage::JSONata {
            match self.jsonata_exit(
                fid,
                state.assign.as_ref(),
                state.io.output.as_ref(),
                &raw,
                None,
                None,
                Value::clone(&raw),
            )? {
                Ok(x) => x,
                Err(f) => return self.fail_in_state(fid, f),
            }
        } else {
            let assigned =
                match self.eval_assign(fid, state.assign.as_ref(), &effective, None, None)? {
                    Ok(a) => a,
                    Err(f) => return self.fail_in_state(fid, f),
                };
            match self.output_path(fid, state, effective)? {
                Ok(o) => (o, assigned),
                Err(f) => return self.fail_in_state(fid, f),
            }
        };
        if matches!(state.kind, StateKind::Succeed) {
            if over_limit(&output) || self.probe.is_some() {
                return self.exit_state(fid, state, output, assigned, None);
            }
            let output = Arc::new(output);
            self.emit(
                Some(fid),
                EventKind::StateExited {
                    state_type: Cow::Borrowed("Succeed"),
                    name: state.name.clone(),
                    output: output.clone(),
                    assigned,
                },
            );
            return self.finish_frame(fid, Ok(output));
        }
        self.exit_state(fid, state, output, assigned, None)
    }

    fn fail_in_state(&mut self, fid: u64, f: Failure) -> R<Flow> {
        let entered_prev = self.frame(fid)?.entered_prev;
        let fault = self.in_state(fid, f);
        if fault.error.as_deref() == Some(names::QUERY_EVALUATION_ERROR) {
            let state = self.state_of(fid)?;
            let location = fault.cause.as_deref().and_then(|c| {
                let start = c.find("for the field '")? + "for the field '".len();
                let end = c[start..].find('\'')?;
                Some(c[start..start + end].to_string())
            });
            self.emit_linked(
                Some(fid),
                EventKind::EvaluationFailed {
                    error: names::QUERY_EVALUATION_ERROR.into(),
                    cause: fault.cause.clone().unwrap_or_default(),
                    location,
                    state: state.name.to_string(),
                },
                Some(entered_prev),
                true,
            );
        }
        self.state_failed(fid, fault)
    }

    // ----------------------------------------------------------------------------------
    // States

    fn exec_pass(
        &mut self,
        fid: u64,
        state: &State,
        result: Option<&Value>,
    ) -> R<Result<Flow, Failure>> {
        let raw = self.frame(fid)?.input.clone();
        if state.query_language == QueryLanguage::JSONata {
            let default = result.cloned().unwrap_or_else(|| Value::clone(&raw));
            let (out, assigned) = match self.jsonata_exit(
                fid,
                state.assign.as_ref(),
                state.io.output.as_ref(),
                &raw,
                None,
                None,
                default,
            )? {
                Ok(x) => x,
                Err(f) => return Ok(Err(f)),
            };
            return self.exit_state(fid, state, out, assigned, None).map(Ok);
        }
        let res = match (&state.io.parameters, result) {
            (Some(p), _) => {
                let eff = match self.input_path(fid, state, &raw)? {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match self.scoped(fid, &eff, &CtxExtra::default(), (None, None), |s| {
                    s.eval(p, "Parameters")
                })? {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                }
            }
            (None, Some(r)) => {
                // InputPath still applies (and can fail) even though Result replaces its output.
                if let OptionalPath::Path(_) = state.io.input_path {
                    if let Err(f) = self.input_path(fid, state, &raw)? {
                        return Ok(Err(f));
                    }
                }
                if let Some(p) = self.probe.as_deref_mut() {
                    // AWS shows neither of them when `Result` replaces the input.
                    p.after_input_path = None;
                    p.result = Some(r.clone());
                }
                r.clone()
            }
            (None, None) => match self.input_path(fid, state, &raw)? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            },
        };
        if let Some(p) = self.probe.as_deref_mut() {
            if result.is_none() {
                p.after_parameters = Some(res.clone());
            }
            p.after_result_selector = Some(res.clone());
        }
        let assigned = match self.eval_assign(fid, state.assign.as_ref(), &res, None, None)? {
            Ok(a) => a,
            Err(f) => return Ok(Err(f)),
        };
        let merged = match self.result_path(&state.io.result_path, raw, res) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        if let Some(p) = self.probe.as_deref_mut() {
            p.after_result_path = Some(merged.clone());
        }
        let out = match self.output_path(fid, state, merged)? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        self.exit_state(fid, state, out, assigned, None).map(Ok)
    }

    fn eval_rule(&mut self, fid: u64, rule: &ChoiceRule, doc: &Value) -> R<Result<bool, Failure>> {
        match rule {
            ChoiceRule::Literal(b) => Ok(Ok(*b)),
            ChoiceRule::And(rs) => {
                for r in rs {
                    match self.eval_rule(fid, r, doc)? {
                        Ok(true) => {}
                        other => return Ok(other),
                    }
                }
                Ok(Ok(true))
            }
            ChoiceRule::Or(rs) => {
                for r in rs {
                    match self.eval_rule(fid, r, doc)? {
                        Ok(false) => {}
                        other => return Ok(other),
                    }
                }
                Ok(Ok(false))
            }
            ChoiceRule::Not(r) => Ok(self.eval_rule(fid, r, doc)?.map(|b| !b)),
            ChoiceRule::Condition(t) => {
                let v = self.scoped(fid, doc, &CtxExtra::default(), (None, None), |s| {
                    s.eval(t, "Condition")
                })?;
                Ok(match v {
                    Ok(Value::Bool(b)) => Ok(b),
                    Ok(other) => Err(Failure::query_evaluation(format!(
                        "The Condition field evaluated to a non-boolean value: {}",
                        json_display(&other)
                    ))),
                    Err(e) => Err(e),
                })
            }
            ChoiceRule::Compare {
                variable,
                op,
                operand,
            } => {
                let extra = CtxExtra::default();
                let var =
                    match self.scoped(fid, doc, &extra, (None, None), |s| s.lookup(variable))? {
                        Ok(v) => v,
                        Err(e) => return Ok(Err(e)),
                    };
                if *op == Op::IsPresent {
                    let want = matches!(operand, Operand::Literal(Value::Bool(true)));
                    return Ok(Ok(var.is_some() == want));
                }
                let Some(var) = var else {
                    return Ok(Err(Failure::runtime(format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        variable.source()
                    ))));
                };
                let rhs = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => {
                        match self.scoped(fid, doc, &extra, (None, None), |s| s.lookup(p))? {
                            Ok(Some(v)) => v,
                            Ok(None) => {
                                return Ok(Err(Failure::runtime(format!(
                                    "Invalid path '{}': The choice state's condition path references an invalid value.",
                                    p.source()
                                ))))
                            }
                            Err(e) => return Ok(Err(e)),
                        }
                    }
                };
                Ok(Ok(compare(*op, &var, &rhs)))
            }
        }
    }

    fn exec_choice(
        &mut self,
        fid: u64,
        state: &State,
        choices: &[crate::asl::ChoiceBranch],
        default: Option<usize>,
    ) -> R<Result<Flow, Failure>> {
        let raw = self.frame(fid)?.input.clone();
        let eff = match self.input_path(fid, state, &raw)? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let mut chosen: Option<(usize, Option<&Template>, Option<&Template>)> = None;
        for c in choices {
            match self.eval_rule(fid, &c.rule, &eff)? {
                Ok(true) => {
                    chosen = Some((
                        c.next,
                        c.assign.as_ref().or(state.assign.as_ref()),
                        c.output.as_ref().or(state.io.output.as_ref()),
                    ));
                    break;
                }
                Ok(false) => {}
                Err(f) => return Ok(Err(f)),
            }
        }
        let (next, assign, output) = match chosen {
            Some(c) => c,
            None => match default {
                Some(d) => (d, state.assign.as_ref(), state.io.output.as_ref()),
                None => return Ok(Err(Failure::new(names::NO_CHOICE_MATCHED, "No Matches!"))),
            },
        };
        let assigned = match self.eval_assign(fid, assign, &eff, None, None)? {
            Ok(a) => a,
            Err(f) => return Ok(Err(f)),
        };
        let out = if state.query_language == QueryLanguage::JSONata {
            match self.jsonata_output(fid, output, &raw, None, None, Value::clone(&raw))? {
                Ok(o) => o,
                Err(f) => return Ok(Err(f)),
            }
        } else {
            match self.output_path(fid, state, eff)? {
                Ok(o) => o,
                Err(f) => return Ok(Err(f)),
            }
        };
        self.exit_state(fid, state, out, assigned, Some(next))
            .map(Ok)
    }

    fn exec_wait(&mut self, fid: u64, state: &State, spec: &WaitSpec) -> R<Result<Flow, Failure>> {
        let raw = self.frame(fid)?.input.clone();
        let eff = match self.input_path(fid, state, &raw)? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let extra = CtxExtra::default();
        let fire_at: i64 = match spec {
            WaitSpec::Seconds(n) => {
                let v = match self.number(fid, n, &eff, "Seconds")? {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match v.as_i64() {
                    Some(s) if (0..=MAX_SECONDS as i64).contains(&s) => {
                        deadline(self.now(), s as u64)
                    }
                    _ => {
                        return Ok(Err(Failure::runtime(format!(
                            "The Seconds field must be a non-negative integer: {}",
                            json_display(&v)
                        ))))
                    }
                }
            }
            WaitSpec::SecondsPath(p) => {
                let v = match self.scoped(fid, &eff, &extra, (None, None), |s| s.select(p))? {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)) {
                    Some(s) if (0..=MAX_SECONDS as i64).contains(&s) => {
                        deadline(self.now(), s as u64)
                    }
                    Some(_) => {
                        return Ok(Err(Failure::runtime(format!(
                            "The SecondsPath parameter references a negative value: {} == {}",
                            p.source(),
                            json_display(&v)
                        ))))
                    }
                    None => {
                        return Ok(Err(Failure::runtime(format!(
                            "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                            p.source(),
                            json_display(&v)
                        ))))
                    }
                }
            }
            WaitSpec::Timestamp(t) => {
                let v = match self
                    .scoped(fid, &eff, &extra, (None, None), |s| s.eval(t, "Timestamp"))?
                {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match v.as_str().and_then(timestamp::parse) {
                    Some(ns) => (ns / 1_000_000) as i64,
                    None => {
                        return Ok(Err(Failure::query_evaluation(format!(
                            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                            json_display(&v)
                        ))))
                    }
                }
            }
            WaitSpec::TimestampPath(p) => {
                let v = match self.scoped(fid, &eff, &extra, (None, None), |s| s.select(p))? {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match v.as_str().and_then(timestamp::parse) {
                    Some(ns) => (ns / 1_000_000) as i64,
                    None => {
                        return Ok(Err(Failure::runtime(format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                            p.source(),
                            json_display(&v)
                        ))))
                    }
                }
            }
        };
        // TestState does not wait.
        if fire_at <= self.now() || self.probe.is_some() {
            return self.finish_simple(fid, eff).map(Ok);
        }
        let timer = self.schedule_timer(fire_at, Timer::Wait { frame: fid });
        self.frame_mut(fid)?.phase = Phase::Waiting {
            timer,
            effective: eff,
        };
        Ok(Ok(Flow::Blocked))
    }

    /// Resolves a number field (literal, `…Path`, JSONata).
    fn number(
        &mut self,
        fid: u64,
        n: &NumberSource,
        doc: &Value,
        field: &str,
    ) -> R<Result<Value, Failure>> {
        let extra = CtxExtra::default();
        match n {
            NumberSource::Literal(v) => Ok(Ok(v.clone())),
            NumberSource::Path(p) => self.scoped(fid, doc, &extra, (None, None), |s| s.select(p)),
            NumberSource::Expr(t) => {
                self.scoped(fid, doc, &extra, (None, None), |s| s.eval(t, field))
            }
        }
    }

    /// A positive whole number of seconds no larger than ASL's maximum (99999999).
    fn seconds_field(
        &mut self,
        fid: u64,
        n: Option<&NumberSource>,
        doc: &Value,
        field: &str,
    ) -> R<Result<Option<u64>, Failure>> {
        Ok(match self.integer(fid, n, doc, field)? {
            Ok(None) => Ok(None),
            Ok(Some(x)) if x >= 1.0 && x <= MAX_SECONDS as f64 && x.fract() == 0.0 => {
                Ok(Some(x as u64))
            }
            Ok(Some(x)) => Err(Failure::runtime(format!(
                "The {field} value {x} is not a whole number of seconds between 1 and {MAX_SECONDS}."
            ))),
            Err(f) => Err(f),
        })
    }

    /// An integer-valued field: numbers and numeric strings are accepted.
    fn integer(
        &mut self,
        fid: u64,
        n: Option<&NumberSource>,
        doc: &Value,
        field: &str,
    ) -> R<Result<Option<f64>, Failure>> {
        let Some(n) = n else { return Ok(Ok(None)) };
        let v = match self.number(fid, n, doc, field)? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let parsed = match &v {
            Value::Number(x) => x.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(x) => Ok(Ok(Some(x))),
            None => {
                let shown = match &v {
                    Value::String(s) => s.clone(),
                    o => crate::history::json_text(o),
                };
                let src = match n {
                    NumberSource::Path(p) => p.source().to_string(),
                    _ => String::new(),
                };
                Ok(Err(Failure::runtime(format!(
                    "The {field}Path field refers to value \"{shown}\" which is not a valid integer: {src}"
                ))))
            }
        }
    }

    fn exec_task(&mut self, fid: u64, state: &State) -> R<Result<Flow, Failure>> {
        let StateKind::Task(spec) = &state.kind else {
            return Err(invariant("exec_task on non-task"));
        };
        let raw = self.frame(fid)?.input.clone();
        if let Some(known) = &self.ctx.activities {
            if spec.is_activity() && !known.contains(&spec.resource) {
                self.missing_activities.push(spec.resource.clone());
                return Ok(Err(Failure::runtime(format!(
                    "The activity {} does not exist.",
                    spec.resource
                ))));
            }
        }
        let task = self.ex.next_task;
        self.ex.next_task += 1;
        let token = task_token::mint(&self.ctx.token_key, &self.ex.info.execution_arn, task);
        let extra = CtxExtra {
            token: Some(token.clone()),
            map_item: None,
        };
        let params = if state.query_language == QueryLanguage::JSONata {
            match &state.io.parameters {
                Some(t) => match self
                    .scoped(fid, &raw, &extra, (None, None), |s| s.eval(t, "Arguments"))?
                {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                },
                None => Value::clone(&raw),
            }
        } else {
            let eff = match self.input_path(fid, state, &raw)? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            };
            match &state.io.parameters {
                Some(t) => match self
                    .scoped(fid, &eff, &extra, (None, None), |s| s.eval(t, "Parameters"))?
                {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                },
                None => eff,
            }
        };
        let timeout =
            match self.seconds_field(fid, spec.timeout.as_ref(), &raw, "TimeoutSeconds")? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            };
        let heartbeat =
            match self.seconds_field(fid, spec.heartbeat.as_ref(), &raw, "HeartbeatSeconds")? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            };
        if self.probe.is_some() {
            return self.probe_result(fid, params).map(Ok);
        }
        let activity = spec.is_activity();
        let kind = if activity {
            EventKind::ActivityScheduled {
                resource: spec.resource.clone(),
                input: params.clone(),
                timeout_seconds: timeout,
                heartbeat_seconds: heartbeat,
            }
        } else {
            EventKind::TaskScheduled {
                resource_type: resource_type(&spec.resource),
                resource: resource_name(&spec.resource),
                region: self.ex.info.region.clone(),
                parameters: params.clone(),
                timeout_seconds: timeout,
                heartbeat_seconds: heartbeat,
            }
        };
        self.emit(Some(fid), kind);
        let now = self.now();
        let timeout_timer = timeout.map(|t| {
            self.schedule_timer(deadline(now, t), Timer::TaskTimeout { frame: fid, task })
        });
        let heartbeat_timer = heartbeat
            .map(|h| self.schedule_timer(deadline(now, h), Timer::Heartbeat { frame: fid, task }));
        let attempt = self.frame(fid)?.retry_total + 1;
        self.ex.tasks.insert(task, fid);
        self.frame_mut(fid)?.phase = Phase::Task {
            task,
            resource: spec.resource.clone(),
            activity,
            timeout_timer,
            heartbeat_timer,
            heartbeat_seconds: heartbeat,
            scheduled_ms: Some(now),
        };
        self.commands.push(Command::DispatchTask(TaskDispatch {
            task,
            token,
            resource: spec.resource.clone(),
            state_name: state.name.to_string(),
            input: params,
            attempt,
            timeout_seconds: timeout,
            heartbeat_seconds: heartbeat,
            callback: spec.is_callback(),
        }));
        Ok(Ok(Flow::Blocked))
    }

    /// TestState: a Task, Parallel or Map state's effective input is `params`; its result (or
    /// error) comes from the mock.
    fn probe_result(&mut self, fid: u64, params: Value) -> R<Flow> {
        let mock = match self.probe.as_deref_mut() {
            Some(p) => {
                p.after_parameters = Some(params);
                p.mock.clone()
            }
            None => None,
        };
        match mock {
            Some(Ok(result)) => {
                if let Some(p) = self.probe.as_deref_mut() {
                    p.result = Some(result.clone());
                }
                self.complete_with_result(fid, result)
            }
            Some(Err(fault)) => self.state_failed(fid, fault),
            None => Err(invariant(
                "TestState of a state that needs a mock, without one",
            )),
        }
    }

    /// Result processing for Task, Parallel and Map, then exit.
    fn complete_with_result(&mut self, fid: u64, result: Value) -> R<Flow> {
        let state = self.state_of(fid)?;
        let raw = self.frame(fid)?.input.clone();
        if over_limit(&result) {
            return self.frame_failed(
                fid,
                Fault::new(
                    Some(names::DATA_LIMIT_EXCEEDED.into()),
                    Some(format!(
                        "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                        state.name
                    )),
                ),
            );
        }
        if state.query_language == QueryLanguage::JSONata {
            let (out, assigned) = match self.jsonata_exit(
                fid,
                state.assign.as_ref(),
                state.io.output.as_ref(),
                &raw,
                Some(&result),
                None,
                result.clone(),
            )? {
                Ok(x) => x,
                Err(f) => return self.fail_in_state(fid, f),
            };
            return self.exit_state(fid, state, out, assigned, None);
        }
        let selected = match &state.io.result_selector {
            Some(t) => match self.scoped(fid, &result, &CtxExtra::default(), (None, None), |s| {
                s.eval(t, "ResultSelector")
            })? {
                Ok(v) => v,
                Err(f) => return self.fail_in_state(fid, f),
            },
            None => result,
        };
        if let Some(p) = self.probe.as_deref_mut() {
            p.after_result_selector = Some(selected.clone());
        }
        let assigned = match self.eval_assign(fid, state.assign.as_ref(), &selected, None, None)? {
            Ok(a) => a,
            Err(f) => return self.fail_in_state(fid, f),
        };
        let merged = match self.result_path(&state.io.result_path, raw, selected) {
            Ok(v) => v,
            Err(f) => return self.fail_in_state(fid, f),
        };
        if let Some(p) = self.probe.as_deref_mut() {
            p.after_result_path = Some(merged.clone());
        }
        let out = match self.output_path(fid, state, merged)? {
            Ok(v) => v,
            Err(f) => return self.fail_in_state(fid, f),
        };
        self.exit_state(fid, state, out, assigned, None)
    }

    fn new_child(
        &mut self,
        parent: u64,
        slot: usize,
        machine: usize,
        input: Value,
        silent: bool,
    ) -> R<u64> {
        let (vars, last, parent_silent) = {
            let p = self.frame(parent)?;
            (p.vars.clone(), p.last_event, p.silent)
        };
        let id = self.ex.next_frame;
        self.ex.next_frame += 1;
        let start = self.def.machines[machine].start_at;
        self.ex.frames.insert(
            id,
            Frame {
                parent: Some((parent, slot)),
                machine,
                state: start,
                input: Arc::new(input),
                phase: Phase::Idle,
                vars,
                last_event: last,
                entered_event: 0,
                entered_prev: 0,
                entered_ms: self.now(),
                retry_counts: Vec::new(),
                retry_total: 0,
                silent: silent || parent_silent,
                failed_kids: None,
            },
        );
        Ok(id)
    }

    fn exec_parallel(
        &mut self,
        fid: u64,
        state: &State,
        branches: &[usize],
    ) -> R<Result<Flow, Failure>> {
        let raw = self.frame(fid)?.input.clone();
        let branch_input = if state.query_language == QueryLanguage::JSONata {
            match &state.io.parameters {
                Some(t) => {
                    match self.scoped(fid, &raw, &CtxExtra::default(), (None, None), |s| {
                        s.eval(t, "Arguments")
                    })? {
                        Ok(v) => v,
                        Err(f) => return Ok(Err(f)),
                    }
                }
                None => Value::clone(&raw),
            }
        } else {
            let eff = match self.input_path(fid, state, &raw)? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            };
            match &state.io.parameters {
                Some(t) => {
                    match self.scoped(fid, &eff, &CtxExtra::default(), (None, None), |s| {
                        s.eval(t, "Parameters")
                    })? {
                        Ok(v) => v,
                        Err(f) => return Ok(Err(f)),
                    }
                }
                None => eff,
            }
        };
        if self.probe.is_some() {
            return self.probe_result(fid, branch_input).map(Ok);
        }
        self.emit(
            Some(fid),
            EventKind::Plain {
                event_type: "ParallelStateStarted".into(),
            },
        );
        self.frame_mut(fid)?.phase = Phase::Parallel(Children {
            results: vec![None; branches.len()],
            running: BTreeSet::new(),
            failure: None,
            launching: true,
            redo: BTreeMap::new(),
            branch_input: branch_input.clone(),
        });
        for (slot, &machine) in branches.iter().enumerate() {
            if self.ex.is_finished() {
                return Ok(Ok(Flow::Done));
            }
            if let Phase::Parallel(ch) = &self.frame(fid)?.phase {
                if ch.failure.is_some() {
                    break;
                }
            }
            let child = self.new_child(fid, slot, machine, branch_input.clone(), false)?;
            if let Phase::Parallel(ch) = &mut self.frame_mut(fid)?.phase {
                ch.running.insert(child);
            }
            self.run_frame(child)?;
        }
        if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
            return Ok(Ok(Flow::Done));
        }
        if let Phase::Parallel(ch) = &mut self.frame_mut(fid)?.phase {
            ch.launching = false;
        }
        self.parallel_settle(fid).map(Ok)
    }

    fn parallel_settle(&mut self, fid: u64) -> R<Flow> {
        let (done, failure) = match &self.frame(fid)?.phase {
            Phase::Parallel(ch) => (ch.running.is_empty(), ch.failure.clone()),
            _ => return Ok(Flow::Blocked),
        };
        if let Some(f) = failure {
            self.abort_children(fid)?;
            let kids = self.live_kids(fid)?;
            let fr = self.frame_mut(fid)?;
            fr.phase = Phase::Idle;
            fr.failed_kids = kids;
            return self.state_failed(fid, f);
        }
        if !done {
            return Ok(Flow::Blocked);
        }
        let results = match std::mem::replace(&mut self.frame_mut(fid)?.phase, Phase::Idle) {
            Phase::Parallel(ch) => ch.results,
            _ => return Err(invariant("parallel phase vanished")),
        };
        // AWS records no ParallelStateSucceeded event: the state's exit follows directly.
        let arr = Value::Array(
            results
                .into_iter()
                .map(|r| r.unwrap_or(Value::Null))
                .collect(),
        );
        self.complete_with_result(fid, arr)
    }

    fn exec_map(&mut self, fid: u64, state: &State, spec: &MapSpec) -> R<Result<Flow, Failure>> {
        let raw = self.frame(fid)?.input.clone();
        let jsonata = state.query_language == QueryLanguage::JSONata;
        let eff = match self.input_path(fid, state, &raw)? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let extra = CtxExtra::default();
        let items_value = if let Some(t) = &spec.items {
            let v = match self.scoped(fid, &eff, &extra, (None, None), |s| s.eval(t, "Items"))? {
                Ok(v) => v,
                Err(f) => return Ok(Err(f)),
            };
            if !v.is_array() {
                let src = match t {
                    Template::Jsonata(e) => e.source().to_string(),
                    _ => String::new(),
                };
                return Ok(Err(Failure::query_evaluation(format!(
                    "The JSONata expression '{src}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                    type_word(&v),
                    crate::history::json_text(&v)
                ))));
            }
            v
        } else {
            match &spec.items_path {
                OptionalPath::Path(p) => {
                    match self.scoped(fid, &eff, &extra, (None, None), |s| s.select(p))? {
                        Ok(v) => v,
                        Err(f) => return Ok(Err(f)),
                    }
                }
                _ => eff.clone(),
            }
        };
        let Value::Array(items) = items_value else {
            let msg = format!(
                "Map state input must be an array but was: {}",
                json_display(&items_value)
            );
            return Ok(Err(if jsonata {
                Failure::query_evaluation(msg)
            } else {
                Failure::runtime(msg)
            }));
        };
        if self.probe.is_some() {
            return self.probe_result(fid, Value::Array(items)).map(Ok);
        }
        let distributed = spec.mode == MapMode::Distributed;
        // MaxConcurrency is read before MapStateStarted, the failure thresholds after, as AWS does.
        let max = match self.integer(fid, spec.max_concurrency.as_ref(), &eff, "MaxConcurrency")? {
            Ok(v) => v,
            Err(f) => return self.map_limit_failed(fid, f).map(Ok),
        };
        self.emit(
            Some(fid),
            EventKind::MapStateStarted {
                length: items.len(),
            },
        );
        let count = match self.integer(
            fid,
            spec.tolerated_failure_count.as_ref(),
            &eff,
            "ToleratedFailureCount",
        )? {
            Ok(v) => v,
            Err(f) => return self.map_limit_failed(fid, f).map(Ok),
        };
        let pct = match self.integer(
            fid,
            spec.tolerated_failure_percentage.as_ref(),
            &eff,
            "ToleratedFailurePercentage",
        )? {
            Ok(v) => v,
            Err(f) => return self.map_limit_failed(fid, f).map(Ok),
        };
        if matches!(count, Some(c) if c < 0.0) {
            return self
                .map_limit_failed(
                    fid,
                    Failure::runtime("ToleratedFailureCount cannot be negative."),
                )
                .map(Ok);
        }
        if matches!(pct, Some(p) if !(0.0..=100.0).contains(&p)) {
            return self
                .map_limit_failed(
                    fid,
                    Failure::runtime("ToleratedFailurePercentage must be between 0 and 100."),
                )
                .map(Ok);
        }
        if matches!(max, Some(m) if m < 0.0) {
            return self
                .map_limit_failed(fid, Failure::runtime("MaxConcurrency cannot be negative."))
                .map(Ok);
        }
        if distributed {
            let arn = format!(
                "arn:aws:states:{}:{}:mapRun:{}/{}:{}",
                self.ex.info.region,
                self.ex.info.account,
                self.ex.info.state_machine_name,
                spec.label.clone().unwrap_or_else(|| state.name.to_string()),
                self.ex.info.execution_name
            );
            self.emit(Some(fid), EventKind::MapRunStarted { map_run_arn: arn });
        }
        // Item selection and batching.
        let mut inputs = match &spec.item_selector {
            None => items,
            Some(t) => {
                let mut selected = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let extra = CtxExtra {
                        token: None,
                        map_item: Some((i, item)),
                    };
                    match self.scoped(fid, &eff, &extra, (None, None), |s| {
                        s.eval(t, "ItemSelector")
                    })? {
                        Ok(v) => selected.push(v),
                        Err(f) => return Ok(Err(f)),
                    }
                }
                selected
            }
        };
        if let Some(b) = &spec.item_batcher {
            let per = match self.integer(
                fid,
                b.max_items_per_batch.as_ref(),
                &eff,
                "MaxItemsPerBatch",
            )? {
                Ok(v) => v.map(|x| x.max(1.0) as usize).unwrap_or(usize::MAX),
                Err(f) => return Ok(Err(f)),
            };
            let batch_input = match &b.batch_input {
                Some(t) => match self
                    .scoped(fid, &eff, &extra, (None, None), |s| s.eval(t, "BatchInput"))?
                {
                    Ok(v) => Some(v),
                    Err(f) => return Ok(Err(f)),
                },
                None => None,
            };
            let mut batches = Vec::new();
            for chunk in inputs.chunks(per.max(1)) {
                let mut m = Map::new();
                if let Some(bi) = &batch_input {
                    m.insert("BatchInput".into(), bi.clone());
                }
                m.insert("Items".into(), Value::Array(chunk.to_vec()));
                batches.push(Value::Object(m));
            }
            inputs = batches;
        }
        let n = inputs.len();
        let max = match max {
            Some(m) if m >= 1.0 => m as usize,
            _ => usize::MAX,
        };
        self.frame_mut(fid)?.phase = Phase::Map(Box::new(MapRun {
            items: inputs,
            next: 0,
            max,
            results: vec![None; n],
            running: BTreeMap::new(),
            failures: 0,
            tolerated_count: count.map(|c| c as u64),
            tolerated_pct: pct,
            failure: None,
            launching: false,
            distributed,
            last_iteration_event: 0,
            redo: BTreeMap::new(),
            resume: BTreeMap::new(),
        }));
        self.map_advance(fid).map(Ok)
    }

    /// A limit field (MaxConcurrencyPath, ToleratedFailure*) could not be read.
    fn map_limit_failed(&mut self, fid: u64, f: Failure) -> R<Flow> {
        let fault = self.in_state(fid, f);
        self.frame_mut(fid)?.phase = Phase::Idle;
        self.state_failed(fid, fault)
    }

    fn map_advance(&mut self, fid: u64) -> R<Flow> {
        loop {
            if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
                return Ok(Flow::Done);
            }
            let (launch, idx, item, resume, distributed) = match &mut self.frame_mut(fid)?.phase {
                Phase::Map(m) => {
                    // A redriven map skips the iterations that already succeeded.
                    while m.next < m.items.len()
                        && m.results.get(m.next).is_some_and(Option::is_some)
                    {
                        m.next += 1;
                    }
                    if m.failure.is_none() && m.running.len() < m.max && m.next < m.items.len() {
                        let i = m.next;
                        m.next += 1;
                        m.launching = true;
                        let resume = m.resume.remove(&i);
                        (
                            true,
                            i,
                            std::mem::take(&mut m.items[i]),
                            resume,
                            m.distributed,
                        )
                    } else {
                        (false, 0, Value::Null, None, m.distributed)
                    }
                }
                _ => return Ok(Flow::Blocked),
            };
            if !launch {
                break;
            }
            let state = self.state_of(fid)?;
            let StateKind::Map(spec) = &state.kind else {
                return Err(invariant("map phase on non-map state"));
            };
            if !distributed {
                self.emit(
                    Some(fid),
                    EventKind::MapIteration {
                        status: Cow::Borrowed("Started"),
                        name: state.name.clone(),
                        index: idx,
                    },
                );
            }
            let (child, kids) = match resume {
                Some(node) => self.restore_child(fid, idx, node)?,
                None => (
                    self.new_child(fid, idx, spec.processor, item, distributed)?,
                    None,
                ),
            };
            if let Phase::Map(m) = &mut self.frame_mut(fid)?.phase {
                m.running.insert(child, idx);
            }
            self.resume_frame(child, kids)?;
            if let Some(f) = self.ex.frames.get_mut(&fid) {
                if let Phase::Map(m) = &mut f.phase {
                    m.launching = false;
                }
            }
        }
        self.map_settle(fid)
    }

    fn map_settle(&mut self, fid: u64) -> R<Flow> {
        let (done, failure, distributed) = match &self.frame(fid)?.phase {
            Phase::Map(m) => (
                m.running.is_empty() && m.next >= m.items.len(),
                m.failure.clone(),
                m.distributed,
            ),
            _ => return Ok(Flow::Blocked),
        };
        if let Some(f) = failure {
            self.abort_children(fid)?;
            if distributed {
                self.emit(
                    Some(fid),
                    EventKind::MapRunFailed {
                        error: f.error.clone(),
                        cause: f.cause.clone(),
                    },
                );
            }
            let kids = self.live_kids(fid)?;
            let fr = self.frame_mut(fid)?;
            fr.phase = Phase::Idle;
            fr.failed_kids = kids;
            return self.state_failed(fid, f);
        }
        if !done {
            return Ok(Flow::Blocked);
        }
        let (results, last_iteration_event) =
            match std::mem::replace(&mut self.frame_mut(fid)?.phase, Phase::Idle) {
                Phase::Map(m) => (m.results, m.last_iteration_event),
                _ => return Err(invariant("map phase vanished")),
            };
        // AWS links the success events beside the chain: the next state links to the last
        // iteration's end (inline) or to the map run's start (distributed).
        let mut prev = None;
        if distributed {
            prev = Some(self.emit_linked(
                Some(fid),
                EventKind::Plain {
                    event_type: "MapRunSucceeded".into(),
                },
                None,
                false,
            ));
        } else if last_iteration_event > 0 {
            self.frame_mut(fid)?.last_event = last_iteration_event;
        }
        self.emit_linked(
            Some(fid),
            EventKind::Plain {
                event_type: "MapStateSucceeded".into(),
            },
            prev,
            false,
        );
        let arr = Value::Array(
            results
                .into_iter()
                .map(|r| r.unwrap_or(Value::Null))
                .collect(),
        );
        self.complete_with_result(fid, arr)
    }

    /// Removes every running descendant of `fid`, cancelling their tasks and timers.
    fn abort_children(&mut self, fid: u64) -> R<()> {
        let (children, map_name): (Vec<(u64, Option<usize>)>, Option<String>) =
            match &mut self.frame_mut(fid)?.phase {
                Phase::Parallel(ch) => (
                    std::mem::take(&mut ch.running)
                        .into_iter()
                        .map(|c| (c, None))
                        .collect(),
                    None,
                ),
                Phase::Map(m) => (
                    std::mem::take(&mut m.running)
                        .into_iter()
                        .map(|(c, i)| (c, if m.distributed { None } else { Some(i) }))
                        .collect(),
                    Some(String::new()),
                ),
                _ => (Vec::new(), None),
            };
        let state_name = self.state_of(fid)?.name.clone();
        for (child, idx) in children {
            let slot = self
                .ex
                .frames
                .get(&child)
                .and_then(|f| f.parent)
                .map(|(_, s)| s);
            // An aborted branch or iteration is restarted by a redrive.
            if let (Some(n), Some(slot)) = (self.abort_frame(child)?, slot) {
                match &mut self.frame_mut(fid)?.phase {
                    Phase::Parallel(ch) => {
                        ch.redo.insert(slot, n);
                    }
                    Phase::Map(m) if !m.distributed => {
                        m.redo.insert(slot, n);
                    }
                    _ => {}
                }
            }
            if let (Some(i), Some(_)) = (idx, &map_name) {
                self.emit(
                    Some(fid),
                    EventKind::MapIteration {
                        status: Cow::Borrowed("Aborted"),
                        name: state_name.clone(),
                        index: i,
                    },
                );
            }
        }
        Ok(())
    }

    /// Removes a frame and its descendants; returns where a redrive would restart it.
    fn abort_frame(&mut self, fid: u64) -> R<Option<RedriveNode>> {
        let Some(frame) = self.ex.frames.get(&fid) else {
            return Ok(None);
        };
        let state = self.def.state(frame.machine, frame.state);
        match frame.phase.clone() {
            Phase::Task {
                task,
                timeout_timer,
                heartbeat_timer,
                ..
            } => {
                self.task_ended(fid, TaskOutcome::Aborted)?;
                self.ex.tasks.remove(&task);
                self.cancel_timer(timeout_timer);
                self.cancel_timer(heartbeat_timer);
                self.commands.push(Command::CancelTask { task });
                self.emit(
                    Some(fid),
                    EventKind::StateAborted {
                        state_type: Cow::Borrowed(state.kind.type_name()),
                    },
                );
            }
            Phase::RetryWait { timer } | Phase::Waiting { timer, .. } => {
                self.cancel_timer(Some(timer));
                self.emit(
                    Some(fid),
                    EventKind::StateAborted {
                        state_type: Cow::Borrowed(state.kind.type_name()),
                    },
                );
            }
            Phase::Parallel(_) | Phase::Map(_) => {
                self.abort_children(fid)?;
                self.emit(
                    Some(fid),
                    EventKind::StateAborted {
                        state_type: Cow::Borrowed(state.kind.type_name()),
                    },
                );
            }
            Phase::Idle => {}
        }
        let node = if self.frame(fid)?.silent {
            None
        } else {
            Some(self.node_of(fid)?)
        };
        self.ex.frames.remove(&fid);
        Ok(node)
    }

    // ----------------------------------------------------------------------------------
    // Failure handling and completion

    /// A state failed: Retry, then Catch, then fail the frame.
    fn state_failed(&mut self, fid: u64, fault: Fault) -> R<Flow> {
        if self.ex.is_finished() || !self.ex.frames.contains_key(&fid) {
            return Ok(Flow::Done);
        }
        let state = self.state_of(fid)?;
        let in_task = matches!(state.kind, StateKind::Task(_));
        let name = fault.error_name().to_string();
        if is_task_like(&state.kind) {
            if let Some((i, r)) = state
                .retry
                .iter()
                .enumerate()
                .find(|(_, r)| error_matches(&r.error_equals, &name, in_task))
            {
                let done = self.frame(fid)?.retry_counts.get(i).copied().unwrap_or(0);
                if u64::from(done) < r.max_attempts {
                    let mut delay = r.interval_seconds as f64 * r.backoff_rate.powi(done as i32);
                    if let Some(m) = r.max_delay_seconds {
                        delay = delay.min(m as f64);
                    }
                    if let Some(p) = self.probe.as_deref_mut() {
                        p.outcome = Some(ProbeOutcome::Retriable {
                            fault,
                            index: i,
                            backoff_seconds: delay,
                        });
                        return Ok(Flow::Done);
                    }
                    if r.jitter_full {
                        let x = next_random(&mut self.ex.rng);
                        delay *= (x >> 11) as f64 / (1u64 << 53) as f64;
                    }
                    let at = self.now() + (delay * 1000.0).round() as i64;
                    let timer = self.schedule_timer(at, Timer::Retry { frame: fid });
                    let f = self.frame_mut(fid)?;
                    if let Some(c) = f.retry_counts.get_mut(i) {
                        *c += 1;
                    }
                    f.retry_total += 1;
                    f.phase = Phase::RetryWait { timer };
                    return Ok(Flow::Blocked);
                }
            }
            // Not retried: a Map or Parallel state records its failure (unless the error is
            // one that fails the execution outright).
            if name != names::RUNTIME {
                let failed_event = match state.kind {
                    StateKind::Map(_) => Some("MapStateFailed"),
                    StateKind::Parallel { .. } => Some("ParallelStateFailed"),
                    _ => None,
                };
                if let Some(t) = failed_event {
                    self.emit(
                        Some(fid),
                        EventKind::Plain {
                            event_type: t.into(),
                        },
                    );
                }
            }
            if let Some((ci, c)) = state
                .catch
                .iter()
                .enumerate()
                .find(|(_, c)| error_matches(&c.error_equals, &name, in_task))
            {
                if let Some(p) = self.probe.as_deref_mut() {
                    p.caught = Some((ci, fault.clone()));
                }
                let raw = self.frame(fid)?.input.clone();
                let err_out = fault.output();
                let (output, assigned) = if state.query_language == QueryLanguage::JSONata {
                    match self.jsonata_exit(
                        fid,
                        c.assign.as_ref(),
                        c.output.as_ref(),
                        &raw,
                        None,
                        Some(&err_out),
                        err_out.clone(),
                    )? {
                        Ok(x) => x,
                        Err(f) => return self.frame_failed(fid, self.in_state(fid, f)),
                    }
                } else {
                    let assigned =
                        match self.eval_assign(fid, c.assign.as_ref(), &err_out, None, None)? {
                            Ok(a) => a,
                            Err(f) => return self.frame_failed(fid, self.in_state(fid, f)),
                        };
                    let out = match self.result_path(&c.result_path, raw, err_out) {
                        Ok(o) => o,
                        Err(f) => return self.frame_failed(fid, self.in_state(fid, f)),
                    };
                    (out, assigned)
                };
                return self.exit_state(fid, state, output, assigned, Some(c.next));
            }
        }
        self.frame_failed(fid, fault)
    }

    /// The frame ends in failure (no retry/catch applies).
    fn frame_failed(&mut self, fid: u64, fault: Fault) -> R<Flow> {
        self.finish_frame(fid, Err(fault.into_reported()))
    }

    fn finish_frame(&mut self, fid: u64, result: Result<Arc<Value>, Fault>) -> R<Flow> {
        if let Some(p) = self.probe.as_deref_mut() {
            p.outcome = Some(match result {
                Ok(output) => ProbeOutcome::Exited {
                    output: Arc::unwrap_or_clone(output),
                    next: None,
                },
                Err(f) => ProbeOutcome::Failed(f),
            });
            return Ok(Flow::Done);
        }
        // A failed frame is where a redrive will restart it.
        let node = match &result {
            Err(_) if !self.frame(fid)?.silent => Some(self.node_of(fid)?),
            _ => None,
        };
        let frame = self
            .ex
            .frames
            .remove(&fid)
            .ok_or_else(|| invariant("finishing a missing frame"))?;
        match frame.parent {
            None => {
                match result {
                    Ok(out) => self.end_execution(ExecutionStatus::Succeeded, Some(out), None)?,
                    Err(f) => {
                        self.ex.redrive = node;
                        self.end_execution(ExecutionStatus::Failed, None, Some(f))?
                    }
                }
                Ok(Flow::Done)
            }
            Some((pid, slot)) => {
                self.child_done(pid, fid, slot, result, node, &frame)?;
                Ok(Flow::Done)
            }
        }
    }

    fn child_done(
        &mut self,
        pid: u64,
        cid: u64,
        slot: usize,
        result: Result<Arc<Value>, Fault>,
        node: Option<RedriveNode>,
        child: &Frame,
    ) -> R<()> {
        let (child_last, child_silent) = (child.last_event, child.silent);
        if self.ex.is_finished() {
            return Ok(());
        }
        let Some(parent) = self.ex.frames.get_mut(&pid) else {
            return Ok(());
        };
        if !child_silent {
            parent.last_event = child_last;
        }
        let state = self.def.state(parent.machine, parent.state);
        match &mut parent.phase {
            Phase::Parallel(ch) => {
                ch.running.remove(&cid);
                match result {
                    Ok(v) => ch.results[slot] = Some(Arc::unwrap_or_clone(v)),
                    Err(f) => {
                        if ch.failure.is_none() {
                            ch.failure = Some(f);
                        }
                        if let Some(n) = node {
                            ch.redo.insert(slot, n);
                        }
                    }
                }
                if ch.launching {
                    return Ok(());
                }
                let flow = self.parallel_settle(pid)?;
                self.drive(pid, flow)
            }
            Phase::Map(m) => {
                m.running.remove(&cid);
                let distributed = m.distributed;
                let ok = result.is_ok();
                match result {
                    Ok(v) => m.results[slot] = Some(Arc::unwrap_or_clone(v)),
                    Err(f) => {
                        m.failures += 1;
                        m.results[slot] = Some(f.output());
                        if let (Some(n), false) = (node, distributed) {
                            m.redo.insert(slot, n);
                        }
                        let total = m.items.len().max(1) as f64;
                        let tolerance_set =
                            m.tolerated_count.is_some() || m.tolerated_pct.is_some();
                        let over_count = m.failures as u64 > m.tolerated_count.unwrap_or(0);
                        let over_pct =
                            (m.failures as f64) * 100.0 / total > m.tolerated_pct.unwrap_or(0.0);
                        let exceeded = if tolerance_set {
                            match (m.tolerated_count, m.tolerated_pct) {
                                (Some(_), Some(_)) => over_count && over_pct,
                                (Some(_), None) => over_count,
                                (None, Some(_)) => over_pct,
                                (None, None) => true,
                            }
                        } else {
                            true
                        };
                        if exceeded && m.failure.is_none() {
                            m.failure = Some(if tolerance_set {
                                Fault::new(
                                    Some(names::EXCEED_TOLERATED_FAILURE_THRESHOLD.into()),
                                    Some(
                                        "The specified tolerated failure threshold was exceeded"
                                            .into(),
                                    ),
                                )
                            } else {
                                f
                            });
                        }
                    }
                }
                let launching = m.launching;
                if !distributed {
                    // The iteration-ended event does not move the parent's chain forward.
                    let id = self.emit_linked(
                        Some(pid),
                        EventKind::MapIteration {
                            status: Cow::Borrowed(if ok { "Succeeded" } else { "Failed" }),
                            name: state.name.clone(),
                            index: slot,
                        },
                        None,
                        false,
                    );
                    if let Some(Phase::Map(m)) = self.ex.frames.get_mut(&pid).map(|p| &mut p.phase)
                    {
                        m.last_iteration_event = id;
                    }
                }
                if launching {
                    return Ok(());
                }
                let flow = self.map_advance(pid)?;
                self.drive(pid, flow)
            }
            _ => Err(invariant(
                "child finished under a parent that is not waiting",
            )),
        }
    }

    fn end_execution(
        &mut self,
        status: ExecutionStatus,
        output: Option<Arc<Value>>,
        fault: Option<Fault>,
    ) -> R<()> {
        // Where a redrive restarts: the running frames as they are now (timeout, stop,
        // history limit), or the failed root frame recorded by `finish_frame`.
        if status == ExecutionStatus::Succeeded {
            self.ex.redrive = None;
        } else if self.ex.frames.contains_key(&0) {
            self.ex.redrive = Some(self.node_of(0)?);
        }
        // Cancel everything still open.
        let frames: Vec<u64> = self.ex.frames.keys().copied().collect();
        for fid in frames {
            if let Some(f) = self.ex.frames.get(&fid) {
                if let Phase::Task { task, .. } = f.phase {
                    self.task_ended(fid, TaskOutcome::Aborted)?;
                    self.ex.tasks.remove(&task);
                    self.commands.push(Command::CancelTask { task });
                }
            }
        }
        self.ex.frames.clear();
        self.ex.tasks.clear();
        let timers: Vec<u64> = self.ex.timers.keys().copied().collect();
        for t in timers {
            self.cancel_timer(Some(t));
        }
        let (error, cause) = match &fault {
            Some(f) => (f.error.clone(), f.cause.clone()),
            None => (None, None),
        };
        let kind = match status {
            ExecutionStatus::Succeeded => EventKind::ExecutionSucceeded {
                output: output.clone().unwrap_or_else(|| Arc::new(Value::Null)),
            },
            ExecutionStatus::Failed => EventKind::ExecutionFailed {
                error: error.clone(),
                cause: cause.clone(),
            },
            ExecutionStatus::TimedOut => EventKind::ExecutionTimedOut {
                error: error.clone(),
                cause: cause.clone(),
            },
            ExecutionStatus::Aborted | ExecutionStatus::Running => EventKind::ExecutionAborted {
                error: error.clone(),
                cause: cause.clone(),
            },
        };
        self.emit(None, kind);
        self.ex.status = status;
        self.ex.output = output.clone();
        self.ex.error = error.clone();
        self.ex.cause = cause.clone();
        self.ex.stop_ms = Some(self.now());
        self.commands.push(Command::ExecutionFinished {
            status,
            output,
            error,
            cause,
        });
        Ok(())
    }
}

/// Lays `over`'s members onto `base`: objects merge member by member, anything else replaces.
fn merge_into(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(x) => merge_into(x, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// TestState: runs state `state` of machine `machine` once, on `input` with the variables
/// `vars`, at `now_ms`; Tasks (and Parallel/Map states) are answered by `probe.mock`. Nothing
/// is dispatched and nothing waits; the outcome and the data-flow stages land in the probe.
#[allow(clippy::too_many_arguments)]
pub(crate) fn probe_state(
    def: &Definition,
    info: super::ExecutionInfo,
    machine: usize,
    state: usize,
    input: Value,
    vars: Map<String, Value>,
    now_ms: i64,
    probe: Probe,
) -> Result<Probe, InterpError> {
    let retry_count = probe.retry_count;
    let mut ex = Execution::new(info);
    ex.started = true;
    let ctx = Context {
        now_ms,
        ..Context::default()
    };
    let mut r = Run::new(&mut ex, def, &ctx);
    r.probe = Some(Box::new(probe));
    let node = RedriveNode {
        machine,
        state,
        input: Arc::new(input),
        vars,
        kids: None,
    };
    r.insert_frame(0, None, node, 0, false);
    r.ex.next_frame = 1;
    r.begin_state(0)?;
    if retry_count > 0 {
        let f = r.frame_mut(0)?;
        f.retry_counts.iter_mut().for_each(|c| *c = retry_count);
        f.retry_total = retry_count;
    }
    r.execute_state(0)?;
    r.probe
        .take()
        .map(|p| *p)
        .ok_or_else(|| invariant("the probe vanished"))
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `arn:aws:states:::lambda:invoke` → `lambda`; Lambda function ARNs → `lambda`.
fn resource_type(resource: &str) -> String {
    let parts: Vec<&str> = resource.split(':').collect();
    if parts.len() > 2 && parts[2] == "lambda" {
        return "lambda".into();
    }
    if parts.len() > 5 && parts[2] == "states" {
        return parts[5].to_string();
    }
    parts.get(2).copied().unwrap_or("").to_string()
}

/// `arn:aws:states:::lambda:invoke.waitForTaskToken` → `invoke.waitForTaskToken`.
fn resource_name(resource: &str) -> String {
    let parts: Vec<&str> = resource.split(':').collect();
    if parts.len() > 6 && parts[2] == "states" {
        return parts[6..].join(":");
    }
    resource.to_string()
}
