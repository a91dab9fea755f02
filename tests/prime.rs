//! `pexinit prime` end to end: seeds made by the real binary from real pex-built PEX
//! files, primed into directories, tmpfs mount points (`unshare --mount`) and shared
//! paths, then run through `pexinit run` as non-root uids (`setpriv`).
//!
//! "Warm" is asserted by effect, as in tests/seed.rs: after a run, the primed PEX_ROOT
//! holds nothing new except pex's lock and access files, pex printed no fallback
//! warning, and every PEX took pexinit's fast path (a venv, or a zipapp's launcher).

mod support;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::*;

const FAST_PATH_TAKEN: &str = "pexinit: info: fast path: exec the seeded venv";
const LAUNCHER_TAKEN: &str = "pexinit: info: fast path: exec the seeded launcher";
const MARKER: &str = ".pexinit-prime.json";
const MANIFEST: &str = ".pexinit-seed.json";

/// The apps every seed here holds: both venv exec styles and a zipapp run through pex.
fn apps() -> Vec<PathBuf> {
    vec![
        cowsay(PEX_NEWEST, Kind::Venv),
        cowsay(PEX_BUGGY, Kind::Venv),
        cowsay(PEX_FIXED, Kind::Zipapp),
    ]
}

/// `pexinit seed --pex-root ROOT --python python3.11 APPS...` (the real binary).
fn seed(root: &Path, apps: &[PathBuf]) {
    let ran = run(pexinit()
        .args(["seed", "--pex-root"])
        .arg(root)
        .args(["--python", PYTHON])
        .args(apps));
    assert!(ran.success(), "seed: {}", ran.describe());
}

/// A sandbox with a HOME anyone can write, and a seed of some apps at `<sandbox>/seed`.
struct Seeded {
    sb: Sandbox,
    home: PathBuf,
    seed_dir: PathBuf,
}

fn seeded(apps: &[PathBuf]) -> Seeded {
    let sb = Sandbox::new();
    let home = home(&sb);
    let seed_dir = sb.join("seed");
    seed(&seed_dir, apps);
    Seeded { sb, home, seed_dir }
}

fn prime_cmd(from: &Path, into: &Path, extra: &[&str]) -> Command {
    let mut cmd = pexinit();
    cmd.args(["prime", "--json", "--from"])
        .arg(from)
        .arg("--into")
        .arg(into)
        .args(extra);
    cmd
}

/// Primes and returns the JSON report (asserting success).
fn prime(from: &Path, into: &Path, extra: &[&str]) -> serde_json::Value {
    let ran = run(&mut prime_cmd(from, into, extra));
    assert!(ran.success(), "prime {extra:?}: {}", ran.describe());
    ran.json()
}

/// [`Node::describe`] of every path, with its inode: "nothing changed, not even
/// replaced" for a tree.
fn fingerprint(root: &Path) -> Vec<String> {
    nodes(root)
        .iter()
        .map(|n| format!("{} inode {}", n.describe(), n.meta.ino()))
        .collect()
}

fn home(sb: &Sandbox) -> PathBuf {
    let home = sb.mkdir("home");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).expect("chmod home");
    home
}

/// `pexinit -v run -- APP -t moo` as `uid:gid` with PEXINIT_PEX_ROOT=root.
fn app_run(root: &Path, app: &Path, uid: u32, gid: u32, home: &Path) -> Command {
    let mut cmd = pexinit();
    cmd.env("HOME", home)
        .env("PEXINIT_PEX_ROOT", root)
        .args(["-v", "run", "--"])
        .arg(app)
        .args(["-t", "moo"]);
    as_user(uid, gid, &cmd)
}

/// Every app runs from `root` as `uid:gid`: warm (nothing new in `root`, no pex
/// fallback warning), through the fast path: the venv PEXes with `root` itself as
/// PEX_ROOT (no link farm), and through pex's own bootstrap too; the zipapp through the
/// launcher primed with the seed, reading `root` in place.
fn assert_runs_warm(root: &Path, uid: u32, gid: u32, home: &Path, label: &str) {
    let before = content(root);
    for app in apps() {
        let ran = run(&mut app_run(root, &app, uid, gid, home));
        assert_cowsay_said(&ran, "moo");
        assert!(
            !ran.stderr.contains("PEXWarning") && !ran.stderr.contains("falling back"),
            "{label}: pex fell back to a temporary PEX_ROOT:\n{}",
            ran.describe()
        );
        let venv = app.to_string_lossy().contains("-venv");
        let (taken, root_line) = match venv {
            true => (
                FAST_PATH_TAKEN,
                format!("used as PEX_ROOT {}\n", root.display()),
            ),
            false => (
                LAUNCHER_TAKEN,
                format!("seed {} read in place\n", root.display()),
            ),
        };
        assert!(
            ran.stderr.contains(taken) && ran.stderr.contains(&root_line),
            "{label}: {}",
            ran.describe()
        );
        if venv {
            // pex's own bootstrap finds the (relocated) venv warm too.
            let mut direct = clean_command(PYTHON);
            direct
                .env("HOME", home)
                .env("PEX_ROOT", root)
                .arg(&app)
                .args(["-t", "boot"]);
            let ran = run(&mut as_user(uid, gid, &direct));
            assert_cowsay_said(&ran, "boot");
            assert!(!ran.stderr.contains("PEXWarning"), "{}", ran.describe());
        }
        assert_eq!(
            content(root),
            before,
            "{label}: running {} created files in the primed PEX_ROOT",
            app.display()
        );
    }
}

