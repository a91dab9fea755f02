//! Signals as the kernel numbers them (1 to 64), the raw calls pexinit supervises with,
//! and the names users write (`TERM`, `SIGRTMIN+3`, `34`).
//!
//! The C library's own signal sets leave out the real-time signals it keeps for itself
//! (glibc: 32 and 33; musl: 32 to 34), and glibc's sigprocmask quietly unblocks them. A
//! signal pexinit does not block kills it (default action) or, as PID 1, is lost; so
//! pexinit builds its sets bit by bit and calls the kernel directly. Real-time signals are
//! numbers here, never `SIGRTMIN()`: that is 34 on glibc and 35 on musl.

use std::io;
use std::time::Duration;

use nix::errno::Errno;

/// The last signal number the kernel has (`_NSIG` on every architecture pexinit builds for).
pub const LAST: libc::c_int = 64;
/// The kernel's first real-time signal.
const FIRST_REALTIME: libc::c_int = 32;
/// What glibc, bash, `kill -l` and Python call SIGRTMIN: the names users write mean these
/// numbers on every build.
const NAMED_RTMIN: libc::c_int = 34;
/// The kernel's signal set is one bit per signal: 64 bits, 8 bytes.
const KERNEL_SET_BYTES: usize = 8;

/// A set of signals in the kernel's layout: bit N-1 is signal N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigSet(u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);

    /// Every signal, 1 to 64 (the kernel never blocks SIGKILL and SIGSTOP anyway).
    pub const fn all() -> SigSet {
        SigSet(u64::MAX)
    }

    pub fn only(sig: libc::c_int) -> SigSet {
        SigSet::EMPTY.with(sig)
    }

    pub fn with(self, sig: libc::c_int) -> SigSet {
        match bit(sig) {
            Some(bit) => SigSet(self.0 | bit),
            None => self,
        }
    }

    pub fn contains(self, sig: libc::c_int) -> bool {
        bit(sig).is_some_and(|bit| self.0 & bit != 0)
    }
}

fn bit(sig: libc::c_int) -> Option<u64> {
    (1..=LAST).contains(&sig).then(|| 1u64 << (sig - 1))
}

/// rt_sigprocmask(2) on the calling thread; returns the previous mask. Only a system
/// call: safe between clone and exec.
fn sigprocmask(how: libc::c_int, set: Option<&SigSet>) -> Result<SigSet, Errno> {
    let mut old = SigSet::EMPTY;
    let new = set.map_or(std::ptr::null(), |s| std::ptr::from_ref(&s.0));
    // SAFETY: both pointers are valid for KERNEL_SET_BYTES (or null for `set`).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            new,
            std::ptr::from_mut(&mut old.0),
            KERNEL_SET_BYTES,
        )
    };
    if rc == 0 { Ok(old) } else { Err(Errno::last()) }
}

/// Blocks `set` in addition to what is blocked; returns the previous mask.
pub fn block(set: SigSet) -> io::Result<SigSet> {
    sigprocmask(libc::SIG_BLOCK, Some(&set)).map_err(io::Error::from)
}

pub fn unblock(set: SigSet) -> io::Result<SigSet> {
    sigprocmask(libc::SIG_UNBLOCK, Some(&set)).map_err(io::Error::from)
}

/// Replaces the mask; async-signal-safe, for the child before it execs.
pub fn set_mask(set: SigSet) -> Result<(), Errno> {
    sigprocmask(libc::SIG_SETMASK, Some(&set)).map(drop)
}

/// The signals pending for this process (blocked and not yet taken).
pub fn pending() -> SigSet {
    let mut set = SigSet::EMPTY;
    // SAFETY: the pointer is valid for KERNEL_SET_BYTES.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            std::ptr::from_mut(&mut set.0),
            KERNEL_SET_BYTES,
        )
    };
    if rc == 0 { set } else { SigSet::EMPTY }
}

