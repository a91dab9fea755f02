//! The command line: every subcommand and flag, with a worked example in each help.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{InitMode, RepairMode, parse_grace, parse_success_exit};
use crate::run::signals::{Rewrite, parse_rewrite};

/// clap's reading of a domain enum, written here so that the domain never sees clap:
/// each variant's value on the command line, and the help `--help` lists for it.
macro_rules! value_enum {
    ($ty:ty { $($variant:ident => $name:literal $(, $help:literal)?;)* }) => {
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(Self::$variant),*]
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(match self {
                    $(Self::$variant => clap::builder::PossibleValue::new($name)$(.help($help))?,)*
                })
            }
        }
    };
}

mod oci;
mod prime;

pub use oci::{ImageAppendArgs, ImageCommand, LayerArgs};
pub use prime::PrimeArgs;

value_enum!(RepairMode {
    Auto => "auto", "Heal poisoned links and quarantine broken entries, then run";
    Check => "check", "Report and refuse to run (exit 125) when the cache is poisoned";
    Off => "off", "Do not look at the cache";
});

value_enum!(InitMode {
    Auto => "auto", "Supervise when pexinit is PID 1, otherwise exec the program in place";
    Always => "always", "Always supervise; outside PID 1 pexinit becomes a child subreaper";
    Never => "never", "Always exec the program in place (no init duties)";
});

#[derive(Debug, Parser)]
#[command(
    name = "pexinit",
    version,
    about = "Run PEX applications in containers with physical, writable HOME / XDG_CACHE_HOME / PEX_ROOT",
    long_about = None,
    after_help = "Exit status of `run` follows `docker run`: the program's own status; 125 when \
                  pexinit itself failed (bad config, cannot normalize); 126 when the program cannot \
                  be executed; 127 when it is not found.\n\n\
                  Example:\n  pexinit run -- app.pex --port 8080"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); overrides PEXINIT_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Build only the subcommand that is invoked: `run` starts faster (clap cost is per launch).
#[command(defer = true)]
pub enum Command {
    /// Normalize the environment, then run PROGRAM (a .pex or any command), as PID 1 if need be.
    #[command(after_help = "Examples:\n  \
        pexinit run -- app.pex --port 8080\n  \
        pexinit run --python /usr/bin/python3.11 -- /srv/app.pex\n  \
        pexinit run -- python3.11 app.pex\n  \
        pexinit run -- gunicorn app:wsgi\n  \
        pexinit run --user app --init always -g --grace 10 -- app.pex\n  \
        pexinit run --rewrite-signal TERM:QUIT --success-exit 143 -- app.pex\n\n\
        HOME, XDG_CACHE_HOME, PEX_ROOT, TMPDIR and PWD are made physical (no symlinks) and \
        writable; PEX_ROOT is always exported. `pexinit env` shows the result without running.\n\n\
        With a seed (--seed, PEXINIT_SEED) a seeded PEX starts without pex's bootstrap; a PEX \
        whose file is not here (an image built with `seed --slim`) starts from the seed by its \
        file name.\n\n\
        As PID 1 (or with --init always) pexinit stays as a tiny init: it forwards signals to \
        PROGRAM, reaps orphaned processes, and exits with PROGRAM's status (128+N when it died \
        of signal N); otherwise PROGRAM replaces pexinit.")]
    Run(RunArgs),

