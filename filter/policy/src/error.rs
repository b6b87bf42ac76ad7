//! The one error a configuration is refused with, whether its JSON is malformed, a field is
//! unknown or a value cannot be compiled.

/// A configuration the filter refuses, with the path of the field at fault
/// (`policies[1].spec.rules[0].to[0].operation.methods[2]`), or `(config)` for the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

pub(crate) type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The path of an error that belongs to the whole document (a syntax error, a wrong type).
pub(crate) const DOCUMENT: &str = "(config)";

/// Refuses with `message` at `path`.
pub(crate) fn refuse<T>(path: &str, message: impl Into<String>) -> Result<T> {
    Err(ConfigError { path: path.to_string(), message: message.into() })
}
