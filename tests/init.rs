//! `pexinit run` as an init: exit statuses, signal forwarding, reaping, the grace period,
//! inherited signal dispositions and `--user`, against real processes.
//!
//! PID 1 is real: `unshare --pid --fork --mount-proc`. Helper programs are Debian's
//! python3.11 (not the `python3` on PATH, which may be a pyenv shim). Nothing is mocked,
//! and a missing tool fails the test with the command that installs it.
//!
//! Waits below are for events (a line, a file, a process gone), bounded only by a
//! generous deadline against hangs; no assertion is about how long something took.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3.11";
const UNSHARE: &str = "/usr/bin/unshare";
const CHILD_PATH: &str = "/usr/bin:/bin";
/// Against hangs only: every wait ends far sooner when things work.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing; install it with: apt-get install -y {package}"
    );
}

fn require_tools() {
    require(PYTHON, "python3.11");
    require(UNSHARE, "util-linux");
}

/// A scratch directory that is also the child's HOME, so normalization has nothing to
/// warn about and nothing lands in the real home.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        require_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        // Traversable by the --user tests' unprivileged users; still root's to write.
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod sandbox");
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name);
        fs::write(&path, text).expect("write script");
        path
    }

    /// `pexinit ARGS...` with a clean environment.
    fn pexinit(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pexinit"));
        self.clean_env(&mut command);
        command.args(args);
        command
    }

    /// `unshare --pid --fork --mount-proc pexinit ARGS...`: pexinit as PID 1.
    fn pexinit_pid1(&self, args: &[&str]) -> Command {
        let mut command = Command::new(UNSHARE);
        self.clean_env(&mut command);
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_pexinit"))
            .args(args);
        command
    }

    fn clean_env(&self, command: &mut Command) {
        command
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("HOME", self.path())
            .env("PEXINIT_CONFIG", "/dev/null")
            .current_dir(self.path());
    }
}

fn run(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| {
        panic!(
            "pexinit died of signal {:?}; stderr: {}",
            output.status.signal(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running process whose stdout we read line by line.
struct Running {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        Running { child, lines }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line).expect("read stdout");
        if n == 0 {
            let mut stderr = String::new();
            let _ = self
                .child
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            panic!("stdout closed early; stderr:\n{stderr}");
        }
        line.trim_end().to_owned()
    }

    /// Waits for the process; returns its exit code, the rest of stdout and stderr.
    fn finish(mut self) -> (i32, String, String) {
        let mut rest = String::new();
        self.lines.read_to_string(&mut rest).expect("read stdout");
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr).expect("read stderr");
        }
        let status = self.child.wait().expect("wait");
        let code = status
            .code()
            .unwrap_or_else(|| panic!("died of {:?}; stderr:\n{stderr}", status.signal()));
        (code, rest, stderr)
    }
}

/// Parent pid and state of a process, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The host pid of the process `unshare --fork` started: pexinit, PID 1 inside.
fn pid1_host_pid(unshare: &Child) -> i32 {
    let parent = unshare.id() as i32;
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let found = fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|&pid| stat(pid).is_some_and(|(ppid, _)| ppid == parent));
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "no child of unshare {parent}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with plain integers.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// Exit statuses
// ---------------------------------------------------------------------------------

