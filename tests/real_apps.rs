//! Real apps in real containers: a gunicorn + Flask app (markupsafe's native extension)
//! and a uvicorn + FastAPI app (pydantic-core, uvloop and httptools, all native), each
//! built by pex 2.105.2 as a default zipapp and seeded into an image by
//! examples/docker/Dockerfile (`pexinit seed` at build time, `pexinit run` as the
//! entrypoint).
//!
//! Each app is served three ways, each in its own podman container (runc, no network
//! but loopback, requests made with python's urllib from inside the container):
//!
//! - **pex**: the reference. `python3.11 /app/app.pex` with a fresh PEX_ROOT in the
//!   container's /tmp, behind podman's `--init` (so that, as under pexinit, the app is
//!   not PID 1 and signals keep their default meaning); `--read-only`, `--user 123456:0`.
//! - **pexinit, read-only**: the image's entrypoint, `--read-only --user 123456:0`: the
//!   seed in the image cannot be written.
//! - **pexinit, writable root**: the same with a writable root filesystem. uid 123456 is
//!   in group 0, which may write the seed and HOME: `podman diff` then shows anything
//!   the start wrote there, so an empty diff means nothing was written. (/tmp is a tmpfs,
//!   as under `--read-only`; what podman itself changes, such as the mount points it
//!   creates in /etc, is learnt from a container running `/bin/true` and subtracted.)
//!
//! For each, the test records the first answer (and how long it took), what SIGHUP does
//! (the app keeps serving, or exits with which status), the exit status after SIGTERM
//! (`podman stop`), and the log lines (digits normalized: pids, ports, times). pexinit's
//! runs must match pex's on all of them, `podman diff` must be empty, and `pexinit doctor
//! --json` / `env --json` in the same container setup must name the fast path.

mod containers_support;
mod differential_support;
mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containers_support::{
    Cleanup, IMAGE_PYTHON, lock, logs, pexinit_image, podman, podman_ok, repo, run_podman, state,
};
use differential_support::{Claim, fast_path_claims};
use serde_json::Value;
use support::{Kind, PEX_NEWEST, pex_fixture};

/// The port the apps listen on inside their container.
const PORT: u16 = 8000;
/// How long a start may take on a loaded machine before the test gives up.
const START_LIMIT: Duration = Duration::from_secs(180);

struct RealApp {
    name: &'static str,
    /// Pinned, so a rebuilt fixture resolves the same distributions.
    requirements: &'static [&'static str],
    /// Below tests/differential_support/real_apps/.
    sources: &'static str,
    console_script: &'static str,
    args: &'static [&'static str],
}

const FLASK: RealApp = RealApp {
    name: "flask",
    requirements: &["flask==3.1.3", "gunicorn==27.0.1"],
    sources: "flask",
    console_script: "gunicorn",
    // gunicorn's control socket lives in HOME, which differs on purpose (pexinit gives a
    // uid that cannot write HOME a private one): off, so both runs log the same.
    args: &[
        "webapp:app",
        "--bind",
        "127.0.0.1:8000",
        "--workers",
        "2",
        "--no-control-socket",
    ],
};

const FASTAPI: RealApp = RealApp {
    name: "fastapi",
    requirements: &[
        "fastapi==0.165.0",
        "uvicorn==0.54.0",
        "uvloop==0.23.0",
        "httptools==0.9.0",
    ],
    sources: "fastapi",
    console_script: "uvicorn",
    args: &[
        "api:app",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ],
};

fn sources_dir(app: &RealApp) -> PathBuf {
    repo()
        .join("tests/differential_support/real_apps")
        .join(app.sources)
}

/// A short hash of `parts`.
fn short_hash(parts: &[&[u8]]) -> String {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    pexinit::pex::manifest::sha256_bytes(&bytes)[..16].to_owned()
}

/// Every file below `dir`, sorted, as (relative path, contents).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = support::tree(dir)
        .into_iter()
        .filter_map(|e| e.strip_prefix("f ").map(PathBuf::from))
        .map(|p| {
            let rel = p.strip_prefix(dir).expect("below").display().to_string();
            let bytes = fs::read(&p).expect("read");
            (rel, bytes)
        })
        .collect();
    out.sort();
    out
}

