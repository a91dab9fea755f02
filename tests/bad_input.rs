//! Bad input: one clear line on stderr, the documented exit status, nothing created.
//!
//! Exit statuses (README): 125 pexinit failed (bad flags or config), 126 the program
//! cannot be executed (not a PEX, a directory), 127 the program does not exist.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use support::*;

/// A sandbox whose HOME, TMPDIR and cwd all live inside it, so "nothing created" can
/// be checked by comparing two snapshots of one tree.
struct Case {
    sandbox: Sandbox,
    home: PathBuf,
    tmp: PathBuf,
}

impl Case {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        let home = sandbox.mkdir("home");
        let tmp = sandbox.mkdir("tmp");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
        Case { sandbox, home, tmp }
    }

    fn pexinit(&self, args: &[&str]) -> Command {
        let mut cmd = pexinit();
        cmd.args(args)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .current_dir(self.sandbox.path());
        cmd
    }

    /// Runs `cmd`, asserts the status and a single stderr line containing every
    /// fragment, and that the sandbox is unchanged.
    fn expect_failure(&self, mut cmd: Command, code: i32, fragments: &[&str]) -> Ran {
        let before = self.sandbox.tree();
        let ran = run(&mut cmd);
        assert_eq!(ran.code, Some(code), "{}", ran.describe());
        let lines = ran.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr:\n{}",
            ran.describe()
        );
        assert!(
            lines[0].starts_with("pexinit: error: "),
            "{}",
            ran.describe()
        );
        for fragment in fragments {
            assert!(
                lines[0].contains(fragment),
                "missing {fragment:?}:\n{}",
                ran.describe()
            );
        }
        assert_eq!(
            self.sandbox.tree(),
            before,
            "something was created or removed"
        );
        ran
    }
}

