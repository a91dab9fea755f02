//! Test support: real pex installs, real PEX fixtures, sandboxes and command helpers.
//!
//! pex venvs and PEX files are built once and cached under target/ (CARGO_TARGET_TMPDIR),
//! guarded by a file lock so parallel test binaries share them. Nothing is mocked: a
//! missing tool is a test failure that names the command installing it.

#![allow(dead_code)]

pub mod pty;
pub mod shipped;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's interpreter: the `python3.11` on PATH may be a pyenv shim.
pub const PYTHON: &str = "/usr/bin/python3.11";
/// PATH for every child, so `#!/usr/bin/env python3.11` finds Debian's python.
pub const PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";
/// The buggy runtime (pex issue #2572 and PR #2626).
pub const PEX_BUGGY: &str = "2.20.3";
/// The first runtime with both fixes.
pub const PEX_FIXED: &str = "2.27.1";
/// The newest pex on PyPI when these tests were written; pinned so fixtures stay stable.
pub const PEX_NEWEST: &str = "2.105.2";
pub const ALL_PEX_VERSIONS: [&str; 3] = [PEX_BUGGY, PEX_FIXED, PEX_NEWEST];
pub const INSTALL_HINT: &str =
    "run scripts/install-test-deps (apt-get install -y python3.11 python3.11-venv util-linux)";

pub fn pexinit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pexinit")
}

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fs::create_dir_all(&dir).expect("create fixtures dir");
    // Fixtures are run by other uids too (setpriv tests): keep the path traversable.
    for dir in [Path::new(env!("CARGO_TARGET_TMPDIR")), &dir] {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
    dir
}

/// Holds an exclusive flock on a file under the fixtures dir while alive.
struct FixtureLock(File);

fn lock(name: &str) -> FixtureLock {
    let file = File::create(fixtures_dir().join(format!(".{name}.lock"))).expect("lock file");
    // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {name}");
    FixtureLock(file)
}

fn check(what: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|e| panic!("{what}: cannot start: {e}; {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A venv with `pex==version` installed from PyPI, created on first use.
pub fn pex_venv(version: &str) -> PathBuf {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing; {INSTALL_HINT}"
    );
    let venv = fixtures_dir().join(format!("pex-{version}"));
    let pex = venv.join("bin/pex");
    if pex.exists() {
        return venv;
    }
    let _guard = lock(&format!("venv-{version}"));
    if pex.exists() {
        return venv;
    }
    let _ = fs::remove_dir_all(&venv);
    check(
        "python3.11 -m venv",
        Command::new(PYTHON)
            .args(["-m", "venv"])
            .arg(&venv)
            .output(),
    );
    check(
        &format!("pip install pex=={version}"),
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("pex=={version}"))
            .output(),
    );
    venv
}

/// How a PEX fixture is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A zipapp .pex file.
    Zipapp,
    /// A zipapp .pex file built with `--venv`.
    Venv,
    /// `--layout packed` directory.
    Packed,
    /// `--layout loose` directory.
    Loose,
    /// A zipapp .pex file built with `--include-tools` (pex's PEX_VENV needs it).
    Tools,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Zipapp, Kind::Venv, Kind::Packed, Kind::Loose];

    fn name(self) -> &'static str {
        match self {
            Kind::Zipapp => "zipapp",
            Kind::Venv => "venv",
            Kind::Packed => "packed",
            Kind::Loose => "loose",
            Kind::Tools => "tools",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Kind::Zipapp => &[],
            Kind::Venv => &["--venv"],
            Kind::Packed => &["--layout", "packed"],
            Kind::Loose => &["--layout", "loose"],
            Kind::Tools => &["--include-tools"],
        }
    }
}

/// `cowsay.pex` (console script `cowsay`) built by pex `version` in layout `kind`.
pub fn cowsay(version: &str, kind: Kind) -> PathBuf {
    pex_fixture(version, kind, "cowsay", || {
        ["cowsay", "-c", "cowsay"].map(OsString::from).to_vec()
    })
}

