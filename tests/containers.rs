//! End to end in real containers (podman + runc): the repo's Dockerfile and the example
//! app Dockerfile build and run; pexinit is PID 1 and passes signals on; a read-only,
//! arbitrary-uid container starts warm; the Kubernetes example runs under `podman kube
//! play`, its initContainer priming the cache; primes survive kills and concurrency.
//!
//! Base images are made locally (scripts/make-base-images: mmdebstrap, no registry) and,
//! like pexinit's image and the app image, reused across runs while their inputs match.

mod containers_support;
mod support;

use std::time::Duration;

use containers_support::*;
use serde_json::Value;

/// The app's `info` report, parsed from the container's stdout.
fn info(stdout: &str) -> Value {
    let start = stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in:\n{stdout}"));
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

/// Files the start wrote other than pex's and pexinit's bookkeeping (lock files,
/// access times, a link farm's marker): anything else (sources, bytecode, wheels,
/// venvs) means something was unpacked.
fn extracted(report: &Value) -> Vec<String> {
    const BOOKKEEPING: [&str; 3] = ["access.lck", ".last-access", ".pexinit-farm.json"];
    report["written"]
        .as_array()
        .expect("written")
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| !BOOKKEEPING.iter().any(|name| p.ends_with(&format!("/{name}"))))
        .map(str::to_owned)
        .collect()
}

/// pex's message when it cannot write its PEX_ROOT and starts cold from a temporary one.
const PEX_FALLBACK: [&str; 2] = ["un-writeable", "temporary PEX_ROOT"];

#[test]
fn dockerfile_image_runs_programs_as_pid_1_as_a_non_root_user() {
    let image = pexinit_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("pid1");
    let ran = podman_ok([
        "run",
        "--name",
        &name,
        &image,
        IMAGE_PYTHON,
        "-c",
        "import json, os; print(json.dumps([os.getpid(), os.getppid(), os.getuid(), \
         os.getgid(), os.environ['HOME'], os.environ['PEX_ROOT'], \
         open('/proc/1/cmdline').read().split(chr(0))[:3]]))",
    ]);
    let report: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}):\n{}", ran.describe()));
    // pexinit stays PID 1 (supervising), the program is its child.
    assert_eq!(
        report[6],
        serde_json::json!(["pexinit", "run", "--"]),
        "{report}"
    );
    assert_ne!(
        report[0], 1,
        "the program replaced pexinit as PID 1: {report}"
    );
    assert_eq!(report[1], 1, "the program is not pexinit's child: {report}");
    assert_eq!(report[2], 10001, "the image runs as uid 10001: {report}");
    assert_eq!(report[3], 0, "the image runs in group 0: {report}");
    assert_eq!(report[4], "/home/app", "{report}");
    assert_eq!(report[5], "/home/app/.cache/pex", "{report}");
    assert!(
        ran.stderr.trim().is_empty(),
        "a plain start warns:\n{}",
        ran.describe()
    );
}

#[test]
fn dockerfile_image_works_under_an_arbitrary_uid() {
    let image = pexinit_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("anyuid");
    let ran = podman_ok([
        "run",
        "--name",
        &name,
        "--user",
        "123456:0",
        &image,
        "/bin/sh",
        "-c",
        "id -u; touch \"$PEX_ROOT/probe\" && echo writable",
    ]);
    assert_eq!(ran.stdout, "123456\nwritable\n", "{}", ran.describe());
}

#[test]
fn example_image_runs_the_app_seeded_through_pexinit_as_pid_1() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("app");
    let ran = podman_ok(["run", "--name", &name, &image, "info"]);
    let report = info(&ran.stdout);
    assert_eq!(report["pid1"][0], "pexinit", "{report}");
    assert_eq!(report["ppid"], 1, "{report}");
    assert_eq!(report["uid"], 10001, "{report}");
    let cowsay = report["cowsay"].as_str().expect("cowsay");
    assert!(
        cowsay.starts_with(SEED),
        "the app did not run from the seed: {report}"
    );
}

#[test]
fn podman_stop_delivers_sigterm_and_kill_usr1_reaches_the_app() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("signals");
    podman_ok(["run", "--detach", "--name", &name, &image, "serve"]);
    wait_for_log(&name, "ready", Duration::from_secs(60));

    podman_ok(["kill", "--signal", "USR1", &name]);
    wait_for_log(&name, "got SIGUSR1", Duration::from_secs(30));
    assert!(state(&name).starts_with("running"), "USR1 ended the app");

    // A generous stop timeout: the app must exit on SIGTERM, not on the SIGKILL after it.
    podman_ok(["stop", "--time", "60", &name]);
    let log = logs(&name);
    assert!(
        log.contains("got SIGTERM") && log.contains("stopping cleanly"),
        "the app never saw SIGTERM:\n{log}"
    );
    assert_eq!(
        state(&name),
        "exited 0",
        "the app's own exit status:\n{log}"
    );
}

#[test]
fn read_only_arbitrary_uid_symlinked_home_and_cache_volume_start_warm() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("readonly");
    let cache = cleanup.volume("xdg-cache");
    podman_ok(["volume", "create", &cache]);
    // HOME reached through a symlink inside a bind mount, as /home -> /var/home hosts
    // and volume mounts give it: /mnt/d/home -> real/home.
    let host = support::Sandbox::new();
    let home = host.mkdir("real/home");
    std::os::unix::fs::chown(&home, Some(123456), Some(0)).expect("chown home");
    host.symlink("real/home", "home");
    let ran = podman_ok([
        "run",
        "--name",
        &name,
        "--read-only",
        "--user",
        "123456:0",
        "--tmpfs",
        "/pex-root:mode=1777",
        "--volume",
        &format!("{}:/mnt/d", host.path().display()),
        "--volume",
        &format!("{cache}:/xdg-cache:U"),
        "--env",
        "HOME=/mnt/d/home",
        "--env",
        "XDG_CACHE_HOME=/xdg-cache",
        "--env",
        "PEX_ROOT=/pex-root",
        "--env",
        "PEX_VERBOSE=1",
        &image,
        "info",
        "/mnt/d/real/home",
        "/xdg-cache",
        "/pex-root",
        "/tmp",
    ]);
    let report = info(&ran.stdout);
    assert_eq!(report["uid"], 123456, "{report}");
    assert_eq!(report["pid1"][0], "pexinit", "{report}");
    // pexinit handed the app physical paths.
    assert_eq!(report["env"]["HOME"], "/mnt/d/real/home", "{report}");
    assert_eq!(report["env"]["XDG_CACHE_HOME"], "/xdg-cache", "{report}");
    // Warm: the app's code comes from the image's seed, nothing was unpacked anywhere
    // writable, and pex did not fall back to a cold temporary PEX_ROOT.
    let cowsay = report["cowsay"].as_str().expect("cowsay");
    assert!(cowsay.starts_with(SEED), "not run from the seed: {report}");
    assert_eq!(extracted(&report), Vec::<String>::new(), "{report}");
    for needle in PEX_FALLBACK {
        assert!(!ran.stderr.contains(needle), "{}", ran.describe());
    }
}
