//! `pexinit run` on a real terminal: ^Z, ^C, `fg`, `bg`, a start in the background and a
//! read after it exits, with pexinit as PID 1 (`docker run -it`: `unshare --pid --fork
//! --mount-proc setsid -c`, the session leader owning the terminal) and with `--init
//! always` as a job of an interactive bash.
//!
//! Nothing is mocked; waits are for text on the screen, bounded only by a deadline
//! against hangs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::pty::{CTRL_C, CTRL_Z, Pty};
use support::{PATH, PYTHON};

const UNSHARE: &str = "/usr/bin/unshare";
const BASH: &str = "/bin/bash";

/// An interactive app: says it is ready, then echoes each line it reads as `got: LINE`.
/// With `wait FILE` it waits (without reading) until FILE exists instead, then exits 0.
const APP: &str = r#"
import os, sys, time
print("app ready", flush=True)
if sys.argv[1:2] == ["wait"]:
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.02)
    sys.exit(0)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    print("got:", line.strip(), flush=True)
"#;

/// The 128+N status of the app killed by ^C.
const CTRL_C_STATUS: i32 = 128 + libc::SIGINT;

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing; install it with: apt-get install -y {package}"
    );
}

struct Setup {
    dir: tempfile::TempDir,
    app: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        require(PYTHON, "python3.11");
        require(UNSHARE, "util-linux");
        require(BASH, "bash");
        let dir = tempfile::tempdir().expect("tempdir");
        let app = dir.path().join("app.py");
        std::fs::write(&app, APP).expect("write app");
        Setup { dir, app }
    }

    /// `command` with a clean environment: what a terminal user's container or shell has.
    fn clean(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.dir.path())
            .env("TERM", "dumb")
            .env("PEXINIT_CONFIG", "/dev/null")
            .current_dir(self.dir.path());
        command
    }

    /// pexinit as PID 1 of a new PID namespace, owning the terminal as `docker run -it`'s
    /// ENTRYPOINT does, running the app.
    fn pid1(&self) -> Pty {
        let mut command = self.clean(UNSHARE);
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(["setsid", "-c", support::pexinit_bin(), "run", "--"])
            .arg(PYTHON)
            .arg(&self.app);
        Pty::spawn(command)
    }

    /// An interactive bash (job control on, no rc files, no line editing) with
    /// `$PEXINIT`, `$PY` and `$APP` set for the command lines typed into it.
    fn interactive_bash(&self) -> Pty {
        let mut command = self.clean(BASH);
        command
            .args(["--norc", "--noprofile", "--noediting", "-i"])
            .env("PS1", "$ ")
            .env("PEXINIT", support::pexinit_bin())
            .env("PY", PYTHON)
            .env("APP", &self.app);
        let mut pty = Pty::spawn(command);
        pty.expect("$ ");
        pty
    }
}

/// Types `printf '%s-%s\n' WORD here` and waits for `WORD-here`: the shell read a command
/// line and ran it (the typed line itself shows `WORD here`, never `WORD-here`).
fn shell_answers(pty: &mut Pty, word: &str) {
    pty.send(&format!("printf '%s-%s\\n' {word} here\n"));
    pty.expect(&format!("{word}-here"));
}

/// The app started with `--init always` in the foreground of the interactive bash.
fn foreground_app(bash: &mut Pty) {
    bash.send("\"$PEXINIT\" run --init always -- \"$PY\" \"$APP\"\n");
    bash.expect("app ready");
}

// ---------------------------------------------------------------------------------
// PID 1
// ---------------------------------------------------------------------------------

/// ^Z reaches the app's process group; PID 1 cannot be stopped, so nobody could ever
/// continue the app: it must go on running (as a bare app as PID 1 would), and ^C must
/// still end it.
#[test]
fn pid1_ctrl_z_does_not_freeze_the_app() {
    let setup = Setup::new();
    let mut pty = setup.pid1();
    pty.expect("app ready");
    pty.send(CTRL_Z);
    pty.send("after\n");
    pty.expect("got: after");
    pty.send(CTRL_C);
    assert_eq!(pty.exit_code(), CTRL_C_STATUS, "{}", pty.transcript());
}

/// SIGTSTP sent to PID 1 (`docker kill -s TSTP`) is passed on, and the stop it causes is
/// undone like a typed ^Z: the app keeps answering.
#[test]
fn pid1_sigtstp_does_not_freeze_the_app() {
    let setup = Setup::new();
    let mut pty = setup.pid1();
    pty.expect("app ready");
    let pexinit = pid1_of(pty.pid());
    // SAFETY: kill(2) with plain integers.
    assert_eq!(unsafe { libc::kill(pexinit, libc::SIGTSTP) }, 0);
    pty.send("after\n");
    pty.expect("got: after");
    pty.send(CTRL_C);
    assert_eq!(pty.exit_code(), CTRL_C_STATUS, "{}", pty.transcript());
}

/// The host pid of the PID 1 `unshare` (pid `unshare`) started: its only child.
fn pid1_of(unshare: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .expect("read unshare's children");
    children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("unshare {unshare} has no child"))
}

