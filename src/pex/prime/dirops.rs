//! Directory operations the placements share: flushing, and removing a tree without
//! following links.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result};
use crate::pex::cache::{FileKind, read_dir};
use crate::pex::materialize::tree::open_dir;

use super::{failed, nix_failed};

/// Flushes the filesystem holding `path`: every file of the tree reaches the disk before
/// the rename that makes it visible (one call instead of an fsync per file).
pub(super) fn sync_fs(path: &Path) -> Result<()> {
    let fd = open_dir(nix::fcntl::AT_FDCWD, path).map_err(nix_failed(path.display()))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(failed(format!("syncfs {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub(super) fn fsync_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(fd).map_err(io::Error::from)
}

/// Removes `dir/name` and everything below it without following links; directories a
/// seed made read-only are made writable first.
pub(super) fn remove_tree_at(dir: &Path, name: &OsStr) -> Result<()> {
    let parent = open_dir(nix::fcntl::AT_FDCWD, dir).map_err(nix_failed(dir.display()))?;
    let mut buf = vec![0u8; 32 * 1024];
    remove_entry(parent.as_fd(), name, &mut buf)
        .map_err(|e| Error::Failed(format!("removing {}: {e}", dir.join(name).display())))
}

pub(super) fn remove_entry(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = open_dir(parent, name)?;
    let st = fstat(fd.as_fd())?;
    if st.st_mode & 0o700 != 0o700 {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(0o700))?;
    }
    for (child, kind) in read_dir(fd.as_fd(), buf)? {
        if kind == FileKind::Directory {
            remove_entry(fd.as_fd(), &child, buf)?;
        } else {
            match unlinkat(fd.as_fd(), child.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
