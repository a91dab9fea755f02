//! Becoming the program: execve(2) in place of pexinit ([`exec`]), or in a child pexinit
//! supervises ([`spawn`]). Both give the program the signal dispositions and mask pexinit
//! was started with, and drop privileges when `--user` says so.

use std::convert::Infallible;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::run::command::CommandPlan;
use crate::run::plan::EnvPlan;
use crate::run::privileges::{Credentials, Step};
use crate::run::signals::{self, SigSet};
use crate::run::stack::GuardedStack;

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

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| {
        Error::Usage(format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ))
    })
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
    restore_dispositions();
    Err(program.exec_error(program.execve()))
}

// ---------------------------------------------------------------------------------
// Inherited signal dispositions
// ---------------------------------------------------------------------------------

/// The only signals whose disposition pexinit may change: its `main` ignores SIGPIPE, a
/// Rust runtime (the test harness's) handles SIGSEGV/SIGBUS. Every other disposition
/// pexinit inherited is still in place when it execs the program (handlers are reset by
/// execve itself; pexinit installs none), so restoring these three gives the program
/// exactly what pexinit's parent gave pexinit.
const TOUCHED: [libc::c_int; 3] = [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS];

/// Bit N-1 set: signal N (one of [`TOUCHED`]) was SIG_IGN when the process started.
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);
static CAPTURED: AtomicBool = AtomicBool::new(false);

/// Runs before `main` (from .init_array), before anything sets SIGPIPE to SIG_IGN, so we
/// learn which dispositions pexinit's parent really gave us.
#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE_AT_START: extern "C" fn() = capture_inherited;

extern "C" fn capture_inherited() {
    INHERITED_IGNORED.store(ignored_now(), Ordering::Relaxed);
    CAPTURED.store(true, Ordering::Release);
}

fn ignored_now() -> u64 {
    let mut ignored = 0u64;
    for sig in TOUCHED {
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only queries the current one into `old`.
        let rc = unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) };
        // SAFETY: sigaction filled `old` on success (and it was zeroed anyway).
        if rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN {
            ignored |= 1 << (sig - 1);
        }
    }
    ignored
}

/// The [`TOUCHED`] signals pexinit's parent left ignored (bit N-1 for signal N).
fn inherited_ignored() -> u64 {
    if CAPTURED.load(Ordering::Acquire) {
        return INHERITED_IGNORED.load(Ordering::Relaxed);
    }
    // The constructor did not run (an unusual loader): the best we can do is the
    // current state, minus SIGPIPE, which `main` ignores on its own.
    ignored_now() & !(1 << (libc::SIGPIPE - 1))
}

/// Gives the program the signal dispositions pexinit inherited: SIG_IGN where its parent
/// ignored a signal, SIG_DFL everywhere else. Only system calls: safe between clone and
/// exec.
fn restore_dispositions() {
    let ignored = inherited_ignored();
    for sig in TOUCHED {
        let handler = if ignored & (1 << (sig - 1)) != 0 {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // SAFETY: plain sigaction with a zeroed (empty-mask) struct.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

// ---------------------------------------------------------------------------------
// The supervised child
// ---------------------------------------------------------------------------------

/// How the supervised child starts.
pub struct Spawn<'a> {
    pub program: &'a Program,
    pub credentials: Option<&'a Credentials>,
    /// The mask pexinit was started with, which the program gets.
    pub inherited_mask: SigSet,
    /// Make the program's process group the terminal's foreground group (pexinit's own
    /// group holds it: the program is what the user types to).
    pub take_terminal: bool,
}

/// Where the child failed when it cannot exec.
#[derive(Clone, Copy)]
#[repr(u32)]
enum ChildStage {
    SetPgid = 1,
    TcSetPgrp = 2,
    SetGroups = 3,
    SetGid = 4,
    SetUid = 5,
    VerifyIds = 6,
    Exec = 7,
    SigMask = 8,
}

/// What the child reads, and where it reports back when it cannot exec: the stage and
/// the errno, packed as `stage << 32 | errno`; 0 = it did exec.
struct SpawnContext<'a> {
    spawn: &'a Spawn<'a>,
    failure: AtomicU64,
}

/// The child's stack: it only makes system calls, but Rust frames want some room.
const CHILD_STACK: usize = 256 * 1024;

/// Starts the program in a new process group, as pexinit's child, like posix_spawn(3)
/// does: clone(CLONE_VM | CLONE_VFORK) shares pexinit's memory instead of copying its page
/// tables, and pexinit is suspended until the child has exec'd or given up, so whatever
/// the child wrote in `failure` is there when clone returns. Every signal must be blocked
/// (no handler may run on the shared memory); the child restores `inherited_mask`.
pub fn spawn(spawn: &Spawn) -> Result<Pid> {
    let context = SpawnContext {
        spawn,
        failure: AtomicU64::new(0),
    };
    let stack = GuardedStack::new(CHILD_STACK)
        .map_err(|e| Error::io("starting the program (a stack for the child)", e))?;
    // SAFETY: the stack is a mapping of its own with a guard page below it; `stack` and
    // `context` outlive the child's use of them because CLONE_VFORK suspends us until it
    // execs or exits.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(&context).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(Error::io(
            "starting the program (clone)",
            std::io::Error::last_os_error(),
        ));
    }
    drop(stack);
    let failure = context.failure.load(Ordering::Acquire);
    if failure != 0 {
        // The child never ran the program; collect it before saying why.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let errno = Errno::from_raw((failure & 0xffff_ffff) as i32);
        return Err(stage_error(spawn, (failure >> 32) as u32, errno));
    }
    Ok(Pid::from_raw(pid))
}

