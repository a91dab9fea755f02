//! PID-1 duties: spawn the program, forward signals to it, reap every zombie, and exit
//! with its status.
//!
//! The design is tini's: no signal handlers and no threads. pexinit blocks every signal
//! and takes them one at a time with sigtimedwait(2). Blocked signals are queued even
//! for a PID 1, which the kernel otherwise spares signals it has no handler for.
//!
//! - SIGCHLD: reap with waitpid(-1, WNOHANG) until nothing is left (orphans included).
//! - Any other catchable signal (1-31 and SIGRTMIN..SIGRTMAX): sent on to the program,
//!   or to its process group with `-g`. SIGTSTP/SIGTTIN/SIGTTOU are forwarded too and
//!   never stop pexinit.
//! - When the program exits, the rest of its process group gets SIGTERM, then SIGKILL
//!   after the grace period; then pexinit exits with the program's status, 128+N when
//!   it died of signal N.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::run::apply::Program;
use crate::run::privileges::{Credentials, Step};

/// How long to wait for the group's last members after SIGKILL before giving up on them
/// (members whose parent outside our reach never reaps them stay zombies forever).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// The only signals whose disposition pexinit may change: its `main` ignores SIGPIPE, a
/// Rust runtime (the test harness's) handles SIGSEGV/SIGBUS; the child ignores SIGTTOU around
/// tcsetpgrp. Every other disposition pexinit inherited is still in place when it execs
/// the program (handlers are reset by execve itself; pexinit installs none), so
/// restoring these four gives the program exactly what pexinit's parent gave pexinit.
const TOUCHED: [libc::c_int; 4] = [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS, libc::SIGTTOU];

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
/// ignored a signal, SIG_DFL everywhere else. Only system calls: safe between fork and
/// exec.
pub fn restore_dispositions() {
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

/// How `run` supervises.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Forward signals to the program's process group instead of the program alone.
    pub kill_process_group: bool,
    /// Between SIGTERM and SIGKILL for the group's leftovers once the program exited.
    pub grace: Duration,
    /// Become a child subreaper (when not PID 1), so orphans are still ours to reap.
    pub subreaper: bool,
}

/// Whether this process is PID 1 (of its PID namespace).
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
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
}

/// Starts `program` as pexinit's child and supervises it; returns the exit status
/// pexinit should exit with.
pub fn supervise(
    program: &Program,
    credentials: Option<&Credentials>,
    options: &InitOptions,
) -> Result<u8> {
    let all = full_set();
    let mut inherited_mask = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: valid set pointers.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, inherited_mask.as_mut_ptr()) } != 0 {
        return Err(Error::io(
            "blocking signals",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: sigprocmask filled it.
    let inherited_mask = unsafe { inherited_mask.assume_init() };
    if options.subreaper {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::io("becoming a child subreaper", e.into()))?;
    }
    let child = spawn(program, credentials, &inherited_mask)?;
    tracing::debug!("supervising pid {child}");
    Supervisor {
        child,
        options,
        all,
    }
    .run()
}

fn full_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigfillset initializes the set (glibc leaves out its two internal signals).
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        set.assume_init()
    }
}

/// What the child reports back when it cannot exec: the stage and the errno, packed
/// as `stage << 32 | errno`; 0 = it did exec.
struct SpawnContext<'a> {
    program: &'a Program,
    credentials: Option<&'a Credentials>,
    inherited_mask: &'a libc::sigset_t,
    failure: AtomicU64,
}

/// The child's stack: it only makes system calls, but Rust frames want some room.
const CHILD_STACK: usize = 256 * 1024;

/// Starts the child like posix_spawn(3) does: clone(CLONE_VM | CLONE_VFORK) shares
/// pexinit's memory instead of copying its page tables, and pexinit is suspended until
/// the child has exec'd or given up, so whatever the child wrote in `failure` is there
/// when clone returns.
fn spawn(
    program: &Program,
    credentials: Option<&Credentials>,
    inherited_mask: &libc::sigset_t,
) -> Result<Pid> {
    let context = SpawnContext {
        program,
        credentials,
        inherited_mask,
        failure: AtomicU64::new(0),
    };
    // Untouched pages of a large zeroed allocation are never faulted in.
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack grows down from its (16-byte aligned) top; `stack` and `context`
    // outlive the child's use of them because CLONE_VFORK suspends us until it execs or
    // exits. All signals are blocked, so no handler runs on the shared memory.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        libc::clone(
            child_main,
            top.cast(),
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
    let failure = context.failure.load(Ordering::Acquire);
    drop(stack);
    if failure != 0 {
        // The child never ran the program; collect it before saying why.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let errno = Errno::from_raw((failure & 0xffff_ffff) as i32);
        return Err(stage_error(
            program,
            credentials,
            (failure >> 32) as u32,
            errno,
        ));
    }
    Ok(Pid::from_raw(pid))
}