#[test]
fn exit_codes_pass_through_unchanged() {
    let sandbox = Sandbox::new();
    for n in 0..=255 {
        let exit = format!("exit {n}");
        let output = run(sandbox.pexinit(&["run", "--init", "always", "--", "sh", "-c", &exit]));
        assert_eq!(code(&output), n, "--init always: {}", text(&output.stderr));
        let output = run(sandbox.pexinit_pid1(&["run", "--", "sh", "-c", &exit]));
        assert_eq!(code(&output), n, "PID 1: {}", text(&output.stderr));
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let sandbox = Sandbox::new();
    for (signal, expected) in [("TERM", 143), ("USR1", 138), ("USR2", 140), ("KILL", 137)] {
        let suicide = format!("kill -{signal} $$");
        let output = run(sandbox.pexinit(&["run", "--init", "always", "--", "sh", "-c", &suicide]));
        assert_eq!(
            code(&output),
            expected,
            "{signal}: {}",
            text(&output.stderr)
        );
        let output = run(sandbox.pexinit_pid1(&["run", "--", "sh", "-c", &suicide]));
        assert_eq!(
            code(&output),
            expected,
            "PID 1, {signal}: {}",
            text(&output.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------
// Signal forwarding
// ---------------------------------------------------------------------------------

/// Catches every catchable signal and prints `ROLE SIGNUM` for each one; exits after
/// SIGINT. With `--grandchild`, first starts a second copy (same process group) whose
/// lines say `grandchild`, and on SIGINT stops it and waits for it.
const CATCHER: &str = r#"
import os, signal, subprocess, sys, time
role = sys.argv[1]
helper = None

def on_signal(signum, frame):
    # os.write, not print: a handler may interrupt another one mid-print.
    os.write(1, f"{role} {signum}\n".encode())
    if signum == signal.SIGINT:
        if helper is not None:
            helper.send_signal(signal.SIGINT)
            helper.wait()
        sys.exit(0)

skip = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
for signum in list(range(1, 32)) + list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)):
    if signum not in skip:
        signal.signal(signum, on_signal)
if "--grandchild" in sys.argv:
    helper = subprocess.Popen([sys.executable, sys.argv[0], "grandchild"], stdout=sys.stdout)
    # The grandchild says it is ready first, so both are ready when we say so.
    while not os.path.exists("grandchild.ready"):
        time.sleep(0.01)
print(role, "ready", os.getpid(), os.getpgrp(), flush=True)
if role == "grandchild":
    open("grandchild.ready", "w").close()
while True:
    time.sleep(60)
"#;

fn forwardable_signals() -> Vec<i32> {
    let mut signals: Vec<i32> = (1..=31)
        .filter(|s| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGINT].contains(s))
        .collect();
    signals.extend([libc::SIGRTMIN(), libc::SIGRTMIN() + 1, libc::SIGRTMAX()]);
    signals
}

/// Sends every forwardable signal to pexinit one at a time and checks that the child
/// echoes each one; SIGINT last, which makes the child exit 0.
fn every_signal_reaches_the_child(pid1: bool) {
    let sandbox = Sandbox::new();
    let script = sandbox.write_script("catcher.py", CATCHER);
    let script = script.to_str().expect("utf-8 path");
    let program = ["--", PYTHON, script, "child"];
    let mut running = Running::start(if pid1 {
        let mut command = sandbox.pexinit_pid1(&["run"]);
        command.args(program);
        command
    } else {
        let mut command = sandbox.pexinit(&["run", "--init", "always"]);
        command.args(program);
        command
    });
    let ready = running.line();
    assert!(ready.starts_with("child ready"), "{ready}");
    let pexinit = if pid1 {
        pid1_host_pid(&running.child)
    } else {
        running.child.id() as i32
    };
    for sig in forwardable_signals().into_iter().chain([libc::SIGINT]) {
        kill(pexinit, sig);
        assert_eq!(running.line(), format!("child {sig}"), "signal {sig}");
    }
    let (code, rest, stderr) = running.finish();
    assert_eq!(code, 0, "stdout: {rest}\nstderr: {stderr}");
}

#[test]
fn every_signal_reaches_the_child_of_pid1() {
    every_signal_reaches_the_child(true);
}

#[test]
fn every_signal_reaches_the_child_with_init_always() {
    every_signal_reaches_the_child(false);
}

/// With `-g` a grandchild in the program's process group gets the signals too; without
/// it, only the program does.
#[test]
fn kill_process_group_reaches_grandchildren() {
    let sandbox = Sandbox::new();
    let script = sandbox.write_script("catcher.py", CATCHER);
    let script = script.to_str().expect("utf-8 path");
    for group in [true, false] {
        let _ = fs::remove_file(sandbox.file("grandchild.ready"));
        let mut args = vec!["-v", "run"];
        if group {
            args.push("-g");
        }
        args.extend(["--", PYTHON, script, "child", "--grandchild"]);
        let mut running = Running::start(sandbox.pexinit_pid1(&args));
        let mut ready: Vec<String> = vec![running.line(), running.line()];
        ready.sort();
        assert!(ready[0].starts_with("child ready"), "{ready:?}");
        assert!(ready[1].starts_with("grandchild ready"), "{ready:?}");
        // Same process group: "ROLE ready PID PGID".
        let pgid = |line: &str| line.split(' ').nth(3).map(str::to_owned);
        assert_eq!(pgid(&ready[0]), pgid(&ready[1]), "{ready:?}");
        let pexinit = pid1_host_pid(&running.child);
        for sig in [libc::SIGUSR1, libc::SIGHUP, libc::SIGRTMIN()] {
            kill(pexinit, sig);
            let mut lines = BTreeSet::from([running.line()]);
            if group {
                lines.insert(running.line());
                let expected =
                    BTreeSet::from([format!("child {sig}"), format!("grandchild {sig}")]);
                assert_eq!(lines, expected);
            } else {
                assert_eq!(lines, BTreeSet::from([format!("child {sig}")]));
            }
        }
        // SIGINT: with -g both print it and the child also passes it on; without -g the
        // child passes it on. Either way the grandchild's first line after its ready
        // line is SIGINT only if it saw none of the signals above.
        kill(pexinit, libc::SIGINT);
        let (code, rest, stderr) = running.finish();
        assert_eq!(code, 0, "stdout: {rest}\nstderr: {stderr}");
        let grandchild: Vec<&str> = rest
            .lines()
            .filter(|l| l.starts_with("grandchild"))
            .collect();
        assert!(
            grandchild
                .iter()
                .all(|l| *l == format!("grandchild {}", libc::SIGINT)),
            "-g {group}: {grandchild:?}"
        );
        let forwarded_to_group = stderr.contains("forwarded SIGUSR1 to process group");
        assert_eq!(forwarded_to_group, group, "{stderr}");
    }
}

// ---------------------------------------------------------------------------------
// Reaping
// ---------------------------------------------------------------------------------

/// Orphans 100 `sleep 0.2` (double fork), then waits until pexinit has no child but
/// this program: each orphan was reparented to pexinit, exited, and was reaped. Prints
/// "clean" then, or what is left when that never happens.
const ORPHANER: &str = r#"
import os, time
init = os.getppid()
for _ in range(100):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "0.2"])
        os._exit(0)
    os.waitpid(pid, 0)

