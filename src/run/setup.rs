//! What `run`, `env` and `doctor` share before their ways part: whose identity to plan
//! for, the environment plan with the seed it uses, and the program's command plan.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{Settings, Source};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::run::command::{CommandPlan, plan_command, plan_seeded_pex};
use crate::run::plan::{EnvPlan, Inputs, plan_environment, select_venv};
use crate::run::seed_use::{self, Seeded};

/// Inputs for running as `target` when pexinit runs as `current`. A HOME that is just
/// `current`'s own passwd home (what `docker run` sets for root) is not the target
/// user's: it is dropped, so the plan takes the target's passwd home instead.
pub fn inputs_for_user(current: &Identity, target: Identity) -> Inputs {
    let mut inputs = Inputs::from_process(target);
    if current.uid != inputs.identity.uid {
        let inherited = current
            .passwd
            .as_ref()
            .is_some_and(|p| inputs.env.get("HOME") == Some(p.home.as_os_str()));
        if inherited {
            tracing::debug!(
                "HOME is uid {}'s passwd home: not the --user's",
                current.uid
            );
            inputs.env.remove("HOME");
        }
    }
    inputs
}

/// What env and doctor plan for: `--user`'s identity when given, else our own.
pub fn plan_inputs(settings: &Settings) -> Result<Inputs> {
    let current = Identity::current();
    match &settings.user {
        Some(spec) => Ok(inputs_for_user(&current, Identity::for_user(spec)?)),
        None => Ok(Inputs::from_process(current)),
    }
}

/// A usable seed, or which seed (named or found) cannot be used and why.
pub type SeedFound = std::result::Result<Option<Seeded>, (PathBuf, String)>;

/// The environment plan, with PEX_ROOT taken from a usable seed (the seed itself, or a
/// link farm of it when the user cannot write it).
pub fn plan_with_seed(settings: &Settings, inputs: &Inputs) -> (EnvPlan, SeedFound) {
    let plan = plan_environment(settings, inputs);
    let found = seed_use::find(settings, &plan, &inputs.identity);
    match &found {
        Ok(Some(seeded)) if plan.value("PEX_ROOT") != Some(seeded.used.pex_root().as_os_str()) => {
            let plan = plan_environment(&seed_use::with_seed_root(settings, seeded), inputs);
            (plan, found)
        }
        _ => (plan, found),
    }
}

/// A PEX built with `--runtime-pex-root DIR` carries DIR in PEX-INFO, and pex uses it
/// when PEX_ROOT is not set. pexinit always exports PEX_ROOT, so when nothing else names
/// one (flag, variable, config file, seed) it exports the PEX's own, made physical: pex
/// alone would have used it, and a second, cold cache under HOME would be the surprise.
/// Returns the settings and plan to use instead, if any.
fn plan_for_runtime_pex_root(
    settings: &Settings,
    inputs: &Inputs,
    plan: &EnvPlan,
    command: &CommandPlan,
    seeded: bool,
) -> Option<(Settings, EnvPlan)> {
    if seeded
        || settings.pex_root.is_some()
        || inputs.env.get("PEX_ROOT").is_some_and(|v| !v.is_empty())
    {
        return None;
    }
    let raw = command.pex.as_ref()?.info.pex_root.as_deref()?;
    let home = plan.value("HOME").map(PathBuf::from)?;
    let root = match raw.strip_prefix('~') {
        Some("") => home,
        Some(rest) if rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(raw),
    };
    let mut settings = settings.clone();
    settings.pex_root = Some((root, Source::PexInfo));
    let plan = plan_environment(&settings, inputs);
    Some((settings, plan))
}

/// What the program itself changes in the plan: the PEX's runtime PEX_ROOT (see
/// [`plan_for_runtime_pex_root`]), then venv mode for the PEX files config `venv` lists.
/// Returns the settings the rest of the command uses.
pub fn settle_for_program(
    settings: &Settings,
    inputs: &Inputs,
    plan: &mut EnvPlan,
    command: Option<&CommandPlan>,
    seeded: bool,
) -> Settings {
    let mut settings = settings.clone();
    if let Some(command) = command
        && let Some((with_root, replanned)) =
            plan_for_runtime_pex_root(&settings, inputs, plan, command, seeded)
    {
        settings = with_root;
        *plan = replanned;
    }
    select_venv(plan, &settings, pex_path(command));
    settings
}

/// The PEX a planned command runs, if any.
pub fn pex_path(command: Option<&CommandPlan>) -> Option<&Path> {
    command
        .and_then(|c| c.pex.as_ref())
        .map(|pex| pex.path.as_path())
}

/// The program's command plan. A PEX whose file is not here is planned from the seed
/// that holds it, if one does (see [`seed_use::absent_pex`]).
pub fn plan_program(
    command: &[OsString],
    settings: &Settings,
    plan: &EnvPlan,
    inputs: &Inputs,
    seed: &SeedFound,
) -> Result<CommandPlan> {
    let missing = match plan_command(command, settings, &plan.env, &inputs.identity) {
        Err(Error::NotFound(missing)) => missing,
        planned => return planned,
    };
    let (Ok(Some(seeded)), Some(program)) = (seed, command.first()) else {
        return Err(Error::NotFound(missing));
    };
    // Only PROGRAM itself missing counts: a PEX that is here but whose interpreter is
    // not must fail as it would anywhere.
    if std::fs::symlink_metadata(program).is_ok() {
        return Err(Error::NotFound(missing));
    }
    match seed_use::absent_pex(seeded, program) {
        None => Err(Error::NotFound(missing)),
        Some(Err(why)) => Err(Error::NotFound(format!("{missing}; {why}"))),
        Some(Ok(pex)) => {
            tracing::info!(
                "{} is not here: starting the PEX of that name seeded in {}",
                pex.path.display(),
                seeded.seed.display()
            );
            plan_seeded_pex(
                command,
                pex,
                &seeded.manifest.python,
                settings,
                &plan.env,
                &inputs.identity,
            )
        }
    }
}

/// The program of `env` and `doctor`: optional, and when given it must be runnable.
pub fn optional_command(
    command: &[OsString],
    settings: &Settings,
    plan: &EnvPlan,
    inputs: &Inputs,
    seed: &SeedFound,
) -> Result<Option<CommandPlan>> {
    if command.is_empty() {
        return Ok(None);
    }
    plan_program(command, settings, plan, inputs, seed).map(Some)
}
