//! Property tests (proptest): whatever they are given, the engine's parsers and evaluators
//! return a value or an error and never panic — `asl::validate::validate`/`validate_text`,
//! `Definition::parse` (on arbitrary JSON and on ASL-shaped definitions, which are then started
//! and driven through the interpreter), `jsonpath::Path::parse` + `get`/`set`,
//! `intrinsics::parse` + `eval` (arbitrary strings and grammar-built calls) and
//! `jsonata::compile` + `eval`. A few semantic round trips ride along (reference-path set/get,
//! Base64 and JSON-string intrinsics). Case counts are kept small enough for the whole module to
//! run in a few seconds in a debug build.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use stepline_engine::asl::validate::{validate, validate_text};
use stepline_engine::asl::{Definition, StateMachineType};
use stepline_engine::error::Failure;
use stepline_engine::interp::{Command, Context, Execution, Input};
use stepline_engine::intrinsics::{self, Env};
use stepline_engine::jsonata;
use stepline_engine::jsonpath::{Path, Root};
use stepline_engine::runner::RunIdentity;

const T0: i64 = 1_700_000_000_000;

/// `cases` cases (or `STEPLINE_PROPTEST_CASES` for a longer local hunt), and no regression
/// files written next to the sources.
fn cfg(cases: u32) -> ProptestConfig {
    let cases = std::env::var("STEPLINE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------
// Generators

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            10,
            1000,
            99_999_999,
            100_000_000,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(Value::from),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_]{0,8}",
        any::<String>(),
        prop::sample::select(vec![
            "$",
            "$.a",
            "$$",
            "$$.Execution.Id",
            "$.a[0]",
            "$..x",
            "$x",
            "{% 1 + 1 %}",
            "{% $states.input %}",
            "States.Format('{}', $.a)",
            "States.ALL",
            "States.TaskFailed",
            "States.Timeout",
            "FULL",
            "JSONata",
            "JSONPath",
            "DISTRIBUTED",
            "INLINE",
            "2016-03-14T01:59:00Z",
            "S0",
            "S1",
            "S2",
        ])
        .prop_map(str::to_string),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Data-flow and option fields (never transitions, so generated graphs stay acyclic).
const EXTRA_FIELDS: &[&str] = &[
    "Comment",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "Result",
    "Assign",
    "Output",
    "Arguments",
    "TimeoutSeconds",
    "TimeoutSecondsPath",
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "SecondsPath",
    "Timestamp",
    "TimestampPath",
    "ItemsPath",
    "Items",
    "ItemSelector",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "ItemBatcher",
    "Error",
    "Cause",
    "ErrorPath",
    "CausePath",
    "Label",
    "Retry",
];

/// Fields of which a state may hold only one.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("TimeoutSeconds", "TimeoutSecondsPath"),
    ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ("MaxConcurrency", "MaxConcurrencyPath"),
    ("Error", "ErrorPath"),
    ("Cause", "CausePath"),
    ("SecondsPath", "Timestamp"),
    ("SecondsPath", "TimestampPath"),
    ("Timestamp", "TimestampPath"),
    ("Result", "Parameters"),
];

