//! Making a directory a warm PEX_ROOT from a seed (`pexinit prime`), for an
//! initContainer filling an emptyDir or a shared volume.
//!
//! - **Atomic.** The tree is built under a temporary name beside DIR (same parent, same
//!   filesystem) and renamed into place: DIR is either absent, the old content, or
//!   complete. Re-priming an already primed DIR swaps the two trees in one
//!   `renameat2(RENAME_EXCHANGE)`. Whether the data is flushed to disk first, or the
//!   marker names the boot that may trust it instead, is [`durability`]'s decision.
//! - **DIR is a mount point** (an emptyDir mounted at DIR itself, the usual Kubernetes
//!   shape): nothing can be renamed onto it. The tree is built in `DIR/.pexinit-prime-tmp`
//!   and its top-level directories are renamed in one at a time, each whole, in the
//!   order pex's links need them (`venvs` last: its links point into the others), then
//!   the seed manifest, then the marker. pex trusts a cache entry once its directory
//!   exists, and every entry arrives complete with its top-level directory; `run` uses
//!   DIR as a seed only once the manifest is there. A journal written before the first
//!   rename lets the next prime recognize and replace a half-filled DIR.
//! - **Idempotent.** The marker (`DIR/.pexinit-prime.json`, written last) records the
//!   sha256 of the seed's manifest, the owner and the path; the same prime again does
//!   nothing and says so (unless the tree was not flushed and the machine has restarted
//!   since: then it primes again).
//! - **Concurrent primes** of one DIR serialize on an exclusive `flock`: on
//!   `.<name>.pexinit-prime.lock` beside DIR, or on `DIR/.pexinit-prime.lock` when DIR is a
//!   mount point (so pods sharing the volume share the lock). The second waits, then
//!   finds the marker and does nothing.
//! - **Stale temporaries** of a killed prime are removed by the next one (under the lock).
//! - **Relocation.** When DIR is not the path the seed was built for, the absolute
//!   in-root references are rewritten ([`crate::pex::materialize::relocate`]) and the
//!   copied manifest names DIR.

mod dirops;
mod durability;
mod fill;
mod marker;
mod mount_point;
mod plan;
mod renamed;
mod state;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use nix::errno::Errno;
use serde::Serialize;

use crate::error::{Error, Result};
pub use crate::pex::materialize::tree::LinkMode;
use crate::pex::materialize::tree::TreeReport;

use dirops::remove_tree_at;
pub use durability::may_have_lost_data;
pub use marker::Marker;
use mount_point::fill_mount_point;
use plan::{Plan, plan};
use renamed::{build_and_rename, tmp_prefix};
use state::{DirState, lock, state_of};

/// Written last into a primed DIR: which seed, for which owner, at which path.
pub const MARKER_NAME: &str = ".pexinit-prime.json";
/// Lists what a prime into a mount point is moving in; removed once the marker is there.
pub const JOURNAL_NAME: &str = ".pexinit-prime-journal.json";
/// The staging directory inside a mount point.
const MOUNT_TMP: &str = ".pexinit-prime-tmp";
/// The lock file inside a mount point.
const MOUNT_LOCK: &str = ".pexinit-prime.lock";
/// 2: the marker says whether the tree was flushed, and in which boot it was written.
const FORMAT: u32 = 2;

fn failed(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    let context = context.to_string();
    move |e| Error::failed(context, e)
}

fn nix_failed(context: impl std::fmt::Display) -> impl FnOnce(Errno) -> Error {
    let context = context.to_string();
    move |e| Error::failed(context, e)
}

fn bad(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: PathBuf,
    pub into: PathBuf,
    pub owner: Option<(u32, u32)>,
    pub mode: LinkMode,
}

/// How DIR was filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Built beside DIR and renamed onto it (or swapped with the old tree).
    Renamed,
    /// DIR is a mount point: top-level directories moved in one by one, marker last.
    FilledMountPoint,
}

/// What `prime` did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub into: PathBuf,
    pub seed: PathBuf,
    pub seed_manifest_sha256: String,
    /// DIR already held this prime: nothing was done.
    pub already_primed: bool,
    /// DIR held an older prime (another seed or owner), now replaced.
    pub replaced: bool,
    /// DIR held this prime unflushed from before the machine restarted: primed again.
    pub reprimed_after_restart: bool,
    /// The tree's data reached the disk before it was published (else the marker names
    /// this boot: see `durability`).
    pub flushed: bool,
    pub placement: Option<Placement>,
    pub relocated_from: Option<PathBuf>,
    pub owner: Option<(u32, u32)>,
    /// Stale temporaries of killed primes, removed.
    pub stale_removed: usize,
    pub tree: Option<TreeReport>,
    pub seconds: f64,
}

