//! JSONPath as ASL uses it: *reference paths* (`$.a.b[0]`, `$['k']`) that can be read and
//! written, and *full paths* (`$..x`, `$.a[*]`, `$.a[?(@.n > 1)]`) that can only be read.
//!
//! Paths are compiled once (at validation) into a [`Path`]. Three roots exist: `$` (the state's
//! input), `$$` (the context object) and `$name` (a variable set by `Assign`).
//!
//! Reading mimics Jayway JSONPath (the library AWS uses): a definite path yields one value,
//! an indefinite path (wildcards, recursive descent, filters, slices, unions) yields an array
//! of every match. Writing (ResultPath, Catch ResultPath) creates intermediate objects as AWS
//! does. This module is pure: no IO, no clock.

use serde_json::{Map, Value};

/// Which document a path is evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `$` — the state's (effective) input.
    Input,
    /// `$$` — the context object.
    Context,
    /// `$name` — a workflow variable.
    Variable(String),
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(i64),
}

#[derive(Debug, Clone)]
enum Kind {
    Reference(Vec<Segment>),
    Full(Box<serde_json_path::JsonPath>),
}

/// A compiled JSONPath.
#[derive(Debug, Clone)]
pub struct Path {
    source: String,
    root: Root,
    kind: Kind,
}

/// Why a path string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_name_char(c: char) -> bool {
    !matches!(
        c,
        '.' | '[' | ']' | '(' | ')' | '*' | '?' | '@' | ',' | '\'' | '"' | ' ' | '\t' | '\n' | '\r'
    )
}

impl Path {
    /// Parses any path ASL accepts (reference or full).
    pub fn parse(source: &str) -> Result<Path, PathError> {
        let (root, rest) = split_root(source)?;
        if let Some(segments) = parse_reference(rest) {
            return Ok(Path {
                source: source.to_string(),
                root,
                kind: Kind::Reference(segments),
            });
        }
        let normalized = normalize_full(rest);
        let compiled = serde_json_path::JsonPath::parse(&format!("${normalized}"))
            .map_err(|e| PathError(format!("invalid JSONPath '{source}': {}", e.message())))?;
        Ok(Path {
            source: source.to_string(),
            root,
            kind: Kind::Full(Box::new(compiled)),
        })
    }

    /// Parses a path that must be a reference path (ResultPath, Assign targets…).
    pub fn parse_reference(source: &str) -> Result<Path, PathError> {
        let p = Path::parse(source)?;
        if p.is_reference() {
            Ok(p)
        } else {
            Err(PathError(format!(
                "'{source}' is not a reference path (no wildcards, filters or recursive descent)"
            )))
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn is_reference(&self) -> bool {
        matches!(self.kind, Kind::Reference(_))
    }

    /// The reference segments, if this is a reference path.
    pub fn segments(&self) -> Option<&[Segment]> {
        match &self.kind {
            Kind::Reference(s) => Some(s),
            Kind::Full(_) => None,
        }
    }

    /// True when the path is just its root (`$`, `$$`, `$var`).
    pub fn is_root(&self) -> bool {
        matches!(&self.kind, Kind::Reference(s) if s.is_empty())
    }

    /// Reads the path from `doc` (the document for this path's root). `None` when a
    /// definite path matches nothing.
    pub fn get(&self, doc: &Value) -> Option<Value> {
        match &self.kind {
            Kind::Reference(segs) => get_ref(doc, segs).cloned(),
            Kind::Full(p) => {
                let nodes = p.query(doc);
                Some(Value::Array(nodes.all().into_iter().cloned().collect()))
            }
        }
    }

    /// Borrowing read for reference paths (fast path used by the interpreter).
    pub fn get_ref<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        match &self.kind {
            Kind::Reference(segs) => get_ref(doc, segs),
            Kind::Full(_) => None,
        }
    }

    /// Jayway's normalised rendering, used in AWS error messages: `$['a']['b'][0]`.
    pub fn normalized(&self) -> String {
        match &self.kind {
            Kind::Reference(segs) => {
                let mut out = String::from("$");
                for s in segs {
                    match s {
                        Segment::Field(f) => {
                            out.push_str("['");
                            out.push_str(f);
                            out.push_str("']");
                        }
                        Segment::Index(i) => out.push_str(&format!("[{i}]")),
                    }
                }
                out
            }
            Kind::Full(_) => self.source.clone(),
        }
    }

    /// Writes `value` at this (reference) path inside `doc`, creating objects on the way.
    /// Errors when an intermediate value is not an object/array or the path is not a reference.
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), PathError> {
        let segs = match &self.kind {
            Kind::Reference(s) => s,
            Kind::Full(_) => return Err(PathError(format!("cannot write to '{}'", self.source))),
        };
        set_ref(doc, segs, value, &self.source)
    }
}

fn split_root(source: &str) -> Result<(Root, &str), PathError> {
    if let Some(rest) = source.strip_prefix("$$") {
        return Ok((Root::Context, rest));
    }
    let rest = source
        .strip_prefix('$')
        .ok_or_else(|| PathError(format!("a JSONPath must start with '$': '{source}'")))?;
    let name_len: usize = rest
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    if name_len > 0 {
        let name = &rest[..name_len];
        return Ok((Root::Variable(name.to_string()), &rest[name_len..]));
    }
    Ok((Root::Input, rest))
}