/// The child: own process group, foreground of the terminal if there is one, inherited
/// signal state, the target user, then execve. Only system calls, no allocation: it
/// runs on pexinit's memory.
extern "C" fn child_main(context: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a SpawnContext that outlives this function.
    let context = unsafe { &*(context as *const SpawnContext) };
    let (stage, errno) = child_setup_and_exec(context);
    context.failure.store(
        u64::from(stage as u32) << 32 | u64::from(errno as i32 as u32),
        Ordering::Release,
    );
    // SAFETY: leave without running anything of pexinit's (atexit, destructors).
    unsafe { libc::_exit(127) }
}

/// Returns only on failure: which stage failed, with its errno.
fn child_setup_and_exec(context: &SpawnContext) -> (ChildStage, Errno) {
    // SAFETY: only async-signal-safe system calls in this whole block.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return (ChildStage::SetPgid, Errno::last());
        }
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            // A background process group changing the terminal's foreground group gets
            // SIGTTOU: ignore it for the call (restore_dispositions puts it back).
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            if libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) != 0 {
                let errno = Errno::last();
                // No controlling terminal (ENOTTY) or a hung-up one (ENXIO): fine.
                if errno != Errno::ENOTTY && errno != Errno::ENXIO {
                    return (ChildStage::TcSetPgrp, errno);
                }
            }
        }
    }
    restore_dispositions();
    if let Some(credentials) = context.credentials
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
    // SAFETY: restoring the mask pexinit inherited.
    unsafe {
        libc::sigprocmask(
            libc::SIG_SETMASK,
            context.inherited_mask,
            std::ptr::null_mut(),
        )
    };
    (ChildStage::Exec, context.program.execve())
}

fn stage_error(
    program: &Program,
    credentials: Option<&Credentials>,
    stage: u32,
    errno: Errno,
) -> Error {
    let step = match stage {
        s if s == ChildStage::Exec as u32 => return program.exec_error(errno),
        s if s == ChildStage::SetGroups as u32 => Some(Step::SetGroups),
        s if s == ChildStage::SetGid as u32 => Some(Step::SetGid),
        s if s == ChildStage::SetUid as u32 => Some(Step::SetUid),
        s if s == ChildStage::VerifyIds as u32 => Some(Step::Verify),
        _ => None,
    };
    match (step, credentials) {
        (Some(step), Some(credentials)) => credentials.error(step, errno),
        _ => {
            let what = if stage == ChildStage::SetPgid as u32 {
                "setpgid"
            } else {
                "tcsetpgrp (making the program the terminal's foreground)"
            };
            Error::io(
                format!("starting the program: {what}"),
                std::io::Error::from_raw_os_error(errno as i32),
            )
        }
    }
}

struct Supervisor<'a> {
    child: Pid,
    options: &'a InitOptions,
    all: libc::sigset_t,
}

/// What waiting for a signal produced.
enum Event {
    Signal(libc::c_int),
    Timeout,
}

