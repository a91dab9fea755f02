//! Seeded scripts start from bytecode.
//!
//! Python compiles the script it runs (`python SCRIPT`) from its source on every start:
//! only imported modules are read from `__pycache__`. The fast path's scripts are a
//! `--venv` PEX's venv `pex` script (11–18 KB, pex's) and a zipapp's launcher (4–6 KB,
//! ours): compiling them costs every start 0.3–2 ms, more than all of pexinit's own
//! work. So the seed compiles each once, to the checked-hash `.pyc` that Python's own
//! loader looks for next to it, and writes one small script,
//! `.pexinit/launch/bytecode.py`, that `run` starts instead:
//! `PYTHON [FLAGS] bytecode.py SCRIPT ARGS`.
//!
//! `bytecode.py` loads SCRIPT as Python loads a module (`SourceFileLoader.get_code`: the
//! `.pyc` when its hash matches the source, else the source; nothing written) and runs
//! it in its own `__main__`, set up as Python sets it up for `python SCRIPT ARGS`:
//! `sys.argv`, `sys.orig_argv`, `sys.path[0]` (the script's real directory, unless `-P`
//! or `-I`), `__file__` (absolute) and `__loader__`. It leaves no name of its own in
//! `__main__` (no docstring either: that would set `__doc__`), and takes its frame out
//! of an uncaught exception's traceback: a bare `raise` keeps the traceback as set, which
//! holds from Python 3.11 on. For an older interpreter the seed writes neither, and the
//! scripts start from their source as before. What stays visible: one more frame at the
//! bottom of the call stack (`inspect.stack()`). `scripts/check-bytecode-launcher PYTHON…`
//! compares both starts (CPython 3.11, 3.12 and 3.13 identical; 3.10 keeps the frame).
//!
//! The bytecode is validated by the source's hash, never by its mtime: `prime` rewrites
//! a relocated venv's script, and a seed's files are all dated 1980.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{SeedError, io_err, launch::last_line};

/// The script that starts another from its bytecode, relative to the seed root.
pub const LAUNCHER: &str = ".pexinit/launch/bytecode.py";
const LAUNCHER_PY: &str = include_str!("bytecode_launcher.py");

/// Compiles each script named on the command line to the `.pyc` `SourceFileLoader`
/// looks for, checked by the source's hash; prints `compiled` (nothing below 3.11).
const COMPILE: &str = "\
import importlib.util, py_compile, sys
if sys.version_info >= (3, 11):
    for script in sys.argv[1:]:
        py_compile.compile(script, cfile=importlib.util.cache_from_source(script), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    print('compiled')
";

/// Compiles `scripts` and writes the launcher into `root`; `cmd` is the seed's child
/// command (its interpreter, PYTHONHASHSEED=0 for reproducible bytes). Returns the
/// launcher's path relative to the root, or None when the interpreter is older than
/// 3.11 or there is nothing to compile.
pub fn compile(
    mut cmd: Command,
    root: &Path,
    scripts: &[PathBuf],
) -> Result<Option<PathBuf>, SeedError> {
    if scripts.is_empty() {
        return Ok(None);
    }
    let out = cmd
        .arg("-c")
        .arg(COMPILE)
        .args(scripts)
        .output()
        .map_err(io_err(
            "starting python to compile the seeded scripts".to_owned(),
        ))?;
    if !out.status.success() {
        return Err(SeedError::WarmFailed(format!(
            "compiling the seeded scripts failed ({}): {}",
            out.status,
            last_line(&out.stderr)
        )));
    }
    if !String::from_utf8_lossy(&out.stdout).contains("compiled") {
        return Ok(None);
    }
    let target = root.join(LAUNCHER);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    crate::fs::atomic::write(&target, LAUNCHER_PY.as_bytes(), 0o644)
        .map_err(io_err(format!("writing {}", target.display())))?;
    Ok(Some(PathBuf::from(LAUNCHER)))
}
