//! The shipped binary as PID 1 of real containers (podman + runc): `podman run -it` with
//! ^Z and ^C on a real terminal, `podman stop` after the app was stopped, and
//! `podman stop`'s SIGTERM rewritten or its exit status remapped.
//!
//! The image is the local Python base with the static musl binary from
//! `scripts/build-release` as ENTRYPOINT, rebuilt only when that binary changes.

mod containers_support;
mod support;

use std::time::Duration;

use containers_support::*;
use sha2::{Digest, Sha256};
use support::pty::{CTRL_C, CTRL_Z, Pty};

/// Handles SIGTERM (exit 0, or the status given as argv[1]), SIGQUIT (exit 0) and
/// SIGUSR1 (keeps running), saying which it got. With `echo`, it echoes each line of
/// stdin as `got: LINE` instead of waiting for signals.
const APP: &str = r#"
import signal, sys
mode = sys.argv[1] if len(sys.argv) > 1 else "0"
def on(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(int(mode))
    if signum == signal.SIGQUIT:
        sys.exit(0)
print("app ready", flush=True)
if mode == "echo":
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        print("got:", line.strip(), flush=True)
    sys.exit(0)
for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(signum, on)
while True:
    signal.pause()
"#;

/// The 128+N status of the app killed by ^C.
const CTRL_C_STATUS: i32 = 128 + libc::SIGINT;
const LOG_WAIT: Duration = Duration::from_secs(60);

/// The Python base image with the shipped pexinit as ENTRYPOINT, as root.
fn shipped_image() -> String {
    let (python_base, _) = base_images();
    let binary = support::shipped::pexinit();
    let bytes = std::fs::read(binary).expect("read the shipped binary");
    let mut hash = Sha256::new();
    hash.update(&bytes);
    hash.update(python_base.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let tag = format!("localhost/pexinit-test/shipped-init:{hex}");
    let _guard = lock("shipped-init-image");
    let exists = podman()
        .args(["image", "exists", &tag])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return tag;
    }
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::copy(binary, context.path().join("pexinit")).expect("copy pexinit");
    std::fs::write(
        context.path().join("Containerfile"),
        format!(
            "FROM {python_base}\n\
             COPY pexinit /usr/local/bin/pexinit\n\
             ENV HOME=/tmp\n\
             ENTRYPOINT [\"/usr/local/bin/pexinit\", \"run\", \"--\"]\n"
        ),
    )
    .expect("write Containerfile");
    podman_ok([
        "build".as_ref(),
        "--quiet".as_ref(),
        "--tag".as_ref(),
        tag.as_str().as_ref(),
        context.path().as_os_str(),
    ]);
    tag
}

/// `podman run --detach` of the app, with `env` set in the container; waits until it is
/// ready.
fn start_app(cleanup: &mut Cleanup, what: &str, env: &[&str], args: &[&str]) -> String {
    let image = shipped_image();
    let name = cleanup.container(what);
    let mut run: Vec<&str> = vec!["run", "--detach", "--name", &name];
    for pair in env {
        run.extend(["--env", pair]);
    }
    run.extend([image.as_str(), IMAGE_PYTHON, "-c", APP]);
    run.extend(args);
    podman_ok(run);
    wait_for_log(&name, "app ready", LOG_WAIT);
    name
}

/// `podman stop` with a timeout long enough that only the app's own exit ends it in time.
fn stop(name: &str) -> String {
    podman_ok(["stop", "--time", "120", name]);
    state(name)
}

/// SIGTSTP to the container (PID 1) is passed on and stops the app; PID 1 cannot stop,
/// so pexinit continues the app: it still gets SIGUSR1, and `podman stop` ends it in
/// time. A SIGSTOP and SIGCONT of the whole container change nothing of that.
#[test]
fn podman_stop_of_an_app_that_was_stopped_ends_in_time() {
    let mut cleanup = Cleanup::new();
    let name = start_app(&mut cleanup, "tstp", &[], &[]);
    podman_ok(["kill", "--signal", "TSTP", &name]);
    podman_ok(["kill", "--signal", "USR1", &name]);
    wait_for_log(&name, "got SIGUSR1", LOG_WAIT);
    podman_ok(["kill", "--signal", "STOP", &name]);
    podman_ok(["kill", "--signal", "CONT", &name]);
    let state = stop(&name);
    let log = logs(&name);
    assert!(log.contains("got SIGTERM"), "{log}");
    assert_eq!(state, "exited 0", "{log}");
}

/// `podman stop`'s SIGTERM reaches the app as SIGQUIT with
/// PEXINIT_REWRITE_SIGNAL=TERM:QUIT.
#[test]
fn podman_stop_rewritten_to_sigquit_reaches_the_app_as_sigquit() {
    let mut cleanup = Cleanup::new();
    let name = start_app(
        &mut cleanup,
        "rewrite",
        &["PEXINIT_REWRITE_SIGNAL=TERM:QUIT"],
        &["1"],
    );
    let state = stop(&name);
    let log = logs(&name);
    assert!(
        log.contains("got SIGQUIT") && !log.contains("got SIGTERM"),
        "{log}"
    );
    assert_eq!(state, "exited 0", "{log}");
}

/// An app that exits 143 on SIGTERM ends `podman stop` with status 0 given
/// PEXINIT_SUCCESS_EXIT=143.
#[test]
fn podman_stop_of_an_app_exiting_143_is_0_with_success_exit() {
    let mut cleanup = Cleanup::new();
    let name = start_app(
        &mut cleanup,
        "success",
        &["PEXINIT_SUCCESS_EXIT=143"],
        &["143"],
    );
    let state = stop(&name);
    let log = logs(&name);
    assert!(log.contains("got SIGTERM"), "{log}");
    assert_eq!(state, "exited 0", "{log}");
}

/// `podman run -it`: ^Z typed on the terminal does not freeze the app, ^C ends it.
#[test]
fn podman_run_it_ctrl_z_does_not_freeze_the_app() {
    let image = shipped_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("tty");
    let mut command = podman();
    command
        .args([
            "run",
            "-it",
            "--name",
            &name,
            &image,
            IMAGE_PYTHON,
            "-c",
            APP,
        ])
        .arg("echo");
    let mut pty = Pty::spawn(command);
    pty.expect("app ready");
    pty.send(CTRL_Z);
    pty.send("after\n");
    pty.expect("got: after");
    pty.send(CTRL_C);
    assert_eq!(pty.exit_code(), CTRL_C_STATUS, "{}", pty.transcript());
}
