//! Data-driven golden tests: every `tests/golden/*.json` file is one execution run end to end
//! through [`stepline_engine::runner::run_once`] under virtual time, with Task results coming
//! from an AWS Step Functions Local `MockConfigFile`.
//!
//! File format:
//! ```json
//! {"description": "…", "definition": {ASL}, "input": …,
//!  "mock_config": {MockConfigFile}, "test_case": "…", "state_machine_name": "…",
//!  "expected": {"status": "SUCCEEDED", "output": …, "error": …, "cause": …,
//!               "history": ["ExecutionStarted", …], "duration_ms": 3000}}
//! ```
//! `mock_config`, `test_case` and `state_machine_name` go together (the name must be the mock
//! config's `StateMachines` key). In `expected` only `status` is required; a key that is
//! present is compared (`"error": null` asserts there is no error), `history` compares the
//! sequence of AWS event type names, and `duration_ms` the virtual time from start to stop.
//! Expected values follow AWS's documented semantics, not whatever the engine does today.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::mock::MockCase;
use stepline_engine::runner::{run_once, RunIdentity};

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden");

/// 2023-11-14T22:13:20.000Z: the virtual start time of every golden run.
pub const START_MS: i64 = 1_700_000_000_000;

/// Fewest golden files the suite must hold (guards against an emptied directory).
const MIN_FILES: usize = 20;

const FILE_KEYS: &[&str] = &[
    "description",
    "definition",
    "input",
    "mock_config",
    "test_case",
    "state_machine_name",
    "state_machine_type",
    "expected",
];
const EXPECTED_KEYS: &[&str] = &[
    "status",
    "output",
    "error",
    "cause",
    "history",
    "duration_ms",
];

/// JSON equality where object key order does not matter and `1 == 1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn golden_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(GOLDEN_DIR)
        .unwrap_or_else(|e| panic!("cannot list {GOLDEN_DIR}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Runs one golden file; `Err` describes every mismatch.
pub fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "golden".into());
    check_case(&name, &case)
}

