//! Definition validation: checks a raw ASL definition and reports every problem at once, the
//! way AWS Step Functions' `ValidateStateMachineDefinition` and `CreateStateMachine` do.
//!
//! Each problem is a [`Diagnostic`] with an AWS diagnostic code (`SCHEMA_VALIDATION_FAILED`,
//! `MISSING_TRANSITION_TARGET`, …), a location in the definition (`/States/<Name>/<Field>`,
//! array elements as `Field[i]`, as AWS writes them) and AWS's message wording where it is
//! known. Validation never stops at the first problem and never panics, whatever the JSON.
//!
//! Wording sources: messages recorded from AWS (the conformance corpus and public issue threads)
//! are reproduced exactly; the rest follow the same phrasing families
//! ("These fields are required: [..]", "Field 'X' is not supported",
//! "The value for the field 'X' must be ...", "Expected value of type [..]").

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jsonpath::{Path, Root};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StateMachineType {
    Standard,
    Express,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub message: String,
    pub severity: String,
}

/// Diagnostic codes, spelled as AWS spells them.
pub mod codes {
    pub const SCHEMA_VALIDATION_FAILED: &str = "SCHEMA_VALIDATION_FAILED";
    pub const INVALID_JSON_DESCRIPTION: &str = "INVALID_JSON_DESCRIPTION";
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    pub const MISSING_END_STATE: &str = "MISSING_END_STATE";
    pub const DUPLICATE_STATE_NAME: &str = "DUPLICATE_STATE_NAME";
    pub const INVALID_STATE_NAME: &str = "INVALID_STATE_NAME";
    pub const INVALID_LABEL_NAME: &str = "INVALID_LABEL_NAME";
    pub const INVALID_JSONATA_EXPRESSION: &str = "INVALID_JSONATA_EXPRESSION";
}

const ERROR: &str = "ERROR";

/// Validates a parsed definition. An empty result means the definition is valid.
pub fn validate(definition: &Value, ty: StateMachineType) -> Vec<Diagnostic> {
    let Value::Object(root) = definition else {
        return vec![not_an_object()];
    };
    let mut v = Validator::new(ty, root);
    v.machine(root);
    v.diags
}

/// Validates definition text. Text that is not JSON yields `INVALID_JSON_DESCRIPTION` (with a
/// Jackson-style message, as AWS reports it); JSON that is not an object (or no JSON at all)
/// yields `SCHEMA_VALIDATION_FAILED: Definition must be a valid JSON object`.
pub fn validate_text(text: &str, ty: StateMachineType) -> Vec<Diagnostic> {
    if text.trim().is_empty() {
        return vec![not_an_object()];
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            let mut diags = validate(&value, ty);
            // A parsed Value keeps only the last of two same-named states; the text has both.
            if value.is_object() {
                for (name, location) in duplicate_state_keys(text) {
                    diags.push(Diagnostic {
                        code: codes::DUPLICATE_STATE_NAME.into(),
                        location: Some(location),
                        message: format!("Duplicate State name: {name}"),
                        severity: ERROR.into(),
                    });
                }
            }
            diags
        }
        Err(e) => vec![json_syntax_diagnostic(text, &e)],
    }
}

/// Keys that appear twice in one `States` object of the text: (state name, location).
fn duplicate_state_keys(text: &str) -> Vec<(String, String)> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let walk = KeyWalk {
        path: String::new(),
        is_states: false,
        out: &mut out,
    };
    // The text already parsed as a Value, so this cannot fail; ignore errors regardless.
    let _ = walk.deserialize(&mut de);
    out
}

struct KeyWalk<'a> {
    path: String,
    is_states: bool,
    out: &'a mut Vec<(String, String)>,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyWalk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let seed = KeyWalk {
                path: format!("{}/{i}", self.path),
                is_states: false,
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}/{key}", self.path);
            if self.is_states && !seen.insert(key.clone()) {
                self.out.push((key.clone(), path.clone()));
            }
            let seed = KeyWalk {
                path,
                is_states: key == "States",
                out: &mut *self.out,
            };
            map.next_value_seed(seed)?;
        }
        Ok(())
    }
}

/// AWS's `CreateStateMachine` `InvalidDefinition` message for these diagnostics, e.g.
/// `Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: These fields are required:
/// [States] at /'`. Several diagnostics are joined with `", "` inside the quotes, as AWS does
/// (`'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next,
/// MISSING_TRANSITION_TARGET: State "pass2" is not reachable. at /States/pass2'`). Warnings are
/// left out; a diagnostic without a location renders `at null`, as AWS's does.
pub fn invalid_definition_message(diags: &[Diagnostic]) -> String {
    let parts: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == ERROR)
        .map(|d| {
            format!(
                "{}: {} at {}",
                d.code,
                d.message,
                d.location.as_deref().unwrap_or("null")
            )
        })
        .collect();
    format!("Invalid State Machine Definition: '{}'", parts.join(", "))
}

fn not_an_object() -> Diagnostic {
    Diagnostic {
        code: codes::SCHEMA_VALIDATION_FAILED.into(),
        location: None,
        message: "Definition must be a valid JSON object".into(),
        severity: ERROR.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Field tables
// ---------------------------------------------------------------------------------------------

const STATE_TYPES: &[&str] = &[
    "Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map",
];

const TOP_LEVEL_FIELDS: &[&str] = &[
    "Comment",
    "StartAt",
    "States",
    "Version",
    "TimeoutSeconds",
    "QueryLanguage",
];

const COMMON_FIELDS: &[&str] = &["Type", "Comment", "QueryLanguage"];
const IO_FIELDS: &[&str] = &["InputPath", "OutputPath"];
const TRANSITION_FIELDS: &[&str] = &["Next", "End"];
const RESULT_FIELDS: &[&str] = &[
    "Parameters",
    "ResultPath",
    "ResultSelector",
    "Assign",
    "Output",
];

fn allowed_for_type(ty: &str, field: &str) -> bool {
    if COMMON_FIELDS.contains(&field) {
        return true;
    }
    let io = IO_FIELDS.contains(&field);
    let tr = TRANSITION_FIELDS.contains(&field);
    match ty {
        "Pass" => {
            io || tr
                || matches!(
                    field,
                    "Parameters" | "ResultPath" | "Result" | "Assign" | "Output"
                )
        }
        "Task" => {
            io || tr
                || RESULT_FIELDS.contains(&field)
                || matches!(
                    field,
                    "Arguments"
                        | "Resource"
                        | "TimeoutSeconds"
                        | "TimeoutSecondsPath"
                        | "HeartbeatSeconds"
                        | "HeartbeatSecondsPath"
                        | "Retry"
                        | "Catch"
                        | "Credentials"
                )
        }
        "Choice" => io || matches!(field, "Choices" | "Default" | "Assign" | "Output"),
        "Wait" => {
            io || tr
                || matches!(
                    field,
                    "Seconds" | "Timestamp" | "SecondsPath" | "TimestampPath" | "Assign" | "Output"
                )
        }
        "Succeed" => io || field == "Output",
        "Fail" => matches!(field, "Error" | "Cause" | "ErrorPath" | "CausePath"),
        "Parallel" => {
            io || tr
                || RESULT_FIELDS.contains(&field)
                || matches!(field, "Arguments" | "Branches" | "Retry" | "Catch")
        }
        "Map" => {
            io || tr
                || RESULT_FIELDS.contains(&field)
                || matches!(
                    field,
                    "ItemProcessor"
                        | "Iterator"
                        | "ItemsPath"
                        | "Items"
                        | "ItemSelector"
                        | "ItemReader"
                        | "ItemBatcher"
                        | "ResultWriter"
                        | "MaxConcurrency"
                        | "MaxConcurrencyPath"
                        | "ToleratedFailurePercentage"
                        | "ToleratedFailurePercentagePath"
                        | "ToleratedFailureCount"
                        | "ToleratedFailureCountPath"
                        | "Label"
                        | "Retry"
                        | "Catch"
                )
        }
        _ => false,
    }
}

/// Fields that exist only for JSONPath states.
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultPath",
    "ResultSelector",
    "Result",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
];

/// Fields that exist only for JSONata states.
const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items"];

const STRING_COMPARATORS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "StringMatches",
];
const NUMERIC_COMPARATORS: &[&str] = &[
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
];
const BOOLEAN_COMPARATORS: &[&str] = &["BooleanEquals"];
const TIMESTAMP_COMPARATORS: &[&str] = &[
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
];
const PATH_COMPARATORS: &[&str] = &[
    "StringEqualsPath",
    "StringLessThanPath",
    "StringGreaterThanPath",
    "StringLessThanEqualsPath",
    "StringGreaterThanEqualsPath",
    "NumericEqualsPath",
    "NumericLessThanPath",
    "NumericGreaterThanPath",
    "NumericLessThanEqualsPath",
    "NumericGreaterThanEqualsPath",
    "BooleanEqualsPath",
    "TimestampEqualsPath",
    "TimestampLessThanPath",
    "TimestampGreaterThanPath",
    "TimestampLessThanEqualsPath",
    "TimestampGreaterThanEqualsPath",
];
const TYPE_TESTS: &[&str] = &[
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

fn is_comparator(k: &str) -> bool {
    STRING_COMPARATORS.contains(&k)
        || NUMERIC_COMPARATORS.contains(&k)
        || BOOLEAN_COMPARATORS.contains(&k)
        || TIMESTAMP_COMPARATORS.contains(&k)
        || PATH_COMPARATORS.contains(&k)
        || TYPE_TESTS.contains(&k)
}

const MAX_INT_SECONDS: i64 = 99_999_999;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn at(base: &str, field: &str) -> String {
    format!("{base}/{field}")
}

fn at_index(base: &str, field: &str, i: usize) -> String {
    format!("{base}/{field}/{i}")
}

/// `"/"` for the root object, otherwise the object's own location.
fn obj_loc(base: &str) -> String {
    if base.is_empty() {
        "/".to_string()
    } else {
        base.to_string()
    }
}

/// An integer JSON number (not `1.0`), saturated into i64.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
        _ => None,
    }
}

/// The text between `{%` and `%}` when `s` is a JSONata expression string (surrounding
/// whitespace ignored, as the interpreter does).
fn jsonata_body(s: &str) -> Option<&str> {
    crate::jsonata::is_expression(s)
}

