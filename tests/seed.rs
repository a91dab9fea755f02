//! `pexinit::pex::seed` against real pex runtimes (2.20.3, 2.27.1, 2.105.2), real PEX
//! files of every layout, real uid switches (`setpriv`) and a real mount namespace.
//!
//! "Warm" is asserted by effect, never by time: after a seeded run, no writable cache
//! directory holds anything new except pex's lock and access files, and pex printed no
//! fallback warning.

mod seed_support;
mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use pexinit::error::{Error, exit};
use pexinit::pex::info;
use pexinit::pex::manifest::{self, MANIFEST_NAME, RunMode};
use pexinit::pex::repair;
use pexinit::pex::seed::{self, Target};
use seed_support::envapp;
use support::*;

const SDE: i64 = 1_700_000_000;

fn request(root: &Path, targets: &[(&Path, bool)]) -> seed::Request {
    seed::Request {
        pex_root: root.to_path_buf(),
        python: Some(PathBuf::from(PYTHON)),
        runtime_user: None,
        targets: targets
            .iter()
            .map(|(p, venv)| Target {
                path: p.to_path_buf(),
                venv: *venv,
            })
            .collect(),
        slim: false,
        source_date_epoch: Some(SDE),
        path_var: PATH.into(),
    }
}

fn seed(root: &Path, targets: &[(&Path, bool)]) -> seed::SeedReport {
    let plan = seed::plan(&request(root, targets)).unwrap_or_else(|e| panic!("plan: {e}"));
    seed::apply(&plan).unwrap_or_else(|e| panic!("seed {}: {e}", root.display()))
}

/// The environment every run in these tests starts from (plus PEX_ROOT).
fn base_env(home: &Path) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), home.display().to_string()),
        ("FOO".into(), "1".into()),
        ("PEX_FOO".into(), "1".into()),
        // pexinit exports the physical working directory as PWD: give the bootstrap runs
        // compared with it the same, so only what the fast path changes can differ.
        (
            "PWD".into(),
            std::env::current_dir().expect("cwd").display().to_string(),
        ),
    ]
}

