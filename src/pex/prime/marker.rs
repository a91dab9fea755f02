//! What a primed DIR says about itself (the marker), what DIR holds before a prime, and
//! the lock that makes concurrent primes of one DIR take turns.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plan::Plan;
use super::{JOURNAL_NAME, MARKER_NAME, MOUNT_LOCK, MOUNT_TMP, PrimeError, bad, failed};

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    /// The seed's physical path (provenance only).
    pub seed: PathBuf,
    /// sha256 of the seed's `.pexinit-seed.json`.
    pub seed_manifest_sha256: String,
    /// The physical PEX_ROOT this tree is valid at.
    pub pex_root: PathBuf,
    pub owner: Option<(u32, u32)>,
    /// The path the seed was built for, when it differs from `pex_root`.
    pub relocated_from: Option<PathBuf>,
    /// The tree's data was on disk before the tree was published.
    pub flushed: bool,
    /// The kernel boot that published an unflushed tree: the only one that may trust it
    /// (see [`super::durability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Marker {
    /// Whether a tree with this marker is what `wanted` would make.
    pub(super) fn same_prime(&self, wanted: &Marker) -> bool {
        self.format == wanted.format
            && self.seed_manifest_sha256 == wanted.seed_manifest_sha256
            && self.pex_root == wanted.pex_root
            && self.owner == wanted.owner
    }

    /// Whether the tree can be trusted in the boot `boot`: it was flushed, or published
    /// in that very boot (nothing can have been lost since).
    pub(super) fn durable_in(&self, boot: Option<&str>) -> bool {
        self.flushed || (self.boot_id.is_some() && self.boot_id.as_deref() == boot)
    }
}

/// What DIR holds before priming.
#[derive(Debug)]
pub(super) enum DirState {
    Missing,
    /// Empty (a mount point's `lost+found` does not count).
    Empty,
    Primed(Marker),
    /// A mount point a killed prime was filling (its journal is there).
    Partial,
    /// Something else: the first name found.
    Foreign(OsString),
}

pub(super) fn state_of(plan: &Plan) -> Result<DirState, PrimeError> {
    let entries = match fs::read_dir(&plan.into) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) => return Err(failed(plan.into.display())(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.map_err(failed(plan.into.display()))?.file_name());
    }
    let ignorable =
        |n: &OsStr| plan.mount_point && (n == "lost+found" || n == MOUNT_LOCK || n == MOUNT_TMP);
    if names.iter().all(|n| ignorable(n)) {
        return Ok(DirState::Empty);
    }
    if let Some(marker) = fs::read(plan.into.join(MARKER_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
    {
        return Ok(DirState::Primed(marker));
    }
    if plan.mount_point && names.iter().any(|n| n == JOURNAL_NAME) {
        return Ok(DirState::Partial);
    }
    let first = names
        .into_iter()
        .find(|n| !ignorable(n))
        .unwrap_or_default();
    Ok(DirState::Foreign(first))
}

/// Holds the prime lock of DIR while alive.
pub(super) struct Lock(#[allow(dead_code)] File);

pub(super) fn lock(plan: &Plan) -> Result<Lock, PrimeError> {
    let path = if plan.mount_point {
        plan.into.join(MOUNT_LOCK)
    } else {
        let mut name = OsString::from(".");
        name.push(&plan.name);
        name.push(".pexinit-prime.lock");
        plan.parent.join(name)
    };
    let open = |write: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
    };
    // flock needs no write access: a lock file another user made still locks.
    // When it cannot be opened at all, the first error is the cause (a read-only
    // filesystem, no permission), not the second's "no such file".
    let file = open(true).or_else(|first| {
        open(false).map_err(|second| {
            if second.kind() == io::ErrorKind::NotFound {
                first
            } else {
                second
            }
        })
    });
    let file = file.map_err(|e| {
        bad(format!(
            "cannot open the lock file {}: {e}; --into must sit in a writable directory",
            path.display()
        ))
    })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        tracing::info!(
            "another prime of {} is running: waiting for it",
            plan.into.display()
        );
        // SAFETY: as above; blocks until the other prime is done.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(failed(format!("locking {}", path.display()))(
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(Lock(file))
}
