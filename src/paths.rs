//! Physical path resolution, writability probes and safe directory creation.
//!
//! "Physical" means every symlink component resolved, as the kernel sees the path. pex
//! runtimes before 2.27.1 compute relative cache links from the *logical* path, so any
//! link left in HOME, XDG_CACHE_HOME or PEX_ROOT poisons the cache. We resolve paths
//! ourselves, component by component, instead of calling realpath(3): we must accept
//! paths whose tail does not exist yet, and `doctor` reports every link we crossed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, fstat, mkdirat};
use serde::Serialize;

use crate::fs::dir::{open_dir, open_dir_following};
use crate::identity::Identity;

/// Linux gives up after 40 links (MAXSYMLINKS); so do we.
const MAX_LINKS: usize = 40;

/// One symlink crossed while resolving a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkHop {
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub link: PathBuf,
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub target: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub physical: PathBuf,
    /// False when a trailing part of the path does not exist yet.
    pub exists: bool,
    /// The deepest part of `physical` that exists (equal to it when `exists`).
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub existing_ancestor: PathBuf,
    pub links: Vec<LinkHop>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("is not an absolute path")]
    Relative,
    #[error("is a symlink loop (at {0})")]
    Loop(PathBuf),
    #[error("is a dangling symlink ({link} -> {target}, which does not exist)")]
    Dangling { link: PathBuf, target: PathBuf },
    #[error("has a component that is not a directory ({0})")]
    NotADirectory(PathBuf),
    #[error("cannot be inspected ({path}: {message})")]
    Unreadable { path: PathBuf, message: String },
}

/// Resolves `path` to its physical form without requiring that it exists.
///
/// Missing trailing components are appended as given (a missing directory cannot be a
/// link, so that is exact). A symlink whose target is missing is an error, not a
/// missing tail: creating directories through it would write somewhere the user did
/// not name.
pub fn resolve_physical(path: &Path) -> Result<Resolved, ResolveError> {
    if !path.is_absolute() {
        return Err(ResolveError::Relative);
    }
    let mut pending: VecDeque<OsString> = components(path);
    let mut current = PathBuf::from("/");
    let mut links = Vec::new();
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&name);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(missing_tail(current, candidate, pending, links));
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(ResolveError::NotADirectory(current));
            }
            Err(err) => return Err(unreadable(&candidate, &err)),
        };
        if meta.file_type().is_symlink() {
            if links.len() >= MAX_LINKS {
                return Err(ResolveError::Loop(candidate));
            }
            let target = fs::read_link(&candidate).map_err(|e| unreadable(&candidate, &e))?;
            // Ask the kernel whether the link leads anywhere before we follow it by hand:
            // it tells loops and dangling links apart in one call.
            if let Err(err) = fs::metadata(&candidate) {
                return Err(match err.raw_os_error() {
                    Some(libc::ELOOP) => ResolveError::Loop(candidate),
                    Some(libc::ENOENT) => ResolveError::Dangling {
                        link: candidate,
                        target,
                    },
                    Some(libc::ENOTDIR) => ResolveError::NotADirectory(candidate),
                    _ => unreadable(&candidate, &err),
                });
            }
            for part in components(&target).into_iter().rev() {
                pending.push_front(part);
            }
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            links.push(LinkHop {
                link: candidate,
                target,
            });
        } else if meta.is_dir() || pending.is_empty() {
            current = candidate;
        } else {
            return Err(ResolveError::NotADirectory(candidate));
        }
    }
    Ok(Resolved {
        existing_ancestor: current.clone(),
        physical: current,
        exists: true,
        links,
    })
}

fn missing_tail(
    existing: PathBuf,
    first_missing: PathBuf,
    rest: VecDeque<OsString>,
    links: Vec<LinkHop>,
) -> Resolved {
    let mut physical = first_missing;
    for name in rest {
        if name == ".." {
            physical.pop();
        } else {
            physical.push(name);
        }
    }
    Resolved {
        physical,
        exists: false,
        existing_ancestor: existing,
        links,
    }
}