/// `pexinit -v run --seed SEED -- PEX ARGS...`: what a container's entrypoint does. `-v`
/// makes pexinit say which PEX_ROOT it used and whether it took the fast path.
fn seeded_run(seed_dir: &Path, pex: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = clean_command(pexinit_bin());
    cmd.args(["-v", "run", "--seed"])
        .arg(seed_dir)
        .arg("--")
        .arg(pex)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

const FAST_PATH_TAKEN: &str = "pexinit: info: fast path: exec the seeded venv";
const LAUNCHER_TAKEN: &str = "pexinit: info: fast path: exec the seeded launcher";

/// The app's JSON output (the test harness prints its own lines around it).
fn app_json(ran: &Ran) -> serde_json::Value {
    let start = ran
        .stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON:\n{}", ran.describe()));
    let end = ran.stdout.rfind('}').expect("JSON end");
    serde_json::from_str(&ran.stdout[start..=end])
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", ran.describe()))
}

fn assert_no_fallback_warning(ran: &Ran) {
    assert!(
        !ran.stderr.contains("PEXWarning") && !ran.stderr.contains("falling back"),
        "pex fell back to a temporary PEX_ROOT:\n{}",
        ran.describe()
    );
}

/// Differential test: for --venv PEXes built by every pex generation, the fast path
/// gives the app exactly the argv, sys.path, sys.executable, prefix, interpreter flags
/// and environment that `python3.11 app.pex` gives through pex's own bootstrap.
#[test]
fn fast_path_matches_the_bootstrap_for_venv_pexes() {
    for version in ALL_PEX_VERSIONS {
        let app = envapp(version, Kind::Venv);
        let sb = Sandbox::new();
        let root = sb.join("seed");
        let home = sb.mkdir("home");
        let report = seed(&root, &[(&app, false)]);
        let entry = &report.manifest.entries[0];
        assert_eq!(entry.mode, RunMode::Venv);
        assert!(entry.venv.is_some(), "{entry:?}");
        let before = content(&root);

        let mut env = base_env(&home);
        env.push(("PEX_ROOT".into(), root.display().to_string()));
        let bootstrap = run(clean_command(PYTHON)
            .arg(&app)
            .args(["a1", "a 2"])
            .env_clear()
            .envs(env.clone()));
        assert!(bootstrap.success(), "{version}: {}", bootstrap.describe());
        let fast = run(&mut seeded_run(
            &root,
            &app,
            &["a1", "a 2"],
            &base_env(&home),
        ));
        assert!(
            fast.success() && fast.stderr.contains(FAST_PATH_TAKEN),
            "{version}: {}",
            fast.describe()
        );
        assert_eq!(
            app_json(&fast),
            app_json(&bootstrap),
            "{version}: the fast path differs from the bootstrap"
        );
        assert_eq!(content(&root), before, "{version}: a run created files");
        assert_no_fallback_warning(&fast);
        assert_no_fallback_warning(&bootstrap);
    }
}

/// `venv: true` warms a zipapp built with --include-tools in venv mode, and the fast path
/// matches `PEX_VENV=1 python3.11 app.pex`; without --include-tools it is a one-line error.
#[test]
fn venv_true_needs_tools_and_matches_pex_venv() {
    for version in [PEX_BUGGY, PEX_NEWEST] {
        let app = envapp(version, Kind::Tools);
        let sb = Sandbox::new();
        let root = sb.join("seed");
        let home = sb.mkdir("home");
        let report = seed(&root, &[(&app, true)]);
        assert_eq!(report.manifest.entries[0].mode, RunMode::VenvByEnv);
        let mut env = base_env(&home);
        env.push(("PEX_VENV".into(), "1".into()));
        let mut with_root = env.clone();
        with_root.push(("PEX_ROOT".into(), root.display().to_string()));
        let bootstrap = run(clean_command(PYTHON)
            .arg(&app)
            .arg("x")
            .env_clear()
            .envs(with_root));
        assert!(bootstrap.success(), "{version}: {}", bootstrap.describe());
        let fast = run(&mut seeded_run(&root, &app, &["x"], &env));
        assert!(
            fast.stderr.contains(FAST_PATH_TAKEN),
            "{version}: {}",
            fast.describe()
        );
        assert_eq!(app_json(&fast), app_json(&bootstrap), "{version}");

        let plain = envapp(version, Kind::Zipapp);
        let err = seed::plan(&request(&sb.join("other"), &[(&plain, true)]))
            .expect_err("venv: true without --include-tools");
        let text = err.to_string();
        assert!(
            text.contains("--include-tools") && !text.contains('\n'),
            "{text}"
        );
        assert_eq!(Error::from(err).exit_code(), exit::PEXINIT_FAILED);
    }
}

/// `venv: [PEX files]` applies venv mode per PEX: the listed --include-tools zipapp is
/// seeded and run in venv mode (fast path), the unlisted plain zipapp is not — where
/// `venv: true` refuses the mix. Listed paths match through symlinks.
#[test]
fn venv_list_selects_pex_files_by_physical_path() {
    let sb = Sandbox::new();
    let tools = sb.join("tools.pex");
    let plain = sb.join("plain.pex");
    fs::copy(envapp(PEX_NEWEST, Kind::Tools), &tools).expect("copy tools app");
    fs::copy(envapp(PEX_NEWEST, Kind::Zipapp), &plain).expect("copy plain app");
    let link = sb.symlink(&tools, "link-to-tools.pex");
    let listed = sb.write(
        "listed.yaml",
        format!("venv:\n  - {}\n", link.display()).as_bytes(),
    );
    let all = sb.write("all.yaml", b"venv: true\n");
    let home = sb.mkdir("home");
    let seed_with = |config: &Path, root: &Path| {
        run(clean_command(pexinit_bin())
            .args(["seed", "--python", PYTHON, "--config"])
            .arg(config)
            .arg("--pex-root")
            .arg(root)
            .arg(&tools)
            .arg(&plain))
    };

    let refused = seed_with(&all, &sb.join("all-root"));
    assert_eq!(refused.code, Some(125), "{}", refused.describe());
    assert!(
        refused.stderr.contains("--include-tools"),
        "{}",
        refused.describe()
    );

    let root = sb.join("root");
    let seeded = seed_with(&listed, &root);
    assert!(seeded.success(), "{}", seeded.describe());
    let manifest = manifest::read(&root).expect("manifest");
    let mode_of = |pex: &Path| {
        let opened = info::open(pex).expect("pex");
        let hash = opened.info.pex_hash.expect("pex_hash");
        manifest
            .entry(&hash, opened.layout.into())
            .expect("seeded entry")
            .mode
    };
    assert_eq!(mode_of(&tools), RunMode::VenvByEnv);
    assert_eq!(mode_of(&plain), RunMode::Zipapp);

    for (pex, venv) in [(&tools, true), (&plain, false)] {
        let env = run(clean_command(pexinit_bin())
            .args(["env", "--config"])
            .arg(&listed)
            .arg("--")
            .arg(pex)
            .env("HOME", &home));
        assert!(env.success(), "{}", env.describe());
        assert_eq!(
            env.stdout.lines().any(|l| l == "PEX_VENV=1"),
            venv,
            "{}: {}",
            pex.display(),
            env.describe()
        );
    }
    let mut fast = seeded_run(&root, &tools, &["x"], &base_env(&home));
    let fast = run(fast.env("PEXINIT_CONFIG", &listed));
    assert!(fast.stderr.contains(FAST_PATH_TAKEN), "{}", fast.describe());
}

/// A sorted listing of a tree with modes, owners, mtimes, link targets and content
/// hashes: two reproducible seeds give equal listings.
fn fingerprint(root: &Path) -> Vec<String> {
    nodes(root).iter().map(Node::describe).collect()
}

/// Two seeds of the same inputs at the same path are byte-identical trees (modes,
/// owners, mtimes, link targets, contents), including the .pyc files and the manifest.
#[test]
fn two_seeds_of_the_same_inputs_are_identical() {
    let apps: Vec<PathBuf> = vec![
        cowsay(PEX_FIXED, Kind::Zipapp),
        envapp(PEX_NEWEST, Kind::Venv),
        envapp(PEX_BUGGY, Kind::Venv),
    ];
    let targets: Vec<(&Path, bool)> = apps.iter().map(|p| (p.as_path(), false)).collect();
    let sb = Sandbox::new();
    let root = sb.join("seed");
    seed(&root, &targets);
    let first = fingerprint(&root);
    assert!(
        first.iter().any(|l| l.contains(".pyc ")),
        "no bytecode seeded"
    );
    assert!(
        first.iter().all(|l| l.contains(&format!(" {SDE} "))),
        "unclamped mtime"
    );
    fs::remove_dir_all(&root).expect("rm seed");
    seed(&root, &targets);
    let second = fingerprint(&root);
    let diff: Vec<_> = first
        .iter()
        .zip(&second)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        first.len() == second.len() && diff.is_empty(),
        "seeds differ ({} vs {} entries): {diff:#?}",
        first.len(),
        second.len()
    );
}