/// The child: own process group, foreground of the terminal when asked, inherited
/// signal state, the target user, then execve. Only system calls, no allocation: it
/// runs on pexinit's memory.
extern "C" fn child_main(context: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a SpawnContext that outlives this function.
    let context = unsafe { &*(context as *const SpawnContext) };
    let (stage, errno) = child_setup_and_exec(context.spawn);
    context.failure.store(
        u64::from(stage as u32) << 32 | u64::from(errno as i32 as u32),
        Ordering::Release,
    );
    // SAFETY: leave without running anything of pexinit's (atexit, destructors).
    unsafe { libc::_exit(127) }
}

/// Returns only on failure: which stage failed, with its errno.
fn child_setup_and_exec(spawn: &Spawn) -> (ChildStage, Errno) {
    // SAFETY: only async-signal-safe system calls on pexinit's memory, which the
    // CLONE_VFORK parent leaves alone until this child execs or exits.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return (ChildStage::SetPgid, Errno::last());
        }
        // From a background group this would raise SIGTTOU, but the kernel lets a
        // process that blocks SIGTTOU (every signal is blocked here) change the
        // foreground group.
        if spawn.take_terminal && libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) != 0 {
            let errno = Errno::last();
            // The terminal went away meanwhile (ENOTTY, ENXIO): nothing to take.
            if errno != Errno::ENOTTY && errno != Errno::ENXIO {
                return (ChildStage::TcSetPgrp, errno);
            }
        }
    }
    restore_dispositions();
    if let Some(credentials) = spawn.credentials
        && let Err((step, errno)) = credentials.apply()
    {
        let stage = match step {
            Step::SetGroups => ChildStage::SetGroups,
            Step::SetGid => ChildStage::SetGid,
            Step::SetUid => ChildStage::SetUid,
            Step::Verify => ChildStage::VerifyIds,
        };
        return (stage, errno);
    }
    if let Err(errno) = signals::set_mask(spawn.inherited_mask) {
        return (ChildStage::SigMask, errno);
    }
    (ChildStage::Exec, spawn.program.execve())
}

fn stage_error(spawn: &Spawn, stage: u32, errno: Errno) -> Error {
    let step = match stage {
        s if s == ChildStage::Exec as u32 => return spawn.program.exec_error(errno),
        s if s == ChildStage::SetGroups as u32 => Some(Step::SetGroups),
        s if s == ChildStage::SetGid as u32 => Some(Step::SetGid),
        s if s == ChildStage::SetUid as u32 => Some(Step::SetUid),
        s if s == ChildStage::VerifyIds as u32 => Some(Step::Verify),
        _ => None,
    };
    match (step, spawn.credentials) {
        (Some(step), Some(credentials)) => credentials.error(step, errno),
        _ => {
            let what = match stage {
                s if s == ChildStage::SetPgid as u32 => "setpgid",
                s if s == ChildStage::SigMask as u32 => "restoring the signal mask",
                _ => "tcsetpgrp (making the program the terminal's foreground)",
            };
            Error::io(
                format!("starting the program: {what}"),
                std::io::Error::from_raw_os_error(errno as i32),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_was_captured() {
        assert!(CAPTURED.load(Ordering::Acquire));
    }
}