// ---------------------------------------------------------------------------------
// --init always as a job of an interactive shell
// ---------------------------------------------------------------------------------

/// ^Z suspends the whole job: the shell says so and answers; `fg` gives the app the
/// terminal back; ^C ends it with 130.
#[test]
fn init_always_ctrl_z_stops_the_job_and_fg_resumes_it() {
    let setup = Setup::new();
    let mut bash = setup.interactive_bash();
    foreground_app(&mut bash);
    bash.send(CTRL_Z);
    bash.expect("Stopped");
    shell_answers(&mut bash, "stopped");
    bash.send("fg\n");
    bash.expect("$APP");
    bash.send("again\n");
    bash.expect("got: again");
    bash.send(CTRL_C);
    bash.expect("$ ");
    bash.send("echo \"status=$?\"\n");
    bash.expect(&format!("status={CTRL_C_STATUS}"));
    assert_no_stopped_jobs_and_exit(&mut bash);
}

/// After ^Z, `bg` continues the job in the background: the app's read of the terminal
/// stops the job again (SIGTTIN), and `fg` lets it read.
#[test]
fn init_always_bg_then_fg() {
    let setup = Setup::new();
    let mut bash = setup.interactive_bash();
    // Job status changes are reported as they happen, not at the next prompt.
    bash.send("set -b\n");
    foreground_app(&mut bash);
    bash.send(CTRL_Z);
    bash.expect("Stopped");
    bash.send("bg\n");
    bash.expect("&");
    // The job stops again when the app, in the background, reads the terminal.
    bash.expect("Stopped");
    shell_answers(&mut bash, "stopped");
    bash.send("fg\n");
    bash.expect("$APP");
    bash.send("later\n");
    bash.expect("got: later");
    bash.send(CTRL_C);
    bash.expect("$ ");
    bash.send("echo \"status=$?\"\n");
    bash.expect(&format!("status={CTRL_C_STATUS}"));
    assert_no_stopped_jobs_and_exit(&mut bash);
}

/// Run from a script (the script and pexinit share the shell's job), ^Z stops the
/// script too, so the shell sees its job stop; `fg` resumes all of it, and the script
/// goes on once the app ended.
#[test]
fn init_always_in_a_script_ctrl_z_stops_the_whole_job() {
    let setup = Setup::new();
    let mut bash = setup.interactive_bash();
    bash.send(
        "bash -c '\"$PEXINIT\" run --init always -- \"$PY\" \"$APP\"; echo \"script-$((6*7))\"'\n",
    );
    bash.expect("app ready");
    bash.send(CTRL_Z);
    bash.expect("Stopped");
    shell_answers(&mut bash, "stopped");
    bash.send("fg\n");
    bash.expect("bash -c");
    bash.send("again\n");
    bash.expect("got: again");
    bash.send(CTRL_C);
    bash.expect("script-42");
    assert_no_stopped_jobs_and_exit(&mut bash);
}

/// Started with `&`, pexinit leaves the terminal to the shell, which keeps reading
/// commands; the job ends normally.
#[test]
fn init_always_started_in_the_background_leaves_the_terminal_to_the_shell() {
    let setup = Setup::new();
    let mut bash = setup.interactive_bash();
    bash.send("\"$PEXINIT\" run --init always -- \"$PY\" \"$APP\" wait go &\n");
    bash.expect("app ready");
    shell_answers(&mut bash, "first");
    shell_answers(&mut bash, "second");
    bash.send("touch go; wait; echo \"status=$?\"\n");
    bash.expect("status=0");
    assert_no_stopped_jobs_and_exit(&mut bash);
}

/// A script that runs `pexinit run --init always` and then reads the terminal gets its
/// line: pexinit handed the terminal back before it exited.
#[test]
fn init_always_hands_the_terminal_back_before_exiting() {
    let setup = Setup::new();
    let mut command = setup.clean(BASH);
    command
        .arg("-c")
        .arg(
            "\"$PEXINIT\" run --init always -- \"$PY\" \"$APP\" wait go\n\
             if read -r line; then echo \"read: $line\"; else echo \"read failed: $?\"; fi",
        )
        .env("PEXINIT", support::pexinit_bin())
        .env("PY", PYTHON)
        .env("APP", &setup.app);
    let mut pty = Pty::spawn(command);
    pty.expect("app ready");
    std::fs::write(setup.dir.path().join("go"), "").expect("touch go");
    pty.send("typed\n");
    pty.expect("read: typed");
    assert_eq!(pty.exit_code(), 0, "{}", pty.transcript());
}

/// `jobs` lists nothing stopped (nothing of the test is left behind), then bash exits.
fn assert_no_stopped_jobs_and_exit(bash: &mut Pty) {
    bash.send("jobs; echo \"jobs-$((6*7))\"\n");
    let listed = bash.expect("jobs-42");
    assert!(!listed.contains("Stopped"), "{}", bash.transcript());
    bash.send("exit\n");
    assert_eq!(bash.exit_code(), 0, "{}", bash.transcript());
}
