//! Flags of `pexinit prime`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkMode {
    /// reflink, else hardlink, else copy: the cheapest that works between the two paths.
    Auto,
    Copy,
    Hardlink,
    Reflink,
}

#[derive(Debug, Args)]
pub struct PrimeArgs {
    /// The seed made by `pexinit seed` (holds .pexinit-seed.json).
    #[arg(long, value_name = "SEED", required = true)]
    pub from: PathBuf,

    /// The PEX_ROOT to make warm (an emptyDir or shared volume).
    #[arg(long, value_name = "DIR", required = true)]
    pub into: PathBuf,

    /// Owner of what prime writes, as numbers.
    #[arg(long, value_name = "UID:GID")]
    pub chown: Option<String>,

    /// How files get into DIR.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub link: LinkMode,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
