//! Configuration errors: every one names the file or the attribute path it is about.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One thing wrong with a configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The Nix evaluator is not installed.
    #[error(
        "{file}: nix-instantiate was not found on PATH; install it (`apt-get install nix-bin`) \
         or write the configuration as JSON"
    )]
    NixMissing {
        /// The file that needed Nix.
        file: PathBuf,
    },
    /// The Nix evaluator rejected a file.
    #[error("{file}: nix-instantiate failed:\n{stderr}")]
    Nix {
        /// The file.
        file: PathBuf,
        /// What Nix printed.
        stderr: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{file}: not valid JSON: {source}")]
    Json {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Two files give one attribute different values.
    #[error(
        "{path}: defined as {first_value} in {first} and as {second_value} in {second}; \
         keep one definition"
    )]
    Conflict {
        /// The attribute path.
        path: String,
        /// The file that defined it first.
        first: PathBuf,
        /// Its value there.
        first_value: String,
        /// The file that defined it again.
        second: PathBuf,
        /// Its value there.
        second_value: String,
    },
    /// An attribute is unknown, of the wrong type, out of range, or refers to nothing.
    #[error("{path}: {message}")]
    Invalid {
        /// The attribute path, starting at `hypervisor`.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Every error found in a configuration; never empty.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {}", e.to_string().replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Collects validation errors by attribute path.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<ConfigError>);

impl Problems {
    /// Records that the attribute at `path` is wrong.
    pub fn at(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.0.push(ConfigError::Invalid {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Records a reference from `path` to a `kind` named `name` that is not among `known`.
    pub fn unknown_ref<'a>(
        &mut self,
        path: impl fmt::Display,
        kind: &str,
        name: &str,
        known: impl IntoIterator<Item = &'a String>,
    ) {
        let hint = crate::path::did_you_mean(name, known.into_iter().map(String::as_str));
        self.at(path, format!("unknown {kind} `{name}`{hint}"));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
