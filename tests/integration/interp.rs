//! The pure interpreter driven directly through [`Execution::apply`], one hand-fed [`Input`] at
//! a time with an explicit `Context { now_ms, .. }`: task timeouts and heartbeat timeouts (the
//! runtime fires the `TaskTimeout`/`Heartbeat` timers), heartbeats postponing the heartbeat
//! timer, stale inputs (duplicate results, late results after a timeout, cancelled timers)
//! yielding an empty [`Step`], `Stop` aborting with `CancelTask` commands, the `fire_at_ms` of
//! retry timers (IntervalSeconds, BackoffRate, MaxDelaySeconds, JitterStrategy FULL), and
//! determinism: [`replay`] of a recorded journal and a serde round trip of a mid-run
//! [`Execution`] both continue exactly like the original; `RedriveExecution` (only the failed
//! state, branch or iteration runs again, with the input it had; refused unless the execution
//! ended unsuccessfully; a duplicate redrive changes nothing; the timeout restarts).

use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::history::{EventKind, HistoryEvent};
use stepline_engine::interp::{
    replay, Command, Context, Execution, ExecutionInfo, ExecutionStatus, Input, JournalEntry, Step,
    TaskDispatch, TaskEnded, TaskOutcome,
};
use stepline_engine::runner::RunIdentity;

const T0: i64 = 1_700_000_000_000;
const ACT: &str = "arn:aws:states:us-east-1:111111111111:activity:worker";
const KEY: &[u8] = b"interp-test-key";

fn definition(v: Value) -> Definition {
    Definition::parse(&v, StateMachineType::Standard)
        .unwrap_or_else(|e| panic!("test definition rejected: {e}\n{v:#}"))
}

fn info(input: Value, seed: u64) -> ExecutionInfo {
    RunIdentity::default().info(input, T0, seed)
}

/// The execution's output as a plain value (`null` while there is none).
fn output(exec: &Execution) -> Value {
    serde_json::to_value(&exec.output).unwrap_or(Value::Null)
}

fn types(events: &[HistoryEvent]) -> Vec<String> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

/// An execution plus what a runtime would keep: the journal, the history and the pending
/// timers (id → fire_at), maintained from the Schedule/CancelTimer commands.
struct Harness {
    def: Definition,
    exec: Execution,
    journal: Vec<JournalEntry>,
    history: Vec<HistoryEvent>,
    timers: BTreeMap<u64, i64>,
}

impl Harness {
    fn new(def: Value, input: Value) -> Harness {
        Harness::with_seed(def, input, 7)
    }

    fn with_seed(def: Value, input: Value, seed: u64) -> Harness {
        Harness {
            def: definition(def),
            exec: Execution::new(info(input, seed)),
            journal: Vec::new(),
            history: Vec::new(),
            timers: BTreeMap::new(),
        }
    }

    fn apply(&mut self, now_ms: i64, input: Input) -> Step {
        let ctx = Context {
            now_ms,
            token_key: KEY.to_vec(),
            activities: None,
        };
        let step = self
            .exec
            .apply(&self.def, &input, &ctx)
            .unwrap_or_else(|e| panic!("apply({input:?}) at {now_ms}: {e}"));
        self.journal.push(JournalEntry {
            now_ms,
            input,
            activities: None,
        });
        self.history.extend(step.events.iter().cloned());
        for c in &step.commands {
            match c {
                Command::ScheduleTimer { timer, fire_at_ms } => {
                    assert!(
                        self.timers.insert(*timer, *fire_at_ms).is_none(),
                        "timer id {timer} scheduled twice"
                    );
                }
                Command::CancelTimer { timer } => {
                    self.timers.remove(timer);
                }
                _ => {}
            }
        }
        step
    }

    /// Applies an input that must change nothing at all.
    fn assert_ignored(&mut self, now_ms: i64, input: Input) {
        let before = self.exec.clone();
        let step = self.apply(now_ms, input.clone());
        assert_eq!(step, Step::default(), "{input:?} should have been ignored");
        assert_eq!(self.exec, before, "{input:?} changed the execution");
    }

    /// Fires the pending timer that is due at `at` (there must be exactly one).
    fn fire_at(&mut self, at: i64) -> Step {
        let due: Vec<u64> = self
            .timers
            .iter()
            .filter(|(_, &t)| t == at)
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(
            due.len(),
            1,
            "expected one timer due at T0+{} ms, pending: {:?}",
            at - T0,
            self.pending()
        );
        self.timers.remove(&due[0]);
        self.apply(at, Input::TimerFired { timer: due[0] })
    }

    /// Pending timers as offsets from T0, sorted.
    fn pending(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.timers.values().map(|t| t - T0).collect();
        v.sort_unstable();
        v
    }
}