fn num(report: &serde_json::Value, key: &str) -> u64 {
    report["tree"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key}: {report:#}"))
}

/// The seed lives at another path than it was built for (an image keeps it at
/// /opt/seed, a volume is mounted elsewhere): copy, hardlink and auto primes of it into
/// the build path and into other paths (relocated) all run warm as uid 123456:0 (the
/// OpenShift convention) and, with --chown, as 65534. Hardlinks never let a run touch
/// the seed, and hardlink mode with an owner the seed does not have is refused.
#[test]
fn copy_hardlink_and_auto_primes_run_warm_relocated_or_not() {
    let sb = Sandbox::new();
    let home = home(&sb);
    let built_at = sb.join("pex-root");
    seed(&built_at, &apps());
    let store = sb.join("seed");
    fs::rename(&built_at, &store).expect("move the seed");
    let seed_before = fingerprint(&store);

    // Not relocated: primed back into the path it was built for.
    let report = prime(&store, &built_at, &["--link", "copy"]);
    assert!(report["relocated_from"].is_null(), "{report:#}");
    assert_eq!(num(&report, "files_rewritten"), 0, "{report:#}");
    assert_eq!(num(&report, "files_hardlinked"), 0, "{report:#}");
    assert_runs_warm(&built_at, 123456, 0, &home, "copy, build path");

    for (mode, dir) in [
        ("copy", "copy"),
        ("hardlink", "hard"),
        ("auto", "auto-longer-name"),
    ] {
        let into = sb.join(&format!("volume/{dir}"));
        sb.mkdir("volume");
        let report = prime(&store, &into, &["--link", mode]);
        assert_eq!(
            report["relocated_from"].as_str(),
            Some(built_at.to_str().expect("utf8")),
            "{report:#}"
        );
        assert!(num(&report, "files_rewritten") > 0, "{report:#}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(into.join(MANIFEST)).expect("manifest"))
                .expect("json");
        assert_eq!(manifest["pex_root"].as_str(), into.to_str(), "{manifest:#}");
        match mode {
            "copy" => assert_eq!(num(&report, "files_hardlinked"), 0, "{report:#}"),
            // Same filesystem, no reflinks on ext4/tmpfs: auto hardlinks.
            _ => assert!(num(&report, "files_hardlinked") > 1000, "{report:#}"),
        }
        // Nothing in the primed tree still names the build path, except the bytecode's
        // recorded source paths (Python replaces them on load).
        let grep = Command::new("grep")
            .args(["-rlF", "--exclude=*.pyc", "--exclude=INTERP-INFO"])
            .arg(format!("{}/", built_at.display()))
            .arg(&into)
            .output()
            .expect("grep");
        assert!(
            grep.stdout.is_empty(),
            "{mode}: still naming the build path: {}",
            String::from_utf8_lossy(&grep.stdout)
        );
        assert_runs_warm(&into, 123456, 0, &home, mode);
    }
    assert_eq!(
        fingerprint(&store),
        seed_before,
        "priming or running changed the seed"
    );

    // --chown: auto copies what a hardlink would have to chown; hardlink refuses.
    let chowned = sb.join("volume/chowned");
    let report = prime(&store, &chowned, &["--chown", "65534:65534"]);
    assert_eq!(num(&report, "files_hardlinked"), 0, "{report:#}");
    let meta = fs::metadata(chowned.join("venvs")).expect("venvs");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_runs_warm(&chowned, 65534, 65534, &home, "chown 65534");
    let refused = sb.join("volume/refused");
    let ran = run(&mut prime_cmd(
        &store,
        &refused,
        &["--link", "hardlink", "--chown", "65534:65534"],
    ));
    assert_eq!(ran.code, Some(125), "{}", ran.describe());
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    assert!(ran.stderr.contains("--link copy"), "{}", ran.describe());
    assert!(
        !refused.exists(),
        "a refused prime left {}",
        refused.display()
    );
    assert_eq!(
        fingerprint(&store),
        seed_before,
        "priming or running changed the seed"
    );
}

/// Runs `script` (sh, with $1 = the tmpfs mount point) in a private mount namespace
/// where an empty world-writable tmpfs is mounted at `mount_at`: an emptyDir.
fn in_tmpfs(mount_at: &Path, script: &str) -> Ran {
    in_private_mounts(
        mount_at,
        &format!("mount -t tmpfs -o mode=1777 tmpfs \"$1\"; {script}"),
    )
}

/// Runs `script` (sh -e, with $1 = `mount_at`) in a private mount namespace: whatever it
/// mounts is gone when it ends.
fn in_private_mounts(mount_at: &Path, script: &str) -> Ran {
    let full = format!("set -e; mount --make-rprivate /; {script}");
    run(Command::new("/usr/bin/unshare")
        .args(["--mount", "--", "/bin/sh", "-c", &full, "sh"])
        .arg(mount_at)
        .env_clear()
        .env("PATH", PATH))
}

/// The Kubernetes shape: an emptyDir (a tmpfs, another filesystem) mounted at DIR
/// itself. Nothing can be renamed onto a mount point, so prime fills it entry by entry,
/// marker last; auto mode copies (no hardlinks across filesystems), explicit hardlink
/// mode is refused with the fix, and the app runs warm as 65534 (with --chown).
#[test]
fn an_empty_tmpfs_mount_point_is_primed_and_runs_warm() {
    let Seeded { sb, home, seed_dir } = seeded(&apps());
    let mount = sb.mkdir("mnt");
    // Run as 65534 too: copies that uid can reach wherever the checkout is.
    let bin = reachable(Path::new(pexinit_bin())).display().to_string();
    let apps: Vec<PathBuf> = apps().iter().map(|app| reachable(app)).collect();
    let mut runs = String::new();
    for app in &apps {
        runs.push_str(&format!(
            "env -i PATH={PATH} HOME={home} PEXINIT_PEX_ROOT=\"$1\" /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups -- {bin} -v run -- {app} -t moo; echo status=$?; ",
            home = home.display(),
            app = app.display()
        ));
    }
    let script = format!(
        "{bin} prime --from {seed} --into \"$1\" --link hardlink || echo hardlink-status=$?; \
         ls -A \"$1\" | grep -v '^.pexinit-prime.lock$' | sed 's/^/left: /'; \
         {bin} prime --json --from {seed} --into \"$1\" --chown 65534:65534; \
         find \"$1\" -path '*/.pexinit*' -prune -o -print | grep -v '\\.lck$\\|/\\.last-access$' | sort > {sb}/before; \
         {runs} \
         find \"$1\" -path '*/.pexinit*' -prune -o -print | grep -v '\\.lck$\\|/\\.last-access$' | sort > {sb}/after; \
         {bin} prime --json --from {seed} --into \"$1\" --chown 65534:65534",
        seed = seed_dir.display(),
        sb = sb.path().display(),
    );
    let ran = in_tmpfs(&mount, &script);
    assert!(ran.success(), "{}", ran.describe());
    assert!(
        ran.stdout.contains("hardlink-status=125")
            && ran
                .stderr
                .contains("different filesystems; use --link copy"),
        "{}",
        ran.describe()
    );
    assert!(
        !ran.stdout.contains("left: "),
        "a refused prime left files: {}",
        ran.describe()
    );
    assert_eq!(
        ran.stdout.matches("status=0").count(),
        apps.len(),
        "{}",
        ran.describe()
    );
    assert_eq!(
        ran.stdout.matches("| moo |").count(),
        apps.len(),
        "{}",
        ran.describe()
    );
    assert_eq!(
        ran.stderr.matches(FAST_PATH_TAKEN).count(),
        2,
        "{}",
        ran.describe()
    );
    assert!(!ran.stderr.contains("PEXWarning"), "{}", ran.describe());
    ran.assert_stdout_has("\"placement\": \"filled_mount_point\"");
    ran.assert_stdout_has("\"already_primed\": true");
    ran.assert_stdout_has("\"files_hardlinked\": 0");
    let before = fs::read_to_string(sb.join("before")).expect("before");
    let after = fs::read_to_string(sb.join("after")).expect("after");
    assert!(before.contains("/venvs/"), "{before}");
    assert_eq!(before, after, "the runs created files in the primed tmpfs");
    assert!(
        fs::read_dir(&mount).expect("mnt").next().is_none(),
        "the tmpfs leaked out"
    );
}

/// A second prime of the same seed changes nothing and says so; a prime of another
/// seed replaces the tree in one swap, and the new app runs warm.
#[test]
fn priming_again_is_a_no_op_and_another_seed_replaces() {
    let sb = Sandbox::new();
    let home = home(&sb);
    let first_seed = sb.join("seed-a");
    seed(&first_seed, &apps()[..1]);
    let second_seed = sb.join("seed-b");
    seed(&second_seed, &apps());
    // An existing empty DIR (a directory made ahead on a shared volume) is filled.
    let into = sb.mkdir("vol/pex-root");
    let report = prime(&first_seed, &into, &[]);
    assert_eq!(report["already_primed"], false, "{report:#}");
    let before = fingerprint(&into);
    let dir_before = fs::metadata(&into).expect("dir");

    let again = run(pexinit()
        .args(["prime", "--from"])
        .arg(&first_seed)
        .arg("--into")
        .arg(&into));
    assert!(again.success(), "{}", again.describe());
    assert!(
        again.stdout.contains("already primed"),
        "{}",
        again.describe()
    );
    let report = prime(&first_seed, &into, &[]);
    assert_eq!(report["already_primed"], true, "{report:#}");
    assert!(report["tree"].is_null(), "{report:#}");
    let dir_after = fs::metadata(&into).expect("dir");
    assert_eq!(
        (dir_after.ino(), dir_after.ctime(), dir_after.ctime_nsec()),
        (
            dir_before.ino(),
            dir_before.ctime(),
            dir_before.ctime_nsec()
        ),
        "a no-op prime touched DIR"
    );
    assert_eq!(fingerprint(&into), before, "a no-op prime changed the tree");

    let report = prime(&second_seed, &into, &[]);
    assert_eq!(report["replaced"], true, "{report:#}");
    assert_ne!(fs::metadata(&into).expect("dir").ino(), dir_before.ino());
    assert_runs_warm(&into, 123456, 0, &home, "replaced");
    assert_nothing_left_beside(&sb.join("vol"), "pex-root");
}

fn read_marker(root: &Path) -> serde_json::Value {
    let bytes = fs::read(root.join(MARKER)).expect("marker");
    serde_json::from_slice(&bytes).expect("marker is JSON")
}

fn write_marker(root: &Path, marker: &serde_json::Value) {
    let text = serde_json::to_string_pretty(marker).expect("marker serializes");
    fs::write(root.join(MARKER), text).expect("write marker");
}

fn this_boot() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("boot_id")
        .trim()
        .to_owned()
}

/// On a filesystem local to the machine, a copy prime does not wait for its data to
/// reach the disk: the marker names the kernel's boot instead. In that boot the prime is
/// trusted (priming again does nothing). After a restart (another boot id) a crash may
/// have left empty files under the marker: `run` warns, and the next prime primes again,
/// after which the app runs warm from a whole tree, without the warning. A flushed prime
/// is trusted after a restart.
#[test]
fn an_unflushed_prime_is_trusted_only_in_the_boot_that_wrote_it() {
    let Seeded { sb, home, seed_dir } = seeded(&apps());
    sb.mkdir("vol");
    let into = sb.join("vol/pex-root");
    let report = prime(&seed_dir, &into, &["--link", "copy"]);
    assert_eq!(report["flushed"], false, "{report:#}");
    let marker = read_marker(&into);
    assert_eq!(marker["flushed"], false, "{marker:#}");
    assert_eq!(marker["boot_id"], this_boot().as_str(), "{marker:#}");
    let report = prime(&seed_dir, &into, &["--link", "copy"]);
    assert_eq!(report["already_primed"], true, "{report:#}");

    // What a crash before writeback can leave: the marker of another boot, and a module
    // the app imports emptied.
    let victim = tree(&into)
        .into_iter()
        .filter_map(|line| line.strip_prefix("f ").map(PathBuf::from))
        .find(|path| {
            path.to_string_lossy().contains("/installed_wheels/")
                && path.ends_with("cowsay/__init__.py")
        })
        .expect("cowsay's __init__.py in the primed tree");
    let original = fs::read(&victim).expect("victim");
    assert!(!original.is_empty());
    fs::write(&victim, b"").expect("empty the victim");
    let mut marker = read_marker(&into);
    marker["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    write_marker(&into, &marker);
    let manifest_path = into.join(MANIFEST);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_eq!(manifest["unflushed_boot_id"], this_boot().as_str());
    manifest["unflushed_boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    fs::write(&manifest_path, manifest.to_string()).expect("write manifest");
    // `run` cannot repair, but says what to do.
    let app = &apps()[0];
    let ran = run(&mut app_run(&into, app, 0, 0, &home));
    assert!(
        ran.stderr
            .contains("was primed without a flush to disk, and this machine has restarted since")
            && ran.stderr.contains("run `pexinit prime` into it again"),
        "{}",
        ran.describe()
    );

    let ran = run(&mut prime_cmd(&seed_dir, &into, &["--link", "copy"]));
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    assert_eq!(report["already_primed"], false, "{report:#}");
    assert_eq!(report["reprimed_after_restart"], true, "{report:#}");
    assert!(
        ran.stderr
            .contains("was primed without a flush to disk before this machine restarted"),
        "{}",
        ran.describe()
    );
    assert_eq!(fs::read(&victim).expect("victim"), original);
    assert_eq!(read_marker(&into)["boot_id"], this_boot().as_str());
    assert_runs_warm(&into, 123456, 0, &home, "primed again after a restart");
    let ran = run(&mut app_run(&into, app, 123456, 0, &home));
    ran.assert_stderr_lacks("primed without a flush");

    let mut marker = read_marker(&into);
    marker["flushed"] = true.into();
    marker["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    write_marker(&into, &marker);
    let report = prime(&seed_dir, &into, &["--link", "copy"]);
    assert_eq!(
        report["already_primed"], true,
        "a flushed prime: {report:#}"
    );
    assert_nothing_left_beside(&sb.join("vol"), "pex-root");
}

/// On a filesystem not known to be local to the machine (a network volume is primed on
/// one machine and trusted on others, in other boots), the tree is flushed before it is
/// published, and the marker says so instead of naming a boot. ramfs stands in for such
/// a filesystem here.
#[test]
fn a_prime_on_a_filesystem_not_known_to_be_local_is_flushed() {
    let ran = prime_into_a_new_mount(
        "-t ramfs ramfs",
        "--json",
        &format!("cat \"$1/pex-root/{MARKER}\""),
    );
    assert!(ran.success(), "{}", ran.describe());
    let report: serde_json::Value = serde_json::Deserializer::from_str(&ran.stdout)
        .into_iter()
        .next()
        .expect("a report")
        .expect("the report is JSON");
    assert_eq!(report["flushed"], true, "{report:#}");
    assert!(num(&report, "files_copied") > 0, "{report:#}");
    let marker_text = &ran.stdout[ran.stdout.rfind("{\n  \"format\"").expect("marker")..];
    let marker: serde_json::Value = serde_json::from_str(marker_text).expect("marker");
    assert_eq!(marker["flushed"], true, "{marker:#}");
    assert!(marker.get("boot_id").is_none(), "{marker:#}");
}

/// A prime that fails part-way (the volume fills up) exits 1 with the system's error and
/// leaves DIR as it was (absent here), with no temporary tree beside it.
#[test]
fn a_prime_that_runs_out_of_space_leaves_nothing_behind() {
    let ran = prime_into_a_new_mount(
        "-t tmpfs -o size=1m tmpfs",
        "",
        "ls -A \"$1\" | sed 's/^/left: /'",
    );
    assert!(ran.success(), "{}", ran.describe());
    assert!(ran.stdout.contains("status=1\n"), "{}", ran.describe());
    let errors: Vec<&str> = ran.stderr_lines();
    assert!(
        errors.len() == 1
            && errors[0].starts_with("pexinit: error: ")
            && errors[0].contains("No space left on device"),
        "{}",
        ran.describe()
    );
    let left: Vec<&str> = ran
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("left: "))
        .collect();
    assert_eq!(left, [".pex-root.pexinit-prime.lock"], "{}", ran.describe());
}

/// Seeds one app, then, in a private mount namespace, mounts a new filesystem (`mount`'s
/// arguments, without the mount point) at `$1`, runs `pexinit prime [FLAGS] --link copy`
/// into `$1/pex-root` (printing `status=N` when it fails), then `after`.
fn prime_into_a_new_mount(mount: &str, flags: &str, after: &str) -> Ran {
    let Seeded { sb, seed_dir, .. } = seeded(&apps()[..1]);
    let script = format!(
        "mount {mount} \"$1\"; {bin} prime {flags} --from {seed} --into \"$1/pex-root\" --link copy || echo status=$?; {after}",
        bin = pexinit_bin(),
        seed = seed_dir.display(),
    );
    in_private_mounts(&sb.mkdir("mnt"), &script)
}

/// Nothing but DIR (named `name`) and prime's lock file is left in `parent`: no
/// temporary tree, no moved-aside old tree.
fn assert_nothing_left_beside(parent: &Path, name: &str) {
    let leftovers: Vec<String> = fs::read_dir(parent)
        .expect("parent of DIR")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != name && !n.ends_with(".pexinit-prime.lock"))
        .collect();
    assert!(leftovers.is_empty(), "left beside DIR: {leftovers:?}");
}

/// SIGKILL in the middle of a prime: DIR is never visible half-made (it is absent
/// until complete), and the next prime removes the leftover and completes.
#[test]
fn a_killed_prime_leaves_nothing_pex_trusts_and_the_next_completes() {
    let Seeded { sb, home, seed_dir } = seeded(&apps());
    sb.mkdir("vol");
    let into = sb.join("vol/pex-root");
    let mut killed = 0;
    for attempt in 0..5 {
        let mut child = prime_cmd(&seed_dir, &into, &["--link", "copy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prime");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tmp_seen = false;
        while Instant::now() < deadline {
            assert!(
                !into.exists() || into.join(MARKER).is_file(),
                "attempt {attempt}: DIR visible without its marker"
            );
            tmp_seen = fs::read_dir(sb.join("vol"))
                .expect("vol")
                .flatten()
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains(".pexinit-prime-tmp.")
                });
            if tmp_seen || child.try_wait().expect("wait").is_some() {
                break;
            }
            sleep(Duration::from_micros(200));
        }
        if tmp_seen {
            child.kill().expect("SIGKILL");
        }
        let status = child.wait().expect("wait");
        if status.code().is_none() {
            killed += 1;
            assert!(
                !into.exists(),
                "a killed prime left DIR: {:#?}",
                tree(&into)
            );
            let report = prime(&seed_dir, &into, &["--link", "copy"]);
            assert_eq!(report["stale_removed"], 1, "{report:#}");
            assert_runs_warm(&into, 123456, 0, &home, "after a killed prime");
            break;
        }
        fs::remove_dir_all(&into).expect("reset");
    }
    assert!(killed > 0, "never caught a prime mid-way in 5 attempts");
    assert_nothing_left_beside(&sb.join("vol"), "pex-root");
}

/// SIGKILL in the middle of a prime into a tmpfs mount point: `run` never finds a seed
/// manifest before every top-level directory is in place, and the next prime cleans up
/// and completes; the app then runs warm.
#[test]
fn a_killed_prime_of_a_mount_point_is_finished_by_the_next() {
    let Seeded { sb, home, seed_dir } = seeded(&apps());
    let mount = sb.mkdir("mnt");
    // Run as 65534 too: copies that uid can reach wherever the checkout is.
    let bin = reachable(Path::new(pexinit_bin())).display().to_string();
    let app = &reachable(&apps()[0]);
    let script = format!(
        "{bin} prime --from {seed} --into \"$1\" --link copy >/dev/null 2>&1 & pid=$!; \
         while [ ! -d \"$1/.pexinit-prime-tmp\" ] && kill -0 $pid 2>/dev/null; do :; done; \
         kill -9 $pid 2>/dev/null && echo killed; wait $pid || true; \
         ls -A \"$1\" | sed 's/^/after-kill: /'; \
         if [ -e \"$1/.pexinit-seed.json\" ] && [ ! -d \"$1/venvs\" ]; then echo MANIFEST-BEFORE-CONTENT; fi; \
         {bin} prime --json --from {seed} --into \"$1\" --chown 65534:65534; \
         ls -A \"$1\" | sed 's/^/after-prime: /'; \
         env -i PATH={PATH} HOME={home} PEXINIT_PEX_ROOT=\"$1\" /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups -- {bin} -v run -- {app} -t moo",
        seed = seed_dir.display(),
        home = home.display(),
        app = app.display(),
    );
    let ran = in_tmpfs(&mount, &script);
    assert!(ran.success(), "{}", ran.describe());
    assert!(
        ran.stdout.contains("killed\n"),
        "the prime ended before the kill: {}",
        ran.describe()
    );
    ran.assert_stdout_lacks("MANIFEST-BEFORE-CONTENT");
    ran.assert_stdout_lacks("after-prime: .pexinit-prime-tmp");
    ran.assert_stdout_lacks("after-prime: .pexinit-prime-journal");
    ran.assert_stdout_has("after-prime: .pexinit-prime.json");
    assert_cowsay_said(&ran, "moo");
    assert!(ran.stderr.contains(FAST_PATH_TAKEN), "{}", ran.describe());
    assert!(!ran.stderr.contains("PEXWarning"), "{}", ran.describe());
}

/// Two primes of one DIR at once (two pods, one shared volume): both succeed, exactly
/// one primes and the other finds it done; the result runs warm.
#[test]
fn two_concurrent_primes_prime_once() {
    let Seeded { sb, home, seed_dir } = seeded(&apps());
    sb.mkdir("shared");
    for round in 0..3 {
        let into = sb.join(&format!("shared/root-{round}"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                prime_cmd(&seed_dir, &into, &["--link", "copy"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let reports: Vec<serde_json::Value> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().expect("wait");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                serde_json::from_slice(&out.stdout).expect("json")
            })
            .collect();
        let primed = reports
            .iter()
            .filter(|r| r["already_primed"] == false)
            .count();
        assert_eq!(primed, 1, "round {round}: {reports:#?}");
        assert_runs_warm(&into, 123456, 0, &home, "concurrent");
    }
}

/// Bad input: one line, exit 125, nothing created or changed.
#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let Seeded { sb, seed_dir, .. } = seeded(&apps()[..1]);
    let not_seed = sb.mkdir("not-a-seed");
    sb.write("not-a-seed/file", b"x");
    let file = sb.write("a-file", b"x");
    let busy = sb.mkdir("busy");
    sb.write("busy/mine", b"precious");
    let before = fingerprint(sb.path());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (args(&not_seed, &sb.join("new"), &[]), "pexinit seed"),
        (args(&file, &sb.join("new"), &[]), "not a directory"),
        (args(&seed_dir, &file, &[]), "not a directory"),
        (args(&seed_dir, &busy, &[]), "not primed by pexinit"),
        (
            args(&seed_dir, &sb.join("new"), &["--chown", "nobody"]),
            "UID:GID",
        ),
        (
            args(&seed_dir, &sb.join("no/such/parent/dir"), &[]),
            "does not exist",
        ),
        (args(&seed_dir, &seed_dir.join("venvs/x"), &[]), "overlap"),
        (
            args(&seed_dir, &sb.join("new"), &["--link", "reflink"]),
            "--link copy",
        ),
        (args(&seed_dir, &sb.join("a b"), &[]), "whitespace"),
    ];
    for (argv, fragment) in cases {
        let ran = run(pexinit().arg("prime").args(&argv));
        assert_eq!(ran.code, Some(125), "{argv:?}: {}", ran.describe());
        assert_eq!(ran.stderr_lines().len(), 1, "{argv:?}: {}", ran.describe());
        assert!(
            ran.stderr.starts_with("pexinit: error: ") && ran.stderr.contains(fragment),
            "{argv:?}: {}",
            ran.describe()
        );
        assert_eq!(fingerprint(sb.path()), before, "{argv:?} changed something");
    }
}

/// On a filesystem that shares blocks (XFS): `--link reflink`, and `auto` (which tries
/// reflinks first), prime without copying the seed's data, so DIR costs next to no
/// space; yet, unlike a hardlink, every primed file is an inode of its own, so writing
/// to it never changes the seed. Only pex's lock and access files are plain copies.
/// Reflinks take `--chown` (hardlinks cannot); the results run warm as 123456:0 and,
/// chowned, as 65534.
#[test]
fn reflink_primes_share_blocks_and_stay_independent() {
    let sb = Sandbox::new();
    let home = home(&sb);
    // Dropped (unmounted) before the Sandbox, also when an assertion fails.
    let xfs = XfsMount::new(&sb, "xfs");
    let mnt = xfs.path();
    let seed_dir = mnt.join("seed");
    let empty = used_bytes(mnt);
    seed(&seed_dir, &apps());
    let seed_before = fingerprint(&seed_dir);
    let seed_bytes = allocated(&seed_dir);
    let mut used = used_bytes(mnt);
    // The measure sees data that is really written: the seed's own. (A `--link copy`
    // prime is no reference here: std's copy_file_range clones on XFS too.)
    assert!(
        seed_bytes > 10 << 20 && used - empty >= seed_bytes / 2,
        "seeding used {} bytes for {seed_bytes} bytes of files",
        used - empty
    );
    // pex's lock and access files, each inode once (the seed hardlinks identical files,
    // and a second link is made as a link to the first copy).
    let run_time_files = tree(&seed_dir)
        .iter()
        .filter_map(|e| e.strip_prefix("f "))
        .filter(|p| p.ends_with(".lck") || p.ends_with("/.last-access"))
        .map(|p| fs::metadata(p).expect("stat").ino())
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    assert!(run_time_files > 0, "{:#?}", tree(&seed_dir));

    for (dir, extra) in [
        ("reflink", &["--link", "reflink"][..]),
        ("auto", &["--link", "auto"][..]),
        (
            "chowned",
            &["--link", "reflink", "--chown", "65534:65534"][..],
        ),
    ] {
        let report = prime(&seed_dir, &mnt.join(dir), extra);
        assert!(num(&report, "files_reflinked") > 1000, "{dir}: {report:#}");
        assert_eq!(num(&report, "files_hardlinked"), 0, "{dir}: {report:#}");
        // Relocated (the seed was built for <mnt>/seed): some files are rewritten.
        assert!(num(&report, "files_rewritten") > 0, "{dir}: {report:#}");
        // What pex writes on a warm run is never shared, not even by a reflink.
        assert_eq!(
            num(&report, "files_copied"),
            run_time_files,
            "{dir}: {report:#}"
        );
        let now = used_bytes(mnt);
        assert!(
            (now - used) * 4 < seed_bytes,
            "{dir}: priming used {} bytes for a seed of {seed_bytes}: blocks are not shared",
            now - used
        );
        used = now;
    }
    let meta = fs::metadata(mnt.join("chowned/venvs")).expect("venvs");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));

    let primed = mnt.join("reflink");
    assert_runs_warm(&primed, 123456, 0, &home, "reflink");
    assert_runs_warm(
        &mnt.join("chowned"),
        65534,
        65534,
        &home,
        "reflink, chown 65534",
    );

    // Independence: overwrite a primed source file in place (copy on write).
    let (size, rel) = tree(&primed.join("installed_wheels"))
        .iter()
        .filter_map(|e| e.strip_prefix("f "))
        .filter(|p| p.ends_with(".py"))
        .map(|p| {
            let rel = Path::new(p).strip_prefix(&primed).expect("below DIR");
            (fs::metadata(p).expect("stat").len(), rel.to_path_buf())
        })
        .max()
        .expect("a .py file in installed_wheels");
    let (copy, original) = (primed.join(&rel), seed_dir.join(&rel));
    let original_bytes = fs::read(&original).expect("read the seed's file");
    assert_eq!(
        fs::read(&copy).expect("read the primed file"),
        original_bytes,
        "{} was rewritten: pick another file",
        rel.display()
    );
    let (a, b) = (
        fs::metadata(&copy).expect("stat"),
        fs::metadata(&original).expect("stat"),
    );
    assert_eq!(a.dev(), b.dev());
    assert_ne!(
        a.ino(),
        b.ino(),
        "{} shares the seed's inode",
        copy.display()
    );
    let overwrite = vec![b'#'; size as usize];
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .expect("open the primed file");
    file.write_all(&overwrite).expect("overwrite");
    file.sync_all().expect("fsync");
    drop(file);
    // Read the seed's file from the disk, not from its cached pages.
    let file = fs::File::open(&original).expect("open the seed's file");
    // SAFETY: posix_fadvise on a descriptor we own; it only drops clean cached pages.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
    assert_eq!(
        fs::read(&original).expect("read the seed's file"),
        original_bytes,
        "writing to {} changed the seed",
        copy.display()
    );
    assert_eq!(fs::read(&copy).expect("read"), overwrite);
    assert_eq!(
        fingerprint(&seed_dir),
        seed_before,
        "priming or running changed the seed"
    );
}

