//! `pexinit seed`: warm a PEX_ROOT at image build time, exactly as `run` will use it.

use crate::cli::SeedArgs;
use crate::config::FlagSettings;
use crate::epoch::{DEFAULT_SOURCE_DATE_EPOCH, source_date_epoch};
use crate::error::Result;
use crate::identity::numeric_owner;
use crate::pex::manifest::MANIFEST_NAME;
use crate::pex::seed;

pub fn seed(args: &SeedArgs, verbose: u8) -> Result<u8> {
    let flags = FlagSettings {
        config: args.config.clone(),
        python: args.python.clone(),
        ..FlagSettings::default()
    };
    let settings = super::settings(&flags, verbose)?;
    let runtime_user = args
        .runtime_user
        .as_deref()
        .map(|text| numeric_owner("--runtime-user", text))
        .transpose()?
        .map(|(uid, gid)| (uid, Some(gid)));
    let targets = args
        .pexes
        .iter()
        .map(|path| seed::Target {
            path: path.clone(),
            venv: settings.venv.applies_to(path),
        })
        .collect();
    let request = seed::Request {
        pex_root: args.pex_root.clone(),
        python: settings.python.as_ref().map(|(p, _)| p.clone()),
        runtime_user,
        targets,
        slim: args.slim,
        // A seed's files are dated 1980 (the date pex gives its own reproducible zips),
        // or SOURCE_DATE_EPOCH when it is earlier: no date newer than SOURCE_DATE_EPOCH, as
        // its convention asks, and none that follows the commit, so the layers of a seed
        // do not change with every commit of the app.
        source_date_epoch: Some(
            source_date_epoch::<i64>()?.map_or(DEFAULT_SOURCE_DATE_EPOCH, |sde| {
                sde.min(DEFAULT_SOURCE_DATE_EPOCH)
            }),
        ),
        // pex's bootstrap runs `uname` and friends.
        path_var: std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
    };
    let plan = seed::plan(&request)?;
    if args.dry_run {
        super::print(&super::json_or(args.json, &plan, || plan.text())?)?;
        return Ok(0);
    }
    let report = seed::apply(&plan)?;
    super::print(&super::json_or(args.json, &report, || {
        format!(
            "seeded {} with {} PEX file(s): {} files, {} bytes; manifest {}\n",
            plan.pex_root.display(),
            report.manifest.entries.len(),
            report.files,
            report.bytes,
            plan.pex_root.join(MANIFEST_NAME).display()
        )
    })?)?;
    Ok(0)
}