fn is_jsonata_expr(v: &Value) -> bool {
    matches!(v, Value::String(s) if jsonata_body(s).is_some())
}

fn compile_jsonata(src: &str) -> Result<(), String> {
    crate::jsonata::compile(src).map(|_| ())
}

fn list(fields: &[&str]) -> String {
    format!("[{}]", fields.join(", "))
}

// ---------------------------------------------------------------------------------------------
// RFC 3339 timestamps, as ASL restricts them
// ---------------------------------------------------------------------------------------------

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with an uppercase `T` and `Z`, seconds present,
/// and a real calendar date. Date/time libraries accept forms ASL rejects (space separator,
/// lowercase letters, missing seconds, `+0000` offsets), so the shape is checked here.
pub fn is_asl_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0u32, |acc, d| {
            acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => {
            if i + 1 != b.len() {
                return false;
            }
        }
        Some(b'+') | Some(b'-') => {
            let (Some(oh), Some(om)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                return false;
            };
            if b.get(i + 3) != Some(&b':') || i + 6 != b.len() || oh > 18 || om > 59 {
                return false;
            }
        }
        _ => return false,
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 59
}

// ---------------------------------------------------------------------------------------------
// Intrinsic function syntax
// ---------------------------------------------------------------------------------------------

const INTRINSIC_FUNCTIONS: &[&str] = &[
    "Format",
    "StringToJson",
    "JsonToString",
    "Array",
    "ArrayPartition",
    "ArrayContains",
    "ArrayRange",
    "ArrayGetItem",
    "ArrayLength",
    "ArrayUnique",
    "Base64Encode",
    "Base64Decode",
    "Hash",
    "JsonMerge",
    "MathRandom",
    "MathAdd",
    "StringSplit",
    "UUID",
];

/// A syntactic check of an intrinsic call (`States.Name(arg, …)`), independent of the
/// evaluator: known function names, balanced calls, string literals whose only escapes are
/// `\'`, `\{`, `\}` and `\\`, valid path arguments, numbers, booleans and null.
fn intrinsic_syntax_ok(src: &str) -> bool {
    let chars: Vec<char> = src.chars().collect();
    let mut p = IntrinsicScanner { c: &chars, i: 0 };
    p.ws();
    if !p.call(0) {
        return false;
    }
    p.ws();
    p.i == chars.len()
}

struct IntrinsicScanner<'a> {
    c: &'a [char],
    i: usize,
}

impl IntrinsicScanner<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, ch)| self.c.get(self.i + k) == Some(&ch))
    }

    fn call(&mut self, depth: usize) -> bool {
        if depth > 64 || !self.starts_with("States.") {
            return false;
        }
        self.i += "States.".len();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.i += 1;
        }
        let name: String = self.c[start..self.i].iter().collect();
        if !INTRINSIC_FUNCTIONS.contains(&name.as_str()) {
            return false;
        }
        self.ws();
        if self.peek() != Some('(') {
            return false;
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(')') {
            self.i += 1;
            return true;
        }
        loop {
            self.ws();
            if !self.arg(depth) {
                return false;
            }
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(')') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn arg(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => self.path(),
            Some('S') if self.starts_with("States.") => self.call(depth + 1),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            _ => {
                for lit in ["true", "false", "null"] {
                    if self.starts_with(lit) {
                        self.i += lit.len();
                        return true;
                    }
                }
                false
            }
        }
    }

    fn string(&mut self) -> bool {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                '\\' => match self.peek() {
                    Some('\'' | '{' | '}' | '\\') => self.i += 1,
                    _ => return false,
                },
                '\'' => return true,
                _ => {}
            }
        }
        false
    }

    fn number(&mut self) -> bool {
        let start = self.i;
        if self.peek() == Some('-') {
            self.i += 1;
        }
        let int_start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == int_start {
            return false;
        }
        if self.peek() == Some('.') {
            self.i += 1;
            let f = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == f {
                return false;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            let e = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == e {
                return false;
            }
        }
        self.i > start
    }

    /// A path argument runs to the next top-level `,` or `)`.
    fn path(&mut self) -> bool {
        let start = self.i;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                self.i += 1;
                continue;
            }
            match c {
                '\'' | '"' if depth > 0 => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' if depth > 0 => depth -= 1,
                ',' | ')' if depth == 0 => break,
                c if c.is_whitespace() && depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        let text: String = self.c[start..self.i].iter().collect();
        Path::parse(&text).is_ok()
    }
}

fn intrinsic_ok(src: &str) -> bool {
    intrinsic_syntax_ok(src) && crate::intrinsics::parse(src).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Task resources
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    RequestResponse,
    Sync,
    Sync2,
    WaitForTaskToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Activity,
    Lambda,
    Service(Pattern),
}

/// An optimized integration: service, its actions, and the patterns beyond request/response
/// that it supports.
type Integration = (&'static str, &'static [&'static str], &'static [Pattern]);

const OPTIMIZED: &[Integration] = &[
    ("lambda", &["invoke"], &[Pattern::WaitForTaskToken]),
    ("sns", &["publish"], &[Pattern::WaitForTaskToken]),
    ("sqs", &["sendMessage"], &[Pattern::WaitForTaskToken]),
    ("events", &["putEvents"], &[Pattern::WaitForTaskToken]),
    ("apigateway", &["invoke"], &[Pattern::WaitForTaskToken]),
    (
        "dynamodb",
        &["getItem", "putItem", "updateItem", "deleteItem"],
        &[],
    ),
    (
        "states",
        &["startExecution"],
        &[Pattern::Sync, Pattern::Sync2, Pattern::WaitForTaskToken],
    ),
    ("batch", &["submitJob"], &[Pattern::Sync]),
    (
        "ecs",
        &["runTask"],
        &[Pattern::Sync, Pattern::WaitForTaskToken],
    ),
    (
        "eks",
        &[
            "createCluster",
            "deleteCluster",
            "createFargateProfile",
            "deleteFargateProfile",
            "createNodegroup",
            "deleteNodegroup",
            "runJob",
            "call",
        ],
        &[Pattern::Sync, Pattern::WaitForTaskToken],
    ),
    (
        "athena",
        &[
            "startQueryExecution",
            "stopQueryExecution",
            "getQueryExecution",
            "getQueryResults",
        ],
        &[Pattern::Sync],
    ),
    (
        "bedrock",
        &["invokeModel", "createModelCustomizationJob"],
        &[Pattern::Sync, Pattern::WaitForTaskToken],
    ),
    (
        "codebuild",
        &[
            "startBuild",
            "stopBuild",
            "batchDeleteBuilds",
            "batchGetReports",
            "startBuildBatch",
            "stopBuildBatch",
            "retryBuildBatch",
            "deleteBuildBatch",
        ],
        &[Pattern::Sync],
    ),
    (
        "elasticmapreduce",
        &[
            "createCluster",
            "terminateCluster",
            "addStep",
            "cancelStep",
            "setClusterTerminationProtection",
            "modifyInstanceFleetByName",
            "modifyInstanceGroupByName",
        ],
        &[Pattern::Sync],
    ),
    (
        "emr-containers",
        &[
            "createVirtualCluster",
            "deleteVirtualCluster",
            "startJobRun",
        ],
        &[Pattern::Sync],
    ),
    (
        "emr-serverless",
        &[
            "createApplication",
            "startApplication",
            "stopApplication",
            "deleteApplication",
            "startJobRun",
            "cancelJobRun",
        ],
        &[Pattern::Sync],
    ),
    ("glue", &["startJobRun"], &[Pattern::Sync]),
    ("databrew", &["startJobRun"], &[Pattern::Sync]),
    ("mediaconvert", &["createJob"], &[Pattern::Sync]),
    (
        "sagemaker",
        &[
            "createTrainingJob",
            "createTransformJob",
            "createProcessingJob",
            "createHyperParameterTuningJob",
            "createLabelingJob",
            "createModel",
            "createEndpoint",
            "createEndpointConfig",
            "updateEndpoint",
        ],
        &[Pattern::Sync],
    ),
    ("http", &["invoke"], &[]),
];

fn is_partition(p: &str) -> bool {
    matches!(p, "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b")
}

fn is_region(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && r.contains('-')
}

fn is_account(a: &str) -> bool {
    !a.is_empty() && a.len() <= 12 && a.chars().all(|c| c.is_ascii_digit())
}

fn is_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= 80
        && !n
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
}

fn is_camel_action(a: &str) -> bool {
    a.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && a.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Classifies a Task `Resource`; `None` when AWS would not recognise it.
fn classify_resource(arn: &str) -> Option<Resource> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() < 6 || parts[0] != "arn" || !is_partition(parts[1]) {
        return None;
    }
    let (service, region, account, rest) = (parts[2], parts[3], parts[4], parts[5]);
    match service {
        "lambda" => {
            // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
            let mut it = rest.splitn(3, ':');
            let kind = it.next()?;
            let name = it.next()?;
            let qualifier_ok = it.next().is_none_or(|q| {
                !q.is_empty()
                    && q.len() <= 128
                    && q.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '$')
            });
            (is_region(region)
                && is_account(account)
                && kind == "function"
                && !name.is_empty()
                && name.len() <= 140
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && qualifier_ok)
                .then_some(Resource::Lambda)
        }
        "states" if !region.is_empty() || !account.is_empty() => {
            // arn:aws:states:<region>:<account>:activity:<name>
            let name = rest.strip_prefix("activity:")?;
            (is_region(region) && is_account(account) && is_name(name))
                .then_some(Resource::Activity)
        }
        "states" => {
            // arn:aws:states:::<service>:<action>[.sync|.sync:2|.waitForTaskToken]
            //                 aws-sdk:<service>:<action>[.waitForTaskToken]
            let (target, pattern) = split_pattern(rest)?;
            if let Some(sdk) = target.strip_prefix("aws-sdk:") {
                let (svc, action) = sdk.split_once(':')?;
                let svc_ok = !svc.is_empty()
                    && svc.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    });
                let ok = svc_ok
                    && is_camel_action(action)
                    && matches!(
                        pattern,
                        Pattern::RequestResponse | Pattern::WaitForTaskToken
                    );
                return ok.then_some(Resource::Service(pattern));
            }
            let (svc, action) = target.split_once(':')?;
            let (_, actions, patterns) = OPTIMIZED.iter().find(|(s, _, _)| *s == svc)?;
            let action_ok = actions.contains(&action);
            let pattern_ok = pattern == Pattern::RequestResponse || patterns.contains(&pattern);
            (action_ok && pattern_ok).then_some(Resource::Service(pattern))
        }
        _ => None,
    }
}