/// The app as a default zipapp built by the newest pex (named by a hash of its
/// sources and requirements, so editing them builds a new one).
fn app_pex(app: &RealApp) -> PathBuf {
    let mut parts: Vec<Vec<u8>> = app
        .requirements
        .iter()
        .map(|r| r.as_bytes().to_vec())
        .collect();
    for (rel, bytes) in files(&sources_dir(app)) {
        parts.push(rel.into_bytes());
        parts.push(bytes);
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let name = format!("realapp-{}-{}", app.name, short_hash(&refs));
    pex_fixture(PEX_NEWEST, Kind::Zipapp, &name, || {
        let mut args: Vec<OsString> = app.requirements.iter().map(OsString::from).collect();
        args.extend([
            "-D".into(),
            sources_dir(app).into_os_string(),
            "-c".into(),
            app.console_script.into(),
        ]);
        args
    })
}

fn image_exists(tag: &str) -> bool {
    run_podman(podman().args(["image", "exists", tag])).success()
}

/// examples/docker/Dockerfile on pexinit's image with the app: the seed is made at
/// build time by `pexinit seed`, as users do.
fn app_image(app: &RealApp) -> String {
    let base = pexinit_image();
    let pex = app_pex(app);
    let pex_bytes = fs::read(&pex).expect("read app.pex");
    let example = files(&repo().join("examples/docker"));
    let mut parts: Vec<&[u8]> = vec![base.as_bytes(), &pex_bytes];
    for (rel, bytes) in &example {
        parts.push(rel.as_bytes());
        parts.push(bytes);
    }
    let tag = format!(
        "localhost/pexinit-test/realapp-{}:{}",
        app.name,
        short_hash(&parts)
    );
    if image_exists(&tag) {
        return tag;
    }
    let _guard = lock(&format!("realapp-{}-image", app.name));
    if image_exists(&tag) {
        return tag;
    }
    let context = support::Sandbox::new();
    for (rel, bytes) in &example {
        context.write(rel, bytes);
    }
    fs::copy(&pex, context.join("app.pex")).expect("copy app.pex");
    let ran = run_podman(
        podman()
            .args(["build", "--quiet", "--layers=false", "--tag", &tag])
            .args(["--build-arg", &format!("PEXINIT_IMAGE={base}")])
            .arg(context.path()),
    );
    assert!(
        ran.success(),
        "podman build of examples/docker with the {} app failed:\n{}",
        app.name,
        ran.describe()
    );
    tag
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pex,
    PexinitReadOnly,
    PexinitWritableRoot,
}

/// What a served app did, in the terms the three ways must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    first_answer: String,
    after_sighup: String,
    after_sigterm: String,
    log: BTreeSet<String>,
}

const GET: &str = "import sys, urllib.request; \
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())";

/// GET / from inside the container.
fn get(container: &str) -> Result<String, String> {
    let ran = run_podman(podman().args([
        "exec",
        container,
        IMAGE_PYTHON,
        "-c",
        GET,
        &format!("http://127.0.0.1:{PORT}/"),
    ]));
    if ran.success() {
        Ok(ran.stdout)
    } else {
        Err(ran.describe())
    }
}

