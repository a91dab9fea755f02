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
//!
//! Lookups read `/etc/passwd` and `/etc/group` directly, as runc and gosu do, and ask
//! NSS (getpwnam(3) and friends) only when the files do not have the answer and
//! `/etc/nsswitch.conf` names other sources: glibc's NSS start-up costs more than the
//! rest of pexinit's planning, and pexinit pays it on every container start.

use std::ffi::CString;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

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
        let uid = Uid::effective().as_raw();
        Identity {
            uid,
            gid: Gid::effective().as_raw(),
            groups: current_groups(),
            // A lookup failure (broken /etc/passwd or NSS) is treated like a missing
            // entry: both leave us without a trustworthy home directory.
            passwd: user(UserKey::Uid(uid)).ok().flatten().map(|u| PasswdEntry {
                name: u.name,
                home: u.home,
            }),
        }
    }

    /// The identity `--user SPEC` switches to (`USER[:GROUP]`, names or numbers).
    pub fn for_user(spec: &str) -> Result<Self> {
        let bad = |message: String| Error::User(format!("--user {spec}: {message}"));
        let (name, group) = match spec.split_once(':') {
            Some((name, group)) => (name, Some(group)),
            None => (spec, None),
        };
        if name.is_empty() || group.is_some_and(str::is_empty) {
            return Err(bad("expected USER[:GROUP], names or numeric ids".into()));
        }
        let unreadable = |e: std::io::Error| bad(format!("cannot read the passwd database: {e}"));
        let entry = match numeric_id(name) {
            Some(uid) => user(UserKey::Uid(uid)).map_err(unreadable)?,
            None => Some(user(UserKey::Name(name)).map_err(unreadable)?.ok_or_else(|| {
                bad(format!(
                    "no user named {name:?} in /etc/passwd; use a numeric uid or add the user to \
                     the image"
                ))
            })?),
        };
        let uid = match (&entry, numeric_id(name)) {
            (Some(e), _) => e.uid,
            (None, Some(uid)) => uid,
            (None, None) => unreachable!("a name without entry was rejected above"),
        };
        let (gid, groups) = match group {
            Some(group) => {
                let gid = match numeric_id(group) {
                    Some(gid) => gid,
                    None => group_gid(group)
                        .map_err(|e| bad(format!("cannot read the group database: {e}")))?
                        .ok_or_else(|| {
                            bad(format!(
                                "no group named {group:?} in /etc/group; use a numeric gid or add \
                                 the group to the image"
                            ))
                        })?,
                };
                (gid, vec![gid])
            }
            None => match &entry {
                Some(e) => (e.gid, initgroups_list(&e.name, e.gid)),
                None => (0, vec![0]),
            },
        };
        Ok(Identity {
            uid,
            gid,
            groups,
            passwd: entry.map(|e| PasswdEntry {
                name: e.name,
                home: e.home,
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

/// getgroups(2), sized by asking first (nix's version reads /proc for NGROUPS_MAX).
fn current_groups() -> Vec<u32> {
    // SAFETY: a zero-sized query, then a buffer of the size the kernel reported.
    unsafe {
        let count = libc::getgroups(0, std::ptr::null_mut());
        if count <= 0 {
            return Vec::new();
        }
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let got = libc::getgroups(count, groups.as_mut_ptr());
        groups.truncate(got.max(0) as usize);
        groups
    }
}

enum UserKey<'a> {
    Uid(u32),
    Name(&'a str),
}

struct UserEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// A user from /etc/passwd, else from NSS when nsswitch.conf names more than files.
fn user(key: UserKey) -> std::io::Result<Option<UserEntry>> {
    if let Ok(text) = fs::read_to_string("/etc/passwd") {
        let found = text.lines().find_map(|line| {
            let entry = parse_passwd_line(line)?;
            let hit = match key {
                UserKey::Uid(uid) => entry.uid == uid,
                UserKey::Name(name) => entry.name == name,
            };
            hit.then_some(entry)
        });
        if found.is_some() || files_only("passwd") {
            return Ok(found);
        }
    }
    let user = match key {
        UserKey::Uid(uid) => User::from_uid(Uid::from_raw(uid)),
        UserKey::Name(name) => User::from_name(name),
    };
    Ok(user.map_err(std::io::Error::from)?.map(|u| UserEntry {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }))
}

/// `name:password:uid:gid:gecos:home:shell`; NIS compat lines (`+`, `-`) are skipped.
fn parse_passwd_line(line: &str) -> Option<UserEntry> {
    if line.starts_with(['#', '+', '-']) {
        return None;
    }
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    let _gecos = fields.next()?;
    let home = fields.next()?;
    Some(UserEntry {
        name: name.to_owned(),
        uid,
        gid,
        home: PathBuf::from(home),
    })
}

/// `name:password:gid:member,member` as (name, gid, members).
fn parse_group_line(line: &str) -> Option<(&str, u32, &str)> {
    if line.starts_with(['#', '+', '-']) {
        return None;
    }
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let gid = fields.next()?.parse().ok()?;
    Some((name, gid, fields.next().unwrap_or("")))
}

/// The gid of group `name`.
fn group_gid(name: &str) -> std::io::Result<Option<u32>> {
    if let Ok(text) = fs::read_to_string("/etc/group") {
        let found = text
            .lines()
            .filter_map(parse_group_line)
            .find_map(|(group, gid, _)| (group == name).then_some(gid));
        if found.is_some() || files_only("group") {
            return Ok(found);
        }
    }
    Ok(Group::from_name(name)
        .map_err(std::io::Error::from)?
        .map(|g| g.gid.as_raw()))
}

/// What initgroups(3) would set for `name`: `gid` plus every group listing `name` as a
/// member.
fn initgroups_list(name: &str, gid: u32) -> Vec<u32> {
    if files_only("group")
        && let Ok(text) = fs::read_to_string("/etc/group")
    {
        let mut groups = vec![gid];
        for (_, group_gid, members) in text.lines().filter_map(parse_group_line) {
            if members.split(',').any(|m| m.trim() == name) && !groups.contains(&group_gid) {
                groups.push(group_gid);
            }
        }
        return groups;
    }
    CString::new(name)
        .ok()
        .and_then(|c| nix::unistd::getgrouplist(&c, Gid::from_raw(gid)).ok())
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|| vec![gid])
}

/// Whether nsswitch.conf gives `database` no source but the files (`systemd` only
/// synthesizes users of a running systemd, which containers do not have). Without
/// nsswitch.conf, glibc uses the files.
fn files_only(database: &str) -> bool {
    static NSSWITCH: OnceLock<Option<String>> = OnceLock::new();
    let Some(text) = NSSWITCH.get_or_init(|| fs::read_to_string("/etc/nsswitch.conf").ok()) else {
        return true;
    };
    files_only_in(text, database)
}

fn files_only_in(nsswitch: &str, database: &str) -> bool {
    for line in nsswitch.lines() {
        let line = line.split('#').next().unwrap_or("");
        let Some((db, sources)) = line.split_once(':') else {
            continue;
        };
        if db.trim() == database {
            return sources
                .split_whitespace()
                .filter(|s| !s.starts_with('['))
                .all(|s| s == "files" || s == "systemd");
        }
    }
    true
}

/// A uid or gid written as a number; `-1` (4294967295) means "unchanged" to the kernel and
/// is not an id.
/// The owner of files pexinit writes for use elsewhere (`seed --runtime-user`, `prime
/// --chown`, `layer --owner`): `UID[:GID]`, numbers only, since the image or volume the
/// files end up in may not know the names this machine does. GID defaults to 0, the
/// group OpenShift runs arbitrary uids in.
pub fn numeric_owner(flag: &str, text: &str) -> Result<(u32, u32)> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, "0"));
    match (numeric_id(uid), numeric_id(gid)) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(Error::Usage(format!(
            "{flag} {text}: expected numbers UID:GID or UID (GID 0), e.g. 1001:0; names may mean nothing where the files are used"
        ))),
    }
}

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
    fn numeric_owners_are_uid_with_an_optional_gid() {
        assert_eq!(numeric_owner("--chown", "1001:0").unwrap(), (1001, 0));
        assert_eq!(
            numeric_owner("--chown", "65534:65534").unwrap(),
            (65534, 65534)
        );
        assert_eq!(numeric_owner("--owner", "1001").unwrap(), (1001, 0));
        for bad in [
            "nobody",
            "1001:",
            ":0",
            "",
            "-1",
            "+5",
            "4294967295",
            "1:2:3",
        ] {
            let err = numeric_owner("--chown", bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--chown {bad}: ")), "{err}");
            assert!(err.contains("UID:GID"), "{err}");
        }
    }

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
    fn nsswitch_sources() {
        let conf =
            "# comment\npasswd:         files systemd\ngroup: files [NOTFOUND=return] ldap\n";
        assert!(files_only_in(conf, "passwd"));
        assert!(!files_only_in(conf, "group"));
        assert!(files_only_in(conf, "shadow"));
        assert!(!files_only_in("passwd: compat\n", "passwd"));
    }

    #[test]
    fn passwd_and_group_lines() {
        let e = parse_passwd_line("app:x:1000:1001:App,,,:/home/app:/bin/sh").unwrap();
        assert_eq!((e.name.as_str(), e.uid, e.gid), ("app", 1000, 1001));
        assert_eq!(e.home, PathBuf::from("/home/app"));
        assert!(parse_passwd_line("+nisuser::::::").is_none());
        assert!(parse_passwd_line("broken:x:notanumber:0::/:/bin/sh").is_none());
        assert_eq!(
            parse_group_line("audio:x:29:app,pulse"),
            Some(("audio", 29, "app,pulse"))
        );
    }

    #[test]
    fn files_agree_with_nss() {
        // What we read from the files must be what glibc answers (files come first).
        let me = Identity::current();
        let nss = User::from_uid(Uid::from_raw(me.uid)).unwrap();
        assert_eq!(me.passwd.map(|p| p.home), nss.map(|u| u.dir));
        let nobody = Identity::for_user("nobody").unwrap();
        let nss = User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            (nobody.uid, nobody.gid),
            (nss.uid.as_raw(), nss.gid.as_raw())
        );
        let list = nix::unistd::getgrouplist(&CString::new("nobody").unwrap(), nss.gid).unwrap();
        let mut expected: Vec<u32> = list.into_iter().map(Gid::as_raw).collect();
        let mut got = nobody.groups.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
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
            assert_eq!(
                err.exit_code(),
                crate::error::exit::PEXINIT_FAILED,
                "{spec}"
            );
            assert!(err.to_string().starts_with("--user "), "{err}");
        }
    }
}
