//! The conformance harness: runs recorded AWS cases (`shared/conformance/cases`) through the
//! validator and the interpreter and compares the results after the corpus's normalisation.
//!
//! Comparison per kind: `execution` — status, then output (SUCCEEDED) or error and cause,
//! then the sequence of history event types when the case recorded a history;
//! `definition_rejected` — the definition must be rejected with AWS's message;
//! `validate_definition` — the `ValidateStateMachineDefinition` answer. Placeholder handling
//! follows the corpus README (the case's own `normalise` rules, then the global ones).
//! The harness never looks at a case's name.

use crate::asl::{validate, Definition, StateMachineType};
use crate::interp::ExecutionStatus;
use crate::runner::{seed_from, RunIdentity, World};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// One case's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub file: String,
    pub category: String,
    pub kind: String,
    pub passed: bool,
    /// Why it failed (empty when passed).
    pub detail: String,
    /// For cases with recorded history events: whether every event matched in full (ids,
    /// `previousEventId` and detail fields), not only in type. Informational, not a verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_exact: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub history_note: String,
}

/// All verdicts plus the per-category table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub passed: usize,
    pub failed: usize,
}

impl Report {
    /// category → (passed, failed)
    pub fn by_category(&self) -> BTreeMap<String, (usize, usize)> {
        let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for c in &self.cases {
            let e = m.entry(c.category.clone()).or_default();
            if c.passed {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        m
    }

    /// The human-readable table, ending with `N passed, M failed`.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<34} {:>7} {:>7} {:>7}\n",
            "category", "passed", "failed", "total"
        );
        for (cat, (p, f)) in self.by_category() {
            s.push_str(&format!("{cat:<34} {p:>7} {f:>7} {:>7}\n", p + f));
        }
        let with_history: Vec<bool> = self.cases.iter().filter_map(|c| c.history_exact).collect();
        s.push_str(&format!(
            "history events identical in every field (ids, links, details): {} of {} cases with recorded events\n",
            with_history.iter().filter(|x| **x).count(),
            with_history.len()
        ));
        s.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        s
    }
}

/// Runs every `*.json` case in `dir`.
pub fn run_dir(dir: &Path) -> std::io::Result<Report> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::with_capacity(files.len());
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        cases.push(run_case_text(&name, &text));
    }
    let passed = cases.iter().filter(|c| c.passed).count();
    let failed = cases.len() - passed;
    Ok(Report {
        cases,
        passed,
        failed,
    })
}

/// Runs one case given as JSON text. Panics inside the engine are caught and reported.
pub fn run_case_text(file: &str, text: &str) -> CaseResult {
    let case: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return CaseResult {
                file: file.into(),
                category: "unreadable".into(),
                kind: String::new(),
                passed: false,
                detail: format!("case is not JSON: {e}"),
                history_exact: None,
                history_note: String::new(),
            }
        }
    };
    let category = case["category"].as_str().unwrap_or("").to_string();
    let kind = case["kind"].as_str().unwrap_or("").to_string();
    let mut exact = None;
    let verdict =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&case, &mut exact)))
            .unwrap_or_else(|_| Err("the engine panicked".to_string()));
    let (history_exact, history_note) = match exact {
        Some(Ok(())) => (Some(true), String::new()),
        Some(Err(e)) => (Some(false), e),
        None => (None, String::new()),
    };
    CaseResult {
        file: file.into(),
        category,
        kind,
        passed: verdict.is_ok(),
        detail: verdict.err().unwrap_or_default(),
        history_exact,
        history_note,
    }
}

fn sm_type(case: &Value) -> StateMachineType {
    if case["state_machine_type"].as_str() == Some("EXPRESS") {
        StateMachineType::Express
    } else {
        StateMachineType::Standard
    }
}

type Exact = Option<Result<(), String>>;

fn check(case: &Value, exact: &mut Exact) -> Result<(), String> {
    match case["kind"].as_str() {
        Some("execution") => check_execution(case, exact),
        Some("definition_rejected") => check_rejected(case),
        Some("validate_definition") => check_validation(case),
        other => Err(format!("unknown case kind {other:?}")),
    }
}

