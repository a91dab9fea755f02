//! `run` with a seed: which seed, how it is used (directly, or through a link farm when
//! the runtime user cannot write it), and the fast path when the PEX matches.
//!
//! A seed never makes `run` fail: every reason not to use it (no manifest, another
//! interpreter, a moved seed without a writable build path) sends `run` down the normal
//! path, and `doctor` prints the reason.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Settings, Source};
use crate::identity::Identity;
use crate::paths::{dir_writable_by, resolve_physical};
use crate::pex::info::{self, Pex};
use crate::pex::manifest::{self, MANIFEST_NAME, Manifest};
use crate::pex::materialize::{self, FarmMarker, FarmPlan};
use crate::pex::prime;
use crate::run::command::CommandPlan;
use crate::run::fast_path::{self, FastPath};
use crate::run::plan::EnvPlan;

/// The seed `run` will use.
#[derive(Debug, Clone, Serialize)]
pub struct Seeded {
    pub seed: PathBuf,
    /// The seed directory's physical path: where its own files are read.
    #[serde(skip)]
    pub physical: PathBuf,
    #[serde(skip)]
    pub manifest: Manifest,
    #[serde(rename = "use")]
    pub used: SeedUse,
}

/// What `doctor` reports about seeds.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeedCheck {
    /// No seed configured and none at PEX_ROOT.
    None,
    /// A seed was named or found but cannot be used: the reason.
    Unusable { seed: PathBuf, reason: String },
    Used {
        #[serde(flatten)]
        seeded: Box<Seeded>,
        /// The exec that replaces pex's bootstrap, or why there is none.
        fast_path: Option<Result<FastPath, String>>,
    },
}

/// Finds the seed for this run: `--seed` / config `seed` / `PEXINIT_SEED`, else a
/// manifest at the planned PEX_ROOT. Err carries the reason a named seed is unusable.
pub fn find(
    settings: &Settings,
    plan: &EnvPlan,
    who: &Identity,
) -> Result<Option<Seeded>, (PathBuf, String)> {
    let seed = match &settings.seed {
        Some(seed) => seed.clone(),
        None => match plan.value("PEX_ROOT").map(PathBuf::from) {
            // Anything by that name makes PEX_ROOT a seed: one that is not a regular file
            // (a fifo, a link to a device) is then refused with its reason, never read.
            Some(root) if root.join(MANIFEST_NAME).symlink_metadata().is_ok() => root,
            _ => return Ok(None),
        },
    };
    let unusable = |reason: String| (seed.clone(), reason);
    let (manifest, manifest_bytes) =
        manifest::read_with_bytes(&seed).map_err(|e| unusable(e.to_string()))?;
    if let Some(boot) = &manifest.unflushed_boot_id
        && prime::may_have_lost_data(boot)
    {
        // Still used: pex would trust the entries anyway. Priming again is the fix.
        tracing::warn!(
            "{} was primed without a flush to disk, and this machine has restarted since: if it crashed, cached files may be empty; run `pexinit prime` into it again",
            seed.display()
        );
    }
    let tmp = plan
        .value("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let used = plan_use(&UseRequest {
        seed: &seed,
        manifest: &manifest,
        manifest_bytes: &manifest_bytes,
        who,
        tmp: &tmp,
    })
    .map_err(unusable)?;
    let physical = match &used {
        SeedUse::Direct { pex_root } => pex_root.clone(),
        SeedUse::Farm { farm, .. } => farm.seed.clone(),
    };
    Ok(Some(Seeded {
        seed,
        physical,
        manifest,
        used,
    }))
}

/// The seeded PEX that `program` names when its file is not here: the seed entries made
/// from a file of that name (one PEX, possibly in venv and zipapp modes alike). None when
/// the seed holds no such PEX; Err when it cannot be started without its file.
pub fn absent_pex(seeded: &Seeded, program: &OsStr) -> Option<Result<Pex, String>> {
    let name = Path::new(program).file_name()?;
    let mut entries = seeded.manifest.entries_named(name);
    let entry = entries.next()?;
    if let Some(other) = entries.find(|e| e.pex_hash != entry.pex_hash) {
        return Some(Err(format!(
            "the seed holds two PEX files named {} (pex_hash {} and {}); ship the file, or seed one of them",
            name.to_string_lossy(),
            entry.pex_hash,
            other.pex_hash
        )));
    }
    let info_dir = match (&entry.venv, &entry.unzipped) {
        (Some(venv), _) => &venv.dir,
        (None, Some(unzipped)) => unzipped,
        // A loose PEX is read in place: its directory is the app.
        (None, None) => {
            return Some(Err(format!(
                "the seed's {} is a loose PEX, read from its own directory; ship the directory",
                name.to_string_lossy()
            )));
        }
    };
    let path = std::path::absolute(program).unwrap_or_else(|_| PathBuf::from(program));
    let info_file = seeded.physical.join(info_dir).join(info::PEX_INFO);
    Some(
        info::from_seed(&path, entry.layout.into(), &info_file).map_err(|e| {
            format!(
                "the seed's PEX-INFO {} {e}; re-run `pexinit seed`",
                info_file.display()
            )
        }),
    )
}