fn dispatches(step: &Step) -> Vec<TaskDispatch> {
    step.commands
        .iter()
        .filter_map(|c| match c {
            Command::DispatchTask(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn only_dispatch(step: &Step) -> TaskDispatch {
    let d = dispatches(step);
    assert_eq!(
        d.len(),
        1,
        "expected exactly one DispatchTask in {:?}",
        step.commands
    );
    d.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn scheduled(step: &Step) -> Vec<(u64, i64)> {
    step.commands
        .iter()
        .filter_map(|c| match c {
            Command::ScheduleTimer { timer, fire_at_ms } => Some((*timer, *fire_at_ms)),
            _ => None,
        })
        .collect()
}

fn cancelled_tasks(step: &Step) -> Vec<u64> {
    let mut v: Vec<u64> = step
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::CancelTask { task } => Some(*task),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

fn timed_out_error(step: &Step) -> Option<String> {
    step.events.iter().find_map(|e| match &e.kind {
        EventKind::ActivityTimedOut { error, .. } | EventKind::TaskTimedOut { error, .. } => {
            Some(error.clone().unwrap_or_default())
        }
        _ => None,
    })
}

fn finished(step: &Step) -> Option<ExecutionStatus> {
    step.commands.iter().find_map(|c| match c {
        Command::ExecutionFinished { status, .. } => Some(*status),
        _ => None,
    })
}

fn activity_task(extra: Value) -> Value {
    let mut s = json!({"Type": "Task", "Resource": ACT});
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        m.extend(e);
    }
    s
}

#[test]
fn task_timeout_is_retried_then_caught() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"TimeoutSeconds": 10,
                "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 2, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.err", "Next": "Recovered"}],
                "Next": "Done"})),
            "Recovered": {"Type": "Pass", "End": true},
            "Done": {"Type": "Succeed"}}}),
        json!({"x": 1}),
    );
    let s = h.apply(T0, Input::Start);
    assert_eq!(
        types(&s.events),
        ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled"]
    );
    let d1 = only_dispatch(&s);
    assert_eq!(
        (d1.attempt, d1.timeout_seconds, d1.resource.as_str()),
        (1, Some(10), ACT)
    );
    assert_eq!(h.pending(), [10_000]);

    // The task timer fires: the attempt times out and a retry is scheduled 2 s later.
    let s = h.fire_at(T0 + 10_000);
    assert_eq!(types(&s.events), ["ActivityTimedOut"]);
    assert_eq!(timed_out_error(&s).as_deref(), Some("States.Timeout"));
    assert_eq!(
        s.ended_tasks,
        [TaskEnded {
            resource: ACT.into(),
            outcome: TaskOutcome::TimedOut,
            after_ms: Some(10_000),
        }],
        "the step names the task it ended, for the runtime's metrics"
    );
    assert_eq!(
        cancelled_tasks(&s),
        [d1.task],
        "the timed-out task must be cancelled"
    );
    assert_eq!(h.pending(), [12_000]);
    assert_eq!(h.exec.status, ExecutionStatus::Running);

    // A result for the timed-out attempt arrives late: ignored.
    h.assert_ignored(
        T0 + 11_000,
        Input::TaskStarted {
            task: d1.task,
            worker_name: "w".into(),
        },
    );
    h.assert_ignored(
        T0 + 11_000,
        Input::TaskSucceeded {
            task: d1.task,
            output: json!({"late": true}),
        },
    );
    h.assert_ignored(
        T0 + 11_000,
        Input::TaskFailed {
            task: d1.task,
            error: Some("E".into()),
            cause: None,
        },
    );
    h.assert_ignored(T0 + 11_000, Input::TaskHeartbeat { task: d1.task });

    // The retry runs the task again (same state, no new TaskStateEntered) with a new timer.
    let s = h.fire_at(T0 + 12_000);
    assert_eq!(types(&s.events), ["ActivityScheduled"]);
    let d2 = only_dispatch(&s);
    assert_ne!(d2.task, d1.task, "a retry is a new task");
    assert_ne!(d2.token, d1.token, "a retry gets a new task token");
    assert_eq!(d2.attempt, 2);
    assert_eq!(h.pending(), [22_000]);

    // The second attempt times out too: retries are exhausted, the Catcher takes over.
    let s = h.fire_at(T0 + 22_000);
    assert_eq!(
        types(&s.events),
        [
            "ActivityTimedOut",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(cancelled_tasks(&s), [d2.task]);
    assert_eq!(finished(&s), Some(ExecutionStatus::Succeeded));
    let out = output(&h.exec);
    assert_eq!(out["x"], json!(1), "ResultPath keeps the input: {out}");
    assert_eq!(out["err"]["Error"], json!("States.Timeout"), "{out}");
    assert_eq!(h.exec.stop_ms, Some(T0 + 22_000));
    assert!(
        h.pending().is_empty(),
        "no timer may outlive the execution: {:?}",
        h.pending()
    );
    h.assert_ignored(
        T0 + 30_000,
        Input::TaskSucceeded {
            task: d2.task,
            output: json!(1),
        },
    );
}

#[test]
fn task_timeout_is_not_caught_by_task_failed() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"TimeoutSeconds": 5,
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}], "End": true})),
            "Caught": {"Type": "Pass", "End": true}}}),
        json!({}),
    );
    h.apply(T0, Input::Start);
    let s = h.fire_at(T0 + 5_000);
    assert_eq!(types(&s.events), ["ActivityTimedOut", "ExecutionFailed"]);
    assert_eq!(h.exec.status, ExecutionStatus::Failed);
    assert_eq!(h.exec.error.as_deref(), Some("States.Timeout"));
}

#[test]
fn a_heartbeat_timeout_is_matched_by_its_own_name_and_reported_as_states_timeout() {
    let definition = |catch: Value| {
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"TimeoutSeconds": 100, "HeartbeatSeconds": 10,
                "Catch": catch, "End": true})),
            "Caught": {"Type": "Pass", "End": true}}})
    };
    // Caught by `States.HeartbeatTimeout`: the error output still says `States.Timeout`.
    let mut h = Harness::new(
        definition(json!([{"ErrorEquals": ["States.HeartbeatTimeout"],
            "ResultPath": "$.err", "Next": "Caught"}])),
        json!({}),
    );
    h.apply(T0, Input::Start);
    h.fire_at(T0 + 10_000);
    assert_eq!(h.exec.status, ExecutionStatus::Succeeded);
    assert_eq!(
        output(&h.exec)["err"],
        json!({"Error": "States.Timeout", "Cause": ""})
    );
    // Uncaught: the execution fails with `States.Timeout`, without a cause.
    let mut h = Harness::new(
        definition(json!([{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}])),
        json!({}),
    );
    h.apply(T0, Input::Start);
    let s = h.fire_at(T0 + 10_000);
    assert_eq!(types(&s.events), ["ActivityTimedOut", "ExecutionFailed"]);
    assert_eq!(h.exec.error.as_deref(), Some("States.Timeout"));
    assert_eq!(h.exec.cause, None);
}

#[test]
fn a_task_timeout_is_not_a_heartbeat_timeout() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"TimeoutSeconds": 5,
                "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Caught"}],
                "End": true})),
            "Caught": {"Type": "Pass", "End": true}}}),
        json!({}),
    );
    h.apply(T0, Input::Start);
    let s = h.fire_at(T0 + 5_000);
    assert_eq!(types(&s.events), ["ActivityTimedOut", "ExecutionFailed"]);
    assert_eq!(h.exec.error.as_deref(), Some("States.Timeout"));
}

#[test]
fn outside_its_state_a_heartbeat_timeout_is_states_timeout() {
    let mut h = Harness::new(
        json!({"StartAt": "Both", "States": {
            "Both": {"Type": "Parallel", "Branches": [{"StartAt": "Work", "States": {
                "Work": activity_task(json!({"TimeoutSeconds": 100, "HeartbeatSeconds": 10,
                    "Retry": [{"ErrorEquals": ["States.HeartbeatTimeout"], "IntervalSeconds": 1,
                        "MaxAttempts": 1}],
                    "End": true}))}}],
                "Catch": [
                    {"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.err", "Next": "Caught"}],
                "End": true},
            "Wrong": {"Type": "Fail", "Error": "Wrong"},
            "Caught": {"Type": "Pass", "End": true}}}),
        json!({}),
    );
    h.apply(T0, Input::Start);
    // The task's own Retry knows the heartbeat timeout by name: one retry, a second dispatch.
    let s = h.fire_at(T0 + 10_000);
    assert_eq!(types(&s.events), ["ActivityTimedOut"]);
    let s = h.fire_at(T0 + 11_000);
    assert_eq!(dispatches(&s).len(), 1, "retried");
    h.fire_at(T0 + 21_000);
    // The Parallel sees `States.Timeout`: its HeartbeatTimeout catcher does not match.
    assert_eq!(h.exec.status, ExecutionStatus::Succeeded);
    assert_eq!(
        output(&h.exec)["err"],
        json!({"Error": "States.Timeout", "Cause": ""})
    );
}