/// `<name>-<version>-<kind>.pex`, built once by pex `version` with the arguments `args`
/// returns (called under the fixture's lock, so it may write sources the build reads).
pub fn pex_fixture(
    version: &str,
    kind: Kind,
    name: &str,
    args: impl FnOnce() -> Vec<OsString>,
) -> PathBuf {
    let venv = pex_venv(version);
    let out = fixtures_dir().join(format!("{name}-{version}-{}.pex", kind.name()));
    let done = out.with_extension("pex.done");
    if done.exists() {
        return out;
    }
    let _guard = lock(&format!("{name}-{version}-{}", kind.name()));
    if done.exists() {
        return out;
    }
    let _ = fs::remove_file(&out);
    let _ = fs::remove_dir_all(&out);
    check(
        &format!("pex {version} {name} {}", kind.name()),
        Command::new(venv.join("bin/pex"))
            .args(args())
            .args(["--python", PYTHON, "-o"])
            .arg(&out)
            .args(kind.flags())
            .env_clear()
            .env(
                "PEX_ROOT",
                fixtures_dir().join(format!("build-root-{version}")),
            )
            .env("PATH", PATH)
            .output(),
    );
    // pex creates packed and loose outputs mode 0700: other uids must read them.
    check(
        "chmod -R a+rX",
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&out)
            .output(),
    );
    File::create(&done).expect("mark fixture done");
    out
}

/// A scratch directory under /tmp (physical path, traversable by other uids).
pub struct Sandbox {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pexinit-test-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonicalize sandbox");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod sandbox");
        Sandbox { dir, root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// mkdir -p, mode 0755.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.join(rel);
        fs::create_dir_all(&path).expect("mkdir");
        let mut dir = path.as_path();
        while dir != self.root {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
            dir = dir.parent().expect("parent");
        }
        path
    }

    /// A symlink at `rel` pointing to `target` (verbatim).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> PathBuf {
        let link = self.join(rel);
        symlink(target, &link).expect("symlink");
        link
    }

    pub fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.join(rel);
        let mut f = File::create(&path).expect("create");
        f.write_all(contents).expect("write");
        path
    }

    /// Every path below the sandbox with its type, sorted: a snapshot for
    /// "nothing was created" assertions.
    pub fn tree(&self) -> Vec<String> {
        tree(&self.root)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything below `dir` (as [`tree`] lists it), except pex's lock and access files: what
/// a warm run may add to a cache.
pub fn content(dir: &Path) -> std::collections::BTreeSet<String> {
    tree(dir)
        .into_iter()
        .filter(|e| {
            let name = e.rsplit('/').next().unwrap_or("");
            !(name.ends_with(".lck") || name == ".last-access")
        })
        .collect()
}

pub fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let kind = if meta.file_type().is_symlink() {
                "l"
            } else if meta.is_dir() {
                stack.push(path.clone());
                "d"
            } else {
                "f"
            };
            out.push(format!("{kind} {}", path.display()));
        }
    }
    out.sort();
    out
}

/// One path below a root, as tree comparisons see it.
pub struct Node {
    /// The path relative to the root.
    pub rel: String,
    pub meta: fs::Metadata,
    /// `-> target` for a link, `dir`, a file's sha256, or `special` for a fifo or device
    /// (reading one could block).
    pub content: String,
}

impl Node {
    /// Path, mode, owner, mtime and content on one line.
    pub fn describe(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let m = &self.meta;
        format!(
            "{} {:o} {}:{} {} {}",
            self.rel,
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            self.content
        )
    }
}

