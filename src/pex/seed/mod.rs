//! `pexinit seed`: warm a PEX_ROOT at image build time, exactly as the runtime will use
//! it, and make it reproducible and usable by the runtime user.
//!
//! For each PEX (zipapp, `--venv`, packed, loose; any pex version) the seed:
//! 1. runs `PEX_ROOT=DIR PEX_INTERPRETER=1 [PEX_VENV=1] python APP -c ...` with the
//!    runtime interpreter (its realpath is part of pex's venv hash). This is pex's own
//!    `--seed` procedure minus running the entry point: it unzips, installs wheels and
//!    builds the venv.
//! 2. clamps every mtime to SOURCE_DATE_EPOCH, then `python -m compileall -f` with
//!    PYTHONHASHSEED=0, so every module has a `.pyc` whose header records the clamped
//!    source mtime: imports are warm (Python validates by mtime and size) and the bytes
//!    are the same on every build; the scripts the fast path starts (venv scripts,
//!    launchers) get checked-hash bytecode of their own ([`bytecode`]);
//! 3. verifies: a second warm-up creates nothing new, and the repair scan
//!    ([`crate::pex::repair::plan`]) finds no poisoned, broken or suspicious link;
//! 4. writes the manifest ([`crate::pex::manifest`]) atomically;
//! 5. sets ownership and modes for the runtime user (default: the OpenShift convention,
//!    group 0 with group permissions equal to the user's), then clamps mtimes again.
//!
//! Before step 1 it marks DIR unfinished, and removes the mark after step 5: a seed that
//! was killed or ran out of space is recognized and started again by the next (see
//! [`state`]).
//!
//! [`plan`] is pure (reads only) and printable; [`apply`] carries it out.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, fstat, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{AccessFlags, Gid, Uid, faccessat, fchownat};
use serde::Serialize;

use crate::epoch::DEFAULT_SOURCE_DATE_EPOCH;
use crate::fs::dir::{self, FileKind, open_dir, open_dir_following, read_dir};
use crate::identity::Identity;
use crate::paths::{find_executable, resolve_physical};
use crate::pex::info::{self, Layout, Pex};
use crate::pex::manifest::{
    self, Entry, MANIFEST_NAME, Manifest, Ownership, RunMode, RuntimeInfo, VenvEntry,
};
use crate::pex::repair;
use crate::progress::Bar;

mod bytecode;
mod launch;
mod slim;
mod state;

use launch::Captured;
pub use launch::{LAUNCH_DIR, SEED_DIR};
pub use state::{DirState, UNFINISHED_NAME};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NoInterpreter(String),
    #[error("{0}")]
    WarmFailed(String),
    #[error("{0}")]
    VerifyFailed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// `seed`'s own errors, each with its documented status: bad input 125, no interpreter
