use std::process::ExitCode;

use clap::Parser;
use pexinit::cli::Cli;
use pexinit::error::EXIT_PEXINIT_FAILED;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print them as clap formats them.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Bad flags are pexinit's own failure (125, as `docker run` does), reported
            // on one line so log scrapers and people see the whole message at once.
            eprintln!(
                "pexinit: error: {}",
                one_line_usage_error(&e.render().to_string())
            );
            return ExitCode::from(EXIT_PEXINIT_FAILED);
        }
    };
    match pexinit::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pexinit: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Folds clap's multi-line error into one line: the message, what it lists, and the
/// usage line that names the fix.
fn one_line_usage_error(rendered: &str) -> String {
    let mut message = String::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if line.starts_with("For more information") {
            continue;
        } else if message.is_empty() {
            message = line.trim_start_matches("error: ").to_owned();
        } else if usage.is_none() {
            message.push(' ');
            message.push_str(line);
        }
    }
    match usage {
        Some(usage) => format!("{message}; usage: {usage} (see --help)"),
        None => format!("{message} (see --help)"),
    }
}
