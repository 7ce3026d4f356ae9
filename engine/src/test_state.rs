//! `TestState`: runs one state of a definition on a given input, once, and reports its output,
//! error, next state and (at `DEBUG`/`TRACE`) every data-flow stage, as AWS's TestState API does.
//!
//! The state runs in the real interpreter ([`crate::interp`]) in a probe mode: the state is
//! entered once; a Task (or a Parallel/Map state) takes its result or error from the request's
//! `mock` instead of being dispatched; a Wait returns at once; a matching Retrier that still has
//! attempts ends the run as `RETRIABLE`, a matching Catcher as `CAUGHT_ERROR` with the Catcher's
//! `Next`. A single state is validated by wrapping it in a state machine whose other states are
//! stubs named after its transition targets. Request and response are serde structs with AWS's
//! field names, so the HTTP layer (de)serializes them directly. Pure: the time and the seed come
//! in a [`TestStateEnv`].

use crate::asl::validate::{invalid_definition_message, validate_text};
use crate::asl::{escape_pointer, Definition, StateKind, StateMachineType};
use crate::interp::{probe_state, ExecutionInfo, Fault, Probe, ProbeOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The `TestState` request, with AWS's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateRequest {
    /// JSON text of one state, or of a whole state machine when `state_name` is given.
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// JSON text of the state's input (`{}` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection_level: Option<InspectionLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_secrets: Option<bool>,
    /// JSON text of an object: the workflow variables visible to the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<String>,
    /// The state of `definition` (a full state machine) to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockInput>,
    /// JSON text of an object laid over the generated context object (`$$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_configuration: Option<TestStateConfiguration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InspectionLevel {
    #[default]
    Info,
    Debug,
    /// HTTP request/response tracing; Stepline has no HTTP Task, so this equals `Debug`.
    Trace,
}

/// `mock`: the result or the error the tested Task (or Parallel/Map state) returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MockInput {
    /// JSON text of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_output: Option<MockErrorOutput>,
    /// `STRICT | PRESENT | NONE`: AWS checks a mocked result against the service API's shape.
    /// Stepline does not know those shapes and accepts any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_validation_mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MockErrorOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `stateConfiguration`. Only `retrierRetryCount` changes how Stepline runs the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateConfiguration {
    /// Retries already made: a Retrier is exhausted when this reaches its `MaxAttempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrier_retry_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_caused_by_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_failure_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_item_reader_data: Option<String>,
}

/// The `TestState` response, with AWS's field names. Payloads are JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection_data: Option<InspectionData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_state: Option<String>,
    pub status: TestExecutionStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestExecutionStatus {
    Succeeded,
    Failed,
    /// A Retrier matched the error and still has attempts.
    Retriable,
    /// A Catcher matched the error; `nextState` is its `Next`.
    CaughtError,
}

/// The data-flow stages (JSON text), returned at `DEBUG` and `TRACE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// JSONata: the evaluated `Arguments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_input_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_parameters: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_result_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_result_path: Option<String>,
    /// The variables after the state, including those it assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<InspectionErrorDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionErrorDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_interval_seconds: Option<u64>,
}

/// The AWS error codes `TestState` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStateErrorCode {
    InvalidDefinition,
    InvalidExecutionInput,
    ValidationException,
    /// A broken interpreter invariant (a bug), never a property of the request.
    InternalFailure,
}

impl TestStateErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            TestStateErrorCode::InvalidDefinition => "InvalidDefinition",
            TestStateErrorCode::InvalidExecutionInput => "InvalidExecutionInput",
            TestStateErrorCode::ValidationException => "ValidationException",
            TestStateErrorCode::InternalFailure => "InternalFailure",
        }
    }
}

/// A rejected request: an AWS error code and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", .code.as_str())]
pub struct TestStateError {
    pub code: TestStateErrorCode,
    pub message: String,
}

