//! Fixtures for the seed tests: an app that prints what it was started with, built by
//! each pex version in each layout, cached next to the shared fixtures.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{Kind, pex_fixture};

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

/// `envapp.pex` (entry point `envapp.main:main`, with cowsay as a dependency so there is
/// a wheel to install) built by pex `version` as `kind`.
pub fn envapp(version: &str, kind: Kind) -> PathBuf {
    pex_fixture(version, kind, "envapp", || {
        let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures/envapp-src");
        fs::create_dir_all(src.join("envapp")).expect("src dir");
        fs::write(src.join("envapp/__init__.py"), "").expect("write");
        fs::write(src.join("envapp/main.py"), ENVAPP).expect("write");
        vec![
            "cowsay".into(),
            "-D".into(),
            src.into_os_string(),
            "-e".into(),
            OsString::from("envapp.main:main"),
        ]
    })
}
