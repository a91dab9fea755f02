//! Support for the container tests: real podman + runc, with base images made locally
//! (there is no registry), pexinit's image built once per source tree from the repo's
//! Dockerfile, and the example app image built from examples/docker.
//!
//! Images are shared between test binaries and runs: each is built under a file lock and
//! tagged with a hash of its inputs, so a rerun with unchanged sources builds nothing.
//! Every container, pod and volume a test makes carries a unique name and is removed by a
//! [`Cleanup`] guard, even when the test fails.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{self, Kind, PATH, Ran, pex_fixture, run};

pub const INSTALL_HINT: &str = "run scripts/install-test-deps \
     (apt-get install -y podman runc catatonit mmdebstrap)";

/// Debian bookworm with /usr/bin/python3.11: the runtime base (PYTHON_IMAGE).
const PYTHON_BASE: &str = "localhost/pexinit-test/python";
/// Debian bookworm with gcc and musl-tools: the build stage (RUST_IMAGE), toolchain mounted.
const BUILD_BASE: &str = "localhost/pexinit-test/rust-build";
/// The interpreter of PYTHON_BASE.
pub const IMAGE_PYTHON: &str = "/usr/bin/python3.11";
/// Where the example Dockerfile seeds the app's cache.
pub const SEED: &str = "/opt/pex-root";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn state_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures/containers");
    fs::create_dir_all(&dir).expect("create container fixtures dir");
    dir
}

/// `podman` with the project's containers.conf (cgroupfs, runc, file events, ulimits).
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env(
        "CONTAINERS_CONF",
        repo().join("tests/podman/containers.conf"),
    )
    .env("PATH", PATH)
    .stdin(Stdio::null());
    cmd
}

/// Runs podman with `args`; panics with its output unless it succeeds.
pub fn podman_ok<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = podman();
    cmd.args(args);
    let ran = run_podman(&mut cmd);
    assert!(
        ran.success(),
        "{:?} failed:\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        ran.describe()
    );
    ran
}

pub fn run_podman(cmd: &mut Command) -> Ran {
    match cmd.output() {
        Ok(out) => Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => panic!("cannot start podman: {e}; {INSTALL_HINT}"),
    }
}

/// Fails (never skips) when a tool the container tests need is missing.
pub fn require_tools() {
    for tool in ["podman", "runc", "mmdebstrap"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .env("PATH", PATH)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is missing; {INSTALL_HINT}");
    }
}

/// An exclusive flock on a file in the container fixtures dir, held while alive.
pub struct Lock(File);

pub fn lock(name: &str) -> Lock {
    let file = File::create(state_dir().join(format!(".{name}.lock"))).expect("lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {name}");
    Lock(file)
}

fn image_exists(tag: &str) -> bool {
    podman()
        .args(["image", "exists", tag])
        .status()
        .unwrap_or_else(|e| panic!("cannot start podman: {e}; {INSTALL_HINT}"))
        .success()
}

/// The local Debian base images (runtime, build), made once by scripts/make-base-images
/// (mmdebstrap) and tagged with a hash of that script, so changing it makes new ones.
pub fn base_images() -> (String, String) {
    require_tools();
    let hash = tree_hash(repo(), &["scripts/make-base-images"], &[]);
    let python = format!("{PYTHON_BASE}:bookworm-{hash}");
    let build = format!("{BUILD_BASE}:bookworm-{hash}");
    if image_exists(&python) && image_exists(&build) {
        return (python, build);
    }
    let _guard = lock("base-images");
    let mut cmd = Command::new(repo().join("scripts/make-base-images"));
    cmd.args([&python, &build])
        .env(
            "CONTAINERS_CONF",
            repo().join("tests/podman/containers.conf"),
        )
        .env("PATH", PATH);
    let ran = run(&mut cmd);
    assert!(
        ran.success(),
        "scripts/make-base-images failed ({INSTALL_HINT}):\n{}",
        ran.describe()
    );
    prune_tags(PYTHON_BASE, &python);
    prune_tags(BUILD_BASE, &build);
    (python, build)
}