/// Every layout built by every pex generation is warm from the seed, for root, uid
/// 65534 (not in the seed's group 0: read-only, gets a link farm), uid 123456 gid 0
/// (the OpenShift convention: writes the seed directly), and uid 123456 gid 0 with the
/// seed chmod'ed read-only. Nothing is extracted, no fallback warning, and --venv PEXes
/// take the fast path.
#[test]
fn every_layout_and_user_runs_warm_from_the_seed() {
    let sb = Sandbox::new();
    let mut seeds = Vec::new();
    for version in ALL_PEX_VERSIONS {
        for kind in Kind::ALL {
            let app = cowsay(version, kind);
            // pex creates packed and loose outputs mode 0700: other uids must read them.
            let status = Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&app)
                .status()
                .expect("chmod");
            assert!(status.success());
            let root = sb.join(&format!("seed-{version}-{kind:?}"));
            let report = seed(&root, &[(&app, false)]);
            let meta = fs::metadata(&root).expect("seed");
            assert_eq!(meta.gid(), 0, "OpenShift convention: group 0");
            assert_eq!((meta.mode() >> 3) & 7, (meta.mode() >> 6) & 7, "g=u");
            let scan = repair::plan(&root).expect("scan");
            assert!(!scan.has_work() && !scan.has_suspicious(), "{scan:?}");
            seeds.push((version, kind, app, root, report.manifest));
        }
    }
    let tmp = sb.mkdir("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    let home = sb.mkdir("home");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).expect("chmod home");
    let users: [(&str, u32, u32, bool); 4] = [
        ("root", 0, 0, false),
        ("nobody", 65534, 65534, false),
        ("openshift", 123456, 0, false),
        ("openshift-read-only", 123456, 0, true),
    ];
    for (who, uid, gid, read_only) in users {
        for (version, kind, app, root, _) in &seeds {
            let label = format!("{who} {version} {kind:?}");
            if read_only {
                chmod_tree(root, false);
            }
            let mut env = base_env(&home);
            env.push(("TMPDIR".into(), tmp.display().to_string()));
            let seed_before = content(root);
            let tmp_before = content(&tmp);
            let ran = run(&mut as_user(
                uid,
                gid,
                &seeded_run(root, app, &["-t", "moo"], &env),
            ));
            assert_cowsay_said(&ran, "moo");
            assert_no_fallback_warning(&ran);
            assert_eq!(content(root), seed_before, "{label}: the seed changed");
            let farm_and_tmp = content(&tmp);
            let new_in_tmp: Vec<_> = farm_and_tmp
                .difference(&tmp_before)
                .filter(|e| !e.contains("/pexinit-"))
                .collect();
            assert!(
                new_in_tmp.is_empty(),
                "{label}: new in TMPDIR: {new_in_tmp:?}"
            );
            // A second run adds nothing anywhere (the farm is reused as is).
            let again = run(&mut as_user(
                uid,
                gid,
                &seeded_run(root, app, &["-t", "moo"], &env),
            ));
            assert_cowsay_said(&again, "moo");
            assert_eq!(content(&tmp), farm_and_tmp, "{label}: second run wrote");
            // A launcher reads the seed in place, whoever runs it: no farm.
            assert_eq!(
                launched(&ran),
                *kind != Kind::Venv,
                "{label}: {}",
                ran.describe()
            );
            let expect_farm = ((uid == 65534) || read_only) && !launched(&ran);
            let used_root = pex_root_of(&ran);
            assert_eq!(
                used_root != *root,
                expect_farm,
                "{label}: PEX_ROOT {}",
                used_root.display()
            );
            if *kind == Kind::Venv {
                assert!(
                    ran.stderr.contains(FAST_PATH_TAKEN),
                    "{label}: {}",
                    ran.describe()
                );
            }
            if read_only {
                chmod_tree(root, true);
            }
        }
    }
}