#[test]
fn invalid_yaml_names_the_line() {
    let case = Case::new();
    let config = case
        .sandbox
        .write("bad.yaml", b"python: /usr/bin/python3.11\nenv: [unclosed\n");
    let cmd = case.pexinit(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    case.expect_failure(cmd, 125, &["bad.yaml", "line"]);
}

#[test]
fn unknown_key_names_key_and_line() {
    let case = Case::new();
    let config = case
        .sandbox
        .write("c.yaml", b"python: /usr/bin/python3.11\npyton: x\n");
    let cmd = case.pexinit(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    case.expect_failure(cmd, 125, &["unknown field `pyton`", "line 2"]);
}

#[test]
fn wrong_type_names_key_and_line() {
    let case = Case::new();
    let config = case.sandbox.write("c.yaml", b"env:\n  PORT: [8080]\n");
    let mut cmd = case.pexinit(&["env"]);
    cmd.env("PEXINIT_CONFIG", &config);
    case.expect_failure(cmd, 125, &["env.PORT", "line 2"]);
}

#[test]
fn venv_of_wrong_type_names_key_line_and_choices() {
    let case = Case::new();
    let config = case.sandbox.write("c.yaml", b"log: warn\nvenv: 3\n");
    let mut cmd = case.pexinit(&["env"]);
    cmd.env("PEXINIT_CONFIG", &config);
    case.expect_failure(cmd, 125, &["venv", "line 2", "a list of PEX file paths"]);
}

#[test]
fn unreadable_config() {
    let case = Case::new();
    let config = case
        .sandbox
        .write("secret.yaml", b"python: /usr/bin/python3.11\n");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let cmd = as_user(
        65534,
        65534,
        &case.pexinit(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--",
            "/bin/true",
        ]),
    );
    case.expect_failure(
        cmd,
        125,
        &["secret.yaml", "cannot read", "Permission denied"],
    );

    // A directory where the file should be is just as unreadable.
    let dir = case.sandbox.mkdir("conf.d");
    let cmd = case.pexinit(&["env", "--config", dir.to_str().unwrap()]);
    case.expect_failure(cmd, 125, &["conf.d", "cannot read"]);

    let cmd = case.pexinit(&["env", "--config", "/nonexistent/pexinit.yaml"]);
    case.expect_failure(cmd, 125, &["/nonexistent/pexinit.yaml", "cannot read"]);
}

#[test]
fn missing_program() {
    let case = Case::new();
    case.expect_failure(case.pexinit(&["run"]), 125, &["PROGRAM", "usage"]);
    case.expect_failure(case.pexinit(&["run", "--"]), 125, &["PROGRAM", "usage"]);
    case.expect_failure(
        case.pexinit(&["run", "--", "no-such-program-x"]),
        127,
        &["no-such-program-x", "not found"],
    );
    case.expect_failure(
        case.pexinit(&["run", "--", "./missing.pex"]),
        127,
        &["missing.pex"],
    );
}

#[test]
fn a_pex_that_is_not_a_zip() {
    let case = Case::new();
    case.sandbox
        .write("app.pex", b"#!/usr/bin/env python3.11\nprint('hello')\n");
    case.expect_failure(
        case.pexinit(&["run", "--", "app.pex"]),
        126,
        &["app.pex", "not a zip"],
    );
}

#[test]
fn a_corrupt_zip() {
    let case = Case::new();
    let good = fs::read(cowsay(PEX_BUGGY, Kind::Zipapp)).unwrap();
    // Cut the central directory off: the local headers remain, the archive is unreadable.
    case.sandbox.write("cut.pex", &good[..good.len() / 2]);
    case.expect_failure(
        case.pexinit(&["run", "--", "./cut.pex"]),
        126,
        &["cut.pex", "not a zip"],
    );

    // A valid zip that is not a PEX.
    let mut garbled = good.clone();
    let at = garbled
        .windows(8)
        .rposition(|w| w == b"PEX-INFO")
        .expect("PEX-INFO in the central directory");
    garbled[at..at + 8].copy_from_slice(b"NOT-INFO");
    case.sandbox.write("renamed.pex", &garbled);
    case.expect_failure(
        case.pexinit(&["run", "--", "./renamed.pex"]),
        126,
        &["renamed.pex", "without PEX-INFO"],
    );
}

#[test]
fn a_directory_without_pex_info() {
    let case = Case::new();
    case.sandbox.mkdir("app.pex");
    case.expect_failure(
        case.pexinit(&["run", "--", "./app.pex"]),
        126,
        &["app.pex", "PEX-INFO"],
    );
    case.sandbox.mkdir("plain");
    case.expect_failure(
        case.pexinit(&["run", "--", "./plain"]),
        126,
        &["plain", "directory"],
    );
}

#[test]
fn home_symlink_loop_falls_back_with_one_warning() {
    let case = Case::new();
    let l1 = case.sandbox.join("l1");
    let l2 = case.sandbox.join("l2");
    std::os::unix::fs::symlink(&l2, &l1).unwrap();
    std::os::unix::fs::symlink(&l1, &l2).unwrap();

    // env plans and prints: one warning naming the loop, nothing created.
    let before = case.sandbox.tree();
    let mut cmd = case.pexinit(&["env", "--json"]);
    cmd.env("HOME", &l1);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    let lines = ran.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", ran.describe());
    assert!(
        lines[0].starts_with("pexinit: warning: HOME=") && lines[0].contains("symlink loop"),
        "{}",
        ran.describe()
    );
    let fallback = case.tmp.join("pexinit-0/home");
    assert_eq!(ran.json()["env"]["HOME"], fallback.to_str().unwrap());
    assert_eq!(case.sandbox.tree(), before, "env must not create anything");

    // run takes the private fallback (0700) and the app works.
    let pex = cowsay(PEX_BUGGY, Kind::Zipapp);
    let mut cmd = case.pexinit(&["run", "--", pex.to_str().unwrap(), "-t", "loop"]);
    cmd.env("HOME", &l1);
    let ran = run(&mut cmd);
    assert_cowsay_said(&ran, "loop");
    assert_eq!(
        fs::metadata(&fallback).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_single_cache(case.sandbox.path(), &fallback.join(".cache/pex"));
}

#[test]
fn hijacked_fallback_directory_is_refused() {
    // Another user planted the predictable fallback path: refuse, touch nothing there.
    let case = Case::new();
    let planted = case.sandbox.mkdir("tmp/pexinit-0");
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let mut cmd = case.pexinit(&["run", "--", "/bin/true"]);
    cmd.env("HOME", "/");
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(125), "{}", ran.describe());
    assert!(
        ran.stderr.contains("owned by uid 65534"),
        "{}",
        ran.describe()
    );
    assert!(!planted.join("home").exists());
}
