//! `pexinit completions SHELL`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::Result;

pub fn completions(shell: Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pexinit", &mut script);
    super::print(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
