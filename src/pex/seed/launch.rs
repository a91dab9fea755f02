//! Launchers: how a seeded zipapp, packed or loose PEX starts without pex's bootstrap.
//!
//! pex's bootstrap spends most of a warm start opening the PEX, importing itself and
//! identifying the interpreter (which it caches under `interpreters/`, keyed on the
//! kernel and on the python binary's hash: on another node it writes there, and a
//! read-only seed crashes). What it produces is small: a `sys.path`, a `sys.argv[0]`, a
//! few environment changes, and a call of the entry point. So the seed runs each PEX once
//! more with a capture module as its entry point (`capture.py`, on PEX_EXTRA_SYS_PATH):
//! pex sets everything up as for the real entry point, and the capture writes a launcher
//! (`launcher.py` with the recorded data) to `.pexinit/launch/<pex hash>-<layout>.py`.
//!
//! The launcher imports from the seed's own `installed_wheels` and `unzipped_pexes`
//! (nothing is copied), resolves its paths from where the seed and the PEX are at run
//! time, and opens no zip. When pex does something it cannot replay exactly (an
//! inherited sys.path, a file script run with pex's module globals…), no launcher is
//! written and the reason is kept in the manifest for `doctor`.
//!
//! A `--venv` PEX needs no recording: pex's bootstrap only execs its venv's `pex`
//! script, and so does the fast path. Both kinds of script start from bytecode (see
//! [`super::bytecode`]).

use std::fs;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::pex::manifest::{EntryKind, LauncherEntry, RuntimeInfo};

use super::{Item, SeedError, io_err};

/// Where launchers live, relative to the seed root. pex never looks at names it does not
/// know at the root of its cache, and `pex3 cache prune` leaves them alone.
pub const LAUNCH_DIR: &str = ".pexinit/launch";
/// The seed's own top-level directory (launchers; copied by `prime`).
pub const SEED_DIR: &str = ".pexinit";

const CAPTURE_MODULE: &str = "_pexinit_seed_capture";
const CAPTURE_PY: &str = include_str!("capture.py");
const LAUNCHER_PY: &str = include_str!("launcher.py");

/// What the capture found: a launcher, or why there is none.
pub enum Captured {
    Launcher(LauncherEntry),
    NotReplayable(String),
}

#[derive(Deserialize)]
struct Summary {
    launcher: Option<String>,
    entry: Option<EntryKind>,
    why_not: Option<String>,
}

/// Runs `item`'s PEX through pex's bootstrap with the capture module as its entry point;
/// `cmd` is the seed's child command (interpreter, clean environment, PEX_ROOT).
pub fn capture(
    mut cmd: Command,
    root: &Path,
    item: &Item,
    runtime: &RuntimeInfo,
    scratch: &Path,
) -> Result<Captured, SeedError> {
    let dir = scratch.join("capture");
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let module = dir.join(format!("{CAPTURE_MODULE}.py"));
    fs::write(&module, CAPTURE_PY).map_err(io_err(format!("writing {}", module.display())))?;
    let name = format!("{}-{}.py", item.pex_hash, layout_name(item));
    let rel = Path::new(LAUNCH_DIR).join(&name);
    let summary_path = dir.join("summary.json");
    let request = serde_json::json!({
        "pex": item.pex,
        "root": root,
        "extra": dir,
        "out": root.join(&rel),
        "summary": summary_path,
        "template": LAUNCHER_PY,
        "pex_info": runtime.raw,
    });
    let request_path = dir.join("request.json");
    fs::write(&request_path, request.to_string())
        .map_err(io_err(format!("writing {}", request_path.display())))?;
    let out = cmd
        .env("PEX_MODULE", format!("{CAPTURE_MODULE}:main"))
        .env("PEX_EXTRA_SYS_PATH", &dir)
        .env("_PEXINIT_CAPTURE", &request_path)
        .arg(&item.pex)
        .output()
        .map_err(io_err(format!("starting {}", item.pex.display())))?;
    let summary: Summary = fs::read(&summary_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            SeedError::WarmFailed(format!(
                "recording how pex starts {} failed ({}): {}",
                item.pex.display(),
                out.status,
                last_line(&out.stderr)
            ))
        })?;
    match (summary.launcher, summary.entry, summary.why_not) {
        (Some(_), Some(entry), None) => Ok(Captured::Launcher(LauncherEntry { file: rel, entry })),
        (_, _, Some(why)) => Ok(Captured::NotReplayable(why)),
        _ => Err(SeedError::WarmFailed(format!(
            "recording how pex starts {} gave an incomplete answer",
            item.pex.display()
        ))),
    }
}

fn layout_name(item: &Item) -> &'static str {
    match item.layout {
        crate::pex::info::Layout::Zipapp => "zipapp",
        crate::pex::info::Layout::Packed => "packed",
        crate::pex::info::Layout::Loose => "loose",
    }
}

pub(super) fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}
