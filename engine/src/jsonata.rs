//! JSONata expressions (`{% … %}`) for states whose `QueryLanguage` is `JSONata`.
//!
//! Parsing and evaluation are delegated to [`jsonata_core`]; this module adds what AWS Step
//! Functions layers on top of JSONata 2.0.6:
//!
//! * `$states` (`input`, `context`, `result`, `errorOutput`) and every workflow variable are
//!   bound before evaluation. The evaluation input (`$`) itself is *undefined*: Step Functions
//!   has no implicit context document, so a bare field name yields nothing.
//! * The Step Functions functions `$partition(array, size)`, `$range(start, end[, step])`,
//!   `$hash(data, algorithm)` (`MD5`, `SHA-1`, `SHA-256`, `SHA-384`, `SHA-512`),
//!   `$random([seed])`, `$uuid()` and `$parse(jsonString)`.
//! * `$eval` is not available (AWS: "use `$parse` instead"); calling it fails with T1006, like
//!   any other unknown function.
//! * The JSONata 2.1 operators `??` and `?:` are rejected when compiling: AWS implements the
//!   2.0.6 specification, whose parser reports them as S0211.
//!
//! The module is pure. Randomness (`$random()`, `$uuid()`, `$shuffle`) comes from one draw of
//! the caller's `random` closure, which seeds a SplitMix64 generator for the evaluation; a
//! seeded `$random(seed)` depends only on its seed. The clock is never read: `$now()` and
//! `$millis()` report `$states.context.State.EnteredTime` (falling back to
//! `$states.context.Execution.StartTime`), so all calls in one evaluation agree, as JSONata
//! requires.
//!
//! Evaluation is bounded (a wall-clock budget of [`EVAL_TIMEOUT_MS`], jsonata-core's recursion
//! limits, a cap on sequence lengths) and never panics: errors come back as `Err(message)`
//! with JSONata's `CODE: text` wording, e.g. `T1006: Attempted to invoke a non-function`. The
//! interpreter wraps them into `States.QueryEvaluationError` causes.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use jsonata_core::ast::{AstNode, BinaryOp, Stage};
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError, EvaluatorOptions};
use jsonata_core::parser;
use jsonata_core::value::{with_stack, JValue};
use serde_json::{Map, Number, Value};

/// Wall-clock budget of one evaluation, in milliseconds (JSONata error D1012 past it). It only
/// stops runaway expressions (`($f := function(){ $f() }; $f())`).
pub const EVAL_TIMEOUT_MS: u64 = 10_000;

/// Longest sequence an evaluation may build (D2015 past it); JSONata's own range operator stops
/// at the same size.
pub const MAX_SEQUENCE_LENGTH: usize = 10_000_000;

/// Widest string `$pad` may build. jsonata-core would otherwise allocate gigabytes for
/// `$pad('x', 1e300)`, in one builtin call the timeout cannot interrupt.
pub const MAX_PAD_WIDTH: f64 = 10_000_000.0;

/// Deepest nesting of arrays and objects a result may have.
pub const MAX_RESULT_DEPTH: usize = 512;

/// What [`Expression::eval`] returns as its error when the expression produced a value JSON
/// cannot hold (a function or a regex). AWS words the whole cause as "The JSONata expression
/// '…' specified for the field '…' returned an unsupported result type." rather than "threw an
/// error during evaluation"; [`Expression::eval_detailed`] tells the two apart without string
/// comparison.
pub const UNSUPPORTED_RESULT_TYPE: &str = "returned an unsupported result type.";

/// Functions whose presence makes an evaluation draw from the caller's random closure.
const RANDOM_FUNCTIONS: [&str; 3] = ["random", "uuid", "shuffle"];
/// Functions that read the (virtual) clock.
const CLOCK_FUNCTIONS: [&str; 2] = ["now", "millis"];

/// Returns the expression inside `{% … %}` (trimmed), or `None` when `s` is not a JSONata
/// expression string. AWS requires the string to start with `{%` and end with `%}` exactly, with
/// no surrounding whitespace; anything else is a literal string.
pub fn is_expression(s: &str) -> Option<&str> {
    if s.len() >= 4 && s.starts_with("{%") && s.ends_with("%}") {
        Some(s[2..s.len() - 2].trim())
    } else {
        None
    }
}