#[test]
fn errors_named_by_a_worker_pass_as_they_are() {
    for (error, cause, expected) in [
        (
            "States.Timeout",
            Some("slow"),
            json!({"Error": "States.Timeout", "Cause": "slow"}),
        ),
        ("States.Timeout", None, json!({"Error": "States.Timeout"})),
        (
            "States.HeartbeatTimeout",
            None,
            json!({"Error": "States.HeartbeatTimeout"}),
        ),
    ] {
        let mut h = Harness::new(
            json!({"StartAt": "Work", "States": {
                "Work": activity_task(json!({
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Caught"}],
                    "End": true})),
                "Caught": {"Type": "Pass", "End": true}}}),
            json!({}),
        );
        let d = only_dispatch(&h.apply(T0, Input::Start));
        h.apply(
            T0 + 1_000,
            Input::TaskFailed {
                task: d.task,
                error: Some(error.into()),
                cause: cause.map(str::to_string),
            },
        );
        assert_eq!(output(&h.exec)["err"], expected, "{error} {cause:?}");
    }
}

#[test]
fn heartbeat_timeout_after_task_started_without_heartbeats() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"TimeoutSeconds": 100, "HeartbeatSeconds": 10,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.err", "Next": "Caught"}],
                "End": true})),
            "Caught": {"Type": "Pass", "End": true}}}),
        json!({}),
    );
    let s = h.apply(T0, Input::Start);
    let d = only_dispatch(&s);
    assert_eq!(
        (d.timeout_seconds, d.heartbeat_seconds),
        (Some(100), Some(10))
    );
    let before_start: Vec<u64> = h.timers.keys().copied().collect();

    let s = h.apply(
        T0 + 3_000,
        Input::TaskStarted {
            task: d.task,
            worker_name: "w1".into(),
        },
    );
    assert_eq!(types(&s.events), ["ActivityStarted"]);
    // The heartbeat clock runs from the start: due 10 s after it; the task timeout stays.
    assert_eq!(h.pending(), [13_000, 100_000]);
    // A heartbeat timer replaced by the restart is stale if it still fires.
    let stale: Vec<u64> = before_start
        .into_iter()
        .filter(|t| !h.timers.contains_key(t))
        .collect();
    for stale in stale {
        h.assert_ignored(T0 + 10_000, Input::TimerFired { timer: stale });
    }

    let s = h.fire_at(T0 + 13_000);
    assert_eq!(
        types(&s.events),
        [
            "ActivityTimedOut",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    // AWS reports a heartbeat timeout as `States.Timeout`, in the history and in the error
    // output (with an empty `Cause`); only the state's own Retry/Catch can tell it apart.
    assert_eq!(timed_out_error(&s).as_deref(), Some("States.Timeout"));
    assert_eq!(cancelled_tasks(&s), [d.task]);
    let out = output(&h.exec);
    assert_eq!(
        out["err"],
        json!({"Error": "States.Timeout", "Cause": ""}),
        "{out}"
    );
    assert!(
        h.pending().is_empty(),
        "the task timeout must be cancelled: {:?}",
        h.pending()
    );
}

#[test]
fn heartbeats_postpone_the_heartbeat_timer() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"HeartbeatSeconds": 10, "End": true}))}}),
        json!({}),
    );
    let d = only_dispatch(&h.apply(T0, Input::Start));
    h.apply(
        T0,
        Input::TaskStarted {
            task: d.task,
            worker_name: "w".into(),
        },
    );
    assert_eq!(h.pending(), [10_000]);
    let first: Vec<u64> = h.timers.keys().copied().collect();

    let s = h.apply(T0 + 8_000, Input::TaskHeartbeat { task: d.task });
    assert!(
        s.events.is_empty(),
        "heartbeats are not history events: {:?}",
        types(&s.events)
    );
    assert_eq!(
        h.pending(),
        [18_000],
        "a heartbeat restarts the HeartbeatSeconds countdown"
    );
    // The superseded timer must be harmless even if the runtime still delivers it.
    for t in first {
        h.assert_ignored(T0 + 10_000, Input::TimerFired { timer: t });
    }
    assert_eq!(h.exec.status, ExecutionStatus::Running);

    h.apply(T0 + 15_000, Input::TaskHeartbeat { task: d.task });
    assert_eq!(h.pending(), [25_000]);
    let s = h.apply(
        T0 + 20_000,
        Input::TaskSucceeded {
            task: d.task,
            output: json!({"ok": 1}),
        },
    );
    assert_eq!(
        types(&s.events),
        ["ActivitySucceeded", "TaskStateExited", "ExecutionSucceeded"]
    );
    assert_eq!(output(&h.exec), json!({"ok": 1}));
    assert!(h.pending().is_empty());
    h.assert_ignored(T0 + 21_000, Input::TaskHeartbeat { task: d.task });
}

#[test]
fn duplicate_results_and_timers_are_ignored() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "States": {
            "Work": activity_task(json!({"Next": "Hold"})),
            "Hold": {"Type": "Wait", "Seconds": 5, "End": true}}}),
        json!({}),
    );
    h.assert_ignored(
        T0,
        Input::TaskSucceeded {
            task: 1,
            output: json!(0),
        },
    );
    h.assert_ignored(T0, Input::TimerFired { timer: 1 });
    let d = only_dispatch(&h.apply(T0, Input::Start));
    h.assert_ignored(T0, Input::Start);

    let s = h.apply(
        T0 + 1_000,
        Input::TaskSucceeded {
            task: d.task,
            output: json!({"v": 1}),
        },
    );
    assert_eq!(
        types(&s.events),
        ["ActivitySucceeded", "TaskStateExited", "WaitStateEntered"]
    );
    h.assert_ignored(
        T0 + 1_001,
        Input::TaskSucceeded {
            task: d.task,
            output: json!({"v": 2}),
        },
    );
    h.assert_ignored(
        T0 + 1_002,
        Input::TaskFailed {
            task: d.task,
            error: None,
            cause: None,
        },
    );
    h.assert_ignored(
        T0 + 1_003,
        Input::TaskSucceeded {
            task: d.task + 100,
            output: json!(0),
        },
    );

    let (&timer, _) = h
        .timers
        .iter()
        .next()
        .unwrap_or_else(|| panic!("the Wait scheduled no timer"));
    let s = h.fire_at(T0 + 6_000);
    assert_eq!(types(&s.events), ["WaitStateExited", "ExecutionSucceeded"]);
    assert_eq!(output(&h.exec), json!({"v": 1}));
    h.assert_ignored(T0 + 6_001, Input::TimerFired { timer });
    h.assert_ignored(
        T0 + 6_002,
        Input::Stop {
            error: None,
            cause: None,
        },
    );
}

