//! The Amazon States Language: the typed model of a definition, and the conversion from JSON.
//!
//! [`Definition::parse`] first runs [`validate::validate`] (which reports *every* problem with a
//! JSON pointer), and only converts into the typed model when the definition is valid. The
//! interpreter accepts nothing but a [`Definition`], so it never re-checks the shape of a
//! definition. Paths, intrinsic calls and JSONata expressions are compiled here, once.
//!
//! The model is flat: every state machine (the root, each Parallel branch, each Map item
//! processor) lives in [`Definition::machines`] and is referred to by its [`MachineId`];
//! states are referred to by their index inside their machine. This module is pure.

pub mod choice;
pub mod template;
pub mod validate;

use crate::jsonpath::Path;
use choice::ChoiceRule;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use template::Template;
pub use validate::{Diagnostic, StateMachineType};

/// Index of a state machine inside [`Definition::machines`]; 0 is the root.
pub type MachineId = usize;
/// Index of a state inside its machine.
pub type StateId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QueryLanguage {
    JSONPath,
    JSONata,
}

/// A validated, compiled definition.
#[derive(Debug, Clone)]
pub struct Definition {
    pub machines: Vec<Machine>,
    pub timeout_seconds: Option<u64>,
    pub comment: Option<String>,
    /// The definition as written (for DescribeStateMachine and the context object).
    pub source: Value,
}

/// One state machine: the root, a Parallel branch or a Map item processor.
#[derive(Debug, Clone)]
pub struct Machine {
    pub start_at: StateId,
    pub states: Vec<State>,
    pub index: HashMap<String, StateId>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: Arc<str>,
    pub query_language: QueryLanguage,
    pub kind: StateKind,
    pub io: Io,
    pub transition: Transition,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub assign: Option<Template>,
}

/// Where a state goes once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Next(StateId),
    End,
    /// Choice, Succeed and Fail decide themselves.
    None,
}

/// An optional path field that may be absent (default `$`), `null`, or a path.
#[derive(Debug, Clone)]
pub enum OptionalPath {
    Default,
    Null,
    Path(Path),
}

/// The data-flow fields shared by most states.
#[derive(Debug, Clone)]
pub struct Io {
    pub input_path: OptionalPath,
    pub output_path: OptionalPath,
    pub result_path: OptionalPath,
    /// `Parameters` (JSONPath) or `Arguments` (JSONata).
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    /// JSONata `Output`.
    pub output: Option<Template>,
}

/// A number given literally, by a reference path, or by a JSONata expression.
#[derive(Debug, Clone)]
pub enum NumberSource {
    Literal(Value),
    Path(Path),
    Expr(Template),
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Pass {
        result: Option<Value>,
    },
    Task(Box<TaskSpec>),
    Choice {
        choices: Vec<ChoiceBranch>,
        default: Option<StateId>,
    },
    Wait(WaitSpec),
    Succeed,
    Fail(Box<FailSpec>),
    Parallel {
        branches: Vec<MachineId>,
    },
    Map(Box<MapSpec>),
}

impl StateKind {
    /// The state type as written in ASL (`"Pass"`, `"Task"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice { .. } => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel { .. } => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub resource: String,
    pub timeout: Option<NumberSource>,
    pub heartbeat: Option<NumberSource>,
    pub credentials: Option<Value>,
}

impl TaskSpec {
    /// `arn:aws:states:…:activity:name` resources are activities.
    pub fn is_activity(&self) -> bool {
        self.resource.contains(":activity:")
    }

    /// `.waitForTaskToken` resources wait for a callback carrying the task token.
    pub fn is_callback(&self) -> bool {
        self.resource.ends_with(".waitForTaskToken")
    }
}

#[derive(Debug, Clone)]
pub struct ChoiceBranch {
    pub rule: ChoiceRule,
    pub next: StateId,
    pub assign: Option<Template>,
    pub output: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum WaitSpec {
    Seconds(NumberSource),
    Timestamp(Template),
    SecondsPath(Path),
    TimestampPath(Path),
}

#[derive(Debug, Clone)]
pub struct FailSpec {
    pub error: Option<Template>,
    /// `ErrorPath`: a path or an intrinsic call (compiled as a `.$` value).
    pub error_path: Option<Template>,
    pub cause: Option<Template>,
    pub cause_path: Option<Template>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone)]
