//! Placement into a mount point (an emptyDir mounted at DIR itself): nothing can be
//! renamed onto it, so the tree is built inside it and moved in one complete top-level
//! directory at a time, under a journal, with the manifest and the marker last.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::renameat;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::Result;
use crate::fs::dir::{list_names, open_dir};
use crate::fs::rename::rename_exchange;
use crate::pex::manifest::{self, MANIFEST_NAME};
use crate::pex::materialize::tree::TreeReport;

use super::dirops::{fsync_fd, remove_tree_at};
use super::fill::{create_staging, fill, finish_root};
use super::plan::Plan;
use super::{JOURNAL_NAME, MARKER_NAME, MOUNT_LOCK, MOUNT_TMP, Request, failed, nix_failed};

/// DIR is a mount point: build inside it, then move the top-level directories in.
/// Returns what was copied and whether the tree was flushed before it was moved in.
pub(super) fn fill_mount_point(plan: &Plan, req: &Request) -> Result<(TreeReport, bool)> {
    let tmp = plan.into.join(MOUNT_TMP);
    create_staging(&tmp)?;
    let result = (|| {
        let tree = fill(plan, req, &tmp)?;
        // The marker and manifest travel last and separately.
        let mut names: Vec<OsString> = fs::read_dir(&tmp)
            .map_err(failed(tmp.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(failed(tmp.display()))?;
        names.retain(|n| n != MARKER_NAME && n != MANIFEST_NAME);
        names.sort_by_key(|n| (move_rank(n), n.clone()));
        let marker = plan.durability.settle(&plan.marker, &tmp, &tree)?;
        finish_root(plan, &marker, req, &tmp, false)?;
        let into =
            open_dir(nix::fcntl::AT_FDCWD, &plan.into).map_err(nix_failed(plan.into.display()))?;
        let tmp_fd = open_dir(into.as_fd(), MOUNT_TMP).map_err(nix_failed(tmp.display()))?;
        // From here DIR changes: first make sure neither pexinit nor a later prime trusts
        // what is there, and that a later prime knows the content is ours.
        let journal = serde_json::to_vec(
            &names
                .iter()
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>(),
        )
        .expect("journal serializes");
        manifest::write_atomic(&plan.into, JOURNAL_NAME, &journal, 0o644)
            .map_err(failed(plan.into.join(JOURNAL_NAME).display()))?;
        for control in [MARKER_NAME, MANIFEST_NAME] {
            match unlinkat(into.as_fd(), control, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(nix_failed(plan.into.join(control).display())(e)),
            }
        }
        fsync_fd(into.as_fd()).map_err(failed(plan.into.display()))?;
        for name in &names {
            match rename_exchange(
                tmp_fd.as_fd(),
                name.as_os_str(),
                into.as_fd(),
                name.as_os_str(),
            ) {
                // The old entry is now in the staging directory, removed with it.
                Ok(()) => {}
                Err(Errno::ENOENT) => renameat(
                    tmp_fd.as_fd(),
                    name.as_os_str(),
                    into.as_fd(),
                    name.as_os_str(),
                )
                .map_err(nix_failed(format!(
                    "moving {} into {}",
                    name.to_string_lossy(),
                    plan.into.display()
                )))?,
                Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    let mut old = OsString::from("old.");
                    old.push(name);
                    renameat(
                        into.as_fd(),
                        name.as_os_str(),
                        tmp_fd.as_fd(),
                        old.as_os_str(),
                    )
                    .map_err(nix_failed("moving the old entry aside"))?;
                    renameat(
                        tmp_fd.as_fd(),
                        name.as_os_str(),
                        into.as_fd(),
                        name.as_os_str(),
                    )
                    .map_err(nix_failed("moving the new entry in"))?;
                }
                Err(e) => {
                    return Err(nix_failed(format!(
                        "moving {} into {}",
                        name.to_string_lossy(),
                        plan.into.display()
                    ))(e));
                }
            }
        }
        // Entries of an older prime the new seed does not have.
        for old in list_names(into.as_fd()).map_err(failed(plan.into.display()))? {
            let keep = names.contains(&old)
                || [MOUNT_TMP, MOUNT_LOCK, JOURNAL_NAME, "lost+found"]
                    .iter()
                    .any(|k| old == *k);
            if !keep {
                let mut aside = OsString::from("gone.");
                aside.push(&old);
                renameat(
                    into.as_fd(),
                    old.as_os_str(),
                    tmp_fd.as_fd(),
                    aside.as_os_str(),
                )
                .map_err(nix_failed(format!(
                    "removing {}",
                    plan.into.join(&old).display()
                )))?;
            }
        }
        for control in [MANIFEST_NAME, MARKER_NAME] {
            renameat(tmp_fd.as_fd(), control, into.as_fd(), control).map_err(nix_failed(
                format!("moving {control} into {}", plan.into.display()),
            ))?;
            fsync_fd(into.as_fd()).map_err(failed(plan.into.display()))?;
        }
        match unlinkat(into.as_fd(), JOURNAL_NAME, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(nix_failed(plan.into.join(JOURNAL_NAME).display())(e)),
        }
        Ok((tree, marker.flushed))
    })();
    if let Err(e) = remove_tree_at(&plan.into, OsStr::new(MOUNT_TMP)) {
        tracing::warn!("{e}; the next prime removes it");
    }
    result
}

/// pex's links point from `unzipped_pexes` and `venvs` into the other top-level
/// directories, and from `venvs` into `unzipped_pexes` (pex ≥ 2.27 venvs link their
/// `PEX-INFO` there): targets move in first.
pub(super) fn move_rank(name: &OsStr) -> u8 {
    match name.as_bytes() {
        b"unzipped_pexes" => 1,
        b"venvs" => 2,
        _ => 0,
    }
}
