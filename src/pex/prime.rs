//! Making a directory a warm PEX_ROOT from a seed (`pexinit prime`), for an
//! initContainer filling an emptyDir or a shared volume.
//!
//! - **Atomic.** The tree is built under a temporary name beside DIR (same parent, same
//!   filesystem), flushed (`syncfs` after copies; a tree of links only syncs its few
//!   copied files), and renamed into place: DIR is either absent, the
//!   old content, or complete. Re-priming an already primed DIR swaps the two trees in
//!   one `renameat2(RENAME_EXCHANGE)`.
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
//!   nothing and says so.
//! - **Concurrent primes** of one DIR serialize on an exclusive `flock`: on
//!   `.<name>.pexinit-prime.lock` beside DIR, or on `DIR/.pexinit-prime.lock` when DIR is a
//!   mount point (so pods sharing the volume share the lock). The second waits, then
//!   finds the marker and does nothing.
//! - **Stale temporaries** of a killed prime are removed by the next one (under the lock).
//! - **Relocation.** When DIR is not the path the seed was built for, the absolute
//!   in-root references are rewritten ([`crate::pex::materialize::relocate`]) and the
//!   copied manifest names DIR.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, IsTerminal};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};
use serde::{Deserialize, Serialize};

use crate::cli::LinkMode as CliLinkMode;
use crate::cli::PrimeArgs;
use crate::error::Result;
use crate::paths::resolve_physical;
use crate::paths::{chown_nofollow, rename_exchange};
use crate::pex::cache::{FileKind, read_dir};
use crate::pex::manifest::{self, MANIFEST_NAME, Manifest};
use crate::pex::materialize::relocate::Relocation;
use crate::pex::materialize::tree::{self, LinkMode, TreeError, TreeReport, TreeRequest, open_dir};

/// Written last into a primed DIR: which seed, for which owner, at which path.
pub const MARKER_NAME: &str = ".pexinit-prime.json";
/// Lists what a prime into a mount point is moving in; removed once the marker is there.
pub const JOURNAL_NAME: &str = ".pexinit-prime-journal.json";
/// The staging directory inside a mount point.
const MOUNT_TMP: &str = ".pexinit-prime-tmp";
/// The lock file inside a mount point.
const MOUNT_LOCK: &str = ".pexinit-prime.lock";
const FORMAT: u32 = 1;

/// Exit statuses of `pexinit prime` (documented in the README).
pub mod exit {
    /// DIR is primed (now, or already was).
    pub const OK: u8 = 0;
    /// Priming failed part-way (I/O error, disk full); DIR is as it was before.
    pub const FAILED: u8 = 1;
    /// Bad input: no seed, DIR not a directory or someone else's, a link mode that
    /// cannot work, a path relocation cannot reach. Nothing was changed.
    pub const BAD_INPUT: u8 = 125;
}

#[derive(Debug, thiserror::Error)]
pub enum PrimeError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Failed(String),
}

impl PrimeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PrimeError::BadInput(_) => exit::BAD_INPUT,
            PrimeError::Failed(_) => exit::FAILED,
        }
    }
}

fn failed(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> PrimeError {
    let context = context.to_string();
    move |e| PrimeError::Failed(format!("{context}: {e}"))
}

fn nix_failed(context: impl std::fmt::Display) -> impl FnOnce(Errno) -> PrimeError {
    let context = context.to_string();
    move |e| PrimeError::Failed(format!("{context}: {e}"))
}

fn bad(message: impl Into<String>) -> PrimeError {
    PrimeError::BadInput(message.into())
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: PathBuf,
    pub into: PathBuf,
    pub owner: Option<(u32, u32)>,
    pub mode: LinkMode,
}

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
}

impl Marker {
    /// Whether a tree with this marker is what `wanted` would make.
    fn same_prime(&self, wanted: &Marker) -> bool {
        self.format == wanted.format
            && self.seed_manifest_sha256 == wanted.seed_manifest_sha256
            && self.pex_root == wanted.pex_root
            && self.owner == wanted.owner
    }
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
        if self.replaced {
            line.push_str("; replaced the previous prime");
        }
        line.push('\n');
        line
    }
}

