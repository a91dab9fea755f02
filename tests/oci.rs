//! `pexinit layer` and `pexinit image append` against the real OCI tools: GNU tar and
//! gzip read the layers, umoci (the strict validator: diff_ids, sizes) unpacks every
//! image pexinit writes, skopeo inspects them, and podman + runc run a seeded PEX app
//! from them as an arbitrary uid.

mod oci_support;
mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use oci_support::*;
use serde_json::Value;
use support::*;

const SDE: &str = "1700000000";
/// The clamp `pexinit layer` uses without --mtime or SOURCE_DATE_EPOCH (pexinit seed's).
const DEFAULT_CLAMP: u64 = 315_532_800;
const FAST_PATH_TAKEN: &str = "pexinit: info: fast path: exec the seeded venv";

/// `pexinit layer ARGS --json`, asserted to succeed; returns the layers it reports.
fn layer(args: &[OsString]) -> Vec<Value> {
    let ran = run(pexinit().arg("layer").arg("--json").args(args));
    assert!(ran.success(), "pexinit layer {args:?}:\n{}", ran.describe());
    ran.json()["layers"].as_array().expect("layers").clone()
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

fn src_dest(src: &Path, dest: &str) -> OsString {
    let mut arg = src.as_os_str().to_os_string();
    arg.push(":");
    arg.push(dest);
    arg
}

/// The failure every bad input must give: status 125 and one line naming the problem.
fn assert_one_line_error(ran: &Ran, needle: &str) {
    assert_eq!(ran.code, Some(125), "{}", ran.describe());
    let lines = ran.stderr_lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("pexinit: error:") && lines[0].contains(needle),
        "expected one error line naming {needle:?}:\n{}",
        ran.describe()
    );
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A tree with what layers must carry exactly: modes (sticky, private, executable),
/// relative, absolute, dangling and looping links, a link target with `./` and a
/// trailing slash, a hardlink pair, names and targets over 100 bytes, a non-UTF-8
/// name, an empty file and a file spanning several compression chunks.
fn rich_tree(sb: &Sandbox) -> PathBuf {
    let root = sb.mkdir("src/tree");
    sb.mkdir("src/tree/bin");
    sb.write("src/tree/bin/tool", b"#!/bin/sh\necho tool\n");
    chmod(&root.join("bin/tool"), 0o755);
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-again")).expect("hardlink");
    sb.write("src/tree/secret", b"private\n");
    chmod(&root.join("secret"), 0o600);
    sb.write("src/tree/group-read", b"group\n");
    chmod(&root.join("group-read"), 0o640);
    sb.mkdir("src/tree/sticky");
    chmod(&root.join("sticky"), 0o1777);
    sb.write("src/tree/empty", b"");
    let mut big = Vec::new();
    let mut x: u32 = 1;
    while big.len() < 3 * 1024 * 1024 + 17 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.extend_from_slice(format!("{} ", x % 997).as_bytes());
    }
    sb.write("src/tree/big", &big);
    symlink("bin/tool", root.join("rel")).expect("symlink");
    symlink("/etc/passwd", root.join("abs")).expect("symlink");
    symlink("nowhere", root.join("dangling")).expect("symlink");
    symlink("loop-b", root.join("loop-a")).expect("symlink");
    symlink("loop-a", root.join("loop-b")).expect("symlink");
    symlink("./bin/", root.join("dotslash")).expect("symlink");
    symlink("t".repeat(150), root.join("long-target")).expect("symlink");
    let long_dir = root.join("d".repeat(70));
    fs::create_dir(&long_dir).expect("mkdir long");
    chmod(&long_dir, 0o755);
    fs::write(long_dir.join("f".repeat(90)), b"long name\n").expect("long file");
    fs::hard_link(long_dir.join("f".repeat(90)), long_dir.join("g".repeat(90)))
        .expect("long hardlink");
    fs::write(
        root.join(OsString::from_vec(b"caf\xe9".to_vec())),
        b"latin-1 name\n",
    )
    .expect("non-utf8");
    root
}

/// The headers of a gzip layer as the tar crate reads them (long names resolved).
fn headers(layer: &Path) -> Vec<(String, tar::Header)> {
    let file = fs::File::open(layer).expect("open layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            (path, e.header().clone())
        })
        .collect()
}

