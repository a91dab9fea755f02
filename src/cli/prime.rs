//! Flags of `pexinit prime`.

use std::path::PathBuf;

use clap::Args;

use crate::pex::prime::LinkMode;

value_enum!(LinkMode {
    Auto => "auto", "reflink, else hardlink, else copy: the cheapest that works between the two paths";
    Copy => "copy", "Copy every file (copy_file_range)";
    Hardlink => "hardlink", "Hardlink every file the app never writes; fails across filesystems";
    Reflink => "reflink", "Share blocks (FICLONE: btrfs, XFS); fails where the filesystem cannot";
});

#[derive(Debug, Args)]
pub struct PrimeArgs {
    /// The seed made by `pexinit seed` (holds .pexinit-seed.json).
    #[arg(long, value_name = "SEED", required = true)]
    pub from: PathBuf,

    /// The PEX_ROOT to make warm (an emptyDir or shared volume, or a new directory in one).
    #[arg(long, value_name = "DIR", required = true)]
    pub into: PathBuf,

    /// Owner of everything prime writes, as numbers (GID defaults to 0) [default: the
    /// seed's owners when run as root, like cp -a].
    #[arg(long, value_name = "UID[:GID]")]
    pub chown: Option<String>,

    /// How files get into DIR.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub link: LinkMode,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
