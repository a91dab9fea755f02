//! One error type for the whole tool, each variant carrying the exit status it maps to.
//!
//! The statuses follow `docker run`, so pexinit can stand in an ENTRYPOINT without
//! changing what orchestrators see: 125 when pexinit itself failed, 126 when the
//! program cannot be executed, 127 when it cannot be found.

use std::path::PathBuf;

/// pexinit itself failed: bad configuration, bad flags, an environment it cannot normalize.
pub const EXIT_PEXINIT_FAILED: u8 = 125;
/// The program exists but cannot be executed (a directory, no permission, not a valid PEX).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;
/// `doctor` found something `run` cannot fix.
pub const EXIT_UNHEALTHY: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid flags or arguments.
    #[error("{0}")]
    Usage(String),
    /// The configuration file could not be read or is invalid.
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A `PEXINIT_*` variable has an invalid value.
    #[error("{name}={value:?}: {message}")]
    ConfigEnv {
        name: &'static str,
        value: String,
        message: String,
    },
    /// The environment cannot be made safe for the program.
    #[error("{0}")]
    Normalize(String),
    /// `--user` names an unknown user or group, or cannot be honoured.
    #[error("{0}")]
    User(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    CannotExecute(String),
    /// Any other failure of pexinit's own work, with what it was doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::CannotExecute(_) => EXIT_CANNOT_EXECUTE,
            Error::Usage(_)
            | Error::Config { .. }
            | Error::ConfigEnv { .. }
            | Error::Normalize(_)
            | Error::User(_)
            | Error::Io { .. } => EXIT_PEXINIT_FAILED,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `message` on one line: control characters (a newline in a path the user gave, say)
/// are written as escapes (`\n`), so every error stays the one line log scrapers and
/// people read.
pub fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters() {
        assert_eq!(super::one_line("p\nr\tx\u{7f} é"), "p\\nr\\tx\\u{7f} é");
    }
}
