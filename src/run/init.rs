//! PID-1 duties: start the program, forward signals to it, reap every zombie, keep the
//! terminal's job control working, and exit with its status.
//!
//! The design is tini's: no signal handlers and no threads. pexinit blocks every signal
//! (1 to 64, the C library's own real-time signals included) and takes them one at a time
//! with sigtimedwait(2). Blocked signals are queued even for a PID 1, which the kernel
//! otherwise spares signals it has no handler for.
//!
//! - SIGCHLD: reap with waitpid(-1, WNOHANG) until nothing is left (orphans included);
//!   a stop of the program is handled as a job's stop ([`crate::run::job`]).
//! - Any other catchable signal (1-64): rewritten as `--rewrite-signal` says, then sent
//!   on to the program, or to its process group with `-g`. SIGCONT always goes to the
//!   group: it resumes a stopped job. SIGTSTP/SIGTTIN/SIGTTOU never stop pexinit itself.
//! - When the program exits, the rest of its process group gets SIGTERM, then SIGKILL
//!   after the grace period; then pexinit exits with the program's status, 128+N when
//!   it died of signal N, 0 for a `--success-exit` status.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::run::exec::{self, Program, Spawn};
use crate::run::job::{Job, Terminal};
use crate::run::privileges::Credentials;
use crate::run::signals::{self, Rewrites, SigSet, signal_name};

/// How long to wait for the group's last members after SIGKILL before giving up on them
/// (members whose parent outside our reach never reaps them stay zombies forever).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How `run` supervises.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Forward signals to the program's process group instead of the program alone.
    pub kill_process_group: bool,
    /// Between SIGTERM and SIGKILL for the group's leftovers once the program exited.
    pub grace: Duration,
    /// Become a child subreaper (when not PID 1), so orphans are still ours to reap.
    pub subreaper: bool,
    /// The program's exit statuses pexinit reports as 0.
    pub success_exits: Vec<u8>,
    /// Which signal pexinit passes on for each one it receives.
    pub rewrites: Rewrites,
}

/// Whether this process is PID 1 (of its PID namespace).
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// Starts `program` as pexinit's child and supervises it; returns the exit status
/// pexinit should exit with.
pub fn supervise(
    program: &Program,
    credentials: Option<&Credentials>,
    options: &InitOptions,
) -> Result<u8> {
    let inherited_mask =
        signals::block(SigSet::all()).map_err(|e| Error::io("blocking signals", e))?;
    if options.subreaper {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::io("becoming a child subreaper", e.into()))?;
    }
    let terminal = Terminal::on_stdin();
    let child = exec::spawn(&Spawn {
        program,
        credentials,
        inherited_mask,
        take_terminal: terminal.as_ref().is_some_and(Terminal::ours),
    })?;
    tracing::debug!("supervising pid {child}");
    let code = Supervisor {
        child,
        options,
        job: Job::new(child.as_raw(), terminal, is_pid1()),
    }
    .run();
    Ok(remap(code, &options.success_exits))
}

/// `code`, or 0 when it is one of the `--success-exit` statuses.
fn remap(code: u8, success_exits: &[u8]) -> u8 {
    if code != 0 && success_exits.contains(&code) {
        tracing::info!("exit status {code} reported as 0 (--success-exit)");
        return 0;
    }
    code
}

struct Supervisor<'a> {
    child: Pid,
    options: &'a InitOptions,
    job: Job,
}

/// What waiting for a signal produced.
enum Event {
    Signal(libc::c_int),
    Timeout,
}

/// What reaping found out about the program.
#[derive(Default)]
struct Reaped {
    /// Its exit status (128+N for death by signal N), once it has exited.
    exited: Option<u8>,
    /// The signal that stopped it, when it stopped.
    stopped: Option<libc::c_int>,
}

