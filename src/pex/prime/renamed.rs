//! Placement beside DIR: the tree is built under a temporary name in DIR's parent, then
//! renamed onto DIR, or swapped with the previous prime in one step.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::renameat;

use crate::error::Result;
use crate::fs::dir::open_dir;
use crate::fs::rename::rename_exchange;
use crate::pex::materialize::tree::TreeReport;

use super::dirops::{fsync_fd, remove_tree_at};
use super::fill::{create_staging, fill, finish_root};
use super::plan::Plan;
use super::state::DirState;
use super::{Placement, Request, bad, failed, nix_failed};

/// The names of our temporaries beside DIR: `.<name>.pexinit-prime-tmp.<pid>`.
pub(super) fn tmp_prefix(plan: &Plan) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(&plan.name);
    prefix.push(".pexinit-prime-tmp.");
    prefix
}

/// Builds the tree beside DIR, then renames it onto DIR (or swaps it with the old one).
pub(super) fn build_and_rename(
    plan: &Plan,
    req: &Request,
    state: &DirState,
) -> Result<(TreeReport, Placement, bool)> {
    let mut tmp_name = tmp_prefix(plan);
    tmp_name.push(std::process::id().to_string());
    let tmp = plan.parent.join(&tmp_name);
    create_staging(&tmp)?;
    let result = (|| {
        let tree = fill(plan, req, &tmp)?;
        let marker = plan.durability.settle(&plan.marker, &tmp, &tree)?;
        finish_root(plan, &marker, req, &tmp, true)?;
        let parent = open_dir(nix::fcntl::AT_FDCWD, &plan.parent)
            .map_err(nix_failed(plan.parent.display()))?;
        match state {
            DirState::Primed(_) => swap(parent.as_fd(), &tmp_name, &plan.name)?,
            _ => match renameat(
                parent.as_fd(),
                tmp_name.as_os_str(),
                parent.as_fd(),
                plan.name.as_os_str(),
            ) {
                Ok(()) => {}
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                    return Err(bad(format!(
                        "--into {} was filled by someone else while priming; empty it or prime into another directory",
                        plan.into.display()
                    )));
                }
                Err(Errno::EBUSY) => {
                    return Err(bad(format!(
                        "--into {} is a mount point this process cannot see as one; prime into a directory inside it",
                        plan.into.display()
                    )));
                }
                Err(e) => {
                    return Err(nix_failed(format!(
                        "renaming {} to {}",
                        tmp.display(),
                        plan.into.display()
                    ))(e));
                }
            },
        }
        fsync_fd(parent.as_fd()).map_err(failed(plan.parent.display()))?;
        Ok((tree, marker.flushed))
    })();
    // On success `tmp` holds the old tree (after a swap) or nothing at all.
    if tmp.symlink_metadata().is_ok()
        && let Err(e) = remove_tree_at(&plan.parent, &tmp_name)
    {
        tracing::warn!("{e}; the next prime removes it");
    }
    result.map(|(tree, flushed)| (tree, Placement::Renamed, flushed))
}

/// Exchanges the new tree with the old prime in one step; where the filesystem cannot
/// exchange, moves the old one aside first (DIR is briefly missing, never half-made).
pub(super) fn swap(parent: BorrowedFd<'_>, tmp: &OsStr, name: &OsStr) -> Result<()> {
    match rename_exchange(parent, tmp, parent, name) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            let mut aside = tmp.to_os_string();
            aside.push(".old");
            renameat(parent, name, parent, aside.as_os_str())
                .map_err(nix_failed("moving the old prime aside"))?;
            renameat(parent, tmp, parent, name)
                .map_err(nix_failed("renaming the new prime into place"))?;
            renameat(parent, aside.as_os_str(), parent, tmp)
                .map_err(nix_failed("renaming the old prime"))?;
            Ok(())
        }
        Err(e) => Err(nix_failed("swapping the new prime into place")(e)),
    }
}
