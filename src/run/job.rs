//! The program as a job of the terminal: who holds the terminal, and what a stop means.
//!
//! The program runs in a process group of its own. It gets the terminal only when
//! pexinit's own group holds it (pexinit was started in the foreground), and the terminal
//! goes back to pexinit's group when the program exits, so a shell or script that started
//! pexinit finds its terminal as it left it.
//!
//! ^Z (and a background read or write, SIGTTIN / SIGTTOU) stops the program's group, not
//! pexinit's, so pexinit passes the stop on to its own group: the shell sees its job
//! stop, and `fg` / `bg` continue pexinit, which continues the program (and gives it the
//! terminal again on `fg`). When nobody could ever continue pexinit's group (pexinit is
//! PID 1, or its group is orphaned), the kernel discards the stop, and pexinit continues
//! the program at once: the app behaves as it would as PID 1 itself.

use nix::errno::Errno;

use crate::run::signals::{self, SigSet};

/// stdin, when it is pexinit's controlling terminal.
pub struct Terminal {
    own_group: libc::pid_t,
}

impl Terminal {
    /// The controlling terminal on stdin, if there is one.
    pub fn on_stdin() -> Option<Terminal> {
        // SAFETY: plain system calls on a file descriptor number.
        let (foreground, own_group) =
            unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
        (foreground > 0).then_some(Terminal { own_group })
    }

    fn foreground(&self) -> libc::pid_t {
        // SAFETY: a plain system call on a file descriptor number.
        unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) }
    }

    /// Whether pexinit's own group is the foreground: the user is typing to pexinit's job.
    pub fn ours(&self) -> bool {
        self.foreground() == self.own_group
    }

    /// Makes `group` the foreground. Every signal is blocked in pexinit, so the kernel
    /// allows it from a background group without a SIGTTOU.
    fn give(&self, group: libc::pid_t) {
        // SAFETY: a plain system call on a file descriptor number.
        if unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, group) } == 0 {
            tracing::debug!("terminal given to process group {group}");
        } else {
            tracing::info!(
                "cannot give the terminal to process group {group}: {}",
                Errno::last().desc()
            );
        }
    }
}

/// The program's process group and the terminal it may hold.
pub struct Job {
    group: libc::pid_t,
    terminal: Option<Terminal>,
    /// Whether pexinit can be stopped at all: PID 1 cannot (the kernel drops stop signals
    /// for it), so a stop would never be undone.
    can_stop: bool,
}

impl Job {
    pub fn new(group: libc::pid_t, terminal: Option<Terminal>, pid1: bool) -> Job {
        Job {
            group,
            terminal,
            can_stop: !pid1,
        }
    }

    /// The program stopped on `sig`. Only the stops a terminal causes are handled; a
    /// SIGSTOP is someone's deliberate choice and stays.
    pub fn program_stopped(&self, sig: libc::c_int) {
        let background_io = sig == libc::SIGTTIN || sig == libc::SIGTTOU;
        if !background_io && sig != libc::SIGTSTP {
            tracing::info!(
                "the program stopped ({}); it continues on SIGCONT",
                signals::signal_name(sig)
            );
            return;
        }
        if background_io && self.terminal.as_ref().is_some_and(Terminal::ours) {
            // `fg` of a running job gives the terminal to pexinit's group only.
            tracing::info!("the program wants the terminal pexinit's group holds: handing it on");
            self.take_terminal();
            self.resume();
            return;
        }
        if self.can_stop && stop_self(sig, self.terminal.is_some()) {
            tracing::info!(
                "the program stopped ({}); pexinit stopped with it, and continues",
                signals::signal_name(sig)
            );
            return;
        }
        if background_io {
            // Resuming it would only stop it again on its next read or write.
            tracing::info!(
                "the program stopped on {} and nobody can continue pexinit's group; it \
                 continues on SIGCONT",
                signals::signal_name(sig)
            );
            return;
        }
        tracing::info!("the program stopped on SIGTSTP, which nobody could undo: continuing it");
        self.resume();
    }

    /// pexinit was continued (`fg`, `bg`, or anyone's SIGCONT): when its group is the
    /// foreground again, the program gets the terminal back.
    pub fn continued(&self) {
        if self.terminal.as_ref().is_some_and(Terminal::ours) {
            self.take_terminal();
        }
    }

    /// The program exited: the terminal goes back to pexinit's group if the program's
    /// group still holds it, so whoever started pexinit can read from it again.
    pub fn program_exited(&self) {
        if let Some(terminal) = &self.terminal
            && terminal.foreground() == self.group
        {
            terminal.give(terminal.own_group);
        }
    }

    fn take_terminal(&self) {
        if let Some(terminal) = &self.terminal {
            terminal.give(self.group);
        }
    }

    fn resume(&self) {
        // SAFETY: kill(2) with plain integers.
        if unsafe { libc::kill(-self.group, libc::SIGCONT) } != 0 {
            tracing::info!(
                "cannot continue process group {}: {}",
                self.group,
                Errno::last().desc()
            );
        }
    }
}

/// Stops pexinit with `sig` (a terminal stop). With a terminal, the stop goes to
/// pexinit's whole process group, as the terminal would have sent it had pexinit's group
/// kept it (a script and pexinit, or a pipeline, stop together and the shell sees its job
/// stop); without one, to pexinit alone. Returns whether pexinit was stopped and continued
/// since: then a SIGCONT is pending (pexinit blocks it). When the kernel discarded the stop
/// (orphaned group, or `sig` ignored), none is.
fn stop_self(sig: libc::c_int, whole_group: bool) -> bool {
    let target = if whole_group {
        0
    } else {
        std::process::id() as libc::pid_t
    };
    // A stop signal clears any pending SIGCONT, so one pending afterwards came later.
    // SAFETY: kill(2) with plain integers; 0 = our own process group.
    if unsafe { libc::kill(target, sig) } != 0 {
        return false;
    }
    // Unblocked, the pending stop signal takes effect before the call returns: pexinit
    // stops there until someone continues it.
    if signals::unblock(SigSet::only(sig)).is_err() {
        return false;
    }
    let _ = signals::block(SigSet::only(sig));
    signals::pending().contains(libc::SIGCONT)
}
