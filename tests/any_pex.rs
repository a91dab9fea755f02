//! Every PEX a user already has: pex 2.1.x caches, pex's cache pruning, and PEX files
//! built with `--runtime-pex-root`, with real pex from PyPI.

mod support;

use std::ffi::OsString;
use std::path::Path;

use support::*;

const LAUNCHER_TAKEN: &str = "pexinit: info: fast path: exec the seeded launcher";
const VENV_TAKEN: &str = "pexinit: info: fast path: exec the seeded venv";

fn seed(root: &Path, pex: &Path) -> Ran {
    run(pexinit()
        .args(["seed", "--python", PYTHON, "--pex-root"])
        .arg(root)
        .arg(pex))
}

fn run_seeded(sb: &Sandbox, seed: &Path, pex: &Path) -> Ran {
    run(pexinit()
        .env("HOME", sb.mkdir("home"))
        .args(["-v", "run", "--python", PYTHON, "--seed"])
        .arg(seed)
        .arg("--")
        .arg(pex)
        .args(["-t", "moo"]))
}

/// pex 2.1.x keeps its cache with no version level (`unzipped_pexes/<hash>`): seeding such
/// a PEX works and starts through its launcher, and `repair` judges a cache pex 2.1.137
/// wrote itself healthy, changing nothing.
#[test]
fn a_pex_2_1_137_zipapp_seeds_runs_warm_and_its_cache_is_healthy() {
    let sb = Sandbox::new();
    let pex = cowsay(PEX_OLDEST, Kind::Zipapp);
    let root = sb.join("seed");
    let seeded = seed(&root, &pex);
    assert!(seeded.success(), "{}", seeded.describe());
    let ran = run_seeded(&sb, &root, &pex);
    assert_cowsay_said(&ran, "moo");
    ran.assert_stderr_has(LAUNCHER_TAKEN);

    // A cache written by pex 2.1.137 itself.
    let cache = sb.join("pex-cache");
    let warmed = run(clean_command(PYTHON)
        .env("PEX_ROOT", &cache)
        .env("HOME", sb.mkdir("pex-home"))
        .arg(&pex)
        .args(["-t", "moo"]));
    assert_cowsay_said(&warmed, "moo");
    assert!(
        cache.join("unzipped_pexes").is_dir() && !cache.join("unzipped_pexes/0").exists(),
        "pex 2.1.137 was expected to write an unversioned cache: {:#?}",
        tree(&cache)
    );
    let before = snapshot(&cache);
    let repaired = run(pexinit().arg("repair").arg(&cache));
    assert_eq!(repaired.code, Some(0), "{}", repaired.describe());
    repaired.assert_stdout_has("0 to quarantine");
    assert_eq!(before, snapshot(&cache), "repair changed a healthy cache");
}

/// `pex3 cache prune --older-than '7 days'` removes entries whose `.last-access` is old; a
/// seed's are dated 1980. Fast-path runs (a launcher, or a `--venv` PEX's venv, which pex
/// itself refreshes only since 2.98.3, pex#3223) refresh them on a writable seed, so
/// pruning keeps what the app runs from.
#[test]
fn pex3_cache_prune_after_fast_path_runs_keeps_the_app_warm() {
    for (kind, taken, kept) in [
        (
            Kind::Zipapp,
            LAUNCHER_TAKEN,
            ("unzipped_pexes/", "/PEX-INFO"),
        ),
        (Kind::Venv, VENV_TAKEN, ("venvs/", "/pex")),
    ] {
        let sb = Sandbox::new();
        let pex = cowsay(PEX_NEWEST, kind);
        let root = sb.join("seed");
        assert!(seed(&root, &pex).success());
        let ran = run_seeded(&sb, &root, &pex);
        assert_cowsay_said(&ran, "moo");
        ran.assert_stderr_has(taken);

        let pex3 = pex_venv(PEX_NEWEST).join("bin/pex3");
        let pruned = run(clean_command(&pex3)
            .env("PEX_ROOT", &root)
            .env("HOME", sb.mkdir("pex3-home"))
            .args(["cache", "prune", "--older-than", "7 days"]));
        assert!(pruned.success(), "{}", pruned.describe());
        assert!(
            snapshot(&root)
                .iter()
                .filter_map(|node| node.split(' ').next())
                .any(|p| p.starts_with(kept.0) && p.ends_with(kept.1)),
            "{kind:?}: pex3 cache prune removed the app's entry: {}",
            pruned.describe()
        );
        let again = run_seeded(&sb, &root, &pex);
        assert_cowsay_said(&again, "moo");
        again.assert_stderr_has(taken);
    }
}

