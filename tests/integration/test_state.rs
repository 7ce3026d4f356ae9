//! `TestState` ([`stepline_engine::test_state`]): each status (`SUCCEEDED` with and without a
//! next state, `FAILED`, `RETRIABLE`, `CAUGHT_ERROR`), the `DEBUG` inspection data of JSONPath
//! and JSONata states, mocks for Task/Parallel/Map states, `stateName` in a full definition,
//! variables and context, and the AWS error codes of rejected requests.

use serde_json::{json, Value};
use stepline_engine::test_state::{
    test_state, test_state_with, InspectionData, InspectionLevel, MockErrorOutput, MockInput,
    TestExecutionStatus, TestStateConfiguration, TestStateEnv, TestStateErrorCode,
    TestStateRequest, TestStateResponse,
};

const ROLE: &str = "arn:aws:iam::111111111111:role/test";

fn req(state: Value, input: Value) -> TestStateRequest {
    TestStateRequest {
        definition: state.to_string(),
        input: Some(input.to_string()),
        ..TestStateRequest::default()
    }
}

fn debug(mut r: TestStateRequest) -> TestStateRequest {
    r.inspection_level = Some(InspectionLevel::Debug);
    r
}

fn with_result(mut r: TestStateRequest, result: Value) -> TestStateRequest {
    r.mock = Some(MockInput {
        result: Some(result.to_string()),
        ..MockInput::default()
    });
    r
}

fn with_error(mut r: TestStateRequest, error: &str, cause: &str) -> TestStateRequest {
    r.mock = Some(MockInput {
        error_output: Some(MockErrorOutput {
            error: Some(error.into()),
            cause: Some(cause.into()),
        }),
        ..MockInput::default()
    });
    r
}

fn run(r: &TestStateRequest) -> TestStateResponse {
    test_state(r).unwrap_or_else(|e| panic!("TestState rejected the request: {e}"))
}

