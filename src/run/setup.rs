//! What `run`, `env` and `doctor` share before their ways part: whose identity to plan
//! for, the environment plan with the seed it uses, and the program's command plan.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::error::Result;
use crate::identity::Identity;
use crate::run::command::{CommandPlan, plan_command};
use crate::run::plan::{EnvPlan, Inputs, plan_environment};
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

/// The PEX a planned command runs, if any.
pub fn pex_path(command: Option<&CommandPlan>) -> Option<&Path> {
    command
        .and_then(|c| c.pex.as_ref())
        .map(|pex| pex.path.as_path())
}

/// The program of `env` and `doctor`: optional, and when given it must be runnable.
pub fn optional_command(
    command: &[OsString],
    settings: &Settings,
    plan: &EnvPlan,
    inputs: &Inputs,
) -> Result<Option<CommandPlan>> {
    if command.is_empty() {
        return Ok(None);
    }
    plan_command(command, settings, &plan.env, &inputs.identity).map(Some)
}
