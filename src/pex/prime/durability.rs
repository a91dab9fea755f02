//! Whether a prime flushes its tree to disk before publishing it.
//!
//! A published tree is trusted: by pex, by `run`, and by the next prime, which sees the
//! marker and does nothing. What could make it wrong is the machine going down before the
//! copies reached the disk: after the restart, the directories and the marker are there
//! and the files are empty. Flushing the filesystem before the rename rules that out, and
//! on disk costs a quarter of a copy's time (docs/BENCHMARKS.md: `cp -a` + `sync -f`).
//!
//! Within one boot of the kernel nothing is lost: every reader sees the page cache, even
//! after the prime itself was killed. So on a filesystem local to this machine the flush
//! is skipped and the marker records the boot instead (`/proc/sys/kernel/random/boot_id`).
//! A later prime trusts such a tree only in the boot that wrote it; after a restart it
//! primes again. Kubernetes runs initContainers again whenever a pod restarts, so the
//! prime that follows a node's crash is the one that notices.
//!
//! Every other filesystem is flushed: a volume shared between machines (NFS, CephFS, ...)
//! is primed on one and trusted by the others, which run other boots. So is any tree when
//! the boot cannot be read.

use std::path::Path;

use crate::error::Result;
use crate::pex::materialize::tree::TreeReport;

use super::dirops::sync_fs;
use super::marker::Marker;

/// Where the kernel names the current boot: a random UUID made at every boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// statfs magic numbers of the filesystems that live on this machine only (linux/magic.h):
/// ext2/3/4, XFS, btrfs, F2FS, tmpfs, overlayfs (a container's root: its upper layer is
/// local).
const LOCAL_FILESYSTEMS: [u64; 6] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // btrfs
    0xF2F5_2010, // F2FS
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
];

/// How the tree is made safe to trust before it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Durability {
    /// Flush the filesystem before the rename (`syncfs`).
    Flush,
    /// No flush; the marker names this boot, the only one that may trust the tree.
    ThisBoot(String),
}

impl Durability {
    /// For a tree that lands on the filesystem holding `dir`, in the boot `boot`.
    pub(super) fn for_dir(dir: &Path, boot: Option<&str>) -> Durability {
        match (boot, filesystem_magic(dir)) {
            (Some(boot), Some(magic)) if LOCAL_FILESYSTEMS.contains(&magic) => {
                Durability::ThisBoot(boot.to_owned())
            }
            _ => Durability::Flush,
        }
    }

    /// Whether the copier should push each copy towards the disk as it goes.
    pub(super) fn flushes(&self) -> bool {
        *self == Durability::Flush
    }

    /// Makes the staged tree as durable as asked, and returns `marker` as it is to be
    /// published with the tree, saying how.
    pub(super) fn settle(
        &self,
        marker: &Marker,
        staged: &Path,
        tree: &TreeReport,
    ) -> Result<Marker> {
        let mut marker = marker.clone();
        if tree.unsynced_copies == 0 {
            // Links only, and copies synced one by one: nothing waits in the page cache.
            marker.flushed = true;
            return Ok(marker);
        }
        match self {
            Durability::Flush => {
                sync_fs(staged)?;
                marker.flushed = true;
            }
            Durability::ThisBoot(boot) => marker.boot_id = Some(boot.clone()),
        }
        Ok(marker)
    }
}

/// The current boot's id, when the kernel tells it (a mounted /proc).
pub(super) fn current_boot() -> Option<String> {
    let text = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = text.trim();
    let well_formed = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    well_formed.then(|| id.to_owned())
}

/// Whether a tree published unflushed in the boot `unflushed_boot` may have lost data:
/// the machine has restarted since (or the current boot cannot be read).
pub fn may_have_lost_data(unflushed_boot: &str) -> bool {
    current_boot().as_deref() != Some(unflushed_boot)
}

fn filesystem_magic(dir: &Path) -> Option<u64> {
    let st = nix::sys::statfs::statfs(dir).ok()?;
    // The field is signed on glibc and unsigned on musl; the magic numbers are positive.
    #[allow(clippy::unnecessary_cast)]
    Some(st.filesystem_type().0 as u64)
}