fn parsed(text: &Option<String>) -> Value {
    let t = text.as_deref().unwrap_or_else(|| panic!("missing field"));
    serde_json::from_str(t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

fn data(r: &TestStateResponse) -> &InspectionData {
    r.inspection_data
        .as_ref()
        .unwrap_or_else(|| panic!("no inspection data in {r:?}"))
}

fn rejected(r: &TestStateRequest) -> (TestStateErrorCode, String) {
    match test_state(r) {
        Ok(resp) => panic!("expected a rejection, got {resp:?}"),
        Err(e) => (e.code, e.message),
    }
}

fn task(extra: Value) -> Value {
    let mut s = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke"});
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        m.extend(e);
    }
    s
}

#[test]
fn pass_succeeds_with_its_next_state_and_debug_data() {
    let r = debug(req(
        json!({"Type": "Pass", "InputPath": "$.a", "Parameters": {"x.$": "$.b"},
            "ResultPath": "$.res", "OutputPath": "$.res", "Next": "After"}),
        json!({"a": {"b": 5}}),
    ));
    let resp = run(&r);
    assert_eq!(resp.status, TestExecutionStatus::Succeeded);
    assert_eq!(resp.next_state.as_deref(), Some("After"));
    assert_eq!(parsed(&resp.output), json!({"x": 5}));
    assert_eq!((resp.error.clone(), resp.cause.clone()), (None, None));
    let d = data(&resp);
    assert_eq!(parsed(&d.input), json!({"a": {"b": 5}}));
    assert_eq!(parsed(&d.after_input_path), json!({"b": 5}));
    assert_eq!(parsed(&d.after_parameters), json!({"x": 5}));
    assert_eq!(parsed(&d.after_result_selector), json!({"x": 5}));
    // ResultPath merges into the raw input, not the InputPath selection.
    assert_eq!(
        parsed(&d.after_result_path),
        json!({"a": {"b": 5}, "res": {"x": 5}})
    );
    assert_eq!(d.variables, None);

    // INFO (the default) returns no inspection data.
    let mut info = r.clone();
    info.inspection_level = None;
    assert_eq!(run(&info).inspection_data, None);
}

#[test]
fn choice_wait_succeed_and_fail_states() {
    let choice = json!({"Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
        "Default": "Small"});
    let big = run(&req(choice.clone(), json!({"n": 11})));
    assert_eq!(
        (big.status, big.next_state.as_deref()),
        (TestExecutionStatus::Succeeded, Some("Big"))
    );
    assert_eq!(parsed(&big.output), json!({"n": 11}));
    let small = run(&debug(req(choice, json!({"n": 1}))));
    assert_eq!(small.next_state.as_deref(), Some("Small"));
    assert_eq!(parsed(&data(&small).after_input_path), json!({"n": 1}));

    // A Wait returns at once (one hour is not waited for).
    let wait = run(&req(
        json!({"Type": "Wait", "Seconds": 3600, "Next": "Later"}),
        json!({"w": 1}),
    ));
    assert_eq!(wait.status, TestExecutionStatus::Succeeded);
    assert_eq!(wait.next_state.as_deref(), Some("Later"));
    assert_eq!(parsed(&wait.output), json!({"w": 1}));
    // … but its fields are still evaluated.
    let bad = run(&req(
        json!({"Type": "Wait", "SecondsPath": "$.s", "End": true}),
        json!({"s": -1}),
    ));
    assert_eq!(bad.status, TestExecutionStatus::Failed);
    assert_eq!(bad.error.as_deref(), Some("States.Runtime"));

    let succeed = run(&req(
        json!({"Type": "Succeed", "OutputPath": "$.k"}),
        json!({"k": [1]}),
    ));
    assert_eq!(
        (succeed.status, succeed.next_state.clone()),
        (TestExecutionStatus::Succeeded, None)
    );
    assert_eq!(parsed(&succeed.output), json!([1]));

    let fail = run(&req(
        json!({"Type": "Fail", "Error": "Custom", "CausePath": "$.why"}),
        json!({"why": "because"}),
    ));
    assert_eq!(fail.status, TestExecutionStatus::Failed);
    assert_eq!(
        (fail.error.as_deref(), fail.cause.as_deref()),
        (Some("Custom"), Some("because"))
    );
    assert_eq!((fail.output, fail.next_state), (None, None));
}

#[test]
fn task_with_a_mocked_result_shows_every_stage() {
    let state = task(json!({
        "Parameters": {"FunctionName": "f", "Payload.$": "$.p"},
        "ResultSelector": {"body.$": "$.Payload"},
        "ResultPath": "$.out",
        "Assign": {"seen.$": "$.body"},
        "Next": "Next"}));
    let r = debug(with_result(
        req(state, json!({"p": {"q": 1}})),
        json!({"Payload": "hi", "StatusCode": 200}),
    ));
    let mut r = r;
    r.variables = Some(json!({"before": true}).to_string());
    let resp = run(&r);
    assert_eq!(resp.status, TestExecutionStatus::Succeeded);
    assert_eq!(resp.next_state.as_deref(), Some("Next"));
    assert_eq!(
        parsed(&resp.output),
        json!({"p": {"q": 1}, "out": {"body": "hi"}})
    );
    let d = data(&resp);
    assert_eq!(parsed(&d.after_input_path), json!({"p": {"q": 1}}));
    assert_eq!(
        parsed(&d.after_parameters),
        json!({"FunctionName": "f", "Payload": {"q": 1}})
    );
    assert_eq!(
        parsed(&d.result),
        json!({"Payload": "hi", "StatusCode": 200})
    );
    assert_eq!(parsed(&d.after_result_selector), json!({"body": "hi"}));
    assert_eq!(
        parsed(&d.after_result_path),
        json!({"p": {"q": 1}, "out": {"body": "hi"}})
    );
    assert_eq!(parsed(&d.variables), json!({"before": true, "seen": "hi"}));
    assert_eq!(d.error_details, None);
}

fn retrying_task() -> Value {
    task(json!({
        "Retry": [
            {"ErrorEquals": ["Other"], "MaxAttempts": 5},
            {"ErrorEquals": ["Flaky"], "IntervalSeconds": 3, "BackoffRate": 2, "MaxAttempts": 2}],
        "Catch": [
            {"ErrorEquals": ["Nope"], "Next": "Never"},
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}],
        "End": true}))
}

#[test]
fn a_mocked_error_is_retriable_then_caught() {
    let base = debug(with_error(
        req(retrying_task(), json!({"k": 1})),
        "Flaky",
        "try again",
    ));
    let resp = run(&base);
    assert_eq!(resp.status, TestExecutionStatus::Retriable);
    assert_eq!(
        (resp.error.as_deref(), resp.cause.as_deref()),
        (Some("Flaky"), Some("try again"))
    );
    assert_eq!((resp.output.clone(), resp.next_state.clone()), (None, None));
    let details = data(&resp).error_details.clone().expect("errorDetails");
    assert_eq!(
        (details.retry_index, details.retry_backoff_interval_seconds),
        (Some(1), Some(3))
    );

    // One retry made: still retriable, with the backed-off interval.
    let mut once = base.clone();
    once.state_configuration = Some(TestStateConfiguration {
        retrier_retry_count: Some(1),
        ..TestStateConfiguration::default()
    });
    let resp = run(&once);
    assert_eq!(resp.status, TestExecutionStatus::Retriable);
    let details = data(&resp).error_details.clone().expect("errorDetails");
    assert_eq!(details.retry_backoff_interval_seconds, Some(6));

    // Retries exhausted: the second Catcher takes the error.
    let mut exhausted = base.clone();
    exhausted.state_configuration = Some(TestStateConfiguration {
        retrier_retry_count: Some(2),
        ..TestStateConfiguration::default()
    });
    let resp = run(&exhausted);
    assert_eq!(resp.status, TestExecutionStatus::CaughtError);
    assert_eq!(resp.next_state.as_deref(), Some("Recover"));
    assert_eq!(
        (resp.error.as_deref(), resp.cause.as_deref()),
        (Some("Flaky"), Some("try again"))
    );
    assert_eq!(
        parsed(&resp.output),
        json!({"k": 1, "error": {"Error": "Flaky", "Cause": "try again"}})
    );
    assert_eq!(
        data(&resp)
            .error_details
            .clone()
            .and_then(|d| d.catch_index),
        Some(1)
    );
}

