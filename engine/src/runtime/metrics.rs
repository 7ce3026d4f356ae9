//! Runtime metrics, served by `stepline server` and `stepline dev` at `/metrics` in the
//! Prometheus text format: executions started, redriven and finished per state machine (and how
//! long the finished ones ran), tasks scheduled, retried and ended per resource (and how long
//! each took from being scheduled), and how long this process waits on its store and broker:
//! each commit request to the store, and each task or cancellation publish until the broker
//! confirmed it.
//!
//! *Invariants*: a step is counted only once its commit landed ([`Metrics::record`] is called
//! from the coordinator's settle), so a step retried after a failed or fenced commit, or an input
//! delivered twice, is counted at most once (a commit that landed but whose reply was lost is
//! not counted: its redelivered input is then stale); counters only grow; the numbers are this
//! process's (sum them over the servers). An execution finishes once per run, so a redriven
//! one adds to the finished counter again. Label values are escaped as the text format
//! requires. The label sets are bounded: at most [`MAX_NAMES`] state machines and as many
//! resources get their own series, later ones are counted under [`OTHER`], and deleting a
//! state machine or an activity through this process drops its series (throwaway state
//! machines must not grow the process or the scrape forever).

use crate::history::{EventKind, HistoryEvent};
use crate::interp::{Command, ExecutionStatus, TaskEnded, TaskOutcome};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Most state machines, and most resources, with series of their own.
pub const MAX_NAMES: usize = 1_000;

/// The label value the state machines or resources beyond [`MAX_NAMES`] are counted under
/// (not a valid state machine name, so it cannot clash with one).
pub const OTHER: &str = "<other>";

/// Upper bounds (seconds) of the duration histograms' buckets (`+Inf` is implied).
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// Upper bounds (seconds) of the store and broker latency histograms: a commit or a confirmed
/// publish takes a fraction of a millisecond when all is well.
const IO_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

const STORE_COMMIT: Family = Family {
    name: "stepline_store_commit_seconds",
    kind: "histogram",
    help: "Commit requests to the store, from sending to the reply (commits sent together in \
           one request count once).",
};

const BROKER_PUBLISH: Family = Family {
    name: "stepline_broker_publish_seconds",
    kind: "histogram",
    help: "Task and cancellation messages published from the outbox, from publishing to the \
           broker's confirmation.",
};

/// What one committed step adds to the metrics (built from the step before its commit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepMetrics {
    /// The execution's state machine (its name).
    pub state_machine: String,
    pub started: bool,
    pub redriven: bool,
    /// The status it finished with and how long it ran (start, or last redrive, to stop), if
    /// the step ended it.
    pub finished: Option<(ExecutionStatus, Option<i64>)>,
    /// Tasks dispatched: resource and attempt (1 for the first try).
    pub scheduled: Vec<(String, u32)>,
    pub ended: Vec<TaskEnded>,
}

impl StepMetrics {
    /// The metrics of a step of an execution of `state_machine_arn` that started (or was last
    /// redriven) at `start_ms` and, if the step ended it, stopped at `stop_ms`: from its
    /// events (a start, a redrive), commands (tasks dispatched, the execution finished) and
    /// ended tasks.
    pub fn of(
        state_machine_arn: &str,
        start_ms: i64,
        stop_ms: Option<i64>,
        events: &[HistoryEvent],
        commands: &[Command],
        ended: Vec<TaskEnded>,
    ) -> StepMetrics {
        let mut m = StepMetrics {
            ended,
            ..StepMetrics::default()
        };
        for e in events {
            match &e.kind {
                EventKind::ExecutionStarted { .. } => m.started = true,
                EventKind::ExecutionRedriven { .. } => m.redriven = true,
                _ => {}
            }
        }
        for c in commands {
            match c {
                Command::DispatchTask(d) => m.scheduled.push((d.resource.clone(), d.attempt)),
                Command::ExecutionFinished { status, .. } => {
                    let ran = stop_ms
                        .filter(|&stop| stop >= start_ms)
                        .map(|stop| stop - start_ms);
                    m.finished = Some((*status, ran));
                }
                _ => {}
            }
        }
        if m.started || m.redriven || m.finished.is_some() {
            // Only steps that start or end an execution need its name (most steps do neither).
            m.state_machine = super::arn_name(state_machine_arn).to_string();
        }
        m
    }