/// Settings whose PEX_ROOT is the one the seed dictates (the seed, or its farm).
pub fn with_seed_root(settings: &Settings, seeded: &Seeded) -> Settings {
    let mut settings = settings.clone();
    settings.pex_root = Some((seeded.used.pex_root().to_path_buf(), Source::Flag));
    settings
}

/// The fast path for `command`, if it runs a PEX the seed holds a matching venv for.
pub fn fast_path(
    seeded: &Seeded,
    command: &CommandPlan,
    plan: &EnvPlan,
) -> Option<Result<FastPath, String>> {
    let pex = command.pex.as_ref()?;
    let (interpreter_args, args) = command.around_pex()?;
    let interpreter_args: Vec<String> = interpreter_args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Some(fast_path::plan(&fast_path::Request {
        manifest: &seeded.manifest,
        seed: &seeded.physical,
        pex_root: seeded.used.pex_root(),
        pex,
        interpreter: Path::new(&command.executable),
        interpreter_args: &interpreter_args,
        env: &plan.env,
        args,
    }))
}

/// Decides the fast path for `command` and applies it to `command` and `plan`, exactly
/// as `run` will: `run`, `env` and `doctor` all call this, so what they show is what
/// runs. A launcher reads the seed in place, so PEX_ROOT becomes the seed itself (no
/// link farm is needed or made).
pub fn choose(
    seeded: &Seeded,
    command: &mut CommandPlan,
    plan: &mut EnvPlan,
) -> Option<Result<FastPath, String>> {
    let fast = fast_path(seeded, command, plan)?;
    if let Ok(fast) = &fast {
        if !fast.needs_pex_root() {
            read_in_place(seeded, plan);
        }
        take_fast_path(fast, command, plan);
    }
    Some(fast)
}

/// When nothing but the fast path can start the PEX, its refusal is an error (one line,
/// naming the fix): the PEX file is not here, or the seed is slim (pex's bootstrap would
/// find none of its runtime in it).
pub fn require_fast_path(
    seeded: &Seeded,
    command: &CommandPlan,
    fast: Option<&Result<FastPath, String>>,
) -> Result<(), String> {
    let (Some(pex), Some(Err(why))) = (&command.pex, fast) else {
        return Ok(());
    };
    if pex.in_seed_only {
        return Err(format!(
            "cannot start {}: the file is not here and the seed {} cannot start it without it: {why}",
            pex.path.display(),
            seeded.seed.display()
        ));
    }
    if seeded.manifest.slim {
        return Err(format!(
            "cannot start {}: the seed {} is slim (no pex runtime for pex's bootstrap) and its fast path is refused: {why}; or seed without --slim",
            pex.path.display(),
            seeded.seed.display()
        ));
    }
    Ok(())
}

/// Refreshes the `.last-access` files of what a fast-path start uses, as pex's bootstrap
/// would, when the seed is used directly (the runtime user can write it). Best effort:
/// a start never fails for it.
pub fn record_access(seeded: &Seeded, fast: &FastPath) {
    if !matches!(seeded.used, SeedUse::Direct { .. }) {
        return;
    }
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    // pex ≥ 2.24 keeps a `.last-access` in each entry; older caches have none (ENOENT).
    for file in fast.entries.iter().map(|dir| dir.join(".last-access")) {
        if let Err(e) = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &file,
            &now,
            &now,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        ) {
            tracing::debug!("cannot refresh {}: {e}", file.display());
        }
    }
}

/// PEX_ROOT becomes the seed itself, and the link farm the plan would have created for
/// pex is not created: a launcher start writes nothing.
fn read_in_place(seeded: &Seeded, plan: &mut EnvPlan) {
    if let Some(farm) = plan.value("PEX_ROOT").map(PathBuf::from) {
        plan.mkdirs.retain(|mkdir| mkdir.path != farm);
    }
    plan.env.set("PEX_ROOT", &seeded.physical);
    if let Some(decision) = plan.decisions.iter_mut().find(|d| d.variable == "PEX_ROOT") {
        decision.value = Some(seeded.physical.clone().into_os_string());
        decision.note = Some("the seed itself, read in place by its launcher".to_owned());
    }
}

/// Whether `run` must prepare the seed's PEX_ROOT (a link farm for a read-only seed):
/// not when a launcher starts the app.
pub fn needs_seed_root(fast: Option<&Result<FastPath, String>>) -> bool {
    !matches!(fast, Some(Ok(fast)) if !fast.needs_pex_root())
}

/// `command` rewritten to exec the seeded venv, and `plan` given the variables pex's
/// bootstrap would have set.
fn take_fast_path(fast: &FastPath, command: &mut CommandPlan, plan: &mut EnvPlan) {
    command.executable = fast.executable.clone();
    command.argv_os = fast.argv_os.clone();
    command.argv = fast.argv.clone();
    command.interpreter_source = None;
    for (name, value) in &fast.env {
        plan.env.set(name, value);
    }
}