/// 127, warm-up failed 1, verification failed 2. (Here, not in `error.rs`: the error
/// type knows no domain module.)
impl From<SeedError> for crate::error::Error {
    fn from(e: SeedError) -> Self {
        use crate::error::Error;
        match e {
            SeedError::BadInput(message) => Error::Usage(message),
            SeedError::NoInterpreter(message) => Error::NotFound(message),
            SeedError::WarmFailed(message) => Error::Failed(message),
            SeedError::VerifyFailed(message) => Error::Unverified(message),
            SeedError::Io { context, source } => Error::failed(context, source),
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SeedError {
    let context = context.into();
    move |source| SeedError::Io { context, source }
}

/// One PEX to seed.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    /// Config `venv: true`: warm a zipapp built with `--include-tools` in venv mode.
    pub venv: bool,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub pex_root: PathBuf,
    pub python: Option<PathBuf>,
    /// `--runtime-user UID[:GID]`; None: the OpenShift convention.
    pub runtime_user: Option<(u32, Option<u32>)>,
    pub targets: Vec<Target>,
    /// `--slim`: keep only what the fast path reads (see [`slim`]).
    pub slim: bool,
    /// From SOURCE_DATE_EPOCH; None: [`DEFAULT_SOURCE_DATE_EPOCH`].
    pub source_date_epoch: Option<i64>,
    /// PATH for the children (pex's bootstrap runs `uname` and friends).
    pub path_var: OsString,
}

/// One PEX in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub pex: PathBuf,
    pub layout: Layout,
    pub pex_hash: String,
    pub pex_version: Option<String>,
    pub mode: RunMode,
    /// The warm-up command (for people reading the plan).
    pub warm: String,
    /// A loose PEX keeps its bytecode next to its sources: compiled there too.
    pub compile_in_place: Option<PathBuf>,
    #[serde(skip)]
    opened: Pex,
}

/// What `seed` will do: computed by reading only.
#[derive(Debug, Clone, Serialize)]
pub struct SeedPlan {
    pub pex_root: PathBuf,
    /// The interpreter as named, and its realpath (what pex hashes).
    pub python: PathBuf,
    pub python_realpath: PathBuf,
    pub source_date_epoch: i64,
    pub ownership: Ownership,
    /// DIR already holds a seed: entries are added (pex reuses what exists).
    pub reseed: bool,
    /// Only what the fast path reads is kept (see [`slim`]).
    pub slim: bool,
    /// What DIR holds now (read again under the seed's lock when it is applied).
    pub dir_state: DirState,
    pub items: Vec<Item>,
    pub compileall: String,
    #[serde(skip)]
    path_var: OsString,
}

impl SeedPlan {
    /// The plan as text, one line per step.
    pub fn text(&self) -> String {
        let mut out = format!(
            "seed {} with {} (realpath {}), mtimes {}\n",
            self.pex_root.display(),
            self.python.display(),
            self.python_realpath.display(),
            self.source_date_epoch
        );
        match self.dir_state {
            DirState::New => {}
            DirState::Seed => out.push_str("  add to the seed already there\n"),
            DirState::Unfinished => out.push_str(
                "  remove what an unfinished seed left (it was killed or failed), then seed anew\n",
            ),
            DirState::InterruptedReseed => out.push_str(
                "  add to the seed already there (an earlier re-seed did not finish: its temporary files are removed)\n",
            ),
        }
        for item in &self.items {
            out.push_str(&format!(
                "  warm {} ({:?}, pex {}, {:?}): {}\n",
                item.pex.display(),
                item.layout,
                item.pex_version.as_deref().unwrap_or("?"),
                item.mode,
                item.warm
            ));
        }
        out.push_str(&format!("  compile: {}\n", self.compileall));
        if self.slim {
            out.push_str("  slim: remove bootstraps/, isolated/, interpreters/ (fast path only)\n");
        }
        out.push_str(&format!(
            "  verify: second warm-up creates nothing; repair scan clean\n  write {}\n  ownership: {}\n",
            self.pex_root.join(MANIFEST_NAME).display(),
            match (self.ownership.uid, self.ownership.group_like_user) {
                (Some(uid), _) => format!("uid {uid} gid {}", self.ownership.gid),
                (None, true) => format!("group {} with group permissions = user permissions", self.ownership.gid),
                (None, false) => format!("group {}", self.ownership.gid),
            }
        ));
        out
    }
}

/// Plans a seed. Reads PEX-INFO of every target and checks DIR; writes nothing.
pub fn plan(req: &Request) -> Result<SeedPlan, SeedError> {
    if req.targets.is_empty() {
        return Err(SeedError::BadInput(
            "no PEX given; usage: pexinit seed --pex-root DIR APP.pex...".into(),
        ));
    }
    let root = std::path::absolute(&req.pex_root).map_err(io_err("the working directory"))?;
    let resolved = resolve_physical(&root)
        .map_err(|e| SeedError::BadInput(format!("--pex-root {}: {e}", root.display())))?;
    let pex_root = resolved.physical;
    let dir_state = if resolved.exists {
        let meta = fs::metadata(&pex_root).map_err(io_err(pex_root.display().to_string()))?;
        if !meta.is_dir() {
            return Err(SeedError::BadInput(format!(
                "--pex-root {} is not a directory; name a new or empty directory",
                pex_root.display()
            )));
        }
        writable(&pex_root, &pex_root)?;
        let dir = open_dir(nix::fcntl::AT_FDCWD, &pex_root)
            .map_err(|e| io_err(pex_root.display().to_string())(e.into()))?;
        let Ok(state) =
            state::state_of(dir.as_fd()).map_err(io_err(pex_root.display().to_string()))?
        else {
            return Err(foreign(&pex_root));
        };
        if state.has_manifest() && !req.slim && manifest::read(&pex_root).is_ok_and(|m| m.slim) {
            return Err(SeedError::BadInput(format!(
                "--pex-root {} holds a slim seed (no pex runtime): add --slim, or seed into a new directory",
                pex_root.display()
            )));
        }
        state
    } else {
        writable(&pex_root, &resolved.existing_ancestor)?;
        DirState::New
    };

    let mut opened = Vec::new();
    for target in &req.targets {
        let path = std::path::absolute(&target.path).map_err(io_err("the working directory"))?;
        let pex = info::open(&path).map_err(|e| {
            SeedError::BadInput(format!(
                "{} {e}; name a PEX file or directory",
                path.display()
            ))
        })?;
        opened.push((pex, target.venv));
    }
    let python = match &req.python {
        Some(p) => p.clone(),
        None => match &opened[0].0.shebang {
            Some(s) => PathBuf::from(&s.program),
            None => {
                return Err(SeedError::NoInterpreter(format!(
                    "{} has no #! line naming its interpreter; pass --python PATH",
                    opened[0].0.path.display()
                )));
            }
        },
    };
    // The seeding user's lookup (root in a Dockerfile RUN): the runtime user's is run's.
    let python_found = find_executable(python.as_os_str(), &req.path_var, &Identity::current())
        .ok()
        .ok_or_else(|| {
            SeedError::NoInterpreter(format!(
                "interpreter {} not found; install it or pass --python PATH",
                python.display()
            ))
        })?;
    let python_realpath = fs::canonicalize(&python_found).map_err(|e| {
        SeedError::NoInterpreter(format!(
            "interpreter {}: {e}; pass --python PATH",
            python.display()
        ))
    })?;

    let mut items = Vec::new();
    for (pex, venv_wanted) in opened {
        let runtime = RuntimeInfo::read(&pex)
            .map_err(|e| SeedError::BadInput(format!("{}: PEX-INFO: {e}", pex.path.display())))?;
        let pex_hash = pex.info.pex_hash.clone().ok_or_else(|| {
            SeedError::BadInput(format!(
                "{}: PEX-INFO has no pex_hash; rebuild it with pex",
                pex.path.display()
            ))
        })?;
        let mode = if pex.info.venv {
            RunMode::Venv
        } else if venv_wanted {
            if !runtime.includes_tools {
                return Err(SeedError::BadInput(format!(
                    "{}: `venv: true` needs a PEX built with `pex --include-tools` (or `--venv`); rebuild it or drop `venv: true`",
                    pex.path.display()
                )));
            }
            RunMode::VenvByEnv
        } else {
            RunMode::Zipapp
        };
        let compile_in_place = (pex.layout == Layout::Loose).then(|| pex.path.clone());
        items.push(Item {
            warm: format!(
                "PEX_ROOT={} PEX_INTERPRETER=1{} {} {} -c 'import sys; print(sys.prefix)'",
                pex_root.display(),
                if mode == RunMode::VenvByEnv {
                    " PEX_VENV=1"
                } else {
                    ""
                },
                python_found.display(),
                pex.path.display()
            ),
            pex: pex.path.clone(),
            layout: pex.layout,
            pex_hash,
            pex_version: pex.info.build_properties.pex_version.clone(),
            mode,
            compile_in_place,
            opened: pex,
        });
    }
    let ownership = match req.runtime_user {
        Some((uid, gid)) => Ownership {
            uid: Some(uid),
            gid: gid.unwrap_or(0),
            group_like_user: true,
        },
        None => Ownership {
            uid: None,
            gid: 0,
            group_like_user: true,
        },
    };
    Ok(SeedPlan {
        compileall: format!(
            "touch -d @{sde} (all files); PYTHONHASHSEED=0 {} -m compileall -q -f {}",
            python_found.display(),
            pex_root.display(),
            sde = req.source_date_epoch.unwrap_or(DEFAULT_SOURCE_DATE_EPOCH)
        ),
        pex_root,
        python: python_found,
        python_realpath,
        source_date_epoch: req.source_date_epoch.unwrap_or(DEFAULT_SOURCE_DATE_EPOCH),
        ownership,
        reseed: dir_state.has_manifest(),
        slim: req.slim,
        dir_state,
        items,
        path_var: req.path_var.clone(),
    })
}

/// A directory that is neither empty nor a seed: someone else's.
fn foreign(pex_root: &Path) -> SeedError {
    SeedError::BadInput(format!(
        "--pex-root {} is not empty and holds no pexinit seed; seed into a new or empty directory",
        pex_root.display()
    ))
}

/// Refuses a DIR this process cannot write (`at` is DIR, or the deepest existing
/// directory above a DIR still to be made): the kernel decides, so read-only mounts,
/// modes, ACLs and capabilities all count.
fn writable(pex_root: &Path, at: &Path) -> Result<(), SeedError> {
    match faccessat(
        nix::fcntl::AT_FDCWD,
        at,
        AccessFlags::W_OK | AccessFlags::X_OK,
        AtFlags::AT_EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(errno) => Err(not_writable(
            pex_root,
            at == pex_root,
            errno,
            (at != pex_root).then_some(at),
        )),
    }
}

/// One line naming DIR, why it cannot be written, and the fix.
fn not_writable(pex_root: &Path, exists: bool, errno: Errno, parent: Option<&Path>) -> SeedError {
    use std::os::unix::fs::MetadataExt;
    let at = parent.unwrap_or(pex_root);
    let (why, fix) = match errno {
        Errno::EROFS => (
            "read-only file system".to_owned(),
            "seed into a directory on a writable file system",
        ),
        Errno::EACCES | Errno::EPERM => (
            match fs::metadata(at) {
                Ok(meta) => format!(
                    "permission denied ({} is owned by uid {} gid {}, mode {:04o})",
                    at.display(),
                    meta.uid(),
                    meta.gid(),
                    meta.mode() & 0o7777
                ),
                Err(_) => "permission denied".to_owned(),
            },
            "seed into a directory you can write, or as a user who can write it (root in a Dockerfile RUN)",
        ),
        other => (
            io::Error::from(other).to_string(),
            "seed into a writable directory",
        ),
    };
    let what = match (exists, parent) {
        (false, Some(parent)) => format!(
            "cannot create --pex-root {} in {}",
            pex_root.display(),
            parent.display()
        ),
        _ => format!("cannot write to --pex-root {}", pex_root.display()),
    };
    SeedError::BadInput(format!("{what}: {why}; {fix}"))
}

/// What a finished seed holds.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub manifest: Manifest,
    pub files: usize,
    pub bytes: u64,
    /// compileall reported files it could not compile (they would not import either).
    pub compile_warnings: Option<String>,
}

