//! `pexinit env`: print the environment `run` would give the program.

use crate::cli::EnvArgs;
use crate::error::Result;
use crate::run::report::{EnvReport, env_lines, export_lines};
use crate::run::seed_use;
use crate::run::setup::{optional_command, plan_inputs, plan_with_seed, settle_for_program};

pub fn env(args: &EnvArgs, verbose: u8) -> Result<u8> {
    let settings = super::settings(&super::flag_settings(&args.options), verbose)?;
    let inputs = plan_inputs(&settings)?;
    let (mut plan, seed) = plan_with_seed(&settings, &inputs);
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let mut command = optional_command(&args.command, &settings, &plan, &inputs, &seed)?;
    settle_for_program(
        &settings,
        &inputs,
        &mut plan,
        command.as_ref(),
        matches!(seed, Ok(Some(_))),
    );
    // The environment of the program run would start: its fast path included.
    let fast_path = match (&seed, command.as_mut()) {
        (Ok(Some(seeded)), Some(command)) => seed_use::choose(seeded, command, &mut plan),
        _ => None,
    };
    // Paths are bytes: the text forms print them as the program gets them.
    let out = if args.json {
        super::json(&EnvReport::new(&plan, command.as_ref(), fast_path.as_ref()))?.into_bytes()
    } else if args.export {
        export_lines(&plan)
    } else {
        env_lines(&plan)
    };
    super::print_bytes(&out)?;
    Ok(0)
}