/// A PEX built with `--runtime-pex-root DIR` uses DIR when nothing names another
/// PEX_ROOT, under pexinit as under pex alone: one cache, warm on the second start, and
/// doctor says where PEX_ROOT came from.
#[test]
fn a_runtime_pex_root_pex_reuses_its_own_pex_root() {
    let sb = Sandbox::new();
    let pex = pex_fixture(PEX_NEWEST, Kind::Zipapp, "cowsay-runtime-root", || {
        [
            "cowsay",
            "-c",
            "cowsay",
            "--runtime-pex-root",
            "~/.app-cache",
        ]
        .map(OsString::from)
        .to_vec()
    });
    let home = sb.mkdir("home");
    let start = || {
        run(pexinit()
            .env("HOME", &home)
            .args(["run", "--"])
            .arg(&pex)
            .args(["-t", "moo"]))
    };
    assert_cowsay_said(&start(), "moo");
    assert_cowsay_said(&start(), "moo");
    assert!(
        home.join(".app-cache/unzipped_pexes").is_dir(),
        "the PEX's own PEX_ROOT was not used: {:#?}",
        tree(&home)
    );
    assert!(
        !home.join(".cache/pex").exists(),
        "a second cache appeared under HOME: {:#?}",
        tree(&home)
    );
    let doctor = run(pexinit().env("HOME", &home).arg("doctor").arg(&pex));
    doctor.assert_stdout_has("from the PEX's PEX-INFO pex_root");
}

/// A PEX whose entry point is a local script (`pex --exe tool.py`): pex runs it as
/// `__main__` from its unzipped copy. The launcher of a read-only seed, run as another
/// uid, gives the app the same `sys.argv`, `__name__` and `__file__` (modulo the
/// PEX_ROOT they sit in) and the same output.
#[test]
fn an_exe_pex_starts_through_its_launcher_as_pex_starts_it() {
    let sb = Sandbox::new();
    let pex = pex_fixture(PEX_NEWEST, Kind::Zipapp, "cowsay-exe", || {
        let script = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures/exe-tool.py");
        std::fs::write(
            &script,
            "import sys, cowsay\nprint('argv', sys.argv[1:], __name__, __file__.rsplit('/unzipped_pexes/', 1)[-1])\ncowsay.cow(' '.join(sys.argv[1:]))\n",
        )
        .expect("write the script");
        vec!["cowsay".into(), "--exe".into(), script.into_os_string()]
    });
    let by_pex = run(clean_command(PYTHON)
        .env("PEX_ROOT", sb.join("pex-root"))
        .env("HOME", sb.mkdir("pex-home"))
        .arg(&pex)
        .args(["-t", "moo"]));
    assert!(by_pex.success(), "{}", by_pex.describe());

    let root = sb.join("seed");
    let seeded = seed(&root, &pex);
    assert!(seeded.success(), "{}", seeded.describe());
    let chmod = run(std::process::Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&root));
    assert!(chmod.success(), "{}", chmod.describe());
    let mut cmd = pexinit();
    cmd.env("HOME", "/")
        .env("PEXINIT_LOG", "info")
        .args(["run", "--python", PYTHON, "--seed"])
        .arg(&root)
        .arg("--")
        .arg(&pex)
        .args(["-t", "moo"]);
    let by_pexinit = run(&mut as_user(123456, 0, &cmd));
    by_pexinit.assert_stderr_has(LAUNCHER_TAKEN);
    assert_eq!(
        (by_pexinit.code, &by_pexinit.stdout),
        (by_pex.code, &by_pex.stdout),
        "pexinit's start differs from pex's:\n{}\n{}",
        by_pex.describe(),
        by_pexinit.describe()
    );
}

