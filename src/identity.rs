//! Who the program will run as: uid, gid, supplementary groups and the passwd entry.
//!
//! Writability is always judged for this identity, not for whoever runs pexinit, so the
//! same checks stay right when privileges are dropped before exec.
//!
//! `--user USER[:GROUP]` follows gosu (and runc, which Docker uses):
//! - USER is a name or a uid; a uid needs no passwd entry.
//! - Without GROUP, the gid is the passwd entry's and the supplementary groups are
//!   initgroups(3)'s (the gid plus every /etc/group membership); a uid without passwd
//!   entry gets gid 0 and supplementary groups `[0]`.
//! - With GROUP (a name or a gid; a gid needs no group entry), the gid is GROUP and the
//!   supplementary groups are exactly `[GROUP]`.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};
use serde::Serialize;

use crate::error::{Error, Result};

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

    /// The identity `--user SPEC` switches to (`USER[:GROUP]`, names or numbers).
    pub fn for_user(spec: &str) -> Result<Self> {
        let bad = |message: String| Error::User(format!("--user {spec}: {message}"));
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(bad("expected USER[:GROUP], names or numeric ids".into()));
        }
        let entry = match numeric_id(user) {
            Some(uid) => User::from_uid(Uid::from_raw(uid))
                .map_err(|e| bad(format!("cannot read the passwd database: {e}")))?,
            None => Some(
                User::from_name(user)
                    .map_err(|e| bad(format!("cannot read the passwd database: {e}")))?
                    .ok_or_else(|| {
                        bad(format!(
                            "no user named {user:?} in the passwd database; use a numeric uid or \
                             add the user to the image"
                        ))
                    })?,
            ),
        };
        let uid = match (&entry, numeric_id(user)) {
            (Some(e), _) => e.uid.as_raw(),
            (None, Some(uid)) => uid,
            (None, None) => unreachable!("a name without entry was rejected above"),
        };
        let (gid, groups) = match group {
            Some(group) => {
                let gid = match numeric_id(group) {
                    Some(gid) => gid,
                    None => Group::from_name(group)
                        .map_err(|e| bad(format!("cannot read the group database: {e}")))?
                        .ok_or_else(|| {
                            bad(format!(
                                "no group named {group:?} in the group database; use a numeric \
                                 gid or add the group to the image"
                            ))
                        })?
                        .gid
                        .as_raw(),
                };
                (gid, vec![gid])
            }
            None => match &entry {
                Some(e) => {
                    let gid = e.gid.as_raw();
                    let groups = CString::new(e.name.as_bytes())
                        .ok()
                        .and_then(|name| nix::unistd::getgrouplist(&name, e.gid).ok())
                        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
                        .unwrap_or_else(|| vec![gid]);
                    (gid, groups)
                }
                None => (0, vec![0]),
            },
        };
        Ok(Identity {
            uid,
            gid,
            groups,
            passwd: entry.map(|e| PasswdEntry {
                name: e.name,
                home: e.dir,
            }),
        })
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

/// A uid or gid written as a number; `-1` (4294967295) means "unchanged" to the kernel and
/// is not an id.
fn numeric_id(text: &str) -> Option<u32> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_user_and_group_need_no_entries() {
        let who = Identity::for_user("4000123:4000124").unwrap();
        assert_eq!(
            (who.uid, who.gid, who.groups.clone()),
            (4000123, 4000124, vec![4000124])
        );
        assert!(who.passwd.is_none());
        let who = Identity::for_user("4000123").unwrap();
        assert_eq!(
            (who.uid, who.gid, who.groups.clone()),
            (4000123, 0, vec![0])
        );
    }

    #[test]
    fn named_user_gets_passwd_gid_and_home() {
        let who = Identity::for_user("root").unwrap();
        assert_eq!((who.uid, who.gid), (0, 0));
        assert!(who.groups.contains(&0));
        assert_eq!(who.passwd.unwrap().name, "root");
        // A uid with an entry is treated like its name.
        let who = Identity::for_user("0").unwrap();
        assert_eq!(who.passwd.unwrap().name, "root");
    }

    #[test]
    fn unknown_names_and_bad_specs_are_user_errors() {
        for spec in [
            "no-such-user-pexinit",
            "root:no-such-group-pexinit",
            "",
            ":0",
            "0:",
            "4294967295",
        ] {
            let err = Identity::for_user(spec).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_PEXINIT_FAILED, "{spec}");
            assert!(err.to_string().starts_with("--user "), "{err}");
        }
    }
}