    /// True when the step adds nothing.
    pub fn is_empty(&self) -> bool {
        !self.started
            && !self.redriven
            && self.finished.is_none()
            && self.scheduled.is_empty()
            && self.ended.is_empty()
    }
}

/// One metric family: name, type and help line.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "counter",
        help,
    }
}

/// What one kind of subject's series are called: executions per state machine, or tasks per
/// resource. Both have the same shape ([`Series`]).
struct Subject {
    /// The label naming the subject.
    label: &'static str,
    /// Runs begun: executions started, tasks scheduled.
    begun: Family,
    /// Runs begun again: executions redriven, tasks retried.
    again: Family,
    /// Runs ended, by how (`end_label`): executions finished, tasks ended.
    ended: Family,
    /// The histogram of how long the ended runs took.
    duration: Family,
    end_label: &'static str,
    /// The label value of each end, in the order of [`Series::ended`].
    end_name: fn(usize) -> &'static str,
}

const EXECUTIONS: Subject = Subject {
    label: "state_machine",
    begun: counter(
        "stepline_executions_started_total",
        "Executions started, per state machine.",
    ),
    again: counter(
        "stepline_executions_redriven_total",
        "Executions redriven, per state machine.",
    ),
    ended: counter(
        "stepline_executions_finished_total",
        "Executions finished, per state machine and status.",
    ),
    duration: Family {
        name: "stepline_execution_duration_seconds",
        kind: "histogram",
        help:
            "Start (or last redrive) to stop of finished executions, per state machine and status.",
    },
    end_label: "status",
    end_name: |i| STATUSES[i].as_str(),
};

const TASKS: Subject = Subject {
    label: "resource",
    begun: counter(
        "stepline_tasks_scheduled_total",
        "Tasks scheduled (first tries and retries), per resource.",
    ),
    again: counter(
        "stepline_task_retries_total",
        "Tasks scheduled again by a Retry, per resource.",
    ),
    ended: counter(
        "stepline_tasks_ended_total",
        "Tasks ended, per resource and outcome (succeeded, failed, timed_out, aborted).",
    ),
    duration: Family {
        name: "stepline_task_duration_seconds",
        kind: "histogram",
        help: "Scheduled to ended, per resource and outcome.",
    },
    end_label: "outcome",
    end_name: |i| OUTCOMES[i].as_str(),
};

/// Observations in buckets of `bounds` (seconds); run durations use [`BUCKETS`].
#[derive(Debug, Clone)]
struct Histogram<const N: usize = 15> {
    bounds: &'static [f64; N],
    /// Per bucket, the observations at most its bound (not cumulative).
    buckets: [u64; N],
    count: u64,
    sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: &BUCKETS,
            buckets: [0; BUCKETS.len()],
            count: 0,
            sum: 0.0,
        }
    }
}