impl TestStateError {
    fn new(code: TestStateErrorCode, message: impl Into<String>) -> TestStateError {
        TestStateError {
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> TestStateError {
        TestStateError::new(TestStateErrorCode::ValidationException, message)
    }

    fn definition(message: impl Into<String>) -> TestStateError {
        TestStateError::new(TestStateErrorCode::InvalidDefinition, message)
    }
}

/// What the caller knows and the pure function must not invent: the time (the context
/// object's `EnteredTime`/`StartTime`), the seed for random draws, and the account/region
/// the synthetic execution ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStateEnv {
    pub now_ms: i64,
    pub seed: u64,
    pub account: String,
    pub region: String,
}

impl Default for TestStateEnv {
    fn default() -> Self {
        TestStateEnv {
            now_ms: 0,
            seed: 0,
            account: "111111111111".into(),
            region: "us-east-1".into(),
        }
    }
}

/// The name a single tested state runs under (its `$$.State.Name`).
pub const SINGLE_STATE_NAME: &str = "StateName";

/// [`test_state_with`] at time 0 with seed 0 (deterministic; for tests and tools).
pub fn test_state(req: &TestStateRequest) -> Result<TestStateResponse, TestStateError> {
    test_state_with(req, &TestStateEnv::default())
}

/// Runs `TestState`. `Err` is a rejected request (AWS error code + message); an ASL failure of
/// the state is a successful response with status `FAILED`.
pub fn test_state_with(
    req: &TestStateRequest,
    env: &TestStateEnv,
) -> Result<TestStateResponse, TestStateError> {
    let (def, machine, state) = load_definition(req)?;
    let st = def.state(machine, state);
    let mock = check_mock(req, st)?;
    let input = parse_input(req.input.as_deref())?;
    let vars = parse_object(req.variables.as_deref(), "variables")?;
    let context = match req.context.as_deref() {
        Some(text) => Some(Value::Object(parse_object(Some(text), "context")?)),
        None => None,
    };
    let probe = Probe {
        mock,
        retry_count: req
            .state_configuration
            .as_ref()
            .and_then(|c| c.retrier_retry_count)
            .unwrap_or(0),
        context,
        ..Probe::default()
    };
    let info = ExecutionInfo {
        execution_arn: format!(
            "arn:aws:states:{}:{}:execution:TestStateMachine:TestStateExecution",
            env.region, env.account
        ),
        execution_name: "TestStateExecution".into(),
        state_machine_arn: format!(
            "arn:aws:states:{}:{}:stateMachine:TestStateMachine",
            env.region, env.account
        ),
        state_machine_name: "TestStateMachine".into(),
        role_arn: req.role_arn.clone().unwrap_or_else(|| {
            format!("arn:aws:iam::{}:role/stepline-test-state-role", env.account)
        }),
        region: env.region.clone(),
        account: env.account.clone(),
        input: input.clone(),
        start_ms: env.now_ms,
        redrive_count: 0,
        express: false,
        seed: env.seed,
    };
    let probe = probe_state(
        &def,
        info,
        machine,
        state,
        input.clone(),
        vars.clone(),
        env.now_ms,
        probe,
    )
    .map_err(|e| TestStateError::new(TestStateErrorCode::InternalFailure, e.to_string()))?;
    let state_name = |i: usize| def.machines[machine].states[i].name.to_string();
    let mut details = InspectionErrorDetails::default();
    let mut succeeded = false;
    let mut resp = match probe.outcome.clone() {
        Some(ProbeOutcome::Exited { output, next }) => {
            succeeded = true;
            let mut r = response(TestExecutionStatus::Succeeded);
            r.output = Some(text(&output));
            r.next_state = next.map(state_name);
            if let Some((index, fault)) = &probe.caught {
                r.status = TestExecutionStatus::CaughtError;
                set_fault(&mut r, fault);
                details.catch_index = Some(*index as u32);
            }
            r
        }
        Some(ProbeOutcome::Failed(fault)) => {
            let mut r = response(TestExecutionStatus::Failed);
            set_fault(&mut r, &fault);
            r
        }
        Some(ProbeOutcome::Retriable {
            fault,
            index,
            backoff_seconds,
        }) => {
            let mut r = response(TestExecutionStatus::Retriable);
            set_fault(&mut r, &fault);
            details.retry_index = Some(index as u32);
            details.retry_backoff_interval_seconds = Some(backoff_seconds.max(0.0) as u64);
            r
        }
        None => {
            return Err(TestStateError::new(
                TestStateErrorCode::InternalFailure,
                "the state ended without an outcome",
            ))
        }
    };
    let level = req.inspection_level.unwrap_or_default();
    if level != InspectionLevel::Info {
        let jsonata = st.query_language == crate::asl::QueryLanguage::JSONata;
        let mut data = InspectionData {
            input: Some(text(&input)),
            ..InspectionData::default()
        };
        if jsonata {
            if matches!(st.kind, StateKind::Task(_) | StateKind::Parallel { .. }) {
                data.after_arguments = probe.after_parameters.as_ref().map(text);
            }
            data.result = probe.result.as_ref().map(text);
        } else {
            data.after_input_path = probe.after_input_path.as_ref().map(text);
            match &st.kind {
                StateKind::Pass { .. } | StateKind::Task(_) | StateKind::Parallel { .. } => {
                    data.after_parameters = probe.after_parameters.as_ref().map(text);
                    data.result = probe.result.as_ref().map(text);
                    data.after_result_selector = probe.after_result_selector.as_ref().map(text);
                    data.after_result_path = probe.after_result_path.as_ref().map(text);
                }
                StateKind::Map(_) => {
                    data.result = probe.result.as_ref().map(text);
                    data.after_result_selector = probe.after_result_selector.as_ref().map(text);
                    data.after_result_path = probe.after_result_path.as_ref().map(text);
                }
                _ => {
                    if data.after_input_path.is_none() {
                        data.after_input_path = Some(text(&input));
                    }
                }
            }
        }
        let mut after = vars;
        if succeeded {
            if let Some(a) = &probe.assigned {
                after.extend(a.clone());
            }
        }
        if !after.is_empty() {
            data.variables = Some(text(&Value::Object(after)));
        }
        if details != InspectionErrorDetails::default() {
            data.error_details = Some(details);
        }
        resp.inspection_data = Some(data);
    }
    Ok(resp)
}

fn response(status: TestExecutionStatus) -> TestStateResponse {
    TestStateResponse {
        output: None,
        error: None,
        cause: None,
        inspection_data: None,
        next_state: None,
        status,
    }
}

fn set_fault(r: &mut TestStateResponse, f: &Fault) {
    r.error = f.error.clone();
    r.cause = f.cause.clone();
}

fn text(v: &Value) -> String {
    crate::history::json_text(v)
}

/// Validates the definition and finds the tested state: `(definition, machine, state)`.
fn load_definition(req: &TestStateRequest) -> Result<(Definition, usize, usize), TestStateError> {
    let value: Value = match serde_json::from_str(&req.definition) {
        Ok(v) => v,
        Err(_) => {
            let diags = validate_text(&req.definition, StateMachineType::Standard);
            return Err(TestStateError::definition(invalid_definition_message(
                &diags,
            )));
        }
    };
    if let Some(name) = &req.state_name {
        let def = Definition::parse(&value, StateMachineType::Standard)
            .map_err(|e| TestStateError::definition(e.to_string()))?;
        let found = def
            .machines
            .iter()
            .enumerate()
            .find_map(|(m, machine)| machine.index.get(name.as_str()).map(|&s| (m, s)));
        return match found {
            Some((m, s)) => Ok((def, m, s)),
            None => Err(TestStateError::validation("State not found in definition")),
        };
    }
    let Value::Object(state) = &value else {
        return Err(TestStateError::definition(
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Definition must be a valid JSON object at null'",
        ));
    };
    // One state, wrapped in a machine whose other states stand in for its transition targets.
    let mut states = Map::new();
    states.insert(SINGLE_STATE_NAME.into(), value.clone());
    for target in targets(state) {
        if target != SINGLE_STATE_NAME && !states.contains_key(&target) {
            states.insert(target, json!({"Type": "Succeed"}));
        }
    }
    let wrapper = json!({"StartAt": SINGLE_STATE_NAME, "States": states});
    match Definition::parse(&wrapper, StateMachineType::Standard) {
        Ok(def) => {
            let idx = def.machines[0]
                .index
                .get(SINGLE_STATE_NAME)
                .copied()
                .ok_or_else(|| TestStateError::definition("the state is missing"))?;
            Ok((def, 0, idx))
        }
        Err(e) => {
            // Report locations inside the state, not inside the wrapper.
            let prefix = format!("/States/{}", escape_pointer(SINGLE_STATE_NAME));
            let diags: Vec<_> =
                e.0.into_iter()
                    .map(|mut d| {
                        if let Some(l) = &d.location {
                            if let Some(rest) = l.strip_prefix(&prefix) {
                                d.location = Some(if rest.is_empty() {
                                    "/".into()
                                } else {
                                    rest.to_string()
                                });
                            }
                        }
                        d
                    })
                    .collect();
            Err(TestStateError::definition(invalid_definition_message(
                &diags,
            )))
        }
    }
}

/// The state names a single state can transition to.
fn targets(state: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            out.push(s.clone());
        }
    };
    push(state.get("Next"));
    push(state.get("Default"));
    for list in ["Choices", "Catch"] {
        if let Some(Value::Array(items)) = state.get(list) {
            for item in items {
                push(item.get("Next"));
            }
        }
    }
    out
}

