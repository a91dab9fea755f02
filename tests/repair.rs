//! `pexinit::pex::repair` against real caches poisoned by real pex 2.20.3 runs: every
//! poisoned cache here was written by the buggy runtime itself, and each case first
//! shows the app failing even with HOME fixed, then running after the repair, with
//! exactly the links a clean run writes.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pexinit::error::exit;
use pexinit::pex::repair::{self, RepairReport};
use support::*;

/// Not a test: the entry point of repair child processes (kill -9 and concurrency
/// tests, uid switches). Repairs `$PEXINIT_TEST_REPAIR_ROOT`, prints the report as JSON
/// and exits with the report's status.
#[test]
#[ignore = "child process entry point, run by other tests"]
fn repair_child() {
    let Some(root) = std::env::var_os("PEXINIT_TEST_REPAIR_ROOT") else {
        return;
    };
    let dry_run = std::env::var_os("PEXINIT_TEST_REPAIR_DRY_RUN").is_some();
    match repair::repair(&PathBuf::from(root), dry_run) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            std::process::exit(i32::from(report.exit_code()));
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(125);
        }
    }
}

/// A command that runs [`repair_child`] on `root`.
fn repair_command(root: &Path) -> Command {
    let mut cmd = clean_command(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--ignored",
        "--exact",
        "repair_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PEXINIT_TEST_REPAIR_ROOT", root);
    cmd
}