/// Every path below `root`, sorted, never following links. (Walked here rather than
/// through [`tree`]'s text lines: names need not be UTF-8.)
pub fn nodes(root: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let content = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).expect("readlink").display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.is_file() {
                pexinit::pex::manifest::sha256_file(&path).expect("hash")
            } else {
                "special".to_owned()
            };
            let rel = path.strip_prefix(root).expect("below root");
            out.push(Node {
                rel: rel.display().to_string(),
                meta,
                content,
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// Paths, types, modes and contents below `root`: equal snapshots mean nothing was
/// added, removed or changed.
pub fn snapshot(root: &Path) -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    nodes(root)
        .into_iter()
        .map(|n| format!("{} {:o} {}", n.rel, n.meta.mode(), n.content))
        .collect()
}

/// Sets SIGINT and SIGQUIT to their defaults, as a container runtime or a terminal's
/// session starts a program: a harness that runs the suite in the background of a
/// non-interactive shell hands them down ignored, and pexinit rightly passes an ignored
/// signal on ignored. Async-signal-safe: for `pre_exec`.
pub fn default_signal_dispositions() {
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: plain signal(2) with SIG_DFL; no handler code involved.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// A command with a clean, explicit environment: only PATH unless the test adds more.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", PATH);
    cmd
}

pub fn pexinit() -> Command {
    clean_command(pexinit_bin())
}

/// `setpriv` in front of `cmd`'s program: run as `uid:gid` with no supplementary groups.
/// The program and every argument naming an existing file are passed as [`reachable`]
/// copies, so the suite works from a clone in a private directory (`/root/pexinit`).
pub fn as_user(uid: u32, gid: u32, cmd: &Command) -> Command {
    let mut wrapped = Command::new("/usr/bin/setpriv");
    wrapped
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(reachable(Path::new(cmd.get_program())))
        .args(cmd.get_args().map(|arg| {
            let path = Path::new(arg);
            if path.is_absolute() && path.exists() {
                reachable(path).into_os_string()
            } else {
                arg.to_os_string()
            }
        }));
    copy_env_and_dir(cmd, &mut wrapped);
    wrapped
}

/// Where other users can read `path` (a program, a fixture): `path` itself when every
/// directory above it lets others through, else a copy (`cp -a`) under
/// `/tmp/pexinit-test-reachable/`, refreshed when the original's size or mtime changes.
/// Tests that run pexinit or a fixture as another uid pass what they run through this:
/// the checkout (and its `target/`) may sit in a directory only its owner can enter.
pub fn reachable(path: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let Ok(canonical) = fs::canonicalize(path) else {
        return path.to_path_buf();
    };
    let others_enter = |dir: &Path| fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0);
    if canonical.ancestors().skip(1).all(others_enter) {
        return path.to_path_buf();
    }
    let base = Path::new("/tmp/pexinit-test-reachable");
    fs::create_dir_all(base).expect("create /tmp/pexinit-test-reachable");
    let meta = fs::symlink_metadata(base).expect("lstat reachable dir");
    assert!(
        meta.is_dir() && meta.uid() == nix::unistd::getuid().as_raw(),
        "{} is not a directory of ours",
        base.display()
    );
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).expect("chmod");
    let source = fs::metadata(&canonical).expect("stat source");
    let hash = |value: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    // One directory per original, holding one copy per version of it.
    let versions = base.join(hash(&|h| canonical.hash(h)));
    fs::create_dir_all(&versions).expect("mkdir versions");
    fs::set_permissions(&versions, fs::Permissions::from_mode(0o755)).expect("chmod");
    let version = hash(&|h| (source.len(), source.mtime(), source.mtime_nsec()).hash(h));
    let dir = versions.join(&version);
    let name = canonical.file_name().expect("a file name");
    let dest = dir.join(name);
    if dest.exists() {
        return dest;
    }
    // Older versions (an earlier build of pexinit) are no longer run.
    for old in fs::read_dir(&versions).expect("list versions").flatten() {
        if !old.file_name().as_encoded_bytes().starts_with(b".") {
            let _ = fs::remove_dir_all(old.path());
        }
    }
    // Copied beside, then renamed: concurrent test processes see a whole copy or none.
    let tmp = versions.join(format!(
        ".{version}.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).expect("mkdir copy");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod copy");
    let status = Command::new("/bin/cp")
        .arg("-a")
        .arg(&canonical)
        .arg(tmp.join(name))
        .status()
        .expect("cp -a; apt-get install -y coreutils");
    assert!(status.success(), "cp -a {}", canonical.display());
    if fs::rename(&tmp, &dir).is_err() {
        // Another process made it first.
        let _ = fs::remove_dir_all(&tmp);
    }
    dest
}