def others():
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == init:
            left.append((int(name), fields[0]))
    return left

deadline = time.monotonic() + 25
while others() and time.monotonic() < deadline:
    time.sleep(0.05)
left = others()
print("clean" if not left else f"left: {left}", flush=True)
"#;

fn orphans_are_reaped(pid1: bool) {
    let sandbox = Sandbox::new();
    let script = sandbox.write_script("orphaner.py", ORPHANER);
    let script = script.to_str().expect("utf-8 path");
    let output = run(if pid1 {
        sandbox.pexinit_pid1(&["-v", "run", "--", PYTHON, script])
    } else {
        sandbox.pexinit(&["-v", "run", "--init", "always", "--", PYTHON, script])
    });
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 0, "{stderr}");
    assert_eq!(text(&output.stdout).trim(), "clean", "{stderr}");
    let reaped: BTreeSet<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("pexinit: info: reaped pid "))
        .filter(|l| !l.contains("(the program)"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(reaped.len(), 100, "{stderr}");
}

#[test]
fn orphans_are_reaped_by_pid1() {
    orphans_are_reaped(true);
}

#[test]
fn orphans_are_reaped_by_a_subreaper_with_init_always() {
    orphans_are_reaped(false);
}

// ---------------------------------------------------------------------------------
// Programs that cannot run
// ---------------------------------------------------------------------------------

#[test]
fn missing_or_unrunnable_programs_are_127_or_126_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let plain = sandbox.write_script("plain.txt", "not a program\n");
    let garbage = sandbox.write_script("garbage", "\u{1}\u{2}not a binary\n");
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o755)).expect("chmod");
    let bad_shebang = sandbox.write_script("bad-shebang", "#!/nonexistent/interpreter\n");
    fs::set_permissions(&bad_shebang, fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = sandbox.file("a-directory");
    fs::create_dir(&dir).expect("mkdir");
    let missing = sandbox.file("missing");
    let cases: [(&Path, i32); 6] = [
        (&missing, 127),
        (Path::new("no-such-command-pexinit"), 127),
        (&bad_shebang, 127),
        (&dir, 126),
        (&plain, 126),
        (&garbage, 126),
    ];
    for (program, expected) in cases {
        let program = program.to_str().expect("utf-8 path");
        for mode in ["always", "never"] {
            let output = run(sandbox.pexinit(&["run", "--init", mode, "--", program]));
            let stderr = text(&output.stderr);
            assert_eq!(code(&output), expected, "{program} --init {mode}: {stderr}");
            assert_eq!(
                stderr.lines().count(),
                1,
                "{program} --init {mode}: {stderr}"
            );
            assert!(stderr.starts_with("pexinit: error: "), "{stderr}");
        }
        let output = run(sandbox.pexinit_pid1(&["run", "--", program]));
        assert_eq!(code(&output), expected, "{program} as PID 1");
    }
}