/// `pexinit prime`: returns the exit status.
pub fn command(args: &PrimeArgs) -> Result<u8> {
    let outcome = parse_owner(args.chown.as_deref()).and_then(|owner| {
        prime(&Request {
            from: args.from.clone(),
            into: args.into.clone(),
            owner,
            mode: match args.link {
                CliLinkMode::Auto => LinkMode::Auto,
                CliLinkMode::Copy => LinkMode::Copy,
                CliLinkMode::Hardlink => LinkMode::Hardlink,
                CliLinkMode::Reflink => LinkMode::Reflink,
            },
        })
    });
    match outcome {
        Ok(report) => {
            let text = if args.json {
                let mut text = serde_json::to_string_pretty(&report).expect("report serializes");
                text.push('\n');
                text
            } else {
                report.text()
            };
            use std::io::Write;
            let mut out = io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("pexinit: error: {e}");
            Ok(e.exit_code())
        }
    }
}

/// `UID:GID`, numbers only (the image may not know the runtime user by name).
fn parse_owner(text: Option<&str>) -> Result<Option<(u32, u32)>, PrimeError> {
    let Some(text) = text else { return Ok(None) };
    let parsed = text
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
    parsed.map(Some).ok_or_else(|| {
        bad(format!(
            "--chown {text}: expected UID:GID as numbers, e.g. 1001:0"
        ))
    })
}

/// Everything decided before the lock is taken: read-only checks.
struct Plan {
    seed: PathBuf,
    into: PathBuf,
    parent: PathBuf,
    name: OsString,
    manifest: Manifest,
    marker: Marker,
    relocation: Option<Relocation>,
    mount_point: bool,
}

fn plan(req: &Request) -> Result<Plan, PrimeError> {
    let seed = absolute(&req.from)?;
    let seed =
        resolve_physical(&seed).map_err(|e| bad(format!("--from {}: {e}", seed.display())))?;
    if !seed.exists || !seed.physical.is_dir() {
        return Err(bad(format!(
            "--from {} is not a directory; name a seed made by `pexinit seed`",
            seed.physical.display()
        )));
    }
    let seed = seed.physical;
    let manifest_path = seed.join(MANIFEST_NAME);
    let manifest = manifest::read(&seed).map_err(|e| bad(format!("--from: {e}")))?;
    let manifest_bytes = fs::read(&manifest_path).map_err(failed(manifest_path.display()))?;

    let into = absolute(&req.into)?;
    let resolved =
        resolve_physical(&into).map_err(|e| bad(format!("--into {}: {e}", into.display())))?;
    let into = resolved.physical;
    let (Some(parent), Some(name)) = (into.parent(), into.file_name()) else {
        return Err(bad("--into /: name a directory below the root"));
    };
    if resolved.exists {
        let meta = fs::symlink_metadata(&into).map_err(failed(into.display()))?;
        if !meta.is_dir() {
            return Err(bad(format!(
                "--into {} is not a directory; name a new or empty directory",
                into.display()
            )));
        }
    } else if !parent.is_dir() {
        return Err(bad(format!(
            "--into {}: {} does not exist; create it first",
            into.display(),
            parent.display()
        )));
    }
    if into.starts_with(&seed) || seed.starts_with(&into) {
        return Err(bad(format!(
            "--into {} and --from {} overlap; prime into a directory outside the seed",
            into.display(),
            seed.display()
        )));
    }
    let relocation = if into == manifest.pex_root {
        None
    } else {
        Some(Relocation::new(&manifest.pex_root, &into).map_err(|e| {
            bad(format!(
                "the seed was built for {}, and --into {} cannot take it: {e}",
                manifest.pex_root.display(),
                into.display()
            ))
        })?)
    };
    let mount_point = resolved.exists && is_mount_point(&into, parent);
    if req.mode == LinkMode::Hardlink {
        let seed_dev = fs::metadata(&seed).map_err(failed(seed.display()))?.dev();
        // What DIR's tree lands on: the mount itself, else the filesystem of the parent.
        let at = if mount_point { into.as_path() } else { parent };
        let dev = fs::metadata(at).map_err(failed(at.display()))?.dev();
        if seed_dev != dev {
            return Err(bad(format!(
                "--link hardlink: {} and {} are on different filesystems; use --link copy",
                seed.display(),
                into.display()
            )));
        }
    }
    if req.mode == LinkMode::Reflink {
        let at = if mount_point { into.as_path() } else { parent };
        if let Err(e) = probe_reflink(&manifest_path, at) {
            return Err(bad(format!(
                "--link reflink: cannot reflink from {} into {} ({e}); use --link copy (or --link auto)",
                seed.display(),
                into.display()
            )));
        }
    }
    Ok(Plan {
        marker: Marker {
            format: FORMAT,
            seed: seed.clone(),
            seed_manifest_sha256: manifest::sha256_bytes(&manifest_bytes),
            pex_root: into.clone(),
            owner: req.owner,
            relocated_from: relocation.as_ref().map(|r| r.from().to_path_buf()),
        },
        seed,
        parent: parent.to_path_buf(),
        name: name.to_os_string(),
        into,
        manifest,
        relocation,
        mount_point,
    })
}