/// Whether `field` belongs on a state of type `ty` under JSONata (`jsonata`) or JSONPath.
/// Roughly AWS's rules; the point is to produce mostly valid definitions, plus some noise.
fn field_allowed(ty: &str, field: &str, jsonata: bool, distributed: bool) -> bool {
    let io_path = ["InputPath", "OutputPath"].contains(&field);
    let result = ["ResultPath", "ResultSelector"].contains(&field);
    match (ty, field) {
        (_, "Comment") => true,
        (_, "Assign") => ty != "Succeed" && ty != "Fail",
        (_, "Output") => jsonata && ty != "Fail",
        _ if jsonata && (io_path || result || field.ends_with("Path") || field == "Parameters") => {
            false
        }
        ("Pass", f) => {
            io_path || ["ResultPath", "Parameters"].contains(&f) || (f == "Result" && !jsonata)
        }
        ("Task", f) => {
            io_path
                || result
                || [
                    "Parameters",
                    "Arguments",
                    "TimeoutSeconds",
                    "TimeoutSecondsPath",
                    "HeartbeatSeconds",
                    "HeartbeatSecondsPath",
                    "Retry",
                ]
                .contains(&f)
                    && (jsonata || f != "Arguments")
        }
        ("Wait", f) => io_path || ["SecondsPath", "Timestamp", "TimestampPath"].contains(&f),
        ("Choice", _) | ("Succeed", _) => io_path,
        ("Fail", f) => ["Error", "Cause", "ErrorPath", "CausePath"].contains(&f),
        ("Parallel", f) => {
            io_path
                || result
                || f == "Retry"
                || f == (if jsonata { "Arguments" } else { "Parameters" })
        }
        ("Map", f) => {
            io_path
                || result
                || [
                    "ItemSelector",
                    "MaxConcurrency",
                    "MaxConcurrencyPath",
                    "Retry",
                ]
                .contains(&f)
                || (f == "Items" && jsonata)
                || (f == "ItemsPath" && !jsonata)
                || (distributed
                    && [
                        "ToleratedFailureCount",
                        "ToleratedFailurePercentage",
                        "ItemBatcher",
                        "Label",
                    ]
                    .contains(&f))
        }
        _ => false,
    }
}

fn sample(values: &[Value]) -> BoxedStrategy<Value> {
    prop::sample::select(values.to_vec()).boxed()
}

/// A plausible value for one data-flow field; now and then anything at all.
fn field_value(field: &'static str) -> BoxedStrategy<Value> {
    let typed = match field {
        "InputPath" | "OutputPath" | "ItemsPath" => sample(&[json!("$"), json!("$.a"), json!("$.items"), json!("$.in"), Value::Null, json!("$x"), json!("$..a")]),
        "ResultPath" => sample(&[json!("$"), json!("$.r"), json!("$.a.b"), Value::Null, json!("$.items[0]")]),
        "Parameters" | "ResultSelector" | "ItemSelector" | "Assign" | "Arguments" => sample(&[
            json!({"k.$": "$", "c.$": "$$.State.Name", "lit": [1, "two"]}),
            json!({"a.$": "$.a", "n": 1}),
            json!({"f.$": "States.Format('{} x', $.a)", "u.$": "States.UUID()"}),
            json!({"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"}),
            json!({"y.$": "States.ArrayRange(1, 5, 2)", "h.$": "States.Hash('x', 'SHA-256')"}),
            json!({"m.$": "States.MathAdd($.a, 1)", "r.$": "$$.State.RetryCount"}),
            json!({"x": "{% $states.input %}", "n": "{% $count([1, 2]) %}"}),
            json!({"s": "{% $string($states.input) %}", "v": "{% $states.context.State.Name %}"}),
            json!("{% $states.input %}"),
        ]),
        "Result" => arb_json().boxed(),
        "Comment" => "\\PC{0,12}".prop_map(Value::String).boxed(),
        "Output" | "Items" => sample(&[json!("{% $states.input %}"), json!("{% [1, 2] %}"), json!({"o": "{% 1 %}"}), json!([1, 2, 3]), json!("{% $states.input.items %}")]),
        "TimeoutSeconds" | "HeartbeatSeconds" | "MaxConcurrency" | "ToleratedFailureCount" => {
            prop_oneof![8 => (1i64..30).prop_map(Value::from), 1 => sample(&[json!(0), json!(99_999_999), json!(-1), json!(1.5), json!("3"), json!("{% 2 %}")])].boxed()
        }
        "ToleratedFailurePercentage" => sample(&[json!(0), json!(50), json!(100), json!(12.5), json!(101)]),
        "TimeoutSecondsPath" | "HeartbeatSecondsPath" | "SecondsPath" | "MaxConcurrencyPath" => sample(&[json!("$.a"), json!("$.n"), json!("$.items")]),
        "Timestamp" => sample(&[json!("2023-11-14T22:13:25Z"), json!("2000-01-01T00:00:00Z"), json!("{% $states.input.t %}")]),
        "TimestampPath" => sample(&[json!("$.t"), json!("$.a")]),
        "Error" | "Cause" => sample(&[json!("E"), json!("Custom.Error"), json!("{% 'jsonata' %}")]),
        "ErrorPath" | "CausePath" => sample(&[json!("$.a"), json!("States.Format('e{}', $.a)"), json!("$$.State.Name")]),
        "ItemBatcher" => sample(&[json!({"MaxItemsPerBatch": 2}), json!({"MaxItemsPerBatch": 1, "BatchInput": {"b": 1}})]),
        "Label" => sample(&[json!("lbl"), json!("Label_2")]),
        "Retry" => sample(&[
            json!([{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}]),
            json!([{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "BackoffRate": 1.5, "MaxDelaySeconds": 2, "JitterStrategy": "FULL"}]),
            json!([{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1}, {"ErrorEquals": ["States.TaskFailed"]}]),
        ]),
        _ => arb_json().boxed(),
    };
    prop_oneof![12 => typed, 1 => arb_json()].boxed()
}