/// Checks the mock against the state; returns what the interpreter should answer with.
fn check_mock(
    req: &TestStateRequest,
    st: &crate::asl::State,
) -> Result<Option<Result<Value, Fault>>, TestStateError> {
    let needs_mock = matches!(
        st.kind,
        StateKind::Task(_) | StateKind::Parallel { .. } | StateKind::Map(_)
    );
    let Some(mock) = &req.mock else {
        return match &st.kind {
            StateKind::Parallel { .. } | StateKind::Map(_) => Err(TestStateError::definition(
                "TestState API does not support Map or Parallel states. Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]",
            )),
            StateKind::Task(_) if req.role_arn.is_none() => Err(TestStateError::validation(
                "RoleArn must be specified when testing a Task state",
            )),
            StateKind::Task(_) => Err(TestStateError::validation(
                "Stepline's TestState does not invoke resources: specify a mock (result or errorOutput) to test a Task state",
            )),
            _ => Ok(None),
        };
    };
    if matches!(
        st.kind,
        StateKind::Pass { .. } | StateKind::Fail(_) | StateKind::Succeed
    ) {
        return Err(TestStateError::validation(format!(
            "State type '{}' is not supported when a mock is specified",
            st.kind.type_name()
        )));
    }
    if req.reveal_secrets == Some(true) {
        return Err(TestStateError::validation(
            "TestState does not support RevealSecrets when a mock is specified.",
        ));
    }
    let answer = match (&mock.result, &mock.error_output) {
        (Some(_), Some(_)) => {
            return Err(TestStateError::validation(
                "A test mock should have only one of the following fields: [result, errorOutput].",
            ))
        }
        (None, None) => {
            return Err(TestStateError::validation(
                "A test mock should have one of the following fields: [result, errorOutput].",
            ))
        }
        (Some(text), None) => {
            let v: Value = serde_json::from_str(text)
                .map_err(|_| TestStateError::validation("Mocked result must be valid JSON"))?;
            match &st.kind {
                StateKind::Map(spec) if spec.result_writer.is_some() && !v.is_object() => {
                    return Err(TestStateError::validation(
                        "Mocked result must be a JSON object.",
                    ))
                }
                StateKind::Map(spec) if spec.result_writer.is_none() && !v.is_array() => {
                    return Err(TestStateError::validation("Mocked result must be an array."))
                }
                StateKind::Parallel { branches } => match v.as_array() {
                    None => {
                        return Err(TestStateError::validation("Mocked result must be an array."))
                    }
                    Some(a) if a.len() != branches.len() => {
                        return Err(TestStateError::validation(format!(
                            "Mocked result must be an array with one element per branch ({} branches, {} elements).",
                            branches.len(),
                            a.len()
                        )))
                    }
                    Some(_) => {}
                },
                _ => {}
            }
            Ok(v)
        }
        (None, Some(e)) => Err(Fault::new(e.error.clone(), e.cause.clone())),
    };
    // Choice and Wait states have nothing to mock: the mock is ignored.
    Ok(needs_mock.then_some(answer))
}

fn parse_input(text: Option<&str>) -> Result<Value, TestStateError> {
    let text = text.unwrap_or("{}");
    serde_json::from_str(text).map_err(|e| {
        TestStateError::new(
            TestStateErrorCode::InvalidExecutionInput,
            format!("Invalid State Machine Execution Input: '{e}'"),
        )
    })
}

fn parse_object(text: Option<&str>, field: &str) -> Result<Map<String, Value>, TestStateError> {
    let Some(text) = text else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TestStateError::validation(format!(
            "The field '{field}' must be a JSON object"
        ))),
        Err(e) => Err(TestStateError::validation(format!(
            "The field '{field}' is not valid JSON: {e}"
        ))),
    }
}