/// sha256 over the named files and every file below the named directories (sorted
/// relative paths and contents), as hex.
fn tree_hash(root: &Path, inputs: &[&str], extra: &[&[u8]]) -> String {
    let mut files = Vec::new();
    for input in inputs {
        let path = root.join(input);
        if path.is_dir() {
            files.extend(
                support::tree(&path)
                    .into_iter()
                    .filter_map(|e| e.strip_prefix("f ").map(PathBuf::from)),
            );
        } else {
            files.push(path);
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        let bytes = fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    for bytes in extra {
        hasher.update(bytes);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host's Rust toolchain (the build stage mounts it: no rust image to pull here).
fn host_toolchain() -> PathBuf {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot (rustup's rustc on PATH)");
    assert!(out.status.success(), "rustc --print sysroot failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The shipped binary is built for musl (as scripts/build-release does): the mounted
/// toolchain needs that target, and the build stage has no rustup to add it.
fn ensure_musl_target(toolchain: &Path) {
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    if toolchain.join("lib/rustlib").join(&target).is_dir() {
        return;
    }
    let ran = run(Command::new("rustup").args(["target", "add", &target]));
    assert!(
        ran.success(),
        "rustup target add {target} (needed to build the image):\n{}",
        ran.describe()
    );
}

/// The crates the host already downloaded for this lockfile (the build runs offline).
fn host_registry() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    home.join("registry")
}

/// Drops old tags of `repository` (images of earlier source trees), keeping `keep` and
/// the newest few: other checkouts (a worktree, the main tree) may be testing with
/// theirs right now.
fn prune_tags(repository: &str, keep: &str) {
    const KEEP_NEWEST: usize = 3;
    // podman lists the newest first.
    let ran = run_podman(podman().args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference={repository}"),
    ]));
    let old = ran
        .stdout
        .lines()
        .filter(|t| !t.is_empty() && *t != keep)
        .skip(KEEP_NEWEST - 1);
    for tag in old {
        let _ = podman().args(["rmi", tag]).output();
    }
}

/// pexinit's image, built from the repo's Dockerfile once per source tree.
pub fn pexinit_image() -> String {
    let (python_base, build_base) = base_images();
    let repository = "localhost/pexinit-test/pexinit";
    let hash = tree_hash(
        repo(),
        &[
            "Dockerfile",
            ".dockerignore",
            "Cargo.toml",
            "Cargo.lock",
            "src",
        ],
        &[],
    );
    let tag = format!("{repository}:{hash}");
    if image_exists(&tag) {
        return tag;
    }
    let _guard = lock("pexinit-image");
    if image_exists(&tag) {
        return tag;
    }
    let toolchain = host_toolchain();
    ensure_musl_target(&toolchain);
    let registry = host_registry();
    let mut cmd = podman();
    cmd.args(["build", "--quiet", "--layers=false", "--tag", &tag])
        .args(["--build-arg", &format!("RUST_IMAGE={build_base}")])
        .args(["--build-arg", &format!("PYTHON_IMAGE={python_base}")])
        .args(["--build-arg", &format!("PYTHON={IMAGE_PYTHON}")])
        .arg("--volume")
        .arg(mount(&toolchain, "/opt/rust"))
        .arg("--volume")
        .arg(mount(&registry, "/opt/cargo/registry"))
        .arg(repo());
    let ran = run_podman(&mut cmd);
    assert!(
        ran.success(),
        "podman build of the Dockerfile failed:\n{}",
        ran.describe()
    );
    prune_tags(repository, &tag);
    tag
}

fn mount(host: &Path, container: &str) -> OsString {
    let mut spec = host.as_os_str().to_owned();
    spec.push(format!(":{container}:ro"));
    spec
}

/// Modules in the app's bulk package: enough files that priming the seed takes a
/// moment (the kill-mid-prime test needs time to land in the middle).
const BULK_MODULES: usize = 5_000;

/// The app the tests run (tests/containers_support/sigapp.py, with cowsay as a wheel
/// dependency and a bulk package of many small modules), built by the newest pex
/// with `--venv`, the layout pexinit starts directly from a seed.
pub fn app_pex() -> PathBuf {
    let name = format!("sigapp{BULK_MODULES}");
    pex_fixture(support::PEX_NEWEST, Kind::Venv, &name, || {
        let src = state_dir().join("sigapp-src");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(src.join("sigapp")).expect("src dir");
        fs::write(src.join("sigapp/__init__.py"), "").expect("write");
        fs::copy(
            repo().join("tests/containers_support/sigapp.py"),
            src.join("sigapp/main.py"),
        )
        .expect("copy sigapp.py");
        for i in 0..BULK_MODULES {
            let pkg = src.join(format!("bulk/p{:03}", i / 100));
            if i % 100 == 0 {
                fs::create_dir_all(&pkg).expect("bulk dir");
                fs::write(pkg.join("__init__.py"), "").expect("write");
            }
            fs::write(pkg.join(format!("m{i}.py")), format!("VALUE = {i}\n")).expect("write");
        }
        fs::write(src.join("bulk/__init__.py"), "").expect("write");
        vec![
            "cowsay".into(),
            "-D".into(),
            src.into_os_string(),
            "-e".into(),
            OsString::from("sigapp.main:main"),
        ]
    })
}

/// The example app image: examples/docker/Dockerfile on pexinit's image, with the app.
pub fn app_image() -> String {
    let base = pexinit_image();
    let app = app_pex();
    let repository = "localhost/pexinit-test/app";
    let app_bytes = fs::read(&app).expect("read app.pex");
    let hash = tree_hash(repo(), &["examples/docker"], &[base.as_bytes(), &app_bytes]);
    let tag = format!("{repository}:{hash}");
    if image_exists(&tag) {
        return tag;
    }
    let _guard = lock("app-image");
    if image_exists(&tag) {
        return tag;
    }
    // The build context is a copy of examples/docker with the app in it, as a user has it.
    let context = tempfile::Builder::new()
        .prefix("pexinit-app-context-")
        .tempdir_in(state_dir())
        .expect("context dir");
    for entry in fs::read_dir(repo().join("examples/docker")).expect("examples/docker") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), context.path().join(entry.file_name())).expect("copy");
    }
    fs::copy(&app, context.path().join("app.pex")).expect("copy app.pex");
    let ran = run_podman(
        podman()
            .args(["build", "--quiet", "--layers=false", "--tag", &tag])
            .args(["--build-arg", &format!("PEXINIT_IMAGE={base}")])
            .arg(context.path()),
    );
    assert!(
        ran.success(),
        "podman build of examples/docker failed:\n{}",
        ran.describe()
    );
    prune_tags(repository, &tag);
    tag
}

/// A name no other test (or test binary) uses at the same time.
pub fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "pexinit-test-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the containers, pods and volumes a test made, whatever happened.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    pods: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn container(&mut self, what: &str) -> String {
        let name = unique(what);
        self.containers.push(name.clone());
        name
    }

    pub fn pod(&mut self, name: &str) {
        self.pods.push(name.to_owned());
    }

    pub fn volume(&mut self, what: &str) -> String {
        let name = unique(what);
        self.volumes.push(name.clone());
        name
    }

    /// Adopts a volume named elsewhere (e.g. created by kube play).
    pub fn adopt_volume(&mut self, name: &str) {
        self.volumes.push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = podman().args(["pod", "rm", "--force", pod]).output();
        }
        for container in &self.containers {
            let _ = podman()
                .args(["rm", "--force", "--time", "0", container])
                .output();
        }
        for volume in &self.volumes {
            let _ = podman().args(["volume", "rm", "--force", volume]).output();
        }
    }
}

