//! Fixtures for the differential tests: the probe app (probe.py, packaged as a wheel by
//! make_wheel.py with a console script and a plain script, depending on cowsay and on
//! PyYAML with its C extension), built into PEX files by each pex version, in each
//! layout, with each kind of entry point.
//!
//! Like the shared fixtures, every PEX is built once and cached under target/tmp/fixtures
//! behind a file lock. Fixture names carry a hash of probe.py and make_wheel.py, so
//! editing either builds new PEX files instead of reusing stale ones.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{INSTALL_HINT, Kind, PATH, PYTHON, pex_fixture};

const PROBE_PY: &str = include_str!("probe.py");
const MAKE_WHEEL_PY: &str = include_str!("make_wheel.py");

/// The wheel's file name (make_wheel.py's NAME and VERSION).
const WHEEL: &str = "probe-1.0-py3-none-any.whl";

/// How the PEX starts the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `-c probe`: the wheel's console script (`probe = probe.main:main`).
    Console,
    /// `-e probe.main`: the module run as `__main__`.
    Module,
    /// `-m probe.main:main`: a function.
    Function,
    /// `--script probe-script`: the wheel's plain script (`.data/scripts`).
    Script,
    /// No entry point: the PEX is an interpreter (`app.pex -c CODE`, `app.pex -m MOD`).
    Interpreter,
    /// `-c probe` with `--inject-args` and `--inject-env` frozen into PEX-INFO.
    Inject,
}

impl Entry {
    pub const ALL: [Entry; 6] = [
        Entry::Console,
        Entry::Module,
        Entry::Function,
        Entry::Script,
        Entry::Interpreter,
        Entry::Inject,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entry::Console => "console",
            Entry::Module => "module",
            Entry::Function => "function",
            Entry::Script => "script",
            Entry::Interpreter => "interpreter",
            Entry::Inject => "inject",
        }
    }

    /// The pex flags that make this entry point (all accepted by pex 2.1.137 and newer).
    pub fn flags(self) -> Vec<&'static str> {
        match self {
            Entry::Console => vec!["-c", "probe"],
            Entry::Module => vec!["-e", "probe.main"],
            Entry::Function => vec!["-m", "probe.main:main"],
            Entry::Script => vec!["--script", "probe-script"],
            Entry::Interpreter => vec![],
            Entry::Inject => vec![
                "-c",
                "probe",
                "--inject-args",
                INJECT_ARGS,
                "--inject-env",
                INJECT_ENV,
            ],
        }
    }
}

/// `--inject-args` of [`Entry::Inject`] (pex splits it like a shell).
pub const INJECT_ARGS: &str = "injected 'two words'";
/// `--inject-env` of [`Entry::Inject`].
pub const INJECT_ENV: &str = "INJECTED=from-pex-info";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures")
}

/// A short hash of the probe's sources: part of every fixture name.
fn probe_hash() -> String {
    let mut bytes = PROBE_PY.as_bytes().to_vec();
    bytes.extend_from_slice(MAKE_WHEEL_PY.as_bytes());
    pexinit::pex::manifest::sha256_bytes(&bytes)[..12].to_owned()
}

/// The probe's wheel, written once (under a lock) by make_wheel.py.
pub fn probe_wheel() -> PathBuf {
    let dir = fixtures_dir().join(format!("probe-wheel-{}", probe_hash()));
    let wheel = dir.join(WHEEL);
    if wheel.exists() {
        return wheel;
    }
    fs::create_dir_all(&dir).expect("probe wheel dir");
    let lock = File::create(dir.join(".lock")).expect("lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock probe wheel");
    if wheel.exists() {
        return wheel;
    }
    let src = dir.join("src");
    fs::create_dir_all(&src).expect("probe src dir");
    fs::write(src.join("probe.py"), PROBE_PY).expect("write probe.py");
    fs::write(src.join("make_wheel.py"), MAKE_WHEEL_PY).expect("write make_wheel.py");
    let out = Command::new(PYTHON)
        .arg(src.join("make_wheel.py"))
        .arg(src.join("probe.py"))
        .arg(&dir)
        .env_clear()
        .env("PATH", PATH)
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON} make_wheel.py: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success() && wheel.is_file(),
        "make_wheel.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wheel
}

/// The probe PEX with entry point `entry`, built by pex `version` in layout `kind`.
pub fn probe_pex(version: &str, kind: Kind, entry: Entry) -> PathBuf {
    let name = format!("probe-{}-{}", probe_hash(), entry.name());
    pex_fixture(version, kind, &name, || {
        let mut args: Vec<OsString> = vec![probe_wheel().into_os_string()];
        args.extend(entry.flags().into_iter().map(OsString::from));
        args
    })
}

/// A module only PEX_EXTRA_SYS_PATH or an inherited sys.path can make importable
/// (the probe's `extra` word imports it).
pub const EXTRA_MOD: &str = "extra_mod";

/// What one report says about the fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Taken: what run execs.
    Taken(String),
    /// Not taken, and why.
    NotTaken(String),
    /// The report does not say, or not readably.
    Unreadable(String),
}

/// The fast-path verdict of `pexinit doctor --json` and `pexinit env --json`: the one
/// place that reads those reports' fields, so reshaping them means editing only this.
/// Each report must carry `seed.fast_path` (or `fast_path`) as `{"Ok": {...}}` when the
/// fast path is taken, `{"Err": "reason"}` when it is not.
pub fn fast_path_claims(doctor: &Value, env: &Value) -> [(&'static str, Claim); 2] {
    let verdict = |report: &Value| -> Claim {
        let found = ["/seed/fast_path", "/fast_path"]
            .iter()
            .find_map(|p| report.pointer(p).filter(|v| !v.is_null()));
        match found {
            Some(v) if v.get("Ok").is_some() => Claim::Taken(v["Ok"].to_string()),
            Some(v) => match v.get("Err").and_then(Value::as_str) {
                Some(reason) => Claim::NotTaken(reason.to_owned()),
                None => Claim::Unreadable(format!("unreadable fast path verdict {v}")),
            },
            None => Claim::Unreadable(format!(
                "no seed.fast_path in the report (seed: {})",
                report.get("seed").map_or("absent".into(), Value::to_string)
            )),
        }
    };
    [
        ("doctor --json", verdict(doctor)),
        ("env --json", verdict(env)),
    ]
}

/// `pexinit -v run`'s line saying the fast path was taken.
pub const FAST_PATH_TAKEN: &str = "pexinit: info: fast path";
