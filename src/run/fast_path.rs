//! The seeded fast path: start the app from the seed without pex's bootstrap.
//!
//! Two ways, by how the PEX runs: a `--venv` PEX's seeded venv is exec'd as below; a
//! zipapp, packed or loose PEX is started by the launcher `pexinit seed` recorded for it
//! (see `pex::seed::launch`): `PYTHON [inject_python_args] [#! flags] LAUNCHER APP ARGS`.
//!
//! A warm `--venv` PEX still spends 70–170 ms in Python opening the zip and importing
//! pex's bootstrap, only to exec `<venv>/pex` (docs/BENCHMARKS.md). When the seed manifest
//! says the venv for this very PEX (same `pex_hash`) and interpreter (same realpath) is
//! there, pexinit execs exactly what the bootstrap would:
//!
//! | pex | argv |
//! |---|---|
//! | ≤ 2.27 | `<venv>/bin/python [inject_python_args] [-sE if hermetic] [L] <venv>/pex ARGS` |
//! | newer | `<#! interpreter of <venv>/pex> [inject_python_args] [its #! flag] [L] <venv>/pex ARGS` |
//!
//! where `L` is the seed's bytecode launcher (`SEED/.pexinit/launch/bytecode.py`, when
//! the seed has one): it runs the same script from the bytecode the seed compiled for
//! it, as Python runs a script (see `pex::seed::bytecode`), and so does a zipapp's
//! launcher start: `PYTHON [inject_python_args] [#! flags] [L] LAUNCHER APP ARGS`.
//!
//! with `PEX=realpath(app.pex)` added to the environment, as the bootstrap does, and
//! `_PEX_CACHE_SET_LAST_ACCESS=0` when the venv's `__main__.py` knows that variable
//! (it pops it before the app runs), so a read-only seed needs no write at all.
//! `<venv>` is spelled through the PEX_ROOT pex would use, so `sys.executable`,
//! `sys.path` and `VIRTUAL_ENV` are byte-identical to a run through the bootstrap.
//!
//! Anything that could make pex choose differently sends `run` down the normal path:
//! [`plan`] returns the reason, which `doctor` prints.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::envmap::EnvMap;
use crate::pex::info::{Pex, parse_shebang};
use crate::pex::manifest::{
    Entry, EntryKind, ExecStyle, LauncherEntry, Manifest, RunMode, VenvEntry,
};

/// pex variables that change which interpreter or venv the bootstrap picks (pex's own
/// `--sh-boot` fast path gives up on the same ones), or that skip the venv altogether.
const DISQUALIFYING_VARS: [&str; 6] = [
    "PEX_PYTHON",
    "PEX_PYTHON_PATH",
    "PEX_PATH",
    "PEX_TOOLS",
    "PEX_UNZIP",
    "PEX_INHERIT_PATH",
];

/// How the fast path starts the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Starts {
    /// A `--venv` PEX: its seeded venv, exec'd as the bootstrap would.
    Venv,
    /// A zipapp, packed or loose PEX: the seed's launcher replays pex's set-up.
    Launcher,
}

/// What `run` execs instead of the bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct FastPath {
    pub starts: Starts,
    pub executable: PathBuf,
    pub argv: Vec<String>,
    #[serde(skip)]
    pub argv_os: Vec<OsString>,
    /// Added to the program's environment.
    pub env: Vec<(String, String)>,
    /// The venv entry, spelled through the runtime PEX_ROOT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venv: Option<PathBuf>,
    /// The launcher in the seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launcher: Option<PathBuf>,
    /// The seed's bytecode launcher, when the script starts from its bytecode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_bytecode: Option<PathBuf>,
    /// The seed entries this start uses, whose `.last-access` files `pex3 cache prune`
    /// judges: `run` refreshes them when it can write the seed (pex itself would,
    /// through its bootstrap). Not looked at here: only a writable seed needs them.
    #[serde(skip)]
    pub entries: Vec<PathBuf>,
}

impl FastPath {
    /// A launcher reads the seed in place and writes nothing: it needs no PEX_ROOT
    /// (no link farm) at all. A venv still runs pex code that opens PEX_ROOT.
    pub fn needs_pex_root(&self) -> bool {
        self.starts == Starts::Venv
    }