/// `podman logs` of a container (stdout and stderr together).
pub fn logs(container: &str) -> String {
    let ran = run_podman(podman().args(["logs", container]));
    format!("{}{}", ran.stdout, ran.stderr)
}

/// Waits until the container's log holds `needle`; panics with the log after `limit`.
pub fn wait_for_log(container: &str, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let log = logs(container);
        if log.contains(needle) {
            return log;
        }
        assert!(
            start.elapsed() < limit,
            "{container} never logged {needle:?}; log:\n{log}\nstate: {}",
            state(container)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `podman inspect` of a container's state: status and exit code.
pub fn state(container: &str) -> String {
    run_podman(podman().args([
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        container,
    ]))
    .stdout
    .trim()
    .to_owned()
}

/// Waits for a container to exit and returns its exit code.
pub fn wait_exit(container: &str) -> i32 {
    let ran = podman_ok(["wait", container]);
    ran.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("podman wait {container}: {}", ran.describe()))
}

/// When a container started and finished (ns since the epoch).
pub fn run_span(container: &str) -> (u128, u128) {
    let ran = podman_ok([
        "inspect",
        "--format",
        "{{.State.StartedAt.UnixNano}} {{.State.FinishedAt.UnixNano}}",
        container,
    ]);
    let times: Vec<u128> = ran
        .stdout
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(
        times.len(),
        2,
        "podman inspect {container}: {}",
        ran.describe()
    );
    (times[0], times[1])
}
