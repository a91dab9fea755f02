//! Fixtures for the seed tests: an app that prints what it was started with, built by
//! each pex version in each layout, cached next to the shared fixtures.

#![allow(dead_code)]

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{PATH, PYTHON, pex_venv};

/// Prints argv, sys.path, sys.executable, sys.prefix, the interpreter flags and the
/// whole environment as JSON: the differential tests compare this output.
const ENVAPP: &str = r#"import json, os, sys

def main():
    print(json.dumps({
        "argv": sys.argv,
        "path": sys.path,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "flags": [sys.flags.ignore_environment, sys.flags.no_user_site, sys.flags.isolated, int(sys.flags.safe_path)],
        "env": dict(sorted(os.environ.items())),
    }, indent=1, sort_keys=True))
"#;

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fs::create_dir_all(&dir).expect("fixtures dir");
    dir
}

/// How the env app is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Zipapp,
    Venv,
    Packed,
    Loose,
    /// A zipapp with `--include-tools` (for `venv: true`).
    Tools,
}

impl AppKind {
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Zipapp => "zipapp",
            AppKind::Venv => "venv",
            AppKind::Packed => "packed",
            AppKind::Loose => "loose",
            AppKind::Tools => "tools",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            AppKind::Zipapp => &[],
            AppKind::Venv => &["--venv"],
            AppKind::Packed => &["--layout", "packed"],
            AppKind::Loose => &["--layout", "loose"],
            AppKind::Tools => &["--include-tools"],
        }
    }
}

/// `envapp.pex` (entry point `envapp.main:main`, with cowsay as a dependency so there is
/// a wheel to install) built by pex `version` as `kind`.
pub fn envapp(version: &str, kind: AppKind) -> PathBuf {
    let venv = pex_venv(version);
    let dir = fixtures_dir();
    let out = dir.join(format!("envapp-{version}-{}.pex", kind.name()));
    let done = out.with_extension("pex.done");
    if done.exists() {
        return out;
    }
    let lock = File::create(dir.join(format!(".envapp-{version}-{}.lock", kind.name())))
        .expect("lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if done.exists() {
        return out;
    }
    let src = dir.join("envapp-src");
    fs::create_dir_all(src.join("envapp")).expect("src dir");
    fs::write(src.join("envapp/__init__.py"), "").expect("write");
    fs::write(src.join("envapp/main.py"), ENVAPP).expect("write");
    let _ = fs::remove_file(&out);
    let _ = fs::remove_dir_all(&out);
    let output = Command::new(venv.join("bin/pex"))
        .args(["cowsay", "-D"])
        .arg(&src)
        .args(["-e", "envapp.main:main", "--python", PYTHON, "-o"])
        .arg(&out)
        .args(kind.flags())
        .env_clear()
        .env("PATH", PATH)
        .env("PEX_ROOT", dir.join(format!("build-root-{version}")))
        .output()
        .expect("start pex");
    assert!(
        output.status.success(),
        "building {}: {}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    // pex creates loose and packed outputs mode 0700: other uids must read them.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&out)
        .status()
        .expect("chmod");
    File::create(&done).expect("done marker");
    out
}
