//! Filling a staging directory: the seed's tree (through [`tree::copy_tree`]), then the
//! manifest naming DIR and, last, the marker; a progress bar on a terminal.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::{Mode, fchmod, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown};

use crate::error::{Error, Result};
use crate::fs::dir::{self, open_dir, open_file};
use crate::fs::rename::chown_nofollow;
use crate::pex::manifest::{self, MANIFEST_NAME};
use crate::pex::materialize::tree::{self, TreeError, TreeReport, TreeRequest};
use crate::pex::seed::SEED_DIR;
use crate::progress::Bar;

use super::marker::Marker;
use super::plan::Plan;
use super::{MARKER_NAME, Request, failed, nix_failed};

/// Makes the directory a prime is built in: private until the tree is complete.
pub(super) fn create_staging(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(failed(format!("creating {}", dir.display())))
}

/// Copies the seed into `dst` and writes the manifest and the marker into it.
pub(super) fn fill(plan: &Plan, req: &Request, dst: &Path) -> Result<TreeReport> {
    let progress = Bar::new(
        || count_entries(&plan.seed).unwrap_or(0),
        "priming [{elapsed}] {bar:30} {pos}/{len} entries",
    );
    // pexinit's own files at the top (the manifest, rewritten for DIR by finish_root;
    // prime's marker, lock and journal) are not copied; the seed's own directory (its
    // launchers) is: launchers find everything relative to where they are.
    let skip_top =
        |name: &OsStr| name.as_bytes().starts_with(b".pexinit") && name != OsStr::new(SEED_DIR);
    let tick = || progress.inc(1);
    let tree = tree::copy_tree(&TreeRequest {
        src: &plan.seed,
        dst,
        mode: req.mode,
        owner: req.owner,
        relocation: plan.relocation.as_ref(),
        flush: plan.durability.flushes(),
        skip_top: &skip_top,
        tick: &tick,
    });
    progress.finish();
    let tree = tree.map_err(|e| match e {
        TreeError::Impossible(message) => Error::Usage(message),
        TreeError::Io { path, message } => Error::Failed(format!("{}: {message}", path.display())),
    })?;
    Ok(tree)
}

/// The manifest (naming DIR), then ownership, mode and mtime of the root, then (last)
/// the marker. `whole`: the root is ours (renamed into place) and takes the seed's mode.
pub(super) fn finish_root(
    plan: &Plan,
    marker: &Marker,
    req: &Request,
    root: &Path,
    whole: bool,
) -> Result<()> {
    let mut manifest = plan.manifest.clone();
    manifest.pex_root = plan.into.clone();
    manifest.unflushed_boot_id = marker.boot_id.clone();
    if let Some((uid, gid)) = req.owner {
        manifest.ownership.uid = Some(uid);
        manifest.ownership.gid = gid;
    }
    let seed_root = fs::symlink_metadata(&plan.seed).map_err(failed(plan.seed.display()))?;
    let seed_manifest = plan.seed.join(MANIFEST_NAME);
    let mode = fs::symlink_metadata(&seed_manifest)
        .map_err(failed(seed_manifest.display()))?
        .mode()
        & 0o7777;
    write_owned(
        root,
        MANIFEST_NAME,
        &manifest.to_bytes(),
        mode,
        req,
        &seed_root,
    )?;
    let mut marker = serde_json::to_vec_pretty(marker).expect("marker serializes");
    marker.push(b'\n');
    write_owned(root, MARKER_NAME, &marker, mode, req, &seed_root)?;
    let fd = open_dir(nix::fcntl::AT_FDCWD, root).map_err(nix_failed(root.display()))?;
    let owner = req.owner.or_else(|| {
        (whole && nix::unistd::geteuid().is_root()).then_some((seed_root.uid(), seed_root.gid()))
    });
    if let Some((uid, gid)) = owner {
        fchown(
            fd.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(nix_failed(format!("chown {}", root.display())))?;
    }
    if whole {
        fchmod(
            fd.as_fd(),
            Mode::from_bits_truncate(seed_root.mode() & 0o7777),
        )
        .map_err(nix_failed(root.display()))?;
        let t = TimeSpec::new(seed_root.mtime(), seed_root.mtime_nsec());
        futimens(fd.as_fd(), &t, &t).map_err(nix_failed(root.display()))?;
    }
    Ok(())
}

/// Writes `dir/name` atomically, owned like the rest of the tree, mtime of the seed root.
pub(super) fn write_owned(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    req: &Request,
    seed_root: &fs::Metadata,
) -> Result<()> {
    manifest::write_atomic(dir, name, bytes, mode).map_err(failed(dir.join(name).display()))?;
    let dir_fd = open_dir(nix::fcntl::AT_FDCWD, dir).map_err(nix_failed(dir.display()))?;
    let owner = req.owner.or_else(|| {
        nix::unistd::geteuid()
            .is_root()
            .then_some((seed_root.uid(), seed_root.gid()))
    });
    if let Some(owner) = owner {
        chown_nofollow(dir_fd.as_fd(), name, owner)
            .map_err(nix_failed(format!("chown {}", dir.join(name).display())))?;
    }
    // The umask narrowed the mode write_atomic asked for.
    let file = open_file(dir_fd.as_fd(), OsStr::new(name))
        .map_err(nix_failed(dir.join(name).display()))?;
    fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(nix_failed(dir.join(name).display()))?;
    let t = TimeSpec::new(seed_root.mtime(), seed_root.mtime_nsec());
    nix::sys::stat::utimensat(
        dir_fd.as_fd(),
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_failed(dir.join(name).display()))?;
    Ok(())
}

/// Entries below `root` (d_type only: no stat per file).
pub(super) fn count_entries(root: &Path) -> io::Result<u64> {
    let mut n = 0;
    let fd = open_dir(nix::fcntl::AT_FDCWD, root)?;
    dir::walk(fd, &mut |_, _, _, _| {
        n += 1;
        Ok(())
    })
    .map_err(|e| e.error)?;
    Ok(n)
}
