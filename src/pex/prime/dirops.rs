//! Directory operations the placements share: flushing, and removing a tree without
//! following links.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::dir::{self, open_dir};

use super::{failed, nix_failed};

/// Flushes the filesystem holding `path`: every file of the tree reaches the disk before
/// the rename that makes it visible (one call instead of an fsync per file).
pub(super) fn sync_fs(path: &Path) -> Result<()> {
    dir::sync_fs(path).map_err(failed(format!("syncfs {}", path.display())))
}

pub(super) fn fsync_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(fd).map_err(io::Error::from)
}

/// Removes `dir/name` and everything below it without following links; directories a
/// seed made read-only are made writable first.
pub(super) fn remove_tree_at(dir: &Path, name: &OsStr) -> Result<()> {
    let parent = open_dir(nix::fcntl::AT_FDCWD, dir).map_err(nix_failed(dir.display()))?;
    let mut buf = vec![0u8; dir::LIST_BUFFER];
    dir::remove_tree(parent.as_fd(), name, &mut buf)
        .map_err(|e| Error::Failed(format!("removing {}: {e}", dir.join(name).display())))
}
