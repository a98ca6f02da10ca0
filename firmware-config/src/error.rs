//! Configuration errors: one `FieldError` per bad field (its path, where the value came from,
//! the value and why), gathered into `ConfigErrors` so a person sees every problem at once.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML file.
    File(PathBuf),
    /// A version of the run-time store.
    Store(u64),
    /// An environment variable, by name.
    Env(String),
    /// A command-line option, as written.
    CommandLine(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("built-in default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Store(v) => write!(f, "stored version {v}"),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::CommandLine(arg) => write!(f, "command line `{arg}`"),
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The document is not valid TOML.
    Syntax,
    /// A key the schema does not have.
    UnknownKey,
    /// A value of the wrong type or shape (text where a number belongs, a malformed port range).
    WrongType,
    /// A number outside its allowed range.
    OutOfRange,
    /// Two listeners on one port.
    DuplicatePort,
    /// A file that must exist cannot be read.
    MissingFile,
    /// A malformed or unsupported URL.
    BadUrl,
    /// Any other rule (fields that must be set together, a value not allowed here).
    Invalid,
}

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `listeners.http`.
    pub path: String,
    /// What is wrong, as a category tests and the admin panel can match on.
    pub kind: ErrorKind,
    /// The offending value as written (secrets masked); `None` when there is none (a missing
    /// field, a syntax error).
    pub value: Option<String>,
    /// Why it is refused, in a sentence.
    pub reason: String,
    /// Where the value came from.
    pub origin: Origin,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        write!(f, " ({}): {}", self.origin, self.reason)
    }
}

/// Every bad field found while loading or validating, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<FieldError>);

impl ConfigErrors {
    /// The errors, in the order found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether any error is on `path` with `kind`.
    pub fn has(&self, path: &str, kind: ErrorKind) -> bool {
        self.0.iter().any(|e| e.path == path && e.kind == kind)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}
