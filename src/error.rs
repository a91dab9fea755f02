//! One error type for the whole tool, each variant carrying the exit status it maps to,
//! and every exit status pexinit gives ([`exit`]). Commands return [`Error`]; `main`
//! alone prints it (one line) and exits with [`Error::exit_code`].
//!
//! The statuses follow `docker run`, so pexinit can stand in an ENTRYPOINT without
//! changing what orchestrators see: 125 when pexinit itself failed, 126 when the
//! program cannot be executed, 127 when it cannot be found.

use std::path::PathBuf;

/// Every exit status of pexinit (documented in the README and each command's help).
pub mod exit {
    /// Success: run's program is not involved (its own status is passed through).
    pub const OK: u8 = 0;
    /// `doctor` found something `run` cannot fix.
    pub const UNHEALTHY: u8 = 1;
    /// `seed` (pex failed while warming) or `prime` (I/O error, disk full) failed
    /// part-way; prime leaves DIR as it was.
    pub const FAILED_PART_WAY: u8 = 1;
    /// `repair --dry-run`: poisoned entries were found that a repair would fix.
    pub const WOULD_REPAIR: u8 = 1;
    /// `seed`: the seed was built but does not verify (a second warm-up created files,
    /// or the cache has broken links): it is not trustworthy and no manifest was written.
    pub const UNVERIFIED: u8 = 2;
    /// `repair`: suspicious links or unreadable places remain, reported and left alone.
    pub const SUSPICIOUS: u8 = 2;
    /// `repair`: something that needed healing could not be healed (permissions, I/O).
    pub const NOT_HEALED: u8 = 3;
    /// pexinit itself failed: bad flags or configuration, bad input, an environment it
    /// cannot normalize. Nothing was changed.
    pub const PEXINIT_FAILED: u8 = 125;
    /// The program exists but cannot be executed (a directory, no permission, not a
    /// valid PEX).
    pub const CANNOT_EXECUTE: u8 = 126;
    /// The program (or `seed`'s interpreter) was not found.
    pub const NOT_FOUND: u8 = 127;
}

/// The cause of a failure, kept whole (not flattened into the message) so that
/// `std::error::Error::source` still reaches it.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid flags, arguments or input files.
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
    /// Work that had started failed part-way (seed's warm-up, prime's copy).
    #[error("{0}")]
    Failed(String),
    /// Like [`Error::Failed`], with the cause.
    #[error("{context}: {source}")]
    FailedWith { context: String, source: Source },
    /// `seed` built a seed that does not verify.
    #[error("{0}")]
    Unverified(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::CannotExecute(_) => exit::CANNOT_EXECUTE,
            Error::Failed(_) | Error::FailedWith { .. } => exit::FAILED_PART_WAY,
            Error::Unverified(_) => exit::UNVERIFIED,
            Error::Usage(_)
            | Error::Config { .. }
            | Error::ConfigEnv { .. }
            | Error::Normalize(_)
            | Error::User(_)
            | Error::Io { .. } => exit::PEXINIT_FAILED,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A part-way failure (status 1) of `context`, caused by `source`.
    pub fn failed(context: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::FailedWith {
            context: context.into(),
            source: source.into(),
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