fn arb_extra() -> impl Strategy<Value = Vec<(String, Value)>> {
    let pair = prop::sample::select(EXTRA_FIELDS)
        .prop_flat_map(|f| field_value(f).prop_map(move |v| (f.to_string(), v)));
    prop::collection::vec(pair, 0..6)
}

/// A generated state machine: states with their extra fields.
type GenMachine = Vec<(Shape, Vec<(String, Value)>)>;

/// The skeleton of one state; its transitions are filled in at rendering, forward only.
#[derive(Debug, Clone)]
enum Shape {
    Pass,
    Task,
    Wait,
    Choice,
    Succeed,
    Fail,
    Parallel(Vec<GenMachine>),
    Map(Vec<(Shape, Vec<(String, Value)>)>, bool),
}

fn arb_machine(depth: u32) -> BoxedStrategy<GenMachine> {
    let leaf = prop_oneof![
        Just(Shape::Pass),
        Just(Shape::Task),
        Just(Shape::Wait),
        Just(Shape::Choice),
        Just(Shape::Succeed),
        Just(Shape::Fail),
    ];
    let shape: BoxedStrategy<Shape> = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            4 => leaf,
            1 => prop::collection::vec(arb_machine(depth - 1), 1..3).prop_map(Shape::Parallel),
            1 => (arb_machine(depth - 1), any::<bool>()).prop_map(|(m, d)| Shape::Map(m, d)),
        ]
        .boxed()
    };
    prop::collection::vec((shape, arb_extra()), 1..4).boxed()
}