// ---------------------------------------------------------------------------------
// Inherited signal state
// ---------------------------------------------------------------------------------

fn sig_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.trim(), 16).expect("hex mask")
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Signals pexinit's parent ignored stay ignored in the program; SIGPIPE (which the Rust
/// runtime ignores in pexinit) is back to default, and nothing is left blocked.
#[test]
fn ignored_dispositions_are_inherited_and_nothing_else() {
    let sandbox = Sandbox::new();
    let read_status = ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"];
    let commands: Vec<(&str, Command)> = vec![
        ("always", {
            let mut c = sandbox.pexinit(&["run", "--init", "always", "--"]);
            c.args(read_status);
            c
        }),
        ("never", {
            let mut c = sandbox.pexinit(&["run", "--init", "never", "--"]);
            c.args(read_status);
            c
        }),
        ("PID 1", {
            let mut c = sandbox.pexinit_pid1(&["run", "--"]);
            c.args(read_status);
            c
        }),
    ];
    // What our own children inherit anyway: std resets SIGPIPE for them, nothing else.
    let own = fs::read_to_string("/proc/self/status").expect("own status");
    let inherited = sig_mask(&own, "SigIgn") & !bit(libc::SIGPIPE);
    for (mode, mut command) in commands {
        // SAFETY: only signal(2) between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGUSR1, libc::SIG_IGN);
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
        let output = run(command);
        let status = text(&output.stdout);
        assert_eq!(code(&output), 0, "{mode}: {}", text(&output.stderr));
        // Exactly those two plus whatever this test process inherited ignored (cargo may
        // hand some down): not SIGPIPE (which the Rust runtime ignores in pexinit), not
        // SIGTTOU (ignored around tcsetpgrp), nothing else pexinit might have touched.
        assert_eq!(
            sig_mask(&status, "SigIgn"),
            inherited | bit(libc::SIGUSR1) | bit(libc::SIGHUP),
            "{mode}: {status}"
        );
        assert_eq!(sig_mask(&status, "SigBlk"), 0, "{mode}: {status}");
    }
}

// ---------------------------------------------------------------------------------
// --user
// ---------------------------------------------------------------------------------

fn ids(status: &str) -> (String, String, String) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid"), field("Gid"), field("Groups"))
}