#[test]
fn layer_round_trips_through_gnu_tar() {
    let sb = Sandbox::new();
    let tree = rich_tree(&sb);
    let out = sb.join("tree.tar.gz");
    let layers = layer(&os(&[&"-o", &out, &src_dest(&tree, "/opt/pexinit/tree")]));
    let reported = &layers[0];

    // The descriptor is the file's; the diff_id is the tar's, as GNU gzip decompresses it.
    assert_eq!(reported["digest"], sha256_file(&out));
    assert_eq!(reported["size"], fs::metadata(&out).expect("stat").len());
    assert_eq!(
        reported["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let tar_file = sb.join("tree.tar");
    let gunzip = tool("gzip")
        .args(["-dc"])
        .arg(&out)
        .output()
        .expect("gzip -dc");
    assert!(gunzip.status.success(), "gzip -dc rejected the layer");
    fs::write(&tar_file, &gunzip.stdout).expect("write tar");
    assert_eq!(reported["diff_id"], sha256_file(&tar_file));

    // GNU tar extracts exactly the source tree: names, modes, link targets, contents.
    let x = sb.mkdir("x");
    must(
        "tar -x",
        tool("tar")
            .args(["-xpf"])
            .arg(&tar_file)
            .args(["--numeric-owner", "-C"])
            .arg(&x),
    );
    let extracted = x.join("opt/pexinit/tree");
    assert_eq!(snapshot(&extracted), snapshot(&tree));
    // Hardlink pairs stay pairs.
    for (a, b) in [
        ("bin/tool", "bin/tool-again"),
        (
            &*format!("{}/{}", "d".repeat(70), "f".repeat(90)),
            &*format!("{}/{}", "d".repeat(70), "g".repeat(90)),
        ),
    ] {
        let ino = |p: &str| {
            fs::symlink_metadata(extracted.join(p))
                .expect("lstat")
                .ino()
        };
        assert_eq!(ino(a), ino(b), "{a} and {b} are no longer one file");
    }

    // Headers: parents of DEST first, sorted, owner 0:0, no names, clamped mtimes.
    let headers = headers(&out);
    let paths: Vec<&str> = headers.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(&paths[..3], ["opt/", "opt/pexinit/", "opt/pexinit/tree/"]);
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
    assert_eq!(paths, sorted, "entries are not sorted by path");
    for (path, header) in &headers {
        assert_eq!(
            (header.uid().expect("uid"), header.gid().expect("gid")),
            (0, 0),
            "{path}"
        );
        assert_eq!(header.username_bytes().unwrap_or_default(), b"", "{path}");
        assert_eq!(header.groupname_bytes().unwrap_or_default(), b"", "{path}");
        assert!(header.mtime().expect("mtime") <= DEFAULT_CLAMP, "{path}");
        // ustar headers have no atime/ctime; GNU headers (long names) keep them zero.
        if let Some(gnu) = header.as_gnu() {
            assert_eq!(
                (gnu.atime, gnu.ctime),
                ([0u8; 12], [0u8; 12]),
                "{path} has atime/ctime"
            );
        } else {
            assert!(header.as_ustar().is_some(), "{path}: neither ustar nor GNU");
        }
        assert_ne!(header.entry_type(), tar::EntryType::GNUSparse, "{path}");
    }
}

#[test]
fn layer_bytes_depend_only_on_the_tree() {
    let sb = Sandbox::new();
    let tree = rich_tree(&sb);
    let source = src_dest(&tree, "/srv/tree");
    let write = |name: &str, extra: &[&str]| -> (PathBuf, Value) {
        let out = sb.join(name);
        let mut args = os(&[&"-o", &out]);
        args.extend(extra.iter().map(OsString::from));
        args.push(source.clone());
        let reported = layer(&args).remove(0);
        (out, reported)
    };
    let (gz1, first) = write("one.tar.gz", &["--threads", "1"]);
    let (zst1, _) = write("one.tar.zst", &["--compression", "zstd", "--threads", "1"]);
    let (tar1, plain) = write("one.tar", &["--compression", "none"]);

    // Timestamps after the clamp and other owners change nothing.
    must(
        "touch",
        tool("find")
            .arg(&tree)
            .args(["-exec", "touch", "-h", "{}", "+"]),
    );
    must("chown", tool("chown").args(["-hR", "1234:1234"]).arg(&tree));
    let (gz3, again) = write("three.tar.gz", &["--threads", "3"]);
    let (zst4, _) = write("four.tar.zst", &["--compression", "zstd", "--threads", "4"]);
    assert_eq!(
        fs::read(&gz1).expect("gz1"),
        fs::read(&gz3).expect("gz3"),
        "gzip bytes changed"
    );
    assert_eq!(
        first,
        Value::Object({
            let mut m = again.as_object().expect("object").clone();
            m.insert("path".into(), first["path"].clone());
            m
        })
    );
    assert_eq!(
        fs::read(&zst1).expect("zst1"),
        fs::read(&zst4).expect("zst4"),
        "zstd bytes changed"
    );

    // All three compressions hold the same tar: one diff_id.
    let unzstd = zstd::decode_all(fs::File::open(&zst1).expect("zst")).expect("zstd decodes");
    assert_eq!(unzstd, fs::read(&tar1).expect("tar"));
    assert_eq!(plain["digest"], plain["diff_id"]);
    assert_eq!(first["diff_id"], plain["diff_id"]);

    // --mtime and --owner are honoured.
    let (custom, _) = write("custom.tar.gz", &["--mtime", "0", "--owner", "1001:0"]);
    for (path, header) in headers(&custom) {
        assert_eq!(header.mtime().expect("mtime"), 0, "{path}");
        assert_eq!(
            (header.uid().expect("uid"), header.gid().expect("gid")),
            (1001, 0),
            "{path}"
        );
    }
}

#[test]
fn bad_layer_sources_write_nothing() {
    let sb = Sandbox::new();
    let ok = sb.mkdir("ok");
    sb.write("ok/file", b"x\n");
    sb.symlink("loop", "loop");
    let fifo_dir = sb.mkdir("with-fifo");
    must("mkfifo", tool("mkfifo").arg(fifo_dir.join("pipe")));
    let suid_dir = sb.mkdir("with-suid");
    sb.write("with-suid/tool", b"#!/bin/sh\n");
    chmod(&suid_dir.join("tool"), 0o4755);
    let out = sb.join("out.tar.gz");
    let before = snapshot(sb.path());

    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (os(&[&"-o", &out, &sb.join("loop")]), "cannot resolve"),
        (os(&[&"-o", &out, &sb.join("missing")]), "cannot resolve"),
        (os(&[&"-o", &out, &fifo_dir]), "fifo"),
        (os(&[&"-o", &out, &suid_dir]), "--allow-setuid"),
        (
            os(&[&"-o", &ok.join("inside.tar.gz"), &ok]),
            "inside the source",
        ),
        (os(&[&"-o", &out, &src_dest(&ok, "/opt/../etc")]), "`..`"),
        (
            os(&[&"-o", &out, &src_dest(&ok.join("file"), "/")]),
            "cannot be stored at /",
        ),
        (
            os(&[&"-o", &out, &"--split", &sb.join("app.tgz"), &ok]),
            ".pexinit-seed.json",
        ),
    ];
    for (args, needle) in cases {
        let ran = run(pexinit().arg("layer").args(&args));
        assert_one_line_error(&ran, needle);
        assert_eq!(snapshot(sb.path()), before, "{args:?} changed the sandbox");
    }

    // Allowed, setuid is kept.
    let allowed = layer(&os(&[
        &"-o",
        &out,
        &"--allow-setuid",
        &src_dest(&suid_dir, "/x"),
    ]));
    assert_eq!(allowed.len(), 1);
    let modes: Vec<u32> = headers(&out)
        .into_iter()
        .filter(|(p, _)| p == "x/tool")
        .map(|(_, h)| h.mode().expect("mode"))
        .collect();
    assert_eq!(modes, vec![0o4755]);
}

/// `pexinit seed` of `app` at `root` (the path it will have in the image).
fn seed_at(root: &Path, app: &Path) {
    let ran = run(pexinit()
        .env("SOURCE_DATE_EPOCH", SDE)
        .args(["seed", "--pex-root"])
        .arg(root)
        .args(["--python", PYTHON])
        .arg(app));
    assert!(ran.success(), "seed:\n{}", ran.describe());
}

fn names_below(layer: &Path, prefix: &str) -> BTreeSet<String> {
    headers(layer)
        .into_iter()
        .filter_map(|(p, _)| {
            let rest = p.strip_prefix(prefix)?;
            let top = rest.split('/').next()?;
            (!top.is_empty()).then(|| top.to_string())
        })
        .collect()
}

#[test]
fn split_seed_layers_change_only_where_the_change_is() {
    let sb = Sandbox::new();
    let seed = sb.join("seed");
    seed_at(&seed, &cowsay(PEX_NEWEST, Kind::Zipapp));
    let split = |src: &Path, tag: &str| -> (Value, Value) {
        let deps = sb.join(&format!("deps-{tag}.tar.gz"));
        let app = sb.join(&format!("app-{tag}.tar.gz"));
        let mut layers = layer(&os(&[
            &"-o",
            &deps,
            &"--split",
            &app,
            &src_dest(src, "/opt/pex-root"),
        ]));
        let app_layer = layers.pop().expect("app layer");
        (layers.pop().expect("deps layer"), app_layer)
    };
    let (deps, app) = split(&seed, "a");
    let deps_names = names_below(&sb.join("deps-a.tar.gz"), "opt/pex-root/");
    let app_names = names_below(&sb.join("app-a.tar.gz"), "opt/pex-root/");
    let expected_deps: BTreeSet<String> =
        ["access.lck", "bootstraps", "installed_wheels", "isolated"]
            .map(String::from)
            .into();
    assert_eq!(deps_names, expected_deps);
    // pex's interpreter cache is keyed on the build host's kernel: never in the
    // dependency layer.
    assert!(
        app_names.contains(".pexinit-seed.json")
            && app_names.contains("unzipped_pexes")
            && app_names.contains("interpreters"),
        "{app_names:?}"
    );
    assert!(app_names.is_disjoint(&deps_names));

    // The same seed elsewhere on disk, one application file changed.
    let changed = sb.join("changed");
    must("cp -a", tool("cp").arg("-a").arg(&seed).arg(&changed));
    let main = fs::read_dir(changed.join("unzipped_pexes/4"))
        .expect("unzipped_pexes")
        .flatten()
        .map(|e| e.path().join("__main__.py"))
        .find(|p| p.is_file())
        .expect("an unzipped PEX");
    let mut text = fs::read(&main).expect("read");
    text.extend_from_slice(b"\n# changed\n");
    fs::write(&main, text).expect("write");
    let (deps2, app2) = split(&changed, "b");
    assert_eq!(
        deps["digest"], deps2["digest"],
        "the dependency layer changed"
    );
    assert_ne!(
        app["digest"], app2["digest"],
        "the application layer did not change"
    );
}

/// The image `oci:LAYOUT:TAG` copied into podman's storage, and the name of the container
/// a test runs from it; both are removed when the test ends, whatever happens, and only
/// then is the storage lock released.
struct InPodman {
    image: String,
    container: String,
    _storage: StorageLock,
}

impl InPodman {
    fn copy(layout: &Path, tag: &str, name: &str) -> InPodman {
        let in_podman = InPodman {
            image: format!("localhost/pexinit-oci-{name}-{}:{tag}", std::process::id()),
            container: format!("pexinit-oci-{name}-{}", std::process::id()),
            _storage: podman_storage_lock(),
        };
        must(
            "skopeo copy",
            tool("skopeo")
                .arg("copy")
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("containers-storage:{}", in_podman.image))
                .env(
                    "CONTAINERS_CONF",
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/podman/containers.conf"),
                ),
        );
        in_podman
    }
}