fn split_pattern(rest: &str) -> Option<(&str, Pattern)> {
    for (suffix, p) in [
        (".sync:2", Pattern::Sync2),
        (".sync", Pattern::Sync),
        (".waitForTaskToken", Pattern::WaitForTaskToken),
    ] {
        if let Some(t) = rest.strip_suffix(suffix) {
            return Some((t, p));
        }
    }
    if rest.contains('.') {
        return None;
    }
    Some((rest, Pattern::RequestResponse))
}

/// `arn:<partition>:states:::<suffix>` for one of the given suffixes.
fn is_states_arn(arn: &str, suffixes: &[&str]) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && is_partition(parts[1])
        && parts[2] == "states"
        && parts[3].is_empty()
        && parts[4].is_empty()
        && suffixes.contains(&parts[5])
}

// ---------------------------------------------------------------------------------------------
// The validator
// ---------------------------------------------------------------------------------------------

struct Validator {
    ty: StateMachineType,
    top_jsonata: bool,
    diags: Vec<Diagnostic>,
    seen_names: HashSet<String>,
}

impl Validator {
    fn new(ty: StateMachineType, root: &Map<String, Value>) -> Self {
        let top_jsonata =
            matches!(root.get("QueryLanguage"), Some(Value::String(s)) if s == "JSONata");
        Validator {
            ty,
            top_jsonata,
            diags: Vec::new(),
            seen_names: HashSet::new(),
        }
    }

