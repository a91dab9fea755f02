//! `seed --slim`: a seed holding only what the fast path reads, and PEX files started
//! from their seed alone (an image that ships no .pex), with real pex from PyPI.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// `pexinit seed --slim --python PYTHON --pex-root ROOT PEX`.
fn seed_slim(root: &Path, pex: &Path) -> Ran {
    run(pexinit()
        .args(["seed", "--slim", "--python", PYTHON, "--pex-root"])
        .arg(root)
        .arg(pex))
}

/// Where the image would have had the PEX: a path that does not exist, same file name.
fn absent(sb: &Sandbox, pex: &Path) -> PathBuf {
    sb.join("not-shipped")
        .join(pex.file_name().expect("file name"))
}

/// Every layout and pex generation: the slim seed holds no pex runtime and no interpreter
/// cache, and starts the app with no .pex file, read-only, as another uid, on another
/// kernel release, writing nothing.
#[test]
fn a_slim_seed_starts_each_layout_without_its_pex_file_read_only_as_any_uid() {
    let cases = [
        (PEX_OLDEST, Kind::Zipapp),
        (PEX_BUGGY, Kind::Venv),
        (PEX_FIXED, Kind::Packed),
        (PEX_NEWEST, Kind::Zipapp),
        (PEX_NEWEST, Kind::Venv),
    ];
    for (version, kind) in cases {
        let sb = Sandbox::new();
        let pex = cowsay(version, kind);
        let root = sb.join("seed");
        let seeded = seed_slim(&root, &pex);
        assert!(
            seeded.success(),
            "{version} {kind:?}: {}",
            seeded.describe()
        );
        for name in ["bootstraps", "isolated", "interpreters"] {
            assert!(!root.join(name).exists(), "{version} {kind:?}: {name} kept");
        }
        must_chmod_read_only(&root);
        let before = snapshot(&root);

        let mut other_kernel = std::process::Command::new("/usr/bin/setarch");
        other_kernel
            .args(["x86_64", "--uname-2.6", pexinit_bin()])
            .args(["run", "--python", PYTHON, "--seed"])
            .arg(&root)
            .arg("--")
            .arg(absent(&sb, &pex))
            .args(["-t", "slim"])
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/")
            .env("PEXINIT_LOG", "info");
        let ran = run(&mut as_user(123456, 0, &other_kernel));
        assert_cowsay_said(&ran, "slim");
        ran.assert_stderr_has("is not here: starting the PEX of that name seeded in");
        ran.assert_stderr_has("fast path: exec the seeded");
        assert_eq!(
            before,
            snapshot(&root),
            "{version} {kind:?}: the run wrote into the seed"
        );
    }
}

fn must_chmod_read_only(root: &Path) {
    let ran = run(std::process::Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(root));
    assert!(ran.success(), "{}", ran.describe());
}

/// What only pex's bootstrap could do is refused in one line naming the reason, and
/// `doctor` says the same; with the file there and a slim seed, too.
#[test]
fn when_only_pex_bootstrap_could_start_it_run_refuses_and_doctor_says_why() {
    let sb = Sandbox::new();
    let pex = cowsay(PEX_NEWEST, Kind::Zipapp);
    let root = sb.join("seed");
    assert!(seed_slim(&root, &pex).success());
    let gone = absent(&sb, &pex);

    // `pexinit COMMAND --python PYTHON --seed ROOT -- PROGRAM`, with one variable set.
    let with_seed = |command: &str, var: Option<(&str, &str)>, program: &Path| {
        let mut cmd = pexinit();
        if let Some((name, value)) = var {
            cmd.env(name, value);
        }
        run(cmd
            .args([command, "--python", PYTHON, "--seed"])
            .arg(&root)
            .arg("--")
            .arg(program))
    };

    let doctor = with_seed("doctor", None, &gone);
    assert_eq!(doctor.code, Some(0), "{}", doctor.describe());
    doctor.assert_stdout_has("the file is not here: the seed holds this PEX");
    doctor.assert_stdout_has("is slim: no pex runtime in it");

    let refused = with_seed("run", Some(("PEX_INTERPRETER", "1")), &gone);
    assert_eq!(refused.code, Some(126), "{}", refused.describe());
    assert_eq!(refused.stderr_lines().len(), 1, "{}", refused.describe());
    refused.assert_stderr_has("the file is not here");
    refused.assert_stderr_has("PEX_INTERPRETER is set");

    let unhealthy = with_seed("doctor", Some(("PEX_INTERPRETER", "1")), &gone);
    assert_ne!(unhealthy.code, Some(0), "{}", unhealthy.describe());
    unhealthy.assert_stdout_has("problem: cannot start");

    // The file is there, but the slim seed has no runtime for pex's bootstrap.
    let slim = with_seed("run", Some(("PEX_MODULE", "cowsay")), &pex);
    assert_eq!(slim.code, Some(126), "{}", slim.describe());
    slim.assert_stderr_has("is slim (no pex runtime for pex's bootstrap)");
    slim.assert_stderr_has("PEX_MODULE is set");

    // An unknown name is still "not found".
    let missing = with_seed("run", None, &sb.join("not-shipped/other.pex"));
    assert_eq!(missing.code, Some(127), "{}", missing.describe());
}

/// `--slim` needs a fast path for every PEX, and a slim seed stays slim.
#[test]
fn slim_refuses_a_pex_without_a_fast_path_and_a_slim_seed_stays_slim() {
    let sb = Sandbox::new();
    let inherits = pex_fixture(PEX_NEWEST, Kind::Zipapp, "cowsay-inherit", || {
        ["cowsay", "-c", "cowsay", "--inherit-path=prefer"]
            .map(std::ffi::OsString::from)
            .to_vec()
    });
    let refused = seed_slim(&sb.join("seed-inherit"), &inherits);
    assert_eq!(refused.code, Some(125), "{}", refused.describe());
    assert_eq!(refused.stderr_lines().len(), 1, "{}", refused.describe());
    refused.assert_stderr_has("cannot start without pex's bootstrap");
    refused.assert_stderr_has("seed it without --slim");

    let root = sb.join("seed");
    assert!(seed_slim(&root, &cowsay(PEX_NEWEST, Kind::Zipapp)).success());
    let full = run(pexinit()
        .args(["seed", "--python", PYTHON, "--pex-root"])
        .arg(&root)
        .arg(cowsay(PEX_FIXED, Kind::Zipapp)));
    assert_eq!(full.code, Some(125), "{}", full.describe());
    full.assert_stderr_has("holds a slim seed");
}

/// `prime` copies a slim seed with its launchers: the volume starts the app with no .pex.
#[test]
fn a_primed_slim_seed_starts_the_app_without_its_pex_file() {
    let sb = Sandbox::new();
    let pex = cowsay(PEX_NEWEST, Kind::Zipapp);
    let root = sb.join("seed");
    assert!(seed_slim(&root, &pex).success());
    let volume = sb.join("volume");
    let primed = run(pexinit()
        .args(["prime", "--from"])
        .arg(&root)
        .arg("--into")
        .arg(&volume));
    assert!(primed.success(), "{}", primed.describe());
    let ran = run(pexinit()
        .env("PEXINIT_LOG", "info")
        .args(["run", "--python", PYTHON, "--seed"])
        .arg(&volume)
        .arg("--")
        .arg(absent(&sb, &pex))
        .args(["-t", "primed"]));
    assert_cowsay_said(&ran, "primed");
    ran.assert_stderr_has(&format!(
        "fast path: exec the seeded launcher {}",
        volume.display()
    ));
}