/// A container removed when the test ends, whatever happens.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.0]).output();
    }
}

impl Drop for InPodman {
    // Runs before the fields drop: the lock is released after the removal.
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.container]).output();
        let _ = podman().args(["rmi", "-f", &self.image]).output();
    }
}

fn append(layout: &Path, layers: &[&Path], extra: &[&str]) -> Ran {
    let mut cmd = pexinit();
    cmd.env("SOURCE_DATE_EPOCH", SDE)
        .args(["image", "append", "--json", "--layout"])
        .arg(layout)
        .args(["--ref", "base", "--tag", "app"]);
    for layer in layers {
        cmd.arg("--layer").arg(layer);
    }
    run(cmd.args(extra))
}

#[test]
fn seeded_image_runs_warm_in_podman_as_any_uid() {
    let sb = Sandbox::new();
    // A seed is valid only at its own path: build it where the image will have it.
    let top = image_dir("test");
    let root = top.path().join("pex-root");
    let app = cowsay(PEX_NEWEST, Kind::Venv);
    seed_at(&root, &app);
    let root_arg = src_dest(&root, &root.display().to_string());

    let make_layers = |dir: &str| -> Vec<PathBuf> {
        let dir = sb.mkdir(dir);
        let tools = dir.join("tools.tar.gz");
        let deps = dir.join("deps.tar.gz");
        let code = dir.join("app.tar.gz");
        layer(&os(&[
            &"-o",
            &tools,
            &src_dest(Path::new(pexinit_bin()), "/usr/local/bin/pexinit"),
            &src_dest(&app, "/app/cowsay.pex"),
        ]));
        layer(&os(&[&"-o", &deps, &"--split", &code, &root_arg]));
        vec![tools, deps, code]
    };
    let first = make_layers("layers-1");
    let second = make_layers("layers-2");
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            fs::read(a).expect("a"),
            fs::read(b).expect("b"),
            "{} is not reproducible",
            a.display()
        );
    }

    let entrypoint =
        r#"["/usr/local/bin/pexinit","-v","run","--python","/usr/bin/python3.11","--"]"#;
    let root_env = format!("PEXINIT_SEED={}", root.display());
    let extra = [
        "--entrypoint",
        entrypoint,
        "--cmd",
        r#"["/app/cowsay.pex","-t","moo"]"#,
        "--env",
        &root_env,
        "--label",
        "org.example.app=cowsay",
    ];
    let layout = copy_base(&sb.join("layout"));
    let layout_again = copy_base(&sb.join("layout-again"));
    let base_index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let layer_refs: Vec<&Path> = first.iter().map(PathBuf::as_path).collect();
    let appended = append(&layout, &layer_refs, &extra);
    assert!(appended.success(), "{}", appended.describe());
    let again_refs: Vec<&Path> = second.iter().map(PathBuf::as_path).collect();
    let again = append(&layout_again, &again_refs, &extra);
    assert!(again.success(), "{}", again.describe());
    assert_eq!(
        fs::read(layout.join("index.json")).expect("index"),
        fs::read(layout_again.join("index.json")).expect("index"),
        "two appends of the same layers gave different images"
    );
    let report = appended.json();
    let manifest_digest = report["manifest"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();

    // The base keeps its tag and manifest; the new image is tagged app.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2);
    assert_eq!(manifests[0], base_index["manifests"][0]);
    assert_eq!(manifests[1]["digest"], manifest_digest);

    // umoci verifies every diff_id and size while unpacking.
    let bundle = sb.join("bundle");
    must(
        "umoci unpack",
        tool("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:app", layout.display()))
            .arg(&bundle),
    );
    assert!(
        bundle
            .join("rootfs")
            .join(root.strip_prefix("/").expect("abs"))
            .join(".pexinit-seed.json")
            .is_file()
    );

    let inspect = must(
        "skopeo inspect",
        tool("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:app", layout.display())),
    );
    let inspect = inspect.json();
    let digests: Vec<Value> = first.iter().map(|l| Value::from(sha256_file(l))).collect();
    let layers = inspect["Layers"].as_array().expect("Layers");
    assert_eq!(&layers[layers.len() - 3..], &digests[..]);
    assert!(
        inspect["Env"]
            .as_array()
            .expect("Env")
            .contains(&Value::from(root_env.clone()))
    );

    // Into podman's storage and run as an arbitrary uid with gid 0 (OpenShift style).
    let in_podman = InPodman::copy(&layout, "app", "test");
    let (image, container) = (in_podman.image.as_str(), in_podman.container.as_str());
    let ran = run(podman().args(["run", "--name", container, "--user", "123456:0", image]));
    assert_cowsay_said(&ran, "moo");
    assert!(
        ran.stderr.contains(FAST_PATH_TAKEN),
        "not the seeded fast path:\n{}",
        ran.describe()
    );
    assert!(
        !ran.stderr.contains("PEXWarning") && !ran.stderr.contains("falling back"),
        "pex fell back to a temporary cache:\n{}",
        ran.describe()
    );
    // Warm: the container added nothing to the seed but pex's lock and access files.
    let diff = must("podman diff", podman().args(["diff", container]));
    let root_text = root.display().to_string();
    let added: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| l.starts_with("A ") && l[2..].starts_with(&root_text))
        .filter(|l| !(l.ends_with(".lck") || l.ends_with(".last-access")))
        .collect();
    assert!(
        added.is_empty(),
        "the run extracted into the seed:\n{}",
        diff.stdout
    );

    // Control: the same app run cold (pex itself, an empty PEX_ROOT) adds cache entries
    // that `podman diff` shows, so the check above can see an extraction.
    let cold = format!("{container}-cold");
    let _cleanup_cold = RemoveContainer(cold.clone());
    let ran = run(podman().args([
        "run",
        "--name",
        &cold,
        "--user",
        "123456:0",
        "--env",
        "PEX_ROOT=/tmp/cold-root",
        "--entrypoint",
        "/usr/bin/python3.11",
        image,
        "/app/cowsay.pex",
        "-t",
        "cold",
    ]));
    assert_cowsay_said(&ran, "cold");
    let diff = must("podman diff", podman().args(["diff", &cold]));
    assert!(
        diff.stdout
            .lines()
            .any(|l| l.starts_with("A /tmp/cold-root/")),
        "podman diff does not show a cold run's cache:\n{}",
        diff.stdout
    );
}

