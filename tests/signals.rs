//! Every signal 1-64 reaches the program and none kills pexinit, as PID 1 and with
//! `--init always`, on the debug build and on the binary that ships (static musl, from
//! `scripts/build-release`); `--rewrite-signal` and `--success-exit`.
//!
//! The C libraries keep real-time signals for themselves (glibc 32-33, musl 32-34), so
//! the program here catches signals with the kernel's own calls (rt_sigprocmask,
//! rt_sigtimedwait through ctypes) and sees every number. Waits are for lines, bounded
//! only by a deadline against hangs.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use support::{PATH, PYTHON};

const UNSHARE: &str = "/usr/bin/unshare";
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Blocks every signal 1-64 and prints `got N` for each one it takes; exits 0 after
/// SIGINT.
const CATCHER: &str = r#"
import ctypes, platform, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# (rt_sigprocmask, rt_sigtimedwait)
calls = {"x86_64": (14, 128), "aarch64": (135, 137)}[platform.machine()]
every = ctypes.c_uint64(2**64 - 1)
SIG_BLOCK = 0
if libc.syscall(ctypes.c_long(calls[0]), ctypes.c_long(SIG_BLOCK), ctypes.byref(every),
                None, ctypes.c_long(8)) != 0:
    sys.exit("rt_sigprocmask failed")
print("ready", flush=True)
while True:
    sig = libc.syscall(ctypes.c_long(calls[1]), ctypes.byref(every), None, None,
                       ctypes.c_long(8))
    if sig <= 0:
        continue
    print("got", sig, flush=True)
    if sig == 2:
        sys.exit(0)
"#;

/// Which pexinit binary a test runs.
#[derive(Clone, Copy)]
enum Build {
    Debug,
    /// The static musl release binary `scripts/build-release` makes.
    Shipped,
}

impl Build {
    fn path(self) -> PathBuf {
        match self {
            Build::Debug => PathBuf::from(support::pexinit_bin()),
            Build::Shipped => support::shipped::pexinit().to_path_buf(),
        }
    }
}

/// Where pexinit runs.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// PID 1 of a new PID namespace.
    Pid1,
    /// `--init always`, a plain child of the test.
    Always,
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        for (path, package) in [(PYTHON, "python3.11"), (UNSHARE, "util-linux")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing; install it with: apt-get install -y {package}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("catcher.py"), CATCHER).expect("write catcher");
        Setup { dir }
    }

    /// `pexinit run [--init always] RUN_ARGS -- PROGRAM...` in `mode`, with a clean
    /// environment.
    fn command(&self, build: Build, mode: Mode, run_args: &[&str], program: &[&str]) -> Command {
        let mut command = match mode {
            Mode::Pid1 => {
                let mut command = Command::new(UNSHARE);
                command
                    .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                    .arg(build.path())
                    .arg("run");
                command
            }
            Mode::Always => {
                let mut command = Command::new(build.path());
                command.args(["run", "--init", "always"]);
                command
            }
        };
        command
            .args(run_args)
            .arg("--")
            .args(program)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.dir.path())
            .env("PEXINIT_CONFIG", "/dev/null")
            .current_dir(self.dir.path());
        // As a container runtime starts it (see `default_signal_dispositions`).
        // SAFETY: only signal(2) between fork and exec (async-signal-safe).
        unsafe {
            command.pre_exec(|| {
                support::default_signal_dispositions();
                Ok(())
            });
        }
        command
    }

    fn catcher(&self, build: Build, mode: Mode, run_args: &[&str]) -> Catcher {
        let script = self.dir.path().join("catcher.py");
        let script = script.to_str().expect("utf-8 path");
        Catcher::start(self.command(build, mode, run_args, &[PYTHON, script]), mode)
    }
}

/// pexinit running the catcher; its stdout lines arrive on a channel.
struct Catcher {
    child: Child,
    lines: Receiver<String>,
    /// The host pid signals go to: pexinit itself.
    pexinit: i32,
}

