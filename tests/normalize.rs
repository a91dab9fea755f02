//! `pexinit run` against real PEX files built by the buggy pex 2.20.3 runtime: for every
//! way HOME / XDG_CACHE_HOME / PEX_ROOT arrive in containers, the app runs under pexinit
//! and the cache lands in one physical PEX_ROOT. Where the raw runtime breaks, the test
//! first proves it does, so each case demonstrates the bug it guards against.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

/// One way the environment can arrive, built in its own sandbox.
struct Scenario {
    sandbox: Sandbox,
    env: Vec<(&'static str, PathBuf)>,
    cwd: PathBuf,
    /// Run as this uid:gid (via setpriv).
    user: Option<(u32, u32)>,
    /// Replace /etc/passwd with this file (via a private mount namespace).
    passwd: Option<PathBuf>,
    /// Where pexinit must put the cache (physical).
    pex_root: PathBuf,
    /// The HOME pexinit must export (physical).
    home: PathBuf,
}

impl Scenario {
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = clean_command(program);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.current_dir(&self.cwd);
        cmd
    }

    /// Wraps `cmd` with the scenario's passwd namespace and uid switch.
    fn wrap(&self, cmd: Command) -> Command {
        let cmd = match self.user {
            Some((uid, gid)) => as_user(uid, gid, &cmd),
            None => cmd,
        };
        match &self.passwd {
            Some(passwd) => with_passwd(passwd, &cmd),
            None => cmd,
        }
    }

    fn raw(&self, pex: &Path) -> Ran {
        let mut cmd = self.command(PYTHON);
        cmd.arg(pex).args(["-t", "raw"]);
        run(&mut self.wrap(cmd))
    }

    fn pexinit(&self, args: &[&std::ffi::OsStr]) -> Ran {
        let mut cmd = self.command(pexinit_bin());
        cmd.args(args);
        run(&mut self.wrap(cmd))
    }

    fn pexinit_run(&self, pex: &Path) -> Ran {
        self.pexinit(&[
            "run".as_ref(),
            "--".as_ref(),
            pex.as_os_str(),
            "-t".as_ref(),
            "moo".as_ref(),
        ])
    }
}

/// `<t>/a/b/c` and a link `<t>/lnk -> <t>/a/b/c`, as in the pex bug report.
fn linked_dir(sandbox: &Sandbox) -> (PathBuf, PathBuf) {
    let real = sandbox.mkdir("a/b/c");
    let link = sandbox.symlink(&real, "lnk");
    (real, link)
}

fn symlinked_home() -> Scenario {
    let sandbox = Sandbox::new();
    let (real, link) = linked_dir(&sandbox);
    Scenario {
        env: vec![("HOME", link)],
        cwd: sandbox.path().to_path_buf(),
        user: None,
        passwd: None,
        pex_root: real.join(".cache/pex"),
        home: real,
        sandbox,
    }
}

fn cwd_inside_symlinked_home() -> Scenario {
    let mut s = symlinked_home();
    let link = s.sandbox.join("lnk");
    s.env.push(("PWD", link.clone()));
    s.cwd = link;
    s
}

fn parent_link() -> Scenario {
    let sandbox = Sandbox::new();
    let real = sandbox.mkdir("var/home/u");
    sandbox.symlink("var/home", "home");
    Scenario {
        env: vec![("HOME", sandbox.join("home/u"))],
        cwd: sandbox.path().to_path_buf(),
        user: None,
        passwd: None,
        pex_root: real.join(".cache/pex"),
        home: real,
        sandbox,
    }
}

/// HOME is physical but `~/.cache` is a link (a cache volume mounted elsewhere).
fn symlinked_dot_cache() -> Scenario {
    let sandbox = Sandbox::new();
    let home = sandbox.mkdir("home");
    let real = sandbox.mkdir("x/y/z/cache");
    sandbox.symlink(&real, "home/.cache");
    Scenario {
        env: vec![("HOME", home.clone())],
        cwd: sandbox.path().to_path_buf(),
        user: None,
        passwd: None,
        pex_root: real.join("pex"),
        home,
        sandbox,
    }
}

