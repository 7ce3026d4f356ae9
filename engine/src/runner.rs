//! In-process execution under *virtual time*: what `stepline run` and the conformance harness
//! use.
//!
//! A [`World`] holds one or more executions, a simulated clock, their timers and an
//! in-process activity queue. It applies each execution's commands itself: task dispatches
//! go to mocked responses, to in-process activity workers (which are themselves state
//! machines calling `arn:aws:states:::aws-sdk:sfn:getActivityTask` / `sendTaskSuccess` / …,
//! served here), or fail the run with a clear message; timers jump the clock instead of
//! sleeping. This is a driver of the pure interpreter, not part of it.

use crate::asl::Definition;
use crate::history::HistoryEvent;
use crate::interp::{
    Command, Context, Execution, ExecutionInfo, ExecutionStatus, Input, InterpError, TaskDispatch,
};
use crate::mock::{InvocationCounter, MockCase, MockResponse};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Names and place of an execution (ARNs are built from these).
#[derive(Debug, Clone)]
pub struct RunIdentity {
    pub account: String,
    pub region: String,
    pub state_machine_name: String,
    pub execution_name: String,
    pub role_arn: Option<String>,
    /// EXPRESS executions (ARN form `…:express:<machine>:<name>:<id>`).
    pub express: bool,
    /// Use this execution ARN instead of deriving one.
    pub execution_arn: Option<String>,
}

impl Default for RunIdentity {
    fn default() -> Self {
        RunIdentity {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            state_machine_name: "StateMachine".into(),
            execution_name: "execution".into(),
            role_arn: None,
            express: false,
            execution_arn: None,
        }
    }
}

impl RunIdentity {
    pub fn state_machine_arn(&self) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{}",
            self.region, self.account, self.state_machine_name
        )
    }

    pub fn execution_arn(&self) -> String {
        if let Some(a) = &self.execution_arn {
            return a.clone();
        }
        if self.express {
            return format!(
                "arn:aws:states:{}:{}:express:{}:{}:{}",
                self.region,
                self.account,
                self.state_machine_name,
                self.execution_name,
                self.execution_name
            );
        }
        format!(
            "arn:aws:states:{}:{}:execution:{}:{}",
            self.region, self.account, self.state_machine_name, self.execution_name
        )
    }

    pub fn info(&self, input: Value, start_ms: i64, seed: u64) -> ExecutionInfo {
        ExecutionInfo {
            execution_arn: self.execution_arn(),
            execution_name: self.execution_name.clone(),
            state_machine_arn: self.state_machine_arn(),
            state_machine_name: self.state_machine_name.clone(),
            role_arn: self.role_arn.clone().unwrap_or_else(|| {
                format!("arn:aws:iam::{}:role/stepline-execution-role", self.account)
            }),
            region: self.region.clone(),
            account: self.account.clone(),
            input,
            start_ms,
            redrive_count: 0,
            express: self.express,
            seed,
        }
    }
}

/// The final state of one execution.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub history: Vec<HistoryEvent>,
    pub start_ms: i64,
    pub stop_ms: i64,
}