/// The PEX_ROOT a run used: the seed or farm it names, or the seed itself when a
/// launcher read it in place.
fn pex_root_of(ran: &Ran) -> PathBuf {
    ran.stderr
        .lines()
        .find_map(|l| {
            l.split_once(" used as PEX_ROOT ")
                .map(|(_, root)| root)
                .or_else(|| {
                    l.strip_prefix("pexinit: info: seed ")
                        .and_then(|rest| rest.strip_suffix(" read in place"))
                })
        })
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no PEX_ROOT reported:\n{}", ran.describe()))
}

/// Whether the run started the app through the seed's launcher (zipapp, packed, loose).
fn launched(ran: &Ran) -> bool {
    ran.stderr.contains(LAUNCHER_TAKEN)
}

fn chmod_tree(root: &Path, writable: bool) {
    let mode = if writable { "ug+w" } else { "a-w" };
    let status = Command::new("chmod")
        .args(["-R", mode])
        .arg(root)
        .status()
        .expect("chmod");
    assert!(status.success());
}

/// The read-only root filesystem case: the seed sits read-only at another path (a
/// read-only bind mount), and PEX_ROOT is an empty tmpfs mounted at the path the seed
/// was built for. The farm is made in the tmpfs; every run is warm, as uid 65534.
#[test]
fn empty_tmpfs_at_the_build_path_with_the_seed_mounted_read_only_elsewhere() {
    let sb = Sandbox::new();
    let build_path = sb.join("pex-root");
    let copy = sb.join("seed-copy");
    let ro = sb.mkdir("seed-ro");
    let home = sb.mkdir("home");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).expect("chmod");
    let apps = [
        cowsay(PEX_BUGGY, Kind::Venv),
        cowsay(PEX_FIXED, Kind::Zipapp),
        cowsay(PEX_NEWEST, Kind::Venv),
        cowsay(PEX_NEWEST, Kind::Zipapp),
        cowsay(PEX_NEWEST, Kind::Packed),
    ];
    let targets: Vec<(&Path, bool)> = apps.iter().map(|p| (p.as_path(), false)).collect();
    seed(&build_path, &targets);
    let status = Command::new("cp")
        .arg("-a")
        .arg(&build_path)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    for app in &apps {
        // Inside a private mount namespace: the copy read-only at `ro`, an empty tmpfs
        // over the build path (world-writable, like an emptyDir for an arbitrary uid).
        let script = "set -e; mount --make-rprivate /; \
            mount --bind \"$1\" \"$2\"; mount -o remount,bind,ro \"$2\"; \
            mount -t tmpfs -o mode=1777 tmpfs \"$3\"; shift 3; exec \"$@\"";
        let inner = as_user(
            65534,
            65534,
            &seeded_run(&ro, app, &["-t", "moo"], &base_env(&home)),
        );
        let mut cmd = Command::new("/usr/bin/unshare");
        cmd.args(["--mount", "--", "/bin/sh", "-c", script, "sh"])
            .arg(&copy)
            .arg(&ro)
            .arg(&build_path)
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        // Two runs in the same fresh tmpfs: the second must find everything in place.
        let ran = run(&mut cmd);
        assert_cowsay_said(&ran, "moo");
        assert_no_fallback_warning(&ran);
        // A launcher reads the read-only seed where it is mounted; pex's bootstrap
        // needs the farm at the build path.
        let venv = info::open(app).expect("pex").info.venv;
        assert_eq!(launched(&ran), !venv, "{}", ran.describe());
        let expected_root = if venv { &build_path } else { &ro };
        assert_eq!(&pex_root_of(&ran), expected_root, "{}", ran.describe());
        if venv {
            assert!(ran.stderr.contains(FAST_PATH_TAKEN), "{}", ran.describe());
        }
    }
}