    /// What is exec'd, for logs and `doctor`.
    pub fn describe(&self) -> String {
        let what = match (&self.venv, &self.launcher) {
            (Some(venv), _) => format!("exec the seeded venv {}", venv.display()),
            (None, Some(launcher)) => format!("exec the seeded launcher {}", launcher.display()),
            (None, None) => format!("exec {}", self.executable.display()),
        };
        match self.from_bytecode {
            Some(_) => format!("{what} (from bytecode)"),
            None => what,
        }
    }
}

/// Everything the fast-path decision depends on.
pub struct Request<'a> {
    pub manifest: &'a Manifest,
    /// The seed directory itself (physical): where its files are checked and launchers
    /// are read.
    pub seed: &'a Path,
    /// The PEX_ROOT pex will see (the seed itself, or a farm of it).
    pub pex_root: &'a Path,
    pub pex: &'a Pex,
    /// The interpreter `run` would start the PEX with (any spelling; realpath'd here).
    pub interpreter: &'a Path,
    /// Interpreter options before the PEX path (from its `#!` line).
    pub interpreter_args: &'a [String],
    /// The program's environment.
    pub env: &'a EnvMap,
    /// Arguments after the PEX path.
    pub args: &'a [OsString],
}

/// The fast path for this run, or why there is none (one line, for `doctor`).
pub fn plan(req: &Request<'_>) -> Result<FastPath, String> {
    let entry = matching_entry(req)?;
    if let Some(venv) = &entry.venv {
        return venv_plan(req, entry, venv);
    }
    if let Some(launcher) = &entry.launcher {
        return launcher_plan(req, entry, launcher);
    }
    Err(match &entry.no_launcher {
        Some(why) => format!("{why}; pex's bootstrap runs it"),
        None => "the seed holds no launcher for this PEX (seeded by an older pexinit); re-run `pexinit seed`".into(),
    })
}

fn venv_plan(req: &Request<'_>, entry: &Entry, venv: &VenvEntry) -> Result<FastPath, String> {
    if let Some(var) = DISQUALIFYING_VARS
        .iter()
        .find(|v| req.env.get(v).is_some_and(|x| !x.is_empty()))
    {
        return Err(format!(
            "{var} is set: pex may choose another interpreter or venv, so the bootstrap decides"
        ));
    }
    if entry.mode == RunMode::VenvByEnv
        && !req
            .env
            .get("PEX_VENV")
            .is_some_and(|v| is_true(&v.to_string_lossy()))
    {
        return Err("the PEX is seeded in venv mode (`venv: true`) but PEX_VENV is not set".into());
    }
    no_pexrc(req)?;
    // Judged on the seed itself: a link farm in front of it is made only by `run`.
    let seeded_pex = req.seed.join(&venv.dir).join("pex");
    if !is_executable_file(&seeded_pex) {
        return Err(format!(
            "the seeded venv {} is missing or not executable; re-run `pexinit seed`",
            seeded_pex.display()
        ));
    }
    let venv_dir = req.pex_root.join(&venv.dir);
    let venv_pex = venv_dir.join("pex");
    let mut argv_os: Vec<OsString> = Vec::new();
    let python_args = python_args(req, entry);
    let executable = match venv.exec_style {
        ExecStyle::VenvPython => {
            let python = venv_dir.join("bin/python");
            argv_os.push(python.clone().into());
            argv_os.extend(python_args);
            if venv.hermetic {
                argv_os.push("-sE".into());
            }
            python
        }
        ExecStyle::Shebang => {
            let shebang = read_first_line(&seeded_pex).ok_or_else(|| {
                format!(
                    "{} has no #! line; re-run `pexinit seed`",
                    seeded_pex.display()
                )
            })?;
            // pex splits its own #! line at the first space: interpreter, one argument.
            let program = PathBuf::from(&shebang.program);
            argv_os.push(program.clone().into());
            argv_os.extend(python_args);
            if !shebang.args.is_empty() {
                argv_os.push(shebang.args.join(" ").into());
            }
            program
        }
    };
    let from_bytecode = bytecode_launcher(req);
    argv_os.extend(from_bytecode.clone().map(PathBuf::into_os_string));
    argv_os.push(venv_pex.into());
    argv_os.extend(req.args.iter().cloned());

    // A PEX started from its seed alone has no file to resolve: PEX names it as given.
    let pex_real = match req.pex.in_seed_only {
        true => req.pex.path.clone(),
        false => fs::canonicalize(&req.pex.path)
            .map_err(|e| format!("cannot resolve {}: {e}", req.pex.path.display()))?,
    };
    let mut env = vec![("PEX".to_owned(), pex_real.to_string_lossy().into_owned())];
    if venv.last_access_env {
        env.push(("_PEX_CACHE_SET_LAST_ACCESS".to_owned(), "0".to_owned()));
    }
    Ok(FastPath {
        starts: Starts::Venv,
        executable,
        argv: lossy(&argv_os),
        argv_os,
        env,
        venv: Some(venv_dir),
        launcher: None,
        from_bytecode,
        entries: entry_dirs(req, entry),
    })
}