/// Carries out a seed plan.
pub fn apply(plan: &SeedPlan) -> Result<SeedReport, SeedError> {
    let steps = plan.items.len() as u64 * 2 + 4;
    let progress = Bar::new(|| steps, "{spinner} [{elapsed}] {bar:30} {pos}/{len} {msg}")
        .ticking(std::time::Duration::from_millis(200));
    let result = apply_with(plan, &progress);
    progress.finish();
    result
}

fn apply_with(plan: &SeedPlan, progress: &Bar) -> Result<SeedReport, SeedError> {
    let root = &plan.pex_root;
    fs::create_dir_all(root).map_err(|e| match e.raw_os_error().map(Errno::from_raw) {
        Some(errno @ (Errno::EROFS | Errno::EACCES | Errno::EPERM)) => {
            not_writable(root, false, errno, None)
        }
        _ => io_err(format!("creating {}", root.display()))(e),
    })?;
    let dir = state::Locked::open(root)?;
    let Ok(dir_state) = state::state_of(dir.fd()).map_err(io_err(root.display().to_string()))?
    else {
        return Err(foreign(root));
    };
    match dir_state {
        DirState::Unfinished => {
            let removed = state::clear_unfinished(dir.fd(), root)?;
            tracing::info!(
                "{}: removed {removed} name(s) an unfinished seed left; seeding anew",
                root.display()
            );
        }
        DirState::InterruptedReseed => {
            let removed = state::remove_leftovers(root)?;
            tracing::info!(
                "{}: an earlier re-seed did not finish; removed {removed} temporary file(s) it left",
                root.display()
            );
        }
        DirState::New | DirState::Seed => {}
    }
    // Before anything else is written into DIR.
    state::mark_unfinished(root)?;
    let scratch = Scratch::new()?;
    let mut warmed = Vec::new();
    for item in &plan.items {
        progress.step(format!("warming {}", item.pex.display()));
        let prefix = warm(plan, item, &scratch.path)?;
        let captured = match item.mode.is_venv() {
            // A venv PEX is started by exec'ing its venv: nothing to record.
            true => None,
            false => Some(capture_launcher(plan, item, &scratch.path)?),
        };
        warmed.push((item, prefix, captured));
    }

    progress.step("compiling bytecode".into());
    let sde = plan.source_date_epoch;
    clamp_tree(root, sde)?;
    let mut compile_warnings = compile(plan, &scratch.path, root, true)?;
    for item in &plan.items {
        if let Some(dir) = &item.compile_in_place {
            // Best effort: a read-only loose PEX simply stays as it was built.
            if let Some(w) = compile(plan, &scratch.path, dir, false)? {
                compile_warnings.get_or_insert(w);
            }
        }
    }
    // The scripts the fast path starts (each venv's `pex` script, each launcher), which
    // Python would compile on every start.
    let scripts: Vec<PathBuf> = warmed
        .iter()
        .filter_map(
            |(item, prefix, captured)| match (item.mode.is_venv(), captured) {
                (true, _) => Some(fs::canonicalize(prefix.as_deref()?).ok()?.join("pex")),
                (false, Some(Captured::Launcher(launcher))) => Some(root.join(&launcher.file)),
                (false, _) => None,
            },
        )
        .collect();
    let bytecode_launcher = bytecode::compile(child(plan, &scratch.path), root, &scripts)?;
    clamp_tree(root, sde)?;

    progress.step("verifying".into());
    let before = snapshot(root)?;
    for item in &plan.items {
        warm(plan, item, &scratch.path)?;
        progress.step(format!("re-warming {}", item.pex.display()));
    }
    let after = snapshot(root)?;
    let new: Vec<&String> = after.difference(&before).collect();
    if !new.is_empty() {
        return Err(SeedError::VerifyFailed(format!(
            "a second warm-up created {} new file(s) in {} (first: {}); the seed would not be warm — please report this with the pex version",
            new.len(),
            root.display(),
            new[0]
        )));
    }

    progress.step("writing the manifest".into());
    let mut entries: Vec<Entry> = match dir_state.has_manifest() {
        true => manifest::read(root).map(|m| m.entries).unwrap_or_default(),
        false => Vec::new(),
    };
    for (item, prefix, captured) in warmed {
        let entry = entry_for(plan, item, prefix.as_deref(), captured)?;
        entries.retain(|e| (&e.pex_hash, e.layout) != (&entry.pex_hash, entry.layout));
        entries.push(entry);
    }
    entries.sort_by(|a, b| (&a.pex_hash, a.layout).cmp(&(&b.pex_hash, b.layout)));
    if plan.slim {
        if let Some(why) = entries.iter().find_map(slim::refusal) {
            return Err(SeedError::BadInput(why));
        }
        slim::strip(root, &entries)?;
    }
    // After `--slim` removed what only pex's bootstrap reads: nothing may point at it.
    verify_links(root)?;
    let manifest = Manifest {
        unflushed_boot_id: None,
        slim: plan.slim,
        format: match plan.slim {
            true => manifest::FORMAT,
            false => manifest::FORMAT_FULL,
        },
        pex_root: root.clone(),
        python: plan.python_realpath.clone(),
        source_date_epoch: sde,
        ownership: plan.ownership.clone(),
        bytecode_launcher,
        entries,
    };
    manifest::write(root, &manifest).map_err(io_err(format!(
        "writing {}",
        root.join(MANIFEST_NAME).display()
    )))?;

    progress.step("ownership and modes".into());
    let stats = fix_tree(root, &plan.ownership, sde)?;
    // Last: the seed is finished. Removing the mark changed DIR's mtime: clamped again.
    state::mark_finished(dir.fd(), root)?;
    let t = TimeSpec::new(sde, 0);
    futimens(dir.fd(), &t, &t).map_err(|e| io_err(root.display().to_string())(e.into()))?;
    Ok(SeedReport {
        manifest,
        files: stats.0,
        bytes: stats.1,
        compile_warnings,
    })
}