fn check_rejected(case: &Value) -> Result<(), String> {
    let diags = validate::validate(&case["definition"], sm_type(case));
    if !diags.iter().any(|d| d.severity == "ERROR") {
        return Err("definition was accepted; AWS rejected it".into());
    }
    let got = normalise_string(case, &validate::invalid_definition_message(&diags));
    let want = case["expected"]["cause"].as_str().unwrap_or("");
    if got != want {
        return Err(format!("message differs:\n  got:  {got}\n  want: {want}"));
    }
    Ok(())
}

fn check_validation(case: &Value) -> Result<(), String> {
    let ty = sm_type(case);
    let diags = match case.get("definition_text").and_then(Value::as_str) {
        Some(t) => validate::validate_text(t, ty),
        None => validate::validate(&case["definition"], ty),
    };
    let result = if diags.iter().any(|d| d.severity == "ERROR") {
        "FAIL"
    } else {
        "OK"
    };
    let want_result = case["expected"]["result"].as_str().unwrap_or("");
    let got = serde_json::to_value(&diags).unwrap_or(Value::Null);
    let got = normalise_value(case, &got);
    let want = &case["expected"]["diagnostics"];
    if result != want_result || &got != want {
        return Err(format!(
            "validation differs:\n  got:  {result} {got}\n  want: {want_result} {want}"
        ));
    }
    Ok(())
}

fn check_execution(case: &Value, exact: &mut Exact) -> Result<(), String> {
    let ty = sm_type(case);
    let def = Definition::parse(&case["definition"], ty)
        .map_err(|e| format!("definition rejected: {e}"))?;
    let ctx = &case["context"];
    let s = |k: &str| ctx[k].as_str().map(str::to_string);
    let identity = RunIdentity {
        account: s("account").unwrap_or_else(|| "111111111111".into()),
        region: s("region").unwrap_or_else(|| "us-east-1".into()),
        state_machine_name: s("state_machine_name").unwrap_or_else(|| "StateMachine".into()),
        execution_name: s("execution_name").unwrap_or_else(|| "execution".into()),
        role_arn: s("role_arn"),
        express: ty == StateMachineType::Express,
        execution_arn: s("execution_arn"),
    };
    let start_ms = 1_700_000_000_000;
    let mut world = World::new(start_ms);
    if let Some(acts) = case.get("activities").and_then(Value::as_array) {
        let existing = acts
            .iter()
            .filter(|a| {
                a["exists"].as_bool() == Some(true)
                    && a["deleted_before_execution"].as_bool() != Some(true)
            })
            .filter_map(|a| a["arn"].as_str().map(str::to_string));
        world = world.with_activities(existing);
    }
    let main = world.add(
        Arc::new(def),
        identity.info(
            case["input"].clone(),
            start_ms,
            seed_from(&identity.execution_arn()),
        ),
        false,
    );
    if let Some(acts) = case.get("activities").and_then(Value::as_array) {
        for (i, a) in acts.iter().enumerate() {
            for (j, w) in a["workers"].as_array().into_iter().flatten().enumerate() {
                let wdef = Definition::parse(&w["definition"], StateMachineType::Standard)
                    .map_err(|e| format!("worker definition rejected: {e}"))?;
                let wid = RunIdentity {
                    state_machine_name: format!("worker-{i}-{j}"),
                    execution_name: format!("worker-{i}-{j}"),
                    express: false,
                    execution_arn: None,
                    ..identity.clone()
                };
                world.add(
                    Arc::new(wdef),
                    wid.info(
                        w["input"].clone(),
                        start_ms,
                        seed_from(&wid.execution_arn()),
                    ),
                    true,
                );
            }
        }
    }
    world.run().map_err(|e| format!("run failed: {e}"))?;
    let out = world.outcome(main);
    let expected = &case["expected"];
    if let Some(want) = expected.get("history_events").and_then(Value::as_array) {
        *exact = Some(compare_events(case, &out.history, want));
    }
    let want_status = expected["status"].as_str().unwrap_or("");
    if out.status.as_str() != want_status {
        return Err(format!(
            "status {} (error {:?}, cause {:?}), want {want_status}",
            out.status.as_str(),
            out.error,
            out.cause
        ));
    }
    match out.status {
        ExecutionStatus::Succeeded => {
            let got = normalise_value(case, out.output.as_ref().unwrap_or(&Value::Null));
            if !json_eq(&got, &expected["output"]) {
                return Err(format!(
                    "output differs:\n  got:  {got}\n  want: {}",
                    expected["output"]
                ));
            }
        }
        _ => {
            let got_error = out.error.as_deref().map(|e| normalise_string(case, e));
            let want_error = expected.get("error").and_then(Value::as_str);
            if got_error.as_deref() != want_error {
                return Err(format!("error {got_error:?}, want {want_error:?}"));
            }
            let want_cause = expected.get("cause").cloned().unwrap_or(Value::Null);
            let got_cause = match &out.cause {
                None => Value::Null,
                Some(c) if expected["cause_is_decoded_json"].as_bool() == Some(true) => {
                    normalise_value(
                        case,
                        &serde_json::from_str(c).unwrap_or(Value::String(c.clone())),
                    )
                }
                Some(c) => Value::String(normalise_cause(case, c)),
            };
            if !json_eq(&got_cause, &want_cause) {
                return Err(format!(
                    "cause differs:\n  got:  {got_cause}\n  want: {want_cause}"
                ));
            }
        }
    }
    if let Some(want) = expected.get("history").and_then(Value::as_array) {
        let mut want: Vec<String> = want
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let mut got: Vec<String> = out.history.iter().map(|e| e.kind.type_name()).collect();
        let sorted = case["normalise"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["kind"] == "parallel_events_sorted"));
        if sorted {
            want.sort();
            got.sort();
        }
        if got != want {
            return Err(format!(
                "history differs:\n  got:  {got:?}\n  want: {want:?}"
            ));
        }
    }
    Ok(())
}