/// Seeding through a symlinked HOME with a pex 2.20.3 PEX (the runtime with pex#2572)
/// writes no poisoned link: the seed resolves DIR to its physical path first, and the
/// manifest records that path.
#[test]
fn seed_under_a_symlinked_home_has_no_poisoned_link() {
    let sb = Sandbox::new();
    sb.mkdir("a/b/c");
    let home = sb.symlink("a/b/c", "home");
    let logical_root = home.join(".cache/pex");
    for kind in [Kind::Zipapp, Kind::Venv, Kind::Packed] {
        let root = logical_root.join(format!("{kind:?}"));
        let report = seed(&root, &[(&cowsay(PEX_BUGGY, kind), false)]);
        let physical = sb.join("a/b/c/.cache/pex").join(format!("{kind:?}"));
        assert_eq!(report.manifest.pex_root, physical);
        let scan = repair::plan(&physical).expect("scan");
        assert_eq!(scan.poisoned_links(), 0, "{scan:?}");
        assert!(!scan.has_work() && !scan.has_suspicious(), "{scan:?}");
        assert!(physical.join(MANIFEST_NAME).is_file());
    }
    // Sanity: the symlink really is one.
    assert!(
        fs::symlink_metadata(&home)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}

/// The `seed` subcommand end to end: it seeds, `run` finds the manifest at PEX_ROOT by
/// itself (no --seed) and takes the fast path; bad input is one line with the
/// documented status and leaves nothing behind.
#[test]
fn seed_command_then_run_finds_the_seed_at_pex_root() {
    let sb = Sandbox::new();
    let home = sb.mkdir("home");
    let root = sb.join("pex-root");
    let app = cowsay(PEX_NEWEST, Kind::Venv);
    let seeded = run(pexinit()
        .args(["seed", "--pex-root"])
        .arg(&root)
        .args(["--python", PYTHON])
        .arg(&app));
    assert!(seeded.success(), "{}", seeded.describe());
    assert!(root.join(MANIFEST_NAME).is_file());
    let before = content(&root);

    let ran = run(pexinit()
        .env("HOME", &home)
        .env("PEX_ROOT", &root)
        .args(["-v", "run", "--"])
        .arg(&app)
        .args(["-t", "seeded"]));
    assert_cowsay_said(&ran, "seeded");
    assert!(ran.stderr.contains(FAST_PATH_TAKEN), "{}", ran.describe());
    assert_no_fallback_warning(&ran);
    assert_eq!(
        content(&root),
        before,
        "a warm run from the seed created files"
    );

    // doctor explains the fast path.
    let doctor = run(pexinit()
        .env("HOME", &home)
        .env("PEX_ROOT", &root)
        .args(["doctor", "--json", "--"])
        .arg(&app));
    let json = doctor.json();
    assert_eq!(json["seed"]["state"], "used", "{json:#}");
    assert!(
        json["seed"]["fast_path"]["Ok"]["venv"].as_str().is_some(),
        "{json:#}"
    );

    // Bad input.
    let busy = sb.mkdir("busy");
    sb.write("busy/unrelated", b"x");
    let before = sb.tree();
    for (args, code, fragment) in [
        (
            vec!["--pex-root", busy.to_str().unwrap(), app.to_str().unwrap()],
            125,
            "not empty",
        ),
        (
            vec![
                "--pex-root",
                sb.join("new").to_str().unwrap(),
                "--python",
                "/nonexistent/python3",
                app.to_str().unwrap(),
            ],
            127,
            "/nonexistent/python3",
        ),
        (
            vec![
                "--pex-root",
                sb.join("new").to_str().unwrap(),
                "/etc/hostname",
            ],
            125,
            "/etc/hostname",
        ),
    ] {
        let ran = run(pexinit().arg("seed").args(&args));
        assert_eq!(ran.code, Some(code), "{args:?}: {}", ran.describe());
        assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
        assert!(ran.stderr.contains(fragment), "{}", ran.describe());
        assert_eq!(sb.tree(), before, "{args:?} left something behind");
    }
}
