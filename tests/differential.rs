//! Differential tests: a PEX started by pexinit from a read-only seed behaves exactly as
//! the PEX started by pex.
//!
//! For every pex version (2.1.137, 2.20.3, 2.27.1, 2.105.2) and layout (zipapp, packed,
//! loose, `--venv`), the probe app (tests/differential_support/probe.py, a wheel with a
//! console script and a plain script, depending on cowsay and on PyYAML with its C
//! extension) is built with every kind of entry point: `-c` console script, `-e` module,
//! `-m` module:function, `--script`, none (the PEX is an interpreter), and one with
//! `--inject-args` / `--inject-env`. Each case runs twice:
//!
//! - **A**, pex: `/usr/bin/python3.11 app.pex ARGS` with a fresh, writable PEX_ROOT;
//! - **B**, pexinit: `pexinit run --seed SEED --python /usr/bin/python3.11 -- app.pex ARGS`,
//!   where SEED was made by `pexinit seed --pex-root SEED --python /usr/bin/python3.11
//!   APP.pex...` (all the group's PEX files) and then `chmod -R a-w`.
//!
//! Both run as uid 123456 gid 0 with no supplementary groups and HOME=/ (what podman and
//! Kubernetes give an arbitrary uid), under `setarch x86_64 --uname-2.6` (another kernel
//! than the one the seed was made on, as on any cluster node), from the same working
//! directory, with the same environment and the same stdin. The test asserts the same
//! exit status, the same stderr, the same stdout (the probe's report, compared field by
//! field after the normalization below), that the seed is unchanged (paths, modes,
//! contents) after each case, and that `pexinit doctor --json` and `pexinit env --json`,
//! run the same way, name the fast path (see [`fast_path_claims`]). Run-time variables
//! (PEX_MODULE, PEX_SCRIPT, PEX_INTERPRETER, PEX_EXTRA_SYS_PATH, PEX_INHERIT_PATH) and a
//! run-time value for an injected variable must give A's behaviour too; there, pexinit
//! may leave the start to pex instead, as long as doctor says why in one line.
//!
//! # What is normalized, and why
//!
//! The same app legitimately runs from different places in A and B; everything else
//! must be equal. [`Locations`] rewrites paths, and only paths:
//!
//! - **Where the cache is.** A's PEX_ROOT and B's (the seed, or the PEX_ROOT pexinit
//!   exports, e.g. a link farm of the seed, and their physical spellings) become
//!   `$PEX_ROOT`.
//! - **Which copy of the same code.** Below a PEX_ROOT or inside the PEX itself, a path
//!   is named by what it holds, not by hash directories: the PEX's own top level
//!   (`unzipped_pexes/[N/]HASH/`, or a loose/packed PEX's directory) is `<pex code>`; a
//!   wheel's chroot (`installed_wheels/[N/]HASH/NAME.whl/`, a loose PEX's `.deps/NAME.whl/`)
//!   is `<wheel NAME.whl>`; a venv (any directory holding `pyvenv.cfg`) is `<venv>`, its
//!   `lib/python3.11/site-packages` is `<venv site-packages>`. The relative path below
//!   stays, so `probe/main.py` in a wheel chroot differs from `probe/main.py` in a venv's
//!   site-packages: sys.path order and contents, `__file__`, `sys.argv[0]` compare
//!   structurally, not merely by existence.
//! - **pex's own runtime.** `.bootstrap/` (and `bootstraps/`, `isolated/`) entries on
//!   sys.path are dropped: that is pex's bootstrap code, which pex's own `--venv` mode
//!   does not put on sys.path either; the app's code and dependencies are all compared.
//!   Variables named `_PEX_*` are dropped from the environment: pex's private
//!   bookkeeping (e.g. `_PEX_CACHE_ACCESS_LOCK`, the descriptor of its cache lock).
//! - **pexinit's documented environment.** Variables `pexinit env --json` says it
//!   changes (e.g. HOME=/ is not writable for uid 123456, so a fallback home) must hold
//!   exactly the value env --json announced in B, and A's value is replaced by it before
//!   comparing. PEX_ROOT is compared normalized like any other path.
//! - **The venv prefix.** `sys.executable` is compared through its realpath (the same
//!   interpreter binary); `sys.prefix` and the interpreter flags are reported under
//!   `info`, shown when a case fails, and not compared.
//!
//! stderr is compared after naming the files a traceback shows as above, and replacing
//! other PEX_ROOT spellings by `$PEX_ROOT`.