/// Full comparison of recorded history events (ids, links, details) after normalisation.
fn compare_events(
    case: &Value,
    got: &[crate::history::HistoryEvent],
    want: &[Value],
) -> Result<(), String> {
    let sorted = case["normalise"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["kind"] == "parallel_events_sorted"));
    if sorted {
        return Err("parallel block re-sorted in the recording; not compared".into());
    }
    if got.len() != want.len() {
        return Err(format!("{} events, want {}", got.len(), want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        let mut v = g.to_aws_json();
        decode_event_payloads(&mut v);
        normalise_causes(case, &mut v);
        let v = normalise_value(case, &v);
        if !json_eq(&v, w) {
            return Err(format!("event differs:\n  got:  {v}\n  want: {w}"));
        }
    }
    Ok(())
}

/// Applies the `'{json}'` → `'<json-input:N>'` rule to every `cause` value.
fn normalise_causes(case: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if k == "cause" => *s = normalise_cause(case, s),
                    _ => normalise_causes(case, x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalise_causes(case, x)),
        _ => {}
    }
}

/// The snapshot library decodes string values that start with `{` inside objects.
fn decode_event_payloads(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (_, x) in m.iter_mut() {
                if let Value::String(s) = x {
                    if s.starts_with('{') {
                        if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                            *x = parsed;
                            continue;
                        }
                    }
                }
                decode_event_payloads(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(decode_event_payloads),
        _ => {}
    }
}

/// JSON equality where object key order does not matter and 1 == 1.0.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::String(x), Value::String(y)) if is_uuid_token(x) && is_uuid_token(y) => true,
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn is_uuid_token(s: &str) -> bool {
    s.strip_prefix("<uuid:")
        .and_then(|r| r.strip_suffix('>'))
        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

fn global_rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let r = |p: &str| Regex::new(p).unwrap_or_else(|_| Regex::new("$^").unwrap_or_else(|_| unreachable!()));
        vec![
            (r("us-east-1"), "<region>"),
            (r("arn:aws:"), "arn:<partition>:"),
            (
                r(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)"),
                "date",
            ),
        ]
    })
}