    /// Print the environment `run` would give the program.
    #[command(after_help = "Examples:\n  \
        pexinit env                 # NAME=value lines\n  \
        pexinit env --json          # the plan, for tools\n  \
        eval \"$(pexinit env --export)\"   # adopt it in a shell")]
    Env(EnvArgs),

    /// Explain every decision run would take; exit 1 when something cannot be fixed.
    #[command(after_help = "Examples:\n  \
        pexinit doctor app.pex\n  \
        pexinit doctor --json -- python3.11 app.pex\n\n\
        For a PEX, reads PEX-INFO (pex version, venv, pex_hash) and names the known cache bugs \
        of its pex runtime. Exit status: 0 healthy, 1 unhealthy, 125 bad configuration.")]
    Doctor(DoctorArgs),

    /// Heal a PEX_ROOT poisoned by pex's symlink bugs (dangling relative links).
    #[command(after_help = "Examples:\n  \
        pexinit repair --dry-run            # what would change in the PEX_ROOT run would use\n  \
        pexinit repair /home/app/.cache/pex\n  \
        pexinit repair --json /var/cache/pex\n\n\
        Poisoned links are rewritten to the links a fixed pex writes; entries that cannot be \
        rewritten are moved to PEX_ROOT/.pexinit-quarantine so pex rebuilds them; links leaving \
        PEX_ROOT in shapes pex never writes are reported and left alone. Nothing outside \
        PEX_ROOT is written.\n\n\
        Exit status: 0 healthy or healed; 1 (--dry-run) something would be repaired; 2 \
        suspicious links or unreadable directories remain; 3 something could not be healed; \
        125 repair could not run.")]
    Repair(RepairArgs),

    /// Warm a PEX_ROOT at image build time, exactly as `run` will use it.
    #[command(after_help = "Examples:\n  \
        pexinit seed --pex-root /opt/pex-root /app/app.pex\n  \
        SOURCE_DATE_EPOCH=0 pexinit seed --pex-root /opt/pex-root --python /usr/bin/python3.11 a.pex b.pex\n  \
        pexinit seed --pex-root /opt/pex-root --runtime-user 1001:0 /app/app.pex\n  \
        pexinit seed --slim --pex-root /opt/pex-root --python /usr/bin/python3.11 app.pex\n\n\
        Seed at the PEX_ROOT path and with the interpreter the container will use (both are \
        part of pex's cache keys). The seed is verified (a second warm-up creates nothing, no \
        broken link), reproducible (mtimes from SOURCE_DATE_EPOCH) and described by \
        DIR/.pexinit-seed.json. Ownership: group 0 with group permissions = user permissions \
        (OpenShift), or --runtime-user.\n\n\
        Exit status: 0 seeded; 1 pex failed to warm a PEX; 2 verification failed (no \
        manifest written); 125 bad input; 127 interpreter not found.")]
    Seed(SeedArgs),

    /// Make DIR a warm PEX_ROOT from a seed: a Kubernetes initContainer filling a volume.
    #[command(after_help = "Examples:\n  \
        pexinit prime --from /opt/pex-root --into /var/cache/pex\n  \
        pexinit prime --from /opt/pex-root --into /shared/pex --chown 1001:0 --link copy\n\n\
        DIR is built beside its final name and renamed into place (a mount point is filled \
        one complete top-level directory at a time, the seed manifest last), so pex never \
        trusts half a cache; a second prime of the same seed is a no-op; concurrent primes \
        of one volume take turns.\n\n\
        Exit status: 0 primed or already primed; 1 failed part-way (DIR left as it was); \
        125 bad input (nothing changed).")]
    Prime(PrimeArgs),

    /// Write a reproducible OCI layer (tar, tar+gzip, tar+zstd) of directories.
    #[command(after_help = "Examples:\n  \
        pexinit layer -o seed.tar.gz /opt/pex-root\n  \
        SOURCE_DATE_EPOCH=0 pexinit layer --json -o app.tar.zst --compression zstd build/seed:/opt/pex-root\n  \
        pexinit layer -o deps.tar.gz --split app.tar.gz /opt/pex-root   # two layers of a seed\n\n\
        Same input, same bytes: entries sorted, mtimes clamped, owners 0:0, symlinks stored \
        as links. Prints the OCI descriptor and the diff_id.")]
    Layer(LayerArgs),

    /// Work on OCI image layouts.
    #[command(subcommand)]
    Image(ImageCommand),

    /// Print a shell completion script.
    #[command(after_help = "Example:\n  pexinit completions bash > /etc/bash_completion.d/pexinit")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

// Options shared by run, env and doctor: whatever changes the plan. (A plain comment: a doc
// comment would become the `about` of every subcommand that flattens this.)
#[derive(Debug, Clone, Args)]
pub struct PlanOptions {
    /// YAML config file [default: /etc/pexinit.yaml when it exists].
    #[arg(long, value_name = "FILE", env = "PEXINIT_CONFIG")]
    pub config: Option<PathBuf>,

    /// PEX_ROOT for the program (made physical, created when missing).
    #[arg(long, value_name = "DIR", env = "PEXINIT_PEX_ROOT")]
    pub pex_root: Option<PathBuf>,

    /// Interpreter for a PEX PROGRAM [default: the PEX's #! line].
    #[arg(long, value_name = "PATH", env = "PEXINIT_PYTHON")]
    pub python: Option<PathBuf>,

    /// Run PROGRAM as USER[:GROUP] (names or numeric ids; needs root). HOME and
    /// writability are planned for that user.
    #[arg(long, value_name = "USER[:GROUP]", env = "PEXINIT_USER")]
    pub user: Option<String>,

    /// Before starting a PEX: auto = heal a poisoned PEX_ROOT; check = exit 125 when it
    /// is poisoned; off = do not look [default: auto].
    #[arg(long, value_enum, value_name = "MODE", env = "PEXINIT_REPAIR")]
    pub repair: Option<RepairMode>,

    /// A seed made by `pexinit seed` [default: PEX_ROOT, when it holds one]. A matching
    /// --venv PEX is exec'ed straight from it; a read-only seed stays warm.
    #[arg(long, value_name = "DIR", env = "PEXINIT_SEED")]
    pub seed: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub options: PlanOptions,

    /// Supervise PROGRAM as an init (forward signals, reap zombies): auto = only when
    /// pexinit is PID 1; always = also elsewhere (as a child subreaper); never = exec in place.
    #[arg(long, value_enum, value_name = "MODE", env = "PEXINIT_INIT")]
    pub init: Option<InitMode>,

    /// Seconds the rest of PROGRAM's process group gets between SIGTERM and SIGKILL once
    /// PROGRAM has exited; 0 = SIGKILL at once [default: 5].
    #[arg(long, value_name = "SECONDS", env = "PEXINIT_GRACE", value_parser = parse_grace)]
    pub grace: Option<f64>,

    /// Forward signals to PROGRAM's whole process group, not only to PROGRAM.
    #[arg(
        short = 'g',
        long,
        value_name = "BOOL",
        env = "PEXINIT_KILL_PROCESS_GROUP",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kill_process_group: Option<bool>,

    /// Exit with 0 when PROGRAM exits with N (128+N: died of signal N); repeatable, or
    /// comma-separated. E.g. 143 for an app that exits 143 on SIGTERM.
    #[arg(
        long,
        value_name = "N",
        env = "PEXINIT_SUCCESS_EXIT",
        value_delimiter = ',',
        value_parser = parse_success_exit
    )]
    pub success_exit: Vec<u8>,

    /// Pass signal FROM on as TO (names or numbers; TO 0 drops FROM); repeatable, or
    /// comma-separated. E.g. TERM:QUIT for an app that stops gracefully on SIGQUIT.
    #[arg(
        long,
        value_name = "FROM:TO",
        env = "PEXINIT_REWRITE_SIGNAL",
        value_delimiter = ',',
        value_parser = parse_rewrite
    )]
    pub rewrite_signal: Vec<Rewrite>,

    /// The program and its arguments.
    #[arg(value_name = "PROGRAM", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub options: PlanOptions,

    /// Print the whole plan as JSON.
    #[arg(long, conflicts_with = "export")]
    pub json: bool,

    /// Print `export NAME='value'` lines for a POSIX shell.
    #[arg(long)]
    pub export: bool,

    /// The program run would start (optional; shown with --json).
    #[arg(value_name = "PROGRAM", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub options: PlanOptions,

    /// Print the diagnosis as JSON.
    #[arg(long)]
    pub json: bool,

    /// The program to diagnose, e.g. a .pex file (optional).
    #[arg(value_name = "PROGRAM", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub options: PlanOptions,

    /// Report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// The cache to repair [default: the PEX_ROOT `pexinit env` exports].
    #[arg(value_name = "PEX_ROOT")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// YAML config file (for `python` and `venv`) [default: /etc/pexinit.yaml when it exists].
    #[arg(long, value_name = "FILE", env = "PEXINIT_CONFIG")]
    pub config: Option<PathBuf>,

    /// The PEX_ROOT to warm: the path the container will use.
    #[arg(long, value_name = "DIR", required = true)]
    pub pex_root: PathBuf,

    /// The interpreter the container will run the PEX files with [default: their #! line].
    #[arg(long, value_name = "PATH", env = "PEXINIT_PYTHON")]
    pub python: Option<PathBuf>,

    /// Owner of the seed: UID[:GID] [default: group 0, group permissions = user's].
    #[arg(long, value_name = "UID[:GID]")]
    pub runtime_user: Option<String>,

    /// Keep only what `run`'s fast path reads: no pex runtime (`bootstraps/`, `isolated/`)
    /// and no interpreter cache, so an image holds each byte of the app once and the
    /// .pex files need not be shipped. Every PEX must have a fast path.
    #[arg(long)]
    pub slim: bool,

    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the plan or the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// The PEX files (or packed / loose PEX directories) to seed.
    #[arg(value_name = "APP.pex", required = true)]
    pub pexes: Vec<PathBuf>,
}

/// Parses pexinit's arguments. `--help` and `--version` are printed here as clap formats
/// them (Err(None)); a bad flag is Err(Some(..)): clap's multi-line error folded into one
/// line, so log scrapers and people see the whole message at once.
pub fn parse(args: Vec<OsString>) -> Result<Cli, Option<String>> {
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(None)
        }
        Err(e) => Err(Some(one_line_usage_error(&e.render().to_string()))),
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