/// Polls until GET / answers, or the container exits, or `limit` passes.
fn wait_for_answer(container: &str, limit: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        match get(container) {
            Ok(body) => return Ok(body),
            Err(why) => {
                let now = state(container);
                if !now.starts_with("running") {
                    return Err(format!("the container is {now}"));
                }
                if start.elapsed() > limit {
                    return Err(format!("no answer after {limit:?}: {why}"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Log lines with digit runs (pids, ports, times, dates) replaced by `#`.
fn normalized_log(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut out = String::new();
            let mut in_digits = false;
            for c in line.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('#');
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn podman_args(mode: Mode, name: &str, image: &str, app: &RealApp) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--detach", "--name", name, "--network", "none"]
        .map(String::from)
        .to_vec();
    // An arbitrary uid without a passwd entry, as Kubernetes runs it (podman would add
    // one to /etc/passwd, which `podman diff` would show).
    args.extend(["--user".into(), "123456:0".into(), "--passwd=false".into()]);
    match mode {
        Mode::Pex => args.extend(
            [
                "--read-only",
                "--init",
                "--env",
                "PEX_ROOT=/tmp/pex-root",
                "--entrypoint",
                IMAGE_PYTHON,
                image,
                "/app/app.pex",
            ]
            .map(String::from),
        ),
        Mode::PexinitReadOnly => args.extend(["--read-only".into(), image.to_owned()]),
        // /tmp is a tmpfs as under --read-only: what the app's server does there
        // (gunicorn's worker heartbeat files) is no write into the image.
        Mode::PexinitWritableRoot => {
            args.extend(["--tmpfs".into(), "/tmp".into(), image.to_owned()])
        }
    }
    args.extend(app.args.iter().map(|a| (*a).to_owned()));
    args
}

/// Serves the app one way; returns what it did, the time to the first answer and
/// `podman diff`.
fn serve(app: &RealApp, image: &str, mode: Mode) -> (Served, Duration, Vec<String>) {
    let mut cleanup = Cleanup::new();
    let name = cleanup.container(&format!("realapp-{}", app.name));
    let started = Instant::now();
    podman_ok(podman_args(mode, &name, image, app));
    let first_answer = wait_for_answer(&name, START_LIMIT).unwrap_or_else(|why| {
        panic!(
            "{} ({mode:?}) never answered: {why}\nlog:\n{}",
            app.name,
            logs(&name)
        )
    });
    let first = started.elapsed();

    podman_ok(["kill", "--signal", "HUP", &name]);
    // Give the app time to act on it (gunicorn restarts its workers).
    std::thread::sleep(Duration::from_secs(3));
    let after_sighup = if state(&name).starts_with("running") {
        match wait_for_answer(&name, Duration::from_secs(60)) {
            Ok(body) => format!("still serving: {body}"),
            Err(why) => format!("stopped serving: {why}"),
        }
    } else {
        format!("exited: {}", state(&name))
    };
    let after_sigterm = if state(&name).starts_with("running") {
        // SIGTERM, then SIGKILL only after a minute: the app must exit on SIGTERM.
        podman_ok(["stop", "--time", "60", &name]);
        state(&name)
    } else {
        "(already exited)".to_owned()
    };
    let log = logs(&name);
    let diff = run_podman(podman().args(["diff", &name]))
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    let served = Served {
        first_answer,
        after_sighup,
        after_sigterm,
        log: normalized_log(&log),
    };
    (served, first, diff)
}

/// What podman itself changes in a container's root filesystem (it creates mount points
/// such as /etc/hostname: `C /etc`), seen by running `/bin/true` the way `mode` runs the
/// app: subtracted from the app's `podman diff`.
fn podman_own_changes(image: &str, mode: Mode) -> BTreeSet<String> {
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("realapp-baseline");
    let mut args = vec!["run".to_owned(), "--name".into(), name.clone()];
    args.extend(["--network", "none", "--user", "123456:0", "--passwd=false"].map(String::from));
    match mode {
        Mode::Pex | Mode::PexinitReadOnly => args.push("--read-only".into()),
        Mode::PexinitWritableRoot => args.extend(["--tmpfs".into(), "/tmp".into()]),
    }
    args.extend(["--entrypoint", "/bin/true", image].map(String::from));
    podman_ok(args);
    podman_ok(["diff", &name])
        .stdout
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `pexinit doctor --json` and `pexinit env --json` in the container setup the app runs
/// in (read-only root, uid 123456:0): both must name the fast path.
fn assert_fast_path_named(app: &RealApp, image: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for subcommand in ["doctor", "env"] {
        let ran = run_podman(
            podman()
                .args(["run", "--rm", "--network", "none", "--read-only"])
                .args(["--user", "123456:0", "--passwd=false"])
                .args(["--entrypoint", "pexinit", image])
                .args([subcommand, "--json", "--", "/app/app.pex"])
                .args(app.args),
        );
        match serde_json::from_str::<Value>(&ran.stdout) {
            Ok(v) => reports.push(v),
            Err(e) => {
                problems.push(format!(
                    "{subcommand} --json: no JSON ({e}): {}",
                    ran.describe()
                ));
                reports.push(Value::Null);
            }
        }
    }
    for (who, claim) in fast_path_claims(&reports[0], &reports[1]) {
        match claim {
            Claim::Taken(_) => {}
            Claim::NotTaken(reason) => problems.push(format!("{who}: fast path: none ({reason})")),
            Claim::Unreadable(why) => problems.push(format!("{who}: {why}")),
        }
    }
    problems
}

fn real_app(app: &RealApp) {
    containers_support::require_tools();
    let image = app_image(app);
    let (reference, pex_first, _) = serve(app, &image, Mode::Pex);
    assert!(
        reference.first_answer.contains("\"hello\""),
        "pex itself did not serve the {} app: {reference:#?}",
        app.name
    );
    let mut problems = Vec::new();
    for mode in [Mode::PexinitReadOnly, Mode::PexinitWritableRoot] {
        let (served, first, diff) = serve(app, &image, mode);
        eprintln!(
            "{}: first answer after {first:?} ({mode:?}) vs {pex_first:?} (pex)",
            app.name
        );
        if served.first_answer != reference.first_answer {
            problems.push(format!(
                "{mode:?}: first answer: pex {:?} | pexinit {:?}",
                reference.first_answer, served.first_answer
            ));
        }
        if served.after_sighup != reference.after_sighup {
            problems.push(format!(
                "{mode:?}: after SIGHUP: pex {:?} | pexinit {:?}",
                reference.after_sighup, served.after_sighup
            ));
        }
        if served.after_sigterm != reference.after_sigterm {
            problems.push(format!(
                "{mode:?}: after SIGTERM: pex {:?} | pexinit {:?}",
                reference.after_sigterm, served.after_sigterm
            ));
        }
        if served.log != reference.log {
            problems.push(format!(
                "{mode:?}: log lines only pex printed: {:?}; only pexinit printed: {:?}",
                reference.log.difference(&served.log).collect::<Vec<_>>(),
                served.log.difference(&reference.log).collect::<Vec<_>>()
            ));
        }
        let own = podman_own_changes(&image, mode);
        let written: Vec<&String> = diff.iter().filter(|d| !own.contains(*d)).collect();
        if !written.is_empty() {
            problems.push(format!(
                "{mode:?}: podman diff is not empty (beyond podman's own {own:?}): {written:?}"
            ));
        }
    }
    problems.extend(assert_fast_path_named(app, &image));
    assert!(
        problems.is_empty(),
        "the {} app served by pexinit from the seed differs from pex:\n  {}\npex: {reference:#?}",
        app.name,
        problems.join("\n  ")
    );
}

#[test]
fn gunicorn_flask_zipapp_serves_from_a_read_only_seed_as_pex_does() {
    real_app(&FLASK);
}

#[test]
fn uvicorn_fastapi_zipapp_serves_from_a_read_only_seed_as_pex_does() {
    real_app(&FASTAPI);
}
