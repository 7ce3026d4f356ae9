//! Definition validation. Placeholder being replaced.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

pub fn validate(_definition: &Value, _ty: StateMachineType) -> Vec<Diagnostic> {
    Vec::new()
}

pub fn validate_text(text: &str, ty: StateMachineType) -> Vec<Diagnostic> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => validate(&v, ty),
        Err(e) => vec![Diagnostic {
            code: "INVALID_JSON_DESCRIPTION".into(),
            location: None,
            message: e.to_string(),
            severity: "ERROR".into(),
        }],
    }
}

pub fn invalid_definition_message(diags: &[Diagnostic]) -> String {
    let parts: Vec<String> = diags
        .iter()
        .map(|d| format!("{}: {} at {}", d.code, d.message, d.location.as_deref().unwrap_or("/")))
        .collect();
    format!("Invalid State Machine Definition: '{}'", parts.join(", "))
}
