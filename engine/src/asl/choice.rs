//! Choice rules: compilation of `Choices` entries and their evaluation.
//!
//! Under JSONPath a rule is a tree of `And`/`Or`/`Not` over comparisons of a `Variable` path
//! against a literal or another path; under JSONata it is a `Condition` expression. A
//! comparison whose operand has the wrong type is simply false, as in AWS. A `Variable` that
//! does not exist is an error except for `IsPresent`. Pure.

use super::template::Template;
use super::QueryLanguage;
use crate::jsonpath::Path;
use crate::timestamp;
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsNull", Op::IsNull),
    ("IsPresent", Op::IsPresent),
    ("IsNumeric", Op::IsNumeric),
    ("IsString", Op::IsString),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone)]
pub enum ChoiceRule {
    And(Vec<ChoiceRule>),
    Or(Vec<ChoiceRule>),
    Not(Box<ChoiceRule>),
    Compare {
        variable: Path,
        op: Op,
        operand: Operand,
    },
    /// JSONata `Condition`.
    Condition(Template),
    /// A constant (used for a literal `Condition: true`).
    Literal(bool),
}

impl ChoiceRule {
    pub fn compile(v: &Value, ql: QueryLanguage) -> Result<ChoiceRule, String> {
        if let Some(c) = v.get("Condition") {
            return match c {
                Value::Bool(b) => Ok(ChoiceRule::Literal(*b)),
                _ => Template::compile(c, QueryLanguage::JSONata).map(ChoiceRule::Condition),
            };
        }
        if ql == QueryLanguage::JSONata {
            return Err("a JSONata choice rule needs a Condition".into());
        }
        if let Some(a) = v.get("And").and_then(Value::as_array) {
            return a
                .iter()
                .map(|r| ChoiceRule::compile(r, ql))
                .collect::<Result<_, _>>()
                .map(ChoiceRule::And);
        }
        if let Some(a) = v.get("Or").and_then(Value::as_array) {
            return a
                .iter()
                .map(|r| ChoiceRule::compile(r, ql))
                .collect::<Result<_, _>>()
                .map(ChoiceRule::Or);
        }
        if let Some(n) = v.get("Not") {
            return Ok(ChoiceRule::Not(Box::new(ChoiceRule::compile(n, ql)?)));
        }
        let variable = v
            .get("Variable")
            .and_then(Value::as_str)
            .ok_or("a choice rule needs a Variable")?;
        let variable = Path::parse(variable).map_err(|e| e.0)?;
        for (name, op) in OPS {
            if let Some(x) = v.get(*name) {
                return Ok(ChoiceRule::Compare {
                    variable,
                    op: *op,
                    operand: Operand::Literal(x.clone()),
                });
            }
            if let Some(p) = v.get(format!("{name}Path")).and_then(Value::as_str) {
                return Ok(ChoiceRule::Compare {
                    variable,
                    op: *op,
                    operand: Operand::Path(Path::parse(p).map_err(|e| e.0)?),
                });
            }
        }
        Err("a choice rule needs a comparison operator".into())
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Compares a present variable value with an operand value.
pub fn compare(op: Op, var: &Value, rhs: &Value) -> bool {
    use Op::*;
    match op {
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals => match (var.as_str(), rhs.as_str()) {
            (Some(a), Some(b)) => ordering_holds(op, a.cmp(b)),
            _ => false,
        },
        StringMatches => match (var.as_str(), rhs.as_str()) {
            (Some(a), Some(p)) => string_matches(a, p),
            _ => false,
        },
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => match (num(var), num(rhs)) {
            (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| ordering_holds(op, o)),
            _ => false,
        },
        BooleanEquals => match (var.as_bool(), rhs.as_bool()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => {
            let a = var.as_str().and_then(timestamp::parse);
            let b = rhs.as_str().and_then(timestamp::parse);
            match (a, b) {
                (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
                _ => false,
            }
        }
        IsNull => rhs.as_bool() == Some(var.is_null()),
        IsPresent => rhs.as_bool() == Some(true),
        IsNumeric => rhs.as_bool() == Some(var.is_number()),
        IsString => rhs.as_bool() == Some(var.is_string()),
        IsBoolean => rhs.as_bool() == Some(var.is_boolean()),
        IsTimestamp => rhs.as_bool() == Some(var.as_str().and_then(timestamp::parse).is_some()),
    }
}

fn ordering_holds(op: Op, o: Ordering) -> bool {
    use Op::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => o == Ordering::Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => o == Ordering::Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => o == Ordering::Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => {
            o != Ordering::Greater
        }
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => {
            o != Ordering::Less
        }
        _ => false,
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n) => toks.push(Tok::Ch(n)),
                None => toks.push(Tok::Ch('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    // Classic wildcard matching with backtracking on the last star.
    let (mut i, mut j) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while i < chars.len() {
        if j < toks.len() && toks[j] == Tok::Ch(chars[i]) {
            i += 1;
            j += 1;
        } else if j < toks.len() && toks[j] == Tok::Star {
            star = Some(j);
            mark = i;
            j += 1;
        } else if let Some(sj) = star {
            j = sj + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while j < toks.len() && toks[j] == Tok::Star {
        j += 1;
    }
    j == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(!string_matches("log-2024.txt", "log-*.csv"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("", "*"));
    }

    #[test]
    fn type_mismatch_is_false() {
        assert!(!compare(Op::NumericEquals, &json!("1"), &json!(1)));
        assert!(compare(Op::NumericEquals, &json!(1.0), &json!(1)));
        assert!(compare(
            Op::TimestampLessThan,
            &json!("2020-01-01T00:00:00Z"),
            &json!("2020-01-01T00:00:01+00:00")
        ));
    }
}