/// Parses the part after the root as a reference path; `None` if it needs the full engine.
fn parse_reference(mut rest: &str) -> Option<Vec<Segment>> {
    let mut segs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            if r.starts_with('.') {
                return None;
            }
            let end = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            segs.push(Segment::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let body = &r[1..];
                let close = body.find(q)?;
                let name = &body[..close];
                let after = body[close + 1..].trim_start();
                let after = after.strip_prefix(']')?;
                segs.push(Segment::Field(name.to_string()));
                rest = after;
            } else {
                let close = r.find(']')?;
                let inner = r[..close].trim();
                let idx: i64 = inner.parse().ok()?;
                if inner.starts_with('+') {
                    return None;
                }
                segs.push(Segment::Index(idx));
                rest = &r[close + 1..];
            }
        } else {
            return None;
        }
    }
    Some(segs)
}

/// Rewrites Jayway-isms into RFC 9535 syntax where they differ.
fn normalize_full(rest: &str) -> String {
    // Dot-notation names with characters RFC 9535 forbids (e.g. '-') → bracket notation.
    let mut out = String::with_capacity(rest.len() + 8);
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
                i += 1;
            }
            '[' | '(' => {
                depth += 1;
                out.push(c);
                i += 1;
            }
            ']' | ')' => {
                depth -= 1;
                out.push(c);
                i += 1;
            }
            '.' if depth == 0 => {
                let double = chars.get(i + 1) == Some(&'.');
                let start = if double { i + 2 } else { i + 1 };
                let mut j = start;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                let plain = !name.is_empty()
                    && name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_');
                if name.is_empty() || plain {
                    out.push('.');
                    if double {
                        out.push('.');
                    }
                    out.push_str(&name);
                } else {
                    if double {
                        out.push_str("..");
                    }
                    out.push_str("['");
                    out.push_str(&name.replace('\'', "\\'"));
                    out.push_str("']");
                }
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn get_ref<'a>(doc: &'a Value, segs: &[Segment]) -> Option<&'a Value> {
    let mut cur = doc;
    for s in segs {
        cur = match (s, cur) {
            (Segment::Field(f), Value::Object(m)) => m.get(f.as_str())?,
            (Segment::Index(i), Value::Array(a)) => {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                if idx < 0 {
                    return None;
                }
                a.get(idx as usize)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn set_ref(doc: &mut Value, segs: &[Segment], value: Value, src: &str) -> Result<(), PathError> {
    let Some((last, init)) = segs.split_last() else {
        *doc = value;
        return Ok(());
    };
    let mut cur = doc;
    for s in init {
        cur = match s {
            Segment::Field(f) => {
                if cur.is_null() {
                    *cur = Value::Object(Map::new());
                }
                match cur {
                    Value::Object(m) => m
                        .entry(f.clone())
                        .or_insert_with(|| Value::Object(Map::new())),
                    _ => {
                        return Err(PathError(format!(
                            "Unable to apply ResultPath \"{src}\" to input"
                        )))
                    }
                }
            }
            Segment::Index(i) => match cur {
                Value::Array(a) if (*i as usize) < a.len() && *i >= 0 => &mut a[*i as usize],
                _ => {
                    return Err(PathError(format!(
                        "Unable to apply ResultPath \"{src}\" to input"
                    )))
                }
            },
        };
    }
    match last {
        Segment::Field(f) => {
            if !cur.is_object() {
                if cur.is_null() {
                    *cur = Value::Object(Map::new());
                } else {
                    return Err(PathError(format!(
                        "Unable to apply ResultPath \"{src}\" to input"
                    )));
                }
            }
            if let Value::Object(m) = cur {
                m.insert(f.clone(), value);
            }
            Ok(())
        }
        Segment::Index(i) => match cur {
            Value::Array(a) if *i >= 0 && (*i as usize) < a.len() => {
                a[*i as usize] = value;
                Ok(())
            }
            _ => Err(PathError(format!(
                "Unable to apply ResultPath \"{src}\" to input"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_paths_read_and_write() {
        let p = Path::parse("$.a.b[1]").unwrap();
        assert!(p.is_reference());
        assert_eq!(p.get(&json!({"a": {"b": [1, 2]}})), Some(json!(2)));
        assert_eq!(p.normalized(), "$['a']['b'][1]");
        let p = Path::parse("$['my key'].x").unwrap();
        assert_eq!(p.get(&json!({"my key": {"x": true}})), Some(json!(true)));
        let mut doc = json!({"keep": 1});
        Path::parse("$.r.s")
            .unwrap()
            .set(&mut doc, json!(5))
            .unwrap();
        assert_eq!(doc, json!({"keep": 1, "r": {"s": 5}}));
        let mut doc = json!({"r": 3});
        assert!(Path::parse("$.r.s")
            .unwrap()
            .set(&mut doc, json!(5))
            .is_err());
    }

    #[test]
    fn roots() {
        assert_eq!(
            *Path::parse("$$.Execution.Id").unwrap().root(),
            Root::Context
        );
        assert_eq!(
            *Path::parse("$var.x").unwrap().root(),
            Root::Variable("var".into())
        );
        assert_eq!(*Path::parse("$").unwrap().root(), Root::Input);
        assert!(Path::parse("a.b").is_err());
    }

    #[test]
    fn full_paths_return_arrays() {
        let doc = json!({"items": [{"n": 1, "k": "a"}, {"n": 5, "k": "b"}], "my-key": {"x": 1}});
        let p = Path::parse("$.items[?(@.n > 2)].k").unwrap();
        assert!(!p.is_reference());
        assert_eq!(p.get(&doc), Some(json!(["b"])));
        assert_eq!(
            Path::parse("$..k").unwrap().get(&doc),
            Some(json!(["a", "b"]))
        );
        assert_eq!(
            Path::parse("$.items[*].n").unwrap().get(&doc),
            Some(json!([1, 5]))
        );
        assert_eq!(Path::parse("$.my-key.x").unwrap().get(&doc), Some(json!(1)));
    }
}