/// The repair scan finds no poisoned, broken or suspicious link in the seed.
fn verify_links(root: &Path) -> Result<(), SeedError> {
    let scan = repair::plan(root).map_err(|e| SeedError::VerifyFailed(e.to_string()))?;
    if scan.has_work() || scan.has_suspicious() {
        return Err(SeedError::VerifyFailed(format!(
            "{} has {} poisoned link(s), {} broken entrie(s), {} suspicious link(s); run `pexinit repair --dry-run {}` to see them",
            root.display(),
            scan.poisoned_links(),
            scan.quarantine.len(),
            scan.suspicious.len() + scan.problems.len(),
            root.display()
        )));
    }
    Ok(())
}

/// A private scratch HOME/TMPDIR for the warm-up, removed afterwards: the warm-up must
/// not depend on (or write to) the builder's HOME, which may be a symlink (pex#2572).
/// It is locked (`flock`) while in use, so the scratch directory of a killed seed, which
/// nothing else would remove, is told from a live one and removed by the next seed.
struct Scratch {
    path: PathBuf,
    _lock: Flock<OwnedFd>,
}

/// Scratch directories are `pexinit-seed-<pid>-<n>` in TMPDIR.
const SCRATCH_PREFIX: &str = "pexinit-seed-";

impl Scratch {
    fn new() -> Result<Scratch, SeedError> {
        let base = std::env::temp_dir();
        remove_stale_scratch(&base);
        for n in 0..100 {
            let dir = base.join(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode_private().create(&dir) {
                Ok(()) => {
                    let dir = fs::canonicalize(&dir).map_err(io_err(dir.display().to_string()))?;
                    let fd = open_dir(nix::fcntl::AT_FDCWD, &dir)
                        .map_err(|e| io_err(dir.display().to_string())(e.into()))?;
                    let lock = Flock::lock(fd, FlockArg::LockExclusiveNonblock)
                        .map_err(|(_, e)| io_err(format!("locking {}", dir.display()))(e.into()))?;
                    return Ok(Scratch {
                        path: dir,
                        _lock: lock,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
            }
        }
        Err(SeedError::BadInput(format!(
            "cannot create a scratch directory in {}; set TMPDIR to a writable directory",
            base.display()
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the scratch directories killed seeds left in `base`: ours (same owner), of a
/// process that no longer exists, and not locked by a live seed (in another pid
/// namespace, say). Best effort: anything unclear is left alone.
fn remove_stale_scratch(base: &Path) {
    let Ok(base) = fs::canonicalize(base) else {
        return;
    };
    let Ok(base_fd) = open_dir(nix::fcntl::AT_FDCWD, &base) else {
        return;
    };
    let mut buf = vec![0u8; dir::LIST_BUFFER];
    let Ok(names) = read_dir(base_fd.as_fd(), &mut buf) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for (name, kind) in names {
        let Some(pid) = name
            .as_bytes()
            .strip_prefix(SCRATCH_PREFIX.as_bytes())
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<i32>().ok()))
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        if kind != FileKind::Directory || !crate::fs::atomic::process_gone(pid) {
            continue;
        }
        let Ok(fd) = open_dir(base_fd.as_fd(), name.as_os_str()) else {
            continue;
        };
        if fstat(fd.as_fd()).map_or(true, |st| st.st_uid != me) {
            continue;
        }
        // Held by a live seed: not stale.
        let Ok(_locked) = Flock::lock(fd, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let _ = dir::remove_tree(base_fd.as_fd(), &name, &mut buf);
    }
}

trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// A child with exactly the environment the seed controls: nothing of the builder's
/// environment leaks into pex's choices (PEX_PYTHON, PEX_PATH…) or into the bytes.
///
/// The child is killed when this process dies (`PR_SET_PDEATHSIG`): a seed killed with
/// `kill -9` leaves no pex still writing into DIR while the next seed clears it.
fn child(plan: &SeedPlan, scratch: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&plan.python);
    cmd.env_clear()
        .env("PATH", &plan.path_var)
        .env("HOME", scratch)
        .env("TMPDIR", scratch)
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::null());
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the request took effect: no signal will come.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd
}

/// Records how pex starts a zipapp, packed or loose PEX (see [`launch`]).
fn capture_launcher(plan: &SeedPlan, item: &Item, scratch: &Path) -> Result<Captured, SeedError> {
    let runtime = RuntimeInfo::read(&item.opened)
        .map_err(io_err(format!("{}: PEX-INFO", item.pex.display())))?;
    let mut cmd = child(plan, scratch);
    cmd.env("PEX_ROOT", &plan.pex_root);
    launch::capture(cmd, &plan.pex_root, item, &runtime, scratch)
}

/// Runs the warm-up; returns the last stdout line (sys.prefix) for venv modes.
fn warm(plan: &SeedPlan, item: &Item, scratch: &Path) -> Result<Option<String>, SeedError> {
    let mut cmd = child(plan, scratch);
    cmd.env("PEX_ROOT", &plan.pex_root)
        .env("PEX_INTERPRETER", "1")
        .arg(&item.pex)
        .args(["-c", "import sys; print(sys.prefix)"]);
    if item.mode == RunMode::VenvByEnv {
        cmd.env("PEX_VENV", "1");
    }
    let out = cmd
        .output()
        .map_err(io_err(format!("starting {}", plan.python.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(SeedError::WarmFailed(format!(
            "warming {} failed ({}): {}",
            item.pex.display(),
            out.status,
            last.trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().last().map(str::to_owned))
}

/// `python -m compileall -q -f DIR`: timestamps are validated by source mtime and size,
/// so compiling after clamping mtimes gives `.pyc` files that are both warm and
/// reproducible. Returns compileall's complaint, if any.
fn compile(
    plan: &SeedPlan,
    scratch: &Path,
    dir: &Path,
    force: bool,
) -> Result<Option<String>, SeedError> {
    let mut cmd = child(plan, scratch);
    cmd.args(["-m", "compileall", "-q"]);
    if force {
        cmd.arg("-f");
    }
    // Launchers, and the `__main__.py` at the top of each venv, only ever run as
    // `__main__`, which Python never loads from bytecode: compileall's timestamped .pyc
    // of them would be dead bytes in every image. `bytecode::compile` gives them (the
    // venv's under its `pex` name) the checked-hash bytecode the fast path starts them
    // from. (pex itself writes a .pyc for each unzipped PEX's `__main__.py`, with the
    // mtime it saw: `-f` rewrites it from the clamped source, so its bytes are
    // reproducible; `--slim` removes it.)
    cmd.args([
        "-x",
        r"/\.pexinit/|/venvs/([0-9]+/)?[0-9a-f]+/[0-9a-f]+/__main__\.py$",
    ]);
    let out = cmd.arg(dir).output().map_err(io_err(format!(
        "starting {} -m compileall",
        plan.python.display()
    )))?;
    if out.status.success() {
        return Ok(None);
    }
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(Some(format!(
        "compileall could not compile some files under {} (they would fail to import too): {}",
        dir.display(),
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    )))
}

fn entry_for(
    plan: &SeedPlan,
    item: &Item,
    prefix: Option<&str>,
    captured: Option<Captured>,
) -> Result<Entry, SeedError> {
    let root = &plan.pex_root;
    let pex = &item.opened;
    let runtime =
        RuntimeInfo::read(pex).map_err(io_err(format!("{}: PEX-INFO", pex.path.display())))?;
    let (sha256, digest_of) =
        manifest::pex_digest(pex).map_err(io_err(format!("hashing {}", pex.path.display())))?;
    let unzipped = find_unzipped(root, &item.pex_hash);
    let venv = if item.mode.is_venv() {
        let prefix = prefix.ok_or_else(|| {
            SeedError::WarmFailed(format!(
                "warming {} printed no sys.prefix",
                pex.path.display()
            ))
        })?;
        let real = fs::canonicalize(prefix).map_err(io_err(format!("resolving {prefix}")))?;
        let dir = real
            .strip_prefix(root)
            .map_err(|_| {
                SeedError::WarmFailed(format!(
                    "pex put the venv of {} at {} (outside {}); is PEX_ROOT overridden by a pexrc?",
                    pex.path.display(),
                    real.display(),
                    root.display()
                ))
            })?
            .to_path_buf();
        let main_py = fs::read(real.join("__main__.py")).unwrap_or_default();
        let pex_main = manifest::read_member(pex, "__main__.py")
            .map_err(io_err(format!("{}: __main__.py", pex.path.display())))?;
        Some(VenvEntry {
            dir,
            exec_style: manifest::exec_style(&pex_main),
            hermetic: runtime.venv_hermetic_scripts,
            last_access_env: manifest::contains(&main_py, b"_PEX_CACHE_SET_LAST_ACCESS"),
        })
    } else {
        None
    };
    Ok(Entry {
        // The name only: where the seed was built must not change its bytes.
        pex: pex.path.file_name().map(PathBuf::from).unwrap_or_default(),
        sha256,
        digest_of,
        pex_hash: item.pex_hash.clone(),
        pex_version: item.pex_version.clone(),
        layout: item.layout.into(),
        mode: item.mode,
        inject_python_args: runtime.inject_python_args,
        unzipped,
        venv,
        launcher: match &captured {
            Some(Captured::Launcher(launcher)) => Some(launcher.clone()),
            _ => None,
        },
        no_launcher: match captured {
            Some(Captured::NotReplayable(why)) => Some(why),
            _ => None,
        },
    })
}

/// `unzipped_pexes/<N>/<pex hash>`, whichever cache version N this pex uses, or
/// `unzipped_pexes/<pex hash>` (pex ≤ 2.17 had no version level).
fn find_unzipped(root: &Path, pex_hash: &str) -> Option<PathBuf> {
    let top = Path::new("unzipped_pexes");
    let mut versions: Vec<_> = fs::read_dir(root.join(top))
        .ok()?
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| crate::pex::cache::is_version_name(name))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .map(|v| top.join(v).join(pex_hash))
        .chain([top.join(pex_hash)])
        .find(|rel| root.join(rel).is_dir())
}

/// Every path below `root` except pex's lock and access files (and our manifest):
/// "the second warm-up created nothing" compares two of these.
fn snapshot(root: &Path) -> Result<BTreeSet<String>, SeedError> {
    let mut out = BTreeSet::new();
    walk(root, &mut |parent, name, kind, rel| {
        let _ = (parent, kind);
        let n = name.as_bytes();
        if !(n.ends_with(b".lck") || n == b".last-access" || n == MANIFEST_NAME.as_bytes()) {
            out.insert(rel.to_string_lossy().into_owned());
        }
        Ok(())
    })?;
    Ok(out)
}

/// Sets every mtime (and atime) below and at `root` to `sde`, links included.
fn clamp_tree(root: &Path, sde: i64) -> Result<(), SeedError> {
    let t = TimeSpec::new(sde, 0);
    walk(root, &mut |parent, name, _, _| {
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
    })?;
    utimensat(
        nix::fcntl::AT_FDCWD,
        root,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err(root.display().to_string())(e.into()))
}

/// Ownership, modes (g=u, o=u-w), then mtimes, for the whole tree; returns (files, bytes).
fn fix_tree(root: &Path, own: &Ownership, sde: i64) -> Result<(usize, u64), SeedError> {
    let (uid, gid) = (own.uid.map(Uid::from_raw), Some(Gid::from_raw(own.gid)));
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut fix = |parent: BorrowedFd<'_>, name: &OsStr, kind: FileKind| -> io::Result<()> {
        fchownat(parent, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| {
            io::Error::other(format!(
                "chown to {}:{} failed ({e}); run `pexinit seed` as root (a Dockerfile RUN is) or pass --runtime-user YOUR_UID",
                own.uid.map_or("-".into(), |u| u.to_string()),
                own.gid
            ))
        })?;
        if kind == FileKind::Symlink {
            return Ok(());
        }
        // Opened without following links, so the chmod lands on what we listed.
        let fd = match kind {
            FileKind::Directory => open_dir(parent, name)?,
            // Not only regular files: O_NONBLOCK opens a FIFO without waiting for a
            // writer.
            _ => openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?,
        };
        let st = fstat(fd.as_fd())?;
        if kind != FileKind::Directory {
            files += 1;
            bytes += st.st_size as u64;
        }
        if own.group_like_user {
            // Group as the user; others may read and search what the user can. Nothing
            // of the builder's umask is left in the modes (or in a layer's bytes).
            let mode = st.st_mode & 0o7777;
            let new = crate::fs::mode::from_user_bits(mode);
            if new != mode {
                fchmod(fd.as_fd(), Mode::from_bits_truncate(new))?;
            }
        }
        Ok(())
    };
    walk(root, &mut |parent, name, kind, _| fix(parent, name, kind))?;
    // The root itself.
    let root_parent = root.parent().unwrap_or(Path::new("/"));
    let parent_fd = open_dir_following(root_parent)
        .map_err(|e| io_err(root_parent.display().to_string())(e.into()))?;
    let name = root.file_name().unwrap_or(OsStr::new("."));
    fix(parent_fd.as_fd(), name, FileKind::Directory)
        .map_err(io_err(root.display().to_string()))?;
    clamp_tree(root, sde)?;
    Ok((files, bytes))
}

/// Walks below `root` with [`dir::walk`]: depth-first, in name order, never through a
/// link.
fn walk(root: &Path, f: &mut dir::WalkVisit<'_>) -> Result<(), SeedError> {
    let fd = open_dir(nix::fcntl::AT_FDCWD, root)
        .map_err(|e| io_err(root.display().to_string())(e.into()))?;
    dir::walk(fd, f)
        .map_err(|e| io_err(format!("walking {}", root.join(&e.rel).display()))(e.error))
}