#[test]
fn user_switches_uid_gid_and_groups_exactly() {
    let sandbox = Sandbox::new();
    // The private fallback home is created for the target user in TMPDIR.
    let tmp = sandbox.file("tmp");
    fs::create_dir(&tmp).expect("mkdir");
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("Debian has a nobody user");
    let nobody_groups = {
        let name = std::ffi::CString::new("nobody").expect("name");
        let groups = nix::unistd::getgrouplist(&name, nobody.gid).expect("getgrouplist");
        groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cases: [(&str, [String; 3]); 3] = [
        (
            "65534:65534",
            ["65534".into(), "65534".into(), "65534".into()],
        ),
        (
            "4000123:4000124",
            ["4000123".into(), "4000124".into(), "4000124".into()],
        ),
        (
            "nobody",
            [
                nobody.uid.to_string(),
                nobody.gid.to_string(),
                nobody_groups,
            ],
        ),
    ];
    let read = ["/bin/grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"];
    for (spec, [uid, gid, groups]) in cases {
        for mode in ["always", "never", "PID 1"] {
            let mut command = if mode == "PID 1" {
                sandbox.pexinit_pid1(&["run", "--user", spec, "--"])
            } else {
                sandbox.pexinit(&["run", "--init", mode, "--user", spec, "--"])
            };
            command.env("TMPDIR", &tmp).args(read);
            let output = run(command);
            let stdout = text(&output.stdout);
            assert_eq!(code(&output), 0, "{spec} {mode}: {}", text(&output.stderr));
            let four = |id: &str| [id; 4].join(" ");
            assert_eq!(
                ids(&stdout),
                (four(&uid), four(&gid), groups.clone()),
                "{spec} {mode}"
            );
        }
    }
}

#[test]
fn user_errors_are_125() {
    let sandbox = Sandbox::new();
    for spec in [
        "no-such-user-pexinit",
        "nobody:no-such-group-pexinit",
        "nobody:",
    ] {
        let output = run(sandbox.pexinit(&["run", "--user", spec, "--", "/bin/true"]));
        let stderr = text(&output.stderr);
        assert_eq!(code(&output), 125, "{spec}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // Not root: switching to someone else is refused. (A copy of pexinit 65534 can
    // reach wherever the checkout is.)
    let mut command = Command::new(support::reachable(Path::new(env!("CARGO_BIN_EXE_pexinit"))));
    sandbox.clean_env(&mut command);
    command
        .args(["run", "--user", "0", "--", "/bin/true"])
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .env("HOME", "/");
    let output = run(command);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 125, "{stderr}");
    assert!(stderr.contains("--user needs root"), "{stderr}");
}

/// Directories root creates for the plan belong to the --user.
#[test]
fn user_owns_the_directories_created_for_it() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new();
    let home = sandbox.file("home");
    fs::create_dir(&home).expect("mkdir");
    nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).expect("chown");
    let mut command = sandbox.pexinit(&["run", "--user", "65534:65534", "--", "/bin/sh", "-c"]);
    command
        .arg("echo \"$PEX_ROOT\" && touch \"$PEX_ROOT/written\"")
        .env("HOME", &home);
    let output = run(command);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let pex_root = PathBuf::from(text(&output.stdout).trim());
    assert_eq!(pex_root, home.join(".cache/pex"));
    for dir in [home.join(".cache"), pex_root.clone()] {
        let meta = fs::metadata(&dir).expect("created");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{}",
            dir.display()
        );
    }
    assert!(pex_root.join("written").exists());
}

// ---------------------------------------------------------------------------------
// The rest of the process group when the program exits
// ---------------------------------------------------------------------------------

/// The program starts two group members and exits 3 once both are ready: `stubborn`
/// ignores SIGTERM; `polite` writes "TERM" to polite.term when it gets SIGTERM.
const LEAVER: &str = r#"
import os, subprocess, sys, time
stubborn = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open("stubborn.pid", "w").write(f"{os.getpid()}\\n")
while True:
    time.sleep(60)