/// The JSON report a [`repair_child`] printed (between the test harness's lines).
fn child_report(ran: &Ran) -> serde_json::Value {
    let start = ran.stdout.find('{');
    let end = ran.stdout.rfind('}');
    let text = match (start, end) {
        (Some(s), Some(e)) if s < e => &ran.stdout[s..=e],
        _ => panic!("no report:\n{}", ran.describe()),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad report ({e}):\n{}", ran.describe()))
}

/// How HOME reaches the buggy runtime.
#[derive(Debug, Clone, Copy)]
enum HomeLink {
    /// `HOME=<t>/lnk`, `lnk -> <t>/a/b/c` (pex#2572's report); cwd `<t>`.
    Symlinked,
    /// `HOME=<t>/home/u`, `home -> var/home` (Fedora Silverblue style); cwd the home.
    ParentLink,
    /// `HOME=<t>/lnk`, `lnk -> <t>/real`: same depth, so the bad links happen to resolve
    /// but leave PEX_ROOT (they break as soon as the cache moves).
    SameDepth,
}

struct Case {
    sandbox: Sandbox,
    /// The HOME pex is given (through a link).
    logical_home: PathBuf,
    physical_home: PathBuf,
    cwd: PathBuf,
}

impl Case {
    fn new(link: HomeLink) -> Case {
        let sandbox = Sandbox::new();
        let (logical_home, physical_home, cwd) = match link {
            HomeLink::Symlinked => {
                let real = sandbox.mkdir("a/b/c");
                let lnk = sandbox.symlink(&real, "lnk");
                (lnk, real, sandbox.path().to_path_buf())
            }
            HomeLink::ParentLink => {
                let real = sandbox.mkdir("var/home/u");
                sandbox.symlink("var/home", "home");
                let logical = sandbox.join("home/u");
                (logical.clone(), real, logical)
            }
            HomeLink::SameDepth => {
                let real = sandbox.mkdir("real");
                let lnk = sandbox.symlink(&real, "lnk");
                (lnk, real, sandbox.path().to_path_buf())
            }
        };
        Case {
            sandbox,
            logical_home,
            physical_home,
            cwd,
        }
    }

    fn pex_root(&self) -> PathBuf {
        self.physical_home.join(".cache/pex")
    }

    fn run_app(&self, pex: &Path, home: &Path) -> Ran {
        let mut cmd = clean_command(PYTHON);
        cmd.arg(pex)
            .args(["-t", "moo"])
            .env("HOME", home)
            .current_dir(&self.cwd);
        run(&mut cmd)
    }
}

/// Sorted `(path relative to PEX_ROOT, link text)` of every link in the cache.
fn links(pex_root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = tree(pex_root)
        .into_iter()
        .filter_map(|e| e.strip_prefix("l ").map(PathBuf::from))
        .map(|link| {
            let text = fs::read_link(&link).expect("readlink");
            let rel = link.strip_prefix(pex_root).expect("below root");
            (rel.display().to_string(), text.display().to_string())
        })
        .collect();
    out.sort();
    out
}

/// The links a clean run of `pex` writes under the physical HOME of `case`, after which
/// the cache is removed again.
fn clean_run_links(case: &Case, pex: &Path) -> Vec<(String, String)> {
    assert_cowsay_said(&case.run_app(pex, &case.physical_home), "moo");
    let clean = links(&case.pex_root());
    fs::remove_dir_all(case.physical_home.join(".cache")).expect("remove clean cache");
    clean
}

fn repaired(root: &Path) -> RepairReport {
    repair::repair(root, false).expect("repair runs")
}

/// Poisons the cache with a run under the logical HOME and shows the app failing with
/// the physical one; repairs; shows the app running and the links equal to a clean run.
fn heal_and_compare(link: HomeLink, kind: Kind) {
    let pex = cowsay(PEX_BUGGY, kind);
    let case = Case::new(link);
    let clean = clean_run_links(&case, &pex);

    let poisoning = case.run_app(&pex, &case.logical_home);
    let dangling = !matches!(link, HomeLink::SameDepth);
    if dangling {
        assert!(
            poisoning.stderr.contains(POISONED),
            "{link:?} {kind:?}: {}",
            poisoning.describe()
        );
        let still = case.run_app(&pex, &case.physical_home);
        assert!(
            still.stderr.contains(POISONED),
            "{link:?} {kind:?}: {}",
            still.describe()
        );
    }
    let root = case.pex_root();
    let poisoned = links(&root);
    assert_ne!(poisoned, clean[..poisoned.len().min(clean.len())].to_vec());

    let before = case.sandbox.tree();
    let dry = repair::repair(&root, true).expect("dry run");
    assert_eq!(dry.exit_code(), exit::WOULD_REPAIR, "{dry:#?}");
    assert!(
        dry.plan.poisoned_links() >= 3,
        "{link:?} {kind:?}: {:#?}",
        dry.plan
    );
    assert_eq!(links(&root), poisoned, "a dry run changed links");
    assert_eq!(case.sandbox.tree(), before, "a dry run changed the tree");

    let report = repaired(&root);
    assert_eq!(report.exit_code(), exit::OK, "{report:#?}");
    assert!(report.plan.quarantine.is_empty() && report.plan.suspicious.is_empty());
    assert_eq!(report.outcome.healed.len(), report.plan.heal.len());
    assert!(!report.remaining.has_work());
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(
        json["plan"]["heal"][0]["links"][0]["new"]
            .as_str()
            .map(|s| s.starts_with("../")),
        Some(true)
    );

    // Every link now reads exactly as a clean run wrote it at the same path.
    let healed = links(&root);
    for (path, text) in &healed {
        let expected = clean.iter().find(|(p, _)| p == path);
        assert_eq!(
            expected.map(|(_, t)| t),
            Some(text),
            "{link:?} {kind:?}: {path}"
        );
    }
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    assert_eq!(links(&root), clean, "{link:?} {kind:?}: after the run");
}

#[test]
fn symlinked_home_caches_heal_to_clean_run_links() {
    for kind in [Kind::Zipapp, Kind::Venv, Kind::Packed] {
        heal_and_compare(HomeLink::Symlinked, kind);
    }
}

#[test]
fn parent_link_home_with_cwd_inside_heals_to_clean_run_links() {
    for kind in [Kind::Zipapp, Kind::Venv, Kind::Packed] {
        heal_and_compare(HomeLink::ParentLink, kind);
    }
}

#[test]
fn same_depth_links_that_resolve_by_accident_are_rewritten_into_the_root() {
    for kind in [Kind::Zipapp, Kind::Venv] {
        heal_and_compare(HomeLink::SameDepth, kind);
    }
}

/// A healthy cache: nothing to do, exit 0, and the walk saw the entries.
#[test]
fn healthy_caches_are_left_alone() {
    let case = Case::new(HomeLink::Symlinked);
    for kind in [Kind::Zipapp, Kind::Venv] {
        assert_cowsay_said(
            &case.run_app(&cowsay(PEX_BUGGY, kind), &case.physical_home),
            "moo",
        );
        assert_cowsay_said(
            &case.run_app(&cowsay(PEX_NEWEST, kind), &case.physical_home),
            "moo",
        );
    }
    let root = case.pex_root();
    let before = case.sandbox.tree();
    let report = repaired(&root);
    assert_eq!(report.exit_code(), exit::OK, "{report:#?}");
    assert!(
        !report.plan.has_work() && !report.plan.has_suspicious(),
        "{:#?}",
        report.plan
    );
    assert!(report.plan.entries_scanned >= 8, "{:#?}", report.plan);
    assert!(report.plan.links_checked >= 20, "{:#?}", report.plan);
    assert_eq!(case.sandbox.tree(), before);
}

/// A poisoned entry whose targets were pruned cannot be rewritten: it is moved to the
/// quarantine, and pex rebuilds it.
#[test]
fn entries_without_a_valid_target_are_quarantined_and_rebuilt() {
    let pex = cowsay(PEX_BUGGY, Kind::Zipapp);
    let case = Case::new(HomeLink::Symlinked);
    assert!(
        case.run_app(&pex, &case.logical_home)
            .stderr
            .contains(POISONED)
    );
    let root = case.pex_root();
    fs::remove_dir_all(root.join("bootstraps")).expect("prune bootstraps");

    let report = repaired(&root);
    assert_eq!(report.exit_code(), exit::OK, "{report:#?}");
    assert_eq!(report.outcome.quarantined.len(), 1, "{report:#?}");
    let moved = root.join(&report.outcome.quarantined[0].moved_to);
    assert!(moved.starts_with(root.join(".pexinit-quarantine")) && moved.is_dir());
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    assert!(repaired(&root).plan.quarantine.is_empty());
}

/// A venv whose wheels were pruned: the venv, the unzipped PEX linking the wheel and,
/// in the next round, the short link to the venv all go to quarantine; pex rebuilds.
#[test]
fn quarantine_follows_links_into_quarantined_entries() {
    let pex = cowsay(PEX_BUGGY, Kind::Venv);
    let case = Case::new(HomeLink::Symlinked);
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    let root = case.pex_root();
    fs::remove_dir_all(root.join("installed_wheels")).expect("prune wheels");
    assert!(!case.run_app(&pex, &case.physical_home).success());

    let report = repaired(&root);
    assert_eq!(report.exit_code(), exit::OK, "{report:#?}");
    let kinds: Vec<String> = report
        .outcome
        .quarantined
        .iter()
        .map(|q| {
            q.entry
                .iter()
                .next()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        kinds.contains(&"venvs".to_owned()) && kinds.contains(&"unzipped_pexes".to_owned()),
        "{kinds:?}"
    );
    assert!(
        report
            .outcome
            .quarantined
            .iter()
            .any(|q| q.entry.to_string_lossy().contains("/s/")),
        "{report:#?}"
    );
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    // Only the quarantine (which pex never reads) keeps links that dangle.
    let dangling: Vec<String> = tree(&root)
        .into_iter()
        .filter_map(|e| e.strip_prefix("l ").map(PathBuf::from))
        .filter(|l| fs::metadata(l).is_err())
        .filter(|l| !l.starts_with(root.join(".pexinit-quarantine")))
        .map(|l| l.display().to_string())
        .collect();
    assert!(dangling.is_empty(), "{dangling:#?}");
}

/// Everything about a tree that a write could change: type, mode, size, mtime, link
/// text and content.
fn fingerprint(path: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.starts_with(skip) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let mut line = format!(
            "{} {:o} {} {}",
            p.display(),
            meta.mode(),
            meta.len(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000
        );
        if meta.file_type().is_symlink() {
            line.push_str(&format!(" -> {}", fs::read_link(&p).unwrap().display()));
        } else if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            let mut h = DefaultHasher::new();
            fs::read(&p).unwrap_or_default().hash(&mut h);
            line.push_str(&format!(" #{:x}", h.finish()));
        }
        out.push(line);
    }
    out.sort();
    out
}

/// The walker's bound: deeper than this below PEX_ROOT is reported, not walked.
const TOO_DEEP: usize = pexinit::pex::cache::MAX_DEPTH + 2;

#[test]
fn hostile_caches_are_reported_never_followed_and_nothing_outside_changes() {
    let pex = cowsay(PEX_BUGGY, Kind::Zipapp);
    let case = Case::new(HomeLink::Symlinked);
    assert!(
        case.run_app(&pex, &case.logical_home)
            .stderr
            .contains(POISONED)
    );
    let root = case.pex_root();
    let outside = case.sandbox.mkdir("outside/dir");
    case.sandbox.write("outside/dir/file", b"precious");
    // A directory outside that looks like a poisoned cache: must not be touched either.
    fs::create_dir_all(outside.join("unzipped_pexes/0/x")).unwrap();
    symlink(
        "../../../../../../a/b/c/.cache/pex/bootstraps/0/x",
        outside.join("unzipped_pexes/0/x/l"),
    )
    .unwrap();

    let unzipped = fs::read_dir(root.join("unzipped_pexes/0"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("an unzipped entry");
    symlink("/etc/passwd", unzipped.join(".deps/evil")).unwrap();
    symlink(&outside, unzipped.join("outdir")).unwrap();
    symlink(
        "../../../../../../../../../../../../../../etc",
        unzipped.join("up"),
    )
    .unwrap();
    // A link loop in an otherwise good entry, a file where an entry directory belongs,
    // a file where a version directory belongs, a link instead of a version directory,
    // and a tree deeper than the walker goes.
    let looped = root.join("unzipped_pexes/0/1111111111111111111111111111111111111111");
    fs::create_dir_all(&looped).unwrap();
    symlink("loop2", looped.join("loop1")).unwrap();
    symlink("loop1", looped.join("loop2")).unwrap();
    fs::write(
        root.join("bootstraps/0/2222222222222222222222222222222222222222"),
        b"",
    )
    .unwrap();
    fs::write(root.join("user_code/7"), b"").unwrap();
    symlink(&outside, root.join("installed_wheels/9")).unwrap();
    let mut deep = root.join("unzipped_pexes/0/3333333333333333333333333333333333333333");
    for _ in 0..TOO_DEEP {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    symlink("/etc/shadow", deep.join("evil")).unwrap();

    let outside_before = fingerprint(case.sandbox.path(), &root);
    let etc_before = fingerprint(Path::new("/etc/passwd"), Path::new("/nonexistent"));
    let report = repaired(&root);

    assert_eq!(report.exit_code(), exit::SUSPICIOUS, "{report:#?}");
    let mut suspicious: Vec<String> = report
        .remaining
        .suspicious
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    suspicious.sort();
    assert_eq!(suspicious, ["evil", "outdir", "up"], "{report:#?}");
    let text = report.text();
    assert!(
        text.contains("-> /etc/passwd (absolute link out of PEX_ROOT): left alone"),
        "{text}"
    );
    assert!(text.contains("quarantined unzipped_pexes/0/1111"), "{text}");
    let problems: Vec<String> = report
        .remaining
        .problems
        .iter()
        .map(|p| format!("{} {:?}", p.path.display(), p.problem))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("user_code/7 NotADirectory")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("installed_wheels/9 SymlinkInsteadOfDirectory")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.ends_with("TooDeep")),
        "{problems:#?}"
    );
    let mut quarantined: Vec<String> = report
        .outcome
        .quarantined
        .iter()
        .map(|q| q.entry.display().to_string())
        .collect();
    quarantined.sort();
    assert_eq!(
        quarantined,
        [
            "bootstraps/0/2222222222222222222222222222222222222222",
            "unzipped_pexes/0/1111111111111111111111111111111111111111",
        ]
    );
    // The poisoned links of the entry holding hostile ones were still healed, and the
    // hostile links are untouched.
    assert_eq!(
        fs::read_link(unzipped.join(".deps/evil")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(fs::read_link(unzipped.join("outdir")).unwrap(), outside);
    assert_eq!(fingerprint(case.sandbox.path(), &root), outside_before);
    assert_eq!(
        fingerprint(Path::new("/etc/passwd"), Path::new("/nonexistent")),
        etc_before
    );
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
}

/// The uid pexinit often runs as in containers (nobody): cannot read a root-only
/// directory, cannot take locks in a root-owned cache.
const NOBODY: u32 = 65534;

#[test]
fn unreadable_and_unwritable_caches_are_reported_with_their_own_status() {
    let pex = cowsay(PEX_BUGGY, Kind::Zipapp);
    let case = Case::new(HomeLink::Symlinked);
    assert!(
        case.run_app(&pex, &case.logical_home)
            .stderr
            .contains(POISONED)
    );
    let root = case.pex_root();
    chmod_tree(&root, 0o755);

    // Readable but not writable for nobody: the poisoned entry cannot be healed.
    let ran = run(&mut as_user(NOBODY, NOBODY, &repair_command(&root)));
    assert_eq!(
        ran.code,
        Some(i32::from(exit::NOT_HEALED)),
        "{}",
        ran.describe()
    );
    assert!(
        ran.stdout.contains("Permission denied"),
        "{}",
        ran.describe()
    );
    assert!(
        case.run_app(&pex, &case.physical_home)
            .stderr
            .contains(POISONED)
    );

    // A directory nobody cannot read: reported, the rest still judged.
    fs::set_permissions(root.join("bootstraps/0"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut dry = repair_command(&root);
    dry.env("PEXINIT_TEST_REPAIR_DRY_RUN", "1");
    let ran = run(&mut as_user(NOBODY, NOBODY, &dry));
    assert_eq!(
        ran.code,
        Some(i32::from(exit::SUSPICIOUS)),
        "{}",
        ran.describe()
    );
    let json = child_report(&ran);
    assert_eq!(
        json["plan"]["problems"][0]["path"], "bootstraps/0",
        "{json:#}"
    );
    assert_eq!(
        json["plan"]["problems"][0]["problem"], "unreadable",
        "{json:#}"
    );
    // The link into the unreadable directory cannot be verified: reported, not
    // quarantined (EACCES proves nothing about the entry).
    assert_eq!(
        json["plan"]["quarantine"],
        serde_json::json!([]),
        "{json:#}"
    );
    assert!(
        json["plan"]["suspicious"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".bootstrap")),
        "{json:#}"
    );
    assert!(
        json["plan"]["heal"]
            .as_array()
            .is_some_and(|h| !h.is_empty()),
        "{json:#}"
    );
}

fn chmod_tree(root: &Path, mode: u32) {
    for entry in tree(root) {
        if let Some(dir) = entry.strip_prefix("d ") {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// A poisoned cache (written by a real pex 2.20.3 run) whose poisoned unzipped entry is
/// copied `copies` times under other hashes, so a repair has many links to heal.
fn many_poisoned_entries(copies: usize) -> (Case, PathBuf) {
    let pex = cowsay(PEX_BUGGY, Kind::Zipapp);
    let case = Case::new(HomeLink::Symlinked);
    assert!(
        case.run_app(&pex, &case.logical_home)
            .stderr
            .contains(POISONED)
    );
    let versions = case.pex_root().join("unzipped_pexes/0");
    let entry = fs::read_dir(&versions)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("unzipped entry");
    for i in 0..copies {
        let copy = versions.join(format!("{i:040x}"));
        let status = Command::new("/bin/cp")
            .arg("-a")
            .arg(&entry)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
    }
    (case, pex)
}

/// A cheap, dependency-free random number (the tests need no crypto quality).
fn random_below(bound: u64) -> u64 {
    let mut h = DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish() % bound.max(1)
}

#[test]
fn repairs_killed_at_random_moments_leave_a_cache_the_next_repair_heals() {
    const TRIALS: usize = 50;
    const COPIES: usize = 60;
    let (template, pex) = many_poisoned_entries(COPIES);
    let fresh_copy = || {
        let case = Case::new(HomeLink::Symlinked);
        let status = Command::new("/bin/cp")
            .arg("-a")
            .arg(template.sandbox.join("a/b/c/.cache"))
            .arg(case.physical_home.join(".cache"))
            .status()
            .unwrap();
        assert!(status.success());
        case
    };
    // How long a whole repair takes here: kills are spread over that window, so most
    // land while links are being rewritten.
    let timing = fresh_copy();
    let started = std::time::Instant::now();
    assert!(
        repair_command(&timing.pex_root())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let window = started.elapsed().as_micros() as u64;

    let mut killed_mid_repair = 0;
    for trial in 0..TRIALS {
        let case = fresh_copy();
        let root = case.pex_root();
        let mut child = repair_command(&root).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(random_below(window)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let partial = repair::plan(&root).unwrap();
        if status.code().is_none() && (1..=COPIES).contains(&partial.heal.len()) {
            killed_mid_repair += 1;
        }

        let report = repaired(&root);
        assert_eq!(report.exit_code(), exit::OK, "trial {trial}: {report:#?}");
        assert!(
            report.plan.quarantine.is_empty(),
            "trial {trial}: {report:#?}"
        );
        let after = repair::plan(&root).unwrap();
        assert!(
            !after.has_work() && !after.has_suspicious(),
            "trial {trial}: {after:#?}"
        );
        assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    }
    eprintln!("{killed_mid_repair} of {TRIALS} repairs were killed part-way through");
}

#[test]
fn two_repairs_and_a_pex_run_on_one_cache_all_succeed() {
    let (case, pex) = many_poisoned_entries(100);
    let root = case.pex_root();
    // Another PEX sharing the cache, cold for its own entries: pex creates them (with
    // work dirs and locks) while both repairs walk and heal.
    let other = cowsay(PEX_BUGGY, Kind::Venv);
    let spawn_repair = || -> Child {
        repair_command(&root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut app = clean_command(PYTHON);
    app.arg(&other)
        .args(["-t", "moo"])
        .env("HOME", &case.physical_home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let first = spawn_repair();
    let running = app.spawn().unwrap();
    let second = spawn_repair();
    for (name, child) in [
        ("repair 1", first),
        ("pex run", running),
        ("repair 2", second),
    ] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = repair::plan(&root).unwrap();
    assert!(!after.has_work() && !after.has_suspicious(), "{after:#?}");
    assert_cowsay_said(&case.run_app(&pex, &case.physical_home), "moo");
    assert_cowsay_said(&case.run_app(&other, &case.physical_home), "moo");
}
