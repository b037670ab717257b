//! Secrets: values read from a file or an environment variable named in the config, held in a
//! wrapper whose `Debug` and `Display` never show the value.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value. Printing it shows `[redacted]`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (a header, a form body).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from, as written in the config: exactly one of `file` or `env`.
/// Inline values are deliberately not accepted, so secrets never sit in a config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A file whose contents (trailing newline trimmed) are the secret.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither or both of `file` and `env` were given.
    #[error("give exactly one of `file` or `env`")]
    Ambiguous,
    /// The file could not be read.
    #[error("reading secret file {path}: {source}")]
    File {
        /// The file named in the config.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The environment variable is not set or not unicode.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The source produced an empty value.
    #[error("the secret is empty")]
    Empty,
}

impl SecretSource {
    /// Reads the secret now.
    pub fn load(&self) -> Result<Secret, SecretError> {
        let value = match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, Some(var)) => std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?,
            _ => return Err(SecretError::Ambiguous),
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn loads_from_file_trimming_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n").unwrap();
        let src = SecretSource {
            file: Some(path),
            env: None,
        };
        assert_eq!(src.load().unwrap().expose(), "abc");
    }

    #[test]
    fn rejects_both_or_neither() {
        let none = SecretSource {
            file: None,
            env: None,
        };
        assert!(matches!(none.load(), Err(SecretError::Ambiguous)));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let src = SecretSource {
            file: None,
            env: Some("GUESTGATE_TEST_SURELY_UNSET".into()),
        };
        let err = src.load().unwrap_err().to_string();
        assert!(err.contains("GUESTGATE_TEST_SURELY_UNSET"), "{err}");
    }
}