/// Renders a machine whose states only ever transition to later states (so every run ends).
/// `noise` keeps fields that do not belong on the state, to exercise the validator's errors.
fn render_machine(
    states: &[(Shape, Vec<(String, Value)>)],
    prefix: &str,
    jsonata: bool,
    noise: bool,
) -> Value {
    let name = |i: usize| format!("{prefix}S{i}");
    let mut out = Map::new();
    for (i, (shape, extra)) in states.iter().enumerate() {
        let next = (i + 1 < states.len()).then(|| name(i + 1));
        let mut s = Map::new();
        let ty = match shape {
            // Only the last state may end the machine, or the states after it are unreachable.
            Shape::Succeed | Shape::Fail if next.is_some() => "Pass",
            Shape::Pass => "Pass",
            Shape::Task => "Task",
            Shape::Wait => "Wait",
            Shape::Choice if next.is_some() => "Choice",
            Shape::Choice | Shape::Succeed => "Succeed",
            Shape::Fail => "Fail",
            Shape::Parallel(_) => "Parallel",
            Shape::Map(..) => "Map",
        };
        let terminal = matches!(ty, "Choice" | "Succeed" | "Fail");
        s.insert("Type".into(), json!(ty));
        let mut distributed = false;
        match shape {
            Shape::Task => {
                s.insert(
                    "Resource".into(),
                    json!("arn:aws:states:us-east-1:111111111111:activity:a"),
                );
            }
            Shape::Choice if ty == "Choice" => {
                let target = next.clone().unwrap_or_default();
                let rule = if jsonata {
                    json!({"Condition": "{% $states.input.a = 1 %}", "Next": target})
                } else {
                    json!({"Variable": "$.a", "NumericEquals": 1, "Next": target})
                };
                s.insert("Choices".into(), json!([rule]));
                s.insert("Default".into(), json!(target));
            }
            Shape::Parallel(branches) => {
                let bs: Vec<Value> = branches
                    .iter()
                    .enumerate()
                    .map(|(b, m)| render_machine(m, &format!("{prefix}S{i}B{b}"), jsonata, noise))
                    .collect();
                s.insert("Branches".into(), Value::Array(bs));
            }
            Shape::Map(m, d) => {
                distributed = *d;
                let mut p = render_machine(m, &format!("{prefix}S{i}M"), jsonata, noise);
                if distributed {
                    p["ProcessorConfig"] =
                        json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"});
                }
                s.insert("ItemProcessor".into(), p);
                if jsonata {
                    s.insert("Items".into(), json!("{% $states.input.items %}"));
                } else {
                    s.insert("ItemsPath".into(), json!("$.items"));
                }
            }
            _ => {}
        }
        for (k, v) in extra {
            if noise || field_allowed(ty, k, jsonata, distributed) {
                s.insert(k.clone(), v.clone());
            }
        }
        for (a, b) in EXCLUSIVE {
            if s.contains_key(*a) {
                s.remove(*b);
            }
        }
        if ty == "Wait"
            && !["SecondsPath", "Timestamp", "TimestampPath"]
                .iter()
                .any(|k| s.contains_key(*k))
        {
            s.insert("Seconds".into(), json!(1));
        }
        if !terminal {
            match &next {
                Some(n) => s.insert("Next".into(), json!(n)),
                None => s.insert("End".into(), json!(true)),
            };
        }
        if matches!(shape, Shape::Task | Shape::Parallel(_) | Shape::Map(..)) {
            if let Some(n) = &next {
                s.insert(
                    "Catch".into(),
                    json!([{"ErrorEquals": ["States.ALL"], "Next": n}]),
                );
            }
        }
        out.insert(name(i), Value::Object(s));
    }
    json!({"StartAt": name(0), "States": out})
}

fn arb_definition() -> impl Strategy<Value = Value> {
    (
        arb_machine(2),
        any::<bool>(),
        prop::option::of(1u64..5),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(m, jsonata, timeout, noise)| {
            let mut d = render_machine(&m, "", jsonata, noise);
            if jsonata {
                d["QueryLanguage"] = json!("JSONata");
            }
            if let Some(t) = timeout {
                d["TimeoutSeconds"] = json!(t);
            }
            d
        })
}

fn arb_run_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_json(),
        (prop::collection::vec(arb_json(), 0..4), arb_json())
            .prop_map(|(items, a)| json!({"items": items, "a": a})),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers

fn parse(v: &Value) -> Option<Definition> {
    Definition::parse(v, StateMachineType::Standard).ok()
}