impl Histogram {
    fn observe(&mut self, ms: i64) {
        let seconds = ms.max(0) as f64 / 1000.0;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// A histogram of [`IO_BUCKETS`] kept in atomics: observed on every commit and publish, from
/// any thread, without a lock.
#[derive(Debug, Default)]
struct WaitHistogram {
    /// Per bucket of [`IO_BUCKETS`], then one for longer waits (not cumulative).
    buckets: [AtomicU64; IO_BUCKETS.len() + 1],
    nanos: AtomicU64,
}

impl WaitHistogram {
    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let i = IO_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(IO_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The numbers now; the count is the buckets' total, so the rendered buckets stay
    /// cumulative up to `+Inf` whatever is observed meanwhile.
    fn snapshot(&self) -> Histogram<{ IO_BUCKETS.len() }> {
        let counts: [u64; IO_BUCKETS.len() + 1] =
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        Histogram {
            bounds: &IO_BUCKETS,
            buckets: std::array::from_fn(|i| counts[i]),
            count: counts.iter().sum(),
            sum: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Totals of [`Metrics::observe_commit`] and [`Metrics::observe_publish`]: how many, and their
/// summed seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WaitTotals {
    pub commits: u64,
    pub commit_seconds: f64,
    pub publishes: u64,
    pub publish_seconds: f64,
}

/// The statuses a finished execution can have, in the order of [`Series::ended`].
const STATUSES: [ExecutionStatus; 4] = [
    ExecutionStatus::Succeeded,
    ExecutionStatus::Failed,
    ExecutionStatus::TimedOut,
    ExecutionStatus::Aborted,
];

/// The outcomes of a task, in the order of [`Series::ended`].
const OUTCOMES: [TaskOutcome; 4] = [
    TaskOutcome::Succeeded,
    TaskOutcome::Failed,
    TaskOutcome::TimedOut,
    TaskOutcome::Aborted,
];

/// The numbers of one state machine or one resource (see [`Subject`]).
#[derive(Default, Clone)]
struct Series {
    begun: u64,
    again: u64,
    /// Per end (status or outcome): how many runs ended so, and how long they took.
    ended: [u64; 4],
    duration: [Histogram; 4],
}

impl Series {
    fn end(&mut self, end: usize, took_ms: Option<i64>) {
        self.ended[end] += 1;
        if let Some(ms) = took_ms {
            self.duration[end].observe(ms);
        }
    }
}

/// Keyed by name, so a known key is found without allocating.
#[derive(Default, Clone)]
struct Inner {
    state_machines: BTreeMap<String, Series>,
    resources: BTreeMap<String, Series>,
}

/// Applies `f` to `name`'s entry, created on first use (a known name costs no allocation);
/// once `limit` names have entries, a new one is counted under [`OTHER`].
fn update(
    map: &mut BTreeMap<String, Series>,
    limit: usize,
    name: &str,
    f: impl FnOnce(&mut Series),
) {
    if let Some(v) = map.get_mut(name) {
        f(v);
        return;
    }
    let named = map.len() - usize::from(map.contains_key(OTHER));
    let name = if named >= limit { OTHER } else { name };
    if let Some(v) = map.get_mut(name) {
        f(v);
        return;
    }
    let mut v = Series::default();
    f(&mut v);
    map.insert(name.to_string(), v);
}

/// A process's runtime metrics (see the module doc).
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Observed around every commit request and every publish.
    commits: WaitHistogram,
    publishes: WaitHistogram,
    /// Most state machines (and most resources) with series of their own.
    limit: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_limit(MAX_NAMES)
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Metrics giving at most `limit` state machines (and `limit` resources) series of their
    /// own (beyond, [`OTHER`]); one more series may be [`OTHER`] itself.
    pub fn with_limit(limit: usize) -> Metrics {
        Metrics {
            inner: Mutex::default(),
            commits: WaitHistogram::default(),
            publishes: WaitHistogram::default(),
            limit: limit.max(1),
        }
    }

    /// Drops the series of a deleted state machine (by name).
    pub fn forget_state_machine(&self, name: &str) {
        self.lock().state_machines.remove(name);
    }

    /// Drops the series of a deleted resource (an activity's ARN).
    pub fn forget_resource(&self, resource: &str) {
        self.lock().resources.remove(resource);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one commit request to the store that took `took` (landed or not).
    pub fn observe_commit(&self, took: Duration) {
        self.commits.observe(took);
    }

    /// Adds one outbox message published and confirmed (or refused) after `took`.
    pub fn observe_publish(&self, took: Duration) {
        self.publishes.observe(took);
    }

    /// The totals of the commit and publish observations so far.
    pub fn wait_totals(&self) -> WaitTotals {
        let (commits, publishes) = (self.commits.snapshot(), self.publishes.snapshot());
        WaitTotals {
            commits: commits.count,
            commit_seconds: commits.sum,
            publishes: publishes.count,
            publish_seconds: publishes.sum,
        }
    }

    /// Adds a committed step.
    pub fn record(&self, step: &StepMetrics) {
        if step.is_empty() {
            return;
        }
        let limit = self.limit;
        let mut inner = self.lock();
        let inner = &mut *inner;
        if step.started || step.redriven || step.finished.is_some() {
            update(
                &mut inner.state_machines,
                limit,
                &step.state_machine,
                |sm| {
                    sm.begun += u64::from(step.started);
                    sm.again += u64::from(step.redriven);
                    if let Some((status, ran)) = step.finished {
                        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
                            sm.end(i, ran);
                        }
                    }
                },
            );
        }
        for (resource, attempt) in &step.scheduled {
            update(&mut inner.resources, limit, resource, |r| {
                r.begun += 1;
                r.again += u64::from(*attempt > 1);
            });
        }
        for ended in &step.ended {
            if let Some(i) = OUTCOMES.iter().position(|o| *o == ended.outcome) {
                update(&mut inner.resources, limit, &ended.resource, |r| {
                    r.end(i, ended.after_ms)
                });
            }
        }
    }

    /// Every family in the Prometheus text format (families without samples yet still get
    /// their HELP and TYPE lines, so the names are discoverable).
    pub fn render(&self) -> String {
        // A copy of the numbers, so commits recording their steps wait for the copy only,
        // not for the formatting.
        let inner = self.lock().clone();
        let mut out = String::new();
        render_subject(&mut out, &EXECUTIONS, &inner.state_machines);
        render_subject(&mut out, &TASKS, &inner.resources);
        for (family, h) in [
            (STORE_COMMIT, &self.commits),
            (BROKER_PUBLISH, &self.publishes),
        ] {
            header(&mut out, family.name, family.kind, family.help);
            histogram(&mut out, family.name, &Labels::new(), &h.snapshot());
        }
        out
    }
}

/// The four families of one kind of subject.
fn render_subject(out: &mut String, subject: &Subject, series: &BTreeMap<String, Series>) {
    let named = |name: &str| vec![(subject.label, name.to_string())];
    let ended = |name: &str, end: usize| {
        vec![
            (subject.label, name.to_string()),
            (subject.end_label, (subject.end_name)(end).to_string()),
        ]
    };
    let counts = |out: &mut String, family: &Family, count: fn(&Series) -> u64| {
        header(out, family.name, family.kind, family.help);
        for (name, s) in series.iter().filter(|(_, s)| count(s) > 0) {
            sample(out, family.name, "", &named(name), None, count(s));
        }
    };
    counts(out, &subject.begun, |s| s.begun);
    counts(out, &subject.again, |s| s.again);
    let f = &subject.ended;
    header(out, f.name, f.kind, f.help);
    for (name, s) in series {
        for (end, n) in s.ended.iter().enumerate().filter(|(_, n)| **n > 0) {
            sample(out, f.name, "", &ended(name, end), None, *n);
        }
    }
    let f = &subject.duration;
    header(out, f.name, f.kind, f.help);
    for (name, s) in series {
        for (end, h) in s.duration.iter().enumerate().filter(|(_, h)| h.count > 0) {
            histogram(out, f.name, &ended(name, end), h);
        }
    }
}

/// Label names and values of a sample, in the family's order.
pub type Labels = Vec<(&'static str, String)>;

/// A histogram's cumulative buckets, sum and count.
fn histogram<const N: usize>(out: &mut String, name: &str, labels: &Labels, h: &Histogram<N>) {
    let mut cumulative = 0;
    for (bound, n) in h.bounds.iter().zip(h.buckets) {
        cumulative += n;
        let le = ("le", bound.to_string());
        sample(out, name, "_bucket", labels, Some(&le), cumulative);
    }
    let le = ("le", "+Inf".to_string());
    sample(out, name, "_bucket", labels, Some(&le), h.count);
    let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), h.sum);
    sample(out, name, "_count", labels, None, h.count);
}

/// The HELP and TYPE lines of a family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family of one sample without labels (`kind`: `counter` or `gauge`).
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A family of samples, each with its labels (`kind`: `counter` or `gauge`).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(Labels, u64)]) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        sample(out, name, "", labels, None, *value);
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &Labels,
    extra: Option<&(&'static str, String)>,
    value: u64,
) {
    let _ = writeln!(out, "{name}{suffix}{} {value}", label_text(labels, extra));
}

/// `{a="x",b="y"}` (empty without labels), values escaped as the text format requires.
fn label_text(labels: &Labels, extra: Option<&(&'static str, String)>) -> String {
    let all: Vec<String> = labels
        .iter()
        .chain(extra)
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_publish_waits_are_histograms_in_fractions_of_a_millisecond() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("# TYPE stepline_store_commit_seconds histogram"));
        assert!(
            text.contains("stepline_broker_publish_seconds_count 0"),
            "{text}"
        );
        m.observe_commit(Duration::from_micros(180));
        m.observe_commit(Duration::from_micros(700));
        m.observe_commit(Duration::from_secs(9));
        m.observe_publish(Duration::from_micros(90));
        let text = m.render();
        let commit = lines(&text, "stepline_store_commit_seconds_bucket");
        assert_eq!(commit.len(), IO_BUCKETS.len() + 1);
        for line in [
            "stepline_store_commit_seconds_bucket{le=\"0.0001\"} 0",
            "stepline_store_commit_seconds_bucket{le=\"0.00025\"} 1",
            "stepline_store_commit_seconds_bucket{le=\"0.001\"} 2",
            "stepline_store_commit_seconds_bucket{le=\"5\"} 2",
            "stepline_store_commit_seconds_bucket{le=\"+Inf\"} 3",
            "stepline_store_commit_seconds_count 3",
            "stepline_broker_publish_seconds_bucket{le=\"0.0001\"} 1",
            "stepline_broker_publish_seconds_count 1",
        ] {
            assert!(
                commit.contains(&line) || text.lines().any(|l| l == line),
                "{line}\n{text}"
            );
        }
        let totals = m.wait_totals();
        assert_eq!((totals.commits, totals.publishes), (3, 1));
        assert!((totals.commit_seconds - 9.00088).abs() < 1e-9);
        assert!((totals.publish_seconds - 0.00009).abs() < 1e-12);
    }

