//! `pexinit doctor`: explain every decision `run` would take; status 1 when something
//! cannot be fixed.

use std::path::{Path, PathBuf};

use crate::cli::DoctorArgs;
use crate::config::RepairMode;
use crate::error::{Result, exit};
use crate::run::cache_guard::CacheCheck;
use crate::run::report::{Diagnosis, PexReport};
use crate::run::seed_use::{self, SeedCheck};
use crate::run::setup::{optional_command, plan_inputs, plan_with_seed, settle_for_program};

pub fn doctor(args: &DoctorArgs, verbose: u8) -> Result<u8> {
    let settings = super::settings(&super::flag_settings(&args.options), verbose)?;
    let inputs = plan_inputs(&settings)?;
    let (mut plan, seed) = plan_with_seed(&settings, &inputs);
    let mut problems = plan.problems.clone();
    let mut command = match optional_command(&args.command, &settings, &plan, &inputs, &seed) {
        Ok(command) => command,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let settings = settle_for_program(
        &settings,
        &inputs,
        &mut plan,
        command.as_ref(),
        matches!(seed, Ok(Some(_))),
    );
    let pex = command
        .as_ref()
        .and_then(|c| c.pex.as_ref())
        .map(PexReport::new);
    let seed = match seed {
        Ok(None) => SeedCheck::None,
        Err((seed, reason)) => SeedCheck::Unusable { seed, reason },
        Ok(Some(seeded)) => {
            let fast_path = command
                .as_mut()
                .and_then(|c| seed_use::choose(&seeded, c, &mut plan));
            if let Some(c) = &command
                && let Err(why) = seed_use::require_fast_path(&seeded, c, fast_path.as_ref())
            {
                problems.push(why);
            }
            SeedCheck::Used {
                fast_path,
                seeded: Box::new(seeded),
            }
        }
    };
    let pex_root = plan.value("PEX_ROOT").map(PathBuf::from);
    // doctor looks at the PEX's entries even when run would not (--repair off): what
    // it finds there is what pex will meet.
    let cache = CacheCheck::scan(
        pex_root.as_deref(),
        match settings.repair {
            RepairMode::Off => RepairMode::Check,
            mode => mode,
        },
        command.as_ref().and_then(|c| c.pex.as_ref()),
        matches!(seed, SeedCheck::Used { .. }),
    );
    if cache.poisoned().is_some() && settings.repair != RepairMode::Auto {
        problems.push(format!(
            "PEX_ROOT is poisoned: {}; run `pexinit repair {}`, or run with --repair auto",
            cache.summary(),
            pex_root.as_deref().unwrap_or(Path::new("")).display()
        ));
    }
    problems.extend(cache.problems());
    let diagnosis = Diagnosis {
        healthy: problems.is_empty(),
        config_file: settings.config_file.clone(),
        plan: &plan,
        command: command.as_ref(),
        pex,
        seed,
        cache,
        problems,
    };
    super::print(&super::json_or(args.json, &diagnosis, || diagnosis.text())?)?;
    Ok(if diagnosis.healthy {
        exit::OK
    } else {
        exit::UNHEALTHY
    })
}