/// A Docker v2s2 base written by hand: config fields pexinit does not model, in an
/// order of their own.
fn docker_base(sb: &Sandbox) -> PathBuf {
    let layout = sb.mkdir("docker");
    sb.mkdir("docker/blobs/sha256");
    let config = br#"{"architecture":"amd64","config":{"Hostname":"","Env":["PATH=/usr/bin:/bin","KEEP=1"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"Labels":{"z":"1","a":"2"},"OnBuild":null},"created":"2020-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[],"x-vendor":{"k":[1,2.5,"s"]}}"#;
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = format!(
            "sha256:{}",
            pexinit::oci::compress::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
        fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes).expect("blob");
        (digest, bytes.len())
    };
    let (config_digest, config_size) = put(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{config_size},"digest":"{config_digest}"}},"layers":[]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"base"}}}}]}}"#
        ),
    )
    .expect("index");
    layout
}

fn blob(layout: &Path, digest: &Value) -> Vec<u8> {
    let digest = digest.as_str().expect("digest");
    fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob")
}

#[test]
fn append_keeps_what_it_does_not_change_and_uses_docker_types_on_docker_bases() {
    let sb = Sandbox::new();
    let layout = docker_base(&sb);
    let content = sb.mkdir("content");
    sb.write("content/hello", b"hello\n");
    let gz = sb.join("content.tar.gz");
    let zst = sb.join("content.tar.zst");
    layer(&os(&[&"-o", &gz, &src_dest(&content, "/srv")]));
    layer(&os(&[
        &"-o",
        &zst,
        &"--compression",
        &"zstd",
        &src_dest(&content, "/srv"),
    ]));

    // zstd has no Docker v2s2 media type: refused, nothing written.
    let before = snapshot(&layout);
    let ran = run(pexinit()
        .args(["image", "append", "--layout"])
        .arg(&layout)
        .arg("--layer")
        .arg(&zst));
    assert_one_line_error(&ran, "zstd");
    assert_eq!(snapshot(&layout), before);

    let ran = run(pexinit()
        .args(["image", "append", "--json", "--layout"])
        .arg(&layout)
        .arg("--layer")
        .arg(&gz)
        .args([
            "--env",
            "KEEP=2",
            "--env",
            "NEW=3",
            "--label",
            "b=3",
            "--workdir",
            "/srv",
        ]));
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    let manifest: Value =
        serde_json::from_slice(&blob(&layout, &report["manifest"]["digest"])).expect("manifest");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );

    // Key order and unmodelled fields survive; edits land in place.
    let config = String::from_utf8(blob(&layout, &manifest["config"]["digest"])).expect("utf-8");
    let expected_prefix = r#"{"architecture":"amd64","config":{"Hostname":"","Env":["PATH=/usr/bin:/bin","KEEP=2","NEW=3"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"Labels":{"z":"1","a":"2","b":"3"},"OnBuild":null,"WorkingDir":"/srv"},"created":"2020-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":["#;
    assert!(
        config.starts_with(expected_prefix),
        "config changed beyond the edits:\n{config}"
    );
    let config: Value = serde_json::from_str(&config).expect("config json");
    assert_eq!(config["x-vendor"], serde_json::json!({"k": [1, 2.5, "s"]}));
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        report["layers"][0]["diff_id"]
    );
    // No SOURCE_DATE_EPOCH: no clock time anywhere.
    assert_eq!(
        config["history"][0],
        serde_json::json!({"created_by": "pexinit layer content.tar.gz", "comment": report["layers"][0]["diff_id"]})
    );

    // Without --tag the ref moves to the new image.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    assert_eq!(index["manifests"].as_array().expect("manifests").len(), 1);
    assert_eq!(
        index["manifests"][0]["digest"],
        report["manifest"]["digest"]
    );
    // skopeo 1.9 looks refs up among OCI manifests only, so the chain is checked here:
    // the layer blob is the file, byte for byte.
    assert_eq!(
        blob(&layout, &manifest["layers"][0]["digest"]),
        fs::read(&gz).expect("layer")
    );
}