impl Supervisor<'_> {
    fn run(self) -> Result<u8> {
        let group = self.child.as_raw();
        let mut status: Option<u8> = None;
        // Set once the program exited and its group got SIGTERM / SIGKILL.
        let mut deadline: Option<Instant> = None;
        let mut killed = false;
        loop {
            match self.wait(deadline) {
                Event::Signal(libc::SIGCHLD) => self.reap(&mut status),
                Event::Signal(sig) => self.forward(sig, status.is_some()),
                Event::Timeout if !killed => {
                    killed = true;
                    deadline = Some(Instant::now() + AFTER_KILL);
                    tracing::info!(
                        "process group {group} outlived the {:?} grace period: SIGKILL",
                        self.options.grace
                    );
                    if kill_group(group, libc::SIGKILL).is_err() {
                        return Ok(status.unwrap_or(0));
                    }
                }
                Event::Timeout => {
                    tracing::warn!(
                        "process group {group} still has members after SIGKILL (unreaped \
                         zombies of another parent?); exiting anyway"
                    );
                    return Ok(status.unwrap_or(0));
                }
            }
            let Some(code) = status else { continue };
            // The program is gone: wind down what is left of its process group.
            if !group_exists(group) {
                return Ok(code);
            }
            if deadline.is_none() {
                let sig = if self.options.grace.is_zero() {
                    killed = true;
                    deadline = Some(Instant::now() + AFTER_KILL);
                    libc::SIGKILL
                } else {
                    deadline = Some(Instant::now() + self.options.grace);
                    libc::SIGTERM
                };
                tracing::info!(
                    "program exited; sending {} to the rest of process group {group}",
                    signal_name(sig)
                );
                if kill_group(group, sig).is_err() {
                    return Ok(code);
                }
            }
        }
    }

    /// The next signal, or Timeout once `deadline` passed.
    fn wait(&self, deadline: Option<Instant>) -> Event {
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            let rc = match deadline {
                None => {
                    // SAFETY: valid set and out pointer.
                    unsafe { libc::sigwaitinfo(&self.all, info.as_mut_ptr()) }
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Event::Timeout;
                    }
                    let timeout = nix::sys::time::TimeSpec::from_duration(left);
                    // SAFETY: valid set, out pointer and timeout.
                    unsafe { libc::sigtimedwait(&self.all, info.as_mut_ptr(), timeout.as_ref()) }
                }
            };
            if rc > 0 {
                return Event::Signal(rc);
            }
            match Errno::last() {
                Errno::EAGAIN => return Event::Timeout,
                // EINTR: interrupted (say, by SIGSTOP/SIGCONT); wait again.
                _ => continue,
            }
        }
    }

    /// Reaps every child that has exited, recording the program's status.
    fn reap(&self, status: &mut Option<u8>) {
        loop {
            let mut raw = 0;
            // SAFETY: plain waitpid on any child, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            match pid {
                0 => return,
                -1 => match Errno::last() {
                    Errno::EINTR => continue,
                    // ECHILD: no children left at all.
                    _ => return,
                },
                pid => {
                    let code = if libc::WIFSIGNALED(raw) {
                        128 + libc::WTERMSIG(raw)
                    } else {
                        libc::WEXITSTATUS(raw)
                    };
                    if pid == self.child.as_raw() {
                        tracing::info!("reaped pid {pid} (the program): exit status {code}");
                        *status = Some(code.clamp(0, 255) as u8);
                    } else {
                        tracing::info!("reaped pid {pid}: exit status {code}");
                    }
                }
            }
        }
    }

    /// Passes `sig` on to the program (or its group, with `-g` or once it has exited).
    fn forward(&self, sig: libc::c_int, program_exited: bool) {
        if !forwardable(sig) {
            tracing::debug!("not forwarding {}", signal_name(sig));
            return;
        }
        let child = self.child.as_raw();
        let (target, shown) = if self.options.kill_process_group || program_exited {
            (-child, format!("process group {child}"))
        } else {
            (child, format!("pid {child}"))
        };
        // SAFETY: kill(2) with plain integers.
        let rc = unsafe { libc::kill(target, sig) };
        if rc == 0 {
            tracing::info!("forwarded {} to {shown}", signal_name(sig));
        } else {
            tracing::info!(
                "forwarding {} to {shown} failed: {}",
                signal_name(sig),
                Errno::last().desc()
            );
        }
    }
}

/// 1-31 except SIGCHLD, SIGKILL and SIGSTOP, plus the real-time signals.
fn forwardable(sig: libc::c_int) -> bool {
    match sig {
        libc::SIGCHLD | libc::SIGKILL | libc::SIGSTOP => false,
        1..=31 => true,
        _ => (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig),
    }
}

fn kill_group(group: libc::pid_t, sig: libc::c_int) -> std::result::Result<(), Errno> {
    // SAFETY: kill(2) with plain integers.
    if unsafe { libc::kill(-group, sig) } == 0 {
        return Ok(());
    }
    let errno = Errno::last();
    if errno != Errno::ESRCH {
        tracing::warn!(
            "cannot send {} to process group {group}: {}",
            signal_name(sig),
            errno.desc()
        );
    }
    Err(errno)
}

/// Whether any process (zombies included) is still in process group `group`.
fn group_exists(group: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-group, 0) == 0 || Errno::last() == Errno::EPERM }
}

/// SIGTERM, SIGRTMIN+3, or the number.
pub fn signal_name(sig: libc::c_int) -> String {
    if let Ok(signal) = nix::sys::signal::Signal::try_from(sig) {
        return signal.as_str().to_owned();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if sig == min {
        "SIGRTMIN".to_owned()
    } else if sig > min && sig <= max {
        format!("SIGRTMIN+{}", sig - min)
    } else {
        format!("signal {sig}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_everything_catchable_but_sigchld() {
        for sig in 1..=31 {
            let expected = ![libc::SIGCHLD, libc::SIGKILL, libc::SIGSTOP].contains(&sig);
            assert_eq!(forwardable(sig), expected, "{sig}");
        }
        assert!(forwardable(libc::SIGRTMIN()));
        assert!(forwardable(libc::SIGRTMAX()));
        assert!(!forwardable(32));
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
    }

    #[test]
    fn the_start_was_captured() {
        assert!(CAPTURED.load(Ordering::Acquire));
    }
}
