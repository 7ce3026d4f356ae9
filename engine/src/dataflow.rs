//! Evaluation of paths, payload templates, intrinsics and JSONata against one state's data.
//!
//! A [`Scope`] bundles what an expression can see: `$` (the document in hand), `$$` (the
//! context object, built lazily), the visible workflow variables, the JSONata `$states`
//! binding and the execution's seeded RNG. Errors come back as ASL [`Failure`]s with AWS's
//! messages; the interpreter adds the "An error occurred while executing the state …" prefix.
//! Pure.

use crate::asl::template::Template;
use crate::error::Failure;
use crate::history::json_text;
use crate::intrinsics;
use crate::jsonpath::{Path, Root};
use serde_json::{Map, Value};
use std::cell::OnceCell;

/// splitmix64: a tiny seeded generator, so randomness is an input, never ambient.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What an expression can see while one state runs.
pub struct Scope<'a> {
    /// `$`.
    pub doc: &'a Value,
    /// Builds `$$` on first use.
    pub context: &'a dyn Fn() -> Value,
    pub context_cache: OnceCell<Value>,
    pub variables: &'a Map<String, Value>,
    pub rng: &'a mut u64,
    /// Extra `$states` members for JSONata (`result`, `errorOutput`).
    pub states_result: Option<&'a Value>,
    pub states_error_output: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    pub fn new(
        doc: &'a Value,
        context: &'a dyn Fn() -> Value,
        variables: &'a Map<String, Value>,
        rng: &'a mut u64,
    ) -> Scope<'a> {
        Scope {
            doc,
            context,
            context_cache: OnceCell::new(),
            variables,
            rng,
            states_result: None,
            states_error_output: None,
        }
    }

    pub fn context_value(&self) -> &Value {
        self.context_cache.get_or_init(|| (self.context)())
    }

    /// Resolves a path; `Ok(None)` when a definite path matches nothing.
    pub fn lookup(&self, path: &Path) -> Result<Option<Value>, Failure> {
        let root: &Value = match path.root() {
            Root::Input => self.doc,
            Root::Context => self.context_value(),
            Root::Variable(name) => match self.variables.get(name) {
                Some(v) => v,
                None => {
                    return Err(Failure::runtime(format!(
                        "The JSONPath '{}' could not be resolved: no variable named '{name}' is defined",
                        path.source()
                    )))
                }
            },
        };
        Ok(path.get(root))
    }

    /// Resolves `InputPath`/`OutputPath`-style paths with Jayway's error message.
    pub fn select(&self, path: &Path) -> Result<Value, Failure> {
        match self.lookup(path)? {
            Some(v) => Ok(v),
            None => Err(Failure::runtime(format!(
                "Invalid path '{}' : No results for path: {}",
                path.source(),
                path.normalized()
            ))),
        }
    }

    /// The JSONata `$states` binding.
    pub fn states_binding(&self) -> Value {
        let mut m = Map::new();
        m.insert("input".into(), self.doc.clone());
        m.insert("context".into(), self.context_value().clone());
        if let Some(r) = self.states_result {
            m.insert("result".into(), r.clone());
        }
        if let Some(e) = self.states_error_output {
            m.insert("errorOutput".into(), e.clone());
        }
        Value::Object(m)
    }

    /// Evaluates a JSONata expression; `field` names it in error messages (`Output/result`).
    pub fn jsonata(
        &mut self,
        expr: &crate::jsonata::Expression,
        field: &str,
    ) -> Result<Value, Failure> {
        let states = self.states_binding();
        let rng = &mut *self.rng;
        let mut random = || next_random(rng);
        match expr.eval_detailed(&states, self.variables, &mut random) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Failure::query_evaluation(format!(
                "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                expr.source()
            ))),
            Err(crate::jsonata::EvalError::UnsupportedResultType) => {
                Err(Failure::query_evaluation(format!(
                    "The JSONata expression '{}' specified for the field '{field}' returned an unsupported result type.",
                    expr.source()
                )))
            }
            Err(crate::jsonata::EvalError::Failed(e)) => Err(Failure::query_evaluation(format!(
                "The JSONata expression '{}' specified for the field '{field}' threw an error during evaluation. {e}",
                expr.source()
            ))),
        }
    }

    /// Evaluates a compiled template. `field` is the top-level field name (`Parameters`,
    /// `Output`, `Assign`, …) used in JSONata error locations.
    pub fn eval(&mut self, t: &Template, field: &str) -> Result<Value, Failure> {
        match t {
            Template::Static(v) => Ok(v.clone()),
            Template::Object(members) => {
                let mut m = Map::with_capacity(members.len());
                for (k, t) in members {
                    let v = match t {
                        Template::Jsonata(_) | Template::Object(_) | Template::Array(_) => {
                            self.eval(t, &format!("{field}/{k}"))?
                        }
                        _ => self.eval(t, field)?,
                    };
                    m.insert(k.clone(), v);
                }
                Ok(Value::Object(m))
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, t) in items.iter().enumerate() {
                    out.push(self.eval(t, &format!("{field}[{i}]"))?);
                }
                Ok(Value::Array(out))
            }
            Template::Path { field: key, path } => match self.lookup(path)? {
                Some(v) => Ok(v),
                None => Err(Failure::runtime(format!(
                    "The JSONPath '{}' specified for the field '{key}' could not be found in the input '{}'",
                    path.source(),
                    json_text(self.doc)
                ))),
            },
            Template::Intrinsic { call, .. } => call.eval(self),
            Template::Jsonata(e) => self.jsonata(e, field),
        }
    }
}

impl intrinsics::Env for Scope<'_> {
    fn resolve(&mut self, path: &Path) -> Result<Value, Failure> {
        match self.lookup(path)? {
            Some(v) => Ok(v),
            None => Err(Failure::runtime(format!(
                "The JSONPath '{}' could not be found in the input '{}'",
                path.source(),
                json_text(self.doc)
            ))),
        }
    }

    fn random_u64(&mut self) -> u64 {
        next_random(self.rng)
    }
}