#[test]
fn stop_aborts_and_cancels_every_open_task() {
    let mut h = Harness::new(
        json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": activity_task(json!({"TimeoutSeconds": 30, "End": true}))}},
            {"StartAt": "B", "States": {"B": activity_task(json!({"TimeoutSeconds": 30, "End": true}))}},
            {"StartAt": "C", "States": {"C": {"Type": "Wait", "Seconds": 60, "End": true}}}]}}}),
        json!({}),
    );
    let s = h.apply(T0, Input::Start);
    let mut tasks: Vec<u64> = dispatches(&s).iter().map(|d| d.task).collect();
    tasks.sort_unstable();
    assert_eq!(tasks.len(), 2);
    assert_eq!(h.pending(), [30_000, 30_000, 60_000]);
    assert_eq!(h.exec.open_tasks(), tasks);

    let s = h.apply(
        T0 + 5_000,
        Input::Stop {
            error: Some("User.Cancelled".into()),
            cause: Some("operator".into()),
        },
    );
    assert_eq!(h.exec.status, ExecutionStatus::Aborted);
    assert_eq!(finished(&s), Some(ExecutionStatus::Aborted));
    assert_eq!(
        cancelled_tasks(&s),
        tasks,
        "every open task must be cancelled"
    );
    let aborted = TaskEnded {
        resource: ACT.into(),
        outcome: TaskOutcome::Aborted,
        after_ms: Some(5_000),
    };
    assert_eq!(
        s.ended_tasks,
        [aborted.clone(), aborted],
        "each task ends once"
    );
    assert!(
        h.pending().is_empty(),
        "every timer must be cancelled: {:?}",
        h.pending()
    );
    assert_eq!(
        types(&s.events).last().map(String::as_str),
        Some("ExecutionAborted")
    );
    assert_eq!(h.exec.error.as_deref(), Some("User.Cancelled"));
    assert_eq!(h.exec.cause.as_deref(), Some("operator"));
    assert_eq!(h.exec.stop_ms, Some(T0 + 5_000));
    assert!(h.exec.open_tasks().is_empty());
    h.assert_ignored(
        T0 + 6_000,
        Input::TaskSucceeded {
            task: tasks[0],
            output: json!(1),
        },
    );
    h.assert_ignored(
        T0 + 6_000,
        Input::Stop {
            error: None,
            cause: None,
        },
    );
}

/// Fails the task every time and returns the delay (ms) before each retry.
fn retry_delays(retrier: Value, failures: usize, seed: u64) -> (Vec<i64>, Harness) {
    let mut h = Harness::with_seed(
        json!({"StartAt": "Work", "States": {"Work": activity_task(json!({"Retry": [retrier], "End": true}))}}),
        json!({}),
        seed,
    );
    let mut now = T0;
    let mut d = only_dispatch(&h.apply(now, Input::Start));
    let mut delays = Vec::new();
    for n in 0..failures {
        assert_eq!(d.attempt as usize, n + 1);
        now += 500;
        let s = h.apply(
            now,
            Input::TaskFailed {
                task: d.task,
                error: Some("Flaky".into()),
                cause: None,
            },
        );
        let timers = scheduled(&s);
        if timers.is_empty() {
            break;
        }
        assert_eq!(
            timers.len(),
            1,
            "one retry timer per failure: {:?}",
            s.commands
        );
        let (_, at) = timers[0];
        delays.push(at - now);
        now = at;
        d = only_dispatch(&h.fire_at(at));
    }
    (delays, h)
}

#[test]
fn retry_timers_follow_interval_backoff_and_max_delay() {
    let cases = [
        // IntervalSeconds * BackoffRate^n, capped by MaxDelaySeconds.
        (
            json!({"ErrorEquals": ["Flaky"], "IntervalSeconds": 3, "BackoffRate": 2.5, "MaxDelaySeconds": 10, "MaxAttempts": 4}),
            vec![3_000, 7_500, 10_000, 10_000],
        ),
        // Defaults: IntervalSeconds 1, BackoffRate 2.0, MaxAttempts 3.
        (
            json!({"ErrorEquals": ["States.ALL"]}),
            vec![1_000, 2_000, 4_000],
        ),
        (
            json!({"ErrorEquals": ["Flaky"], "IntervalSeconds": 5, "BackoffRate": 1, "MaxAttempts": 2}),
            vec![5_000, 5_000],
        ),
        (
            json!({"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "BackoffRate": 1.5, "MaxAttempts": 3}),
            vec![1_000, 1_500, 2_250],
        ),
    ];
    for (retrier, want) in cases {
        let (got, h) = retry_delays(retrier.clone(), 10, 1);
        assert_eq!(got, want, "retry delays for {retrier}");
        assert_eq!(
            h.exec.status,
            ExecutionStatus::Failed,
            "{retrier}: retries exhausted must fail"
        );
        assert_eq!(h.exec.error.as_deref(), Some("Flaky"));
        let failed = h
            .history
            .iter()
            .filter(|e| e.kind.type_name() == "ActivityFailed")
            .count();
        assert_eq!(
            failed,
            want.len() + 1,
            "{retrier}: one ActivityFailed per attempt"
        );
        let entered = h
            .history
            .iter()
            .filter(|e| e.kind.type_name() == "TaskStateEntered")
            .count();
        assert_eq!(entered, 1, "{retrier}: retries do not re-enter the state");
    }
}

#[test]
fn full_jitter_stays_within_the_backoff_delay() {
    let retrier = json!({"ErrorEquals": ["Flaky"], "IntervalSeconds": 10, "BackoffRate": 2,
                         "MaxDelaySeconds": 50, "MaxAttempts": 4, "JitterStrategy": "FULL"});
    let caps = [10_000, 20_000, 40_000, 50_000];
    let mut all = Vec::new();
    for seed in 0..40u64 {
        let (delays, _) = retry_delays(retrier.clone(), 10, seed);
        assert_eq!(
            delays.len(),
            4,
            "seed {seed}: MaxAttempts 4 gives four retries"
        );
        for (d, cap) in delays.iter().zip(caps) {
            assert!(
                (0..=cap).contains(d),
                "seed {seed}: jittered delay {d} ms outside [0, {cap}]"
            );
        }
        let (again, _) = retry_delays(retrier.clone(), 10, seed);
        assert_eq!(
            delays, again,
            "seed {seed}: jitter must be a function of the seed"
        );
        all.extend(delays.into_iter().zip(caps));
    }
    let at_cap = all.iter().filter(|(d, cap)| d == cap).count();
    assert!(
        at_cap < all.len() / 4,
        "FULL jitter should rarely give the full delay ({at_cap} of {})",
        all.len()
    );
    let below_half = all.iter().filter(|(d, cap)| *d * 2 < *cap).count();
    assert!(
        below_half > all.len() / 4 && below_half < all.len() * 3 / 4,
        "FULL jitter should spread over [0, delay]: {below_half} of {} below half",
        all.len()
    );
}

/// A definition touching most of the interpreter: Parallel, Map with retried tasks, Wait,
/// Choice, variables, intrinsics and the context object.
fn busy_definition() -> Value {
    json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"label.$": "$.label"}, "Next": "Fan"},
        "Fan": {"Type": "Parallel", "Next": "Route", "ResultSelector": {"items.$": "$[0]", "waited.$": "$[1]"},
            "Branches": [
                {"StartAt": "Each", "States": {"Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "End": true,
                    "ItemSelector": {"n.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "id.$": "States.UUID()"},
                    "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": ACT,
                        "TimeoutSeconds": 20, "HeartbeatSeconds": 8,
                        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 3, "JitterStrategy": "FULL"}],
                        "End": true}}}}}},
                {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 7, "Next": "Stamp"},
                    "Stamp": {"Type": "Pass", "Parameters": {"at.$": "$$.State.EnteredTime", "label.$": "$label"}, "End": true}}}]},
        "Route": {"Type": "Choice", "Choices": [{"Variable": "$.items[0].n", "NumericEquals": 1, "Next": "Done"}], "Default": "Odd"},
        "Odd": {"Type": "Fail", "Error": "Odd"},
        "Done": {"Type": "Pass", "Parameters": {"summary.$": "States.Format('{} items', States.ArrayLength($.items))", "all.$": "$"}, "End": true}}})
}