    fn push(&mut self, code: &str, location: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            code: code.into(),
            location: Some(location.into()),
            message: message.into(),
            severity: ERROR.into(),
        });
    }

    fn schema(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.push(codes::SCHEMA_VALIDATION_FAILED, location, message);
    }

    fn expected(&mut self, location: impl Into<String>, ty: &str) {
        self.schema(location, format!("Expected value of type [{ty}]"));
    }

    fn required(&mut self, location: impl Into<String>, fields: &[&str]) {
        self.schema(
            location,
            format!("These fields are required: {}", list(fields)),
        );
    }

    fn required_nested(&mut self, location: impl Into<String>, field: &str) {
        self.schema(
            location,
            format!("The field '{field}' is required but was missing"),
        );
    }

    fn not_supported(&mut self, location: impl Into<String>, field: &str) {
        self.schema(location, format!("Field '{field}' is not supported"));
    }

    fn one_of(&mut self, location: impl Into<String>, values: &[&str]) {
        self.schema(
            location,
            format!("Value should be one of the following: {}", list(values)),
        );
    }

    fn exclusive(&mut self, obj: &Map<String, Value>, loc: &str, a: &str, b: &str) {
        if obj.contains_key(a) && obj.contains_key(b) {
            self.schema(
                loc,
                format!("Only one of these fields can be set: [{a}, {b}]"),
            );
        }
    }

    fn language_mismatch(&mut self, loc: &str, field: &str, jsonata: bool) {
        let (is, only) = if jsonata {
            ("JSONata", "JSONPath")
        } else {
            ("JSONPath", "JSONata")
        };
        self.schema(
            loc,
            format!(
                "The QueryLanguage is set to '{is}', but field '{field}' is only supported for the '{only}' QueryLanguage"
            ),
        );
    }

    fn check_enum(&mut self, v: &Value, loc: String, values: &[&str]) {
        match v {
            Value::String(s) if values.contains(&s.as_str()) => {}
            Value::String(_) => self.one_of(loc, values),
            _ => self.expected(loc, "STRING"),
        }
    }

    fn check_string(&mut self, v: &Value, loc: String) {
        if !v.is_string() {
            self.expected(loc, "STRING");
        }
    }

    /// An integer in `[min, max]`; under JSONata a `{% %}` expression is accepted instead.
    fn check_int(
        &mut self,
        v: &Value,
        loc: String,
        field: &str,
        min: i64,
        max: i64,
        jsonata: bool,
    ) {
        if jsonata {
            if let Value::String(s) = v {
                if let Some(body) = jsonata_body(s) {
                    self.jsonata_compile(body, loc);
                    return;
                }
            }
        }
        let ok = as_int(v).is_some_and(|n| n >= min && n <= max);
        if !ok {
            let what = if min >= 1 {
                "a positive integer"
            } else {
                "a non-negative integer"
            };
            let extra = if jsonata {
                " or a JSONata expression"
            } else {
                ""
            };
            self.schema(
                loc,
                format!("The value for the field '{field}' must be {what}{extra}"),
            );
        }
    }

    fn jsonata_compile(&mut self, body: &str, loc: String) {
        if let Err(e) = compile_jsonata(body) {
            self.push(codes::INVALID_JSONATA_EXPRESSION, loc, e);
        }
    }

    /// Compiles every `{% %}` string inside `v` (a JSONata-evaluated field).
    fn jsonata_value(&mut self, v: &Value, loc: String) {
        match v {
            Value::String(s) => {
                if let Some(body) = jsonata_body(s) {
                    self.jsonata_compile(body, loc);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.jsonata_value(x, format!("{loc}/{i}"));
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.jsonata_value(x, at(&loc, k));
                }
            }
            _ => {}
        }
    }

    /// A path field: `null` allowed when `nullable`; `reference` demands a reference path;
    /// `input_only` demands the `$` root (ResultPath writes into the state's input).
    fn check_path(
        &mut self,
        v: &Value,
        loc: String,
        field: &str,
        nullable: bool,
        reference: bool,
        input_only: bool,
    ) {
        match v {
            Value::Null if nullable => {}
            Value::String(s) => {
                let parsed = if reference {
                    Path::parse_reference(s)
                } else {
                    Path::parse(s)
                };
                let ok = parsed.is_ok_and(|p| !input_only || *p.root() == Root::Input);
                if !ok {
                    self.schema(
                        loc,
                        format!("The value for the field '{field}' must be a valid JSONPath"),
                    );
                }
            }
            _ => self.expected(loc, "STRING"),
        }
    }

    /// A path or an intrinsic function call (ErrorPath, CausePath).
    fn check_path_or_intrinsic(&mut self, v: &Value, loc: String, field: &str) {
        match v {
            Value::String(s) if path_or_intrinsic_ok(s) => {}
            Value::String(_) => self.schema(
                loc,
                format!(
                    "The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call"
                ),
            ),
            _ => self.expected(loc, "STRING"),
        }
    }

    /// A JSONPath payload template: every `key.$` must hold a path or an intrinsic call.
    /// Reported at the template's own location, as AWS does.
    fn template(&mut self, v: &Value, root_loc: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k.ends_with(".$") {
                        let ok = matches!(x, Value::String(s) if path_or_intrinsic_ok(s));
                        if !ok {
                            self.schema(
                                root_loc,
                                format!(
                                    "The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call"
                                ),
                            );
                        }
                    } else {
                        self.template(x, root_loc);
                    }
                }
            }
            Value::Array(a) => {
                for x in a {
                    self.template(x, root_loc);
                }
            }
            _ => {}
        }
    }

    /// A payload field that must be an object (JSONPath) or an object / `{% %}` (JSONata).
    fn payload(&mut self, v: &Value, loc: String, jsonata: bool) {
        if jsonata {
            if !(v.is_object() || is_jsonata_expr(v)) {
                self.expected(loc.clone(), "OBJECT");
            }
            self.jsonata_value(v, loc);
        } else if v.is_object() {
            self.template(v, &loc);
        } else {
            self.expected(loc, "OBJECT");
        }
    }

    fn assign(&mut self, v: &Value, loc: String, jsonata: bool) {
        if !v.is_object() {
            self.expected(loc, "OBJECT");
            return;
        }
        if jsonata {
            self.jsonata_value(v, loc);
        } else {
            self.template(v, &loc);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Machine and scopes
    // -----------------------------------------------------------------------------------------

    fn machine(&mut self, root: &Map<String, Value>) {
        if let Some(ql) = root.get("QueryLanguage") {
            self.check_enum(ql, "/QueryLanguage".into(), &["JSONPath", "JSONata"]);
        }
        for k in root.keys() {
            if !TOP_LEVEL_FIELDS.contains(&k.as_str()) {
                self.not_supported("/", k);
            }
        }
        if let Some(c) = root.get("Comment") {
            self.check_string(c, "/Comment".into());
        }
        if let Some(c) = root.get("Version") {
            self.check_string(c, "/Version".into());
        }
        if let Some(t) = root.get("TimeoutSeconds") {
            self.check_int(
                t,
                "/TimeoutSeconds".into(),
                "TimeoutSeconds",
                1,
                MAX_INT_SECONDS,
                false,
            );
        }
        self.scope(root, "", true);
    }

    /// A set of states with its StartAt: the machine itself, a Parallel branch or a Map's
    /// ItemProcessor/Iterator. `base` is the scope object's location ("" for the root).
    fn scope(&mut self, obj: &Map<String, Value>, base: &str, top: bool) {
        let mut missing = Vec::new();
        if !obj.contains_key("States") {
            missing.push("States");
        }
        if !obj.contains_key("StartAt") {
            missing.push("StartAt");
        }
        if !missing.is_empty() {
            self.required(obj_loc(base), &missing);
        }
        let start_at = match obj.get("StartAt") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.expected(at(base, "StartAt"), "STRING");
                None
            }
            None => None,
        };
        let states = match obj.get("States") {
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.expected(at(base, "States"), "OBJECT");
                return;
            }
            None => return,
        };
        let states_loc = at(base, "States");
        let names: HashSet<&str> = states.keys().map(String::as_str).collect();
        for (name, st) in states {
            self.state(name, st, &at(&states_loc, name), &names);
        }
        if let Some(s) = start_at {
            if !names.contains(s) {
                self.push(
                    codes::MISSING_TRANSITION_TARGET,
                    at(base, "StartAt"),
                    format!("Missing 'StartAt' target: {s}"),
                );
            }
        }
        let has_terminal = states.values().any(|s| {
            matches!(
                s.get("Type").and_then(Value::as_str),
                Some("Succeed" | "Fail")
            ) || s.get("End") == Some(&Value::Bool(true))
        });
        // Without a usable StartAt, AWS reports the missing field only: no reachability.
        let Some(start_at) = start_at else { return };
        if top && !has_terminal {
            self.diags.push(Diagnostic {
                code: codes::MISSING_END_STATE.into(),
                location: None,
                message: "Workflow has no terminal state".into(),
                severity: ERROR.into(),
            });
            return;
        }
        // Reachability from StartAt.
        let mut reached: HashSet<&str> = HashSet::new();
        let mut queue = VecDeque::new();
        if let Some(&s) = names.get(start_at) {
            reached.insert(s);
            queue.push_back(s);
        }
        while let Some(n) = queue.pop_front() {
            let Some(st) = states.get(n) else { continue };
            for t in transitions(st) {
                if let Some(&t) = names.get(t) {
                    if reached.insert(t) {
                        queue.push_back(t);
                    }
                }
            }
        }
        for name in states.keys() {
            if !reached.contains(name.as_str()) {
                self.push(
                    codes::MISSING_TRANSITION_TARGET,
                    at(&states_loc, name),
                    format!("State \"{name}\" is not reachable."),
                );
            }
        }
    }

    fn target(&mut self, v: &Value, loc: String, field: &str, names: &HashSet<&str>) {
        match v {
            Value::String(s) => {
                if !names.contains(s.as_str()) {
                    self.push(
                        codes::MISSING_TRANSITION_TARGET,
                        loc,
                        format!("Missing '{field}' target: {s}"),
                    );
                }
            }
            _ => self.expected(loc, "STRING"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // States
    // -----------------------------------------------------------------------------------------

    fn state(&mut self, name: &str, st: &Value, loc: &str, names: &HashSet<&str>) {
        let len = name.chars().count();
        if len == 0 || len > 80 {
            self.push(
                codes::INVALID_STATE_NAME,
                loc,
                "State names must be between 1 and 80 characters long",
            );
        }
        if !self.seen_names.insert(name.to_string()) {
            self.push(
                codes::DUPLICATE_STATE_NAME,
                loc,
                format!("Duplicate State name: {name}"),
            );
        }
        let Value::Object(st) = st else {
            self.expected(loc, "OBJECT");
            return;
        };
        let ty = match st.get("Type") {
            None => {
                self.required(loc, &["Type"]);
                return;
            }
            Some(Value::String(t)) if STATE_TYPES.contains(&t.as_str()) => t.as_str(),
            Some(t) => {
                self.check_enum(t, at(loc, "Type"), STATE_TYPES);
                return;
            }
        };

        // Query language of this state.
        let jsonata = match st.get("QueryLanguage") {
            None => self.top_jsonata,
            Some(Value::String(s)) if s == "JSONPath" => {
                if self.top_jsonata {
                    self.schema(
                        loc,
                        "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                    );
                }
                false
            }
            Some(Value::String(s)) if s == "JSONata" => true,
            Some(other) => {
                self.check_enum(other, at(loc, "QueryLanguage"), &["JSONPath", "JSONata"]);
                self.top_jsonata
            }
        };

        // Which fields may be inspected further.
        let mut usable: HashSet<&str> = HashSet::new();
        for k in st.keys() {
            let k = k.as_str();
            if !allowed_for_type(ty, k) {
                self.not_supported(loc, k);
            } else if jsonata && JSONPATH_ONLY.contains(&k) {
                self.language_mismatch(loc, k, true);
            } else if !jsonata && JSONATA_ONLY.contains(&k) {
                self.language_mismatch(loc, k, false);
            } else {
                usable.insert(k);
            }
        }
        let get = |k: &str| -> Option<&Value> {
            if usable.contains(k) {
                st.get(k)
            } else {
                None
            }
        };

        // Required fields of the type.
        let mut missing: Vec<&str> = Vec::new();
        match ty {
            "Task" if !st.contains_key("Resource") => missing.push("Resource"),
            "Choice" if !st.contains_key("Choices") => missing.push("Choices"),
            "Parallel" if !st.contains_key("Branches") => missing.push("Branches"),
            "Map" if !st.contains_key("ItemProcessor") && !st.contains_key("Iterator") => {
                missing.push("ItemProcessor")
            }
            _ => {}
        }
        if !missing.is_empty() {
            self.required(loc, &missing);
        }

        if let Some(c) = get("Comment") {
            self.check_string(c, at(loc, "Comment"));
        }

        // Transitions.
        if matches!(ty, "Pass" | "Task" | "Wait" | "Parallel" | "Map") {
            let end = st.get("End");
            if let Some(e) = end {
                if !e.is_boolean() {
                    self.expected(at(loc, "End"), "BOOLEAN");
                }
            }
            let has_next = st.contains_key("Next");
            let is_end = end == Some(&Value::Bool(true));
            if has_next == is_end {
                self.schema(loc, "Exactly one of these fields is required: [Next, End]");
            }
            if let Some(n) = st.get("Next") {
                self.target(n, at(loc, "Next"), "Next", names);
            }
        }

        // Input/output processing.
        for f in ["InputPath", "OutputPath"] {
            if let Some(v) = get(f) {
                self.check_path(v, at(loc, f), f, true, false, false);
            }
        }
        if let Some(v) = get("ResultPath") {
            self.check_path(v, at(loc, "ResultPath"), "ResultPath", true, true, true);
        }
        if let Some(v) = get("Parameters") {
            self.payload(v, at(loc, "Parameters"), false);
        }
        if let Some(v) = get("ResultSelector") {
            self.payload(v, at(loc, "ResultSelector"), false);
        }
        if let Some(v) = get("Arguments") {
            self.payload(v, at(loc, "Arguments"), true);
        }
        if let Some(v) = get("Output") {
            self.jsonata_value(v, at(loc, "Output"));
        }
        if let Some(v) = get("Assign") {
            self.assign(v, at(loc, "Assign"), jsonata);
        }

        match ty {
            "Task" => self.task(st, loc, &usable, jsonata),
            "Choice" => self.choice(st, loc, names, jsonata),
            "Wait" => self.wait(st, loc, &usable, jsonata),
            "Fail" => self.fail(st, loc, &usable, jsonata),
            "Parallel" => self.parallel(st, loc),
            "Map" => self.map(st, loc, &usable, jsonata),
            _ => {}
        }
        if matches!(ty, "Task" | "Parallel" | "Map") {
            if let Some(r) = st.get("Retry") {
                self.retry(r, &at(loc, "Retry"));
            }
            if let Some(c) = st.get("Catch") {
                self.catch(c, &at(loc, "Catch"), names, jsonata);
            }
        }
    }

    fn task(&mut self, st: &Map<String, Value>, loc: &str, usable: &HashSet<&str>, jsonata: bool) {
        match st.get("Resource") {
            Some(Value::String(arn)) => self.resource(arn, at(loc, "Resource")),
            Some(_) => self.expected(at(loc, "Resource"), "STRING"),
            None => {}
        }
        let mut timeout = None;
        let mut heartbeat = None;
        if let Some(v) = st.get("TimeoutSeconds") {
            self.check_int(
                v,
                at(loc, "TimeoutSeconds"),
                "TimeoutSeconds",
                1,
                MAX_INT_SECONDS,
                jsonata,
            );
            timeout = as_int(v);
        }
        if let Some(v) = st.get("HeartbeatSeconds") {
            self.check_int(
                v,
                at(loc, "HeartbeatSeconds"),
                "HeartbeatSeconds",
                1,
                MAX_INT_SECONDS,
                jsonata,
            );
            heartbeat = as_int(v);
        }
        for f in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
            if usable.contains(f) {
                if let Some(v) = st.get(f) {
                    self.check_path(v, at(loc, f), f, false, true, false);
                }
            }
        }
        self.exclusive(st, loc, "TimeoutSeconds", "TimeoutSecondsPath");
        self.exclusive(st, loc, "HeartbeatSeconds", "HeartbeatSecondsPath");
        if let (Some(t), Some(h)) = (timeout, heartbeat) {
            if h >= t && h >= 1 {
                self.schema(
                    at(loc, "HeartbeatSeconds"),
                    "The value for the field 'HeartbeatSeconds' must be smaller than the value for the field 'TimeoutSeconds'",
                );
            }
        }
        if let Some(c) = st.get("Credentials") {
            let cloc = at(loc, "Credentials");
            match c {
                Value::Object(m) => {
                    let role = m.get("RoleArn");
                    let role_path = if jsonata { None } else { m.get("RoleArn.$") };
                    match (role, role_path) {
                        (None, None) => self.required_nested(cloc.clone(), "RoleArn"),
                        (Some(r), _) => {
                            if jsonata {
                                if !r.is_string() {
                                    self.expected(at(&cloc, "RoleArn"), "STRING");
                                }
                                self.jsonata_value(r, at(&cloc, "RoleArn"));
                            } else {
                                self.check_string(r, at(&cloc, "RoleArn"));
                            }
                        }
                        (None, Some(_)) => {}
                    }
                    if !jsonata {
                        self.template(c, &cloc);
                    }
                }
                _ => self.expected(cloc, "OBJECT"),
            }
        }
    }

    fn resource(&mut self, arn: &str, loc: String) {
        let Some(res) = classify_resource(arn) else {
            self.schema(
                loc,
                format!(
                    "The resource provided {arn} is not recognized. The value is not a valid resource ARN, or the resource is not available in this region."
                ),
            );
            return;
        };
        if self.ty == StateMachineType::Express {
            match res {
                Resource::Activity => {
                    self.schema(loc, "Express state machine does not support Activity ARN")
                }
                Resource::Service(Pattern::Sync | Pattern::Sync2) => self.schema(
                    loc,
                    "Express state machine does not support '.sync' service integration",
                ),
                Resource::Service(Pattern::WaitForTaskToken) => self.schema(
                    loc,
                    // AWS's message ends with a space.
                    "Express state machine does not support '.waitForTaskToken' service integration ",
                ),
                _ => {}
            }
        }
    }

    fn retry(&mut self, r: &Value, loc: &str) {
        let Value::Array(rs) = r else {
            self.expected(loc, "ARRAY");
            return;
        };
        let last = rs.len().saturating_sub(1);
        for (i, rv) in rs.iter().enumerate() {
            let rloc = format!("{loc}/{i}");
            let Value::Object(m) = rv else {
                self.expected(rloc, "OBJECT");
                continue;
            };
            for k in m.keys() {
                if !matches!(
                    k.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    self.not_supported(rloc.clone(), k);
                }
            }
            let has_all = self.error_equals(m, &rloc);
            if has_all && i != last {
                self.schema(
                    at(&rloc, "ErrorEquals"),
                    "The error name 'States.ALL' can only be used in the last Retrier",
                );
            }
            if let Some(v) = m.get("IntervalSeconds") {
                self.check_int(
                    v,
                    at(&rloc, "IntervalSeconds"),
                    "IntervalSeconds",
                    1,
                    MAX_INT_SECONDS,
                    false,
                );
            }
            if let Some(v) = m.get("MaxAttempts") {
                self.check_int(
                    v,
                    at(&rloc, "MaxAttempts"),
                    "MaxAttempts",
                    0,
                    MAX_INT_SECONDS,
                    false,
                );
            }
            if let Some(v) = m.get("MaxDelaySeconds") {
                self.check_int(
                    v,
                    at(&rloc, "MaxDelaySeconds"),
                    "MaxDelaySeconds",
                    1,
                    31_622_400,
                    false,
                );
            }
            if let Some(v) = m.get("BackoffRate") {
                let ok = v.as_f64().is_some_and(|b| b >= 1.0);
                if !ok {
                    self.schema(
                        at(&rloc, "BackoffRate"),
                        "The value for the field 'BackoffRate' must be a number greater than or equal to 1.0",
                    );
                }
            }
            if let Some(v) = m.get("JitterStrategy") {
                self.check_enum(v, at(&rloc, "JitterStrategy"), &["FULL", "NONE"]);
            }
            if let Some(v) = m.get("Comment") {
                self.check_string(v, at(&rloc, "Comment"));
            }
        }
    }

    /// Checks `ErrorEquals` of a retrier/catcher; returns whether it holds `States.ALL`.
    fn error_equals(&mut self, m: &Map<String, Value>, rloc: &str) -> bool {
        let Some(ee) = m.get("ErrorEquals") else {
            self.required_nested(rloc, "ErrorEquals");
            return false;
        };
        let eloc = at(rloc, "ErrorEquals");
        let Value::Array(items) = ee else {
            self.expected(eloc, "ARRAY");
            return false;
        };
        if items.is_empty() {
            self.schema(
                eloc.clone(),
                "The field 'ErrorEquals' must contain at least one element",
            );
        }
        let mut has_all = false;
        for (j, e) in items.iter().enumerate() {
            match e {
                Value::String(s) if s == "States.ALL" => has_all = true,
                Value::String(_) => {}
                _ => self.expected(format!("{eloc}[{j}]"), "STRING"),
            }
        }
        if has_all && items.len() > 1 {
            self.schema(
                eloc,
                "The error name 'States.ALL' must appear alone in the field 'ErrorEquals'",
            );
        }
        has_all
    }

    fn catch(&mut self, c: &Value, loc: &str, names: &HashSet<&str>, jsonata: bool) {
        let Value::Array(cs) = c else {
            self.expected(loc, "ARRAY");
            return;
        };
        let last = cs.len().saturating_sub(1);
        for (i, cv) in cs.iter().enumerate() {
            let cloc = format!("{loc}/{i}");
            let Value::Object(m) = cv else {
                self.expected(cloc, "OBJECT");
                continue;
            };
            let mut usable = HashSet::new();
            for k in m.keys() {
                let k = k.as_str();
                if !matches!(
                    k,
                    "ErrorEquals" | "Next" | "ResultPath" | "Assign" | "Output" | "Comment"
                ) {
                    self.not_supported(cloc.clone(), k);
                } else if jsonata && k == "ResultPath" {
                    self.language_mismatch(&cloc, k, true);
                } else if !jsonata && k == "Output" {
                    self.language_mismatch(&cloc, k, false);
                } else {
                    usable.insert(k);
                }
            }
            let has_all = self.error_equals(m, &cloc);
            if has_all && i != last {
                self.schema(
                    at(&cloc, "ErrorEquals"),
                    "The error name 'States.ALL' can only be used in the last Catcher",
                );
            }
            match m.get("Next") {
                Some(n) => self.target(n, at(&cloc, "Next"), "Next", names),
                None => self.required_nested(cloc.clone(), "Next"),
            }
            if usable.contains("ResultPath") {
                if let Some(v) = m.get("ResultPath") {
                    self.check_path(v, at(&cloc, "ResultPath"), "ResultPath", true, true, true);
                }
            }
            if usable.contains("Output") {
                if let Some(v) = m.get("Output") {
                    self.jsonata_value(v, at(&cloc, "Output"));
                }
            }
            if let Some(v) = m.get("Assign") {
                self.assign(v, at(&cloc, "Assign"), jsonata);
            }
            if let Some(v) = m.get("Comment") {
                self.check_string(v, at(&cloc, "Comment"));
            }
        }
    }

    fn choice(&mut self, st: &Map<String, Value>, loc: &str, names: &HashSet<&str>, jsonata: bool) {
        if let Some(c) = st.get("Choices") {
            let cloc = at(loc, "Choices");
            match c {
                Value::Array(rules) => {
                    if rules.is_empty() {
                        self.schema(
                            cloc.clone(),
                            "The field 'Choices' must contain at least one element",
                        );
                    }
                    for (i, r) in rules.iter().enumerate() {
                        self.rule(r, &at_index(loc, "Choices", i), true, names, jsonata);
                    }
                }
                _ => self.expected(cloc, "ARRAY"),
            }
        }
        if let Some(d) = st.get("Default") {
            self.target(d, at(loc, "Default"), "Default", names);
        }
    }

    fn rule(&mut self, r: &Value, rloc: &str, top: bool, names: &HashSet<&str>, jsonata: bool) {
        let Value::Object(m) = r else {
            self.expected(rloc, "OBJECT");
            return;
        };
        if top {
            match m.get("Next") {
                Some(n) => self.target(n, at(rloc, "Next"), "Next", names),
                None => self.required_nested(rloc, "Next"),
            }
            if let Some(a) = m.get("Assign") {
                self.assign(a, at(rloc, "Assign"), jsonata);
            }
        }
        if let Some(c) = m.get("Comment") {
            self.check_string(c, at(rloc, "Comment"));
        }
        if jsonata {
            for k in m.keys() {
                let k = k.as_str();
                let ok = matches!(k, "Condition" | "Comment")
                    || (top && matches!(k, "Next" | "Assign" | "Output"));
                if !ok {
                    self.not_supported(rloc, k);
                }
            }
            match m.get("Condition") {
                None => self.required_nested(rloc, "Condition"),
                Some(Value::Bool(_)) => {}
                Some(Value::String(s)) => match jsonata_body(s) {
                    Some(body) => self.jsonata_compile(body, at(rloc, "Condition")),
                    None => self.schema(
                        at(rloc, "Condition"),
                        "The value for the field 'Condition' must be a valid JSONata expression",
                    ),
                },
                Some(_) => self.expected(at(rloc, "Condition"), "BOOLEAN"),
            }
            if top {
                if let Some(o) = m.get("Output") {
                    self.jsonata_value(o, at(rloc, "Output"));
                }
            }
            return;
        }

        let mut ops: Vec<&str> = Vec::new();
        for k in m.keys() {
            let k = k.as_str();
            if is_comparator(k) || matches!(k, "And" | "Or" | "Not") {
                ops.push(k);
            } else if k == "Condition" || (top && k == "Output") {
                self.language_mismatch(rloc, k, false);
            } else {
                let ok =
                    k == "Variable" || k == "Comment" || (top && matches!(k, "Next" | "Assign"));
                if !ok {
                    self.not_supported(rloc, k);
                }
            }
        }
        match ops.len() {
            0 => {
                self.schema(
                    rloc,
                    "A Choice Rule must contain exactly one comparison operator or one of the fields [And, Or, Not]",
                );
                return;
            }
            1 => {}
            _ => {
                self.schema(
                    rloc,
                    format!(
                        "A Choice Rule must contain exactly one comparison operator or one of the fields [And, Or, Not], but found {}",
                        list(&ops)
                    ),
                );
                return;
            }
        }
        let op = ops[0];
        let oloc = at(rloc, op);
        let Some(operand) = m.get(op) else { return };
        match op {
            "And" | "Or" => {
                if m.contains_key("Variable") {
                    self.not_supported(rloc, "Variable");
                }
                match operand {
                    Value::Array(subs) => {
                        if subs.is_empty() {
                            self.schema(
                                oloc,
                                format!("The field '{op}' must contain at least one element"),
                            );
                        }
                        for (j, s) in subs.iter().enumerate() {
                            self.rule(s, &at_index(rloc, op, j), false, names, false);
                        }
                    }
                    _ => self.expected(oloc, "ARRAY"),
                }
            }
            "Not" => {
                if m.contains_key("Variable") {
                    self.not_supported(rloc, "Variable");
                }
                if operand.is_object() {
                    self.rule(operand, &oloc, false, names, false);
                } else {
                    self.expected(oloc, "OBJECT");
                }
            }
            _ => {
                match m.get("Variable") {
                    None => self.required_nested(rloc, "Variable"),
                    Some(v) => {
                        self.check_path(v, at(rloc, "Variable"), "Variable", false, false, false)
                    }
                }
                self.operand(op, operand, oloc);
            }
        }
    }

    fn operand(&mut self, op: &str, v: &Value, loc: String) {
        if STRING_COMPARATORS.contains(&op) {
            self.check_string(v, loc);
        } else if NUMERIC_COMPARATORS.contains(&op) {
            if !v.is_number() {
                self.expected(loc, "NUMBER");
            }
        } else if BOOLEAN_COMPARATORS.contains(&op) || TYPE_TESTS.contains(&op) {
            if !v.is_boolean() {
                self.expected(loc, "BOOLEAN");
            }
        } else if TIMESTAMP_COMPARATORS.contains(&op) {
            match v {
                Value::String(s) if is_asl_timestamp(s) => {}
                Value::String(_) => self.schema(loc, "String does not match RFC3339 timestamp"),
                _ => self.expected(loc, "STRING"),
            }
        } else if PATH_COMPARATORS.contains(&op) {
            self.check_path(v, loc, op, false, false, false);
        }
    }

    fn wait(&mut self, st: &Map<String, Value>, loc: &str, usable: &HashSet<&str>, jsonata: bool) {
        let fields = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"];
        let n = fields.iter().filter(|f| st.contains_key(**f)).count();
        if n != 1 {
            self.schema(
                loc,
                format!("Exactly one of these fields is required: {}", list(&fields)),
            );
        }
        if let Some(v) = st.get("Seconds") {
            self.check_int(
                v,
                at(loc, "Seconds"),
                "Seconds",
                0,
                MAX_INT_SECONDS,
                jsonata,
            );
        }
        if let Some(v) = st.get("Timestamp") {
            let tloc = at(loc, "Timestamp");
            match v {
                Value::String(s) => match jsonata_body(s) {
                    Some(body) if jsonata => self.jsonata_compile(body, tloc),
                    _ => {
                        if !is_asl_timestamp(s) {
                            self.schema(tloc, "String does not match RFC3339 timestamp");
                        }
                    }
                },
                _ => self.expected(tloc, "STRING"),
            }
        }
        for f in ["SecondsPath", "TimestampPath"] {
            if usable.contains(f) {
                if let Some(v) = st.get(f) {
                    self.check_path(v, at(loc, f), f, false, true, false);
                }
            }
        }
    }

    fn fail(&mut self, st: &Map<String, Value>, loc: &str, usable: &HashSet<&str>, jsonata: bool) {
        for f in ["Error", "Cause"] {
            if let Some(v) = st.get(f) {
                self.check_string(v, at(loc, f));
                if jsonata {
                    self.jsonata_value(v, at(loc, f));
                }
            }
        }
        for f in ["ErrorPath", "CausePath"] {
            if usable.contains(f) {
                if let Some(v) = st.get(f) {
                    self.check_path_or_intrinsic(v, at(loc, f), f);
                }
            }
        }
        self.exclusive(st, loc, "Error", "ErrorPath");
        self.exclusive(st, loc, "Cause", "CausePath");
    }

    fn parallel(&mut self, st: &Map<String, Value>, loc: &str) {
        let Some(b) = st.get("Branches") else { return };
        let bloc = at(loc, "Branches");
        let Value::Array(branches) = b else {
            self.expected(bloc, "ARRAY");
            return;
        };
        if branches.is_empty() {
            self.schema(
                bloc,
                "The field 'Branches' must contain at least one element",
            );
        }
        for (i, br) in branches.iter().enumerate() {
            let brloc = at_index(loc, "Branches", i);
            let Value::Object(m) = br else {
                self.expected(brloc, "OBJECT");
                continue;
            };
            self.sub_workflow(m, &brloc, false);
        }
    }

    /// A Parallel branch, or a Map ItemProcessor / legacy Iterator (`processor`: may carry a
    /// ProcessorConfig).
    fn sub_workflow(&mut self, m: &Map<String, Value>, loc: &str, processor: bool) {
        for k in m.keys() {
            let ok = matches!(k.as_str(), "StartAt" | "States" | "Comment")
                || (processor && k == "ProcessorConfig");
            if !ok {
                self.not_supported(loc, k);
            }
        }
        if let Some(c) = m.get("Comment") {
            self.check_string(c, at(loc, "Comment"));
        }
        if processor {
            if let Some(pc) = m.get("ProcessorConfig") {
                let ploc = at(loc, "ProcessorConfig");
                match pc {
                    Value::Object(p) => {
                        for k in p.keys() {
                            if !matches!(k.as_str(), "Mode" | "ExecutionType") {
                                self.not_supported(ploc.clone(), k);
                            }
                        }
                        if let Some(mode) = p.get("Mode") {
                            self.check_enum(mode, at(&ploc, "Mode"), &["INLINE", "DISTRIBUTED"]);
                        }
                        if let Some(et) = p.get("ExecutionType") {
                            self.check_enum(
                                et,
                                at(&ploc, "ExecutionType"),
                                &["STANDARD", "EXPRESS"],
                            );
                        }
                        let distributed =
                            p.get("Mode").and_then(Value::as_str) == Some("DISTRIBUTED");
                        if distributed && !p.contains_key("ExecutionType") {
                            self.required_nested(ploc, "ExecutionType");
                        }
                    }
                    _ => self.expected(ploc, "OBJECT"),
                }
            }
        }
        self.scope(m, loc, false);
    }

    fn map(&mut self, st: &Map<String, Value>, loc: &str, usable: &HashSet<&str>, jsonata: bool) {
        self.exclusive(st, loc, "ItemProcessor", "Iterator");
        for f in ["ItemProcessor", "Iterator"] {
            if let Some(p) = st.get(f) {
                let ploc = at(loc, f);
                match p {
                    Value::Object(m) => self.sub_workflow(m, &ploc, true),
                    _ => self.expected(ploc, "OBJECT"),
                }
            }
        }
        if usable.contains("ItemsPath") {
            if let Some(v) = st.get("ItemsPath") {
                self.check_path(v, at(loc, "ItemsPath"), "ItemsPath", false, true, false);
            }
        }
        if usable.contains("Items") {
            if let Some(v) = st.get("Items") {
                if !(v.is_array() || is_jsonata_expr(v)) {
                    self.schema(
                        at(loc, "Items"),
                        "The value for the field 'Items' must be an array or a JSONata expression",
                    );
                }
                self.jsonata_value(v, at(loc, "Items"));
            }
        }
        if let Some(v) = st.get("ItemSelector") {
            self.payload(v, at(loc, "ItemSelector"), jsonata);
        }
        self.exclusive(st, loc, "ItemSelector", "Parameters");

        if let Some(v) = st.get("MaxConcurrency") {
            self.check_int(
                v,
                at(loc, "MaxConcurrency"),
                "MaxConcurrency",
                0,
                i64::MAX,
                jsonata,
            );
        }
        if let Some(v) = st.get("ToleratedFailureCount") {
            self.check_int(
                v,
                at(loc, "ToleratedFailureCount"),
                "ToleratedFailureCount",
                0,
                i64::MAX,
                jsonata,
            );
        }
        if let Some(v) = st.get("ToleratedFailurePercentage") {
            let ploc = at(loc, "ToleratedFailurePercentage");
            match v {
                Value::String(s) if jsonata && jsonata_body(s).is_some() => {
                    self.jsonata_value(v, ploc)
                }
                _ => {
                    let ok = v.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p));
                    if !ok {
                        self.schema(
                            ploc,
                            "The value for the field 'ToleratedFailurePercentage' must be a number between 0 and 100",
                        );
                    }
                }
            }
        }
        for f in [
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ] {
            if usable.contains(f) {
                if let Some(v) = st.get(f) {
                    self.check_path(v, at(loc, f), f, false, true, false);
                }
            }
        }
        self.exclusive(st, loc, "MaxConcurrency", "MaxConcurrencyPath");
        self.exclusive(
            st,
            loc,
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
        );
        self.exclusive(
            st,
            loc,
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
        );

        if let Some(v) = st.get("Label") {
            let lloc = at(loc, "Label");
            match v {
                Value::String(s) => {
                    let bad_char = s.chars().any(|c| {
                        c.is_whitespace()
                            || c.is_control()
                            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
                    });
                    if s.chars().count() > 40 || bad_char {
                        self.push(
                            codes::INVALID_LABEL_NAME,
                            lloc,
                            "The field 'Label' must be at most 40 characters long and must not contain whitespace or special characters",
                        );
                    }
                }
                _ => self.expected(lloc, "STRING"),
            }
        }
        if let Some(v) = st.get("ItemReader") {
            self.item_reader(v, &at(loc, "ItemReader"), jsonata);
        }
        if let Some(v) = st.get("ItemBatcher") {
            self.item_batcher(v, &at(loc, "ItemBatcher"), jsonata);
        }
        if let Some(v) = st.get("ResultWriter") {
            self.result_writer(v, &at(loc, "ResultWriter"), jsonata);
        }
    }

    /// Keys of a Map sub-object: reports unknown ones and the other language's payload field.
    fn sub_fields(&mut self, m: &Map<String, Value>, loc: &str, allowed: &[&str], jsonata: bool) {
        for k in m.keys() {
            let k = k.as_str();
            if !allowed.contains(&k) {
                self.not_supported(loc, k);
            } else if jsonata && (k == "Parameters" || k.ends_with("Path")) {
                self.language_mismatch(loc, k, true);
            } else if !jsonata && k == "Arguments" {
                self.language_mismatch(loc, k, false);
            }
        }
    }

    fn item_reader(&mut self, v: &Value, loc: &str, jsonata: bool) {
        let Value::Object(m) = v else {
            self.expected(loc, "OBJECT");
            return;
        };
        self.sub_fields(
            m,
            loc,
            &["Resource", "ReaderConfig", "Parameters", "Arguments"],
            jsonata,
        );
        match m.get("Resource") {
            None => self.required_nested(loc, "Resource"),
            Some(Value::String(arn)) => {
                if !is_states_arn(arn, &["s3:getObject", "s3:listObjectsV2"]) {
                    self.schema(
                        at(loc, "Resource"),
                        format!(
                            "The resource provided {arn} is not recognized. The value is not a valid resource ARN, or the resource is not available in this region."
                        ),
                    );
                }
            }
            Some(_) => self.expected(at(loc, "Resource"), "STRING"),
        }
        if let Some(rc) = m.get("ReaderConfig") {
            let rloc = at(loc, "ReaderConfig");
            match rc {
                Value::Object(c) => {
                    for k in c.keys() {
                        let k = k.as_str();
                        if !matches!(
                            k,
                            "InputType"
                                | "CSVHeaderLocation"
                                | "CSVHeaders"
                                | "CSVDelimiter"
                                | "MaxItems"
                                | "MaxItemsPath"
                                | "ManifestType"
                                | "Transformation"
                        ) {
                            self.not_supported(rloc.clone(), k);
                        } else if jsonata && k == "MaxItemsPath" {
                            self.language_mismatch(&rloc, k, true);
                        }
                    }
                    if let Some(x) = c.get("InputType") {
                        self.check_enum(
                            x,
                            at(&rloc, "InputType"),
                            &["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"],
                        );
                    }
                    if let Some(x) = c.get("CSVHeaderLocation") {
                        self.check_enum(x, at(&rloc, "CSVHeaderLocation"), &["FIRST_ROW", "GIVEN"]);
                    }
                    if let Some(x) = c.get("CSVDelimiter") {
                        self.check_enum(
                            x,
                            at(&rloc, "CSVDelimiter"),
                            &["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"],
                        );
                    }
                    if let Some(x) = c.get("CSVHeaders") {
                        match x {
                            Value::Array(hs) => {
                                for (j, h) in hs.iter().enumerate() {
                                    self.check_string(h, format!("{rloc}/CSVHeaders[{j}]"));
                                }
                            }
                            _ => self.expected(at(&rloc, "CSVHeaders"), "ARRAY"),
                        }
                    }
                    if let Some(x) = c.get("MaxItems") {
                        self.check_int(
                            x,
                            at(&rloc, "MaxItems"),
                            "MaxItems",
                            0,
                            100_000_000,
                            jsonata,
                        );
                    }
                    if !jsonata {
                        if let Some(x) = c.get("MaxItemsPath") {
                            self.check_path(
                                x,
                                at(&rloc, "MaxItemsPath"),
                                "MaxItemsPath",
                                false,
                                true,
                                false,
                            );
                        }
                    }
                    self.exclusive(c, &rloc, "MaxItems", "MaxItemsPath");
                }
                _ => self.expected(rloc, "OBJECT"),
            }
        }
        self.sub_payloads(m, loc, jsonata);
    }

    fn sub_payloads(&mut self, m: &Map<String, Value>, loc: &str, jsonata: bool) {
        if !jsonata {
            if let Some(p) = m.get("Parameters") {
                self.payload(p, at(loc, "Parameters"), false);
            }
        } else if let Some(a) = m.get("Arguments") {
            self.payload(a, at(loc, "Arguments"), true);
        }
    }

    fn item_batcher(&mut self, v: &Value, loc: &str, jsonata: bool) {
        let Value::Object(m) = v else {
            self.expected(loc, "OBJECT");
            return;
        };
        self.sub_fields(
            m,
            loc,
            &[
                "MaxItemsPerBatch",
                "MaxItemsPerBatchPath",
                "MaxInputBytesPerBatch",
                "MaxInputBytesPerBatchPath",
                "BatchInput",
            ],
            jsonata,
        );
        for f in ["MaxItemsPerBatch", "MaxInputBytesPerBatch"] {
            if let Some(x) = m.get(f) {
                self.check_int(x, at(loc, f), f, 1, i64::MAX, jsonata);
            }
        }
        if !jsonata {
            for f in ["MaxItemsPerBatchPath", "MaxInputBytesPerBatchPath"] {
                if let Some(x) = m.get(f) {
                    self.check_path(x, at(loc, f), f, false, true, false);
                }
            }
        }
        self.exclusive(m, loc, "MaxItemsPerBatch", "MaxItemsPerBatchPath");
        self.exclusive(m, loc, "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath");
        if let Some(b) = m.get("BatchInput") {
            self.payload(b, at(loc, "BatchInput"), jsonata);
        }
    }

    fn result_writer(&mut self, v: &Value, loc: &str, jsonata: bool) {
        let Value::Object(m) = v else {
            self.expected(loc, "OBJECT");
            return;
        };
        self.sub_fields(
            m,
            loc,
            &["Resource", "Parameters", "Arguments", "WriterConfig"],
            jsonata,
        );
        match m.get("Resource") {
            None => {
                if !m.contains_key("WriterConfig") {
                    self.required_nested(loc, "Resource");
                }
            }
            Some(Value::String(arn)) => {
                if !is_states_arn(arn, &["s3:putObject"]) {
                    self.schema(
                        at(loc, "Resource"),
                        format!(
                            "The resource provided {arn} is not recognized. The value is not a valid resource ARN, or the resource is not available in this region."
                        ),
                    );
                }
            }
            Some(_) => self.expected(at(loc, "Resource"), "STRING"),
        }
        if let Some(wc) = m.get("WriterConfig") {
            let wloc = at(loc, "WriterConfig");
            match wc {
                Value::Object(c) => {
                    for k in c.keys() {
                        if !matches!(k.as_str(), "OutputType" | "Transformation") {
                            self.not_supported(wloc.clone(), k);
                        }
                    }
                    if let Some(x) = c.get("OutputType") {
                        self.check_enum(x, at(&wloc, "OutputType"), &["JSON", "JSONL"]);
                    }
                    if let Some(x) = c.get("Transformation") {
                        self.check_enum(
                            x,
                            at(&wloc, "Transformation"),
                            &["NONE", "COMPACT", "FLATTEN"],
                        );
                    }
                }
                _ => self.expected(wloc, "OBJECT"),
            }
        }
        self.sub_payloads(m, loc, jsonata);
    }
}