/// Takes the next pending signal of `set` (which must be blocked), waiting at most
/// `timeout` (forever when None). None when the time ran out or the wait was interrupted
/// (a stop and continue does that): the caller checks its own deadline again.
pub fn wait(set: SigSet, timeout: Option<Duration>) -> Option<libc::c_int> {
    let timespec = timeout.map(nix::sys::time::TimeSpec::from_duration);
    let timespec_ptr: *const libc::timespec = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| std::ptr::from_ref(t.as_ref()));
    // SAFETY: a valid set and timeout (or null: no timeout); no siginfo wanted.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            std::ptr::from_ref(&set.0),
            std::ptr::null_mut::<libc::siginfo_t>(),
            timespec_ptr,
            KERNEL_SET_BYTES,
        )
    };
    libc::c_int::try_from(rc).ok().filter(|&sig| sig > 0)
}

/// Whether pexinit passes `sig` on: 1 to 64, except SIGKILL and SIGSTOP (nobody can
/// catch them) and SIGCHLD (pexinit's own business: its children changed state).
pub fn forwardable(sig: libc::c_int) -> bool {
    (1..=LAST).contains(&sig) && ![libc::SIGCHLD, libc::SIGKILL, libc::SIGSTOP].contains(&sig)
}

/// SIGTERM, SIGRTMIN+3 (glibc's numbering, as bash and Python show it), or `signal 32`.
pub fn signal_name(sig: libc::c_int) -> String {
    if let Some(name) = classic_name(sig) {
        return name.to_owned();
    }
    match sig {
        NAMED_RTMIN => "SIGRTMIN".to_owned(),
        LAST => "SIGRTMAX".to_owned(),
        s if s > NAMED_RTMIN && s < LAST => format!("SIGRTMIN+{}", s - NAMED_RTMIN),
        s => format!("signal {s}"),
    }
}

/// Names of 1-31; the numbers are the same on every Linux architecture pexinit builds for.
fn classic_name(sig: libc::c_int) -> Option<&'static str> {
    if !(1..FIRST_REALTIME).contains(&sig) {
        return None;
    }
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .map(|s| s.as_str())
}

/// A signal as users write it: a number 0-64, or a name with or without `SIG`, in any
/// case (`TERM`, `sigquit`, `RTMIN+2`, `SIGRTMAX-1`). 0 is returned as is (the caller
/// decides what it means).
pub fn parse_signal(text: &str) -> Result<libc::c_int, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a signal; write a name or a number 0-{LAST}, e.g. TERM, QUIT, \
             RTMIN+2 or 15"
        )
    };
    if let Ok(number) = text.parse::<libc::c_int>() {
        return if (0..=LAST).contains(&number) {
            Ok(number)
        } else {
            Err(bad())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(sig) = realtime_by_name(name) {
        return if (FIRST_REALTIME..=LAST).contains(&sig) {
            Ok(sig)
        } else {
            Err(bad())
        };
    }
    (1..FIRST_REALTIME)
        .find(|&sig| classic_name(sig).is_some_and(|n| n.strip_prefix("SIG") == Some(name)))
        .ok_or_else(bad)
}

/// RTMIN, RTMIN+N, RTMAX, RTMAX-N (in glibc's numbering); None for other names.
fn realtime_by_name(name: &str) -> Option<libc::c_int> {
    let offset = |rest: &str, sign: char| -> Option<libc::c_int> {
        if rest.is_empty() {
            return Some(0);
        }
        rest.strip_prefix(sign)?.parse::<libc::c_int>().ok()
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return Some(NAMED_RTMIN + offset(rest, '+')?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return Some(LAST - offset(rest, '-')?);
    }
    None
}

/// One `FROM:TO` of `--rewrite-signal`: FROM, when pexinit receives it, is passed on as
/// TO; TO 0 drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub from: libc::c_int,
    pub to: libc::c_int,
}

/// Parses `FROM:TO`, e.g. `TERM:QUIT`, `TSTP:0`, `15:3`.
pub fn parse_rewrite(text: &str) -> Result<Rewrite, String> {
    let (from, to) = text.split_once(':').ok_or_else(|| {
        format!("{text:?} is not FROM:TO; write e.g. TERM:QUIT, or TSTP:0 to drop SIGTSTP")
    })?;
    let from = parse_signal(from)?;
    if !forwardable(from) {
        return Err(format!(
            "{text:?}: pexinit never passes on {} (only 1-{LAST} except SIGKILL, SIGSTOP and \
             SIGCHLD); rewrite another signal",
            if from == 0 {
                "signal 0".to_owned()
            } else {
                signal_name(from)
            }
        ));
    }
    Ok(Rewrite {
        from,
        to: parse_signal(to)?,
    })
}

/// What pexinit passes on for each signal it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrites {
    /// Index: the signal received; value: the one passed on (0 = none).
    to: [libc::c_int; LAST as usize + 1],
}

