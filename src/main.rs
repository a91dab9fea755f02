use std::process::ExitCode;

use clap::Parser;
use pexinit::cli::Cli;
use pexinit::error::EXIT_PEXINIT_FAILED;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not failures; bad flags are pexinit's own failure
            // (125, as `docker run` does), never confused with the program's status.
            let code = if e.use_stderr() {
                EXIT_PEXINIT_FAILED
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
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
