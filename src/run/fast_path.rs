//! The seeded fast path: exec a seeded venv directly, skipping pex's zip bootstrap.
//!
//! A warm `--venv` PEX still spends 70–170 ms in Python opening the zip and importing
//! pex's bootstrap, only to exec `<venv>/pex` (docs/BENCHMARKS.md). When the seed manifest
//! says the venv for this very PEX (same `pex_hash`) and interpreter (same realpath) is
//! there, pexinit execs exactly what the bootstrap would:
//!
//! | pex | argv |
//! |---|---|
//! | ≤ 2.27 | `<venv>/bin/python [inject_python_args] [-sE if hermetic] <venv>/pex ARGS` |
//! | newer | `<#! interpreter of <venv>/pex> [inject_python_args] [its #! flag] <venv>/pex ARGS` |
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
use crate::pex::manifest::{Entry, ExecStyle, Manifest, RunMode};

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

/// What `run` execs instead of the bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct FastPath {
    pub executable: PathBuf,
    pub argv: Vec<String>,
    #[serde(skip)]
    pub argv_os: Vec<OsString>,
    /// Added to the program's environment.
    pub env: Vec<(String, String)>,
    /// The venv entry, spelled through the runtime PEX_ROOT.
    pub venv: PathBuf,
}

/// Everything the fast-path decision depends on.
pub struct Request<'a> {
    pub manifest: &'a Manifest,
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
    let Some(venv) = &entry.venv else {
        return Err(
            "the PEX is seeded as a zipapp: pex runs it warm from the seed, no venv to exec \
             (build it with --venv, or set `venv: true` for a PEX built with --include-tools)"
                .into(),
        );
    };
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
    if let Some(rc) = pexrc_in_effect(req) {
        return Err(format!(
            "{} exists and may set PEX_* variables; set PEX_IGNORE_RCFILES=1 to allow the fast path",
            rc.display()
        ));
    }
    let venv_dir = req.pex_root.join(&venv.dir);
    let venv_pex = venv_dir.join("pex");
    match fs::metadata(&venv_pex) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        _ => {
            return Err(format!(
                "the seeded venv {} is missing or not executable; re-run `pexinit seed`",
                venv_pex.display()
            ));
        }
    }
    let mut argv_os: Vec<OsString> = Vec::new();
    let python_args = entry
        .inject_python_args
        .iter()
        .chain(req.interpreter_args)
        .map(OsString::from);
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
            let shebang = read_first_line(&venv_pex).ok_or_else(|| {
                format!(
                    "{} has no #! line; re-run `pexinit seed`",
                    venv_pex.display()
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
    argv_os.push(venv_pex.into());
    argv_os.extend(req.args.iter().cloned());

    let pex_real = fs::canonicalize(&req.pex.path)
        .map_err(|e| format!("cannot resolve {}: {e}", req.pex.path.display()))?;
    let mut env = vec![("PEX".to_owned(), pex_real.to_string_lossy().into_owned())];
    if venv.last_access_env {
        env.push(("_PEX_CACHE_SET_LAST_ACCESS".to_owned(), "0".to_owned()));
    }
    Ok(FastPath {
        executable,
        argv: argv_os
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        argv_os,
        env,
        venv: venv_dir,
    })
}

/// The manifest entry for this PEX and interpreter, or why none fits.
pub fn matching_entry<'m>(req: &Request<'m>) -> Result<&'m Entry, String> {
    let Some(hash) = req.pex.info.pex_hash.as_deref() else {
        return Err("the PEX has no pex_hash in PEX-INFO".into());
    };
    let Some(entry) = req.manifest.entry(hash) else {
        return Err(format!(
            "the seed has no entry for pex_hash {hash} (seeded: {}); seed this PEX",
            req.manifest
                .entries
                .iter()
                .map(|e| e.pex_hash.as_str())
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