/// Drives an execution to its end like a runtime would: each dispatched task is started and
/// then answered (items whose `n` is 2 fail once with `Flaky`, everything else succeeds after
/// a heartbeat), and when nothing else is pending the earliest timer fires.
fn drive(h: &mut Harness, stop_after: Option<usize>) {
    let mut inbox: VecDeque<(i64, Input)> = VecDeque::from([(T0, Input::Start)]);
    let mut now = T0;
    let mut failed_once = std::collections::BTreeSet::new();
    for _ in 0..10_000 {
        if stop_after.is_some_and(|n| h.journal.len() >= n) || h.exec.is_finished() {
            return;
        }
        let (at, input) = match inbox.pop_front() {
            Some(x) => x,
            None => {
                let Some((&id, &at)) = h.timers.iter().min_by_key(|(&id, &at)| (at, id)) else {
                    panic!("the execution is stuck: nothing to deliver and no timer pending");
                };
                h.timers.remove(&id);
                (at, Input::TimerFired { timer: id })
            }
        };
        now = now.max(at);
        let step = h.apply(now, input);
        for d in dispatches(&step) {
            inbox.push_back((
                now + 1_000,
                Input::TaskStarted {
                    task: d.task,
                    worker_name: "w".into(),
                },
            ));
            inbox.push_back((now + 2_000, Input::TaskHeartbeat { task: d.task }));
            let n = d.input["n"].as_i64().unwrap_or(0);
            let answer = if n == 2 && failed_once.insert(d.input["i"].as_u64()) {
                Input::TaskFailed {
                    task: d.task,
                    error: Some("Flaky".into()),
                    cause: Some("first try".into()),
                }
            } else {
                Input::TaskSucceeded {
                    task: d.task,
                    output: json!({"n": n, "attempt": d.attempt}),
                }
            };
            inbox.push_back((now + 3_000, answer));
        }
    }
    panic!("the execution did not finish within 10,000 inputs");
}

fn busy_input() -> Value {
    json!({"label": "L", "items": [1, 2, 3, 2]})
}

#[test]
fn driven_run_is_sane() {
    let mut h = Harness::new(busy_definition(), busy_input());
    drive(&mut h, None);
    assert_eq!(
        h.exec.status,
        ExecutionStatus::Succeeded,
        "error {:?} cause {:?}",
        h.exec.error,
        h.exec.cause
    );
    let out = output(&h.exec);
    assert_eq!(out["summary"], json!("4 items"), "{out}");
    let attempts: Vec<Value> = out["all"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["attempt"].clone())
        .collect();
    assert_eq!(attempts, [json!(1), json!(2), json!(1), json!(2)], "{out}");
    assert_eq!(out["all"]["waited"]["label"], json!("L"));
    // Event ids are dense and increasing, previous ids point backwards.
    for (i, e) in h.history.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert!(e.previous_event_id < e.id);
    }
    assert_eq!(h.exec.event_count(), h.history.len() as u64);
    assert!(h.pending().is_empty());
}

#[test]
fn replay_of_the_journal_rebuilds_the_same_execution() {
    let mut h = Harness::new(busy_definition(), busy_input());
    drive(&mut h, None);
    assert!(h.exec.is_finished());
    assert!(
        h.journal.len() > 20,
        "the journal should be substantial ({} entries)",
        h.journal.len()
    );
    let (rebuilt, events) = replay(&h.def, h.exec.info.clone(), &h.journal, KEY)
        .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(events, h.history, "replayed history differs");
    assert!(
        rebuilt == h.exec,
        "replayed execution differs from the original"
    );

    // A prefix of the journal rebuilds the execution as it was at that point.
    let mut partial = Harness::new(busy_definition(), busy_input());
    drive(&mut partial, Some(h.journal.len() / 2));
    let (mid, mid_events) = replay(
        &partial.def,
        partial.exec.info.clone(),
        &partial.journal,
        KEY,
    )
    .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert!(mid == partial.exec, "replayed mid-run execution differs");
    assert_eq!(mid_events, partial.history);
}

#[test]
fn snapshot_round_trip_continues_identically() {
    let mut full = Harness::new(busy_definition(), busy_input());
    drive(&mut full, None);
    let journal = full.journal.clone();
    for cut in [1, journal.len() / 3, journal.len() / 2, journal.len() - 1] {
        let mut original = Harness::new(busy_definition(), busy_input());
        for e in &journal[..cut] {
            original.apply(e.now_ms, e.input.clone());
        }
        let text =
            serde_json::to_string(&original.exec).unwrap_or_else(|e| panic!("serialize: {e}"));
        let restored: Execution =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("deserialize: {e}"));
        assert!(
            restored == original.exec,
            "cut {cut}: the snapshot does not round-trip"
        );
        let mut copy = Harness {
            def: definition(busy_definition()),
            exec: restored,
            journal: Vec::new(),
            history: Vec::new(),
            timers: original.timers.clone(),
        };
        for e in &journal[cut..] {
            let a = original.apply(e.now_ms, e.input.clone());
            let b = copy.apply(e.now_ms, e.input.clone());
            assert_eq!(a, b, "cut {cut}: steps diverge at input {:?}", e.input);
        }
        assert!(
            copy.exec == original.exec,
            "cut {cut}: final executions differ"
        );
        assert!(
            copy.exec == full.exec,
            "cut {cut}: the re-applied run differs from the first run"
        );
    }
}