/// The scripts the fast path starts, a `--venv` PEX's venv `pex` script and a zipapp's
/// launcher, start from the bytecode the seed compiled for them: Python, made verbose by
/// the PEX's own `--inject-python-args=-v`, reports loading each one's code object from
/// `__pycache__`. A script changed after seeding runs from its new source: stale
/// bytecode is never run.
#[test]
fn seeded_scripts_start_from_their_bytecode_and_never_from_stale_bytecode() {
    for (kind, taken, bytecode) in [
        (Kind::Venv, VENV_TAKEN, "/__pycache__/pexcpython-"),
        (
            Kind::Zipapp,
            LAUNCHER_TAKEN,
            "/.pexinit/launch/__pycache__/",
        ),
    ] {
        let sb = Sandbox::new();
        let pex = pex_fixture(PEX_NEWEST, kind, "cowsay-verbose", || {
            ["cowsay", "-c", "cowsay", "--inject-python-args=-v"]
                .map(OsString::from)
                .to_vec()
        });
        let root = sb.join("seed");
        let seeded = seed(&root, &pex);
        assert!(seeded.success(), "{}", seeded.describe());
        let ran = run_seeded(&sb, &root, &pex);
        assert_cowsay_said(&ran, "moo");
        ran.assert_stderr_has(taken);
        let loaded_bytecode = |ran: &Ran| {
            ran.stderr
                .lines()
                .any(|l| l.starts_with("# code object from '") && l.contains(bytecode))
        };
        assert!(
            loaded_bytecode(&ran),
            "{kind:?}: the script was not loaded from its bytecode:\n{}",
            ran.describe()
        );

        // The script, rewritten after seeding (a venv script's first line kept: pex's
        // #! line, which names the interpreter).
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join(".pexinit-seed.json")).expect("read the manifest"),
        )
        .expect("parse the manifest");
        let entry = &manifest["entries"][0];
        let (script, first_line) = match kind {
            Kind::Venv => {
                let script = root
                    .join(entry["venv"]["dir"].as_str().expect("a venv entry"))
                    .join("__main__.py");
                let source = std::fs::read_to_string(&script).expect("read the venv script");
                let shebang = source.lines().next().expect("a #! line").to_owned();
                (script, shebang + "\n")
            }
            _ => (
                root.join(entry["launcher"]["file"].as_str().expect("a launcher")),
                String::new(),
            ),
        };
        std::fs::write(
            &script,
            format!("{first_line}import sys\nprint('the rewritten script ran', sys.argv[1:])\n"),
        )
        .expect("rewrite the script");
        let ran = run_seeded(&sb, &root, &pex);
        assert!(ran.success(), "{}", ran.describe());
        ran.assert_stderr_has(taken);
        assert!(
            !loaded_bytecode(&ran),
            "{kind:?}: stale bytecode of the script was loaded:\n{}",
            ran.describe()
        );
        let expected = match kind {
            Kind::Venv => "the rewritten script ran ['-t', 'moo']",
            _ => "the rewritten script ran [",
        };
        ran.assert_stdout_has(expected);
    }
}

/// The bytecode launcher runs a script exactly as Python runs it from its source: the
/// same sys.argv, sys.orig_argv, `__file__`, sys.path[0] and `__main__` names, the same
/// tracebacks (chained ones too) and exit statuses (scripts/check-bytecode-launcher, for
/// the interpreter the tests use; other interpreters can be given to the script by hand).
#[test]
fn the_bytecode_launcher_runs_a_script_as_python_does() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-bytecode-launcher");
    let checked = run(std::process::Command::new(script).arg(PYTHON));
    assert!(checked.success(), "{}", checked.describe());
    checked.assert_stdout_has("value:same kbd:same exit:same code:same chain:same");
}
