//! Execution history events, with AWS's names, ids, `previousEventId` and detail fields.
//!
//! Events are kept typed (cheap to build on the hot path) and rendered to the exact JSON shape
//! of `GetExecutionHistory` by [`HistoryEvent::to_aws_json`]: inputs and outputs are JSON
//! *text*, as AWS returns them. Pure: timestamps are given by the interpreter's caller.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// A state type name (`"Pass"`, `"Task"`, …); borrowed on the hot path.
pub type StateType = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    /// Milliseconds since the Unix epoch (simulated time under `stepline run`).
    pub timestamp_ms: i64,
    pub kind: EventKind,
}

/// What happened. State-level variants carry the ASL state type (`"Pass"`, `"Task"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    ExecutionStarted {
        input: Arc<Value>,
        role_arn: String,
    },
    ExecutionSucceeded {
        output: Arc<Value>,
    },
    ExecutionFailed {
        error: Option<String>,
        cause: Option<String>,
    },
    ExecutionAborted {
        error: Option<String>,
        cause: Option<String>,
    },
    ExecutionTimedOut {
        error: Option<String>,
        cause: Option<String>,
    },
    /// `RedriveExecution` restarted the execution; `redrive_count` counts this redrive.
    ExecutionRedriven {
        redrive_count: u32,
    },
    StateEntered {
        state_type: StateType,
        name: Arc<str>,
        input: Arc<Value>,
    },
    StateExited {
        state_type: StateType,
        name: Arc<str>,
        output: Arc<Value>,
        assigned: Option<Map<String, Value>>,
    },
    StateAborted {
        state_type: StateType,
    },
    ActivityScheduled {
        resource: String,
        input: Value,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    ActivityStarted {
        worker_name: String,
    },
    ActivitySucceeded {
        output: Value,
    },
    ActivityFailed {
        error: Option<String>,
        cause: Option<String>,
    },
    ActivityTimedOut {
        error: Option<String>,
        cause: Option<String>,
    },
    ActivityScheduleFailed {
        error: Option<String>,
        cause: Option<String>,
    },
    TaskScheduled {
        resource_type: String,
        resource: String,
        region: String,
        parameters: Value,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    TaskStarted {
        resource_type: String,
        resource: String,
    },
    TaskSucceeded {
        resource_type: String,
        resource: String,
        output: Value,
    },
    TaskFailed {
        resource_type: String,
        resource: String,
        error: Option<String>,
        cause: Option<String>,
    },
    TaskTimedOut {
        resource_type: String,
        resource: String,
        error: Option<String>,
        cause: Option<String>,
    },
    MapStateStarted {
        length: usize,
    },
    MapIteration {
        /// `Started`, `Succeeded`, `Failed` or `Aborted`.
        status: Cow<'static, str>,
        name: Arc<str>,
        index: usize,
    },
    MapRunStarted {
        map_run_arn: String,
    },
    MapRunFailed {
        error: Option<String>,
        cause: Option<String>,
    },
    /// Detail-less events: `MapStateSucceeded`, `ParallelStateStarted`, `MapRunSucceeded`, …
    Plain {
        event_type: String,
    },
    EvaluationFailed {
        error: String,
        cause: String,
        location: Option<String>,
        state: String,
    },
}

impl EventKind {
    /// The AWS event type name (`PassStateEntered`, `ActivitySucceeded`, …).
    pub fn type_name(&self) -> String {
        match self {
            EventKind::ExecutionStarted { .. } => "ExecutionStarted".into(),
            EventKind::ExecutionSucceeded { .. } => "ExecutionSucceeded".into(),
            EventKind::ExecutionFailed { .. } => "ExecutionFailed".into(),
            EventKind::ExecutionAborted { .. } => "ExecutionAborted".into(),
            EventKind::ExecutionTimedOut { .. } => "ExecutionTimedOut".into(),
            EventKind::ExecutionRedriven { .. } => "ExecutionRedriven".into(),
            EventKind::StateEntered { state_type, .. } => format!("{state_type}StateEntered"),
            EventKind::StateExited { state_type, .. } => format!("{state_type}StateExited"),
            EventKind::StateAborted { state_type } => format!("{state_type}StateAborted"),
            EventKind::ActivityScheduled { .. } => "ActivityScheduled".into(),
            EventKind::ActivityStarted { .. } => "ActivityStarted".into(),
            EventKind::ActivitySucceeded { .. } => "ActivitySucceeded".into(),
            EventKind::ActivityFailed { .. } => "ActivityFailed".into(),
            EventKind::ActivityTimedOut { .. } => "ActivityTimedOut".into(),
            EventKind::ActivityScheduleFailed { .. } => "ActivityScheduleFailed".into(),
            EventKind::TaskScheduled { .. } => "TaskScheduled".into(),
            EventKind::TaskStarted { .. } => "TaskStarted".into(),
            EventKind::TaskSucceeded { .. } => "TaskSucceeded".into(),
            EventKind::TaskFailed { .. } => "TaskFailed".into(),
            EventKind::TaskTimedOut { .. } => "TaskTimedOut".into(),
            EventKind::MapStateStarted { .. } => "MapStateStarted".into(),
            EventKind::MapIteration { status, .. } => format!("MapIteration{status}"),
            EventKind::MapRunStarted { .. } => "MapRunStarted".into(),
            EventKind::MapRunFailed { .. } => "MapRunFailed".into(),
            EventKind::Plain { event_type } => event_type.clone(),
            EventKind::EvaluationFailed { .. } => "EvaluationFailed".into(),
        }
    }
}

/// Renders a JSON value as the text AWS puts in history (`input`, `output`, …).
pub fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn error_cause(error: &Option<String>, cause: &Option<String>) -> Value {
    let mut m = Map::new();
    if let Some(c) = cause {
        m.insert("cause".into(), Value::String(c.clone()));
    }
    if let Some(e) = error {
        m.insert("error".into(), Value::String(e.clone()));
    }
    Value::Object(m)
}

fn payload(key: &str, v: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), Value::String(json_text(v)));
    m.insert(format!("{key}Details"), json!({"truncated": false}));
    m
}