/// Durations read from the input at run time (`SecondsPath`, `TimeoutSecondsPath`,
/// `HeartbeatSecondsPath`) are not checked by the validator: even absurd values must not
/// overflow the interpreter's time arithmetic (a panic in debug builds, a timer in the past in
/// release builds). Whatever the outcome, every scheduled timer lies in the future.
#[test]
fn huge_runtime_durations_do_not_overflow() {
    let defs = [
        (
            "Wait SecondsPath",
            json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.n", "End": true}}}),
        ),
        (
            "Task TimeoutSecondsPath",
            json!({"StartAt": "T", "States": {"T": activity_task(json!({"TimeoutSecondsPath": "$.n", "End": true}))}}),
        ),
        (
            "Task HeartbeatSecondsPath",
            json!({"StartAt": "T", "States": {"T": activity_task(json!({"HeartbeatSecondsPath": "$.n", "End": true}))}}),
        ),
    ];
    let values = [
        json!(i64::MAX),
        json!(i64::MAX / 1000),
        json!(100_000_000_000_000_000u64),
        json!(1e300),
    ];
    let mut problems = Vec::new();
    for (label, def) in &defs {
        for n in &values {
            let def_v = def.clone();
            let n_v = n.clone();
            let outcome = std::panic::catch_unwind(move || {
                let mut h = Harness::new(def_v, json!({"n": n_v}));
                h.apply(T0, Input::Start);
                (h.exec.status, h.exec.error.clone(), h.pending())
            });
            match outcome {
                Err(_) => problems.push(format!("{label} with n = {n}: panicked")),
                Ok((status, error, pending)) => {
                    if let Some(t) = pending.iter().find(|&&t| t < 0) {
                        problems.push(format!(
                            "{label} with n = {n}: timer scheduled in the past (T0{t} ms)"
                        ));
                    }
                    if status != ExecutionStatus::Running
                        && error.as_deref() != Some("States.Runtime")
                    {
                        problems.push(format!(
                            "{label} with n = {n}: ended {status:?} with {error:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "huge durations mishandled:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn an_endless_loop_of_pass_states_fails_at_the_history_limit() {
    // A Choice that always loops back: valid ASL (a terminal state exists), never ends.
    let def = definition(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": false, "Next": "A"}],
              "Default": "Done"},
        "Done": {"Type": "Succeed"}
    }}));
    let mut exec = Execution::new(info(json!({}), 1));
    let ctx = Context {
        now_ms: T0,
        ..Context::default()
    };
    let step = exec.apply(&def, &Input::Start, &ctx).expect("apply");
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(exec.error.as_deref(), Some("States.Runtime"));
    let last = step.events.last().expect("events");
    assert_eq!(last.kind.type_name(), "ExecutionFailed");
    assert!(
        (25_000..=25_002).contains(&last.id),
        "history should stop at AWS's 25,000-event limit, ended at {}",
        last.id
    );
}

// ------------------------------------------------------------------------------------------
// RedriveExecution

fn failed_task(task: u64) -> Input {
    Input::TaskFailed {
        task,
        error: Some("Boom".into()),
        cause: Some("the worker broke".into()),
    }
}

fn succeeded_task(task: u64, output: Value) -> Input {
    Input::TaskSucceeded { task, output }
}

/// Applies the redrive the execution allows at `now` (it must be redrivable).
fn redrive(h: &mut Harness, now: i64) -> Step {
    let input = h
        .exec
        .redrive_input(now)
        .unwrap_or_else(|e| panic!("not redrivable: {e}"));
    h.apply(now, input)
}

/// The `…StateEntered` inputs of the state named `name`, in history order.
fn entered_inputs(events: &[HistoryEvent], name: &str) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StateEntered { name: n, input, .. } if &**n == name => {
                Some(Value::clone(input))
            }
            _ => None,
        })
        .collect()
}

fn assert_dense(h: &Harness) {
    for (i, e) in h.history.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1, "event ids must stay dense");
        assert!(e.previous_event_id < e.id);
    }
    assert_eq!(h.exec.event_count(), h.history.len() as u64);
}

fn redrive_task_definition() -> Value {
    json!({"StartAt": "Prep", "States": {
        "Prep": {"Type": "Pass", "Parameters": {"v.$": "$.v", "id.$": "States.UUID()"}, "Next": "Work"},
        "Work": activity_task(json!({
            "Parameters": {"v.$": "$.v", "redrives.$": "$$.Execution.RedriveCount"},
            "Next": "Done"})),
        "Done": {"Type": "Pass",
            "Parameters": {"result.$": "$", "redriveCount.$": "$$.Execution.RedriveCount"},
            "End": true}}})
}

#[test]
fn redrive_reruns_the_failed_task_with_its_input() {
    let mut h = Harness::new(redrive_task_definition(), json!({"v": 7}));
    let d1 = only_dispatch(&h.apply(T0, Input::Start));
    assert_eq!(d1.input, json!({"v": 7, "redrives": 0}));
    let s = h.apply(T0 + 1_000, failed_task(d1.task));
    assert_eq!(finished(&s), Some(ExecutionStatus::Failed));
    assert_eq!(h.exec.redrivable(), Ok(()));
    let before = h.history.len();

    let at = T0 + 60_000;
    let s = redrive(&mut h, at);
    assert_eq!(
        types(&s.events),
        ["ExecutionRedriven", "TaskStateEntered", "ActivityScheduled"],
        "only the failed state runs again"
    );
    let redriven = &s.events[0];
    assert_eq!(redriven.id, before as u64 + 1);
    assert_eq!(redriven.previous_event_id, before as u64);
    assert_eq!(
        redriven.to_aws_json()["executionRedrivenEventDetails"],
        json!({"redriveCount": 1})
    );
    assert_eq!(s.events[1].previous_event_id, redriven.id);
    let entered = entered_inputs(&h.history, "Work");
    assert_eq!(entered.len(), 2);
    assert_eq!(
        entered[0], entered[1],
        "the state is re-entered with the same input"
    );
    let d2 = only_dispatch(&s);
    assert_ne!(d2.task, d1.task, "a redrive dispatches a new task");
    assert_eq!(d2.attempt, 1, "a redrive starts the state's attempts over");
    assert_eq!(d2.input, json!({"v": 7, "redrives": 1}));
    assert_eq!(h.exec.status, ExecutionStatus::Running);
    assert_eq!((h.exec.error.clone(), h.exec.stop_ms), (None, None));
    assert_eq!(h.exec.info.redrive_count, 1);
    assert_eq!(h.exec.redrive_ms, Some(at));

    // The first attempt's task is gone for good.
    h.assert_ignored(at + 1_000, succeeded_task(d1.task, json!("late")));
    let s = h.apply(at + 2_000, succeeded_task(d2.task, json!({"ok": true})));
    assert_eq!(finished(&s), Some(ExecutionStatus::Succeeded));
    let out = output(&h.exec);
    assert_eq!(out["result"], json!({"ok": true}), "{out}");
    assert_eq!(out["redriveCount"], json!(1), "{out}");
    assert_eq!(
        entered_inputs(&h.history, "Prep").len(),
        1,
        "Prep succeeded: not rerun"
    );
    assert_dense(&h);
    assert_eq!(
        h.exec.redrivable(),
        Err("Execution is SUCCEEDED and cannot be redriven".to_string())
    );

    // The journal, Redrive included, rebuilds exactly this execution.
    let (rebuilt, events) = replay(&h.def, info(json!({"v": 7}), 7), &h.journal, KEY)
        .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(events, h.history, "replayed history differs");
    assert!(rebuilt == h.exec, "replayed execution differs");
}