mod differential_support;
mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use differential_support::{Claim, EXTRA_MOD, Entry, FAST_PATH_TAKEN, fast_path_claims, probe_pex};
use serde_json::{Map, Value};
use support::*;

/// The uid and gid both runs use: an arbitrary uid in group 0, as OpenShift gives.
const NODE_UID: u32 = 123456;
const NODE_GID: u32 = 0;
const SETARCH: &str = "/usr/bin/setarch";
const SETPRIV: &str = "/usr/bin/setpriv";
const NODE_HINT: &str = "apt-get install -y util-linux (setarch, setpriv)";

/// Python run by the interpreter cases (`app.pex -c CODE`, `PEX_INTERPRETER=1`).
const INTERPRETER_CODE: &str = "import sys, probe.main; sys.exit(probe.main.report())";
/// Arguments with spaces and non-ASCII, stdin, a stderr line and an exit status.
const FULL_ARGS: [&str; 6] = [
    "plain",
    "two words",
    "ünï",
    "stdin",
    "err=a line on stderr",
    "exit=3",
];
const STDIN: &str = "line 1\nline 2 ünï\n";

/// One run of both A and B.
struct Case {
    label: String,
    pex: PathBuf,
    args: Vec<String>,
    stdin: Option<&'static str>,
    /// Added to the harness environment of both runs.
    env: Vec<(String, String)>,
    /// A's exit status: a harness check, so a broken probe cannot make A and B agree.
    expect_code: i32,
    /// The fast path must be taken; otherwise doctor may name why it is not.
    expect_fast_path: bool,
}

fn case(label: &str, pex: &Path, args: &[&str], expect_code: i32) -> Case {
    Case {
        label: label.to_owned(),
        // Run by uid 123456: a copy it can reach when the checkout is private.
        pex: reachable(pex),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: None,
        env: Vec::new(),
        expect_code,
        expect_fast_path: true,
    }
}

impl Case {
    fn stdin(mut self, text: &'static str) -> Self {
        self.stdin = Some(text);
        self
    }

    /// What only pex's bootstrap can run: the fast path may step aside (doctor names
    /// why), the behaviour must still be pex's.
    fn bootstrap_may_run(mut self, when: bool) -> Self {
        self.expect_fast_path &= !when;
        self
    }

    /// A run-time variable: the fast path may step aside (doctor names why).
    fn var(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self.expect_fast_path = false;
        self
    }
}