pub struct MapSpec {
    pub processor: MachineId,
    pub mode: MapMode,
    pub items_path: OptionalPath,
    /// JSONata `Items` (or literal array).
    pub items: Option<Template>,
    pub item_selector: Option<Template>,
    pub item_batcher: Option<ItemBatcher>,
    pub max_concurrency: Option<NumberSource>,
    pub tolerated_failure_percentage: Option<NumberSource>,
    pub tolerated_failure_count: Option<NumberSource>,
    pub label: Option<String>,
    pub item_reader: Option<Value>,
    pub result_writer: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct ItemBatcher {
    pub max_items_per_batch: Option<NumberSource>,
    pub max_input_bytes_per_batch: Option<NumberSource>,
    pub batch_input: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter_full: bool,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: StateId,
    pub result_path: OptionalPath,
    pub output: Option<Template>,
    pub assign: Option<Template>,
}

/// Why a definition was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", validate::invalid_definition_message(.0))]
pub struct InvalidDefinition(pub Vec<Diagnostic>);

impl Definition {
    /// The activity ARNs its Task states name, in every machine (the root, Parallel branches,
    /// Map item processors).
    pub fn activity_resources(&self) -> impl Iterator<Item = &str> {
        self.machines
            .iter()
            .flat_map(|m| m.states.iter())
            .filter_map(|s| match &s.kind {
                StateKind::Task(spec) if spec.is_activity() => Some(spec.resource.as_str()),
                _ => None,
            })
    }

    /// Validates and compiles a definition given as text.
    pub fn parse_text(text: &str, ty: StateMachineType) -> Result<Definition, InvalidDefinition> {
        let diags = validate::validate_text(text, ty);
        if diags.iter().any(|d| d.severity == "ERROR") {
            return Err(InvalidDefinition(diags));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            InvalidDefinition(vec![Diagnostic {
                code: "INVALID_JSON_DESCRIPTION".into(),
                location: None,
                message: e.to_string(),
                severity: "ERROR".into(),
            }])
        })?;
        Definition::parse(&value, ty)
    }

    /// Validates and compiles a definition.
    pub fn parse(value: &Value, ty: StateMachineType) -> Result<Definition, InvalidDefinition> {
        let diags = validate::validate(value, ty);
        if diags.iter().any(|d| d.severity == "ERROR") {
            return Err(InvalidDefinition(diags));
        }
        let mut b = Builder {
            machines: Vec::new(),
            problems: Vec::new(),
        };
        let root_ql = match value.get("QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => QueryLanguage::JSONata,
            _ => QueryLanguage::JSONPath,
        };
        b.machine(value, root_ql, "");
        if !b.problems.is_empty() {
            return Err(InvalidDefinition(b.problems));
        }
        Ok(Definition {
            machines: b.machines,
            timeout_seconds: value.get("TimeoutSeconds").and_then(Value::as_u64),
            comment: value
                .get("Comment")
                .and_then(Value::as_str)
                .map(str::to_string),
            source: value.clone(),
        })
    }

    pub fn root(&self) -> &Machine {
        &self.machines[0]
    }

    pub fn state(&self, machine: MachineId, state: StateId) -> &State {
        &self.machines[machine].states[state]
    }
}

struct Builder {
    machines: Vec<Machine>,
    problems: Vec<Diagnostic>,
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|_| v.is_object())
}

impl Builder {
    fn problem(&mut self, location: &str, message: impl Into<String>) {
        self.problems.push(Diagnostic {
            code: "SCHEMA_VALIDATION_FAILED".into(),
            location: Some(if location.is_empty() {
                "/".into()
            } else {
                location.into()
            }),
            message: message.into(),
            severity: "ERROR".into(),
        });
    }

