//! `run --repair`, `pexinit repair` and `doctor` on caches poisoned by real pex 2.20.3
//! runs: the user-facing side of the repair engine (tested itself in tests/repair.rs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// A cache poisoned the way users meet it: a raw 2.20.3 run under a symlinked HOME.
struct Poisoned {
    sandbox: Sandbox,
    link_home: PathBuf,
    real_home: PathBuf,
    pex: PathBuf,
}

impl Poisoned {
    fn new(kind: Kind) -> Self {
        let sandbox = Sandbox::new();
        let real_home = sandbox.mkdir("a/b/c");
        let link_home = sandbox.symlink(&real_home, "lnk");
        let pex = cowsay(PEX_BUGGY, kind);
        let poison = run(clean_command(PYTHON)
            .arg(&pex)
            .args(["-t", "x"])
            .env("HOME", &link_home)
            .current_dir(sandbox.path()));
        assert!(poison.stderr.contains(POISONED), "{}", poison.describe());
        // Even with HOME fixed, the raw runtime trusts the poisoned entry.
        let still = run(clean_command(PYTHON)
            .arg(&pex)
            .args(["-t", "x"])
            .env("HOME", &real_home)
            .current_dir(sandbox.path()));
        assert!(still.stderr.contains(POISONED), "{}", still.describe());
        Poisoned {
            sandbox,
            link_home,
            real_home,
            pex,
        }
    }

    fn pex_root(&self) -> PathBuf {
        self.real_home.join(".cache/pex")
    }

    fn pexinit(&self, home: &Path) -> Command {
        let mut cmd = pexinit();
        cmd.env("HOME", home).current_dir(self.sandbox.path());
        cmd
    }
}

#[test]
fn run_heals_a_poisoned_cache_before_starting_the_pex() {
    for kind in [Kind::Zipapp, Kind::Venv] {
        let p = Poisoned::new(kind);
        // The interpreter form, with the symlinked HOME that poisoned it.
        let mut cmd = p.pexinit(&p.link_home);
        cmd.args(["run", "--", "python3.11"])
            .arg(&p.pex)
            .args(["-t", "healed"]);
        let ran = run(&mut cmd);
        assert_cowsay_said(&ran, "healed");
        assert!(
            ran.stderr.contains("healed"),
            "one warning per healed entry:\n{}",
            ran.describe()
        );
        assert_single_cache(p.sandbox.path(), &p.pex_root());

        // Now healthy: the next run is silent.
        let mut cmd = p.pexinit(&p.link_home);
        cmd.args(["run", "--"]).arg(&p.pex).args(["-t", "quiet"]);
        let ran = run(&mut cmd);
        assert_cowsay_said(&ran, "quiet");
        assert!(ran.stderr_lines().is_empty(), "{}", ran.describe());
    }
}

/// `run` checks the entries of the PEX it starts, not the whole cache: another PEX's
/// poisoned entries neither block it (`--repair check`) nor get touched by it.
#[test]
fn run_checks_only_the_entries_of_the_pex_it_starts() {
    let p = Poisoned::new(Kind::Zipapp);
    let before = tree(&p.pex_root());
    let other = cowsay(PEX_FIXED, Kind::Zipapp);
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["run", "--repair", "check", "--"])
        .arg(&other)
        .args(["-t", "unrelated"]);
    let ran = run(&mut cmd);
    assert_cowsay_said(&ran, "unrelated");
    let after = tree(&p.pex_root());
    assert!(
        before.iter().all(|entry| after.contains(entry)),
        "the poisoned PEX's entries must be left as they were"
    );

    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["run", "--repair", "check", "--"]).arg(&p.pex);
    assert_eq!(run(&mut cmd).code, Some(125), "its own entries are checked");
}

#[test]
fn check_mode_refuses_and_off_mode_leaves_the_cache_alone() {
    let p = Poisoned::new(Kind::Zipapp);
    let before = tree(&p.pex_root());
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["run", "--repair", "check", "--"]).arg(&p.pex);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(125), "{}", ran.describe());
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    assert!(
        ran.stderr.contains("poisoned") && ran.stderr.contains("pexinit repair"),
        "{}",
        ran.describe()
    );

    // Config key and variable work too; off lets the raw failure through untouched.
    let config = p.sandbox.write("c.yaml", b"repair: check\n");
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--")
        .arg(&p.pex);
    assert_eq!(run(&mut cmd).code, Some(125));
    let mut cmd = p.pexinit(&p.real_home);
    cmd.env("PEXINIT_REPAIR", "off")
        .args(["run", "--"])
        .arg(&p.pex);
    let ran = run(&mut cmd);
    assert!(ran.stderr.contains(POISONED), "{}", ran.describe());
    assert_eq!(
        tree(&p.pex_root()),
        before,
        "check and off must not change the cache"
    );
}

#[test]
fn repair_command_dry_run_then_heal_then_raw_runs_work() {
    let p = Poisoned::new(Kind::Zipapp);
    let before = tree(&p.pex_root());

    // doctor shows what repair would do, and stays healthy: run heals it.
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["doctor", "--json"]).arg(&p.pex);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    let json = ran.json();
    assert_eq!(json["cache"]["state"], "scanned");
    assert_eq!(
        json["cache"]["plan"]["heal"][0]["links"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["doctor", "--repair", "check"]).arg(&p.pex);
    let ran = run(&mut cmd);
    assert_eq!(
        ran.code,
        Some(1),
        "check mode makes a poisoned cache a problem:\n{}",
        ran.describe()
    );
    assert!(
        ran.stdout.contains("problem: PEX_ROOT is poisoned"),
        "{}",
        ran.describe()
    );

    // Default PEX_ROOT: the one env would export.
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["repair", "--dry-run"]);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(1), "{}", ran.describe());
    assert!(ran.stdout.contains("would heal"), "{}", ran.describe());
    assert_eq!(tree(&p.pex_root()), before, "--dry-run changed the cache");

    let mut cmd = p.pexinit(&p.link_home);
    cmd.arg("repair").arg(p.pex_root()).arg("--json");
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert_eq!(
        ran.json()["outcome"]["healed"][0]["links"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // The raw runtime works again with the physical HOME.
    let raw = run(clean_command(PYTHON)
        .arg(&p.pex)
        .args(["-t", "raw"])
        .env("HOME", &p.real_home)
        .current_dir(p.sandbox.path()));
    assert_cowsay_said(&raw, "raw");

    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["repair", "/nonexistent/pex-root"]);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(125), "{}", ran.describe());
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
}

#[test]
fn plain_commands_skip_the_cache_check() {
    let p = Poisoned::new(Kind::Zipapp);
    let before = tree(&p.pex_root());
    let mut cmd = p.pexinit(&p.real_home);
    cmd.args(["run", "--repair", "check", "--", "/bin/true"]);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert_eq!(tree(&p.pex_root()), before);
}