#[test]
fn bad_layouts_are_refused_and_left_unchanged() {
    let sb = Sandbox::new();
    let content = sb.mkdir("content");
    sb.write("content/hello", b"hello\n");
    let gz = sb.join("content.tar.gz");
    layer(&os(&[&"-o", &gz, &src_dest(&content, "/srv")]));
    let not_a_layer = sb.write("not-a-layer.bin", &[7u8; 4096]);

    let index_of = |layout: &Path| -> Value {
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json")
    };
    let blob_path = |layout: &Path, digest: &Value| {
        layout
            .join("blobs/sha256")
            .join(&digest.as_str().expect("digest")[7..])
    };

    type Breaker = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Breaker, Vec<&str>, &str)> = vec![
        (
            "no-layout-file",
            Box::new(|l: &Path| fs::remove_file(l.join("oci-layout")).expect("rm")),
            vec![],
            "not an OCI image layout",
        ),
        (
            "missing-config",
            Box::new(move |l: &Path| {
                let manifest: Value = serde_json::from_slice(
                    &fs::read(blob_path(l, &index_of(l)["manifests"][0]["digest"])).expect("m"),
                )
                .expect("json");
                fs::remove_file(blob_path(l, &manifest["config"]["digest"])).expect("rm config");
            }),
            vec![],
            "cannot be read",
        ),
        (
            "corrupt-manifest",
            Box::new(move |l: &Path| {
                let path = blob_path(l, &index_of(l)["manifests"][0]["digest"]);
                let mut bytes = fs::read(&path).expect("read");
                let i = bytes.iter().position(|b| *b == b'2').expect("a digit");
                bytes[i] = b'3';
                chmod(&path, 0o644);
                fs::write(&path, bytes).expect("write");
            }),
            vec![],
            "does not match its digest",
        ),
        (
            "unknown-ref",
            Box::new(|_: &Path| {}),
            vec!["--ref", "nope"],
            "no image named \"nope\"",
        ),
    ];
    for (name, break_it, extra, needle) in cases {
        let layout = copy_base(&sb.join(name));
        break_it(&layout);
        let before = snapshot(&layout);
        let ran = run(pexinit()
            .args(["image", "append", "--layout"])
            .arg(&layout)
            .arg("--layer")
            .arg(&gz)
            .args(&extra));
        assert_one_line_error(&ran, needle);
        assert_eq!(snapshot(&layout), before, "{name}: the layout changed");
    }

    // A file that is not a layer, and a layer that vanished.
    let layout = copy_base(&sb.join("bad-layers"));
    let before = snapshot(&layout);
    for (layer_file, needle) in [
        (not_a_layer, "not a layer"),
        (sb.join("gone.tar.gz"), "gone.tar.gz"),
    ] {
        let ran = run(pexinit()
            .args(["image", "append", "--layout"])
            .arg(&layout)
            .arg("--layer")
            .arg(&layer_file));
        assert_one_line_error(&ran, needle);
        assert_eq!(snapshot(&layout), before);
    }

    // The same layout, intact, accepts the layer.
    let ran = run(pexinit()
        .args(["image", "append", "--layout"])
        .arg(&layout)
        .arg("--layer")
        .arg(&gz));
    assert!(ran.success(), "{}", ran.describe());
    let mut read = String::new();
    fs::File::open(layout.join("index.json"))
        .expect("index")
        .read_to_string(&mut read)
        .expect("read");
    assert!(read.contains("\"base\""));
}