    fn ended(resource: &str, outcome: TaskOutcome, after_ms: Option<i64>) -> TaskEnded {
        TaskEnded {
            resource: resource.into(),
            outcome,
            after_ms,
        }
    }

    fn step(sm: &str) -> StepMetrics {
        StepMetrics {
            state_machine: sm.into(),
            ..StepMetrics::default()
        }
    }

    /// The sample lines of `text` that start with `prefix`.
    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn counters_add_up_per_label_set() {
        let m = Metrics::new();
        let mut s = step("orders");
        s.started = true;
        s.scheduled = vec![
            ("arn:a".into(), 1),
            ("arn:a".into(), 2),
            ("arn:b".into(), 1),
        ];
        m.record(&s);
        m.record(&s);
        let text = m.render();
        assert_eq!(
            lines(&text, "stepline_executions_started_total{"),
            ["stepline_executions_started_total{state_machine=\"orders\"} 2"]
        );
        assert_eq!(
            lines(&text, "stepline_tasks_scheduled_total{"),
            [
                "stepline_tasks_scheduled_total{resource=\"arn:a\"} 4",
                "stepline_tasks_scheduled_total{resource=\"arn:b\"} 2"
            ]
        );
        assert_eq!(
            lines(&text, "stepline_task_retries_total{"),
            ["stepline_task_retries_total{resource=\"arn:a\"} 2"]
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        let mut s = step("orders");
        s.ended = vec![
            ended("arn:a", TaskOutcome::Failed, Some(3)),
            ended("arn:a", TaskOutcome::Failed, Some(200)),
            ended("arn:a", TaskOutcome::Failed, Some(7_200_000)),
            ended("arn:a", TaskOutcome::Failed, None),
        ];
        m.record(&s);
        let text = m.render();
        let bucket = |le: &str| {
            format!("stepline_task_duration_seconds_bucket{{resource=\"arn:a\",outcome=\"failed\",le=\"{le}\"}}")
        };
        let value = |le: &str| -> u64 {
            let prefix = bucket(le);
            let line = lines(&text, &prefix);
            assert_eq!(line.len(), 1, "{prefix} in\n{text}");
            line[0][prefix.len()..].trim().parse().unwrap()
        };
        assert_eq!(value("0.005"), 1);
        assert_eq!(value("0.1"), 1);
        assert_eq!(value("0.25"), 2);
        assert_eq!(value("3600"), 2);
        assert_eq!(value("+Inf"), 3, "the hour-long one is only under +Inf");
        assert_eq!(
            lines(&text, "stepline_task_duration_seconds_count{"),
            ["stepline_task_duration_seconds_count{resource=\"arn:a\",outcome=\"failed\"} 3"]
        );
        assert_eq!(
            lines(&text, "stepline_task_duration_seconds_sum{"),
            ["stepline_task_duration_seconds_sum{resource=\"arn:a\",outcome=\"failed\"} 7200.203"]
        );
        // The task without a scheduled time is still counted as ended.
        assert_eq!(
            lines(&text, "stepline_tasks_ended_total{"),
            ["stepline_tasks_ended_total{resource=\"arn:a\",outcome=\"failed\"} 4"]
        );
    }

    #[test]
    fn label_sets_are_bounded_and_deleted_names_forgotten() {
        let m = Metrics::with_limit(2);
        for name in ["a", "b", "c", "d"] {
            let mut s = step(name);
            s.started = true;
            s.scheduled = vec![(format!("arn:{name}"), 1)];
            m.record(&s);
        }
        let text = m.render();
        assert_eq!(
            lines(&text, "stepline_executions_started_total{"),
            [
                "stepline_executions_started_total{state_machine=\"<other>\"} 2",
                "stepline_executions_started_total{state_machine=\"a\"} 1",
                "stepline_executions_started_total{state_machine=\"b\"} 1",
            ]
        );
        assert_eq!(lines(&text, "stepline_tasks_scheduled_total{").len(), 3);
        m.forget_state_machine("a");
        m.forget_resource("arn:a");
        let text = m.render();
        assert!(!text.contains("state_machine=\"a\""), "{text}");
        assert!(!text.contains("resource=\"arn:a\""), "{text}");
        // The room it left goes to the next new name.
        let mut s = step("e");
        s.started = true;
        m.record(&s);
        assert!(m
            .render()
            .contains("stepline_executions_started_total{state_machine=\"e\"} 1"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let mut s = step("a\"b\\c\nd");
        s.started = true;
        m.record(&s);
        assert_eq!(
            lines(&m.render(), "stepline_executions_started_total{"),
            ["stepline_executions_started_total{state_machine=\"a\\\"b\\\\c\\nd\"} 1"]
        );
    }

    #[test]
    fn every_family_has_help_and_type_even_when_empty() {
        let text = Metrics::new().render();
        assert_eq!(lines(&text, "# TYPE ").len(), 10, "{text}");
        assert_eq!(lines(&text, "# HELP ").len(), 10);
        // Only the two unlabelled histograms have samples already (all zero).
        let waits = [
            "stepline_store_commit_seconds",
            "stepline_broker_publish_seconds",
        ];
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(waits.iter().any(|w| line.starts_with(w)), "{line}");
            assert!(line.ends_with(" 0"), "{line}");
        }
    }

    #[test]
    fn a_step_is_read_from_its_events_and_commands() {
        use crate::history::HistoryEvent;
        use std::sync::Arc;
        let event = |id: u64, timestamp_ms: i64, kind: EventKind| HistoryEvent {
            id,
            previous_event_id: id.saturating_sub(1),
            timestamp_ms,
            kind,
        };
        let events = [
            event(
                1,
                1_000,
                EventKind::ExecutionStarted {
                    input: Arc::new(serde_json::json!({})),
                    role_arn: "r".into(),
                },
            ),
            event(
                2,
                3_500,
                EventKind::ExecutionFailed {
                    error: None,
                    cause: None,
                },
            ),
        ];
        let finished = [Command::ExecutionFinished {
            status: ExecutionStatus::Failed,
            output: None,
            error: None,
            cause: None,
        }];
        let s = StepMetrics::of(
            "arn:aws:states:us-east-1:1:stateMachine:orders",
            1_000,
            Some(3_500),
            &events,
            &finished,
            vec![ended("arn:x", TaskOutcome::Aborted, Some(10))],
        );
        assert_eq!(s.state_machine, "orders");
        assert!(s.started && !s.redriven);
        assert_eq!(s.finished, Some((ExecutionStatus::Failed, Some(2_500))));
        assert!(!s.is_empty());
        assert!(StepMetrics::of("arn:sm", 0, None, &[], &[], Vec::new()).is_empty());

        // A redrive is counted as such, not as a start.
        let redriven = [event(
            9,
            5_000,
            EventKind::ExecutionRedriven { redrive_count: 1 },
        )];
        let s = StepMetrics::of("arn:sm:orders", 4_000, None, &redriven, &[], Vec::new());
        assert!(s.redriven && !s.started && s.finished.is_none());
        assert_eq!(s.state_machine, "orders");
    }
}