/// Starts the execution and drives it: tasks are started, heartbeated and answered (success
/// or failure alternating), timers fire in order. Returns the number of inputs applied.
/// Checks two runtime invariants on the way: no timer is scheduled in the past, and no timer
/// is left pending once the execution has finished.
fn drive(def: &Definition, input: Value, seed: u64) -> usize {
    let mut exec = Execution::new(RunIdentity::default().info(input, T0, seed));
    let mut inbox = std::collections::VecDeque::from([Input::Start]);
    let mut timers: std::collections::BTreeMap<u64, i64> = std::collections::BTreeMap::new();
    let mut now = T0;
    let mut answer = 0u64;
    for n in 0..300 {
        if exec.is_finished() {
            assert!(
                timers.is_empty(),
                "timers {timers:?} outlive the finished execution"
            );
            return n;
        }
        let input = match inbox.pop_front() {
            Some(i) => i,
            None => match timers
                .iter()
                .min_by_key(|(&id, &at)| (at, id))
                .map(|(&id, &at)| (id, at))
            {
                Some((id, at)) => {
                    timers.remove(&id);
                    now = now.max(at);
                    Input::TimerFired { timer: id }
                }
                None => return n,
            },
        };
        let ctx = Context {
            now_ms: now,
            ..Context::default()
        };
        let step = match exec.apply(def, &input, &ctx) {
            Ok(s) => s,
            // An invariant error is a bug too, but a reported one, not a panic.
            Err(e) => panic!("interpreter invariant broken on {input:?}: {e}"),
        };
        for c in step.commands {
            match c {
                Command::ScheduleTimer { timer, fire_at_ms } => {
                    assert!(
                        fire_at_ms >= now,
                        "timer {timer} scheduled in the past ({fire_at_ms} < {now})"
                    );
                    timers.insert(timer, fire_at_ms);
                }
                Command::CancelTimer { timer } => {
                    timers.remove(&timer);
                }
                Command::DispatchTask(d) => {
                    answer += 1;
                    inbox.push_back(Input::TaskStarted {
                        task: d.task,
                        worker_name: "w".into(),
                    });
                    inbox.push_back(Input::TaskHeartbeat { task: d.task });
                    inbox.push_back(if answer % 3 == 0 {
                        Input::TaskFailed {
                            task: d.task,
                            error: Some("Boom".into()),
                            cause: None,
                        }
                    } else {
                        Input::TaskSucceeded {
                            task: d.task,
                            output: json!({"answer": answer, "in": d.input}),
                        }
                    });
                }
                _ => {}
            }
        }
    }
    300
}

/// An intrinsic environment over a fixed document.
struct DummyEnv {
    input: Value,
    context: Value,
    vars: Map<String, Value>,
    rng: u64,
}

impl DummyEnv {
    fn new(input: Value) -> DummyEnv {
        let mut vars = Map::new();
        vars.insert("v".into(), json!({"a": [1, 2, 3], "s": "text"}));
        DummyEnv {
            input,
            context: json!({"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:m:e", "Input": {}},
                            "State": {"Name": "S", "RetryCount": 0}}),
            vars,
            rng: 1,
        }
    }
}

impl Env for DummyEnv {
    fn resolve(&mut self, path: &Path) -> Result<Value, Failure> {
        let doc = match path.root() {
            Root::Input => &self.input,
            Root::Context => &self.context,
            Root::Variable(n) => self
                .vars
                .get(n)
                .ok_or_else(|| Failure::runtime(format!("no variable {n}")))?,
        };
        path.get(doc)
            .ok_or_else(|| Failure::runtime(format!("path {} matched nothing", path.source())))
    }

    fn random_u64(&mut self) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.rng
    }
}

fn eval_intrinsic(src: &str, input: Value) -> Option<Result<Value, Failure>> {
    let call = intrinsics::parse(src).ok()?;
    Some(call.eval(&mut DummyEnv::new(input)))
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
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

// ---------------------------------------------------------------------------------------
// Grammar-ish generators for paths, intrinsics and JSONata

fn arb_path_text() -> impl Strategy<Value = String> {
    let root = prop::sample::select(vec!["$", "$$", "$v", "$x_1", "", "$.", "$$$"]);
    let seg = prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,5}".prop_map(|n| format!(".{n}")),
        "[a-z]{0,4}".prop_map(|n| format!("['{n}']")),
        (-3i64..5).prop_map(|i| format!("[{i}]")),
        prop::sample::select(vec![
            "[*]",
            ".*",
            "..a",
            "..*",
            "[0:2]",
            "[-1:]",
            "[::2]",
            "[?(@.a > 1)]",
            "[?(@.b)]",
            "['a','b']",
            "[0,1]",
            "[",
            "]",
            ".",
            "..",
            "['",
            "[?(",
            "[1:2:0]",
            "[99999999999999999999]",
            ".length()",
        ])
        .prop_map(str::to_string),
        any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ];
    (root, prop::collection::vec(seg, 0..5)).prop_map(|(r, segs)| format!("{r}{}", segs.concat()))
}

