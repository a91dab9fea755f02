//! One function per subcommand: build the plan, then print or apply it.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

use crate::cli::{Cli, Command, DoctorArgs, EnvArgs, ImageCommand, RepairArgs, RunArgs, SeedArgs};
use crate::config::{FlagSettings, InitMode, RepairMode, Settings};
use crate::error::{EXIT_UNHEALTHY, Error, Result};
use crate::identity::Identity;
use crate::log;
use crate::pex::seed;
use crate::run::apply;
use crate::run::cache_guard::{self, CacheCheck};
use crate::run::command::{CommandPlan, plan_command};
use crate::run::init::{self, InitOptions};
use crate::run::plan::{EnvPlan, Inputs, plan_environment, select_venv};
use crate::run::privileges::Credentials;
use crate::run::report::{Diagnosis, EnvReport, PexReport, env_lines, export_lines};
use crate::run::seed_use::{self, SeedCheck, Seeded};

/// Runs the parsed command line; returns the exit status (run only returns on failure).
pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run(args, cli.verbose),
        Command::Env(args) => env(args, cli.verbose),
        Command::Doctor(args) => doctor(args, cli.verbose),
        Command::Repair(args) => repair(args, cli.verbose),
        Command::Seed(args) => seed_command(args, cli.verbose),
        Command::Prime(args) => {
            init_logging(cli.verbose)?;
            crate::pex::prime::command(&args)
        }
        Command::Layer(args) => {
            init_logging(cli.verbose)?;
            crate::oci::layer_command(&args)
        }
        Command::Image(ImageCommand::Append(args)) => {
            init_logging(cli.verbose)?;
            crate::oci::append_command(&args)
        }
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics on a write error, and stdout
            // may be full or closed (print reports the one and ignores the other).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pexinit", &mut script);
            print(&String::from_utf8_lossy(&script))?;
            Ok(0)
        }
    }
}

/// Loads settings and starts logging: the common start of every planning command.
fn settings(flags: &FlagSettings, verbose: u8) -> Result<Settings> {
    let settings = Settings::load(flags)?;
    start_logging(
        verbose,
        settings.log.as_deref(),
        settings.config_file.as_deref(),
    )?;
    Ok(settings)
}

/// Logging for the commands that read no config file: `-v`, else PEXINIT_LOG.
fn init_logging(verbose: u8) -> Result<()> {
    start_logging(verbose, None, None)
}

/// Starts logging at the level from `-v`, else PEXINIT_LOG, else the config file's `log`;
/// a bad level is an error naming where it came from.
fn start_logging(
    verbose: u8,
    config_log: Option<&str>,
    config_file: Option<&std::path::Path>,
) -> Result<()> {
    let env_level = std::env::var("PEXINIT_LOG").ok();
    let level =
        log::level(verbose, env_level.as_deref(), config_log).map_err(
            |message| match env_level {
                Some(value) => Error::ConfigEnv {
                    name: "PEXINIT_LOG",
                    value,
                    message,
                },
                None => Error::Config {
                    path: config_file.map(Into::into).unwrap_or_default(),
                    message: format!("log: {message}"),
                },
            },
        )?;
    log::init(level);
    Ok(())
}

fn run(args: RunArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.flag_settings(), verbose)?;
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
    let mut command = plan_command(&args.command, &settings, &plan.env, &inputs.identity)?;
    select_venv(&mut plan, &settings, pex_path(Some(&command)));
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
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
        let owner = credentials
            .as_ref()
            .map(|_| (inputs.identity.uid, inputs.identity.gid));
        seed::apply_use(&seeded.used, &inputs.identity, owner).map_err(|e| {
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
        match seed_use::fast_path(seeded, &command, &plan) {
            Some(Ok(fast)) => {
                tracing::info!("fast path: exec the seeded venv {}", fast.venv.display());
                seed_use::take_fast_path(&fast, &mut command, &mut plan);
            }
            Some(Err(why)) => tracing::info!("no fast path: {why}"),
            None => {}
        }
    }
    apply::prepare(&plan, &inputs.identity)?;
    let program = apply::Program::new(&plan, &command)?;
    let pid1 = init::is_pid1();
    let supervise = match settings.init {
        InitMode::Always => true,
        InitMode::Auto => pid1,
        InitMode::Never => false,
    };
    if !supervise {
        tracing::info!("exec {}", command.argv.join(" "));
        match apply::exec(&program, credentials.as_ref())? {}
    }
    tracing::info!("supervising {}", command.argv.join(" "));
    init::supervise(
        &program,
        credentials.as_ref(),
        &InitOptions {
            kill_process_group: settings.kill_process_group,
            grace: settings.grace,
            subreaper: !pid1,
        },
    )
}