/// Applies the case's regex rules then the global rules to a string.
fn normalise_string(case: &Value, s: &str) -> String {
    let mut out = s.to_string();
    for rule in case["normalise"].as_array().into_iter().flatten() {
        if rule["kind"] == "regex" {
            let (Some(p), Some(rep)) = (rule["pattern"].as_str(), rule["replacement"].as_str())
            else {
                continue;
            };
            match Regex::new(p) {
                Ok(re) => out = re.replace_all(&out, regex::NoExpand(rep)).to_string(),
                Err(_) => out = out.replace(p, rep),
            }
        }
    }
    for (re, rep) in global_rules() {
        out = re.replace_all(&out, *rep).to_string();
    }
    out
}

/// `…'{json}'` inside a cause → `…'<json-input:N>'`, then the usual rules.
fn normalise_cause(case: &Value, cause: &str) -> String {
    let mut out = String::new();
    let mut rest = cause;
    let mut n = 0;
    while let Some(start) = rest.find("'{") {
        let after = &rest[start + 1..];
        // Find the longest prefix ending in "}'" that parses as JSON.
        let mut replaced = false;
        let mut search_from = 0;
        while let Some(rel) = after[search_from..].find("}'") {
            let end = search_from + rel + 1;
            if serde_json::from_str::<Value>(&after[..end]).is_ok() {
                n += 1;
                out.push_str(&rest[..start]);
                out.push_str(&format!("'<json-input:{n}>'"));
                rest = &after[end + 1..];
                replaced = true;
                break;
            }
            search_from = end;
        }
        if !replaced {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
        }
    }
    out.push_str(rest);
    normalise_string(case, &out)
}

fn apply_jsonpath_rules(case: &Value, v: &mut Value) {
    for rule in case["normalise"].as_array().into_iter().flatten() {
        if rule["kind"] != "jsonpath" {
            continue;
        }
        let (Some(path), Some(rep)) = (rule["path"].as_str(), rule["replacement"].as_str()) else {
            continue;
        };
        // Rules written against the recorded history's final output apply to the output.
        if let Some((_, rest)) = path.split_once("executionSucceededEventDetails.output.") {
            replace_at(v, &rest.split('.').collect::<Vec<_>>(), rep);
        } else if let Some(key) = path.strip_prefix("$..") {
            if !key.contains('.') {
                replace_key_everywhere(v, key, rep);
            }
        }
    }
}

fn replace_at(v: &mut Value, keys: &[&str], rep: &str) {
    match keys.split_first() {
        None => *v = Value::String(rep.to_string()),
        Some((k, rest)) => {
            if let Some(x) = v.get_mut(*k) {
                replace_at(x, rest, rep);
            }
        }
    }
}

fn replace_key_everywhere(v: &mut Value, key: &str, rep: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == key {
                    *x = Value::String(rep.to_string());
                } else {
                    replace_key_everywhere(x, key, rep);
                }
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| replace_key_everywhere(x, key, rep)),
        _ => {}
    }
}

fn timestamp_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let lower = k.to_lowercase();
                if (lower.contains("timestamp") || k == "creationTime") && !x.is_string() {
                    *x = Value::String("timestamp".into());
                } else {
                    timestamp_keys(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(timestamp_keys),
        _ => {}
    }
}

/// Normalises a JSON value (output, decoded cause) as the snapshot library did.
pub fn normalise_value(case: &Value, v: &Value) -> Value {
    let mut v = v.clone();
    apply_jsonpath_rules(case, &mut v);
    timestamp_keys(&mut v);
    let text = serde_json::to_string(&v).unwrap_or_default();
    let text = normalise_string(case, &text);
    let mut out: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    uuid_rule(&mut out, &mut Map::new());
    out
}

fn uuid_rule(v: &mut Value, seen: &mut Map<String, Value>) {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| {
            Regex::new(
                r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            )
            .ok()
        })
        .as_ref()
    else {
        return;
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.to_lowercase().ends_with("id") {
                    if let Value::String(s) = x {
                        if re.is_match(s) {
                            let n = seen.len();
                            let token = seen
                                .entry(s.clone())
                                .or_insert_with(|| Value::String(format!("<uuid:{n}>")))
                                .clone();
                            *x = token;
                            continue;
                        }
                    }
                }
                uuid_rule(x, seen);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| uuid_rule(x, seen)),
        _ => {}
    }
}
