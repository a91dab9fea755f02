//! Dropping root for `--user`: setgroups, setgid, setuid, in that order, just before
//! execve (in the supervised child, or in pexinit itself when it execs in place).
//!
//! Everything is computed before fork; [`Credentials::apply`] only makes system calls,
//! so it is safe to run between fork and exec.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};
use crate::identity::Identity;

/// The ids a process switches to. Built while planning, applied just before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    /// The complete supplementary group list (setgroups replaces, never adds).
    pub groups: Vec<Gid>,
}

/// Which call failed while switching credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    SetGroups,
    SetGid,
    SetUid,
    /// The switch reported success but the process still has other ids.
    Verify,
}

impl Step {
    pub fn describe(self) -> &'static str {
        match self {
            Step::SetGroups => "setgroups",
            Step::SetGid => "setgid",
            Step::SetUid => "setuid",
            Step::Verify => "verifying the new ids",
        }
    }
}

impl Credentials {
    /// What running as `target` requires of a process currently running as `current`:
    /// nothing when they already match, a switch when we are root, an error otherwise.
    pub fn switch(current: &Identity, target: &Identity) -> Result<Option<Credentials>> {
        if current.uid == target.uid && current.gid == target.gid {
            // Already that user (say `--user app` in an image that runs as app): a
            // non-root process may not call setgroups, and has nothing to switch.
            if !current.is_root() {
                return Ok(None);
            }
        } else if !current.is_root() {
            return Err(Error::User(format!(
                "--user needs root: pexinit runs as uid {} gid {} and cannot switch to uid {} \
                 gid {}; start the container as root or drop --user",
                current.uid, current.gid, target.uid, target.gid
            )));
        }
        Ok(Some(Credentials {
            uid: Uid::from_raw(target.uid),
            gid: Gid::from_raw(target.gid),
            groups: target.groups.iter().copied().map(Gid::from_raw).collect(),
        }))
    }

    /// Switches this process to the credentials, irrevocably. Raw system calls, not
    /// glibc's wrappers (which may try to signal every thread of the process): safe in a
    /// child that shares pexinit's memory between clone and exec. pexinit has a single
    /// thread, so the switch covers the whole process.
    pub fn apply(&self) -> std::result::Result<(), (Step, Errno)> {
        // SAFETY: plain system calls; `groups` is a live slice of gid_t-sized values.
        unsafe {
            let groups = self.groups.as_ptr().cast::<libc::gid_t>();
            if libc::syscall(libc::SYS_setgroups, self.groups.len(), groups) != 0 {
                return Err((Step::SetGroups, Errno::last()));
            }
            if libc::syscall(libc::SYS_setgid, self.gid.as_raw()) != 0 {
                return Err((Step::SetGid, Errno::last()));
            }
            if libc::syscall(libc::SYS_setuid, self.uid.as_raw()) != 0 {
                return Err((Step::SetUid, Errno::last()));
            }
        }
        let ok = Uid::current() == self.uid
            && Uid::effective() == self.uid
            && Gid::current() == self.gid
            && Gid::effective() == self.gid;
        if !ok {
            return Err((Step::Verify, Errno::EPERM));
        }
        Ok(())
    }

    /// The one-line error for a failed [`Credentials::apply`].
    pub fn error(&self, step: Step, errno: Errno) -> Error {
        Error::User(format!(
            "--user: cannot switch to uid {} gid {}: {} failed: {}",
            self.uid,
            self.gid,
            step.describe(),
            errno.desc()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> Identity {
        Identity {
            uid,
            gid,
            groups: vec![gid],
            passwd: None,
        }
    }

    #[test]
    fn only_root_may_switch() {
        let err = Credentials::switch(&who(1000, 1000), &who(65534, 65534)).unwrap_err();
        assert!(err.to_string().contains("--user needs root"), "{err}");
        assert_eq!(
            Credentials::switch(&who(1000, 1000), &who(1000, 1000)).unwrap(),
            None
        );
        let creds = Credentials::switch(&who(0, 0), &who(65534, 65534))
            .unwrap()
            .unwrap();
        assert_eq!(creds.groups, vec![Gid::from_raw(65534)]);
    }
}