/// The cases of one (pex version, layout) group. Run-time variables are tried on the
/// zipapp and `--venv` layouts, where pex's handling differs most (a packed or loose PEX
/// runs the zipapp code path from another container).
/// `launcher`: the layout starts through a launcher (not `--venv`), which steps aside
/// for what pex runs with its own module globals: a file `--script`, `-c CODE`.
fn cases(
    pexes: &[(Entry, PathBuf)],
    extra: &Path,
    with_variables: bool,
    launcher: bool,
    file_scripts: bool,
) -> Vec<Case> {
    let pex = |entry: Entry| {
        &pexes
            .iter()
            .find(|(e, _)| *e == entry)
            .expect("every entry kind is built")
            .1
    };
    let extra = extra.display().to_string();
    let mut cases = Vec::new();
    for entry in [
        Entry::Console,
        Entry::Module,
        Entry::Function,
        Entry::Script,
        Entry::Inject,
    ] {
        if entry == Entry::Script && !file_scripts {
            continue;
        }
        let name = entry.name();
        cases.push(
            case(name, pex(entry), &FULL_ARGS, 3)
                .stdin(STDIN)
                .bootstrap_may_run(launcher && entry == Entry::Script),
        );
    }
    cases.push(case(
        "console SystemExit(message)",
        pex(Entry::Console),
        &["fail=stopped: by SystemExit"],
        1,
    ));
    if !launcher {
        // pex execs the venv's script: an uncaught exception's traceback holds the
        // script's frames and the app's, nothing of pexinit's start.
        for entry in [Entry::Console, Entry::Module] {
            cases.push(case(
                &format!("{} uncaught exception (its traceback)", entry.name()),
                pex(entry),
                &["raise=an uncaught error"],
                1,
            ));
        }
    }
    let interpreter = pex(Entry::Interpreter);
    let mut code_args = vec!["-c", INTERPRETER_CODE];
    code_args.extend(FULL_ARGS);
    cases.push(
        case("interpreter -c CODE", interpreter, &code_args, 3)
            .stdin(STDIN)
            .bootstrap_may_run(launcher),
    );
    cases.push(case(
        "interpreter -m probe.main",
        interpreter,
        &["-m", "probe.main", "plain", "exit=4"],
        4,
    ));
    if !with_variables {
        return cases;
    }

    let console = pex(Entry::Console);
    cases.push(
        case(
            "console, PEX_MODULE=probe.main",
            console,
            &["plain", "exit=5"],
            5,
        )
        .var("PEX_MODULE", "probe.main"),
    );
    if file_scripts {
        cases.push(
            case("console, PEX_SCRIPT=probe-script", console, &["plain"], 0)
                .var("PEX_SCRIPT", "probe-script"),
        );
    }
    cases.push(
        case(
            "console, PEX_INTERPRETER=1 -c CODE",
            console,
            &["-c", INTERPRETER_CODE, "plain"],
            0,
        )
        .var("PEX_INTERPRETER", "1"),
    );
    cases.push(
        case("console, PEX_EXTRA_SYS_PATH", console, &["extra"], 0)
            .var("PEX_EXTRA_SYS_PATH", &extra),
    );
    // The inherited sys.path is the base interpreter's site-packages (Debian's
    // dist-packages directories): compared through sys.path.
    cases.push(
        case("console, PEX_INHERIT_PATH=prefer", console, &["plain"], 0)
            .var("PEX_INHERIT_PATH", "prefer"),
    );
    cases.push(
        case("console, PEX_INHERIT_PATH=fallback", console, &["plain"], 0)
            .var("PEX_INHERIT_PATH", "fallback"),
    );
    cases.push(
        case(
            "inject, the injected variable set at run time",
            pex(Entry::Inject),
            &["plain"],
            0,
        )
        .var("INJECTED", "from-run-time"),
    );
    cases
}

/// The directories one group works in.
struct Group {
    label: String,
    sb: Sandbox,
    seed: PathBuf,
    /// A's fresh PEX_ROOT, owned by the node uid.
    a_root: PathBuf,
    /// TMPDIR of both runs (world-writable, sticky).
    tmp: PathBuf,
    /// The working directory of both runs.
    work: PathBuf,
    /// Holds `extra_mod.py`.
    extra: PathBuf,
}

impl Group {
    fn new(label: String) -> Self {
        let sb = Sandbox::new();
        let a_root = sb.mkdir("a-pex-root");
        std::os::unix::fs::chown(&a_root, Some(NODE_UID), Some(NODE_GID)).expect("chown");
        let tmp = sb.mkdir("tmp");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let work = sb.mkdir("work");
        let extra = sb.mkdir("extra");
        sb.write(&format!("extra/{EXTRA_MOD}.py"), b"VALUE = 1\n");
        Group {
            label,
            seed: sb.join("seed"),
            sb,
            a_root,
            tmp,
            work,
            extra,
        }
    }

    /// What the harness gives both runs (cases add their variables).
    fn env(&self, case: &Case) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("PATH", PATH.to_owned()),
            ("HOME", "/".to_owned()),
            ("TMPDIR", self.tmp.display().to_string()),
            ("PWD", self.work.display().to_string()),
            ("APP_SETTING", "from the harness".to_owned()),
            // pex strips PEX_* variables before the app runs (strip_pex_env).
            ("PEX_HARNESS", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        env.extend(case.env.iter().cloned());
        env
    }

