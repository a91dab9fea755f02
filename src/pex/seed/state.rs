//! DIR's state, and what an interrupted seed leaves in it.
//!
//! A seed cannot be built beside DIR and renamed into place: pex writes DIR's absolute
//! path into the venvs it makes. So `seed` marks DIR unfinished
//! (`DIR/.pexinit-seed-unfinished`, written atomically) before it writes anything else
//! there, and removes the mark last, once the manifest is written and the tree owned and
//! clamped. The next seed of DIR reads the state under an exclusive `flock` on DIR:
//! - empty (or missing): a new seed;
//! - the mark and no manifest: a seed that never finished (killed, a full disk). It is
//!   pexinit's own: its content is removed (relative to DIR's descriptor, never through
//!   a link) and DIR is seeded anew;
//! - a manifest and the mark: a re-seed adding entries that was interrupted. The seed's
//!   existing entries are intact: pex builds each cache entry in a work directory and
//!   renames it into place (and removes its own stale work directories under the
//!   entry's lock), launchers and the manifest are renamed into place, Python writes
//!   bytecode to a temporary file and renames it, and compiling, clamping mtimes and
//!   setting owners and modes are done again in full. What such a run leaves that
//!   nothing uses (launcher and bytecode temporaries) is removed ([`remove_leftovers`]),
//!   then the re-seed proceeds;
//! - a manifest alone: a seed entries are added to;
//! - anything else is someone else's directory: refused.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::Flock;
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::Serialize;

use crate::fs::atomic::is_temp_of;
use crate::fs::dir::{FileKind, LIST_BUFFER, list_names, open_dir, read_dir, remove_tree};
use crate::fs::lock::lock_exclusive;
use crate::pex::manifest::MANIFEST_NAME;

use super::launch::LAUNCH_DIR;
use super::{SeedError, io_err, walk};

/// The mark of a seed that has not finished, at the root of DIR.
pub const UNFINISHED_NAME: &str = ".pexinit-seed-unfinished";

const UNFINISHED_TEXT: &[u8] = b"pexinit seed started here and has not finished; \
the next `pexinit seed` of this directory removes what it left and seeds again\n";

/// What DIR holds before a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirState {
    /// Missing or empty: a new seed.
    New,
    /// A seed that never finished (the mark, no manifest): cleared, then seeded anew.
    Unfinished,
    /// A finished seed: entries are added (pex reuses what exists).
    Seed,
    /// A re-seed that was interrupted (manifest and mark): its leftovers are removed and
    /// entries are added.
    InterruptedReseed,
}

impl DirState {
    /// Whether the seed's manifest already exists (its entries are kept).
    pub fn has_manifest(self) -> bool {
        matches!(self, DirState::Seed | DirState::InterruptedReseed)
    }
}

/// DIR's state, or the first name that makes it someone else's directory.
pub(super) fn state_of(dir: BorrowedFd<'_>) -> io::Result<Result<DirState, OsString>> {
    let fresh = open_dir(dir, ".")?;
    let mut buf = vec![0u8; LIST_BUFFER];
    let (mut manifest, mut mark, mut other) = (false, false, None);
    for (name, kind) in read_dir(fresh.as_fd(), &mut buf)? {
        if name == MANIFEST_NAME && kind == FileKind::File {
            manifest = true;
        } else if name == UNFINISHED_NAME && kind == FileKind::File {
            mark = true;
        } else if kind == FileKind::File
            && (is_temp_of(&name, OsStr::new(UNFINISHED_NAME))
                || is_temp_of(&name, OsStr::new(MANIFEST_NAME)))
        {
            // A temporary of our own atomic writes, killed between its link and rename.
        } else {
            other.get_or_insert(name);
        }
    }
    Ok(match (manifest, mark, other) {
        (true, true, _) => Ok(DirState::InterruptedReseed),
        (true, false, _) => Ok(DirState::Seed),
        (false, true, _) => Ok(DirState::Unfinished),
        (false, false, None) => Ok(DirState::New),
        (false, false, Some(name)) => Err(name),
    })
}

/// DIR opened (never through a link) and locked against other seeds of it while alive.
pub(super) struct Locked(Flock<OwnedFd>);