/// zstd layers (umoci 0.4 cannot unpack them; podman can): the content arrives intact.
#[test]
fn zstd_layer_runs_in_podman() {
    let sb = Sandbox::new();
    let content = sb.mkdir("content");
    sb.write("content/hello", b"hello from zstd\n");
    let zst = sb.join("content.tar.zst");
    let reported = layer(&os(&[
        &"-o",
        &zst,
        &"--compression",
        &"zstd",
        &src_dest(&content, "/srv"),
    ]));
    assert_eq!(
        reported[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let layout = copy_base(&sb.join("layout"));
    let ran = run(pexinit()
        .args(["image", "append", "--layout"])
        .arg(&layout)
        .args(["--ref", "base", "--tag", "zstd", "--layer"])
        .arg(&zst));
    assert!(ran.success(), "{}", ran.describe());
    let in_podman = InPodman::copy(&layout, "zstd", "zstd");
    let (image, container) = (in_podman.image.as_str(), in_podman.container.as_str());
    let ran = must(
        "podman run",
        podman().args([
            "run",
            "--name",
            container,
            image,
            "/usr/bin/python3.11",
            "-c",
            "print(open('/srv/hello').read(), end='')",
        ]),
    );
    assert_eq!(ran.stdout, "hello from zstd\n");
}

fn index_json(layout: &Path) -> Value {
    serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json")
}

/// `umoci unpack` (which checks every digest, size and diff_id) of `layout:tag`.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    must(
        "umoci unpack",
        tool("umoci")
            .args(["unpack", "--image", &format!("{}:{tag}", layout.display())])
            .arg(bundle),
    );
}

#[test]
fn appended_manifest_has_its_media_type_and_annotations() {
    let sb = Sandbox::new();
    let content = sb.mkdir("content");
    sb.write("content/hello", b"hello\n");
    let gz = sb.join("content.tar.gz");
    layer(&os(&[&"-o", &gz, &src_dest(&content, "/srv")]));
    let layout = copy_base(&sb.join("layout"));
    let base_manifest: Value = serde_json::from_slice(&blob(
        &layout,
        &index_json(&layout)["manifests"][0]["digest"],
    ))
    .expect("base manifest");
    assert!(
        base_manifest.get("mediaType").is_none(),
        "umoci's base already has a mediaType: this test would prove nothing"
    );

    // A pair without a key is refused, the layout untouched.
    let before = snapshot(&layout);
    let ran = append(&layout, &[&gz], &["--annotation", "=x"]);
    assert_one_line_error(&ran, "--annotation");
    assert_eq!(snapshot(&layout), before);
    // A single image of another platform than --platform's is refused too.
    let ran = append(&layout, &[&gz], &["--platform", "linux/arm64"]);
    assert_one_line_error(&ran, "not of that platform");
    assert_eq!(snapshot(&layout), before);

    let ran = append(
        &layout,
        &[&gz],
        &[
            "--platform",
            "linux/amd64",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
            "--annotation",
            "x.revision=1",
            "--annotation",
            "x.revision=2",
        ],
    );
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    let text = String::from_utf8(blob(&layout, &report["manifest"]["digest"])).expect("utf-8");
    assert!(
        text.starts_with(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":"#
        ),
        "{text}"
    );
    let manifest: Value = serde_json::from_str(&text).expect("manifest");
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.source": "https://example.com/app", "x.revision": "2"})
    );
    // skopeo reads the manifest (and its annotations) back; umoci verifies the image.
    let raw = must(
        "skopeo inspect --raw",
        tool("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:app", layout.display())),
    );
    let raw: Value = serde_json::from_str(&raw.stdout).expect("skopeo json");
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(raw["annotations"]["x.revision"], "2");
    let bundle = sb.join("bundle");
    umoci_unpack(&layout, "app", &bundle);
    assert_eq!(
        fs::read(bundle.join("rootfs/srv/hello")).expect("hello"),
        b"hello\n"
    );
}

/// Writes `bytes` as a blob of `layout`; its digest and size.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = sha256_bytes(bytes);
    fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes).expect("blob");
    (digest, bytes.len())
}

fn sha256_bytes(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        pexinit::oci::compress::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
    )
}