fn symlinked_xdg_cache_home() -> Scenario {
    let sandbox = Sandbox::new();
    let (real, link) = linked_dir(&sandbox);
    let home = sandbox.mkdir("home");
    Scenario {
        env: vec![("HOME", home.clone()), ("XDG_CACHE_HOME", link)],
        cwd: sandbox.path().to_path_buf(),
        user: None,
        passwd: None,
        pex_root: real.join("pex"),
        home,
        sandbox,
    }
}

fn symlinked_pex_root() -> Scenario {
    let sandbox = Sandbox::new();
    let (real, link) = linked_dir(&sandbox);
    let home = sandbox.mkdir("home");
    Scenario {
        env: vec![("HOME", home.clone()), ("PEX_ROOT", link.join("pexroot"))],
        cwd: sandbox.path().to_path_buf(),
        user: None,
        passwd: None,
        pex_root: real.join("pexroot"),
        home,
        sandbox,
    }
}

const TEST_UID: u32 = 4242;

/// HOME unset; the user's passwd home is a symlink (pex PR #2626's path).
fn home_unset_passwd_home_symlink() -> Scenario {
    let sandbox = Sandbox::new();
    let real = sandbox.mkdir("var/home/app");
    std::os::unix::fs::chown(&real, Some(TEST_UID), Some(TEST_UID)).expect("chown home");
    let link = sandbox.symlink(&real, "home-app");
    let mut passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd.push_str(&format!(
        "app:x:{TEST_UID}:{TEST_UID}::{}:/bin/sh\n",
        link.display()
    ));
    let passwd = sandbox.write("passwd", passwd.as_bytes());
    Scenario {
        env: vec![],
        cwd: sandbox.path().to_path_buf(),
        user: Some((TEST_UID, TEST_UID)),
        passwd: Some(passwd),
        pex_root: real.join(".cache/pex"),
        home: real,
        sandbox,
    }
}

/// A world-writable sticky TMPDIR inside the sandbox, so fallbacks stay observable.
fn sandbox_tmp(sandbox: &Sandbox) -> PathBuf {
    let tmp = sandbox.mkdir("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    tmp
}

/// HOME=/ for an unprivileged user (nobody): pexinit must not let pex use /.cache.
fn home_is_root_unprivileged() -> Scenario {
    let sandbox = Sandbox::new();
    let tmp = sandbox_tmp(&sandbox);
    let home = tmp.join("pexinit-65534/home");
    Scenario {
        env: vec![("HOME", PathBuf::from("/")), ("TMPDIR", tmp)],
        cwd: sandbox.path().to_path_buf(),
        user: Some((65534, 65534)),
        passwd: None,
        pex_root: home.join(".cache/pex"),
        home,
        sandbox,
    }
}

const NO_PASSWD_UID: u32 = 123456;

/// An arbitrary uid (OpenShift style) with no passwd entry and no HOME.
fn uid_without_passwd_entry() -> Scenario {
    let sandbox = Sandbox::new();
    let tmp = sandbox_tmp(&sandbox);
    let work = sandbox.mkdir("work");
    std::os::unix::fs::chown(&work, Some(NO_PASSWD_UID), Some(NO_PASSWD_UID)).expect("chown");
    let home = tmp.join(format!("pexinit-{NO_PASSWD_UID}/home"));
    Scenario {
        env: vec![("TMPDIR", tmp)],
        cwd: work,
        user: Some((NO_PASSWD_UID, NO_PASSWD_UID)),
        passwd: None,
        pex_root: home.join(".cache/pex"),
        home,
        sandbox,
    }
}

fn decision<'a>(plan: &'a Value, variable: &str) -> &'a Value {
    plan["decisions"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["variable"] == variable))
        .unwrap_or_else(|| panic!("no decision for {variable}: {plan:#}"))
}

