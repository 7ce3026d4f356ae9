//! Compiled payload templates: `Parameters`, `ResultSelector`, `ItemSelector`, `Assign`,
//! `Arguments`, `Output`, …
//!
//! Under JSONPath a key ending in `.$` takes its value from a path or an intrinsic call; under
//! JSONata any string of the form `{% expr %}` is an expression. Everything else is literal,
//! and fully literal subtrees collapse into one [`Template::Static`] so evaluation is a clone.
//! Evaluation lives in [`crate::dataflow`]; this module only compiles. Pure.

use super::QueryLanguage;
use crate::intrinsics::{self, Intrinsic};
use crate::jsonata::{self, Expression};
use crate::jsonpath::Path;
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Template {
    /// A literal value (no dynamic part anywhere inside).
    Static(Value),
    /// An object with at least one dynamic member; keys are output keys (no `.$`).
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    /// `"key.$": "$.path"`; `field` is the key as written (for error messages).
    Path {
        field: String,
        path: Path,
    },
    /// `"key.$": "States.Format(…)"`.
    Intrinsic {
        field: String,
        call: Box<Intrinsic>,
    },
    /// `"{% expr %}"`.
    Jsonata(Box<Expression>),
}

impl Template {
    pub fn compile(v: &Value, ql: QueryLanguage) -> Result<Template, String> {
        match ql {
            QueryLanguage::JSONPath => compile_jsonpath(v),
            QueryLanguage::JSONata => compile_jsonata(v),
        }
    }

    pub fn is_static(&self) -> bool {
        matches!(self, Template::Static(_))
    }
}

/// Splits a `.$` value into a path or an intrinsic call.
pub fn compile_dynamic(field: &str, s: &str) -> Result<Template, String> {
    if s.starts_with("States.") {
        let call = intrinsics::parse(s).map_err(|e| {
            format!("The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call ({e})")
        })?;
        return Ok(Template::Intrinsic {
            field: field.to_string(),
            call: Box::new(call),
        });
    }
    let path = Path::parse(s).map_err(|_| {
        format!("The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call")
    })?;
    Ok(Template::Path {
        field: field.to_string(),
        path,
    })
}

fn compile_jsonpath(v: &Value) -> Result<Template, String> {
    match v {
        Value::Object(m) => {
            let mut members = Vec::with_capacity(m.len());
            let mut dynamic = false;
            for (k, v) in m {
                if let Some(stripped) = k.strip_suffix(".$") {
                    let s = v.as_str().ok_or_else(|| {
                        format!("The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call")
                    })?;
                    members.push((stripped.to_string(), compile_dynamic(k, s)?));
                    dynamic = true;
                } else {
                    let t = compile_jsonpath(v)?;
                    dynamic |= !t.is_static();
                    members.push((k.clone(), t));
                }
            }
            Ok(if dynamic {
                Template::Object(members)
            } else {
                Template::Static(v.clone())
            })
        }
        Value::Array(a) => {
            let items: Vec<Template> = a.iter().map(compile_jsonpath).collect::<Result<_, _>>()?;
            Ok(if items.iter().all(Template::is_static) {
                Template::Static(v.clone())
            } else {
                Template::Array(items)
            })
        }
        _ => Ok(Template::Static(v.clone())),
    }
}

fn compile_jsonata(v: &Value) -> Result<Template, String> {
    match v {
        Value::String(s) => match jsonata::is_expression(s) {
            Some(src) => jsonata::compile(src)
                .map(|e| Template::Jsonata(Box::new(e)))
                .map_err(|e| format!("invalid JSONata expression '{s}': {e}")),
            None => Ok(Template::Static(v.clone())),
        },
        Value::Object(m) => {
            let mut members = Vec::with_capacity(m.len());
            let mut dynamic = false;
            for (k, v) in m {
                let t = compile_jsonata(v)?;
                dynamic |= !t.is_static();
                members.push((k.clone(), t));
            }
            Ok(if dynamic {
                Template::Object(members)
            } else {
                Template::Static(v.clone())
            })
        }
        Value::Array(a) => {
            let items: Vec<Template> = a.iter().map(compile_jsonata).collect::<Result<_, _>>()?;
            Ok(if items.iter().all(Template::is_static) {
                Template::Static(v.clone())
            } else {
                Template::Array(items)
            })
        }
        _ => Ok(Template::Static(v.clone())),
    }
}