/// A compiled JSONata expression. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    ast: Arc<AstNode>,
    uses_random: bool,
    uses_clock: bool,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why an evaluation gave no JSON value; see [`Expression::eval_detailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// Evaluation raised an error; the message is JSONata's (`CODE: text`).
    Failed(String),
    /// The result was a function or a regex, which JSON cannot represent.
    UnsupportedResultType,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Failed(message) => f.write_str(message),
            EvalError::UnsupportedResultType => f.write_str(UNSUPPORTED_RESULT_TYPE),
        }
    }
}

/// Compiles the text between `{%` and `%}` (already trimmed).
pub fn compile(src: &str) -> Result<Expression, String> {
    let ast = match catch_unwind(|| parser::parse(src)) {
        Ok(Ok(ast)) => ast,
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err(format!("Unable to parse the JSONata expression '{src}'")),
    };
    let scan = scan(&ast);
    if let Some(symbol) = scan.newer_operator {
        return Err(format!(
            "S0211: The symbol {symbol} cannot be used as a unary operator"
        ));
    }
    let called = |names: &[&str]| names.iter().any(|n| scan.names.iter().any(|m| m == n));
    Ok(Expression {
        source: Arc::from(src),
        uses_random: called(&RANDOM_FUNCTIONS),
        uses_clock: called(&CLOCK_FUNCTIONS),
        ast: Arc::new(ast),
    })
}

impl Expression {
    /// The expression text, as compiled.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `$name` variables the expression reads and does not bind itself (`:=`, lambda
    /// parameters, `@$x`, `#$i`), sorted and without duplicates. Includes `states`; function
    /// calls (`$name(…)`) are not listed, since workflow variables cannot hold functions.
    /// Scoping is ignored: a name bound anywhere in the expression is never reported.
    pub fn referenced_variables(&self) -> Vec<String> {
        let scan = scan(&self.ast);
        let mut out: Vec<String> = scan
            .reads
            .into_iter()
            .filter(|name| !scan.bound.contains(name))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Evaluates with `$states` bound to `states` (`{"input", "context", "result",
    /// "errorOutput"}`, as given) and each workflow variable bound by name (`$myVar`).
    /// `Ok(None)` means the expression returned nothing (undefined). A function or regex result
    /// is `Err(UNSUPPORTED_RESULT_TYPE)`.
    pub fn eval(
        &self,
        states: &Value,
        variables: &Map<String, Value>,
        random: &mut dyn FnMut() -> u64,
    ) -> Result<Option<Value>, String> {
        self.eval_detailed(states, variables, random)
            .map_err(|err| err.to_string())
    }

    /// [`eval`](Self::eval), telling an unsupported result apart from an evaluation error.
    pub fn eval_detailed(
        &self,
        states: &Value,
        variables: &Map<String, Value>,
        random: &mut dyn FnMut() -> u64,
    ) -> Result<Option<Value>, EvalError> {
        let seed = if self.uses_random { random() } else { 0 };
        let run = AssertUnwindSafe(|| self.run(states, variables, seed));
        match catch_unwind(run) {
            Ok(result) => result,
            Err(_) => Err(EvalError::Failed(
                "Internal error while evaluating the JSONata expression".to_string(),
            )),
        }
    }

    fn run(
        &self,
        states: &Value,
        variables: &Map<String, Value>,
        seed: u64,
    ) -> Result<Option<Value>, EvalError> {
        let mut context = Context::new();
        for (name, value) in variables {
            context.bind(name.clone(), to_jvalue(value));
        }
        context.bind("states".to_string(), to_jvalue(states));
        let now = if self.uses_clock {
            clock_reading(states)
        } else {
            None
        };
        let options = EvaluatorOptions {
            timeout_ms: Some(EVAL_TIMEOUT_MS),
            max_sequence_length: Some(MAX_SEQUENCE_LENGTH),
            ..Default::default()
        };
        let mut evaluator = Evaluator::with_options(context, options);
        register_functions(&mut evaluator, seed, now)
            .map_err(|err| EvalError::Failed(error_message(&err)))?;
        let result = evaluator
            .evaluate(&self.ast, &JValue::Undefined)
            .map_err(|err| EvalError::Failed(error_message(&err)))?;
        to_json(&result)
    }
}

// ── AST scanning ─────────────────────────────────────────────────────────────

#[derive(Default)]
struct Scan {
    /// Variables read (`$x`), without the `$`.
    reads: Vec<String>,
    /// Names bound inside the expression.
    bound: Vec<String>,
    /// Names used as variables or called as functions.
    names: Vec<String>,
    /// `??` or `?:`, which JSONata 2.0.6 does not have.
    newer_operator: Option<&'static str>,
}

/// Walks the tree without recursion (a chain of operators can nest deeply).
fn scan(ast: &AstNode) -> Scan {
    let mut out = Scan::default();
    let mut todo: Vec<&AstNode> = vec![ast];
    while let Some(node) = todo.pop() {
        match node {
            AstNode::Variable(name) => {
                if !name.is_empty() {
                    out.reads.push(name.clone());
                    out.names.push(name.clone());
                }
            }
            AstNode::Function { name, args, .. } => {
                out.names.push(name.clone());
                todo.extend(args);
            }
            AstNode::Path { steps } => {
                for step in steps {
                    todo.push(&step.node);
                    out.bound.extend(step.focus.iter().cloned());
                    out.bound.extend(step.index_var.iter().cloned());
                    for stage in &step.stages {
                        match stage {
                            Stage::Filter(filter) => todo.push(filter),
                            Stage::Index(name) => out.bound.push(name.clone()),
                            Stage::KeepArray => {}
                        }
                    }
                }
            }
            AstNode::Binary { op, lhs, rhs } => {
                match op {
                    BinaryOp::Coalesce => out.newer_operator = out.newer_operator.or(Some("?")),
                    BinaryOp::Default => out.newer_operator = out.newer_operator.or(Some(":")),
                    BinaryOp::ColonEqual => {
                        if let AstNode::Variable(name) = &**lhs {
                            out.bound.push(name.clone());
                            todo.push(rhs);
                            continue;
                        }
                    }
                    _ => {}
                }
                todo.push(lhs);
                todo.push(rhs);
            }
            AstNode::Unary { operand, .. } => todo.push(operand),
            AstNode::Call { procedure, args } => {
                todo.push(procedure);
                todo.extend(args);
            }
            AstNode::Lambda { params, body, .. } => {
                out.bound.extend(params.iter().cloned());
                todo.push(body);
            }
            AstNode::Array(items) | AstNode::Block(items) | AstNode::ArrayGroup(items) => {
                todo.extend(items)
            }
            AstNode::Object(pairs) => {
                for (k, v) in pairs {
                    todo.push(k);
                    todo.push(v);
                }
            }
            AstNode::ObjectTransform { input, pattern } => {
                todo.push(input);
                for (k, v) in pattern {
                    todo.push(k);
                    todo.push(v);
                }
            }
            AstNode::Conditional {
                condition,
                then_branch,
                else_branch,
            } => {
                todo.push(condition);
                todo.push(then_branch);
                if let Some(e) = else_branch {
                    todo.push(e);
                }
            }
            AstNode::FunctionApplication(inner) => todo.push(inner),
            AstNode::Sort { input, terms } => {
                todo.push(input);
                todo.extend(terms.iter().map(|(t, _)| t));
            }
            AstNode::Transform {
                location,
                update,
                delete,
            } => {
                todo.push(location);
                todo.push(update);
                if let Some(d) = delete {
                    todo.push(d);
                }
            }
            AstNode::String(_)
            | AstNode::Name(_)
            | AstNode::Number(_)
            | AstNode::Boolean(_)
            | AstNode::Null
            | AstNode::Undefined
            | AstNode::Placeholder
            | AstNode::Regex { .. }
            | AstNode::ParentVariable(_)
            | AstNode::Wildcard
            | AstNode::Descendant
            | AstNode::Parent(_) => {}
        }
    }
    out
}

// ── Errors ───────────────────────────────────────────────────────────────────

/// JSONata's message without jsonata-core's "Type error: " style prefix. Where the reference
/// implementation (whose wording AWS reports) uses a fixed text for a code and jsonata-core adds
/// detail or words it differently, the reference text is used.
fn error_message(err: &EvaluatorError) -> String {
    let message = err.message();
    match jsonata_core::evaluator::error_code_prefix(message).and_then(|code| {
        FIXED_MESSAGES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, text)| format!("{c}: {text}"))
    }) {
        Some(fixed) => fixed,
        None => message.to_string(),
    }
}