/// Runs one golden case given as a JSON value (`name` becomes the execution name).
pub fn check_case(name: &str, case: &Value) -> Result<(), String> {
    let obj = case.as_object().ok_or("the file must hold a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !FILE_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown top-level key '{k}'"));
    }
    if !obj.get("description").is_some_and(Value::is_string) {
        return Err("missing \"description\" string".into());
    }
    let expected = obj
        .get("expected")
        .and_then(Value::as_object)
        .ok_or("missing \"expected\" object")?;
    if let Some(k) = expected
        .keys()
        .find(|k| !EXPECTED_KEYS.contains(&k.as_str()))
    {
        return Err(format!("unknown key 'expected.{k}'"));
    }
    let want_status = expected
        .get("status")
        .and_then(Value::as_str)
        .ok_or("missing \"expected.status\"")?;

    let ty = match obj.get("state_machine_type").and_then(Value::as_str) {
        None | Some("STANDARD") => StateMachineType::Standard,
        Some("EXPRESS") => StateMachineType::Express,
        Some(other) => return Err(format!("unknown state_machine_type '{other}'")),
    };
    let definition = obj.get("definition").ok_or("missing \"definition\"")?;
    let def = Definition::parse(definition, ty).map_err(|e| format!("definition rejected: {e}"))?;

    let sm_name = obj.get("state_machine_name").and_then(Value::as_str);
    let mock = match obj.get("mock_config") {
        None => None,
        Some(cfg) => {
            let sm = sm_name.ok_or("mock_config needs \"state_machine_name\"")?;
            let tc = obj
                .get("test_case")
                .and_then(Value::as_str)
                .ok_or("mock_config needs \"test_case\"")?;
            let text = serde_json::to_string(cfg).map_err(|e| e.to_string())?;
            Some(MockCase::load(&text, sm, tc).map_err(|e| format!("mock config: {e}"))?)
        }
    };
    if mock.is_none() && obj.contains_key("test_case") {
        return Err("\"test_case\" given without \"mock_config\"".into());
    }

    let identity = RunIdentity {
        state_machine_name: sm_name.unwrap_or("GoldenStateMachine").to_string(),
        execution_name: name.to_string(),
        express: ty == StateMachineType::Express,
        ..RunIdentity::default()
    };
    let input = obj.get("input").cloned().unwrap_or_else(|| json!({}));
    let out = run_once(Arc::new(def), &identity, input, mock, START_MS)
        .map_err(|e| format!("run failed: {e}"))?;

    let mut problems = Vec::new();
    if out.status.as_str() != want_status {
        problems.push(format!(
            "status {} (error {:?}, cause {:?}), want {want_status}",
            out.status.as_str(),
            out.error,
            out.cause
        ));
    }
    if let Some(want) = expected.get("output") {
        let got = out.output.clone().unwrap_or(Value::Null);
        if !json_eq(&got, want) {
            problems.push(format!("output\n      got:  {got}\n      want: {want}"));
        }
    }
    for (key, got) in [("error", &out.error), ("cause", &out.cause)] {
        if let Some(want) = expected.get(key) {
            let got = got.clone().map(Value::String).unwrap_or(Value::Null);
            if &got != want {
                problems.push(format!("{key}\n      got:  {got}\n      want: {want}"));
            }
        }
    }
    if let Some(want) = expected.get("history") {
        let want: Vec<&str> = want
            .as_array()
            .ok_or("expected.history must be an array")?
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or("expected.history holds event type strings")
            })
            .collect::<Result<_, _>>()?;
        let got: Vec<String> = out.history.iter().map(|e| e.kind.type_name()).collect();
        if got != want {
            problems.push(format!(
                "history\n      got:  {got:?}\n      want: {want:?}"
            ));
        }
    }
    if let Some(want) = expected.get("duration_ms") {
        let want = want
            .as_i64()
            .ok_or("expected.duration_ms must be an integer")?;
        let got = out.stop_ms - out.start_ms;
        if got != want {
            problems.push(format!("duration_ms {got}, want {want}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

#[test]
fn golden_files_match() {
    let files = golden_files();
    assert!(
        files.len() >= MIN_FILES,
        "{GOLDEN_DIR} holds {} golden files, expected at least {MIN_FILES}",
        files.len()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            check(f).err().map(|e| {
                format!(
                    "  {}:\n    {e}",
                    f.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden files do not match:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The harness itself must notice a wrong expectation of every kind it compares.
#[test]
fn golden_harness_detects_mismatches() {
    let base = json!({
        "description": "harness self-test",
        "definition": {"StartAt": "Hold", "States": {
            "Hold": {"Type": "Wait", "Seconds": 2, "Next": "Out"},
            "Out": {"Type": "Pass", "Result": {"v": 1}, "End": true}}},
        "input": {},
        "expected": {"status": "SUCCEEDED", "output": {"v": 1}, "error": null,
                     "history": ["ExecutionStarted", "WaitStateEntered", "WaitStateExited",
                                 "PassStateEntered", "PassStateExited", "ExecutionSucceeded"],
                     "duration_ms": 2000}
    });
    check_case("self_test", &base).expect("the unmodified self-test case must pass");
    let mutations: &[(&str, Value)] = &[
        ("status", json!("FAILED")),
        ("output", json!({"v": 2})),
        ("output", json!({"v": 1, "extra": true})),
        ("error", json!("Some.Error")),
        ("cause", json!("a cause")),
        ("history", json!(["ExecutionStarted", "ExecutionSucceeded"])),
        ("duration_ms", json!(1999)),
    ];
    for (key, value) in mutations {
        let mut case = base.clone();
        case["expected"][*key] = value.clone();
        assert!(
            check_case("self_test", &case).is_err(),
            "expected.{key} = {value} should have been reported as a mismatch"
        );
    }
    let mut typo = base.clone();
    typo["expected"]["outptu"] = json!(1);
    assert!(
        check_case("self_test", &typo).is_err(),
        "unknown expected keys must be rejected"
    );
    let mut bad_mock = base;
    bad_mock["mock_config"] = json!({"StateMachines": {}, "MockedResponses": {}});
    bad_mock["state_machine_name"] = json!("Nope");
    bad_mock["test_case"] = json!("Missing");
    assert!(
        check_case("self_test", &bad_mock).is_err(),
        "a missing mock test case must be reported"
    );
}
