//! The versioned JSON files irqtune reads (plans, profiles): one way to read them, and errors
//! that name the file and, for bad JSON, the line and column.

#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error("cannot read {kind} {path}: {source}")]
    Io {
        kind: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: not a valid {kind}: {msg}")]
    Syntax {
        kind: &'static str,
        path: String,
        line: usize,
        column: usize,
        msg: String,
    },
    /// Well-formed JSON with wrong content (format, version, values).
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

impl JsonFileError {
    /// The file is wrong, as opposed to unreadable.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, JsonFileError::Io { .. })
    }
}

/// The largest integer a JSON file irqtune reads may hold: 2^53 - 1, the largest one JSON
/// carries exactly between programs (RFC 8259, section 6). No count, time or size of a
/// recording comes near it; a file with a larger one is not irqtune's, and refusing it
/// keeps sums of its counts far from overflowing.
pub const MAX_JSON_INTEGER: u64 = (1 << 53) - 1;

/// Parses `text`, a `kind` ("plan", "irqtune profile") named `name` in errors.
pub fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
    kind: &'static str,
) -> Result<T, JsonFileError> {
    let syntax = |e: serde_json::Error| JsonFileError::Syntax {
        kind,
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        msg: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(syntax)?;
    if let Some(at) = oversized(&value, &mut "$".to_string()) {
        return Err(JsonFileError::Invalid {
            path: name.to_string(),
            msg: format!(
                "the number at {at} is beyond {MAX_JSON_INTEGER} (2^53 - 1), the largest integer JSON carries exactly; not a {kind} irqtune wrote"
            ),
        });
    }
    // Parsed again from the text, so type errors keep their line and column.
    serde_json::from_str(text).map_err(syntax)
}

/// The JSON path of the first number beyond [`MAX_JSON_INTEGER`], if any.
fn oversized(v: &serde_json::Value, at: &mut String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            let big = match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u > MAX_JSON_INTEGER,
                (_, Some(i), _) => i.unsigned_abs() > MAX_JSON_INTEGER,
                (_, _, Some(f)) => !f.is_finite() || f.abs() > MAX_JSON_INTEGER as f64,
                _ => true,
            };
            big.then(|| {
                if at.is_empty() {
                    "$".into()
                } else {
                    at.clone()
                }
            })
        }
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = at.len();
            at.push_str(&format!("[{i}]"));
            let r = oversized(x, at);
            at.truncate(len);
            r
        }),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            let len = at.len();
            at.push_str(&format!(".{k}"));
            let r = oversized(x, at);
            at.truncate(len);
            r
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_beyond_what_json_carries_are_refused_with_their_place() {
        let e = parse::<serde_json::Value>(r#"{"a":[1,{"b":18446744073709551615}]}"#, "f", "plan")
            .unwrap_err();
        assert!(e.to_string().contains("$.a[1].b"), "{e}");
        assert!(e.is_bad_input());
        assert!(parse::<serde_json::Value>(r#"{"a":9007199254740991}"#, "f", "plan").is_ok());
        assert!(parse::<serde_json::Value>(r#"{"a":-9007199254740992}"#, "f", "plan").is_err());
        assert!(parse::<serde_json::Value>(r#"{"a":1e300}"#, "f", "plan").is_err());
    }
}