/// jsonata-js messages that take no parameters.
const FIXED_MESSAGES: &[(&str, &str)] = &[
    ("T1006", "Attempted to invoke a non-function"),
    ("T1008", "Attempted to partially apply a non-function"),
    ("D1004", "Regular expression matches zero length string"),
    (
        "T2003",
        "The left side of the range operator (..) must evaluate to an integer",
    ),
    (
        "T2004",
        "The right side of the range operator (..) must evaluate to an integer",
    ),
    (
        "T2006",
        "The right side of the function application operator ~> must be a function",
    ),
    (
        "T2008",
        "The expressions within an order-by clause must evaluate to numeric or string values",
    ),
    (
        "D3001",
        "Attempting to invoke string function on Infinity or NaN",
    ),
    (
        "D3010",
        "Second argument of replace function cannot be an empty string",
    ),
    (
        "D3011",
        "Fourth argument of replace function must evaluate to a positive number",
    ),
    (
        "D3012",
        "Attempted to replace a matched string with a non-string value",
    ),
    (
        "D3020",
        "Third argument of split function must evaluate to a positive number",
    ),
    (
        "D3040",
        "Third argument of match function must evaluate to a positive number",
    ),
    (
        "D3050",
        "The second argument of reduce function must be a function with at least two arguments",
    ),
    (
        "D3138",
        "The $single() function expected exactly 1 matching result.  Instead it matched more.",
    ),
    (
        "D3139",
        "The $single() function expected exactly 1 matching result.  Instead it matched 0.",
    ),
];

fn fail(message: impl Into<String>) -> EvaluatorError {
    EvaluatorError::EvaluationError(message.into())
}

fn signature_mismatch(function: &str, argument: usize) -> EvaluatorError {
    fail(format!(
        "T0410: Argument {argument} of function {function} does not match function signature"
    ))
}

fn too_many_arguments(function: &str, args: &[JValue], max: usize) -> Result<(), EvaluatorError> {
    match args.iter().skip(max).position(|a| !a.is_undefined()) {
        Some(i) => Err(signature_mismatch(function, max + i + 1)),
        None => Ok(()),
    }
}

// ── Step Functions functions ────────────────────────────────────────────────