#[test]
fn platform_append_changes_only_that_platforms_entry() {
    let sb = Sandbox::new();
    let content = sb.mkdir("content");
    sb.write("content/hello", b"hello amd64\n");
    let gz = sb.join("content.tar.gz");
    layer(&os(&[&"-o", &gz, &src_dest(&content, "/srv")]));

    // The base (amd64) and an arm64 twin made by umoci, in one multi-platform index.
    let layout = copy_base(&sb.join("layout"));
    must(
        "umoci config --architecture arm64",
        tool("umoci").args([
            "config",
            "--image",
            &format!("{}:base", layout.display()),
            "--architecture",
            "arm64",
            "--tag",
            "arm",
        ]),
    );
    let top = index_json(&layout);
    let entry = |name: &str| -> Value {
        top["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .expect("entry")
            .clone()
    };
    let platform_entry = |name: &str, arch: &str| -> String {
        let e = entry(name);
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":{},"size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            e["digest"], e["size"]
        )
    };
    let arm_entry = platform_entry("arm", "arm64");
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{arm_entry}]}}"#,
        platform_entry("base", "amd64")
    );
    let (nested_digest, nested_size) = put_blob(&layout, nested.as_bytes());
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{nested_digest}","size":{nested_size},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#
        ),
    )
    .expect("index.json");
    let multi = |extra: &[&str]| {
        run(pexinit()
            .env("SOURCE_DATE_EPOCH", SDE)
            .args(["image", "append", "--json", "--layout"])
            .arg(&layout)
            .args(["--ref", "multi", "--layer"])
            .arg(&gz)
            .args(extra))
    };

    // Without --platform, or with one the index lacks: refused, nothing written.
    let before = snapshot(&layout);
    assert_one_line_error(&multi(&[]), "--platform");
    assert_one_line_error(&multi(&["--platform", "linux/s390x"]), "linux/s390x");
    assert_one_line_error(&multi(&["--platform", "linux"]), "OS/ARCH");
    assert_eq!(snapshot(&layout), before);

    let ran = multi(&["--platform", "linux/amd64"]);
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    let top = index_json(&layout);
    assert_eq!(top["manifests"].as_array().expect("manifests").len(), 1);
    let new_nested_text =
        String::from_utf8(blob(&layout, &top["manifests"][0]["digest"])).expect("utf-8");
    assert_ne!(top["manifests"][0]["digest"], nested_digest.as_str());
    assert_eq!(top["manifests"][0]["digest"], report["index"]["digest"]);
    assert_eq!(
        top["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    // The arm64 entry is byte for byte what it was; only the amd64 one moved.
    assert!(
        new_nested_text.ends_with(&format!(",{arm_entry}]}}")),
        "the arm64 entry changed:\n{new_nested_text}"
    );
    let new_nested: Value = serde_json::from_str(&new_nested_text).expect("nested json");
    assert_eq!(
        new_nested["manifests"][0]["digest"],
        report["manifest"]["digest"]
    );
    assert_eq!(
        new_nested["manifests"][0]["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"})
    );
    let old_nested: Value = serde_json::from_str(&nested).expect("old nested");
    let mut expected = old_nested.clone();
    expected["manifests"][0]["digest"] = report["manifest"]["digest"].clone();
    expected["manifests"][0]["size"] = report["manifest"]["size"].clone();
    assert_eq!(
        new_nested, expected,
        "the index changed beyond the amd64 entry"
    );

    // The new amd64 image is whole: umoci unpacks it (through a ref of its own).
    let mut top = top;
    let checked = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": report["manifest"]["digest"],
        "size": report["manifest"]["size"],
        "annotations": {"org.opencontainers.image.ref.name": "amd64"}
    });
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(checked);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("index.json");
    let bundle = sb.join("bundle");
    umoci_unpack(&layout, "amd64", &bundle);
    assert_eq!(
        fs::read(bundle.join("rootfs/srv/hello")).expect("hello"),
        b"hello amd64\n"
    );
    assert!(bundle.join("rootfs/usr/bin/python3.11").is_file());
}