    /// Converts one (already validated) state machine object; returns its id.
    fn machine(&mut self, v: &Value, ql: QueryLanguage, ptr: &str) -> MachineId {
        let id = self.machines.len();
        self.machines.push(Machine {
            start_at: 0,
            states: Vec::new(),
            index: HashMap::new(),
        });
        let empty = serde_json::Map::new();
        let states_obj = field(v, "States")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut index = HashMap::new();
        for (i, name) in states_obj.keys().enumerate() {
            index.insert(name.clone(), i);
        }
        let mut states = Vec::with_capacity(states_obj.len());
        for (name, sv) in states_obj {
            let sptr = format!("{ptr}/States/{}", escape_pointer(name));
            states.push(self.state(name, sv, ql, &index, &sptr));
        }
        let start_name = field(v, "StartAt").and_then(Value::as_str).unwrap_or("");
        let start_at = match index.get(start_name) {
            Some(i) => *i,
            None => {
                self.problem(
                    &format!("{ptr}/StartAt"),
                    format!("StartAt '{start_name}' does not name a state"),
                );
                0
            }
        };
        let m = &mut self.machines[id];
        m.start_at = start_at;
        m.states = states;
        m.index = index;
        id
    }

    fn target(
        &mut self,
        index: &HashMap<String, StateId>,
        v: Option<&Value>,
        ptr: &str,
    ) -> StateId {
        let name = v.and_then(Value::as_str).unwrap_or("");
        match index.get(name) {
            Some(i) => *i,
            None => {
                self.problem(ptr, format!("Missing 'Next' target: {name}"));
                0
            }
        }
    }

