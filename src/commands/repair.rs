//! `pexinit repair`: heal a PEX_ROOT poisoned by pex's symlink bugs.

use std::path::PathBuf;

use crate::cli::RepairArgs;
use crate::error::{Error, Result, exit};
use crate::pex::repair;
use crate::run::plan::plan_environment;
use crate::run::setup::plan_inputs;

pub fn repair(args: &RepairArgs, verbose: u8) -> Result<u8> {
    let settings = super::settings(&super::flag_settings(&args.options), verbose)?;
    let pex_root = match &args.root {
        Some(named) => named.clone(),
        None => {
            let plan = plan_environment(&settings, &plan_inputs(&settings)?);
            let derived = plan.value("PEX_ROOT").map(PathBuf::from);
            match derived.filter(|p| p.is_dir()) {
                Some(path) => path,
                None => {
                    // The cache run would use does not exist yet: nothing can be poisoned.
                    tracing::info!("PEX_ROOT does not exist yet: nothing to repair");
                    return Ok(exit::OK);
                }
            }
        }
    };
    let report = repair::repair(&pex_root, args.dry_run)
        .map_err(|e| Error::Normalize(format!("{e}; name an existing PEX_ROOT directory")))?;
    super::print(&super::json_or(args.json, &report, || report.text())?)?;
    Ok(report.exit_code())
}
