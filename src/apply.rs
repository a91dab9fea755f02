//! Applying a plan: create the directories it names, then replace pexinit with the program.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use crate::command::CommandPlan;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::paths::create_dirs;
use crate::plan::EnvPlan;

/// Creates every directory the plan needs, without following links.
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

/// execve(2) the program in place of pexinit: no extra process stays around.
pub fn exec(plan: &EnvPlan, command: &CommandPlan) -> Result<Infallible> {
    let program = cstring(command.executable.as_os_str().as_bytes())?;
    let argv = command
        .argv_os
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for (k, v) in plan.env.iter() {
        let mut pair = k.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(v.as_bytes());
        env.push(cstring(&pair)?);
    }
    let err = nix::unistd::execve(&program, &argv, &env).unwrap_err();
    let shown = command.executable.display();
    Err(match err {
        nix::errno::Errno::ENOENT => Error::NotFound(format!(
            "{shown}: cannot execute: {err} (a missing #! interpreter?); fix the program's first line"
        )),
        _ => Error::CannotExecute(format!("{shown}: cannot execute: {err}")),
    })
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| {
        Error::Usage(format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ))
    })
}