/// `PYTHON [inject_python_args] [#! flags] [L] SEED/.pexinit/launch/X.py PEX ARGS`: the
/// launcher replays what pex's bootstrap recorded at seed time, so anything that would
/// make the bootstrap act differently at run time sends `run` down the normal path.
fn launcher_plan(
    req: &Request<'_>,
    entry: &Entry,
    launcher: &LauncherEntry,
) -> Result<FastPath, String> {
    if let Some(var) = PEX_VARIABLES
        .iter()
        .find(|v| req.env.get(v).is_some_and(|x| !x.is_empty()))
    {
        return Err(format!(
            "{var} is set: pex acts on it when it starts the PEX, so its bootstrap runs"
        ));
    }
    if let Some(var) = ["PYTHONPATH", "PYTHONHOME"]
        .iter()
        .find(|v| req.env.get(v).is_some_and(|x| !x.is_empty()))
    {
        return Err(format!(
            "{var} is set: pex decides what of it reaches sys.path, so its bootstrap runs"
        ));
    }
    if launcher.entry == EntryKind::Interpreter && !(req.args.len() >= 2 && req.args[0] == "-m") {
        return Err(
            "the PEX has no entry point and is not started as `PEX -m MODULE`: pex's interpreter mode runs it"
                .into(),
        );
    }
    no_pexrc(req)?;
    let file = req.seed.join(&launcher.file);
    if !fs::metadata(&file).is_ok_and(|m| m.is_file()) {
        return Err(format!(
            "the seed's launcher {} is missing; re-run `pexinit seed`",
            file.display()
        ));
    }
    let mut argv_os: Vec<OsString> = vec![req.interpreter.as_os_str().to_owned()];
    argv_os.extend(python_args(req, entry));
    let from_bytecode = bytecode_launcher(req);
    argv_os.extend(from_bytecode.clone().map(PathBuf::into_os_string));
    argv_os.push(file.clone().into());
    argv_os.push(req.pex.path.clone().into());
    argv_os.extend(req.args.iter().cloned());
    Ok(FastPath {
        starts: Starts::Launcher,
        executable: req.interpreter.to_path_buf(),
        argv: lossy(&argv_os),
        argv_os,
        env: Vec::new(),
        venv: None,
        launcher: Some(file),
        from_bytecode,
        entries: entry_dirs(req, entry),
    })
}

/// The seed's bytecode launcher, which starts the script after it (a venv's `pex`
/// script, a launcher) from the bytecode the seed compiled for it. None for a seed
/// without one (an older pexinit, Python < 3.11): Python compiles the script's source.
fn bytecode_launcher(req: &Request<'_>) -> Option<PathBuf> {
    let rel = req.manifest.bytecode_launcher.as_ref()?;
    let file = req.seed.join(rel);
    fs::metadata(&file)
        .is_ok_and(|m| m.is_file())
        .then_some(file)
}

