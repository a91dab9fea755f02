//! `run` with a seed: which seed, how it is used (directly, or through a link farm when
//! the runtime user cannot write it), and the fast path when the PEX matches.
//!
//! A seed never makes `run` fail: every reason not to use it (no manifest, another
//! interpreter, a moved seed without a writable build path) sends `run` down the normal
//! path, and `doctor` prints the reason.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Settings, Source};
use crate::identity::Identity;
use crate::pex::manifest::{self, MANIFEST_NAME, Manifest};
use crate::pex::prime;
use crate::pex::seed::{self, SeedUse, UseRequest};
use crate::run::command::CommandPlan;
use crate::run::fast_path::{self, FastPath};
use crate::run::plan::EnvPlan;

/// The seed `run` will use.
#[derive(Debug, Clone, Serialize)]
pub struct Seeded {
    pub seed: PathBuf,
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
            Some(root) if root.join(MANIFEST_NAME).is_file() => root,
            _ => return Ok(None),
        },
    };
    let unusable = |reason: String| (seed.clone(), reason);
    let manifest = manifest::read(&seed).map_err(|e| unusable(e.to_string()))?;
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
    let used = seed::plan_use(&UseRequest {
        seed: &seed,
        manifest: &manifest,
        who,
        tmp: &tmp,
    })
    .map_err(unusable)?;
    Ok(Some(Seeded {
        seed,
        manifest,
        used,
    }))
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
        pex_root: seeded.used.pex_root(),
        pex,
        interpreter: Path::new(&command.executable),
        interpreter_args: &interpreter_args,
        env: &plan.env,
        args,
    }))
}

/// `command` rewritten to exec the seeded venv, and `plan` given the variables pex's
/// bootstrap would have set.
pub fn take_fast_path(fast: &FastPath, command: &mut CommandPlan, plan: &mut EnvPlan) {
    command.executable = fast.executable.clone();
    command.argv_os = fast.argv_os.clone();
    command.argv = fast.argv.clone();
    command.interpreter_source = None;
    for (name, value) in &fast.env {
        plan.env.set(name, value);
    }
}