/// The normal components of `path` plus `..`, dropping `/` and `.`.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn unreadable(path: &Path, err: &io::Error) -> ResolveError {
    ResolveError::Unreadable {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

/// Whether `who` may create entries in the existing directory `dir` (a physical path).
///
/// Judged from mode bits and ownership, plus search permission on every ancestor and a
/// read-only mount check, so it is right for an identity other than our own (the one
/// `--user` will switch to). POSIX ACLs are not consulted.
pub fn dir_writable_by(dir: &Path, who: &Identity) -> bool {
    let Ok(meta) = fs::metadata(dir) else {
        return false;
    };
    if !meta.is_dir() || on_read_only_mount(dir) {
        return false;
    }
    let ancestors_searchable = dir
        .ancestors()
        .skip(1)
        .all(|a| fs::metadata(a).is_ok_and(|m| permits(&m, who, 0o1)));
    ancestors_searchable && permits(&meta, who, 0o3)
}

/// Whether the mode bits of `meta` grant `who` every bit of `want` (r=4, w=2, x=1),
/// as the kernel decides for the owner, group and other classes (ACLs not consulted).
pub fn permits(meta: &fs::Metadata, who: &Identity, want: u32) -> bool {
    if who.is_root() {
        // root passes permission checks, except x on non-directories without any x bit.
        return meta.is_dir() || want & 1 == 0 || meta.mode() & 0o111 != 0;
    }
    let mode = meta.mode();
    let granted = if meta.uid() == who.uid {
        (mode >> 6) & 7
    } else if who.in_group(meta.gid()) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    granted & want == want
}

fn on_read_only_mount(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Whether `resolved` exists as a writable directory for `who`, or could be created by
/// `who` below its deepest existing ancestor.
pub fn usable_dir(resolved: &Resolved, who: &Identity) -> Usability {
    if resolved.exists {
        match fs::metadata(&resolved.physical) {
            Ok(m) if !m.is_dir() => Usability::NotADirectory,
            _ if dir_writable_by(&resolved.physical, who) => Usability::Writable,
            _ => Usability::NotWritable,
        }
    } else if dir_writable_by(&resolved.existing_ancestor, who) {
        Usability::Creatable
    } else {
        Usability::NotCreatable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Usability {
    Writable,
    Creatable,
    NotWritable,
    NotCreatable,
    NotADirectory,
}

impl Usability {
    pub fn is_usable(self) -> bool {
        matches!(self, Usability::Writable | Usability::Creatable)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Usability::Writable => "writable",
            Usability::Creatable => "missing, will be created",
            Usability::NotWritable => "not writable",
            Usability::NotCreatable => "missing and cannot be created",
            Usability::NotADirectory => "not a directory",
        }
    }
}

/// How `create_dirs` treats the directories it makes or finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirPolicy {
    /// mkdir -p with mode 0755 (before umask); existing directories are accepted as they are.
    Shared,
    /// Every directory below `root` must be owned by `owner` and closed to group and
    /// others (0700): a private fallback home in a world-writable TMPDIR.
    Private,
}

/// Creates the missing directories of physical path `path` below existing directory
/// `root`, never following a symlink: each component is opened with O_NOFOLLOW, so a
/// link planted after planning makes this fail instead of writing elsewhere.
///
/// Every directory it creates is chowned to `owner` (the user the program runs as). With
/// [`DirPolicy::Private`], every directory below `root` must also be owned by `owner` and
/// closed to group and others when it already exists.
pub fn create_dirs(
    root: &Path,
    path: &Path,
    policy: DirPolicy,
    owner: &Identity,
) -> io::Result<()> {
    let rest = path.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not below {}", path.display(), root.display()),
        )
    })?;
    let mut dir: OwnedFd = open_dir_following(root)?;
    let mode = match policy {
        DirPolicy::Shared => Mode::from_bits_truncate(0o755),
        DirPolicy::Private => Mode::from_bits_truncate(0o700),
    };
    for name in rest.components().map(Component::as_os_str) {
        let created = match mkdirat(dir.as_fd(), name, mode) {
            Ok(()) => true,
            Err(nix::errno::Errno::EEXIST) => false,
            Err(e) => return Err(e.into()),
        };
        let next = open_dir(dir.as_fd(), name).map_err(|e| {
            if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
                io::Error::other(format!(
                    "{} is not a plain directory (a symlink or a file was put there)",
                    Path::new(name).display()
                ))
            } else {
                e.into()
            }
        })?;
        if created {
            // Root preparing directories for `--user` hands them over; for anyone else
            // this is a no-op chown to themselves.
            nix::unistd::fchown(next.as_fd(), Some(owner.uid.into()), Some(owner.gid.into()))?;
        }
        if policy == DirPolicy::Private {
            check_private(&next, name, owner)?;
        }
        dir = next;
    }
    Ok(())
}