#[test]
fn redrive_is_refused_unless_the_execution_ended_unsuccessfully() {
    // Succeeded.
    let mut h = Harness::new(
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
        json!({}),
    );
    h.apply(T0, Input::Start);
    assert_eq!(h.exec.status, ExecutionStatus::Succeeded);
    assert_eq!(
        h.exec.redrive_input(T0 + 1),
        Err("Execution is SUCCEEDED and cannot be redriven".to_string())
    );
    h.assert_ignored(T0 + 1, Input::Redrive { redrive_count: 1 });

    // Running.
    let mut h = Harness::new(redrive_task_definition(), json!({"v": 1}));
    let d = only_dispatch(&h.apply(T0, Input::Start));
    assert_eq!(
        h.exec.redrivable(),
        Err("Execution is RUNNING and cannot be redriven".to_string())
    );
    h.assert_ignored(T0 + 1, Input::Redrive { redrive_count: 1 });

    // Failed: redrivable for 14 days after the stop, not later.
    h.apply(T0 + 5, failed_task(d.task));
    let day = 24 * 3600 * 1000;
    assert_eq!(h.exec.redrivable_at(T0 + 5 + 14 * day), Ok(()));
    assert_eq!(
        h.exec.redrivable_at(T0 + 6 + 14 * day),
        Err("Execution redrivable period exceeded".to_string())
    );
    h.assert_ignored(T0 + 15 * day, Input::Redrive { redrive_count: 1 });
    // A redrive naming the wrong count (stale or from the future) is ignored.
    h.assert_ignored(T0 + 10, Input::Redrive { redrive_count: 2 });
    h.assert_ignored(T0 + 10, Input::Redrive { redrive_count: 0 });

    // EXPRESS executions are never redrivable.
    let def = definition(
        json!({"StartAt": "Work", "States": {"Work": activity_task(json!({"End": true}))}}),
    );
    let mut express = info(json!({"v": 1}), 3);
    express.express = true;
    let mut exec = Execution::new(express);
    let ctx = Context {
        now_ms: T0,
        ..Context::default()
    };
    let step = exec.apply(&def, &Input::Start, &ctx).expect("start");
    let task = only_dispatch(&step).task;
    exec.apply(&def, &failed_task(task), &ctx).expect("fail");
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert!(exec.redrivable().is_err());
    let step = exec
        .apply(&def, &Input::Redrive { redrive_count: 1 }, &ctx)
        .expect("redrive");
    assert_eq!(step, Step::default());
}

#[test]
fn a_duplicate_redrive_changes_nothing() {
    let mut h = Harness::new(redrive_task_definition(), json!({"v": 1}));
    let d1 = only_dispatch(&h.apply(T0, Input::Start));
    h.apply(T0 + 1, failed_task(d1.task));
    let first = h.exec.redrive_input(T0 + 2).expect("redrivable");
    assert_eq!(first, Input::Redrive { redrive_count: 1 });
    let d2 = only_dispatch(&h.apply(T0 + 2, first.clone()));
    // Delivered again while the redriven execution runs: ignored.
    h.assert_ignored(T0 + 3, first.clone());
    // The redriven execution fails again; the late duplicate still changes nothing.
    h.apply(T0 + 4, failed_task(d2.task));
    assert_eq!(h.exec.status, ExecutionStatus::Failed);
    h.assert_ignored(T0 + 5, first);
    // A second, deliberate redrive is a new count.
    let second = h.exec.redrive_input(T0 + 6).expect("redrivable again");
    assert_eq!(second, Input::Redrive { redrive_count: 2 });
    let s = h.apply(T0 + 6, second.clone());
    assert_eq!(
        types(&s.events),
        ["ExecutionRedriven", "TaskStateEntered", "ActivityScheduled"]
    );
    assert_eq!(only_dispatch(&s).input, json!({"v": 1, "redrives": 2}));
    h.assert_ignored(T0 + 7, second);
    assert_dense(&h);
}

#[test]
fn redrive_reruns_only_the_failed_parallel_branch() {
    let def = json!({"StartAt": "Fan", "States": {
        "Fan": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": activity_task(json!({"End": true}))}},
            {"StartAt": "B1", "States": {
                "B1": {"Type": "Pass", "Result": {"b": 1}, "Next": "B2"},
                "B2": activity_task(json!({"End": true}))}}]}}});
    let mut h = Harness::new(def, json!({"in": 1}));
    let s = h.apply(T0, Input::Start);
    let ds = dispatches(&s);
    assert_eq!(ds.len(), 2);
    let (a, b) = (&ds[0], &ds[1]);
    assert_eq!((a.state_name.as_str(), b.state_name.as_str()), ("A", "B2"));
    h.apply(T0 + 1, succeeded_task(a.task, json!("from A")));
    let s = h.apply(T0 + 2, failed_task(b.task));
    assert_eq!(finished(&s), Some(ExecutionStatus::Failed));

    let s = redrive(&mut h, T0 + 100);
    assert_eq!(
        types(&s.events),
        [
            "ExecutionRedriven",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "TaskStateEntered",
            "ActivityScheduled"
        ],
        "only branch B runs again, from B2"
    );
    let d = only_dispatch(&s);
    assert_eq!(d.state_name, "B2");
    assert_eq!(d.input, json!({"b": 1}), "B2 gets the input it had");
    let s = h.apply(T0 + 101, succeeded_task(d.task, json!("from B")));
    assert_eq!(finished(&s), Some(ExecutionStatus::Succeeded));
    assert_eq!(output(&h.exec), json!(["from A", "from B"]));
    assert_eq!(entered_inputs(&h.history, "A").len(), 1);
    assert_eq!(entered_inputs(&h.history, "B1").len(), 1);
    assert_dense(&h);
    let (rebuilt, events) = replay(&h.def, info(json!({"in": 1}), 7), &h.journal, KEY)
        .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(events, h.history);
    assert!(rebuilt == h.exec);
}

#[test]
fn redrive_reruns_only_unsuccessful_map_iterations() {
    let def = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "End": true, "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Work", "States": {"Work": activity_task(json!({"End": true}))}}}}});
    let mut h = Harness::new(def, json!({"items": [10, 20, 30]}));
    let ds = dispatches(&h.apply(T0, Input::Start));
    assert_eq!(ds.len(), 3);
    h.apply(T0 + 1, succeeded_task(ds[0].task, json!("r10")));
    // Item 1 fails: the map fails fast and aborts item 2.
    let s = h.apply(T0 + 2, failed_task(ds[1].task));
    assert_eq!(finished(&s), Some(ExecutionStatus::Failed));
    assert_eq!(cancelled_tasks(&s), [ds[2].task]);

    let s = redrive(&mut h, T0 + 100);
    let t = types(&s.events);
    assert_eq!(
        &t[..3],
        ["ExecutionRedriven", "MapStateEntered", "MapStateStarted"]
    );
    let started: Vec<Value> = s
        .events
        .iter()
        .filter(|e| e.kind.type_name() == "MapIterationStarted")
        .map(|e| e.to_aws_json()["mapIterationStartedEventDetails"]["index"].clone())
        .collect();
    assert_eq!(started, [json!(1), json!(2)], "item 0 succeeded: not rerun");
    let again = dispatches(&s);
    assert_eq!(
        again.iter().map(|d| d.input.clone()).collect::<Vec<_>>(),
        [json!(20), json!(30)]
    );
    h.apply(T0 + 101, succeeded_task(again[1].task, json!("r30")));
    let s = h.apply(T0 + 102, succeeded_task(again[0].task, json!("r20")));
    assert_eq!(finished(&s), Some(ExecutionStatus::Succeeded));
    assert_eq!(output(&h.exec), json!(["r10", "r20", "r30"]));
    assert_dense(&h);
}