    /// `program args` as the node runs it: uid 123456:0 with no groups, another kernel.
    fn node(&self, program: &Path, args: &[OsString], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(SETARCH);
        cmd.args(["x86_64", "--uname-2.6", SETPRIV])
            .arg(format!("--reuid={NODE_UID}"))
            .arg(format!("--regid={NODE_GID}"))
            .args(["--clear-groups", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.work);
        cmd
    }

    /// `pexinit SUBCOMMAND [FLAGS] --seed SEED --python PYTHON -- app.pex ARGS`.
    fn pexinit(&self, case: &Case, subcommand: &[&str]) -> Command {
        let mut args: Vec<OsString> = subcommand.iter().map(OsString::from).collect();
        args.extend(["--seed".into(), self.seed.clone().into_os_string()]);
        args.extend(["--python".into(), PYTHON.into(), "--".into()]);
        args.push(case.pex.clone().into_os_string());
        args.extend(case.args.iter().map(OsString::from));
        self.node(&reachable(Path::new(pexinit_bin())), &args, &self.env(case))
    }

    fn run_a(&self, case: &Case) -> Ran {
        let mut env = self.env(case);
        env.push(("PEX_ROOT".into(), self.a_root.display().to_string()));
        let mut args: Vec<OsString> = vec![case.pex.clone().into_os_string()];
        args.extend(case.args.iter().map(OsString::from));
        run_with_stdin(&mut self.node(Path::new(PYTHON), &args, &env), case.stdin)
    }

    fn run_b(&self, case: &Case, verbose: bool) -> Ran {
        let subcommand: &[&str] = if verbose { &["-v", "run"] } else { &["run"] };
        run_with_stdin(&mut self.pexinit(case, subcommand), case.stdin)
    }

    fn report(&self, case: &Case, subcommand: &str) -> Result<Value, String> {
        let ran = run(&mut self.pexinit(case, &[subcommand, "--json"]));
        serde_json::from_str(&ran.stdout).map_err(|e| {
            format!(
                "`pexinit {subcommand} --json` printed no JSON ({e}): {}",
                ran.describe()
            )
        })
    }
}

fn run_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> Ran {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}; {NODE_HINT}", cmd.get_program()));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The child may exit without reading: a broken pipe is its business.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Path normalization (see the module docs): the PEX_ROOT spellings of one run, and the
/// PEX it ran.
struct Locations {
    /// Longest first, so a farm inside TMPDIR wins over a shorter prefix.
    roots: Vec<String>,
    pex: String,
}

impl Locations {
    fn new(roots: &[PathBuf], pex: &Path) -> Self {
        let mut spelled: Vec<String> = Vec::new();
        for root in roots {
            spelled.push(root.display().to_string());
            if let Ok(physical) = std::fs::canonicalize(root) {
                spelled.push(physical.display().to_string());
            }
        }
        spelled.retain(|r| r.len() > 1);
        spelled.sort_by_key(|r| std::cmp::Reverse(r.len()));
        spelled.dedup();
        Locations {
            roots: spelled,
            pex: pex.display().to_string(),
        }
    }

    /// `path` named by what it holds; `None` for pex's runtime on sys.path (dropped).
    fn path(&self, path: &str, on_sys_path: bool) -> Option<String> {
        let named = self.name(path, on_sys_path);
        if on_sys_path && named.starts_with("<pex runtime>") {
            None
        } else {
            Some(named)
        }
    }

    fn name(&self, path: &str, on_sys_path: bool) -> String {
        for root in &self.roots {
            if path == root {
                return "$PEX_ROOT".into();
            }
            if let Some(rel) = path
                .strip_prefix(root.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                return in_pex_root(Path::new(root), rel);
            }
        }
        if path == self.pex {
            return if on_sys_path {
                "<pex code>".into()
            } else {
                path.into()
            };
        }
        if let Some(rel) = path
            .strip_prefix(self.pex.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return in_pex(rel);
        }
        path.into()
    }

