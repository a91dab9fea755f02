//! One function per subcommand: build the plan, then print or apply it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Command, DoctorArgs, EnvArgs, PlanOptions, RunArgs};
use crate::command::{CommandPlan, plan_command};
use crate::config::Settings;
use crate::error::{EXIT_UNHEALTHY, Error, Result};
use crate::plan::{EnvPlan, Inputs, plan_environment};
use crate::report::{Diagnosis, EnvReport, PexReport, env_lines, export_lines};
use crate::{apply, log};

/// Runs the parsed command line; returns the exit status (run only returns on failure).
pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run(args, cli.verbose),
        Command::Env(args) => env(args, cli.verbose),
        Command::Doctor(args) => doctor(args, cli.verbose),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pexinit",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

/// Loads settings and starts logging: the common start of every planning command.
fn settings(options: &PlanOptions, verbose: u8) -> Result<Settings> {
    let settings = Settings::load(&options.flag_settings())?;
    let env_level = std::env::var("PEXINIT_LOG").ok();
    let level =
        log::level(verbose, env_level.as_deref(), settings.log.as_deref()).map_err(|message| {
            match env_level {
                Some(value) => Error::ConfigEnv {
                    name: "PEXINIT_LOG",
                    value,
                    message,
                },
                None => Error::Config {
                    path: settings.config_file.clone().unwrap_or_default(),
                    message: format!("log: {message}"),
                },
            }
        })?;
    log::init(level);
    Ok(settings)
}

fn run(args: RunArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.options, verbose)?;
    let inputs = Inputs::from_process();
    let plan = plan_environment(&settings, &inputs);
    let command = plan_command(&args.command, &settings, &plan.env, &inputs.identity)?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!("exec {}", command.argv.join(" "));
    apply::prepare(&plan, &inputs.identity)?;
    match apply::exec(&plan, &command)? {}
}

fn env(args: EnvArgs, verbose: u8) -> Result<u8> {
    let settings = settings(&args.options, verbose)?;
    let inputs = Inputs::from_process();
    let plan = plan_environment(&settings, &inputs);
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let command = optional_command(&args.command, &settings, &plan, &inputs)?;
    let text = if args.json {
        json(&EnvReport::new(&plan, command.as_ref()))
    } else if args.export {
        export_lines(&plan)
    } else {
        env_lines(&plan)
    };
    print(&text)?;
    Ok(0)
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
    let settings = settings(&args.options, verbose)?;
    let inputs = Inputs::from_process();
    let plan = plan_environment(&settings, &inputs);
    let mut problems = plan.problems.clone();
    let command = match optional_command(&args.command, &settings, &plan, &inputs) {
        Ok(command) => command,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let pex = command
        .as_ref()
        .and_then(|c| c.pex.as_ref())
        .map(PexReport::new);
    let diagnosis = Diagnosis {
        healthy: problems.is_empty(),
        config_file: settings.config_file.clone(),
        plan: &plan,
        command: command.as_ref(),
        pex,
        problems,
    };
    let text = if args.json {
        json(&diagnosis)
    } else {
        diagnosis.text()
    };
    print(&text)?;
    Ok(if diagnosis.healthy { 0 } else { EXIT_UNHEALTHY })
}

fn json(value: &impl serde::Serialize) -> String {
    // Serializing plain data cannot fail; a failure would be a bug worth a loud message.
    let mut text = serde_json::to_string_pretty(value).expect("plan serializes to JSON");
    text.push('\n');
    text
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