/// An XFS filesystem with reflinks in a sparse image in the sandbox, loop-mounted in
/// this process's mount namespace (the assertions run `pexinit run` from here), and
/// unmounted on drop, also when the test panics: declare it after the Sandbox.
struct XfsMount(PathBuf);

impl XfsMount {
    fn new(sb: &Sandbox, rel: &str) -> XfsMount {
        let image = sb.join(&format!("{rel}.img"));
        fs::File::create(&image)
            .and_then(|f| f.set_len(2 << 30))
            .expect("sparse image");
        let mkfs = clean_command("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "mkfs.xfs is missing; run scripts/install-test-deps (apt-get install -y xfsprogs) ({e})"
                )
            });
        assert!(
            mkfs.status.success(),
            "mkfs.xfs: {}",
            String::from_utf8_lossy(&mkfs.stderr)
        );
        let mnt = sb.mkdir(rel);
        let mount = run(clean_command("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        assert!(mount.success(), "mount -o loop: {}", mount.describe());
        XfsMount(mnt)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        // The loop device goes with the mount (`mount -o loop` sets autoclear).
        let umount = |flags: &[&str]| {
            clean_command("umount")
                .args(flags)
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !umount(&[]) && !umount(&["-l"]) {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

/// Bytes in use on the filesystem holding `dir`, once flushed (XFS settles delayed
/// allocations and frees deleted files in the background).
fn used_bytes(dir: &Path) -> u64 {
    let file = fs::File::open(dir).expect("open");
    // SAFETY: syncfs on a descriptor we own.
    assert_eq!(unsafe { libc::syncfs(file.as_raw_fd()) }, 0, "syncfs");
    let st = nix::sys::statvfs::fstatvfs(&file).expect("statvfs");
    (st.blocks() - st.blocks_free()) * st.fragment_size()
}

/// Bytes allocated to the regular files below `root`, each inode once.
fn allocated(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    tree(root)
        .iter()
        .filter_map(|e| e.strip_prefix("f "))
        .map(|p| fs::symlink_metadata(p).expect("lstat"))
        .filter(|m| seen.insert(m.ino()))
        .map(|m| m.blocks() * 512)
        .sum()
}

fn args(from: &Path, into: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--from".to_owned(),
        from.display().to_string(),
        "--into".to_owned(),
        into.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}