impl Catcher {
    fn start(mut command: Command, mode: Mode) -> Catcher {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut catcher = Catcher {
            pexinit: child.id() as i32,
            child,
            lines,
        };
        assert_eq!(catcher.line(), "ready");
        if let Mode::Pid1 = mode {
            catcher.pexinit = only_child(catcher.pexinit);
        }
        catcher
    }

    /// The next line; fails when pexinit ended or nothing came before the hang guard.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(HANG_GUARD) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line from the program"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "the program's output ended: pexinit {:?}",
                    self.child.wait()
                )
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with plain integers.
        let rc = unsafe { libc::kill(self.pexinit, sig) };
        assert_eq!(rc, 0, "kill {sig}: {}", std::io::Error::last_os_error());
    }

    /// SIGINT ends the catcher; pexinit's exit status.
    fn finish(mut self) -> ExitStatus {
        self.signal(libc::SIGINT);
        assert_eq!(self.line(), format!("got {}", libc::SIGINT));
        wait_with_guard(&mut self.child)
    }
}

fn wait_with_guard(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pexinit never exited");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The only child of `pid` (what `unshare --fork` started: PID 1 inside).
fn only_child(pid: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("read the children");
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{pid} has no child"))
}

/// Sends every signal pexinit forwards (1-64 but KILL, STOP, CHLD; SIGINT last) to pexinit
/// and checks each reaches the program; pexinit then exits 0, killed by none of them.
fn every_signal_reaches_the_program(build: Build, mode: Mode) {
    let setup = Setup::new();
    let mut catcher = setup.catcher(build, mode, &[]);
    let skip = [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGINT];
    for sig in (1..=64).filter(|s| !skip.contains(s)) {
        catcher.signal(sig);
        assert_eq!(
            catcher.line(),
            format!("got {sig}"),
            "{mode:?}: signal {sig}"
        );
    }
    let status = catcher.finish();
    assert_eq!(status.code(), Some(0), "{mode:?}: pexinit {status:?}");
}

#[test]
fn every_signal_reaches_the_program_of_pid1() {
    every_signal_reaches_the_program(Build::Debug, Mode::Pid1);
}

#[test]
fn every_signal_reaches_the_program_with_init_always() {
    every_signal_reaches_the_program(Build::Debug, Mode::Always);
}

#[test]
fn shipped_build_every_signal_reaches_the_program_of_pid1() {
    every_signal_reaches_the_program(Build::Shipped, Mode::Pid1);
}

#[test]
fn shipped_build_every_signal_reaches_the_program_with_init_always() {
    every_signal_reaches_the_program(Build::Shipped, Mode::Always);
}

// ---------------------------------------------------------------------------------
// --rewrite-signal
// ---------------------------------------------------------------------------------

/// TERM:QUIT passes SIGTERM on as SIGQUIT; TSTP:0 drops SIGTSTP (the next line the
/// program prints is for the signal sent after it). Flag, variable and config key alike.
#[test]
fn rewrite_signal_from_flag_env_and_config() {
    let setup = Setup::new();
    let config = setup.dir.path().join("pexinit.yaml");
    std::fs::write(&config, "rewrite_signal:\n  - TERM:QUIT\n  - SIGTSTP:0\n").expect("config");
    let flags = [
        "--rewrite-signal",
        "TERM:QUIT",
        "--rewrite-signal",
        "tstp:0",
    ];
    for (how, args, env) in [
        ("flag", &flags[..], None),
        (
            "variable",
            &[][..],
            Some(("PEXINIT_REWRITE_SIGNAL", "15:3,20:0")),
        ),
        (
            "config",
            &[][..],
            Some(("PEXINIT_CONFIG", config.to_str().expect("utf-8"))),
        ),
    ] {
        for mode in [Mode::Pid1, Mode::Always] {
            let mut command = setup.command(Build::Debug, mode, args, &[]);
            if let Some((name, value)) = env {
                command.env(name, value);
            }
            let script = setup.dir.path().join("catcher.py");
            command.arg(PYTHON).arg(&script);
            let mut catcher = Catcher::start(command, mode);
            catcher.signal(libc::SIGTERM);
            assert_eq!(
                catcher.line(),
                format!("got {}", libc::SIGQUIT),
                "{how} {mode:?}"
            );
            catcher.signal(libc::SIGTSTP);
            catcher.signal(libc::SIGUSR1);
            assert_eq!(
                catcher.line(),
                format!("got {}", libc::SIGUSR1),
                "{how} {mode:?}"
            );
            let status = catcher.finish();
            assert_eq!(status.code(), Some(0), "{how} {mode:?}: {status:?}");
        }
    }
}

// ---------------------------------------------------------------------------------
// --success-exit
// ---------------------------------------------------------------------------------

fn status_of(mut command: Command) -> Option<i32> {
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let mut child = command.spawn().expect("start pexinit");
    wait_with_guard(&mut child).code()
}

/// 143 (a JVM's answer to SIGTERM, or death by SIGTERM) becomes 0; other statuses stay.
#[test]
fn success_exit_reports_listed_statuses_as_zero() {
    let setup = Setup::new();
    let config = setup.dir.path().join("pexinit.yaml");
    std::fs::write(&config, "success_exit: [143, 3]\n").expect("config");
    let flags = ["--success-exit", "143", "--success-exit", "3"];
    for (how, args, env) in [
        ("flag", &flags[..], None),
        ("variable", &[][..], Some(("PEXINIT_SUCCESS_EXIT", "143,3"))),
        (
            "config",
            &[][..],
            Some(("PEXINIT_CONFIG", config.to_str().expect("utf-8"))),
        ),
    ] {
        for mode in [Mode::Pid1, Mode::Always] {
            for (script, expected) in [
                ("exit 143", 0),
                ("kill -TERM $$", 0),
                ("exit 3", 0),
                ("exit 4", 4),
                ("kill -INT $$", 130),
            ] {
                let mut command = setup.command(Build::Debug, mode, args, &["sh", "-c", script]);
                if let Some((name, value)) = env {
                    command.env(name, value);
                }
                assert_eq!(
                    status_of(command),
                    Some(expected),
                    "{how} {mode:?}: {script}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Bad values
// ---------------------------------------------------------------------------------

/// A bad value is one line naming the fix, exit 125, and nothing runs.
#[test]
fn bad_values_are_one_line_and_125() {
    let setup = Setup::new();
    let config = setup.dir.path().join("pexinit.yaml");
    let marker = setup.dir.path().join("ran");
    let marker = marker.to_str().expect("utf-8 path");
    // (flags, variable, config file, what the message names)
    type Case<'a> = (
        &'a [&'a str],
        Option<(&'a str, &'a str)>,
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case; 7] = [
        (&["--success-exit", "256"], None, None, "0-255"),
        (&["--success-exit", "x"], None, None, "0-255"),
        (&["--rewrite-signal", "TERM"], None, None, "FROM:TO"),
        (
            &["--rewrite-signal", "KILL:TERM"],
            None,
            None,
            "rewrite another signal",
        ),
        (&["--rewrite-signal", "TERM:NOPE"], None, None, "e.g. TERM"),
        (
            &[],
            Some(("PEXINIT_REWRITE_SIGNAL", "TERM:99")),
            None,
            "0-64",
        ),
        (&[], None, Some("success_exit: [1, 300]\n"), "0-255"),
    ];
    for (args, env, file, names) in cases {
        let mut command = setup.command(Build::Debug, Mode::Always, args, &["touch", marker]);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        if let Some(text) = file {
            std::fs::write(&config, text).expect("config");
            command.env("PEXINIT_CONFIG", &config);
        }
        let output = command.stdin(Stdio::null()).output().expect("run pexinit");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{args:?} {env:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?} {env:?}: {stderr}");
        assert!(
            !Path::new(marker).exists(),
            "{args:?} {env:?}: the program ran"
        );
    }
}