fn arb_intrinsic_text() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = intrinsics::Function::ALL
        .iter()
        .map(|f| f.name())
        .chain(["States.Nope", "States.format", "States.", "Format"])
        .collect();
    let leaf_arg = prop_oneof![
        (-5i64..20).prop_map(|n| n.to_string()),
        (-5.0f64..5.0).prop_map(|f| format!("{f:.2}")),
        prop::sample::select(vec![
            "'a,b,c'",
            "','",
            "'{} and {}'",
            "'{}'",
            "'\\''",
            "'\\{\\}'",
            "'SHA-256'",
            "'MD5'",
            "'SHA-1'",
            "'SHA-384'",
            "'SHA-512'",
            "'nope'",
            "'aGVsbG8='",
            "'{\"a\":1}'",
            "'[1,2'",
            "true",
            "false",
            "null",
            "$",
            "$.a",
            "$.s",
            "$.n",
            "$.arr",
            "$.obj",
            "$$.Execution.Id",
            "$v",
            "$v.a",
            "$missing",
            "$.nope",
            "'",
            "''",
            "1e400",
            "-0",
            "99999999999",
            "'\\x'",
        ])
        .prop_map(str::to_string),
    ];
    let args = leaf_arg.prop_recursive(3, 16, 4, move |inner| {
        (
            prop::sample::select(names.clone()),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(n, a)| format!("{n}({})", a.join(", ")))
    });
    (
        prop::sample::select(intrinsics::Function::ALL.to_vec()),
        prop::collection::vec(args, 0..4),
        any::<bool>(),
    )
        .prop_map(|(f, a, close)| {
            format!(
                "{}({}{}",
                f.name(),
                a.join(","),
                if close { ")" } else { "" }
            )
        })
}

fn intrinsic_input() -> Value {
    json!({"a": [1, 2, 2, 3], "s": "a,b,,c", "n": 7, "arr": [[1], {"k": "v"}, "x", null], "obj": {"a": {"b": 1}}})
}