/// SplitMix64: a tiny, well-mixed generator; one `u64` of state.
fn splitmix64(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from 53 random bits.
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn register_functions(
    evaluator: &mut Evaluator,
    seed: u64,
    now: Option<String>,
) -> Result<(), EvaluatorError> {
    let rng = Rc::new(Cell::new(seed));

    let state = Rc::clone(&rng);
    evaluator.register_fn_override("random", move |args: &[JValue]| {
        too_many_arguments("random", args, 1)?;
        match args.first() {
            None | Some(JValue::Undefined) => Ok(JValue::Number(unit_interval(splitmix64(&state)))),
            Some(seed) => {
                let seeded =
                    Cell::new(seed_bits(seed).ok_or_else(|| signature_mismatch("random", 1))?);
                Ok(JValue::Number(unit_interval(splitmix64(&seeded))))
            }
        }
    })?;

    let state = Rc::clone(&rng);
    evaluator.register_fn("uuid", move |args: &[JValue]| {
        too_many_arguments("uuid", args, 0)?;
        Ok(JValue::string(uuid_v4(&state)))
    })?;

    let state = Rc::clone(&rng);
    evaluator.register_fn_override("shuffle", move |args: &[JValue]| {
        too_many_arguments("shuffle", args, 1)?;
        let mut items = match args.first() {
            None | Some(JValue::Undefined) => return Ok(JValue::Undefined),
            Some(JValue::Array(items)) => items.iter().cloned().collect::<Vec<_>>(),
            Some(other) => vec![other.clone()],
        };
        for i in (1..items.len()).rev() {
            let j = (splitmix64(&state) % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
        Ok(JValue::array(items))
    })?;

    evaluator.register_fn_override("eval", |_: &[JValue]| {
        Err(fail("T1006: Attempted to invoke a non-function"))
    })?;

    let clock: Option<Rc<str>> = now.map(Rc::from);
    let reading = clock.clone();
    evaluator.register_fn_override("now", move |args: &[JValue]| {
        too_many_arguments("now", args, 2)?;
        let arg = |i: usize| args.get(i).cloned().unwrap_or(JValue::Undefined);
        clock_eval(
            "$fromMillis($toMillis($now), $picture, $timezone)",
            reading.as_deref(),
            &[("picture", arg(0)), ("timezone", arg(1))],
        )
    })?;
    let reading = clock;
    evaluator.register_fn_override("millis", move |args: &[JValue]| {
        too_many_arguments("millis", args, 0)?;
        clock_eval("$toMillis($now)", reading.as_deref(), &[])
    })?;

    evaluator.register_fn_override("pad", |args: &[JValue]| {
        if let Some(JValue::Number(width)) = args.get(1) {
            if width.abs() > MAX_PAD_WIDTH {
                return Err(fail(format!(
                    "The width argument of function pad must not exceed {MAX_PAD_WIDTH} in magnitude"
                )));
            }
        }
        let arg = |i: usize| args.get(i).cloned().unwrap_or(JValue::Undefined);
        isolated_eval(
            "$pad($str, $width, $char)",
            &[("str", arg(0)), ("width", arg(1)), ("char", arg(2))],
        )
    })?;

    evaluator.register_fn("partition", partition)?;
    evaluator.register_fn("range", range)?;
    evaluator.register_fn("hash", hash)?;
    evaluator.register_fn("parse", parse_json)?;
    Ok(())
}

/// Runs a small fixed expression, with `$now` bound to the clock reading: `$now()` and
/// `$millis()` reach jsonata-core's date handling this way, as it is not public API.
fn clock_eval(
    source: &str,
    now: Option<&str>,
    bindings: &[(&str, JValue)],
) -> Result<JValue, EvaluatorError> {
    let Some(now) = now else {
        return Err(fail(
            "$now() and $millis() need $states.context.State.EnteredTime or \
             $states.context.Execution.StartTime",
        ));
    };
    let mut all = vec![("now", JValue::string(now))];
    all.extend(bindings.iter().cloned());
    isolated_eval(source, &all)
}

/// Evaluates a small fixed expression with the given bindings in a plain evaluator of its own
/// (no host functions), to call a jsonata-core builtin this module has overridden.
fn isolated_eval(source: &str, bindings: &[(&str, JValue)]) -> Result<JValue, EvaluatorError> {
    let ast = parser::parse(source).map_err(|e| fail(e.to_string()))?;
    let mut context = Context::new();
    for (name, value) in bindings {
        context.bind((*name).to_string(), value.clone());
    }
    Evaluator::with_context(context).evaluate(&ast, &JValue::Undefined)
}

/// The timestamp `$now()` reports: when the state was entered, else when the execution started.
fn clock_reading(states: &Value) -> Option<String> {
    let context = states.get("context")?;
    [("State", "EnteredTime"), ("Execution", "StartTime")]
        .iter()
        .find_map(|(outer, inner)| context.get(outer)?.get(inner)?.as_str().map(str::to_string))
}

fn seed_bits(seed: &JValue) -> Option<u64> {
    match seed {
        JValue::Number(n) if n.is_finite() => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Some(*n as i64 as u64)
            } else {
                Some(n.to_bits())
            }
        }
        JValue::String(s) => Some(s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })),
        _ => None,
    }
}