impl HistoryEvent {
    /// The event as `GetExecutionHistory` returns it (timestamp as epoch seconds, float).
    pub fn to_aws_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        m.insert("timestamp".into(), json!(self.timestamp_ms as f64 / 1000.0));
        m.insert("type".into(), Value::String(self.kind.type_name()));
        let details: Option<(&str, Value)> = match &self.kind {
            EventKind::ExecutionStarted { input, role_arn } => {
                let mut d = payload("input", input);
                d.insert("roleArn".into(), Value::String(role_arn.clone()));
                Some(("executionStartedEventDetails", Value::Object(d)))
            }
            EventKind::ExecutionSucceeded { output } => Some((
                "executionSucceededEventDetails",
                Value::Object(payload("output", output)),
            )),
            EventKind::ExecutionFailed { error, cause } => {
                Some(("executionFailedEventDetails", error_cause(error, cause)))
            }
            EventKind::ExecutionAborted { error, cause } => {
                Some(("executionAbortedEventDetails", error_cause(error, cause)))
            }
            EventKind::ExecutionTimedOut { error, cause } => {
                Some(("executionTimedOutEventDetails", error_cause(error, cause)))
            }
            EventKind::ExecutionRedriven { redrive_count } => Some((
                "executionRedrivenEventDetails",
                json!({ "redriveCount": redrive_count }),
            )),
            EventKind::StateEntered { name, input, .. } => {
                let mut d = payload("input", input);
                d.insert("name".into(), Value::String(name.to_string()));
                Some(("stateEnteredEventDetails", Value::Object(d)))
            }
            EventKind::StateExited {
                name,
                output,
                assigned,
                ..
            } => {
                let mut d = Map::new();
                if let Some(a) = assigned {
                    let texts: Map<String, Value> = a
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(json_text(v))))
                        .collect();
                    d.insert("assignedVariables".into(), Value::Object(texts));
                    d.insert(
                        "assignedVariablesDetails".into(),
                        json!({"truncated": false}),
                    );
                }
                d.insert("name".into(), Value::String(name.to_string()));
                d.extend(payload("output", output));
                Some(("stateExitedEventDetails", Value::Object(d)))
            }
            EventKind::StateAborted { .. } => None,
            EventKind::ActivityScheduled {
                resource,
                input,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let mut d = Map::new();
                if let Some(h) = heartbeat_seconds {
                    d.insert("heartbeatInSeconds".into(), json!(h));
                }
                d.extend(payload("input", input));
                d.insert("resource".into(), Value::String(resource.clone()));
                if let Some(t) = timeout_seconds {
                    d.insert("timeoutInSeconds".into(), json!(t));
                }
                Some(("activityScheduledEventDetails", Value::Object(d)))
            }
            EventKind::ActivityStarted { worker_name } => Some((
                "activityStartedEventDetails",
                json!({"workerName": worker_name}),
            )),
            EventKind::ActivitySucceeded { output } => Some((
                "activitySucceededEventDetails",
                Value::Object(payload("output", output)),
            )),
            EventKind::ActivityFailed { error, cause } => {
                Some(("activityFailedEventDetails", error_cause(error, cause)))
            }
            EventKind::ActivityTimedOut { error, cause } => {
                Some(("activityTimedOutEventDetails", error_cause(error, cause)))
            }
            EventKind::ActivityScheduleFailed { error, cause } => Some((
                "activityScheduleFailedEventDetails",
                error_cause(error, cause),
            )),
            EventKind::TaskScheduled {
                resource_type,
                resource,
                region,
                parameters,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let mut d = Map::new();
                if let Some(h) = heartbeat_seconds {
                    d.insert("heartbeatInSeconds".into(), json!(h));
                }
                d.insert("parameters".into(), Value::String(json_text(parameters)));
                d.insert("region".into(), Value::String(region.clone()));
                d.insert("resource".into(), Value::String(resource.clone()));
                d.insert("resourceType".into(), Value::String(resource_type.clone()));
                if let Some(t) = timeout_seconds {
                    d.insert("timeoutInSeconds".into(), json!(t));
                }
                Some(("taskScheduledEventDetails", Value::Object(d)))
            }
            EventKind::TaskStarted {
                resource_type,
                resource,
            } => Some((
                "taskStartedEventDetails",
                json!({"resource": resource, "resourceType": resource_type}),
            )),
            EventKind::TaskSucceeded {
                resource_type,
                resource,
                output,
            } => {
                let mut d = payload("output", output);
                d.insert("resource".into(), Value::String(resource.clone()));
                d.insert("resourceType".into(), Value::String(resource_type.clone()));
                Some(("taskSucceededEventDetails", Value::Object(d)))
            }
            EventKind::TaskFailed {
                resource_type,
                resource,
                error,
                cause,
            }
            | EventKind::TaskTimedOut {
                resource_type,
                resource,
                error,
                cause,
            } => {
                let mut d = error_cause(error, cause);
                if let Value::Object(m) = &mut d {
                    m.insert("resource".into(), Value::String(resource.clone()));
                    m.insert("resourceType".into(), Value::String(resource_type.clone()));
                }
                let key = if matches!(self.kind, EventKind::TaskFailed { .. }) {
                    "taskFailedEventDetails"
                } else {
                    "taskTimedOutEventDetails"
                };
                Some((key, d))
            }
            EventKind::MapStateStarted { length } => {
                Some(("mapStateStartedEventDetails", json!({"length": length})))
            }
            EventKind::MapIteration {
                status,
                name,
                index,
            } => {
                let key = match status.as_ref() {
                    "Started" => "mapIterationStartedEventDetails",
                    "Succeeded" => "mapIterationSucceededEventDetails",
                    "Failed" => "mapIterationFailedEventDetails",
                    _ => "mapIterationAbortedEventDetails",
                };
                Some((key, json!({"index": index, "name": &**name})))
            }
            EventKind::MapRunStarted { map_run_arn } => Some((
                "mapRunStartedEventDetails",
                json!({"mapRunArn": map_run_arn}),
            )),
            EventKind::MapRunFailed { error, cause } => {
                Some(("mapRunFailedEventDetails", error_cause(error, cause)))
            }
            EventKind::Plain { .. } => None,
            EventKind::EvaluationFailed {
                error,
                cause,
                location,
                state,
            } => {
                let mut d = Map::new();
                d.insert("cause".into(), Value::String(cause.clone()));
                d.insert("error".into(), Value::String(error.clone()));
                if let Some(l) = location {
                    d.insert("location".into(), Value::String(l.clone()));
                }
                d.insert("state".into(), Value::String(state.clone()));
                Some(("evaluationFailedEventDetails", Value::Object(d)))
            }
        };
        if let Some((k, v)) = details {
            m.insert(k.into(), v);
        }
        Value::Object(m)
    }
}