/// `env --json` and `doctor --json` tell the truth about the scenario.
fn check_reports(s: &Scenario, pex: &Path, version: &str, kind: Kind) {
    let env = s.pexinit(&["env".as_ref(), "--json".as_ref()]);
    assert!(env.success(), "env --json:\n{}", env.describe());
    let env = env.json();
    assert_eq!(env["env"]["HOME"], s.home.to_str().unwrap(), "{env:#}");
    assert_eq!(
        env["env"]["PEX_ROOT"],
        s.pex_root.to_str().unwrap(),
        "{env:#}"
    );
    assert_eq!(
        decision(&env, "PEX_ROOT")["value"],
        s.pex_root.to_str().unwrap()
    );

    let doctor = s.pexinit(&["doctor".as_ref(), "--json".as_ref(), pex.as_os_str()]);
    assert_eq!(doctor.code, Some(0), "doctor:\n{}", doctor.describe());
    let doctor = doctor.json();
    assert_eq!(doctor["healthy"], true);
    assert_eq!(
        doctor["env"],
        Value::Null,
        "doctor prints the plan, not the env dump"
    );
    assert_eq!(doctor["pex"]["pex_version"], version);
    let bugs: Vec<&str> = doctor["pex"]["known_bugs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    // The symlink bugs bite every runtime before 2.27.1; pex#3223 only `--venv` PEXes
    // built before 2.98.3.
    let mut expected: Vec<&str> = match version == PEX_BUGGY {
        true => vec!["pex#2572", "pex#2626"],
        false => vec![],
    };
    if kind == Kind::Venv && version != PEX_NEWEST {
        expected.push("pex#3223");
    }
    assert_eq!(bugs, expected, "known bugs of pex {version}");
    assert_eq!(decision(&doctor, "HOME")["value"], s.home.to_str().unwrap());
}

/// What a raw run of the buggy runtime does in a scenario, so each case proves its bug.
enum Raw {
    /// ModuleNotFoundError: No module named 'pex'.
    Poisoned,
    /// Works, but pex gives up on the cache and starts cold in a temporary PEX_ROOT.
    TemporaryCache,
    /// Creates a directory literally named `~` in the working directory.
    TildeDirectory,
    /// Splits the cache: the unzip layer under HOME, the runtime layer under
    /// XDG_CACHE_HOME (every pex version does this when PEX_ROOT is unset).
    SplitCache,
    /// The runtime copes on its own; pexinit must not get in the way.
    Works,
}

fn check_scenario(make: fn() -> Scenario, raw: Raw, kinds: &[Kind]) {
    check_scenario_with(make, PEX_BUGGY, raw, kinds)
}

fn check_scenario_with(make: fn() -> Scenario, version: &str, raw: Raw, kinds: &[Kind]) {
    for &kind in kinds {
        let pex = cowsay(version, kind);

        let bare = make();
        let ran = bare.raw(&pex);
        match raw {
            Raw::Poisoned => assert!(
                !ran.success() && ran.stderr.contains(POISONED),
                "{kind:?}: the raw run was expected to fail:\n{}",
                ran.describe()
            ),
            Raw::TemporaryCache => assert!(
                ran.success() && ran.stderr.contains("falling back to a temporary PEX_ROOT"),
                "{kind:?}: the raw run was expected to fall back to a temporary cache:\n{}",
                ran.describe()
            ),
            Raw::TildeDirectory => assert!(
                bare.cwd.join("~").exists(),
                "{kind:?}: the raw run was expected to create '~' in the cwd:\n{}",
                ran.describe()
            ),
            Raw::SplitCache => {
                let roots: Vec<String> = tree(bare.sandbox.path())
                    .into_iter()
                    .filter(|e| e.ends_with("/installed_wheels") || e.ends_with("/isolated"))
                    .collect();
                let parents: std::collections::BTreeSet<_> = roots
                    .iter()
                    .map(|e| Path::new(e).parent().unwrap().to_path_buf())
                    .collect();
                assert!(
                    ran.success() && parents.len() == 2,
                    "{kind:?}: the raw run was expected to split its cache in two roots: {roots:#?}\n{}",
                    ran.describe()
                );
            }
            Raw::Works => assert!(ran.success(), "{kind:?}: raw run:\n{}", ran.describe()),
        }

        let s = make();
        let ran = s.pexinit_run(&pex);
        assert_cowsay_said(&ran, "moo");
        assert!(
            !ran.stderr.contains("falling back"),
            "{kind:?}: pex fell back to a temporary cache:\n{}",
            ran.describe()
        );
        assert_single_cache(s.sandbox.path(), &s.pex_root);
        assert!(
            !s.cwd.join("~").exists(),
            "a '~' directory appeared in the cwd"
        );
        if let Some((uid, _)) = s.user {
            assert_eq!(
                fs::metadata(&s.pex_root).unwrap().uid(),
                uid,
                "PEX_ROOT owner"
            );
        }
        check_reports(&s, &pex, version, kind);

        // The interpreter form gives the same result, warm this time.
        let mut cmd = s.command(pexinit_bin());
        cmd.args(["run", "--", "python3.11"])
            .arg(&pex)
            .args(["-t", "again"]);
        assert_cowsay_said(&run(&mut s.wrap(cmd)), "again");
    }
}

const ZIP_AND_VENV: &[Kind] = &[Kind::Zipapp, Kind::Venv];

#[test]
fn run_symlinked_home_is_made_physical() {
    check_scenario(
        symlinked_home,
        Raw::Poisoned,
        &[Kind::Zipapp, Kind::Venv, Kind::Packed],
    );
}

#[test]
fn run_cwd_inside_symlinked_home() {
    check_scenario(cwd_inside_symlinked_home, Raw::Poisoned, ZIP_AND_VENV);
}

#[test]
fn run_parent_directory_link_like_home_to_var_home() {
    check_scenario(parent_link, Raw::Poisoned, ZIP_AND_VENV);
}

#[test]
fn run_symlinked_dot_cache_in_home() {
    check_scenario(symlinked_dot_cache, Raw::Poisoned, ZIP_AND_VENV);
}

#[test]
fn run_symlinked_xdg_cache_home() {
    check_scenario(symlinked_xdg_cache_home, Raw::SplitCache, ZIP_AND_VENV);
}

#[test]
fn run_symlinked_pex_root() {
    check_scenario(symlinked_pex_root, Raw::Works, ZIP_AND_VENV);
}

#[test]
fn run_home_unset_and_passwd_home_is_a_symlink() {
    check_scenario(home_unset_passwd_home_symlink, Raw::Poisoned, ZIP_AND_VENV);
}

#[test]
fn run_home_is_root_for_an_unprivileged_user() {
    check_scenario(home_is_root_unprivileged, Raw::TemporaryCache, ZIP_AND_VENV);
}

#[test]
fn run_uid_without_passwd_entry() {
    // 2.20.3 gives up on the cache; 2.27.1 and later create `./~/.cache/pex`.
    check_scenario(uid_without_passwd_entry, Raw::TemporaryCache, ZIP_AND_VENV);
    check_scenario_with(
        uid_without_passwd_entry,
        PEX_NEWEST,
        Raw::TildeDirectory,
        ZIP_AND_VENV,
    );
}

/// Fixed and newest runtimes, every layout: pexinit never gets in their way.
#[test]
fn run_every_pex_version_and_layout_runs_under_a_symlinked_home() {
    for version in ALL_PEX_VERSIONS {
        for kind in Kind::ALL {
            let pex = cowsay(version, kind);
            let s = symlinked_home();
            let ran = s.pexinit_run(&pex);
            assert_cowsay_said(&ran, "moo");
            assert_single_cache(s.sandbox.path(), &s.pex_root);
        }
    }
}
