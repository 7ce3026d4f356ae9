//! AWS Step Functions Local `MockConfigFile` support: canned Task responses per test case.
//!
//! Format (the one Step Functions Local reads, so existing files work unchanged):
//! ```json
//! {"StateMachines": {"<machine>": {"TestCases": {"<case>": {"<State>": "<ResponseName>"}}}},
//!  "MockedResponses": {"<ResponseName>": {"0": {"Return": {…}},
//!                                         "1-2": {"Throw": {"Error": "…", "Cause": "…"}}}}}
//! ```
//! The key is the invocation number of that state in the execution (0 = first call, retries
//! and Map iterations count up). This module only parses and looks up; it does no IO.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub enum MockResponse {
    Return(Value),
    Throw {
        error: Option<String>,
        cause: Option<String>,
    },
}

/// The mocked responses of one test case, by state name.
#[derive(Debug, Clone, Default)]
pub struct MockCase {
    /// state name → ranges of invocation numbers → response.
    states: HashMap<String, Vec<(u32, u32, MockResponse)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("mock config: {0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> MockError {
    MockError::Shape(msg.into())
}

impl MockCase {
    /// Reads `StateMachines.<machine>.TestCases.<case>` from a mock config file's text.
    pub fn load(text: &str, machine: &str, case: &str) -> Result<MockCase, MockError> {
        let v: Value = serde_json::from_str(text)?;
        let machines = v
            .get("StateMachines")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("missing \"StateMachines\" object"))?;
        let m = machines.get(machine).ok_or_else(|| {
            shape(format!(
                "no state machine named '{machine}' under StateMachines (have: {})",
                machines.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let cases = m
            .get("TestCases")
            .and_then(Value::as_object)
            .ok_or_else(|| shape(format!("StateMachines.{machine} has no TestCases object")))?;
        let tc = cases.get(case).and_then(Value::as_object).ok_or_else(|| {
            shape(format!(
                "no test case '{case}' for state machine '{machine}' (have: {})",
                cases.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let responses = v
            .get("MockedResponses")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("missing \"MockedResponses\" object"))?;
        let mut states = HashMap::new();
        for (state, response_name) in tc {
            let rn = response_name.as_str().ok_or_else(|| {
                shape(format!(
                    "TestCases.{case}.{state} must name a mocked response"
                ))
            })?;
            let r = responses
                .get(rn)
                .and_then(Value::as_object)
                .ok_or_else(|| shape(format!("no MockedResponses entry named '{rn}'")))?;
            let mut ranges = Vec::new();
            for (key, resp) in r {
                let (lo, hi) = parse_range(key).ok_or_else(|| {
                    shape(format!(
                        "MockedResponses.{rn}: bad invocation key '{key}' (use \"0\" or \"1-2\")"
                    ))
                })?;
                let response = if let Some(ret) = resp.get("Return") {
                    MockResponse::Return(ret.clone())
                } else if let Some(t) = resp.get("Throw") {
                    MockResponse::Throw {
                        error: t.get("Error").and_then(Value::as_str).map(str::to_string),
                        cause: t.get("Cause").and_then(Value::as_str).map(str::to_string),
                    }
                } else {
                    return Err(shape(format!(
                        "MockedResponses.{rn}.{key} needs \"Return\" or \"Throw\""
                    )));
                };
                ranges.push((lo, hi, response));
            }
            ranges.sort_by_key(|r| r.0);
            states.insert(state.clone(), ranges);
        }
        Ok(MockCase { states })
    }

    pub fn has_state(&self, state: &str) -> bool {
        self.states.contains_key(state)
    }

    /// The response for the `invocation`-th call (0-based) of `state`. Past the last range
    /// the last response repeats, as Step Functions Local does.
    pub fn response(&self, state: &str, invocation: u32) -> Option<&MockResponse> {
        let ranges = self.states.get(state)?;
        ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&invocation))
            .or_else(|| ranges.last())
            .map(|r| &r.2)
    }
}

fn parse_range(key: &str) -> Option<(u32, u32)> {
    match key.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => {
            let a = key.trim().parse().ok()?;
            Some((a, a))
        }
    }
}

/// Counts invocations per state name.
#[derive(Debug, Default, Clone)]
pub struct InvocationCounter(BTreeMap<String, u32>);

impl InvocationCounter {
    pub fn next(&mut self, state: &str) -> u32 {
        let c = self.0.entry(state.to_string()).or_insert(0);
        let n = *c;
        *c += 1;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_errors() {
        let text = r#"{"StateMachines":{"sm":{"TestCases":{"ok":{"Pay":"Flaky"}}}},
          "MockedResponses":{"Flaky":{"0-1":{"Throw":{"Error":"Boom","Cause":"c"}},"2":{"Return":{"ok":true}}}}}"#;
        let m = MockCase::load(text, "sm", "ok").unwrap();
        assert!(matches!(
            m.response("Pay", 1),
            Some(MockResponse::Throw { .. })
        ));
        assert_eq!(
            m.response("Pay", 2),
            Some(&MockResponse::Return(serde_json::json!({"ok": true})))
        );
        assert!(m.response("Other", 0).is_none());
        assert!(MockCase::load(text, "sm", "missing")
            .unwrap_err()
            .to_string()
            .contains("no test case 'missing'"));
    }
}
