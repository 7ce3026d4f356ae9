//! JSONata expressions (`{% … %}`) with Step Functions' extra functions. Placeholder being replaced.

use serde_json::{Map, Value};

/// A compiled JSONata expression.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
}

/// Compiles the text between `{%` and `%}`.
pub fn compile(src: &str) -> Result<Expression, String> {
    Ok(Expression { source: src.to_string() })
}

impl Expression {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `$states` bound to `states` and each workflow variable bound by name.
    /// `Ok(None)` means the expression returned nothing (undefined).
    pub fn eval(
        &self,
        _states: &Value,
        _variables: &Map<String, Value>,
        _random: &mut dyn FnMut() -> u64,
    ) -> Result<Option<Value>, String> {
        Err("JSONata not available yet".into())
    }
}

/// Returns the inner text when `s` is a JSONata expression (`{% … %}`).
pub fn is_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    if t.len() >= 4 && t.starts_with("{%") && t.ends_with("%}") {
        Some(t[2..t.len() - 2].trim())
    } else {
        None
    }
}