impl Rewrites {
    /// Each signal passed on as itself, except where `rewrites` says otherwise (the last
    /// one for a signal wins, like a later flag overriding an earlier one).
    pub fn new(rewrites: &[Rewrite]) -> Rewrites {
        let mut to: [libc::c_int; LAST as usize + 1] = std::array::from_fn(|i| i as libc::c_int);
        for rewrite in rewrites {
            if let Some(slot) = usize::try_from(rewrite.from)
                .ok()
                .and_then(|i| to.get_mut(i))
            {
                *slot = rewrite.to;
            }
        }
        Rewrites { to }
    }

    /// The signal to pass on for `sig`; 0 = drop it.
    pub fn map(&self, sig: libc::c_int) -> libc::c_int {
        usize::try_from(sig)
            .ok()
            .and_then(|i| self.to.get(i))
            .copied()
            .unwrap_or(sig)
    }
}

impl Default for Rewrites {
    fn default() -> Self {
        Rewrites::new(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_every_signal_but_chld_kill_stop() {
        for sig in 1..=LAST {
            let expected = ![libc::SIGCHLD, libc::SIGKILL, libc::SIGSTOP].contains(&sig);
            assert_eq!(forwardable(sig), expected, "{sig}");
        }
        assert!(!forwardable(0));
        assert!(!forwardable(65));
    }

    #[test]
    fn the_full_set_has_the_c_librarys_own_signals() {
        for sig in [32, 33, 34, 35, LAST] {
            assert!(SigSet::all().contains(sig), "{sig}");
        }
        assert!(!SigSet::only(32).contains(33));
        assert!(!SigSet::EMPTY.with(65).contains(65));
    }

    #[test]
    fn names_signals_the_same_on_every_build() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(32), "signal 32");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
        assert_eq!(signal_name(64), "SIGRTMAX");
    }

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Ok(libc::SIGQUIT));
        assert_eq!(parse_signal("15"), Ok(15));
        assert_eq!(parse_signal("0"), Ok(0));
        assert_eq!(parse_signal("RTMIN"), Ok(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_signal("RTMAX-1"), Ok(63));
        assert_eq!(parse_signal("33"), Ok(33));
        for bad in [
            "", "TERMS", "65", "-1", "RTMIN+40", "RTMAX-40", "RTMIN-1", "SIG",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_rewrites() {
        let r = parse_rewrite("TERM:QUIT").unwrap();
        assert_eq!((r.from, r.to), (libc::SIGTERM, libc::SIGQUIT));
        assert_eq!(parse_rewrite("TSTP:0").unwrap().to, 0);
        assert_eq!(parse_rewrite("15:9").unwrap().to, libc::SIGKILL);
        for bad in [
            "TERM",
            "TERM:",
            ":QUIT",
            "KILL:TERM",
            "CHLD:TERM",
            "0:TERM",
            "TERM:99",
        ] {
            let err = parse_rewrite(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(parse_rewrite(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrites_map_signals() {
        let rewrites = Rewrites::new(&[
            Rewrite { from: 15, to: 3 },
            Rewrite { from: 20, to: 0 },
            Rewrite { from: 15, to: 2 },
        ]);
        assert_eq!(rewrites.map(15), 2);
        assert_eq!(rewrites.map(20), 0);
        assert_eq!(rewrites.map(10), 10);
        assert_eq!(rewrites.map(64), 64);
    }
}