#[test]
fn an_unhandled_mocked_error_fails_the_state() {
    let resp = run(&with_error(
        req(task(json!({"End": true})), json!({})),
        "Boom",
        "it broke",
    ));
    assert_eq!(resp.status, TestExecutionStatus::Failed);
    assert_eq!(
        (resp.error.as_deref(), resp.cause.as_deref()),
        (Some("Boom"), Some("it broke"))
    );
    assert_eq!((resp.output, resp.next_state), (None, None));

    // A data-flow error after a successful result is a failure of the state too.
    let resp = run(&with_result(
        req(
            task(json!({"ResultSelector": {"x.$": "$.missing"}, "End": true})),
            json!({}),
        ),
        json!({"present": 1}),
    ));
    assert_eq!(resp.status, TestExecutionStatus::Failed);
    assert_eq!(resp.error.as_deref(), Some("States.Runtime"));
}

#[test]
fn jsonata_states_show_arguments_and_variables() {
    let state = json!({"Type": "Task", "QueryLanguage": "JSONata",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Arguments": {"n": "{% $states.input.n * 2 %}", "v": "{% $base %}"},
        "Assign": {"last": "{% $states.result.r %}"},
        "Output": {"r": "{% $states.result.r + 1 %}"},
        "End": true});
    let mut r = debug(with_result(req(state, json!({"n": 4})), json!({"r": 10})));
    r.variables = Some(json!({"base": "b"}).to_string());
    let resp = run(&r);
    assert_eq!(resp.status, TestExecutionStatus::Succeeded);
    assert_eq!(parsed(&resp.output), json!({"r": 11}));
    let d = data(&resp);
    assert_eq!(parsed(&d.after_arguments), json!({"n": 8, "v": "b"}));
    assert_eq!(parsed(&d.result), json!({"r": 10}));
    assert_eq!(parsed(&d.variables), json!({"base": "b", "last": 10}));
    assert_eq!(
        d.after_input_path, None,
        "JSONPath stages are absent for JSONata"
    );
    assert_eq!(d.after_result_path, None);
}

#[test]
fn state_name_picks_a_state_of_a_full_definition() {
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Next": "Second"},
        "Second": {"Type": "Pass", "Result": {"from": "second"}, "Next": "Third"},
        "Third": {"Type": "Succeed"}}});
    let mut r = req(def.clone(), json!({}));
    r.state_name = Some("Second".into());
    let resp = run(&r);
    assert_eq!(resp.next_state.as_deref(), Some("Third"));
    assert_eq!(parsed(&resp.output), json!({"from": "second"}));

    r.state_name = Some("Missing".into());
    let (code, msg) = rejected(&r);
    assert_eq!(code, TestStateErrorCode::ValidationException);
    assert_eq!(msg, "State not found in definition");
}

#[test]
fn context_and_environment_feed_the_context_object() {
    let state = json!({"Type": "Pass",
        "Parameters": {"name.$": "$$.State.Name", "entered.$": "$$.State.EnteredTime",
            "exec.$": "$$.Execution.Name"},
        "End": true});
    let env = TestStateEnv {
        now_ms: 1_700_000_000_000,
        ..TestStateEnv::default()
    };
    let resp = test_state_with(&req(state.clone(), json!({})), &env).expect("accepted");
    assert_eq!(
        parsed(&resp.output),
        json!({"name": "StateName", "entered": "2023-11-14T22:13:20.000Z",
            "exec": "TestStateExecution"})
    );
    let mut r = req(state, json!({}));
    r.context = Some(json!({"Execution": {"Name": "mine"}}).to_string());
    assert_eq!(parsed(&run(&r).output)["exec"], json!("mine"));
}