impl Outcome {
    /// The JSON `stepline run` prints.
    pub fn to_json(&self, with_history: bool) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("status".into(), json!(self.status.as_str()));
        match self.status {
            ExecutionStatus::Succeeded => {
                m.insert("output".into(), self.output.clone().unwrap_or(Value::Null));
            }
            _ => {
                m.insert("error".into(), json!(self.error));
                m.insert("cause".into(), json!(self.cause));
            }
        }
        if with_history {
            m.insert(
                "history".into(),
                Value::Array(self.history.iter().map(HistoryEvent::to_aws_json).collect()),
            );
        }
        Value::Object(m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Interp(#[from] InterpError),
    #[error("Task state '{state}' (resource {resource}) has no worker and no mocked response; pass --mock-config FILE --test-case NAME with a response for it")]
    NoWorker { state: String, resource: String },
    #[error("the run did not finish within {0} steps (an endless loop?)")]
    TooManySteps(u64),
}

struct Slot {
    def: Arc<Definition>,
    exec: Execution,
    history: Vec<HistoryEvent>,
    /// Worker executions serve activities; the run ends when every main one ends.
    is_worker: bool,
    counter: InvocationCounter,
}

/// A queued activity task: who owns it and what it carries.
struct ActivityTask {
    owner: usize,
    task: u64,
    token: String,
    input: Value,
}

/// Executions sharing one simulated clock.
pub struct World {
    now_ms: i64,
    slots: Vec<Slot>,
    inbox: VecDeque<(usize, Input)>,
    /// (fire_at, sequence) → (slot, timer id)
    timers: BTreeMap<(i64, u64), (usize, u64)>,
    timer_seq: u64,
    activities: BTreeMap<String, VecDeque<ActivityTask>>,
    known_activities: Option<BTreeSet<String>>,
    /// token → (slot, task)
    tokens: BTreeMap<String, (usize, u64)>,
    mock: Option<MockCase>,
    token_key: Vec<u8>,
    max_steps: u64,
}

impl World {
    pub fn new(start_ms: i64) -> World {
        World {
            now_ms: start_ms,
            slots: Vec::new(),
            inbox: VecDeque::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            activities: BTreeMap::new(),
            known_activities: None,
            tokens: BTreeMap::new(),
            mock: None,
            token_key: Vec::new(),
            max_steps: 1_000_000,
        }
    }

    pub fn with_mock(mut self, mock: MockCase) -> World {
        self.mock = Some(mock);
        self
    }

    /// Declares the activities that exist (others fail with `States.Runtime`).
    pub fn with_activities(mut self, arns: impl IntoIterator<Item = String>) -> World {
        let set: BTreeSet<String> = arns.into_iter().collect();
        for a in &set {
            self.activities.entry(a.clone()).or_default();
        }
        self.known_activities = Some(set);
        self
    }

    /// Adds an execution; returns its slot. Starts it when [`World::run`] is called.
    pub fn add(&mut self, def: Arc<Definition>, info: ExecutionInfo, is_worker: bool) -> usize {
        let i = self.slots.len();
        self.slots.push(Slot {
            def,
            exec: Execution::new(info),
            history: Vec::new(),
            is_worker,
            counter: InvocationCounter::default(),
        });
        self.inbox.push_back((i, Input::Start));
        i
    }

    fn context(&self) -> Context {
        Context {
            now_ms: self.now_ms,
            token_key: self.token_key.clone(),
            activities: self.known_activities.clone(),
        }
    }

    fn mains_done(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| !s.is_worker)
            .all(|s| s.exec.is_finished())
    }

    /// Runs until every non-worker execution has finished.
    pub fn run(&mut self) -> Result<(), RunError> {
        let mut steps = 0u64;
        loop {
            if self.mains_done() {
                return Ok(());
            }
            steps += 1;
            if steps > self.max_steps {
                return Err(RunError::TooManySteps(self.max_steps));
            }
            if let Some((slot, input)) = self.inbox.pop_front() {
                self.apply(slot, input)?;
                continue;
            }
            let Some((&(at, seq), &(slot, timer))) = self.timers.iter().next() else {
                // Nothing can happen any more: find the task that nobody serves.
                for s in &self.slots {
                    if !s.is_worker && !s.exec.is_finished() {
                        return Err(RunError::TooManySteps(steps));
                    }
                }
                return Ok(());
            };
            self.timers.remove(&(at, seq));
            self.now_ms = self.now_ms.max(at);
            self.apply(slot, Input::TimerFired { timer })?;
        }
    }

    fn apply(&mut self, slot: usize, input: Input) -> Result<(), RunError> {
        let ctx = self.context();
        let s = &mut self.slots[slot];
        let def = s.def.clone();
        let step = s.exec.apply(&def, &input, &ctx)?;
        s.history.extend(step.events);
        for c in step.commands {
            self.command(slot, c)?;
        }
        Ok(())
    }

    fn command(&mut self, slot: usize, c: Command) -> Result<(), RunError> {
        match c {
            Command::ScheduleTimer { timer, fire_at_ms } => {
                self.timer_seq += 1;
                self.timers
                    .insert((fire_at_ms, self.timer_seq), (slot, timer));
            }
            Command::CancelTimer { timer } => {
                self.timers.retain(|_, v| *v != (slot, timer));
            }
            Command::CancelTask { task } => {
                for q in self.activities.values_mut() {
                    q.retain(|t| !(t.owner == slot && t.task == task));
                }
                self.tokens.retain(|_, v| *v != (slot, task));
            }
            Command::ExecutionFinished { .. } => {}
            Command::DispatchTask(d) => self.dispatch(slot, d)?,
        }
        Ok(())
    }

    fn dispatch(&mut self, slot: usize, d: TaskDispatch) -> Result<(), RunError> {
        self.tokens.insert(d.token.clone(), (slot, d.task));
        let invocation = self.slots[slot].counter.next(&d.state_name);
        if let Some(mock) = &self.mock {
            if mock.has_state(&d.state_name) {
                let input = match mock.response(&d.state_name, invocation) {
                    Some(MockResponse::Return(v)) => Input::TaskSucceeded {
                        task: d.task,
                        output: v.clone(),
                    },
                    Some(MockResponse::Throw { error, cause }) => Input::TaskFailed {
                        task: d.task,
                        error: error.clone(),
                        cause: cause.clone(),
                    },
                    None => {
                        return Err(RunError::NoWorker {
                            state: d.state_name,
                            resource: d.resource,
                        })
                    }
                };
                // A mocked task is picked up at once, then answers.
                self.inbox.push_back((
                    slot,
                    Input::TaskStarted {
                        task: d.task,
                        worker_name: "mock".into(),
                    },
                ));
                self.inbox.push_back((slot, input));
                return Ok(());
            }
        }
        if let Some(q) = self.activities.get_mut(&d.resource) {
            q.push_back(ActivityTask {
                owner: slot,
                task: d.task,
                token: d.token,
                input: d.input,
            });
            return Ok(());
        }
        if let Some(action) = d.resource.strip_prefix("arn:aws:states:::aws-sdk:sfn:") {
            let reply = self.sfn_call(action, &d.input);
            let input = match reply {
                Ok(v) => Input::TaskSucceeded {
                    task: d.task,
                    output: v,
                },
                Err((e, c)) => Input::TaskFailed {
                    task: d.task,
                    error: Some(e),
                    cause: Some(c),
                },
            };
            self.inbox.push_back((slot, input));
            return Ok(());
        }
        Err(RunError::NoWorker {
            state: d.state_name,
            resource: d.resource,
        })
    }

    /// The activity half of the Step Functions API, for in-process worker machines.
    fn sfn_call(&mut self, action: &str, p: &Value) -> Result<Value, (String, String)> {
        let token_of = |p: &Value| {
            p.get("TaskToken")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let task_gone = || {
            (
                "Sfn.TaskDoesNotExistException".to_string(),
                "Task does not exist".to_string(),
            )
        };
        match action {
            "getActivityTask" => {
                let arn = p.get("ActivityArn").and_then(Value::as_str).unwrap_or("");
                let worker = p
                    .get("WorkerName")
                    .and_then(Value::as_str)
                    .unwrap_or("worker")
                    .to_string();
                let Some(q) = self.activities.get_mut(arn) else {
                    return Err((
                        "Sfn.ActivityDoesNotExistException".into(),
                        format!("Activity Does Not Exist: '{arn}'"),
                    ));
                };
                match q.pop_front() {
                    Some(t) => {
                        self.inbox.push_back((
                            t.owner,
                            Input::TaskStarted {
                                task: t.task,
                                worker_name: worker,
                            },
                        ));
                        Ok(
                            json!({"TaskToken": t.token, "Input": crate::history::json_text(&t.input)}),
                        )
                    }
                    None => Ok(json!({})),
                }
            }
            "sendTaskSuccess" | "sendTaskFailure" | "sendTaskHeartbeat" => {
                let token = token_of(p).ok_or_else(task_gone)?;
                let &(owner, task) = self.tokens.get(&token).ok_or_else(task_gone)?;
                let input = match action {
                    "sendTaskSuccess" => {
                        let out = p.get("Output").cloned().unwrap_or(Value::Null);
                        let out = match out {
                            Value::String(s) => {
                                serde_json::from_str(&s).unwrap_or(Value::String(s))
                            }
                            o => o,
                        };
                        self.tokens.remove(&token);
                        Input::TaskSucceeded { task, output: out }
                    }
                    "sendTaskFailure" => {
                        self.tokens.remove(&token);
                        Input::TaskFailed {
                            task,
                            error: p.get("Error").and_then(Value::as_str).map(str::to_string),
                            cause: p.get("Cause").and_then(Value::as_str).map(str::to_string),
                        }
                    }
                    _ => Input::TaskHeartbeat { task },
                };
                self.inbox.push_back((owner, input));
                Ok(json!({}))
            }
            other => Err((
                "States.Runtime".into(),
                format!("aws-sdk:sfn:{other} is not available in an in-process run"),
            )),
        }
    }

    pub fn outcome(&self, slot: usize) -> Outcome {
        let s = &self.slots[slot];
        Outcome {
            status: s.exec.status,
            output: s.exec.output.as_deref().cloned(),
            error: s.exec.error.clone(),
            cause: s.exec.cause.clone(),
            history: s.history.clone(),
            start_ms: s.exec.info.start_ms,
            stop_ms: s.exec.stop_ms.unwrap_or(self.now_ms),
        }
    }
}

/// Runs one execution to its end under virtual time.
pub fn run_once(
    def: Arc<Definition>,
    identity: &RunIdentity,
    input: Value,
    mock: Option<MockCase>,
    start_ms: i64,
) -> Result<Outcome, RunError> {
    let mut world = World::new(start_ms);
    if let Some(m) = mock {
        world = world.with_mock(m);
    }
    let seed = seed_from(&identity.execution_arn());
    let slot = world.add(def, identity.info(input, start_ms, seed), false);
    world.run()?;
    Ok(world.outcome(slot))
}

/// A stable seed derived from a name (FNV-1a), so reruns are reproducible.
pub fn seed_from(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