fn path_or_intrinsic_ok(s: &str) -> bool {
    if s.starts_with('$') {
        Path::parse(s).is_ok()
    } else if s.starts_with("States.") {
        intrinsic_ok(s)
    } else {
        false
    }
}

/// The names a state can transition to: Next, Default, Choices[].Next, Catch[].Next.
fn transitions(st: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let Value::Object(m) = st else { return out };
    for f in ["Next", "Default"] {
        if let Some(Value::String(s)) = m.get(f) {
            out.push(s.as_str());
        }
    }
    for f in ["Choices", "Catch"] {
        if let Some(Value::Array(items)) = m.get(f) {
            for it in items {
                if let Some(Value::String(s)) = it.get("Next") {
                    out.push(s.as_str());
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON syntax errors, worded the way AWS's (Jackson) parser words them
// ---------------------------------------------------------------------------------------------

fn json_syntax_diagnostic(text: &str, e: &serde_json::Error) -> Diagnostic {
    let source = jackson_source(text);
    let chars: Vec<char> = text.chars().collect();
    // serde_json reports 1-based line/column of the offending character.
    let offset = char_offset(text, e.line(), e.column());
    let (message, line, column) = match unrecognized_token(&chars, offset) {
        Some((token, end)) => {
            let (l, c) = line_col(&chars, end);
            (
                format!(
                    "Unrecognized token '{token}': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')"
                ),
                l,
                c,
            )
        }
        None => {
            let at_eof = e.is_eof() || offset >= chars.len();
            let (l, c) = line_col(&chars, offset.min(chars.len()));
            let msg = if at_eof {
                "Unexpected end-of-input".to_string()
            } else {
                let ch = chars[offset];
                format!("Unexpected character ('{ch}' (code {}))", u32::from(ch))
            };
            (msg, l, c)
        }
    };
    let location = format!("[Source: {source}; line: {line}, column: {column}]");
    Diagnostic {
        code: codes::INVALID_JSON_DESCRIPTION.into(),
        location: Some(location.clone()),
        message: format!("{message}\n at {location}"),
        severity: ERROR.into(),
    }
}

fn jackson_source(text: &str) -> String {
    const MAX: usize = 500;
    let n = text.chars().count();
    if n <= MAX {
        format!("(String)\"{text}\"")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("(String)\"{head}\"[truncated {} chars]", n - MAX)
    }
}

/// Char offset of 1-based (line, column); serde's column counts bytes in the line.
fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let mut byte = 0usize;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            let col_byte = (byte + column.saturating_sub(1)).min(text.len());
            let mut b = col_byte;
            while b > 0 && !text.is_char_boundary(b) {
                b -= 1;
            }
            return text[..b].chars().count();
        }
        byte += l.len() + 1;
    }
    text.chars().count()
}

/// When the error sits in a bare word, the word (Jackson's "Unrecognized token") and the char
/// offset just after it.
fn unrecognized_token(chars: &[char], offset: usize) -> Option<(String, usize)> {
    let is_tok = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut start = offset.min(chars.len());
    while start > 0 && is_tok(chars[start - 1]) {
        start -= 1;
    }
    let first = *chars.get(start)?;
    if !first.is_alphabetic() {
        return None;
    }
    let mut end = start;
    while end < chars.len() && is_tok(chars[end]) && end - start < 256 {
        end += 1;
    }
    let token: String = chars[start..end].iter().collect();
    if matches!(token.as_str(), "true" | "false" | "null") {
        return None;
    }
    Some((token, end))
}

/// 1-based line and column (Jackson style) of a char offset.
fn line_col(chars: &[char], offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for &c in chars.iter().take(offset) {
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn errors(def: &Value) -> Vec<Diagnostic> {
        validate(def, StateMachineType::Standard)
    }

    fn has(diags: &[Diagnostic], code: &str, loc: &str, msg_part: &str) -> bool {
        diags.iter().any(|d| {
            d.code == code && d.location.as_deref() == Some(loc) && d.message.contains(msg_part)
        })
    }

    fn corpus_dir() -> Option<PathBuf> {
        let primary = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/cases"
        ));
        let fallback = PathBuf::from("/work/shared/conformance/cases");
        [primary, fallback].into_iter().find(|p| p.is_dir())
    }

    fn machine_type(case: &Value) -> StateMachineType {
        match case.get("state_machine_type").and_then(Value::as_str) {
            Some("EXPRESS") => StateMachineType::Express,
            _ => StateMachineType::Standard,
        }
    }

    #[test]
    fn corpus() {
        let Some(dir) = corpus_dir() else {
            eprintln!("conformance corpus not found; skipping");
            return;
        };
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("read corpus")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        let mut failures = Vec::new();
        let (mut execs, mut rejected, mut validations) = (0, 0, 0);
        for path in &entries {
            let text = std::fs::read_to_string(path).expect("read case");
            let case: Value = serde_json::from_str(&text).expect("case json");
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let ty = machine_type(&case);
            let def = case.get("definition").cloned().unwrap_or(Value::Null);
            let expected = &case["expected"];
            match case["kind"].as_str() {
                Some("execution") => {
                    execs += 1;
                    let errs: Vec<_> = validate(&def, ty)
                        .into_iter()
                        .filter(|d| d.severity == "ERROR")
                        .collect();
                    if !errs.is_empty() {
                        failures.push(format!("{name}: unexpected errors {errs:?}"));
                    }
                }
                Some("definition_rejected") => {
                    rejected += 1;
                    let got = invalid_definition_message(&validate(&def, ty))
                        .replace("arn:aws:", "arn:<partition>:");
                    let want = expected["cause"].as_str().unwrap_or_default();
                    if got != want {
                        failures.push(format!("{name}:\n   got  {got}\n   want {want}"));
                    }
                }
                Some("validate_definition") => {
                    validations += 1;
                    let diags = match case.get("definition_text").and_then(Value::as_str) {
                        Some(t) => validate_text(t, ty),
                        None => validate(&def, ty),
                    };
                    let errs: Vec<_> = diags
                        .into_iter()
                        .filter(|d| d.severity == "ERROR")
                        .collect();
                    let result = if errs.is_empty() { "OK" } else { "FAIL" };
                    let got = serde_json::to_value(&errs).unwrap();
                    if result != expected["result"] || got != expected["diagnostics"] {
                        failures.push(format!(
                            "{name}:\n   got  {result} {got}\n   want {} {}",
                            expected["result"], expected["diagnostics"]
                        ));
                    }
                }
                _ => {}
            }
        }
        eprintln!(
            "corpus: {execs} execution, {rejected} definition_rejected, {validations} validate_definition cases; {} failures",
            failures.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn valid_minimal_machine() {
        let d = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}});
        assert!(errors(&d).is_empty());
    }

    #[test]
    fn required_top_level_fields() {
        let d = errors(&json!({}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "These fields are required: [States, StartAt]");
        assert_eq!(d[0].location.as_deref(), Some("/"));
        let msg = invalid_definition_message(&errors(&json!({"StartAt": "A"})));
        assert_eq!(
            msg,
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: These fields are required: [States] at /'"
        );
    }

    #[test]
    fn next_and_end_together() {
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B", "End": true},
            "B": {"Type": "Succeed"}}}));
        assert!(
            has(&d, "SCHEMA_VALIDATION_FAILED", "/States/A", "[Next, End]"),
            "{d:?}"
        );
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass"}, "B": {"Type": "Succeed"}}}));
        assert!(
            has(&d, "SCHEMA_VALIDATION_FAILED", "/States/A", "[Next, End]"),
            "{d:?}"
        );
    }

    #[test]
    fn states_all_must_be_alone_and_last() {
        let d = errors(&json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
                  "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                  "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "F"}]},
            "F": {"Type": "Fail"}}}));
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/T/Retry/0/ErrorEquals",
                "last Retrier"
            ),
            "{d:?}"
        );
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/T/Catch/0/ErrorEquals",
                "alone"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn unreachable_state_and_missing_target() {
        let d = errors(&json!({"StartAt": "pass1", "States": {
            "pass1": {"Type": "Pass", "Next": "pass3"},
            "pass2": {"Type": "Pass", "End": true}}}));
        assert_eq!(
            invalid_definition_message(&d),
            "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next, MISSING_TRANSITION_TARGET: State \"pass2\" is not reachable. at /States/pass2'"
        );
    }

    #[test]
    fn choice_targets_and_nested_scopes() {
        let d = errors(&json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "Nope"}], "Default": "P"},
            "P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "A", "States": {
                "A": {"Type": "Pass", "End": true}, "Ghost": {"Type": "Pass", "End": true}}}]}}}));
        assert!(
            has(
                &d,
                "MISSING_TRANSITION_TARGET",
                "/States/C/Choices/0/Next",
                "Nope"
            ),
            "{d:?}"
        );
        assert!(
            has(
                &d,
                "MISSING_TRANSITION_TARGET",
                "/States/P/Branches/0/States/Ghost",
                "not reachable"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn bad_result_path() {
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "ResultPath": "$.a[*]", "End": true}}}));
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/A/ResultPath",
                "valid JSONPath"
            ),
            "{d:?}"
        );
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "ResultPath": "a.b", "End": true}}}));
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/A/ResultPath",
                "valid JSONPath"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn jsonata_field_under_jsonpath_and_back() {
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Output": {"x": 1}, "End": true}}}));
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/A",
                "field 'Output'"
            ),
            "{d:?}"
        );
        let d = errors(
            &json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
            "A": {"Type": "Pass", "InputPath": "$.a", "End": true}}}),
        );
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/A",
                "field 'InputPath'"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn field_not_supported_for_type() {
        let d = errors(&json!({"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 1, "ResultPath": null, "End": true}}}));
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/W",
                "Field 'ResultPath' is not supported"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn timestamps() {
        for ok in [
            "2016-03-14T01:59:00Z",
            "2016-03-14T01:59:00.123+01:00",
            "2016-02-29T00:00:00Z",
        ] {
            assert!(is_asl_timestamp(ok), "{ok}");
        }
        for bad in [
            "2016-03-14 01:59:00Z",
            "2016-03-14t01:59:00Z",
            "2016-03-14T01:59:00z",
            "2016-03-14T01:59Z",
            "2016-03-14T01:59:00",
            "2016-13-05T21:29:29Z",
            "2015-02-29T00:00:00Z",
            "2016-03-14T01:59:00+0100",
            "05-12-2016T21:29:29Z",
            "",
        ] {
            assert!(!is_asl_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn intrinsic_syntax() {
        for ok in [
            "States.Format('a {} b', $.x)",
            "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)",
            "States.MathAdd($.Iterations, -1)",
            "States.UUID()",
            "States.StringToJson('{\"a\": \"b\"}')",
            "States.Format('it\\'s \\{\\} \\\\', $v)",
        ] {
            assert!(intrinsic_syntax_ok(ok), "{ok}");
        }
        for bad in [
            "States.Format('He said, \\\"Hello\\\"')",
            "States.Nope(1)",
            "States.Format('a'",
            "States.Format('a') x",
            "States.Format(a)",
            "Format('a')",
        ] {
            assert!(!intrinsic_syntax_ok(bad), "{bad}");
        }
    }

    #[test]
    fn resources() {
        assert_eq!(
            classify_resource("arn:aws:states:::lambda:invoke.waitForTaskToken"),
            Some(Resource::Service(Pattern::WaitForTaskToken))
        );
        assert_eq!(
            classify_resource("arn:aws:states:us-east-1:111111111111:activity:act-1"),
            Some(Resource::Activity)
        );
        assert_eq!(
            classify_resource("arn:aws:lambda:us-east-1:111111111111:function:f:$LATEST"),
            Some(Resource::Lambda)
        );
        assert!(classify_resource("arn:aws:states:::aws-sdk:s3:listObjectsV2").is_some());
        assert!(classify_resource("arn:aws:states:::dynamodb:query").is_none());
        assert!(classify_resource("arn:aws:states:::dynamodb:getItem.sync").is_none());
        assert!(classify_resource("createToken").is_none());
    }

    #[test]
    fn express_restrictions_reach_nested_states() {
        let d = validate(
            &json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "T", "States": {"T": {"Type": "Task", "End": true,
                  "Resource": "arn:aws:states:::states:startExecution.sync:2"}}}]}}}),
            StateMachineType::Express,
        );
        assert!(
            has(
                &d,
                "SCHEMA_VALIDATION_FAILED",
                "/States/P/Branches/0/States/T/Resource",
                "'.sync'"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn duplicate_state_names_across_scopes() {
        let d = errors(&json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "M", "States": {"M": {"Type": "Pass", "End": true}}}}}}));
        assert!(
            has(
                &d,
                "DUPLICATE_STATE_NAME",
                "/States/M/ItemProcessor/States/M",
                "Duplicate State name: M"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn duplicate_state_names_in_text() {
        let t = r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "A": {"Type": "Pass", "End": true}}}"#;
        let d = validate_text(t, StateMachineType::Standard);
        assert!(
            has(
                &d,
                "DUPLICATE_STATE_NAME",
                "/States/A",
                "Duplicate State name: A"
            ),
            "{d:?}"
        );
        let t = r#"{"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "B", "States": {"B": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}]}}}"#;
        let d = validate_text(t, StateMachineType::Standard);
        assert!(
            has(
                &d,
                "DUPLICATE_STATE_NAME",
                "/States/P/Branches/0/States/B",
                "B"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn no_terminal_state() {
        let d = errors(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "MISSING_END_STATE");
    }

    #[test]
    fn text_inputs() {
        let d = validate_text("not a definition", StateMachineType::Standard);
        assert_eq!(d[0].code, "INVALID_JSON_DESCRIPTION");
        assert_eq!(
            d[0].location.as_deref(),
            Some("[Source: (String)\"not a definition\"; line: 1, column: 4]")
        );
        let d = validate_text(" ", StateMachineType::Standard);
        assert_eq!(d[0].message, "Definition must be a valid JSON object");
        assert_eq!(d[0].location, None);
        let d = validate_text("[1]", StateMachineType::Standard);
        assert_eq!(d[0].message, "Definition must be a valid JSON object");
        for t in [
            "{",
            "{\"a\":}",
            "\"\u{e9}\u{e9}",
            "{\"a\": tru}",
            "\n\n  x",
            "{\"a\":1}}",
        ] {
            let d = validate_text(t, StateMachineType::Standard);
            assert_eq!(d[0].code, "INVALID_JSON_DESCRIPTION", "{t}");
        }
    }

    #[test]
    fn arbitrary_values_do_not_panic() {
        let samples = [
            json!(null),
            json!({"States": 1, "StartAt": 2}),
            json!({"StartAt": "A", "States": {"A": 5}}),
            json!({"StartAt": "A", "States": {"A": {"Type": "Map", "ItemProcessor": 1, "ItemReader": [], "ItemBatcher": "x", "ResultWriter": {}, "Label": 3, "Next": 4}}}),
            json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [1, {"And": 1}, {"Not": [], "Next": 1}, {"Or": [{"Not": {"Variable": "$", "IsNull": 1}}]}]}}}),
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "arn:aws:states:::", "Retry": [1, {"ErrorEquals": 1, "BackoffRate": "x"}], "Catch": {}, "Credentials": 1, "End": 1}}}),
            json!({"QueryLanguage": 1, "StartAt": "A", "States": {"A": {"Type": "Wait", "Timestamp": 1, "Seconds": -1, "QueryLanguage": {}, "End": true}}}),
            json!({"StartAt": "é", "States": {"é": {"Type": "Pass", "Parameters": {"x.$": 1, "y": [{"z.$": "States.Format('é"}]}, "End": true}}}),
        ];
        for s in samples {
            let _ = validate(&s, StateMachineType::Express);
            let _ = validate_text(&s.to_string(), StateMachineType::Standard);
        }
    }
}