impl Report {
    pub fn text(&self) -> String {
        if self.already_primed {
            return format!(
                "{} is already primed from {} (seed manifest sha256 {}): nothing to do\n",
                self.into.display(),
                self.seed.display(),
                &self.seed_manifest_sha256[..12]
            );
        }
        let t = self.tree.clone().unwrap_or_default();
        let mut line = format!(
            "primed {} from {}: {} files ({} hardlinked, {} reflinked, {} copied, {} rewritten), {} dirs, {} links, {} bytes copied in {:.2}s",
            self.into.display(),
            self.seed.display(),
            t.files_hardlinked + t.files_reflinked + t.files_copied + t.files_rewritten,
            t.files_hardlinked,
            t.files_reflinked,
            t.files_copied,
            t.files_rewritten,
            t.dirs,
            t.symlinks,
            t.bytes_copied,
            self.seconds
        );
        if let Some(from) = &self.relocated_from {
            line.push_str(&format!("; relocated from {}", from.display()));
        }
        if self.reprimed_after_restart {
            line.push_str(
                "; primed again: the previous prime was not flushed before the machine restarted",
            );
        } else if self.replaced {
            line.push_str("; replaced the previous prime");
        }
        line.push('\n');
        line
    }
}

/// Makes `req.into` a warm PEX_ROOT from the seed `req.from`.
pub fn prime(req: &Request) -> Result<Report> {
    let started = Instant::now();
    let plan = plan(req)?;
    // Someone else's directory is refused before anything (even the lock file) is made;
    // the state is read again under the lock.
    if let DirState::Foreign(what) = state_of(&plan)? {
        return Err(foreign(&plan, &what));
    }
    let _lock = lock(&plan)?;
    let mut report = Report {
        into: plan.into.clone(),
        seed: plan.seed.clone(),
        seed_manifest_sha256: plan.marker.seed_manifest_sha256.clone(),
        already_primed: false,
        replaced: false,
        reprimed_after_restart: false,
        flushed: false,
        placement: None,
        relocated_from: plan.marker.relocated_from.clone(),
        owner: req.owner,
        stale_removed: 0,
        tree: None,
        seconds: 0.0,
    };
    report.stale_removed = remove_stale(&plan)?;
    let state = state_of(&plan)?;
    match &state {
        DirState::Primed(marker) if marker.same_prime(&plan.marker) => {
            if marker.durable_in(plan.boot.as_deref()) {
                report.already_primed = true;
                report.flushed = marker.flushed;
                report.seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
            tracing::warn!(
                "{} was primed without a flush to disk before this machine restarted; a crash may have lost data: priming it again",
                plan.into.display()
            );
            report.reprimed_after_restart = true;
        }
        DirState::Foreign(what) => return Err(foreign(&plan, what)),
        _ => {}
    }
    report.replaced = matches!(state, DirState::Primed(_) | DirState::Partial);
    let outcome = if plan.mount_point {
        fill_mount_point(&plan, req).map(|(t, flushed)| (t, Placement::FilledMountPoint, flushed))
    } else {
        build_and_rename(&plan, req, &state)
    };
    let (tree, placement, flushed) = outcome?;
    report.flushed = flushed;
    report.tree = Some(tree);
    report.placement = Some(placement);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn foreign(plan: &Plan, what: &OsStr) -> Error {
    bad(format!(
        "--into {} is not empty and was not primed by pexinit (it holds {}); empty it or prime into another directory",
        plan.into.display(),
        what.to_string_lossy()
    ))
}

/// Removes what killed primes left (called under the lock: no prime is running).
fn remove_stale(plan: &Plan) -> Result<usize> {
    let mut removed = 0;
    if plan.mount_point {
        if plan.into.join(MOUNT_TMP).symlink_metadata().is_ok() {
            remove_tree_at(&plan.into, OsStr::new(MOUNT_TMP))?;
            removed += 1;
        }
        return Ok(removed);
    }
    let prefix = tmp_prefix(plan);
    let entries = fs::read_dir(&plan.parent).map_err(failed(plan.parent.display()))?;
    for entry in entries {
        let entry = entry.map_err(failed(plan.parent.display()))?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(prefix.as_bytes()) {
            tracing::info!(
                "removing {} (left by a prime that did not finish)",
                plan.parent.join(&name).display()
            );
            remove_tree_at(&plan.parent, &name)?;
            removed += 1;
        }
    }
    Ok(removed)
}
