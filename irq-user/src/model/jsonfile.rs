//! The versioned JSON files irqtune reads (plans, profiles): one way to read them, and errors
//! that name the file and, for bad JSON, the line and column.

use std::path::Path;

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

/// Parses `text`, a `kind` ("plan", "irqtune profile") named `name` in errors.
pub fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
    kind: &'static str,
) -> Result<T, JsonFileError> {
    serde_json::from_str(text).map_err(|e| JsonFileError::Syntax {
        kind,
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        msg: e.to_string(),
    })
}

pub fn read(path: &Path, kind: &'static str) -> Result<String, JsonFileError> {
    std::fs::read_to_string(path).map_err(|source| JsonFileError::Io {
        kind,
        path: path.display().to_string(),
        source,
    })
}