/// How `run` uses a seed for one PEX.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum SeedUse {
    /// The runtime user can write the seed: PEX_ROOT is the seed itself.
    Direct { pex_root: PathBuf },
    /// The seed is read-only for the runtime user, or sits elsewhere than the path it
    /// was built for: PEX_ROOT is a link farm of it (see [`materialize`]).
    Farm { pex_root: PathBuf, farm: FarmPlan },
}

impl SeedUse {
    /// The PEX_ROOT the program gets.
    pub fn pex_root(&self) -> &Path {
        match self {
            SeedUse::Direct { pex_root } | SeedUse::Farm { pex_root, .. } => pex_root,
        }
    }
}

/// Everything [`plan_use`] decides from.
pub struct UseRequest<'a> {
    /// The seed directory (`--seed`, config `seed`, `PEXINIT_SEED`, or PEX_ROOT).
    pub seed: &'a Path,
    pub manifest: &'a Manifest,
    /// The bytes `manifest` was parsed from: a farm records their digest.
    pub manifest_bytes: &'a [u8],
    pub who: &'a Identity,
    /// Where a private farm goes when the seed sits at its build path but is read-only
    /// (TMPDIR, else /tmp; physical).
    pub tmp: &'a Path,
}

/// Decides how a seed is used; the reason when it cannot be (then `run` takes the
/// normal path: never a failure).
pub fn plan_use(req: &UseRequest<'_>) -> Result<SeedUse, String> {
    let seed = resolve_physical(req.seed)
        .map_err(|e| format!("seed {}: {e}", req.seed.display()))?
        .physical;
    let built_at = &req.manifest.pex_root;
    if &seed == built_at {
        if seed_writable(&seed, req.who) {
            return Ok(SeedUse::Direct { pex_root: seed });
        }
        // Read-only seed at its own path: its absolute paths resolve as they are; pex
        // only needs a writable PEX_ROOT in front of it.
        let marker = FarmMarker::new(&seed, req.manifest_bytes);
        let name = format!("pex-root-{}", &marker.manifest_sha256[..16]);
        let into = req.tmp.join(format!("pexinit-{}", req.who.uid)).join(name);
        let farm = materialize::plan_link_farm(marker, &into).map_err(|e| e.to_string())?;
        return Ok(SeedUse::Farm {
            pex_root: into,
            farm,
        });
    }
    // The seed was moved (or mounted elsewhere): venvs name the build path in shebangs
    // and links, so the farm must stand exactly there.
    let at = resolve_physical(built_at)
        .map_err(|e| format!("the seed's build path {}: {e}", built_at.display()))?;
    if at.physical != *built_at {
        return Err(format!(
            "the seed was built for {} but that path now crosses a symlink; mount an empty directory there",
            built_at.display()
        ));
    }
    let writable = if at.exists {
        dir_writable_by(built_at, req.who)
    } else {
        dir_writable_by(&at.existing_ancestor, req.who)
    };
    if !writable {
        return Err(format!(
            "the seed at {} was built for {}, which {} cannot create or write; mount an empty writable directory (an emptyDir or tmpfs) at {}",
            seed.display(),
            built_at.display(),
            if req.who.is_root() {
                "root".to_owned()
            } else {
                format!("uid {}", req.who.uid)
            },
            built_at.display()
        ));
    }
    let marker = FarmMarker::new(&seed, req.manifest_bytes);
    let farm = materialize::plan_link_farm(marker, built_at).map_err(|e| e.to_string())?;
    Ok(SeedUse::Farm {
        pex_root: built_at.clone(),
        farm,
    })
}

/// pex's own test is `os.access(PEX_ROOT, W_OK)`; a warm run also writes `access.lck`
/// and (pex ≥ 2.27) `.last-access` files, which the OpenShift convention makes
/// group-writable. Judged for `who` from modes, ownership and read-only mounts.
fn seed_writable(seed: &Path, who: &Identity) -> bool {
    if !dir_writable_by(seed, who) {
        return false;
    }
    match fs::metadata(seed.join("access.lck")) {
        Ok(m) => crate::paths::permits(&m, who, 0o2),
        Err(_) => true,
    }
}

/// Creates what a [`SeedUse`] needs (the farm directory, privately, then the farm).
/// `owner`: chown what is created, when root prepares for another `--user`.
pub fn apply_use(plan: &SeedUse, who: &Identity, owner: Option<(u32, u32)>) -> Result<(), String> {
    let SeedUse::Farm { pex_root, farm } = plan else {
        return Ok(());
    };
    if farm.reuse {
        return Ok(());
    }
    if !pex_root.exists() {
        let parent = pex_root.parent().unwrap_or(Path::new("/"));
        let base = parent.parent().unwrap_or(Path::new("/"));
        // `<tmp>/pexinit-<uid>` is private (0700, owned by the user), like the fallback home.
        crate::paths::create_dirs(base, parent, crate::paths::DirPolicy::Private, who)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        match fs::create_dir(pex_root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", pex_root.display())),
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(pex_root, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", pex_root.display()))?;
        }
    }
    materialize::apply(farm, owner)
        .map(drop)
        .map_err(|e| e.to_string())
}