/// Inputs for running as `target` when pexinit runs as `current`. A HOME that is just
/// `current`'s own passwd home (what `docker run` sets for root) is not the target
/// user's: it is dropped, so the plan takes the target's passwd home instead.
fn inputs_for_user(current: &Identity, target: Identity) -> Inputs {
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
fn plan_inputs(settings: &Settings) -> Result<Inputs> {
    let current = Identity::current();
    match &settings.user {
        Some(spec) => Ok(inputs_for_user(&current, Identity::for_user(spec)?)),
        None => Ok(Inputs::from_process(current)),
    }
}

fn env(args: EnvArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.options.flag_settings(), verbose)?;
    let inputs = plan_inputs(&settings)?;
    let (mut plan, _) = plan_with_seed(&settings, &inputs);
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let command = optional_command(&args.command, &settings, &plan, &inputs)?;
    select_venv(&mut plan, &settings, pex_path(command.as_ref()));
    let text = if args.json {
        json(&EnvReport::new(&plan, command.as_ref()))?
    } else if args.export {
        export_lines(&plan)
    } else {
        env_lines(&plan)
    };
    print(&text)?;
    Ok(0)
}

/// The PEX a planned command runs, if any.
fn pex_path(command: Option<&CommandPlan>) -> Option<&std::path::Path> {
    command
        .and_then(|c| c.pex.as_ref())
        .map(|pex| pex.path.as_path())
}

/// The program of `env`: optional, and when given it must be runnable.
fn optional_command(
    command: &[std::ffi::OsString],
    settings: &Settings,
    plan: &EnvPlan,
    inputs: &Inputs,
) -> Result<Option<CommandPlan>> {
    if command.is_empty() {
        return Ok(None);
    }
    plan_command(command, settings, &plan.env, &inputs.identity).map(Some)
}

fn doctor(args: DoctorArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.options.flag_settings(), verbose)?;
    let inputs = plan_inputs(&settings)?;
    let (mut plan, seed) = plan_with_seed(&settings, &inputs);
    let mut problems = plan.problems.clone();
    let command = match optional_command(&args.command, &settings, &plan, &inputs) {
        Ok(command) => command,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    select_venv(&mut plan, &settings, pex_path(command.as_ref()));
    let pex = command
        .as_ref()
        .and_then(|c| c.pex.as_ref())
        .map(PexReport::new);
    let seed = match seed {
        Ok(None) => SeedCheck::None,
        Err((seed, reason)) => SeedCheck::Unusable { seed, reason },
        Ok(Some(seeded)) => SeedCheck::Used {
            fast_path: command
                .as_ref()
                .and_then(|c| seed_use::fast_path(&seeded, c, &plan)),
            seeded: Box::new(seeded),
        },
    };
    let pex_root = plan.value("PEX_ROOT").map(PathBuf::from);
    let cache = CacheCheck::scan(
        pex_root.as_deref(),
        settings.repair,
        command.as_ref().and_then(|c| c.pex.as_ref()),
        matches!(seed, SeedCheck::Used { .. }),
    );
    if cache.poisoned().is_some() && settings.repair != RepairMode::Auto {
        problems.push(format!("PEX_ROOT is poisoned: {}", cache.summary()));
    }
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
    let text = if args.json {
        json(&diagnosis)?
    } else {
        diagnosis.text()
    };
    print(&text)?;
    Ok(if diagnosis.healthy { 0 } else { EXIT_UNHEALTHY })
}