impl Supervisor<'_> {
    /// Supervises until the program and its process group are gone; returns the
    /// program's exit status.
    fn run(self) -> u8 {
        let group = self.child.as_raw();
        let mut status: Option<u8> = None;
        // Set once the program exited and its group got SIGTERM / SIGKILL.
        let mut deadline: Option<Instant> = None;
        let mut killed = false;
        loop {
            match self.wait(deadline) {
                Event::Signal(libc::SIGCHLD) => {
                    let reaped = self.reap();
                    if let Some(code) = reaped.exited {
                        status = Some(code);
                        self.job.program_exited();
                    } else if let Some(sig) = reaped.stopped {
                        self.job.program_stopped(sig);
                    }
                }
                Event::Signal(sig) => self.received(sig, status.is_some()),
                Event::Timeout if !killed => {
                    killed = true;
                    deadline = Some(Instant::now() + AFTER_KILL);
                    tracing::info!(
                        "process group {group} outlived the {:?} grace period: SIGKILL",
                        self.options.grace
                    );
                    if kill_group(group, libc::SIGKILL).is_err() {
                        return status.unwrap_or(0);
                    }
                }
                Event::Timeout => {
                    tracing::warn!(
                        "process group {group} still has members after SIGKILL (unreaped \
                         zombies of another parent?); exiting anyway"
                    );
                    return status.unwrap_or(0);
                }
            }
            let Some(code) = status else { continue };
            // The program is gone: wind down what is left of its process group.
            if !group_exists(group) {
                return code;
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
                    return code;
                }
            }
        }
    }

    /// The next signal, or Timeout once `deadline` passed.
    fn wait(&self, deadline: Option<Instant>) -> Event {
        loop {
            let left = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Event::Timeout;
                    }
                    Some(left)
                }
            };
            // None: timed out or interrupted; the deadline above decides which.
            if let Some(sig) = signals::wait(SigSet::all(), left) {
                return Event::Signal(sig);
            }
        }
    }

    /// Reaps every child that has exited; reports what became of the program.
    fn reap(&self) -> Reaped {
        let mut reaped = Reaped::default();
        loop {
            let mut raw = 0;
            // SAFETY: plain waitpid on any child, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG | libc::WUNTRACED) };
            match pid {
                0 => return reaped,
                -1 => match Errno::last() {
                    Errno::EINTR => continue,
                    // ECHILD: no children left at all.
                    _ => return reaped,
                },
                pid if libc::WIFSTOPPED(raw) => {
                    if pid == self.child.as_raw() {
                        reaped.stopped = Some(libc::WSTOPSIG(raw));
                    }
                }
                pid => {
                    let code = if libc::WIFSIGNALED(raw) {
                        128 + libc::WTERMSIG(raw)
                    } else {
                        libc::WEXITSTATUS(raw)
                    };
                    if pid == self.child.as_raw() {
                        tracing::info!("reaped pid {pid} (the program): exit status {code}");
                        reaped.exited = Some(code.clamp(0, 255) as u8);
                    } else {
                        tracing::info!("reaped pid {pid}: exit status {code}");
                    }
                }
            }
        }
    }

    /// A signal for pexinit: SIGCONT first lets the job take the terminal back, then the
    /// signal (rewritten) goes on to the program.
    fn received(&self, sig: libc::c_int, program_exited: bool) {
        if sig == libc::SIGCONT && !program_exited {
            self.job.continued();
        }
        if !signals::forwardable(sig) {
            tracing::debug!("not forwarding {}", signal_name(sig));
            return;
        }
        let forwarded = self.options.rewrites.map(sig);
        if forwarded == 0 {
            tracing::info!("dropped {} (--rewrite-signal)", signal_name(sig));
            return;
        }
        if forwarded != sig {
            tracing::info!(
                "{} rewritten to {} (--rewrite-signal)",
                signal_name(sig),
                signal_name(forwarded)
            );
        }
        self.forward(forwarded, program_exited);
    }

    /// Passes `sig` on to the program; to its group with `-g`, once it has exited, or
    /// for SIGCONT (the whole stopped job must continue).
    fn forward(&self, sig: libc::c_int, program_exited: bool) {
        let child = self.child.as_raw();
        let to_group = self.options.kill_process_group || program_exited || sig == libc::SIGCONT;
        let (target, shown) = if to_group {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_exits_become_zero() {
        assert_eq!(remap(143, &[143, 130]), 0);
        assert_eq!(remap(130, &[143, 130]), 0);
        assert_eq!(remap(1, &[143]), 1);
        assert_eq!(remap(0, &[]), 0);
    }
}