impl Locked {
    pub(super) fn open(root: &Path) -> Result<Locked, SeedError> {
        let fd = open_dir(nix::fcntl::AT_FDCWD, root)
            .map_err(|e| io_err(root.display().to_string())(e.into()))?;
        let locked = lock_exclusive(fd, || {
            tracing::info!(
                "another `pexinit seed` of {} is running: waiting for it",
                root.display()
            );
        })
        .map_err(|(_, e)| io_err(format!("locking {}", root.display()))(e.into()))?;
        Ok(Locked(locked))
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Marks DIR unfinished (atomically: the mark appears whole or not at all).
pub(super) fn mark_unfinished(root: &Path) -> Result<(), SeedError> {
    let path = root.join(UNFINISHED_NAME);
    crate::fs::atomic::write(&path, UNFINISHED_TEXT, 0o644)
        .map_err(io_err(format!("writing {}", path.display())))
}

/// Removes the mark: the seed is finished.
pub(super) fn mark_finished(dir: BorrowedFd<'_>, root: &Path) -> Result<(), SeedError> {
    match unlinkat(dir, UNFINISHED_NAME, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err(format!(
            "removing {}",
            root.join(UNFINISHED_NAME).display()
        ))(e.into())),
    }
}

/// Removes everything in DIR but the mark: the content of a seed that never finished.
/// Returns how many top-level names were removed.
pub(super) fn clear_unfinished(dir: BorrowedFd<'_>, root: &Path) -> Result<usize, SeedError> {
    let mut buf = vec![0u8; LIST_BUFFER];
    let mut removed = 0;
    let names = list_names(dir).map_err(io_err(format!("listing {}", root.display())))?;
    for name in names {
        if name == UNFINISHED_NAME {
            continue;
        }
        remove_tree(dir, &name, &mut buf)
            .map_err(io_err(format!("removing {}", root.join(&name).display())))?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes what an interrupted re-seed left that nothing uses: launcher temporaries
/// (`.pexinit/launch/.<name>.tmp.<pid>`) and Python's bytecode temporaries
/// (`__pycache__/<name>.pyc.<number>`). Returns how many were removed.
pub(super) fn remove_leftovers(root: &Path) -> Result<usize, SeedError> {
    let mut removed = 0;
    walk(root, &mut |parent, name, kind, rel| {
        if kind != FileKind::File {
            return Ok(());
        }
        let dir = rel.parent().unwrap_or(Path::new(""));
        let leftover = if dir == Path::new(LAUNCH_DIR) {
            name.as_bytes().starts_with(b".")
        } else {
            dir.file_name() == Some(OsStr::new("__pycache__")) && is_bytecode_temp(name)
        };
        if leftover {
            match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) => removed += 1,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })?;
    Ok(removed)
}

/// `<name>.pyc.<digits>`: the temporary `importlib` writes bytecode to before renaming it.
fn is_bytecode_temp(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    let Some(dot) = bytes.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let (stem, number) = (&bytes[..dot], &bytes[dot + 1..]);
    stem.ends_with(b".pyc") && !number.is_empty() && number.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn state(root: &Path) -> Result<DirState, OsString> {
        let fd = open_dir(nix::fcntl::AT_FDCWD, root).unwrap();
        state_of(fd.as_fd()).unwrap()
    }

    #[test]
    fn states_are_told_apart_and_only_the_unfinished_content_is_cleared() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("seed");
        fs::create_dir(&root).unwrap();
        assert_eq!(state(&root), Ok(DirState::New));
        fs::write(root.join("..pexinit-seed-unfinished.tmp.1"), "").unwrap();
        assert_eq!(state(&root), Ok(DirState::New), "a temporary of the mark");
        fs::write(root.join("unrelated"), "").unwrap();
        assert_eq!(state(&root), Err(OsString::from("unrelated")));

        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "").unwrap();
        fs::create_dir_all(root.join("venvs/1")).unwrap();
        symlink(&outside, root.join("venvs/1/link")).unwrap();
        symlink(&outside, root.join("top-link")).unwrap();
        mark_unfinished(&root).unwrap();
        assert_eq!(state(&root), Ok(DirState::Unfinished));
        let fd = open_dir(nix::fcntl::AT_FDCWD, &root).unwrap();
        assert_eq!(clear_unfinished(fd.as_fd(), &root).unwrap(), 4);
        let left: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [UNFINISHED_NAME]);
        assert!(outside.join("keep").exists(), "a link was followed");

        fs::write(root.join(MANIFEST_NAME), "{}").unwrap();
        assert_eq!(state(&root), Ok(DirState::InterruptedReseed));
        mark_finished(fd.as_fd(), &root).unwrap();
        assert_eq!(state(&root), Ok(DirState::Seed));
        fs::create_dir(root.join("anything")).unwrap();
        assert_eq!(state(&root), Ok(DirState::Seed));
    }

    #[test]
    fn an_interrupted_reseed_loses_only_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let cache = root.join("installed_wheels/x/__pycache__");
        let launch = root.join(LAUNCH_DIR);
        fs::create_dir_all(&cache).unwrap();
        fs::create_dir_all(&launch).unwrap();
        for kept in [
            cache.join("m.cpython-311.pyc"),
            cache.join("m.py.12"),
            launch.join("abc-zipapp.py"),
            root.join("installed_wheels/x/m.pyc.12"),
        ] {
            fs::write(kept, "").unwrap();
        }
        fs::write(cache.join("m.cpython-311.pyc.140234"), "").unwrap();
        fs::write(launch.join(".abc-zipapp.py.tmp.77"), "").unwrap();
        assert_eq!(remove_leftovers(root).unwrap(), 2);
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
        assert_eq!(fs::read_dir(&launch).unwrap().count(), 1);
    }
}