"""
polite = """
import os, signal, sys, time
def on_term(signum, frame):
    open("polite.term", "w").write("TERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open("polite.pid", "w").write(f"{os.getpid()}\\n")
while True:
    time.sleep(60)
"""
for code in (stubborn, polite):
    # Not our stdout: a survivor holding the pipe would hang the test, not fail it.
    subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not (os.path.exists("stubborn.pid") and os.path.exists("polite.pid")):
    time.sleep(0.01)
sys.exit(3)
"#;

fn leftover_group(grace: &str) -> (Sandbox, i32, String) {
    let sandbox = Sandbox::new();
    let script = sandbox.write_script("leaver.py", LEAVER);
    let script = script.to_str().expect("utf-8 path");
    // --init always outside a namespace: no PID-namespace teardown kills the leftovers
    // for us, so whatever dies was killed by pexinit.
    let output = run(sandbox.pexinit(&[
        "-v", "run", "--init", "always", "--grace", grace, "--", PYTHON, script,
    ]));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 3, "{stderr}");
    let stubborn: i32 = wait_for_file(&sandbox.file("stubborn.pid"))
        .trim()
        .parse()
        .expect("pid");
    (sandbox, stubborn, stderr)
}

#[test]
fn leftover_group_gets_sigterm_then_sigkill_after_grace() {
    let (sandbox, stubborn, stderr) = leftover_group("1");
    assert_eq!(wait_for_file(&sandbox.file("polite.term")), "TERM\n");
    assert!(
        stderr.contains("sending SIGTERM to the rest of process group"),
        "{stderr}"
    );
    assert!(stderr.contains("grace period: SIGKILL"), "{stderr}");
    assert!(
        stderr.contains(&format!("reaped pid {stubborn}: exit status 137")),
        "{stderr}"
    );
    // Reaped by pexinit before it exited: gone, not even a zombie.
    assert_eq!(stat(stubborn), None);
}

#[test]
fn grace_zero_kills_the_group_at_once() {
    let (sandbox, stubborn, stderr) = leftover_group("0");
    assert!(!sandbox.file("polite.term").exists(), "{stderr}");
    assert!(
        stderr.contains("sending SIGKILL to the rest of process group"),
        "{stderr}"
    );
    assert_eq!(stat(stubborn), None);
}

// ---------------------------------------------------------------------------------
// --init auto
// ---------------------------------------------------------------------------------

#[test]
fn auto_execs_in_place_unless_pid1() {
    let sandbox = Sandbox::new();
    let show = ["/bin/sh", "-c", "echo $$ $PPID"];
    // Not PID 1: the program replaces pexinit (same pid, no extra process).
    let mut command = sandbox.pexinit(&["run", "--"]);
    let child = command
        .args(show)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start pexinit");
    let pexinit_pid = child.id();
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        text(&output.stdout).split(' ').next(),
        Some(pexinit_pid.to_string().as_str())
    );
    // PID 1: supervised, the program is pexinit's child.
    let mut command = sandbox.pexinit_pid1(&["run", "--"]);
    command.args(show);
    let output = run(command);
    let stdout = text(&output.stdout);
    let (pid, ppid) = stdout.trim().split_once(' ').expect("two numbers");
    assert_ne!(pid, "1", "{stdout}");
    assert_eq!(ppid, "1", "{stdout}");
    // PID 1 with --init never: the program is PID 1 itself.
    let mut command = sandbox.pexinit_pid1(&["run", "--init", "never", "--"]);
    command.args(show);
    let output = run(command);
    assert_eq!(text(&output.stdout).split(' ').next(), Some("1"));
    // The environment variable and the config file select the mode too.
    let mut command = sandbox.pexinit_pid1(&["run", "--"]);
    command.env("PEXINIT_INIT", "never").args(show);
    assert_eq!(text(&run(command).stdout).split(' ').next(), Some("1"));
    let config = sandbox.write_script("pexinit.yaml", "init: never\n");
    let mut command = sandbox.pexinit_pid1(&["run", "--"]);
    command.env("PEXINIT_CONFIG", &config).args(show);
    assert_eq!(text(&run(command).stdout).split(' ').next(), Some("1"));
}