fn arb_jsonata_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        (-100i64..100).prop_map(|n| n.to_string()),
        "[a-z]{1,4}".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "$states.input",
            "$states.input.a",
            "$states.context.Execution.Id",
            "$x",
            "$v.a",
            "true",
            "null",
            "$uuid()",
            "$random()",
            "$count([1,2])",
            "$string(1)",
            "$partition([1,2,3],2)",
            "$range(0,3,1)",
            "$hash(\"a\",\"SHA-256\")",
            "$parse(\"{}\")",
            "$now()",
            "[1..3]",
            "{\"k\": 1}",
            "$",
            "$$",
            "(",
            ")",
            "$sum($states.input.*)",
            "$map([1,2], function($v){$v*2})",
            "$states.input[0]",
            "\"unterminated",
        ])
        .prop_map(str::to_string),
    ];
    atom.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "&", "=", "!=", "<", "and", "or", ".", "?", ":"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            prop::collection::vec(inner, 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn validate_never_panics(v in arb_json(), express in any::<bool>()) {
        let ty = if express { StateMachineType::Express } else { StateMachineType::Standard };
        for d in validate(&v, ty) {
            prop_assert!(!d.code.is_empty() && !d.severity.is_empty(), "diagnostic without code/severity: {d:?}");
        }
    }

    #[test]
    fn validate_text_never_panics(s in any::<String>()) {
        let _ = validate_text(&s, StateMachineType::Standard);
    }

    #[test]
    fn validate_text_rejects_non_json(s in "[^\\[{\"0-9tfn\\s-]\\PC{0,20}") {
        // Text that cannot start a JSON value is never a valid definition.
        let diags = validate_text(&s, StateMachineType::Standard);
        prop_assert!(diags.iter().any(|d| d.severity == "ERROR"), "'{s}' accepted: {diags:?}");
    }

    #[test]
    fn definition_parse_never_panics(v in arb_json()) {
        let _ = Definition::parse(&v, StateMachineType::Standard);
        let _ = Definition::parse_text(&v.to_string(), StateMachineType::Express);
    }

    #[test]
    fn asl_shaped_definitions_parse_without_panicking(v in arb_definition()) {
        let _ = validate(&v, StateMachineType::Standard);
        let _ = Definition::parse(&v, StateMachineType::Standard);
    }
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Definitions that parse can be started and driven to their end without a panic or an
    /// interpreter invariant error.
    #[test]
    fn accepted_definitions_run_without_panicking(v in arb_definition(), input in arb_run_input(), seed in any::<u64>()) {
        if let Some(def) = parse(&v) {
            drive(&def, input, seed);
        }
    }

    /// Durations read from the input at run time (not checked by the validator) must not
    /// overflow the interpreter's arithmetic.
    #[test]
    fn runtime_durations_never_panic(n in arb_number(), which in 0usize..4) {
        let def = match which {
            0 => json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.n", "End": true}}}),
            1 => json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:us-east-1:111111111111:activity:a", "TimeoutSecondsPath": "$.n", "End": true}}}),
            2 => json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:us-east-1:111111111111:activity:a", "HeartbeatSecondsPath": "$.n", "End": true}}}),
            _ => json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrencyPath": "$.n", "ItemsPath": "$.items",
                    "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}}),
        };
        let def = parse(&def).expect("fixed definition must parse");
        drive(&def, json!({"n": n, "items": [1, 2]}), 1);
    }

    #[test]
    fn huge_wait_timestamps_never_panic(year in prop::sample::select(vec![1, 1969, 1970, 2023, 9999, 10000, 275760, 999999]),
                                        sign in any::<bool>()) {
        let ts = if year > 9999 { format!("{}{year}-01-01T00:00:00Z", if sign { "+" } else { "-" }) } else { format!("{year:04}-01-01T00:00:00Z") };
        let def = parse(&json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.t", "End": true}}}))
            .expect("fixed definition must parse");
        drive(&def, json!({"t": ts}), 1);
    }
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn path_parse_get_set_never_panic(s in prop_oneof![any::<String>(), arb_path_text()], doc in arb_json(), v in arb_json()) {
        if let Ok(p) = Path::parse(&s) {
            let _ = p.get(&doc);
            let _ = p.get_ref(&doc);
            let _ = p.normalized();
            let mut d = doc.clone();
            let _ = p.set(&mut d, v);
        }
        let _ = Path::parse_reference(&s);
    }

    /// Writing through a reference path and reading it back gives the written value.
    #[test]
    fn reference_path_set_then_get(fields in prop::collection::vec(prop_oneof!["[a-z]{1,4}".prop_map(|f| format!(".{f}")), "[a-z ]{1,4}".prop_map(|f| format!("['{f}']"))], 1..4),
                                   doc in arb_json(), v in arb_json()) {
        let src = format!("${}", fields.concat());
        let p = Path::parse(&src).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
        prop_assert!(p.is_reference(), "{src} should be a reference path");
        let mut d = if doc.is_object() { doc } else { json!({}) };
        if p.set(&mut d, v.clone()).is_ok() {
            prop_assert_eq!(p.get(&d), Some(v), "{} after set on {}", src, d);
        }
    }

    #[test]
    fn intrinsic_parse_never_panics(s in prop_oneof![any::<String>(), "States\\.[A-Za-z]{0,12}\\(\\PC{0,30}", arb_intrinsic_text()]) {
        let _ = eval_intrinsic(&s, intrinsic_input());
    }

    #[test]
    fn intrinsic_eval_never_panics(s in arb_intrinsic_text(), input in arb_json()) {
        if let Ok(call) = intrinsics::parse(&s) {
            let _ = call.paths();
            let _ = call.eval(&mut DummyEnv::new(intrinsic_input()));
            let _ = call.eval(&mut DummyEnv::new(input));
        }
    }

    #[test]
    fn intrinsic_string_round_trips(s in "\\PC{0,200}", x in arb_json()) {
        let input = json!({"s": s, "x": x});
        let got = eval_intrinsic("States.Base64Decode(States.Base64Encode($.s))", input.clone())
            .expect("parses")
            .map_err(|f| TestCaseError::fail(format!("{f}")))?;
        prop_assert_eq!(got, json!(s));
        let text = eval_intrinsic("States.JsonToString($.x)", input.clone()).expect("parses")
            .map_err(|f| TestCaseError::fail(format!("{f}")))?;
        prop_assert!(text.is_string(), "JsonToString gave {}", text);
        let back = eval_intrinsic("States.StringToJson(States.JsonToString($.x))", input).expect("parses")
            .map_err(|f| TestCaseError::fail(format!("{f}")))?;
        prop_assert!(json_eq(&back, &x), "StringToJson(JsonToString(x)) = {} for x = {}", back, x);
    }

    #[test]
    fn intrinsic_array_length_counts_arguments(args in prop::collection::vec(prop::sample::select(vec!["1", "'a'", "true", "null", "$.n", "States.Array()"]), 0..12)) {
        let src = format!("States.ArrayLength(States.Array({}))", args.join(", "));
        let got = eval_intrinsic(&src, intrinsic_input()).expect("parses").map_err(|f| TestCaseError::fail(format!("{f}")))?;
        prop_assert_eq!(got, json!(args.len()));
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn jsonata_compile_eval_never_panics(s in prop_oneof![any::<String>(), arb_jsonata_text()], input in arb_json()) {
        if let Ok(e) = jsonata::compile(&s) {
            let _ = e.source();
            let states = json!({"input": input, "context": {"Execution": {"Id": "x"}}});
            let mut vars = Map::new();
            vars.insert("x".into(), json!(3));
            vars.insert("v".into(), json!({"a": [1, 2]}));
            let mut n = 0u64;
            let mut random = || { n += 1; n.wrapping_mul(0x9E37_79B9_7F4A_7C15) };
            let _ = e.eval(&states, &vars, &mut random);
        }
        let _ = jsonata::is_expression(&s);
    }
}

/// The ASL-shaped generator must mostly produce definitions the engine accepts, or the
/// run-without-panicking property above would test next to nothing.
#[test]
fn generated_definitions_are_mostly_accepted() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_definition();
    let total = 200;
    let (mut accepted, mut long_runs) = (0, 0);
    let mut rejections = Vec::new();
    for _ in 0..total {
        let v = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("generator failed: {e}"))
            .current();
        match Definition::parse(&v, StateMachineType::Standard) {
            Ok(def) => {
                accepted += 1;
                if drive(&def, json!({"items": [1, 2], "a": 1}), 3) > 3 {
                    long_runs += 1;
                }
            }
            Err(e) if rejections.len() < 5 => rejections.push(e.to_string()),
            Err(_) => {}
        }
    }
    eprintln!(
        "generated definitions: {accepted}/{total} accepted, {long_runs} ran more than 3 inputs"
    );
    assert!(
        accepted * 2 >= total,
        "only {accepted} of {total} generated definitions were accepted; e.g.\n  {}",
        rejections.join("\n  ")
    );
    assert!(
        long_runs * 10 >= total,
        "only {long_runs} of {total} generated definitions did real work"
    );
}
