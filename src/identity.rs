//! Who the program will run as: uid, gid, supplementary groups and the passwd entry.
//!
//! Writability is always judged for this identity, not for whoever runs pexinit, so the
//! same checks stay right when privileges are dropped before exec.

use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid is checked separately).
    pub groups: Vec<u32>,
    /// The passwd entry of `uid`, if there is one.
    pub passwd: Option<PasswdEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PasswdEntry {
    pub name: String,
    pub home: PathBuf,
}

impl Identity {
    /// The effective identity of this process.
    pub fn current() -> Self {
        let uid = Uid::effective();
        let groups = nix::unistd::getgroups()
            .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_default();
        Identity {
            uid: uid.as_raw(),
            gid: Gid::effective().as_raw(),
            groups,
            passwd: passwd_entry(uid),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

fn passwd_entry(uid: Uid) -> Option<PasswdEntry> {
    // A lookup failure (no NSS, broken /etc/passwd) is treated like a missing entry:
    // both leave us without a trustworthy home directory.
    let user = User::from_uid(uid).ok().flatten()?;
    Some(PasswdEntry {
        name: user.name,
        home: user.dir,
    })
}