/// `unshare --mount` with `/etc/passwd` replaced by `passwd` (a bind mount private to
/// the new namespace), then `cmd`. Lets a test give a uid a passwd home of its choosing.
pub fn with_passwd(passwd: &Path, cmd: &Command) -> Command {
    let mut wrapped = Command::new("/usr/bin/unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$0\" /etc/passwd && exec \"$@\"")
        .arg(passwd)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    copy_env_and_dir(cmd, &mut wrapped);
    wrapped
}

fn copy_env_and_dir(from: &Command, to: &mut Command) {
    to.env_clear();
    for (k, v) in from.get_envs() {
        if let Some(v) = v {
            to.env(k, v);
        }
    }
    if let Some(dir) = from.get_current_dir() {
        to.current_dir(dir);
    }
}

pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()))
    }

    /// Non-empty stderr lines.
    /// Panics, showing the whole run, unless stdout holds `text`.
    pub fn assert_stdout_has(&self, text: &str) {
        assert!(
            self.stdout.contains(text),
            "no {text:?} in stdout: {}",
            self.describe()
        );
    }

    pub fn assert_stdout_lacks(&self, text: &str) {
        assert!(
            !self.stdout.contains(text),
            "{text:?} in stdout: {}",
            self.describe()
        );
    }

    pub fn assert_stderr_has(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "no {text:?} in stderr: {}",
            self.describe()
        );
    }

    pub fn assert_stderr_lacks(&self, text: &str) {
        assert!(
            !self.stderr.contains(text),
            "{text:?} in stderr: {}",
            self.describe()
        );
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

pub fn run(cmd: &mut Command) -> Ran {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}; {INSTALL_HINT}", cmd.get_program()));
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The ModuleNotFoundError every symlink-poisoned cache of the buggy runtimes gives.
pub const POISONED: &str = "No module named 'pex'";

/// cowsay drew the word: the app really ran.
pub fn assert_cowsay_said(ran: &Ran, word: &str) {
    assert!(
        ran.success() && ran.stdout.contains(&format!("| {word} |")) && ran.stdout.contains("(oo)"),
        "the app did not run:\n{}",
        ran.describe()
    );
}

/// The top-level directories a pex runtime creates in its PEX_ROOT (which ones depends
/// on the layout: a loose PEX needs only `isolated`, a zipapp unzips and installs wheels).
pub const CACHE_DIRS: [&str; 5] = [
    "isolated",
    "installed_wheels",
    "unzipped_pexes",
    "venvs",
    "bootstraps",
];

/// `pex_root` holds a cache with no dangling link, and no pex cache directory exists
/// anywhere else below `search`: one root, never split.
pub fn assert_single_cache(search: &Path, pex_root: &Path) {
    assert!(
        pex_root.join("isolated").is_dir() || pex_root.join("installed_wheels").is_dir(),
        "no cache in {}: {:#?}",
        pex_root.display(),
        tree(pex_root)
    );
    let strays: Vec<String> = tree(search)
        .into_iter()
        .filter_map(|e| e.strip_prefix("d ").map(PathBuf::from))
        .filter(|dir| !dir.starts_with(pex_root))
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| CACHE_DIRS.iter().any(|c| n == *c))
        })
        .map(|dir| dir.display().to_string())
        .collect();
    assert!(
        strays.is_empty(),
        "pex caches outside {}: {strays:?}",
        pex_root.display()
    );
    let dangling: Vec<String> = tree(pex_root)
        .into_iter()
        .filter_map(|e| e.strip_prefix("l ").map(PathBuf::from))
        .filter(|link| fs::metadata(link).is_err())
        .map(|link| format!("{} -> {:?}", link.display(), fs::read_link(&link)))
        .collect();
    assert!(
        dangling.is_empty(),
        "dangling links in the cache: {dangling:#?}"
    );
}

/// The oldest pex the differential tests cover: a 2.1.x runtime, whose cache has no
/// version level (`unzipped_pexes/<hash>/`, `installed_wheels/<hash>/`).
pub const PEX_OLDEST: &str = "2.1.137";
/// Every runtime the differential tests build PEX files with, oldest first.
pub const DIFFERENTIAL_PEX_VERSIONS: [&str; 4] = [PEX_OLDEST, PEX_BUGGY, PEX_FIXED, PEX_NEWEST];
