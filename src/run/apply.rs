//! Applying a plan: create the directories it names, then replace pexinit with the
//! program ([`exec`]) or start it under [`crate::run::init::supervise`].

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::paths::create_dirs;
use crate::run::command::CommandPlan;
use crate::run::init;
use crate::run::plan::EnvPlan;
use crate::run::privileges::Credentials;

/// Creates every directory the plan needs, without following links, owned by `who` (so
/// root preparing for `--user` leaves directories that user can write).
pub fn prepare(plan: &EnvPlan, who: &Identity) -> Result<()> {
    for dir in &plan.mkdirs {
        create_dirs(&dir.root, &dir.path, dir.policy, who).map_err(|e| {
            Error::Normalize(format!(
                "cannot create {}: {e}; remove what is in the way or set HOME / PEX_ROOT to a \
                 writable directory",
                dir.path.display()
            ))
        })?;
    }
    Ok(())
}

/// The program as execve(2) wants it: path, argv and environment as C strings, with the
/// pointer arrays built up front so that exec'ing after fork allocates nothing.
pub struct Program {
    path: CString,
    /// Where the pointers below point; kept alive (and never touched) with them.
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    shown: String,
}

impl Program {
    pub fn new(plan: &EnvPlan, command: &CommandPlan) -> Result<Self> {
        let path = cstring(command.executable.as_os_str().as_bytes())?;
        let mut strings = Vec::with_capacity(command.argv_os.len() + 64);
        for arg in &command.argv_os {
            strings.push(cstring(arg.as_bytes())?);
        }
        let argc = strings.len();
        for (k, v) in plan.env.iter() {
            let mut pair = Vec::with_capacity(k.len() + v.len() + 1);
            pair.extend_from_slice(k.as_bytes());
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            strings.push(cstring(&pair)?);
        }
        // A CString's bytes live on the heap: moving the Vec below does not move them.
        let pointers = |list: &[CString]| {
            list.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let argv = pointers(&strings[..argc]);
        let envp = pointers(&strings[argc..]);
        Ok(Program {
            path,
            _strings: strings,
            argv,
            envp,
            shown: command.executable.display().to_string(),
        })
    }

    /// execve(2); returns only on failure, with its errno. Async-signal-safe.
    pub fn execve(&self) -> Errno {
        // SAFETY: every pointer points into `self`, which outlives the call, and both
        // arrays end with a null pointer.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Errno::last()
    }

    /// The error for a failed execve, with the exit status `docker run` would use:
    /// 127 for ENOENT, 126 for anything else (EACCES, ENOEXEC, EISDIR, ...).
    pub fn exec_error(&self, errno: Errno) -> Error {
        let shown = &self.shown;
        match errno {
            Errno::ENOENT => Error::NotFound(format!(
                "{shown}: cannot execute: {} (a missing #! interpreter?); fix the program's first \
                 line",
                errno.desc()
            )),
            Errno::ENOEXEC => Error::CannotExecute(format!(
                "{shown}: cannot execute: {} (not a binary for this machine, and no #! line)",
                errno.desc()
            )),
            _ => Error::CannotExecute(format!("{shown}: cannot execute: {}", errno.desc())),
        }
    }
}

/// execve(2) the program in place of pexinit: no extra process stays around.
///
/// Drops privileges first when `credentials` says so, and resets the signal
/// dispositions pexinit itself changed (Rust ignores SIGPIPE) to what pexinit inherited.
pub fn exec(program: &Program, credentials: Option<&Credentials>) -> Result<Infallible> {
    if let Some(credentials) = credentials {
        credentials
            .apply()
            .map_err(|(step, errno)| credentials.error(step, errno))?;
    }
    init::restore_dispositions();
    Err(program.exec_error(program.execve()))
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| {
        Error::Usage(format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ))
    })
}