fn uuid_v4(state: &Cell<u64>) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&splitmix64(state).to_be_bytes());
    bytes[8..].copy_from_slice(&splitmix64(state).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `$partition(array, size)`: the array cut into chunks of `size` items (the last may be
/// shorter). A non-array first argument counts as a one-item array.
fn partition(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    too_many_arguments("partition", args, 2)?;
    let items: Vec<JValue> = match args.first() {
        None | Some(JValue::Undefined) => return Ok(JValue::Undefined),
        Some(JValue::Array(items)) => items.iter().cloned().collect(),
        Some(other) => vec![other.clone()],
    };
    let size = match args.get(1) {
        Some(JValue::Number(n)) if n.fract() == 0.0 && *n >= 1.0 => {
            if *n >= items.len() as f64 {
                items.len().max(1)
            } else {
                *n as usize
            }
        }
        Some(JValue::Number(_)) => {
            return Err(fail(
                "The size argument of function partition must be a positive integer",
            ))
        }
        _ => return Err(signature_mismatch("partition", 2)),
    };
    let chunks = items
        .chunks(size)
        .map(|chunk| JValue::array(chunk.to_vec()))
        .collect();
    Ok(JValue::array(chunks))
}

/// `$range(start, end[, step])`: `start`, `start + step`, … up to and including `end`. The
/// result is a JSONata sequence, so a single number comes back unwrapped.
fn range(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    too_many_arguments("range", args, 3)?;
    let number = |i: usize| -> Result<Option<f64>, EvaluatorError> {
        match args.get(i) {
            None | Some(JValue::Undefined) => Ok(None),
            Some(JValue::Number(n)) if n.is_finite() => Ok(Some(*n)),
            Some(_) => Err(signature_mismatch("range", i + 1)),
        }
    };
    let (Some(start), Some(end)) = (number(0)?, number(1)?) else {
        return Ok(JValue::Undefined);
    };
    let step = number(2)?.unwrap_or(1.0);
    if step == 0.0 {
        return Err(fail("The step argument of function range must not be zero"));
    }
    let span = (end - start) / step;
    if span < 0.0 {
        return Ok(JValue::sequence(Vec::new()));
    }
    let count = span.floor() + 1.0;
    if count > 1e7 {
        return Err(fail(
            "D2014: The size of the sequence allocated by the range function must not exceed 1e7.  Attempted to allocate ".to_string()
                + &format_count(count)
                + ".",
        ));
    }
    let items = (0..count as u64)
        .map(|i| JValue::Number(start + i as f64 * step))
        .collect();
    Ok(JValue::sequence(items))
}

fn format_count(count: f64) -> String {
    if count < 1e21 {
        format!("{count:.0}")
    } else {
        format!("{count:e}")
    }
}

/// `$hash(data, algorithm)`: the lowercase hex digest of the UTF-8 bytes of `data`.
fn hash(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    use md5::Md5;
    use sha1::Sha1;
    use sha2::{Digest, Sha256, Sha384, Sha512};

    too_many_arguments("hash", args, 2)?;
    let data = match args.first() {
        None | Some(JValue::Undefined) => return Ok(JValue::Undefined),
        Some(JValue::String(s)) => s.clone(),
        Some(_) => return Err(signature_mismatch("hash", 1)),
    };
    let algorithm = match args.get(1) {
        Some(JValue::String(s)) => s.clone(),
        _ => return Err(signature_mismatch("hash", 2)),
    };
    let bytes = data.as_bytes();
    let digest = match &*algorithm {
        "MD5" => hex(&Md5::digest(bytes)),
        "SHA-1" => hex(&Sha1::digest(bytes)),
        "SHA-256" => hex(&Sha256::digest(bytes)),
        "SHA-384" => hex(&Sha384::digest(bytes)),
        "SHA-512" => hex(&Sha512::digest(bytes)),
        other => {
            return Err(fail(format!(
                "The hashing algorithm '{other}' is not supported by function hash. Supported algorithms: MD5, SHA-1, SHA-256, SHA-384, SHA-512"
            )))
        }
    };
    Ok(JValue::string(digest))
}

/// `$parse(jsonString)`: the JSON value the string holds.
fn parse_json(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    too_many_arguments("parse", args, 1)?;
    let text = match args.first() {
        None | Some(JValue::Undefined) => return Ok(JValue::Undefined),
        Some(JValue::String(s)) => s.clone(),
        Some(_) => return Err(signature_mismatch("parse", 1)),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => Ok(to_jvalue(&value)),
        Err(err) => Err(fail(format!(
            "The argument of function parse is not valid JSON: {err}"
        ))),
    }
}

// ── Value conversion ────────────────────────────────────────────────────────

fn to_jvalue(value: &Value) -> JValue {
    match value {
        Value::Null => JValue::Null,
        Value::Bool(b) => JValue::Bool(*b),
        Value::Number(n) => JValue::Number(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => JValue::string(s.as_str()),
        Value::Array(items) => with_stack(|| JValue::array(items.iter().map(to_jvalue).collect())),
        Value::Object(map) => with_stack(|| {
            JValue::object(map.iter().map(|(k, v)| (k.clone(), to_jvalue(v))).collect())
        }),
    }
}

/// The JSON form of a result, following `JSON.stringify` for what JSON lacks: inside an object a
/// function, regex or undefined member is left out, inside an array it becomes `null`. At the
/// top, undefined is `None` and a function or regex is [`EvalError::UnsupportedResultType`].
fn to_json(value: &JValue) -> Result<Option<Value>, EvalError> {
    match value {
        JValue::Undefined => Ok(None),
        v if is_opaque(v) => Err(EvalError::UnsupportedResultType),
        v => to_json_at(v, 0).map(|v| Some(v.unwrap_or(Value::Null))),
    }
}

fn is_opaque(value: &JValue) -> bool {
    value.is_function() || value.is_regex()
}

/// `Ok(None)` for values JSON has no form for.
fn to_json_at(value: &JValue, depth: usize) -> Result<Option<Value>, EvalError> {
    if depth > MAX_RESULT_DEPTH {
        return Err(EvalError::Failed(format!(
            "The result is nested more than {MAX_RESULT_DEPTH} levels deep"
        )));
    }
    Ok(Some(match value {
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => Value::Number(json_number(*n)?),
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(items) => with_stack(|| {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(to_json_at(item, depth + 1)?.unwrap_or(Value::Null));
            }
            Ok(Value::Array(out))
        })?,
        JValue::Object(map) => with_stack(|| {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                if let Some(v) = to_json_at(v, depth + 1)? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Value::Object(out))
        })?,
        _ => return Ok(None),
    }))
}

/// Integral values become JSON integers (so `3.0` is `3` and `-0` is `0`, as JavaScript prints
/// them); other finite values stay floats. JSON has no infinities or NaN.
fn json_number(n: f64) -> Result<Number, EvalError> {
    if !n.is_finite() {
        return Err(EvalError::Failed("D1001: Number out of range".to_string()));
    }
    if n.fract() == 0.0 {
        if n.abs() < 9.223_372_036_854_775e18 {
            return Ok(Number::from(n as i64));
        }
        if n > 0.0 && n < 1.844_674_407_370_955_2e19 {
            return Ok(Number::from(n as u64));
        }
    }
    Number::from_f64(n).ok_or_else(|| EvalError::Failed("D1001: Number out of range".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0u64;
        move || {
            n += 1;
            n.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn eval_with(
        src: &str,
        states: &Value,
        vars: &Map<String, Value>,
    ) -> Result<Option<Value>, String> {
        let expr = compile(src)?;
        expr.eval(states, vars, &mut counter())
    }

    fn eval(src: &str) -> Result<Option<Value>, String> {
        eval_with(src, &json!({"input": {}, "context": {}}), &Map::new())
    }

    fn value(src: &str) -> Value {
        match eval(src) {
            Ok(Some(v)) => v,
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn expression_strings() {
        assert_eq!(is_expression("{% $x %}"), Some("$x"));
        assert_eq!(is_expression("{%$x%}"), Some("$x"));
        assert_eq!(is_expression("{%%}"), Some(""));
        assert_eq!(is_expression("{%}"), None);
        assert_eq!(is_expression(" {% $x %}"), None);
        assert_eq!(is_expression("{% $x %} "), None);
        assert_eq!(is_expression("$.x"), None);
        assert_eq!(is_expression("{% $x"), None);
    }

    #[test]
    fn expression_is_send_sync_clone_debug() {
        fn check<T: Send + Sync + Clone + fmt::Debug>() {}
        check::<Expression>();
        let e = compile("$states.input.a").unwrap();
        assert_eq!(e.clone().source(), "$states.input.a");
        assert!(format!("{e:?}").contains("$states.input.a"));
    }

    #[test]
    fn binds_states_and_variables() {
        let mut vars = Map::new();
        vars.insert("x".into(), json!(2));
        vars.insert("states".into(), json!("shadowed"));
        let states = json!({"input": {"a": [1, 2, 3]}, "context": {}});
        assert_eq!(
            eval_with("$sum($states.input.a) * $x", &states, &vars),
            Ok(Some(json!(12)))
        );
        assert_eq!(eval_with("$doesNotExist", &states, &vars), Ok(None));
        // No implicit input document.
        assert_eq!(eval_with("a", &states, &vars), Ok(None));
        assert_eq!(eval_with("$", &states, &vars), Ok(None));
    }

    #[test]
    fn result_conversion() {
        assert_eq!(value("3.0"), json!(3));
        assert_eq!(value("-0"), json!(0));
        assert_eq!(value("1.1"), json!(1.1));
        assert_eq!(value("null"), Value::Null);
        assert_eq!(
            value("{'a': 1, 'b': $nothing, 'c': function(){1}}"),
            json!({"a": 1})
        );
        assert_eq!(value("[1, function(){1}]"), json!([1, null]));
        assert_eq!(value("{'b': 2, 'a': 1}").to_string(), r#"{"b":2,"a":1}"#);
        assert_eq!(eval("1/0"), Err("D1001: Number out of range".to_string()));
        let expr = compile("$fn := function($x){$x}").unwrap();
        assert_eq!(
            expr.eval_detailed(&json!({}), &Map::new(), &mut counter()),
            Err(EvalError::UnsupportedResultType)
        );
        assert_eq!(
            expr.eval(&json!({}), &Map::new(), &mut counter()),
            Err(UNSUPPORTED_RESULT_TYPE.to_string())
        );
        assert!(matches!(eval("/ab/"), Err(m) if m == UNSUPPORTED_RESULT_TYPE));
    }

    #[test]
    fn errors_use_jsonata_codes() {
        assert_eq!(
            eval("$randomSeeded(1)"),
            Err("T1006: Attempted to invoke a non-function".to_string())
        );
        assert_eq!(
            eval("$eval('1 + 1')"),
            Err("T1006: Attempted to invoke a non-function".to_string())
        );
        assert!(eval("'a' + 1").unwrap_err().starts_with("T2001"));
        assert!(compile("(").unwrap_err().starts_with("S0"));
        assert_eq!(
            compile("$a ?? 1").unwrap_err(),
            "S0211: The symbol ? cannot be used as a unary operator"
        );
        assert_eq!(
            compile("$a ?: 1").unwrap_err(),
            "S0211: The symbol : cannot be used as a unary operator"
        );
        assert!(eval("$error('boom')").unwrap_err().contains("boom"));
        assert_eq!(
            eval("$string(1/0)"),
            Err("D3001: Attempting to invoke string function on Infinity or NaN".to_string())
        );
        assert_eq!(
            eval("$single([1, 2])"),
            Err("D3138: The $single() function expected exactly 1 matching result.  Instead it matched more.".to_string())
        );
    }

    #[test]
    fn evaluation_is_bounded() {
        let err =
            eval("($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(1000000))").unwrap_err();
        assert!(err.starts_with("U1001"), "{err}");
        let err = eval("[1..100000000]").unwrap_err();
        assert!(err.starts_with("D2014"), "{err}");
        let err = eval("$range(0, 1e9)").unwrap_err();
        assert!(err.starts_with("D2014"), "{err}");
        let err = eval("$reduce([1..2000], function($a, $b){ {'a': $a} }, 0)").unwrap_err();
        assert!(err.contains("nested"), "{err}");
        let deep = value("$reduce([1..500], function($a, $b){ {'a': $a} }, 0)");
        assert!(deep.pointer(&"/a".repeat(500)).is_some());
        assert!(eval("$pad('x', 1e300)").unwrap_err().contains("width"));
        assert!(eval("$pad('x', -1e300)").unwrap_err().contains("width"));
        assert_eq!(value("$pad('x', 3)"), json!("x  "));
        assert_eq!(value("$pad('x', -3, '#')"), json!("##x"));
        assert_eq!(value("('x' ~> $pad(?, 2))"), json!("x "));
        assert_eq!(eval("$pad($nothing, 3)"), Ok(None));
        assert!(eval("$pad('x', 'y')").unwrap_err().starts_with("T0410"));
    }

    #[test]
    fn partition_and_range() {
        assert_eq!(
            value("$partition([1,2,3,4,5], 2)"),
            json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(value("$partition([1], 5)"), json!([[1]]));
        assert_eq!(value("$partition([], 5)"), json!([]));
        assert_eq!(value("$partition(7, 2)"), json!([[7]]));
        assert_eq!(eval("$partition($nothing, 2)"), Ok(None));
        assert!(eval("$partition([1], 0)").is_err());
        assert!(eval("$partition([1], 1.5)").is_err());
        assert!(eval("$partition([1], 'a')").is_err());
        assert_eq!(value("$range(0, 10, 2)"), json!([0, 2, 4, 6, 8, 10]));
        assert_eq!(value("$range(10, 0, -5)"), json!([10, 5, 0]));
        assert_eq!(value("$range(1, 3)"), json!([1, 2, 3]));
        assert_eq!(value("$range(1, 9, 9)"), json!(1));
        assert_eq!(value("$count($range(1, 9, 9))"), json!(1));
        assert_eq!(value("[$range(5, 1, 1)]"), json!([]));
        assert!(eval("$range(0, 1, 0)").is_err());
        assert!(eval("$range('a', 1, 1)").is_err());
    }

    #[test]
    fn hash_and_parse() {
        assert_eq!(
            value("$hash('abc', 'MD5')"),
            json!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            value("$hash('abc', 'SHA-1')"),
            json!("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            value("$hash('abc', 'SHA-256')"),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(value("$length($hash('abc', 'SHA-384'))"), json!(96));
        assert_eq!(value("$length($hash('abc', 'SHA-512'))"), json!(128));
        assert!(eval("$hash('abc', 'SHA-3')").is_err());
        assert!(eval("$hash(1, 'MD5')").is_err());
        assert_eq!(
            value("$parse('{\"a\": [1, 2.5, \"x\"]}')"),
            json!({"a": [1, 2.5, "x"]})
        );
        assert_eq!(value("$parse('-0')"), json!(0));
        assert_eq!(value("$parse('\"s\"')"), json!("s"));
        assert!(eval("$parse('{')").is_err());
        assert!(eval("$parse(1)").is_err());
    }

    #[test]
    fn randomness_comes_from_the_closure() {
        let expr = compile(
            "{'0': $random(), '1': $random(), '2': $uuid(), '3': $shuffle([1,2,3,4,5,6,7,8])}",
        )
        .unwrap();
        let states = json!({});
        let run = |seed: u64| {
            let mut calls = 0;
            let mut rng = || {
                calls += 1;
                seed
            };
            let v = expr.eval(&states, &Map::new(), &mut rng).unwrap().unwrap();
            (v, calls)
        };
        let (a, calls) = run(1);
        assert_eq!(calls, 1);
        assert_eq!(run(1).0, a);
        assert_ne!(run(2).0, a);
        let r0 = a["0"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&r0));
        assert_ne!(a["0"], a["1"]);
        let uuid = a["2"].as_str().unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
        let mut shuffled: Vec<i64> = a["3"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        shuffled.sort();
        assert_eq!(shuffled, (1..=8).collect::<Vec<_>>());

        // Expressions that need no randomness do not draw.
        let mut calls = 0;
        let mut rng = || {
            calls += 1;
            0
        };
        compile("1 + 1")
            .unwrap()
            .eval(&states, &Map::new(), &mut rng)
            .unwrap();
        assert_eq!(calls, 0);

        // A seeded $random depends on the seed only.
        assert_eq!(value("$random(42)"), value("$random(42)"));
        assert_ne!(value("$random(42)"), value("$random(43)"));
        assert_eq!(value("$random(42) = $random(42)"), json!(true));
        let seeded = value("$random(7)").as_f64().unwrap();
        assert!((0.0..1.0).contains(&seeded));
        assert!(eval("$random({})").is_err());
    }

    #[test]
    fn clock_comes_from_the_context() {
        let states = json!({"input": {}, "context": {
            "Execution": {"StartTime": "2024-01-01T00:00:00.000Z"},
            "State": {"EnteredTime": "2024-11-15T16:16:35.123Z", "Name": "S"}}});
        let vars = Map::new();
        assert_eq!(
            eval_with("$now()", &states, &vars),
            Ok(Some(json!("2024-11-15T16:16:35.123Z")))
        );
        assert_eq!(
            eval_with("$millis()", &states, &vars),
            Ok(Some(json!(1731687395123i64)))
        );
        assert_eq!(
            eval_with("$now('[Y0001]-[M01]-[D01]')", &states, &vars),
            Ok(Some(json!("2024-11-15")))
        );
        assert_eq!(
            eval_with("($f := $now; $f())", &states, &vars),
            Ok(Some(json!("2024-11-15T16:16:35.123Z")))
        );
        let states = json!({"context": {"Execution": {"StartTime": "2024-01-01T00:00:00.000Z"}}});
        assert_eq!(
            eval_with("$now()", &states, &vars),
            Ok(Some(json!("2024-01-01T00:00:00.000Z")))
        );
        assert!(eval("$now()").is_err());
    }

    #[test]
    fn variable_references() {
        let e = compile(
            "($a := $b + $states.input.x; $f := function($p){ $p + $c }; items@$i.($i + $d); $string($e))",
        )
        .unwrap();
        assert_eq!(e.referenced_variables(), vec!["b", "c", "d", "e", "states"]);
        assert!(compile("$").unwrap().referenced_variables().is_empty());
    }

    /// A deterministic stream of junk expressions: evaluation must never panic.
    #[test]
    fn arbitrary_expressions_do_not_panic() {
        const PIECES: &[&str] = &[
            "$",
            "$$",
            "$states",
            ".",
            "input",
            "[",
            "]",
            "(",
            ")",
            "{",
            "}",
            "'a'",
            "\"b\"",
            "1",
            "0",
            "-",
            "+",
            "*",
            "/",
            "%",
            "&",
            "=",
            "!=",
            "<",
            ">",
            "and",
            "or",
            "in",
            "?",
            ":",
            ":=",
            ";",
            ",",
            "@",
            "#",
            "^(",
            "~>",
            "..",
            "**",
            "|",
            "function($x){",
            "$x",
            "$random(",
            "$uuid(",
            "$partition(",
            "$range(",
            "$hash(",
            "$parse(",
            "$now(",
            "$millis(",
            "$eval(",
            "$shuffle(",
            "$reduce(",
            "$map(",
            "$string(",
            "$sort(",
            "/a+/",
            "true",
            "null",
            "`x`",
            " ",
            "1e308",
            "$f",
            "$f(",
            "\\",
            "\u{e9}",
        ];
        let state = Cell::new(12345u64);
        let states = json!({"input": {"a": [1, 2, {"b": "c"}]}, "context": {}});
        for _ in 0..3000 {
            let len = (splitmix64(&state) % 12) as usize;
            let src: String = (0..len)
                .map(|_| PIECES[(splitmix64(&state) % PIECES.len() as u64) as usize])
                .collect();
            if let Ok(expr) = compile(&src) {
                let _ = expr.eval(&states, &Map::new(), &mut counter());
                let _ = expr.referenced_variables();
            }
        }
    }

    // ── Conformance corpus ──────────────────────────────────────────────────

    fn corpus_dir() -> Option<std::path::PathBuf> {
        let candidates = [
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance/cases"
            ),
            "/work/shared/conformance/cases",
        ];
        candidates
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_dir())
    }

    /// Evaluates every `{% %}` leaf of a template, as a JSONata state's fields are; failures
    /// are worded as the interpreter words them for AWS.
    fn render(template: &Value, states: &Value, field: &str) -> Result<Value, String> {
        match template {
            Value::String(s) => match is_expression(s) {
                Some(src) => {
                    let prefix =
                        format!("The JSONata expression '{src}' specified for the field '{field}'");
                    let expr = compile(src)
                        .map_err(|e| format!("{prefix} threw an error during evaluation. {e}"))?;
                    match expr.eval_detailed(states, &Map::new(), &mut counter()) {
                        Ok(Some(v)) => Ok(v),
                        Ok(None) => Err(format!("{prefix} returned nothing (undefined).")),
                        Err(EvalError::UnsupportedResultType) => {
                            Err(format!("{prefix} {UNSUPPORTED_RESULT_TYPE}"))
                        }
                        Err(EvalError::Failed(e)) => {
                            Err(format!("{prefix} threw an error during evaluation. {e}"))
                        }
                    }
                }
                None => Ok(template.clone()),
            },
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| render(v, states, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), render(v, states, &format!("{field}/{k}"))?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn json_type(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// What a single JSONata state does with JSONata alone, for the shapes this module can
    /// stand in for without the interpreter: a Pass state with `Output`, and a Map state over
    /// `Items` whose processor only passes items through.
    fn simulate(definition: &Value, input: &Value) -> Option<Result<Value, String>> {
        let states = definition.get("States")?.as_object()?;
        if states.len() != 1 {
            return None;
        }
        let state = states.values().next()?;
        let language = state
            .get("QueryLanguage")
            .or_else(|| definition.get("QueryLanguage"))?;
        if language != "JSONata" {
            return None;
        }
        let sfn = json!({"input": input, "context": {}});
        match state.get("Type")?.as_str()? {
            "Pass" => {
                if state.get("Assign").is_some() {
                    return None;
                }
                Some(render(state.get("Output")?, &sfn, "Output"))
            }
            "Map" => {
                let processor = state.get("ItemProcessor")?.get("States")?.as_object()?;
                let trivial = processor.values().all(|s| {
                    s.get("Type") == Some(&json!("Pass"))
                        && s.get("Output").is_none()
                        && s.get("Assign").is_none()
                });
                if !trivial || state.get("ItemSelector").is_some() || state.get("Output").is_some()
                {
                    return None;
                }
                for field in [
                    "MaxConcurrency",
                    "ToleratedFailureCount",
                    "ToleratedFailurePercentage",
                ] {
                    if let Some(t) = state.get(field) {
                        if let Err(e) = render(t, &sfn, field) {
                            return Some(Err(e));
                        }
                    }
                }
                let template = state.get("Items")?;
                Some(render(template, &sfn, "Items").and_then(|items| match (&items, template) {
                    (Value::Array(_), _) => Ok(items),
                    (_, Value::String(s)) => Err(format!(
                        "The JSONata expression '{}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                        is_expression(s).unwrap_or(s),
                        json_type(&items),
                        items
                    )),
                    _ => Err("Items is not an array".to_string()),
                }))
            }
            _ => None,
        }
    }

    #[test]
    fn conformance_cases() {
        let Some(dir) = corpus_dir() else {
            eprintln!("conformance corpus not found; skipped");
            return;
        };
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let (mut checked, mut failures) = (0, Vec::new());
        for path in paths {
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if case["kind"] != "execution" {
                continue;
            }
            let Some(actual) = simulate(&case["definition"], &case["input"]) else {
                continue;
            };
            let expected = &case["expected"];
            let verdict = match (expected["status"].as_str(), &actual) {
                (Some("SUCCEEDED"), Ok(v)) => v == &expected["output"],
                (Some("FAILED"), Err(message)) => {
                    let cause = expected["cause"].as_str().unwrap_or_default();
                    expected["error"] == "States.QueryEvaluationError"
                        && cause.ends_with(message.as_str())
                }
                _ => false,
            };
            checked += 1;
            if !verdict {
                failures.push(format!(
                    "{}: got {actual:?}, expected {expected}",
                    case["name"]
                ));
            }
        }
        eprintln!(
            "conformance: {checked} cases checked, {} failed",
            failures.len()
        );
        assert!(checked >= 36, "only {checked} cases checked");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
