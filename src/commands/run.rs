//! `pexinit run`: plan the environment and the command, prepare the cache and the seed,
//! then become the program (exec) or supervise it as an init.

use std::path::PathBuf;

use crate::cli::RunArgs;
use crate::config::{FlagSettings, InitMode};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::run::apply;
use crate::run::cache_guard::{self, CacheCheck};
use crate::run::exec::{self, Program};
use crate::run::init::{self, InitOptions};
use crate::run::plan::Inputs;
use crate::run::privileges::Credentials;
use crate::run::seed_use;
use crate::run::setup::{inputs_for_user, plan_program, plan_with_seed, settle_for_program};
use crate::run::signals::Rewrites;

fn flag_settings(args: &RunArgs) -> FlagSettings {
    FlagSettings {
        init: args.init,
        grace: args.grace,
        kill_process_group: args.kill_process_group,
        success_exit: args.success_exit.clone(),
        rewrite_signal: args.rewrite_signal.clone(),
        ..super::flag_settings(&args.options)
    }
}

/// Returns only on failure, or with the program's status when supervising it.
pub fn run(args: RunArgs, verbose: u8) -> Result<u8> {
    let settings = super::settings(&flag_settings(&args), verbose)?;
    let current = Identity::current();
    let (inputs, credentials) = match &settings.user {
        Some(spec) => {
            let target = Identity::for_user(spec)?;
            let credentials = Credentials::switch(&current, &target)?;
            (inputs_for_user(&current, target), credentials)
        }
        None => (Inputs::from_process(current), None),
    };
    let (mut plan, seed) = plan_with_seed(&settings, &inputs);
    let mut command = plan_program(&args.command, &settings, &plan, &inputs, &seed)?;
    let settings = settle_for_program(
        &settings,
        &inputs,
        &mut plan,
        Some(&command),
        matches!(seed, Ok(Some(_))),
    );
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    for notice in &plan.notices {
        tracing::info!("{notice}");
    }
    let seeded = seed.unwrap_or_else(|(seed, why)| {
        tracing::warn!("seed {}: {why}; running without it", seed.display());
        None
    });
    let pex_root = plan.value("PEX_ROOT").map(PathBuf::from);
    let cache = CacheCheck::scan(
        pex_root.as_deref(),
        settings.repair,
        command.pex.as_ref(),
        seeded.is_some(),
    );
    if let Some(pex_root) = &pex_root {
        cache_guard::enforce(&cache, pex_root, settings.repair)?;
    }
    if let Some(seeded) = &seeded {
        let fast = seed_use::choose(seeded, &mut command, &mut plan);
        seed_use::require_fast_path(seeded, &command, fast.as_ref())
            .map_err(Error::CannotExecute)?;
        if seed_use::needs_seed_root(fast.as_ref()) {
            let owner = credentials
                .as_ref()
                .map(|_| (inputs.identity.uid, inputs.identity.gid));
            seed_use::apply_use(&seeded.used, &inputs.identity, owner).map_err(|e| {
                Error::Normalize(format!(
                    "cannot prepare the seed {}: {e}; fix it or run without --seed",
                    seeded.seed.display()
                ))
            })?;
            tracing::info!(
                "seed {} used as PEX_ROOT {}",
                seeded.seed.display(),
                seeded.used.pex_root().display()
            );
        } else {
            tracing::info!("seed {} read in place", seeded.physical.display());
        }
        match fast {
            Some(Ok(fast)) => {
                tracing::info!("fast path: {}", fast.describe());
                seed_use::record_access(seeded, &fast);
            }
            Some(Err(why)) => tracing::info!("no fast path: {why}"),
            None => {}
        }
    }
    apply::prepare(&plan, &inputs.identity)?;
    let program = Program::new(&plan, &command)?;
    let pid1 = init::is_pid1();
    let supervise = match settings.init {
        InitMode::Always => true,
        InitMode::Auto => pid1,
        InitMode::Never => false,
    };
    if !supervise {
        tracing::info!("exec {}", command.argv.join(" "));
        match exec::exec(&program, credentials.as_ref())? {}
    }
    tracing::info!("supervising {}", command.argv.join(" "));
    init::supervise(
        &program,
        credentials.as_ref(),
        &InitOptions {
            kill_process_group: settings.kill_process_group,
            grace: settings.grace,
            subreaper: !pid1,
            success_exits: settings.success_exit.clone(),
            rewrites: Rewrites::new(&settings.rewrite_signal),
        },
    )
}