    /// stderr and other free text: each file a traceback names (`File "PATH"`) named by
    /// what it holds, as in the report; other PEX_ROOT spellings replaced.
    fn text(&self, text: &str) -> String {
        const FILE: &str = "File \"";
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(FILE) {
            let start = at + FILE.len();
            let Some(len) = rest[start..].find('"') else {
                break;
            };
            out.push_str(&rest[..start]);
            out.push_str(&self.name(&rest[start..start + len], false));
            rest = &rest[start + len..];
        }
        out.push_str(rest);
        for root in &self.roots {
            out = out.replace(root.as_str(), "$PEX_ROOT");
        }
        out
    }

    /// The probe's report, normalized; `info` is dropped (shown on failure only).
    fn report(&self, report: &Value) -> Value {
        let mut out = Map::new();
        let Some(fields) = report.as_object() else {
            return report.clone();
        };
        for (key, value) in fields {
            let normalized = match key.as_str() {
                "info" => continue,
                "path" => Value::Array(
                    strings(value)
                        .filter_map(|p| self.path(p, true))
                        .map(Value::String)
                        .collect(),
                ),
                "argv" => Value::Array(
                    strings(value)
                        .map(|a| Value::String(self.name(a, false)))
                        .collect(),
                ),
                "env" => Value::Object(
                    value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| !k.starts_with("_PEX_"))
                        .map(|(k, v)| (k.clone(), self.env_value(v)))
                        .collect(),
                ),
                "main" | "modules" => Value::Object(
                    value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), self.value_path(v)))
                        .collect(),
                ),
                "executable" | "cwd" => self.value_path(value),
                _ => value.clone(),
            };
            out.insert(key.clone(), normalized);
        }
        Value::Object(out)
    }

    fn value_path(&self, value: &Value) -> Value {
        match value.as_str() {
            Some(s) if s.starts_with('/') => Value::String(self.name(s, false)),
            _ => value.clone(),
        }
    }

    /// A variable's value: each `:`-separated absolute path normalized.
    fn env_value(&self, value: &Value) -> Value {
        match value.as_str() {
            Some(s) => Value::String(
                s.split(':')
                    .map(|p| {
                        if p.starts_with('/') {
                            self.name(p, false)
                        } else {
                            p.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            None => value.clone(),
        }
    }
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn is_version_level(component: &str) -> bool {
    !component.is_empty() && component.len() <= 3 && component.bytes().all(|b| b.is_ascii_digit())
}

/// `rel` below a PEX_ROOT, named by what it holds.
fn in_pex_root(root: &Path, rel: &str) -> String {
    // A venv anywhere in the cache (pex's venvs/, or wherever a seed keeps one).
    let full = root.join(rel);
    for dir in full.ancestors() {
        if !dir.starts_with(root) || dir == root {
            break;
        }
        if dir.join("pyvenv.cfg").is_file() {
            let inside = full.strip_prefix(dir).expect("below the venv");
            let site = Path::new("lib/python3.11/site-packages");
            return match inside.strip_prefix(site) {
                Ok(rest) => join("<venv site-packages>", &rest.display().to_string()),
                Err(_) => join("<venv>", &inside.display().to_string()),
            };
        }
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let after_hash = |from: usize| -> usize {
        let mut i = from;
        if parts.get(i).is_some_and(|p| is_version_level(p)) {
            i += 1;
        }
        i + 1
    };
    match parts[0] {
        "unzipped_pexes" => {
            let i = after_hash(1);
            let rest = parts.get(i..).unwrap_or_default().join("/");
            if rest.starts_with(".bootstrap") {
                join("<pex runtime>", &rest)
            } else {
                join("<pex code>", &rest)
            }
        }
        "installed_wheels" => {
            let i = after_hash(1);
            match parts.get(i) {
                Some(name) => join(
                    &format!("<wheel {name}>"),
                    &parts.get(i + 1..).unwrap_or_default().join("/"),
                ),
                None => format!("$PEX_ROOT/{rel}"),
            }
        }
        "bootstraps" | "isolated" => "<pex runtime>".into(),
        _ => format!("$PEX_ROOT/{rel}"),
    }
}

/// `rel` inside a packed or loose PEX directory (or a zipapp's members).
fn in_pex(rel: &str) -> String {
    if rel.starts_with(".bootstrap") {
        return "<pex runtime>".into();
    }
    if let Some(deps) = rel.strip_prefix(".deps/") {
        let (name, rest) = deps.split_once('/').unwrap_or((deps, ""));
        return join(&format!("<wheel {name}>"), rest);
    }
    join("<pex code>", rel)
}

fn join(head: &str, rest: &str) -> String {
    if rest.is_empty() {
        head.to_owned()
    } else {
        format!("{head}/{rest}")
    }
}

/// Differences between two JSON values, one line each, named by their JSON path.
/// Arrays are shown whole: sys.path and argv read best side by side.
fn diff(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let here = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(&here, x, y, out),
                    (x, y) => out.push(format!("{here}: A {} | B {}", shown(x), shown(y))),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{at}: A {a} | B {b}")),
    }
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), Value::to_string)
}

/// `text` quoted, its middle cut when long: the head says what started, the tail (a
/// traceback's last lines) says what failed.
fn excerpt(text: &str) -> String {
    const HEAD: usize = 300;
    const TAIL: usize = 900;
    if text.len() <= HEAD + TAIL {
        return format!("{text:?}");
    }
    let mut head = HEAD;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - TAIL;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{:?} …({} bytes)… {:?}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// The probe's JSON report (stdout's first line) and whatever else stdout held.
fn split_stdout(stdout: &str) -> (Option<Value>, Vec<&str>) {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    match serde_json::from_str::<Value>(first) {
        Ok(report) if report.is_object() => (Some(report), lines.collect()),
        _ => (None, stdout.lines().collect()),
    }
}

/// The pexinit-side checks of a case: doctor and env agree on the fast path, run does what
/// they say, and a fast path that is not taken has a one-line reason.
fn check_claims(g: &Group, case: &Case, env: &Result<Value, String>, problems: &mut Vec<String>) {
    let (doctor, env) = match (g.report(case, "doctor"), env) {
        (Ok(d), Ok(e)) => (d, e.clone()),
        (d, e) => {
            problems.extend(d.err());
            problems.extend(e.clone().err());
            return;
        }
    };
    let claims = fast_path_claims(&doctor, &env);
    let mut taken = None;
    for (who, claim) in &claims {
        match claim {
            Claim::Unreadable(why) => problems.push(format!("{who}: {why}")),
            Claim::Taken(_) => taken = Some(taken.unwrap_or(true)),
            Claim::NotTaken(reason) => {
                if case.expect_fast_path {
                    problems.push(format!("{who}: fast path: none ({reason})"));
                } else if reason.trim().is_empty() || reason.contains('\n') {
                    problems.push(format!("{who}: the reason is not one line: {reason:?}"));
                }
                taken = Some(false);
            }
        }
    }
    if let [(_, d), (_, e)] = &claims
        && !matches!(d, Claim::Unreadable(_))
        && !matches!(e, Claim::Unreadable(_))
        && matches!(d, Claim::Taken(_)) != matches!(e, Claim::Taken(_))
    {
        problems.push(format!("doctor and env disagree: doctor {d:?}, env {e:?}"));
    }
    if taken == Some(true) {
        let verbose = g.run_b(case, true);
        if !verbose.stderr.contains(FAST_PATH_TAKEN) {
            problems.push(format!(
                "doctor names the fast path but `pexinit -v run` did not take it: stderr {}",
                excerpt(&verbose.stderr)
            ));
        }
    }
}

/// Runs one case; returns its differences (empty when B behaved as A).
fn run_case(g: &Group, case: &Case, seed_before: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let a = g.run_a(case);
    let (a_report, a_rest) = split_stdout(&a.stdout);
    // pex must run the probe as the case expects, its native dependency loaded.
    let ran_as_expected = |r: &Value| r["libyaml"] == Value::Bool(true);
    let Some(a_report) = a_report
        .filter(ran_as_expected)
        .filter(|_| a.code == Some(case.expect_code))
    else {
        // The harness, not pexinit: pex itself must run the probe as the case expects.
        return vec![format!(
            "A (pex) did not run the probe as expected (exit {}, PyYAML's C extension): {}",
            case.expect_code,
            a.describe()
        )];
    };
    let b = g.run_b(case, false);

    // B's PEX_ROOT spellings: the seed, and what pexinit exports (e.g. a link farm).
    let env_report = g.report(case, "env");
    let plan_env = env_report
        .as_ref()
        .ok()
        .and_then(|r| r.get("env"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut b_roots = vec![g.seed.clone()];
    b_roots.extend(
        plan_env
            .get("PEX_ROOT")
            .and_then(Value::as_str)
            .map(PathBuf::from),
    );
    let a_loc = Locations::new(std::slice::from_ref(&g.a_root), &case.pex);
    let b_loc = Locations::new(&b_roots, &case.pex);

    if a.code != b.code {
        problems.push(format!("exit status: A {:?} | B {:?}", a.code, b.code));
    }
    let (a_err, b_err) = (a_loc.text(&a.stderr), b_loc.text(&b.stderr));
    if a_err != b_err {
        problems.push(format!(
            "stderr: A {} | B {}",
            excerpt(&a_err),
            excerpt(&b_err)
        ));
    }
    let (b_report, b_rest) = split_stdout(&b.stdout);
    if a_rest != b_rest {
        problems.push(format!(
            "stdout besides the report: A {a_rest:?} | B {b_rest:?}"
        ));
    }
    match b_report {
        None => problems.push(format!(
            "stdout: B printed no report: {}",
            excerpt(&b.stdout)
        )),
        Some(b_report) => {
            let mut expected = a_loc.report(&a_report);
            let got = b_loc.report(&b_report);
            apply_pexinit_env(
                &mut expected,
                &plan_env,
                &g.env(case),
                &b_loc,
                &mut problems,
                &got,
            );
            let before = problems.len();
            diff("", &expected, &got, &mut problems);
            if problems.len() > before {
                problems.push(format!(
                    "info (not compared): A {} | B {}",
                    a_report["info"], b_report["info"]
                ));
            }
        }
    }
    check_claims(g, case, &env_report, &mut problems);
    let seed_after = snapshot(&g.seed);
    if &seed_after != seed_before {
        let changed: Vec<_> = seed_before
            .symmetric_difference(&seed_after)
            .take(5)
            .collect();
        problems.push(format!("the seed changed: {changed:?}"));
    }
    problems
}

/// pexinit's documented environment changes: every variable `env --json` exports with
/// another value than the harness gave must reach the app as announced (checked against
/// B), and stands in for A's value (PEX_ROOT excepted: it is normalized instead).
fn apply_pexinit_env(
    expected: &mut Value,
    plan_env: &Map<String, Value>,
    harness: &[(String, String)],
    b_loc: &Locations,
    problems: &mut Vec<String>,
    got: &Value,
) {
    let Some(env) = expected.get_mut("env").and_then(Value::as_object_mut) else {
        return;
    };
    let input = |k: &str| {
        harness
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let names: BTreeSet<&String> = plan_env.keys().collect();
    for name in names {
        let planned = plan_env.get(name).and_then(Value::as_str);
        // `_PEX_*` are pex's private bookkeeping, dropped from the comparison (above).
        if name == "PEX_ROOT" || name.starts_with("_PEX_") || planned == input(name) {
            continue;
        }
        // pex strips PEX_* variables before the app runs: those stay as A has them.
        if name.starts_with("PEX_") && !env.contains_key(name) {
            continue;
        }
        let announced = planned.map(|v| b_loc.env_value(&Value::String(v.to_owned())));
        if got["env"].get(name) != announced.as_ref() {
            problems.push(format!(
                "env.{name}: `pexinit env --json` announced {} but the app got {}",
                shown(announced.as_ref()),
                shown(got["env"].get(name))
            ));
        }
        match announced {
            Some(v) => env.insert(name.clone(), v),
            None => env.remove(name),
        };
    }
}

/// Builds the group's PEX files, seeds them read-only, runs every case, and fails with
/// every difference of every case.
fn differential(version: &'static str, kind: Kind) {
    for tool in [SETARCH, SETPRIV] {
        assert!(Path::new(tool).exists(), "{tool} is missing; {NODE_HINT}");
    }
    let g = Group::new(format!("pex {version} {kind:?}"));
    let pexes: Vec<(Entry, PathBuf)> = Entry::ALL
        .iter()
        .map(|e| (*e, probe_pex(version, kind, *e)))
        .collect();
    let seeded = run(pexinit()
        .args(["seed", "--pex-root"])
        .arg(&g.seed)
        .args(["--python", PYTHON])
        .args(pexes.iter().map(|(_, p)| p)));
    assert!(
        seeded.success(),
        "{}: `pexinit seed` of the probe PEX files failed: {}",
        g.label,
        seeded.describe()
    );
    let status = Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&g.seed)
        .status()
        .expect("chmod");
    assert!(status.success(), "chmod -R a-w");
    let seed_before = snapshot(&g.seed);

    // Run-time variables are pexinit's own decision (take the fast path or step aside),
    // the same for every runtime: tried once, on the newest pex's zipapp and --venv.
    let with_variables = version == PEX_NEWEST && matches!(kind, Kind::Zipapp | Kind::Venv);
    // pex 2.1.137 runs a wheel's data script as an external program, which needs an
    // executable file the probe's wheel does not install: A itself fails, nothing to
    // compare.
    let file_scripts = version != PEX_OLDEST;
    let cases = cases(
        &pexes,
        &g.extra,
        with_variables,
        kind != Kind::Venv,
        file_scripts,
    );
    let total = cases.len();
    let mut failures = Vec::new();
    for case in &cases {
        let problems = run_case(&g, case, &seed_before);
        if !problems.is_empty() {
            let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
            let vars: Vec<String> = case.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            failures.push(format!(
                "== {}: {} {args:?} {vars:?}\n  {}",
                case.label,
                case.pex.file_name().unwrap_or_default().to_string_lossy(),
                problems.join("\n  ")
            ));
        }
    }
    let _ = &g.sb;
    assert!(
        failures.is_empty(),
        "{}: {} of {total} cases differ between pex (A) and `pexinit run` from the read-only seed (B):\n\n{}",
        g.label,
        failures.len(),
        failures.join("\n\n")
    );
}

macro_rules! differential_tests {
    ($($name:ident: $version:expr, $kind:expr;)*) => {
        $(
            #[test]
            fn $name() {
                differential($version, $kind);
            }
        )*
    };
}

differential_tests! {
    pex_2_1_137_zipapp: PEX_OLDEST, Kind::Zipapp;
    pex_2_1_137_packed: PEX_OLDEST, Kind::Packed;
    pex_2_1_137_loose: PEX_OLDEST, Kind::Loose;
    pex_2_1_137_venv: PEX_OLDEST, Kind::Venv;
    pex_2_20_3_zipapp: PEX_BUGGY, Kind::Zipapp;
    pex_2_20_3_packed: PEX_BUGGY, Kind::Packed;
    pex_2_20_3_loose: PEX_BUGGY, Kind::Loose;
    pex_2_20_3_venv: PEX_BUGGY, Kind::Venv;
    pex_2_27_1_zipapp: PEX_FIXED, Kind::Zipapp;
    pex_2_27_1_packed: PEX_FIXED, Kind::Packed;
    pex_2_27_1_loose: PEX_FIXED, Kind::Loose;
    pex_2_27_1_venv: PEX_FIXED, Kind::Venv;
    pex_2_105_2_zipapp: PEX_NEWEST, Kind::Zipapp;
    pex_2_105_2_packed: PEX_NEWEST, Kind::Packed;
    pex_2_105_2_loose: PEX_NEWEST, Kind::Loose;
    pex_2_105_2_venv: PEX_NEWEST, Kind::Venv;
}
