//! The command edge: one file per subcommand, the only code that sees clap's types. Each
//! reads its flags into the domain's request, calls the domain, and prints the result;
//! failures are returned as [`Error`] for `main` to print and turn into the exit status.

mod completions;
mod doctor;
mod env;
mod image;
mod layer;
mod prime;
mod repair;
mod run;
mod seed;

use std::io::Write;
use std::path::Path;

use crate::cli::{Cli, Command, ImageCommand, PlanOptions};
use crate::config::{FlagSettings, Settings};
use crate::error::{Error, Result};
use crate::log;

/// Runs the parsed command line; returns the exit status (run only returns on failure).
pub fn dispatch(cli: Cli) -> Result<u8> {
    let verbose = cli.verbose;
    match cli.command {
        Command::Run(args) => run::run(args, verbose),
        Command::Env(args) => env::env(&args, verbose),
        Command::Doctor(args) => doctor::doctor(&args, verbose),
        Command::Repair(args) => repair::repair(&args, verbose),
        Command::Seed(args) => seed::seed(&args, verbose),
        Command::Prime(args) => prime::prime(&args, verbose),
        Command::Layer(args) => layer::layer(&args, verbose),
        Command::Image(ImageCommand::Append(args)) => image::append(&args, verbose),
        Command::Completions { shell } => completions::completions(shell),
    }
}

/// The flags shared by run, env, doctor and repair, as the settings they override.
fn flag_settings(options: &PlanOptions) -> FlagSettings {
    FlagSettings {
        config: options.config.clone(),
        python: options.python.clone(),
        pex_root: options.pex_root.clone(),
        user: options.user.clone(),
        repair: options.repair,
        seed: options.seed.clone(),
        ..FlagSettings::default()
    }
}

/// Loads settings and starts logging: the common start of every command that reads the
/// config file.
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
fn start_logging(verbose: u8, config_log: Option<&str>, config_file: Option<&Path>) -> Result<()> {
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

fn json(value: &impl serde::Serialize) -> Result<String> {
    crate::json_bytes::pretty(value).map_err(Error::Usage)
}

/// `--json`'s pretty JSON, else the text.
fn json_or(
    as_json: bool,
    value: &impl serde::Serialize,
    text: impl FnOnce() -> String,
) -> Result<String> {
    if as_json { json(value) } else { Ok(text()) }
}

fn print(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// Writes `bytes` to stdout as they are (paths that are not UTF-8 included).
fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        // A closed pipe (`pexinit env | head`) is the reader's choice, not our failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout", e))
        }
        _ => Ok(()),
    }
}