/// The variables pex's runtime reads (pex's `variables.py`), less PEX_ROOT (pexinit's
/// own export; a launcher opens no cache) and PEX_IGNORE_RCFILES (it only disables
/// what [`no_pexrc`] checks). Any of them set sends `run` through the bootstrap; other
/// `PEX_*` names mean nothing to pex, and the launcher strips them as pex does.
const PEX_VARIABLES: [&str; 28] = [
    "PEX_ALWAYS_CACHE",
    "PEX_COVERAGE",
    "PEX_COVERAGE_FILENAME",
    "PEX_DISABLE_VARIABLES",
    "PEX_EMIT_WARNINGS",
    "PEX_EXTRA_SYS_PATH",
    "PEX_FORCE_LOCAL",
    "PEX_IGNORE_ERRORS",
    "PEX_INHERIT_PATH",
    "PEX_INTERPRETER",
    "PEX_INTERPRETER_HISTORY",
    "PEX_INTERPRETER_HISTORY_FILE",
    "PEX_MAX_INSTALL_JOBS",
    "PEX_MODULE",
    "PEX_MULTIPROCESSING_START_METHOD",
    "PEX_PATH",
    "PEX_PROFILE",
    "PEX_PROFILE_FILENAME",
    "PEX_PROFILE_SORT",
    "PEX_PYTHON",
    "PEX_PYTHON_PATH",
    "PEX_SCRIPT",
    "PEX_TEARDOWN_VERBOSE",
    "PEX_TOOLS",
    "PEX_UNZIP",
    "PEX_VENV",
    "PEX_VENV_BIN_PATH",
    "PEX_VERBOSE",
];

/// Interpreter options pex puts before the PEX: PEX-INFO's, then the `#!` line's.
fn python_args(req: &Request<'_>, entry: &Entry) -> Vec<OsString> {
    entry
        .inject_python_args
        .iter()
        .chain(req.interpreter_args)
        .map(OsString::from)
        .collect()
}

fn no_pexrc(req: &Request<'_>) -> Result<(), String> {
    match pexrc_in_effect(req) {
        Some(rc) => Err(format!(
            "{} exists and may set PEX_* variables; set PEX_IGNORE_RCFILES=1 to allow the fast path",
            rc.display()
        )),
        None => Ok(()),
    }
}

/// The seed's cache entries `entry` runs from.
fn entry_dirs(req: &Request<'_>, entry: &Entry) -> Vec<PathBuf> {
    entry
        .unzipped
        .iter()
        .chain(entry.venv.as_ref().map(|v| &v.dir))
        .map(|rel| req.seed.join(rel))
        .collect()
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn lossy(argv: &[OsString]) -> Vec<String> {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The manifest entry for this PEX and interpreter, or why none fits.
pub fn matching_entry<'m>(req: &Request<'m>) -> Result<&'m Entry, String> {
    let Some(hash) = req.pex.info.pex_hash.as_deref() else {
        return Err("the PEX has no pex_hash in PEX-INFO".into());
    };
    let Some(entry) = req.manifest.entry(hash, req.pex.layout.into()) else {
        return Err(format!(
            "the seed has no entry for pex_hash {hash} as a {:?} PEX (seeded: {}); seed this PEX",
            req.pex.layout,
            req.manifest
                .entries
                .iter()
                .map(|e| format!("{} ({:?})", e.pex_hash, e.layout))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let interpreter = fs::canonicalize(req.interpreter)
        .map_err(|e| format!("cannot resolve {}: {e}", req.interpreter.display()))?;
    if interpreter != req.manifest.python {
        return Err(format!(
            "the interpreter is {} but the seed was built with {} (pex's venv hash includes it); \
             pass --python {} or re-seed",
            interpreter.display(),
            req.manifest.python.display(),
            req.manifest.python.display()
        ));
    }
    Ok(entry)
}

/// pex reads `/etc/pexrc`, `~/.pexrc` and `.pexrc` next to the PEX unless
/// PEX_IGNORE_RCFILES is true; any of them may set PEX_PYTHON and friends.
fn pexrc_in_effect(req: &Request<'_>) -> Option<PathBuf> {
    if req
        .env
        .get("PEX_IGNORE_RCFILES")
        .is_some_and(|v| is_true(&v.to_string_lossy()))
    {
        return None;
    }
    let mut candidates = vec![PathBuf::from("/etc/pexrc")];
    if let Some(home) = req.env.get("HOME") {
        candidates.push(Path::new(home).join(".pexrc"));
    }
    if let Some(dir) = req.pex.path.parent() {
        candidates.push(dir.join(".pexrc"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn is_true(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "true")
}

fn read_first_line(path: &Path) -> Option<crate::pex::info::Shebang> {
    let file = File::open(path).ok()?;
    let mut line = Vec::new();
    BufReader::new(file.take(512))
        .read_until(b'\n', &mut line)
        .ok()?;
    // pex's own parser takes everything after the first space as one argument; ours
    // splits on whitespace, which is the same for the single flag pex writes (`-I`).
    parse_shebang(&line)
}