    fn path(&mut self, v: &Value, ptr: &str) -> Option<Path> {
        match v.as_str().map(Path::parse) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                self.problem(ptr, e.0);
                None
            }
            None => {
                self.problem(ptr, "expected a JSONPath string");
                None
            }
        }
    }

    /// A path-or-intrinsic field (`ErrorPath`, `CausePath`).
    fn dynamic(&mut self, v: Option<&Value>, ptr: &str) -> Option<Template> {
        let v = v?;
        let field = ptr.rsplit('/').next().unwrap_or("");
        match v.as_str().map(|s| template::compile_dynamic(field, s)) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                self.problem(ptr, e);
                None
            }
            None => {
                self.problem(ptr, "expected a JSONPath or an intrinsic function call");
                None
            }
        }
    }

    fn optional_path(&mut self, s: &Value, key: &str, ptr: &str) -> OptionalPath {
        match field(s, key) {
            None => OptionalPath::Default,
            Some(Value::Null) => OptionalPath::Null,
            Some(v) => match self.path(v, &format!("{ptr}/{key}")) {
                Some(p) => OptionalPath::Path(p),
                None => OptionalPath::Default,
            },
        }
    }

    fn template(&mut self, v: Option<&Value>, ql: QueryLanguage, ptr: &str) -> Option<Template> {
        let v = v?;
        match Template::compile(v, ql) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(ptr, e);
                None
            }
        }
    }

    fn number(
        &mut self,
        s: &Value,
        key: &str,
        ql: QueryLanguage,
        ptr: &str,
    ) -> Option<NumberSource> {
        let path_key = format!("{key}Path");
        if let Some(p) = field(s, &path_key) {
            return self
                .path(p, &format!("{ptr}/{path_key}"))
                .map(NumberSource::Path);
        }
        let v = field(s, key)?;
        if v.is_string() && ql == QueryLanguage::JSONata {
            return self
                .template(Some(v), ql, &format!("{ptr}/{key}"))
                .map(NumberSource::Expr);
        }
        Some(NumberSource::Literal(v.clone()))
    }

    fn state(
        &mut self,
        name: &str,
        s: &Value,
        parent_ql: QueryLanguage,
        index: &HashMap<String, StateId>,
        ptr: &str,
    ) -> State {
        let ql = match field(s, "QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => QueryLanguage::JSONata,
            Some("JSONPath") => QueryLanguage::JSONPath,
            _ => parent_ql,
        };
        let ty = field(s, "Type").and_then(Value::as_str).unwrap_or("");
        let transition = if let Some(n) = field(s, "Next") {
            Transition::Next(self.target(index, Some(n), &format!("{ptr}/Next")))
        } else if field(s, "End").and_then(Value::as_bool) == Some(true) {
            Transition::End
        } else {
            Transition::None
        };
        let parameters_key = if ql == QueryLanguage::JSONata {
            "Arguments"
        } else {
            "Parameters"
        };
        let io = Io {
            input_path: self.optional_path(s, "InputPath", ptr),
            output_path: self.optional_path(s, "OutputPath", ptr),
            result_path: self.optional_path(s, "ResultPath", ptr),
            parameters: if ty == "Map" {
                None
            } else {
                self.template(
                    field(s, parameters_key),
                    ql,
                    &format!("{ptr}/{parameters_key}"),
                )
            },
            result_selector: self.template(
                field(s, "ResultSelector"),
                ql,
                &format!("{ptr}/ResultSelector"),
            ),
            output: self.template(field(s, "Output"), ql, &format!("{ptr}/Output")),
        };
        let retry = field(s, "Retry")
            .and_then(Value::as_array)
            .map(|rs| rs.iter().map(retrier).collect())
            .unwrap_or_default();
        let mut catch = Vec::new();
        if let Some(cs) = field(s, "Catch").and_then(Value::as_array) {
            for (i, c) in cs.iter().enumerate() {
                let cptr = format!("{ptr}/Catch/{i}");
                catch.push(Catcher {
                    error_equals: strings(field(c, "ErrorEquals")),
                    next: self.target(index, field(c, "Next"), &format!("{cptr}/Next")),
                    result_path: self.optional_path(c, "ResultPath", &cptr),
                    output: self.template(field(c, "Output"), ql, &format!("{cptr}/Output")),
                    assign: self.template(field(c, "Assign"), ql, &format!("{cptr}/Assign")),
                });
            }
        }
        let assign = self.template(field(s, "Assign"), ql, &format!("{ptr}/Assign"));
        let kind = match ty {
            "Pass" => StateKind::Pass {
                result: field(s, "Result").cloned(),
            },
            "Task" => StateKind::Task(Box::new(TaskSpec {
                resource: field(s, "Resource")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                timeout: self.number(s, "TimeoutSeconds", ql, ptr),
                heartbeat: self.number(s, "HeartbeatSeconds", ql, ptr),
                credentials: field(s, "Credentials").cloned(),
            })),
            "Choice" => {
                let mut choices = Vec::new();
                if let Some(cs) = field(s, "Choices").and_then(Value::as_array) {
                    for (i, c) in cs.iter().enumerate() {
                        let cptr = format!("{ptr}/Choices/{i}");
                        let rule = match ChoiceRule::compile(c, ql) {
                            Ok(r) => r,
                            Err(e) => {
                                self.problem(&cptr, e);
                                ChoiceRule::Literal(false)
                            }
                        };
                        choices.push(ChoiceBranch {
                            rule,
                            next: self.target(index, field(c, "Next"), &format!("{cptr}/Next")),
                            assign: self.template(
                                field(c, "Assign"),
                                ql,
                                &format!("{cptr}/Assign"),
                            ),
                            output: self.template(
                                field(c, "Output"),
                                ql,
                                &format!("{cptr}/Output"),
                            ),
                        });
                    }
                }
                let default = field(s, "Default")
                    .map(|d| self.target(index, Some(d), &format!("{ptr}/Default")));
                StateKind::Choice { choices, default }
            }
            "Wait" => {
                let spec = if let Some(p) = field(s, "SecondsPath") {
                    self.path(p, &format!("{ptr}/SecondsPath"))
                        .map(WaitSpec::SecondsPath)
                } else if let Some(p) = field(s, "TimestampPath") {
                    self.path(p, &format!("{ptr}/TimestampPath"))
                        .map(WaitSpec::TimestampPath)
                } else if field(s, "Seconds").is_some() {
                    self.number(s, "Seconds", ql, ptr).map(WaitSpec::Seconds)
                } else {
                    self.template(field(s, "Timestamp"), ql, &format!("{ptr}/Timestamp"))
                        .map(WaitSpec::Timestamp)
                };
                match spec {
                    Some(w) => StateKind::Wait(w),
                    None => {
                        self.problem(
                            ptr,
                            "a Wait state needs Seconds, Timestamp, SecondsPath or TimestampPath",
                        );
                        StateKind::Succeed
                    }
                }
            }
            "Succeed" => StateKind::Succeed,
            "Fail" => StateKind::Fail(Box::new(FailSpec {
                error: self.template(field(s, "Error"), ql, &format!("{ptr}/Error")),
                error_path: self.dynamic(field(s, "ErrorPath"), &format!("{ptr}/ErrorPath")),
                cause: self.template(field(s, "Cause"), ql, &format!("{ptr}/Cause")),
                cause_path: self.dynamic(field(s, "CausePath"), &format!("{ptr}/CausePath")),
            })),
            "Parallel" => {
                let mut branches = Vec::new();
                if let Some(bs) = field(s, "Branches").and_then(Value::as_array) {
                    for (i, b) in bs.iter().enumerate() {
                        branches.push(self.machine(b, ql, &format!("{ptr}/Branches/{i}")));
                    }
                }
                StateKind::Parallel { branches }
            }
            "Map" => StateKind::Map(Box::new(self.map(s, ql, ptr))),
            other => {
                self.problem(
                    &format!("{ptr}/Type"),
                    format!("unknown state type '{other}'"),
                );
                StateKind::Succeed
            }
        };
        State {
            name: Arc::from(name),
            query_language: ql,
            kind,
            io,
            transition,
            retry,
            catch,
            assign,
        }
    }

    fn map(&mut self, s: &Value, ql: QueryLanguage, ptr: &str) -> MapSpec {
        let (proc_key, proc_v) = match field(s, "ItemProcessor") {
            Some(p) => ("ItemProcessor", p),
            None => ("Iterator", field(s, "Iterator").unwrap_or(&Value::Null)),
        };
        let mode = match proc_v
            .get("ProcessorConfig")
            .and_then(|c| c.get("Mode"))
            .and_then(Value::as_str)
        {
            Some("DISTRIBUTED") => MapMode::Distributed,
            _ => MapMode::Inline,
        };
        let processor = self.machine(proc_v, ql, &format!("{ptr}/{proc_key}"));
        let selector_key = if field(s, "ItemSelector").is_some() {
            "ItemSelector"
        } else {
            "Parameters"
        };
        let item_batcher = field(s, "ItemBatcher").map(|b| ItemBatcher {
            max_items_per_batch: self.number(
                b,
                "MaxItemsPerBatch",
                ql,
                &format!("{ptr}/ItemBatcher"),
            ),
            max_input_bytes_per_batch: self.number(
                b,
                "MaxInputBytesPerBatch",
                ql,
                &format!("{ptr}/ItemBatcher"),
            ),
            batch_input: self.template(
                field(b, "BatchInput"),
                ql,
                &format!("{ptr}/ItemBatcher/BatchInput"),
            ),
        });
        MapSpec {
            processor,
            mode,
            items_path: self.optional_path(s, "ItemsPath", ptr),
            items: self.template(field(s, "Items"), ql, &format!("{ptr}/Items")),
            item_selector: self.template(
                field(s, selector_key),
                ql,
                &format!("{ptr}/{selector_key}"),
            ),
            item_batcher,
            max_concurrency: self.number(s, "MaxConcurrency", ql, ptr),
            tolerated_failure_percentage: self.number(s, "ToleratedFailurePercentage", ql, ptr),
            tolerated_failure_count: self.number(s, "ToleratedFailureCount", ql, ptr),
            label: field(s, "Label")
                .and_then(Value::as_str)
                .map(str::to_string),
            item_reader: field(s, "ItemReader").cloned(),
            result_writer: field(s, "ResultWriter").cloned(),
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn retrier(r: &Value) -> Retrier {
    Retrier {
        error_equals: strings(field(r, "ErrorEquals")),
        interval_seconds: field(r, "IntervalSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(1),
        max_attempts: field(r, "MaxAttempts").and_then(Value::as_u64).unwrap_or(3),
        backoff_rate: field(r, "BackoffRate")
            .and_then(Value::as_f64)
            .unwrap_or(2.0),
        max_delay_seconds: field(r, "MaxDelaySeconds").and_then(Value::as_u64),
        jitter_full: field(r, "JitterStrategy").and_then(Value::as_str) == Some("FULL"),
    }
}

/// Escapes a key for use inside a JSON pointer (RFC 6901).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