/// Clones `file` into an unnamed file in `dir` (O_TMPFILE: nothing ever appears there).
/// A filesystem without unnamed files is not judged here; the copy finds out.
fn probe_reflink(file: &Path, dir: &Path) -> io::Result<()> {
    let from = File::open(file)?;
    let to = match fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(to) => to,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    if unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, PrimeError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .map_err(failed("the working directory"))?
        .join(path))
}

/// A mount point (an emptyDir, a volume, a bind mount): another mount than its parent's.
fn is_mount_point(dir: &Path, parent: &Path) -> bool {
    match (mount_id(dir), mount_id(parent)) {
        (Some(a), Some(b)) => a != b,
        _ => {
            let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
            dev(dir) != dev(parent)
        }
    }
}

fn mount_id(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// Makes `req.into` a warm PEX_ROOT from the seed `req.from`.
pub fn prime(req: &Request) -> Result<Report, PrimeError> {
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
            report.already_primed = true;
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        DirState::Foreign(what) => return Err(foreign(&plan, what)),
        _ => {}
    }
    report.replaced = matches!(state, DirState::Primed(_) | DirState::Partial);
    let outcome = if plan.mount_point {
        fill_mount_point(&plan, req).map(|t| (t, Placement::FilledMountPoint))
    } else {
        build_and_rename(&plan, req, &state)
    };
    let (tree, placement) = outcome?;
    report.tree = Some(tree);
    report.placement = Some(placement);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn foreign(plan: &Plan, what: &OsStr) -> PrimeError {
    bad(format!(
        "--into {} is not empty and was not primed by pexinit (it holds {}); empty it or prime into another directory",
        plan.into.display(),
        what.to_string_lossy()
    ))
}

/// What DIR holds before priming.
#[derive(Debug)]
enum DirState {
    Missing,
    /// Empty (a mount point's `lost+found` does not count).
    Empty,
    Primed(Marker),
    /// A mount point a killed prime was filling (its journal is there).
    Partial,
    /// Something else: the first name found.
    Foreign(OsString),
}

fn state_of(plan: &Plan) -> Result<DirState, PrimeError> {
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
struct Lock(#[allow(dead_code)] File);

fn lock(plan: &Plan) -> Result<Lock, PrimeError> {
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
    let file = open(true).or_else(|_| open(false)).map_err(|e| {
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

/// The names of our temporaries beside DIR: `.<name>.pexinit-prime-tmp.<pid>`.
fn tmp_prefix(plan: &Plan) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(&plan.name);
    prefix.push(".pexinit-prime-tmp.");
    prefix
}

/// Removes what killed primes left (called under the lock: no prime is running).
fn remove_stale(plan: &Plan) -> Result<usize, PrimeError> {
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

/// Builds the tree beside DIR, then renames it onto DIR (or swaps it with the old one).
fn build_and_rename(
    plan: &Plan,
    req: &Request,
    state: &DirState,
) -> Result<(TreeReport, Placement), PrimeError> {
    let mut tmp_name = tmp_prefix(plan);
    tmp_name.push(std::process::id().to_string());
    let tmp = plan.parent.join(&tmp_name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(failed(format!("creating {}", tmp.display())))?;
    let result = (|| {
        let tree = fill(plan, req, &tmp)?;
        finish_root(plan, req, &tmp, true)?;
        if tree.unsynced_copies > 0 {
            sync_fs(&tmp)?;
        }
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
        Ok(tree)
    })();
    // On success `tmp` holds the old tree (after a swap) or nothing at all.
    if tmp.symlink_metadata().is_ok()
        && let Err(e) = remove_tree_at(&plan.parent, &tmp_name)
    {
        tracing::warn!("{e}; the next prime removes it");
    }
    result.map(|tree| (tree, Placement::Renamed))
}

/// Exchanges the new tree with the old prime in one step; where the filesystem cannot
/// exchange, moves the old one aside first (DIR is briefly missing, never half-made).
fn swap(parent: BorrowedFd<'_>, tmp: &OsStr, name: &OsStr) -> Result<(), PrimeError> {
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

/// Copies the seed into `dst` and writes the manifest and the marker into it.
fn fill(plan: &Plan, req: &Request, dst: &Path) -> Result<TreeReport, PrimeError> {
    let progress = Progress::new(&plan.seed);
    let skip_top = |name: &OsStr| name.as_bytes().starts_with(b".pexinit");
    let tick = || progress.tick();
    let tree = tree::copy_tree(&TreeRequest {
        src: &plan.seed,
        dst,
        mode: req.mode,
        owner: req.owner,
        relocation: plan.relocation.as_ref(),
        skip_top: &skip_top,
        tick: &tick,
    });
    progress.finish();
    let tree = tree.map_err(|e| match e {
        TreeError::Impossible(message) => PrimeError::BadInput(message),
        TreeError::Io { path, message } => {
            PrimeError::Failed(format!("{}: {message}", path.display()))
        }
    })?;
    Ok(tree)
}

/// The manifest (naming DIR), then ownership, mode and mtime of the root, then (last)
/// the marker. `whole`: the root is ours (renamed into place) and takes the seed's mode.
fn finish_root(plan: &Plan, req: &Request, root: &Path, whole: bool) -> Result<(), PrimeError> {
    let mut manifest = plan.manifest.clone();
    manifest.pex_root = plan.into.clone();
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
    let mut marker = serde_json::to_vec_pretty(&plan.marker).expect("marker serializes");
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
fn write_owned(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    req: &Request,
    seed_root: &fs::Metadata,
) -> Result<(), PrimeError> {
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
    let file = openat(
        dir_fd.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
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

/// DIR is a mount point: build inside it, then move the top-level directories in.
fn fill_mount_point(plan: &Plan, req: &Request) -> Result<TreeReport, PrimeError> {
    let tmp = plan.into.join(MOUNT_TMP);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(failed(format!("creating {}", tmp.display())))?;
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
        finish_root(plan, req, &tmp, false)?;
        if tree.unsynced_copies > 0 {
            sync_fs(&tmp)?;
        }
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
        Ok(tree)
    })();
    if let Err(e) = remove_tree_at(&plan.into, OsStr::new(MOUNT_TMP)) {
        tracing::warn!("{e}; the next prime removes it");
    }
    result
}

/// pex's links point from `unzipped_pexes` and `venvs` into the other top-level
/// directories, and from `venvs` into `unzipped_pexes` (pex ≥ 2.27 venvs link their
/// `PEX-INFO` there): targets move in first.
fn move_rank(name: &OsStr) -> u8 {
    match name.as_bytes() {
        b"unzipped_pexes" => 1,
        b"venvs" => 2,
        _ => 0,
    }
}

fn list_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut buf = vec![0u8; 32 * 1024];
    Ok(read_dir(fd.as_fd(), &mut buf)?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// Flushes the filesystem holding `path`: every file of the tree reaches the disk before
/// the rename that makes it visible (one call instead of an fsync per file).
fn sync_fs(path: &Path) -> Result<(), PrimeError> {
    let fd = open_dir(nix::fcntl::AT_FDCWD, path).map_err(nix_failed(path.display()))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(failed(format!("syncfs {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn fsync_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(fd).map_err(io::Error::from)
}

/// Removes `dir/name` and everything below it without following links; directories a
/// seed made read-only are made writable first.
fn remove_tree_at(dir: &Path, name: &OsStr) -> Result<(), PrimeError> {
    let parent = open_dir(nix::fcntl::AT_FDCWD, dir).map_err(nix_failed(dir.display()))?;
    let mut buf = vec![0u8; 32 * 1024];
    remove_entry(parent.as_fd(), name, &mut buf)
        .map_err(|e| PrimeError::Failed(format!("removing {}: {e}", dir.join(name).display())))
}

fn remove_entry(parent: BorrowedFd<'_>, name: &OsStr, buf: &mut Vec<u8>) -> io::Result<()> {
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

/// A bar on a terminal, counting entries; nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(seed: &Path) -> Progress {
        if !io::stderr().is_terminal() {
            return Progress(None);
        }
        let total = count_entries(seed).unwrap_or(0);
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "priming [{elapsed}] {bar:30} {pos}/{len} entries",
        ) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn tick(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Entries below `root` (d_type only: no stat per file).
fn count_entries(root: &Path) -> io::Result<u64> {
    fn count(dir: OwnedFd, buf: &mut Vec<u8>) -> io::Result<u64> {
        let mut n = 0;
        for (name, kind) in read_dir(dir.as_fd(), buf)? {
            n += 1;
            if kind == FileKind::Directory {
                n += count(open_dir(dir.as_fd(), name.as_os_str())?, buf)?;
            }
        }
        Ok(n)
    }
    let mut buf = vec![0u8; 32 * 1024];
    count(open_dir(nix::fcntl::AT_FDCWD, root)?, &mut buf)
}
