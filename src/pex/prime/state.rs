//! What DIR holds before a prime, and the lock that makes concurrent primes of one DIR
//! take turns.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::Flock;

use crate::error::Result;
use crate::fs::lock::lock_exclusive;

use super::marker::Marker;
use super::plan::Plan;
use super::{JOURNAL_NAME, MARKER_NAME, MOUNT_LOCK, MOUNT_TMP, bad, failed};

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

pub(super) fn state_of(plan: &Plan) -> Result<DirState> {
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
pub(super) struct Lock(#[allow(dead_code)] Flock<File>);

pub(super) fn lock(plan: &Plan) -> Result<Lock> {
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
            if second.kind() == std::io::ErrorKind::NotFound {
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
    let file = lock_exclusive(file, || {
        tracing::info!(
            "another prime of {} is running: waiting for it",
            plan.into.display()
        );
    })
    .map_err(|(_, e)| failed(format!("locking {}", path.display()))(e.into()))?;
    Ok(Lock(file))
}