#[test]
fn parallel_and_map_states_need_a_mock() {
    let parallel = json!({"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}],
        "ResultSelector": {"first.$": "$[0]"}});
    let (code, _) = rejected(&req(parallel.clone(), json!({})));
    assert_eq!(code, TestStateErrorCode::InvalidDefinition);
    let resp = run(&with_result(
        req(parallel.clone(), json!({})),
        json!([1, 2]),
    ));
    assert_eq!(parsed(&resp.output), json!({"first": 1}));
    let (code, _) = rejected(&with_result(req(parallel, json!({})), json!([1])));
    assert_eq!(code, TestStateErrorCode::ValidationException);

    let map = json!({"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "A",
        "States": {"A": {"Type": "Pass", "End": true}}}});
    let resp = run(&with_result(
        req(map.clone(), json!([1, 2])),
        json!(["a", "b"]),
    ));
    assert_eq!(parsed(&resp.output), json!(["a", "b"]));
    let (code, msg) = rejected(&with_result(req(map, json!([1])), json!({"no": 1})));
    assert_eq!(
        (code, msg.as_str()),
        (
            TestStateErrorCode::ValidationException,
            "Mocked result must be an array."
        )
    );
}

#[test]
fn rejected_requests_carry_aws_error_codes() {
    // A Task without a mock: Stepline does not call resources.
    let mut r = req(task(json!({"End": true})), json!({}));
    let (code, msg) = rejected(&r);
    assert_eq!(code, TestStateErrorCode::ValidationException);
    assert_eq!(msg, "RoleArn must be specified when testing a Task state");
    r.role_arn = Some(ROLE.into());
    let (code, msg) = rejected(&r);
    assert_eq!(code, TestStateErrorCode::ValidationException);
    assert!(msg.contains("mock"), "{msg}");

    // A mock for a state that has nothing to mock.
    let (code, msg) = rejected(&with_result(
        req(json!({"Type": "Pass", "End": true}), json!({})),
        json!(1),
    ));
    assert_eq!(code, TestStateErrorCode::ValidationException);
    assert_eq!(
        msg,
        "State type 'Pass' is not supported when a mock is specified"
    );
    let mut both = with_result(req(task(json!({"End": true})), json!({})), json!(1));
    if let Some(m) = &mut both.mock {
        m.error_output = Some(MockErrorOutput::default());
    }
    assert_eq!(
        rejected(&both).1,
        "A test mock should have only one of the following fields: [result, errorOutput]."
    );
    let mut bad = with_result(req(task(json!({"End": true})), json!({})), json!(1));
    if let Some(m) = &mut bad.mock {
        m.result = Some("{not json".into());
    }
    assert_eq!(rejected(&bad).1, "Mocked result must be valid JSON");

    // Invalid definitions, located inside the state.
    let (code, msg) = rejected(&req(
        json!({"Type": "Pass", "Next": "X", "End": true}),
        json!({}),
    ));
    assert_eq!(code, TestStateErrorCode::InvalidDefinition);
    assert!(
        msg.starts_with("Invalid State Machine Definition: '"),
        "{msg}"
    );
    assert!(
        !msg.contains("/States/"),
        "locations are relative to the state: {msg}"
    );
    let mut r = req(json!({"Type": "Pass", "End": true}), json!({}));
    r.definition = "{nope".into();
    assert_eq!(rejected(&r).0, TestStateErrorCode::InvalidDefinition);

    // Input that is not JSON.
    let mut r = req(json!({"Type": "Pass", "End": true}), json!({}));
    r.input = Some("{".into());
    assert_eq!(rejected(&r).0, TestStateErrorCode::InvalidExecutionInput);
    // Variables that are not an object.
    let mut r = req(json!({"Type": "Pass", "End": true}), json!({}));
    r.variables = Some("[1]".into());
    assert_eq!(rejected(&r).0, TestStateErrorCode::ValidationException);
}

#[test]
fn request_and_response_use_aws_field_names() {
    let wire = json!({
        "definition": json!({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handle"}], "End": true}).to_string(),
        "input": "{\"a\":1}",
        "inspectionLevel": "DEBUG",
        "mock": {"errorOutput": {"error": "Sqs.Error", "cause": "down"}},
        "stateConfiguration": {"retrierRetryCount": 0}
    });
    let r: TestStateRequest = serde_json::from_value(wire).expect("AWS-shaped request");
    let resp = run(&r);
    let out = serde_json::to_value(&resp).expect("serializable");
    assert_eq!(out["status"], json!("CAUGHT_ERROR"));
    assert_eq!(out["nextState"], json!("Handle"));
    assert_eq!(out["error"], json!("Sqs.Error"));
    assert_eq!(
        out["inspectionData"]["errorDetails"],
        json!({"catchIndex": 0})
    );
    assert_eq!(out["inspectionData"]["input"], json!("{\"a\":1}"));
    assert!(out.get("cause").is_some() && out.get("output").is_some());
}