#[test]
fn redrive_after_a_timeout_restarts_the_execution_timeout() {
    let mut h = Harness::new(
        json!({"StartAt": "Work", "TimeoutSeconds": 100,
            "States": {"Work": activity_task(json!({"End": true}))}}),
        json!({}),
    );
    let d1 = only_dispatch(&h.apply(T0, Input::Start));
    assert_eq!(h.pending(), [100_000]);
    let s = h.fire_at(T0 + 100_000);
    assert_eq!(finished(&s), Some(ExecutionStatus::TimedOut));
    assert_eq!(cancelled_tasks(&s), [d1.task]);

    let s = redrive(&mut h, T0 + 500_000);
    let d2 = only_dispatch(&s);
    assert_eq!(d2.state_name, "Work");
    assert_eq!(
        h.pending(),
        [600_000],
        "the timeout counts from the redrive"
    );
    // Stopped (ABORTED) executions are redrivable too.
    h.apply(
        T0 + 550_000,
        Input::Stop {
            error: None,
            cause: None,
        },
    );
    assert_eq!(h.exec.status, ExecutionStatus::Aborted);
    assert!(h.pending().is_empty());
    let d3 = only_dispatch(&redrive(&mut h, T0 + 560_000));
    let s = h.apply(T0 + 561_000, succeeded_task(d3.task, json!(3)));
    assert_eq!(finished(&s), Some(ExecutionStatus::Succeeded));
    assert_eq!(h.exec.info.redrive_count, 2);
    assert!(h.pending().is_empty());
    assert_dense(&h);
}

#[test]
fn redrive_snapshot_round_trip_and_old_snapshots() {
    // A failed execution with a Parallel of a Map, serialized before the redrive: the
    // snapshot carries the redrive point and continues identically.
    let def = json!({"StartAt": "Fan", "States": {
        "Fan": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true,
                "ItemProcessor": {"StartAt": "W", "States": {"W": activity_task(json!({"End": true}))}}}}},
            {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 50, "End": true}}}]}}});
    let mut h = Harness::new(def.clone(), json!([1, 2]));
    let ds = dispatches(&h.apply(T0, Input::Start));
    assert_eq!(ds.len(), 2);
    h.apply(T0 + 1, succeeded_task(ds[0].task, json!("one")));
    h.apply(T0 + 2, failed_task(ds[1].task));
    assert_eq!(h.exec.status, ExecutionStatus::Failed);
    let text = serde_json::to_string(&h.exec).expect("serialize");
    let restored: Execution = serde_json::from_str(&text).expect("deserialize");
    assert!(restored == h.exec, "the snapshot does not round-trip");
    let mut copy = Harness {
        def: definition(def),
        exec: restored,
        journal: Vec::new(),
        history: Vec::new(),
        timers: h.timers.clone(),
    };
    let a = redrive(&mut h, T0 + 10);
    let b = redrive(&mut copy, T0 + 10);
    assert_eq!(a, b);
    // The map reruns item 1 only; the Wait branch was aborted and waits again.
    let d = only_dispatch(&a);
    assert_eq!(d.input, json!(2));
    assert_eq!(h.pending(), [50_010]);
    for hh in [&mut h, &mut copy] {
        hh.apply(T0 + 20, succeeded_task(d.task, json!("two")));
        hh.fire_at(T0 + 50_010);
        assert_eq!(output(&hh.exec), json!([["one", "two"], [1, 2]]));
    }
    assert!(h.exec == copy.exec);

    // Snapshots written before redrive existed (no redrive fields) still load and run.
    let mut old = Harness::new(busy_definition(), busy_input());
    drive(&mut old, Some(12));
    let mut v = serde_json::to_value(&old.exec).expect("to value");
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "redrive",
                    "redrive_ms",
                    "failed_kids",
                    "redo",
                    "resume",
                    "branch_input",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    let loaded: Execution = serde_json::from_value(v).expect("an old snapshot must load");
    assert_eq!(loaded.status, old.exec.status);
    assert_eq!(loaded.event_count(), old.exec.event_count());
}

#[test]
fn redrive_resumes_nested_branches_and_unlaunched_iterations() {
    // A Map (one iteration at a time, one failure tolerated) whose iterations run a Parallel:
    // the second and third iterations fail inside their Parallel; items 3 and 4 never start.
    let def = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "End": true, "MaxConcurrency": 1, "ToleratedFailureCount": 1,
            "ItemProcessor": {"StartAt": "Fan", "States": {
                "Fan": {"Type": "Parallel", "End": true, "Branches": [
                    {"StartAt": "L", "States": {"L": activity_task(json!({"End": true}))}},
                    {"StartAt": "R", "States": {"R": activity_task(json!({"End": true}))}}]}}}}}});
    let mut h = Harness::new(def, json!([0, 1, 2, 3, 4]));
    let mut ds = dispatches(&h.apply(T0, Input::Start));
    let mut now = T0;
    // Item 0 succeeds; items 1 and 2 fail in branch R (the second failure exceeds the
    // tolerance, so the map fails and items 3 and 4 never start).
    for item in 0..3 {
        assert_eq!(ds.len(), 2, "item {item}");
        now += 10;
        h.apply(now, succeeded_task(ds[0].task, json!(format!("L{item}"))));
        now += 10;
        let last = if item == 0 {
            succeeded_task(ds[1].task, json!(format!("R{item}")))
        } else {
            failed_task(ds[1].task)
        };
        ds = dispatches(&h.apply(now, last));
    }
    assert_eq!(h.exec.status, ExecutionStatus::Failed);
    assert_eq!(
        h.exec.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );

    let s = redrive(&mut h, now + 100);
    // Item 1 resumes inside its Parallel: only branch R runs again.
    let d = only_dispatch(&s);
    assert_eq!((d.state_name.as_str(), d.input.clone()), ("R", json!(1)));
    let mut now = now + 100;
    let mut answers = vec![];
    let mut next = d;
    // Items 1 and 2 rerun only their R branch; items 3 and 4 run both branches.
    loop {
        now += 10;
        let s = h.apply(
            now,
            succeeded_task(
                next.task,
                json!(format!("{}{}", next.state_name, next.input)),
            ),
        );
        answers.push((next.state_name.clone(), next.input.clone()));
        if h.exec.is_finished() {
            break;
        }
        let ds = dispatches(&s);
        if ds.is_empty() {
            panic!("stuck after {answers:?}");
        }
        next = ds[0].clone();
        for extra in &ds[1..] {
            now += 10;
            h.apply(
                now,
                succeeded_task(
                    extra.task,
                    json!(format!("{}{}", extra.state_name, extra.input)),
                ),
            );
            answers.push((extra.state_name.clone(), extra.input.clone()));
        }
    }
    assert_eq!(
        h.exec.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        h.exec.error
    );
    answers.sort_by_key(|(name, item)| (item.as_u64(), name.clone()));
    assert_eq!(
        answers,
        [
            ("R".to_string(), json!(1)),
            ("R".to_string(), json!(2)),
            ("L".to_string(), json!(3)),
            ("R".to_string(), json!(3)),
            ("L".to_string(), json!(4)),
            ("R".to_string(), json!(4)),
        ]
    );
    assert_eq!(
        output(&h.exec),
        json!([
            ["L0", "R0"],
            ["L1", "R1"],
            ["L2", "R2"],
            ["L3", "R3"],
            ["L4", "R4"]
        ])
    );
    assert_dense(&h);
    let (rebuilt, events) = replay(&h.def, info(json!([0, 1, 2, 3, 4]), 7), &h.journal, KEY)
        .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(events, h.history);
    assert!(rebuilt == h.exec);
}