/// The wheel directories (`installed_wheels/[<n>/]<hash>/<name>.whl`) of a seed.
fn wheel_dirs(seed: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![seed.join("installed_wheels")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().expect("type").is_dir();
            if is_dir && name.ends_with(".whl") && !name.starts_with('.') {
                found.push(path);
            } else if is_dir {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A copy of the distribution `wheel` of a seed as another distribution (`hash`,
/// `name`), with its lock beside it and `extra` bytes in a file of its own: what a
/// seed holds after a requirement is added or bumped.
fn add_distribution(wheel: &Path, hash: &str, name: &str, extra: &[u8]) {
    let versions = wheel.parent().and_then(Path::parent).expect("version dir");
    let unit = versions.join(hash);
    fs::create_dir(&unit).expect("mkdir unit");
    must(
        "cp -a wheel",
        tool("cp").arg("-a").arg(wheel).arg(unit.join(name)),
    );
    fs::write(unit.join(name).join("extra.bin"), extra).expect("extra");
    fs::write(versions.join(format!(".{hash}.atomic_directory.lck")), b"").expect("lock");
}

#[test]
fn distribution_layers_change_only_with_their_distribution() {
    let sb = Sandbox::new();
    let seed = sb.join("seed");
    seed_at(&seed, &cowsay(PEX_NEWEST, Kind::Zipapp));
    let wheels = wheel_dirs(&seed);
    let cowsay_wheel = wheels
        .iter()
        .find(|w| {
            w.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cowsay-"))
        })
        .expect("the cowsay wheel")
        .clone();
    let cowsay_name = cowsay_wheel
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    // (group, [(file name, digest)], app)
    type Layers = (Value, Vec<(String, Value)>, Value);
    let split = |src: &Path, tag: &str, extra: &[&str]| -> Layers {
        let deps = sb.join(&format!("deps-{tag}.tar.gz"));
        let app = sb.join(&format!("app-{tag}.tar.gz"));
        let dists = sb.join(&format!("dists-{tag}"));
        let mut args = os(&[&"-o", &deps, &"--split", &app, &"--distributions", &dists]);
        args.extend(extra.iter().map(OsString::from));
        args.push(src_dest(src, "/opt/pex-root"));
        let mut layers = layer(&args);
        let app_layer = layers.pop().expect("app layer");
        let group = layers.remove(0);
        let dists = layers
            .into_iter()
            .map(|l| {
                let path = PathBuf::from(l["path"].as_str().expect("path"));
                assert_eq!(path.parent(), Some(dists.as_path()));
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                (name, l["digest"].clone())
            })
            .collect();
        (group, dists, app_layer)
    };
    let plain = layer(&os(&[
        &"-o",
        &sb.join("plain-deps.tar.gz"),
        &"--split",
        &sb.join("plain-app.tar.gz"),
        &src_dest(&seed, "/opt/pex-root"),
    ]));

    // Above the threshold nothing moves: the group is the plain dependency layer.
    let (group, dists, app) = split(&seed, "high", &["--min-distribution-size", "1G"]);
    assert!(dists.is_empty(), "{dists:?}");
    assert_eq!(group["digest"], plain[0]["digest"]);
    assert_eq!(app["digest"], plain[1]["digest"]);

    // A seed with a second, larger distribution beside cowsay; each gets its layer.
    let two = sb.join("two");
    must("cp -a", tool("cp").arg("-a").arg(&seed).arg(&two));
    let two_cowsay = two.join(cowsay_wheel.strip_prefix(&seed).expect("inside"));
    let big = vec![7u8; 300 << 10];
    add_distribution(
        &two_cowsay,
        &"e".repeat(64),
        "extra-1.0-py3-none-any.whl",
        &big,
    );
    let (group, dists, app) = split(&two, "two", &["--min-distribution-size", "1K"]);
    let names: Vec<&str> = dists.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{cowsay_name}.tar.gz"),
            "extra-1.0-py3-none-any.whl.tar.gz".into()
        ]
    );
    assert_ne!(group["digest"], plain[0]["digest"]);
    assert_eq!(app["digest"], plain[1]["digest"], "the app layer changed");
    // What the group lost is exactly what the distribution layers hold.
    let wheels_of = |layer: &Path| -> BTreeSet<String> {
        headers(layer)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.contains(".whl/"))
            .collect()
    };
    let group_wheels = wheels_of(&sb.join("deps-two.tar.gz"));
    assert!(
        !group_wheels
            .iter()
            .any(|p| p.contains("cowsay-") || p.contains("extra-")),
        "{group_wheels:?}"
    );
    let extra_names = names_below(
        &sb.join("dists-two/extra-1.0-py3-none-any.whl.tar.gz"),
        "opt/pex-root/",
    );
    assert_eq!(
        extra_names,
        BTreeSet::from(["installed_wheels".to_string()])
    );

    // The same again gives the same bytes.
    let (group_again, dists_again, app_again) =
        split(&two, "two-again", &["--min-distribution-size", "1K"]);
    assert_eq!(group_again["digest"], group["digest"]);
    assert_eq!(dists_again, dists);
    assert_eq!(app_again["digest"], app["digest"]);

    // extra bumped to 1.1 (new hash, new content): only its layer changes.
    let bumped = sb.join("bumped");
    must("cp -a", tool("cp").arg("-a").arg(&two).arg(&bumped));
    let versions = bumped
        .join(two_cowsay.strip_prefix(&two).expect("inside"))
        .parent()
        .and_then(Path::parent)
        .expect("versions")
        .to_path_buf();
    fs::remove_dir_all(versions.join("e".repeat(64))).expect("rm old extra");
    fs::remove_file(versions.join(format!(".{}.atomic_directory.lck", "e".repeat(64))))
        .expect("rm old lock");
    let mut big2 = big.clone();
    big2[0] = 8;
    add_distribution(
        &bumped.join(cowsay_wheel.strip_prefix(&seed).expect("inside")),
        &"f".repeat(64),
        "extra-1.1-py3-none-any.whl",
        &big2,
    );
    let (group2, dists2, app2) = split(&bumped, "bumped", &["--min-distribution-size", "1K"]);
    assert_eq!(group2["digest"], group["digest"], "the group layer changed");
    assert_eq!(app2["digest"], app["digest"]);
    assert_eq!(dists2[0], dists[0], "cowsay's layer changed");
    assert_eq!(dists2[1].0, "extra-1.1-py3-none-any.whl.tar.gz");
    assert_ne!(dists2[1].1, dists[1].1);

    // The cap: one layer only, for the larger; cowsay joins the group.
    let (group3, dists3, _) = split(
        &two,
        "cap",
        &[
            "--min-distribution-size",
            "1K",
            "--max-distribution-layers",
            "1",
        ],
    );
    assert_eq!(dists3.len(), 1);
    assert_eq!(dists3[0], dists[1]);
    assert!(
        wheels_of(&sb.join("deps-cap.tar.gz"))
            .iter()
            .any(|p| p.contains(&cowsay_name))
    );
    assert_ne!(group3["digest"], group["digest"]);

    // A directory that holds anything is refused, nothing written.
    let ran = run(pexinit()
        .args(["layer", "-o"])
        .arg(sb.join("deps-x.tar.gz"))
        .arg("--split")
        .arg(sb.join("app-x.tar.gz"))
        .arg("--distributions")
        .arg(sb.join("dists-two"))
        .arg(src_dest(&two, "/opt/pex-root")));
    assert_one_line_error(&ran, "--distributions");
    assert!(!sb.join("deps-x.tar.gz").exists());
    let ran = run(pexinit()
        .args(["layer", "-o"])
        .arg(sb.join("deps-x.tar.gz"))
        .arg("--split")
        .arg(sb.join("app-x.tar.gz"))
        .arg("--distributions")
        .arg(two.join("dists"))
        .arg(src_dest(&two, "/opt/pex-root")));
    assert_one_line_error(&ran, "inside the source");
    assert!(!two.join("dists").exists() && !sb.join("deps-x.tar.gz").exists());
    let ran = run(pexinit()
        .args(["layer", "-o"])
        .arg(sb.join("deps-y.tar.gz"))
        .args(["--distributions"])
        .arg(sb.join("dists-y"))
        .arg(src_dest(&two, "/opt/pex-root")));
    assert_one_line_error(&ran, "--split");

    // The layers make a whole image: umoci verifies and unpacks it.
    let layout = copy_base(&sb.join("layout"));
    let mut files = vec![sb.join("deps-two.tar.gz")];
    files.extend(dists.iter().map(|(n, _)| sb.join("dists-two").join(n)));
    files.push(sb.join("app-two.tar.gz"));
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let ran = append(&layout, &refs, &[]);
    assert!(ran.success(), "{}", ran.describe());
    let bundle = sb.join("bundle");
    umoci_unpack(&layout, "app", &bundle);
    let image_root = bundle.join("rootfs/opt/pex-root");
    assert_eq!(
        wheel_dirs(&image_root).len(),
        wheel_dirs(&two).len(),
        "distributions missing from the image"
    );
    assert!(image_root.join(".pexinit-seed.json").is_file());
}