/// The environment plan, with PEX_ROOT taken from a usable seed (the seed itself, or a
/// link farm of it when the user cannot write it). The seed part says which seed, or
/// why a named or found seed cannot be used.
fn plan_with_seed(settings: &Settings, inputs: &Inputs) -> (EnvPlan, SeedFound) {
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

type SeedFound = std::result::Result<Option<Seeded>, (PathBuf, String)>;

fn seed_command(args: SeedArgs, verbose: u8) -> Result<u8> {
    let flags = FlagSettings {
        config: args.config.clone(),
        python: args.python.clone(),
        ..FlagSettings::default()
    };
    let settings = settings(&flags, verbose)?;
    let runtime_user = args
        .runtime_user
        .as_deref()
        .map(parse_runtime_user)
        .transpose()?;
    let targets = args
        .pexes
        .iter()
        .map(|path| seed::Target {
            path: path.clone(),
            venv: settings.venv.applies_to(path),
        })
        .collect();
    let python = settings.python.as_ref().map(|(p, _)| p.clone());
    let outcome = seed::Request::from_env(args.pex_root.clone(), python, runtime_user, targets)
        .and_then(|request| seed::plan(&request));
    let plan = match outcome {
        Ok(plan) => plan,
        Err(e) => return seed_failure(e),
    };
    if args.dry_run {
        print(&if args.json { json(&plan)? } else { plan.text() })?;
        return Ok(0);
    }
    match seed::apply(&plan) {
        Ok(report) => {
            let text = if args.json {
                json(&report)?
            } else {
                format!(
                    "seeded {} with {} PEX file(s): {} files, {} bytes; manifest {}\n",
                    plan.pex_root.display(),
                    report.manifest.entries.len(),
                    report.files,
                    report.bytes,
                    plan.pex_root
                        .join(crate::pex::manifest::MANIFEST_NAME)
                        .display()
                )
            };
            print(&text)?;
            Ok(0)
        }
        Err(e) => seed_failure(e),
    }
}

/// Seed errors keep their own documented statuses (1 warm-up, 2 verification, 125, 127).
fn seed_failure(e: seed::SeedError) -> Result<u8> {
    eprintln!("pexinit: error: {}", crate::error::one_line(&e.to_string()));
    Ok(e.exit_code())
}

/// `UID[:GID]`, numbers only: the seed is chowned before the image has the user.
fn parse_runtime_user(text: &str) -> Result<(u32, Option<u32>)> {
    let bad = || {
        Error::Usage(format!(
            "--runtime-user {text}: expected UID[:GID] as numbers, e.g. 1001 or 1001:0"
        ))
    };
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (text, None),
    };
    let uid = crate::ids::parse_id(uid).ok_or_else(bad)?;
    let gid = gid
        .map(|g| crate::ids::parse_id(g).ok_or_else(bad))
        .transpose()?;
    Ok((uid, gid))
}

fn repair(args: RepairArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.options.flag_settings(), verbose)?;
    let pex_root = match &args.root {
        Some(named) => named.clone(),
        None => {
            let plan = plan_environment(&settings, &plan_inputs(&settings)?);
            let derived = plan.value("PEX_ROOT").map(std::path::PathBuf::from);
            match derived.filter(|p| p.is_dir()) {
                Some(path) => path,
                None => {
                    // The cache run would use does not exist yet: nothing can be poisoned.
                    tracing::info!("PEX_ROOT does not exist yet: nothing to repair");
                    return Ok(crate::pex::repair::exit::OK);
                }
            }
        }
    };
    let report = crate::pex::repair::repair(&pex_root, args.dry_run)
        .map_err(|e| Error::Normalize(format!("{e}; name an existing PEX_ROOT directory")))?;
    let text = if args.json {
        json(&report)?
    } else {
        report.text()
    };
    print(&text)?;
    Ok(report.exit_code())
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    crate::json_bytes::pretty(value).map_err(Error::Usage)
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`pexinit env | head`) is the reader's choice, not our failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout", e))
        }
        _ => Ok(()),
    }
}