fn check_private(dir: &OwnedFd, name: &OsStr, owner: &Identity) -> io::Result<()> {
    let st = fstat(dir.as_fd())?;
    if st.st_uid != owner.uid {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not {}",
            Path::new(name).display(),
            st.st_uid,
            owner.uid
        )));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is open to other users (mode {:o})",
            Path::new(name).display(),
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// Why a program was not found on PATH.
pub enum Lookup {
    NotFound,
    NotExecutable(PathBuf),
}

/// Finds `name` like execvp: a name with a slash is taken as is, others are searched on
/// PATH; a match that is not executable is remembered in case nothing better follows.
pub fn find_executable(name: &OsStr, path_var: &OsStr, who: &Identity) -> Result<PathBuf, Lookup> {
    if name.as_encoded_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return match fs::metadata(&path) {
            Err(_) => Err(Lookup::NotFound),
            Ok(m) if m.is_file() && is_executable(&m, who) => Ok(path),
            Ok(_) => Err(Lookup::NotExecutable(path)),
        };
    }
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        // An empty PATH entry means the working directory, as for execvp.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && is_executable(&meta, who) {
                return Ok(candidate);
            }
            not_executable.get_or_insert(candidate);
        }
    }
    Err(not_executable.map_or(Lookup::NotFound, Lookup::NotExecutable))
}

pub fn is_executable(meta: &fs::Metadata, who: &Identity) -> bool {
    crate::paths::permits(meta, who, 0o1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn resolves_links_and_keeps_missing_tail() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(base.join("var/home/u")).unwrap();
        symlink("var/home", base.join("home")).unwrap();
        let r = resolve_physical(&base.join("home/u/.cache/pex")).unwrap();
        assert_eq!(r.physical, base.join("var/home/u/.cache/pex"));
        assert!(!r.exists);
        assert_eq!(r.existing_ancestor, base.join("var/home/u"));
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].link, base.join("home"));
    }

    #[test]
    fn dotdot_after_link_is_physical() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(base.join("a/b/c")).unwrap();
        symlink(base.join("a/b/c"), base.join("lnk")).unwrap();
        let r = resolve_physical(&base.join("lnk/../x")).unwrap();
        assert_eq!(r.physical, base.join("a/b/x"));
    }

    #[test]
    fn loops_and_dangling_links_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        symlink(base.join("l2"), base.join("l1")).unwrap();
        symlink(base.join("l1"), base.join("l2")).unwrap();
        symlink(base.join("nowhere"), base.join("dangling")).unwrap();
        assert!(matches!(
            resolve_physical(&base.join("l1/x")),
            Err(ResolveError::Loop(_))
        ));
        assert!(matches!(
            resolve_physical(&base.join("dangling")),
            Err(ResolveError::Dangling { .. })
        ));
        assert_eq!(
            resolve_physical(Path::new("rel/path")),
            Err(ResolveError::Relative)
        );
    }

    #[test]
    fn file_in_the_middle_is_not_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::write(base.join("f"), b"").unwrap();
        assert!(matches!(
            resolve_physical(&base.join("f/x")),
            Err(ResolveError::NotADirectory(_))
        ));
    }

    #[test]
    fn create_dirs_refuses_planted_links() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let elsewhere = base.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, base.join("a")).unwrap();
        let me = Identity::current();
        let err = create_dirs(&base, &base.join("a/b"), DirPolicy::Shared, &me).unwrap_err();
        assert!(err.to_string().contains("not a plain directory"), "{err}");
        assert!(!elsewhere.join("b").exists());
    }

    #[test]
    fn private_dirs_are_0700_and_checked() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let me = Identity::current();
        create_dirs(&base, &base.join("p/home"), DirPolicy::Private, &me).unwrap();
        let mode = fs::metadata(base.join("p/home")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(base.join("p"), fs::Permissions::from_mode(0o777)).unwrap();
        let err = create_dirs(&base, &base.join("p/home"), DirPolicy::Private, &me).unwrap_err();
        assert!(err.to_string().contains("open to other users"), "{err}");
    }
}
