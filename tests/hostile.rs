//! Hostile input, full disks, kills and races: every command keeps the README's promises
//! (documented exit status, one line on stderr, nothing half-written, nothing touched
//! outside the user's paths) under real faults: devices and pipes as outputs, tmpfs
//! mounts that fill up, `kill -9` at random moments, concurrent processes.

mod oci_support;
mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_support::*;
use serde_json::Value;
use support::*;

/// The failure every bad input must give: `code` and one line naming the problem.
fn assert_one_line_error(ran: &Ran, code: i32, needle: &str) {
    assert_eq!(ran.code, Some(code), "{}", ran.describe());
    let lines = ran.stderr_lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("pexinit: error: ") && lines[0].contains(needle),
        "expected one error line naming {needle:?}:\n{}",
        ran.describe()
    );
}

/// `sh -c SCRIPT` in a new private mount namespace, with `$1`, `$2`... as given.
fn in_mount_namespace(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut cmd = tool("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(script)
        .arg("sh");
    for arg in args {
        cmd.arg(arg);
    }
    cmd
}

/// `size` bytes that do not compress, from a seeded generator (no /dev/urandom reads).
fn incompressible(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A source tree holding one file of `size` incompressible bytes.
fn big_source(sb: &Sandbox, rel: &str, size: usize) -> PathBuf {
    let dir = sb.mkdir(rel);
    fs::write(dir.join("blob"), incompressible(size, 42)).expect("write blob");
    dir
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// layer -o: devices, pipes and stdout are streamed into, never replaced

#[test]
fn layer_into_a_device_streams_into_it_and_leaves_the_node() {
    let sb = Sandbox::new();
    let src = sb.mkdir("src");
    sb.write("src/file", b"hello\n");
    let dev = sb.mkdir("dev");
    let before = snapshot(&src);
    // A private /dev-like tmpfs holding a real null device, as a container's /dev.
    let ran = run(&mut in_mount_namespace(
        "mount -t tmpfs tmpfs \"$1\" && mknod -m 666 \"$1/null\" c 1 3 \
         && \"$2\" layer -o \"$1/null\" \"$3\" && stat -c '%F %t:%T' \"$1/null\" && ls -A \"$1\"",
        &[&dev, &pexinit_bin(), &src],
    ));
    assert!(ran.success(), "{}", ran.describe());
    assert!(
        ran.stdout.contains("character special file 1:3\nnull\n"),
        "the device was replaced:\n{}",
        ran.describe()
    );
    assert_eq!(snapshot(&src), before);
}

#[test]
fn layer_to_stdout_dash_or_dev_stdout_writes_the_same_bytes_as_to_a_file() {
    let sb = Sandbox::new();
    let src = sb.mkdir("src");
    sb.write("src/file", b"hello\n");
    let file = sb.join("out.tar.gz");
    let ran = run(pexinit().args(["layer", "-o"]).arg(&file).arg(&src));
    assert!(ran.success(), "{}", ran.describe());
    let expected = fs::read(&file).expect("layer file");
    fs::remove_file(&file).expect("rm");
    let dev = sb.mkdir("dev");
    let before = snapshot(sb.path());

    // `-o -`: the layer on stdout, the descriptor on stderr.
    let out = pexinit()
        .args(["layer", "-o", "-"])
        .arg(&src)
        .current_dir(sb.path())
        .output()
        .expect("pexinit");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, expected, "-o - wrote other bytes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("-: sha256:"), "{stderr}");

    // `-o /dev/stdout` (a link to /proc/self/fd/1) is stdout too: in a private /dev, so
    // a regression cannot replace the machine's own /dev/stdout.
    let out = in_mount_namespace(
        "mount -t tmpfs tmpfs \"$1\" && ln -s /proc/self/fd/1 \"$1/stdout\" \
         && \"$2\" layer -o \"$1/stdout\" \"$3\" 2>/dev/null \
         && [ -L \"$1/stdout\" ] && [ \"$(ls -A \"$1\")\" = stdout ]",
        &[&dev, &pexinit_bin(), &src],
    )
    .output()
    .expect("unshare");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, expected, "-o /dev/stdout wrote other bytes");
    assert_eq!(snapshot(sb.path()), before);
}

#[test]
fn layer_into_a_fifo_streams_and_the_fifo_stays() {
    let sb = Sandbox::new();
    let src = sb.mkdir("src");
    sb.write("src/file", b"hello\n");
    let file = sb.join("out.tar");
    let ran = run(pexinit()
        .args(["layer", "--compression", "none", "-o"])
        .arg(&file)
        .arg(&src));
    assert!(ran.success(), "{}", ran.describe());
    let expected = fs::read(&file).expect("layer");
    let fifo = sb.join("pipe");
    must("mkfifo", tool("mkfifo").arg(&fifo));
    // The reader is a process that gives up: a fifo replaced by a file is never opened
    // for writing, and a thread would wait for it forever.
    let reader = tool("timeout")
        .arg("30")
        .arg("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat fifo");
    let ran = run(pexinit()
        .args(["layer", "--compression", "none", "-o"])
        .arg(&fifo)
        .arg(&src));
    let read = reader.wait_with_output().expect("cat");
    assert!(ran.success(), "{}", ran.describe());
    assert_eq!(read.stdout, expected, "the fifo's reader got other bytes");
    assert!(
        fs::symlink_metadata(&fifo)
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
}

// ---------------------------------------------------------------------------------------
// layer on a full disk, and killed layer runs

#[test]
fn gzip_layer_on_a_full_disk_exits_125_and_leaves_nothing() {
    let sb = Sandbox::new();
    let src = big_source(&sb, "src", 32 << 20);
    let disk = sb.mkdir("disk");
    let before = snapshot(&src);
    for compression in ["gzip", "zstd", "none"] {
        let started = Instant::now();
        let ran = run(&mut in_mount_namespace(
            "mount -t tmpfs -o size=2m tmpfs \"$1\" || exit 99
             timeout -s KILL 60 \"$2\" layer --compression \"$4\" -o \"$1/o.tar\" \"$3\"
             rc=$?; echo \"left:$(ls -A \"$1\")\"; exit $rc",
            &[&disk, &pexinit_bin(), &src, &compression],
        ));
        assert_one_line_error(&ran, 125, "No space left on device");
        assert_eq!(ran.stdout, "left:\n", "{compression}: {}", ran.describe());
        assert!(started.elapsed() < Duration::from_secs(60), "{compression}");
    }
    assert_eq!(snapshot(&src), before);
    assert!(names_in(&disk).is_empty());
}

/// The pid of a process that has exited (and was reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("/bin/true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn killed_layer_runs_leave_no_temp_file_and_old_ones_are_removed() {
    let sb = Sandbox::new();
    let src = big_source(&sb, "src", 48 << 20);
    let out_dir = sb.mkdir("out");
    let out = out_dir.join("o.tar.gz");
    let mut killed_while_writing = 0;
    for round in 0..6u64 {
        let mut child = pexinit()
            .args(["layer", "--threads", "1", "-o"])
            .arg(&out)
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pexinit");
        std::thread::sleep(Duration::from_millis(150 + 90 * round));
        if child.try_wait().expect("try_wait").is_none() {
            killed_while_writing += 1;
        }
        let _ = child.kill();
        child.wait().expect("wait");
        assert!(
            names_in(&out_dir).is_empty(),
            "round {round}: a killed run left {:?}",
            names_in(&out_dir)
        );
    }
    assert!(killed_while_writing >= 3, "the runs ended before the kill");

    // Temp files of processes that are gone (an older pexinit, a filesystem without
    // O_TMPFILE) are removed by the next write of the same file; others are kept.
    let stale = out_dir.join(format!(".o.tar.gz.tmp.{}", dead_pid()));
    let alive = out_dir.join(format!(".o.tar.gz.tmp.{}", std::process::id()));
    let unrelated = out_dir.join(format!(".other.tmp.{}", dead_pid()));
    for path in [&stale, &alive, &unrelated] {
        fs::write(path, b"partial").expect("plant temp");
    }
    let ran = run(pexinit()
        .args(["layer", "--compression", "none", "-o"])
        .arg(&out)
        .arg(sb.mkdir("small")));
    assert!(ran.success(), "{}", ran.describe());
    let mut expected = vec![
        "o.tar.gz".to_string(),
        alive.file_name().unwrap().to_string_lossy().into_owned(),
        unrelated
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ];
    expected.sort();
    assert_eq!(names_in(&out_dir), expected);
}

// ---------------------------------------------------------------------------------------
// image append: concurrent runs, bad bases, bad layers, full disks

/// An empty image `base` in a new layout at `dest` (umoci init + new): small enough for
/// a tmpfs of a few hundred KiB.
fn tiny_layout(dest: &Path) -> PathBuf {
    must(
        "umoci init",
        tool("umoci").args(["init", "--layout"]).arg(dest),
    );
    must(
        "umoci new",
        tool("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:base", dest.display())),
    );
    dest.to_path_buf()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read json")).expect("json")
}

fn blob_file(layout: &Path, digest: &Value) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(&digest.as_str().expect("digest")[7..])
}

/// Writes `value` as a blob; returns its descriptor fields (digest, size).
fn put_json_blob(layout: &Path, value: &Value) -> (String, u64) {
    let bytes = serde_json::to_vec(value).expect("json");
    let digest = sha256_hex(&bytes);
    fs::write(layout.join("blobs/sha256").join(&digest), &bytes).expect("write blob");
    (format!("sha256:{digest}"), bytes.len() as u64)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    pexinit::oci::compress::hex(&sha2::Sha256::digest(bytes))
}

/// Replaces the only image's config with `edit(config)`, as a consistent layout (new
/// config blob, new manifest blob, index pointing at it).
fn edit_base_config(layout: &Path, edit: impl FnOnce(&mut Value)) {
    let mut index = read_json(&layout.join("index.json"));
    let mut manifest = read_json(&blob_file(layout, &index["manifests"][0]["digest"]));
    let mut config = read_json(&blob_file(layout, &manifest["config"]["digest"]));
    edit(&mut config);
    let (digest, size) = put_json_blob(layout, &config);
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put_json_blob(layout, &manifest);
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write index");
}

/// `pexinit image append` of `layers` to `layout`'s image `base`, killed after 60 s (a
/// run waiting on a fifo must fail the test, not hang it).
fn append_cmd(layout: &Path, layers: &[&Path], extra: &[&str]) -> Command {
    let mut cmd = tool("timeout");
    cmd.args(["-s", "KILL", "60", pexinit_bin()])
        .args(["image", "append", "--layout"])
        .arg(layout)
        .args(["--ref", "base"]);
    for layer in layers {
        cmd.arg("--layer").arg(layer);
    }
    cmd.args(extra);
    cmd
}

fn small_layer(sb: &Sandbox, name: &str, compression: &str) -> PathBuf {
    let src = sb.mkdir(&format!("{name}-src"));
    fs::write(src.join("file"), name).expect("write");
    let out = sb.join(name);
    let ran = run(pexinit()
        .args(["layer", "--compression", compression, "-o"])
        .arg(&out)
        .arg(format!("{}:/{name}", src.display())));
    assert!(ran.success(), "{}", ran.describe());
    out
}

fn tags(layout: &Path) -> Vec<String> {
    let mut tags: Vec<String> = read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

#[test]
fn concurrent_appends_to_one_layout_keep_every_tag() {
    let sb = Sandbox::new();
    let layer = small_layer(&sb, "app.tar.gz", "gzip");
    for round in 0..4 {
        let layout = tiny_layout(&sb.join(&format!("layout-{round}")));
        let children: Vec<_> = (0..4)
            .map(|i| {
                append_cmd(&layout, &[&layer], &["--tag", &format!("t{i}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn append")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success(), "{out:?}");
        }
        assert_eq!(
            tags(&layout),
            ["base", "t0", "t1", "t2", "t3"],
            "round {round}"
        );
        must(
            "umoci unpack",
            tool("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:t3", layout.display()))
                .arg(sb.join(&format!("bundle-{round}"))),
        );
    }
}

/// A tar holding one member whose header claims `claimed` bytes, followed by `data`.
fn lying_tar(claimed: u64, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path("big").expect("path");
    header.set_mode(0o644);
    header.set_size(claimed);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn append_refuses_damaged_bases_bad_tags_and_lying_layers_leaving_the_layout_unchanged() {
    let sb = Sandbox::new();
    let good = small_layer(&sb, "good.tar.gz", "gzip");
    // The first member claims 10^12 bytes; only a few follow.
    let lying_first = sb.write("lying-first.tar", &lying_tar(1_000_000_000_000, b"x"));
    // A whole first member, then one that claims more than the stream holds.
    let mut second = fs::read(small_layer(&sb, "ok.tar", "none")).expect("read");
    second.truncate(second.len() - 1024);
    second.extend_from_slice(&lying_tar(5000, b"short"));
    let lying_second = sb.write("lying-second.tar", &second);
    let fifo = sb.join("fifo-layer");
    must("mkfifo", tool("mkfifo").arg(&fifo));

    type Breaker = Box<dyn Fn(&Path)>;
    let set = |pointer: &'static str, value: Value| -> Breaker {
        Box::new(move |l: &Path| {
            let value = value.clone();
            edit_base_config(l, move |c| *c.pointer_mut(pointer).expect(pointer) = value)
        })
    };
    let intact: Breaker = Box::new(|_: &Path| {});
    /// Name, damage, layers, extra flags, what the error names.
    type Case<'a> = (&'a str, Breaker, Vec<&'a Path>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "diff_ids",
            set("/rootfs/diff_ids", "x".into()),
            vec![&good],
            vec![],
            "rootfs.diff_ids is not",
        ),
        (
            "history",
            Box::new(|l: &Path| edit_base_config(l, |c| c["history"] = 5.into())),
            vec![&good],
            vec![],
            "history is not",
        ),
        (
            "env",
            Box::new(|l: &Path| edit_base_config(l, |c| c["config"]["Env"] = "x".into())),
            vec![&good],
            vec![],
            "config.Env is not",
        ),
        (
            "layout-version",
            Box::new(|l: &Path| {
                fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"9.9.9"}"#).expect("write")
            }),
            vec![&good],
            vec![],
            "imageLayoutVersion \"9.9.9\"",
        ),
        (
            "tag",
            Box::new(|_: &Path| {}),
            vec![&good],
            vec!["--tag", "../x"],
            "not a valid ref name",
        ),
        (
            "lying-first",
            Box::new(|_: &Path| {}),
            vec![&good, &lying_first],
            vec![],
            "cut short",
        ),
        (
            "lying-second",
            Box::new(|_: &Path| {}),
            vec![&good, &lying_second],
            vec![],
            "cut short",
        ),
        ("fifo-layer", intact, vec![&fifo], vec![], "is a fifo"),
    ];
    for (name, breaker, layers, extra, needle) in cases {
        let layout = tiny_layout(&sb.join(&format!("layout-{name}")));
        breaker(&layout);
        let before = snapshot(&layout);
        let ran = run(&mut append_cmd(&layout, &layers, &extra));
        assert_one_line_error(&ran, 125, needle);
        assert_eq!(snapshot(&layout), before, "{name} changed the layout");
    }
}

#[test]
fn append_reads_no_fifo_device_or_oversized_blob() {
    let sb = Sandbox::new();
    let good = small_layer(&sb, "good.tar.gz", "gzip");

    type Breaker = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "index-fifo",
            Box::new(|l: &Path| {
                fs::remove_file(l.join("index.json")).expect("rm");
                must("mkfifo", tool("mkfifo").arg(l.join("index.json")));
            }),
            "is a fifo",
        ),
        (
            "index-zero",
            Box::new(|l: &Path| {
                fs::remove_file(l.join("index.json")).expect("rm");
                std::os::unix::fs::symlink("/dev/zero", l.join("index.json")).expect("ln");
            }),
            "is a device",
        ),
        (
            "oci-layout-zero",
            Box::new(|l: &Path| {
                fs::remove_file(l.join("oci-layout")).expect("rm");
                std::os::unix::fs::symlink("/dev/zero", l.join("oci-layout")).expect("ln");
            }),
            "is a device",
        ),
        (
            // 300 MiB (sparse) where the descriptor says a few hundred bytes: refused
            // from its size, before a byte is read.
            "config-oversized",
            Box::new(|l: &Path| {
                let index = read_json(&l.join("index.json"));
                let manifest = read_json(&blob_file(l, &index["manifests"][0]["digest"]));
                let config = blob_file(l, &manifest["config"]["digest"]);
                fs::OpenOptions::new()
                    .write(true)
                    .open(config)
                    .expect("open")
                    .set_len(300 << 20)
                    .expect("truncate");
            }),
            "but its descriptor says",
        ),
    ];
    for (name, breaker, needle) in cases {
        let layout = tiny_layout(&sb.join(&format!("layout-{name}")));
        breaker(&layout);
        let before = snapshot(&layout);
        let ran = run(&mut append_cmd(&layout, &[&good], &[]));
        assert_one_line_error(&ran, 125, needle);
        assert_eq!(snapshot(&layout), before, "{name} changed the layout");
    }
}

#[test]
fn zstd_layer_with_a_leading_skippable_frame_is_a_zstd_layer() {
    let sb = Sandbox::new();
    let zst = small_layer(&sb, "app.tar.zst", "zstd");
    let mut bytes = vec![0x5a, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, b'm', b'e', b't', b'a'];
    bytes.extend_from_slice(&fs::read(&zst).expect("read"));
    let skippable = sb.write("skippable.tar.zst", &bytes);
    let layout = tiny_layout(&sb.join("layout"));
    let mut cmd = append_cmd(&layout, &[&skippable], &["--tag", "app", "--json"]);
    let ran = run(&mut cmd);
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    assert_eq!(
        report["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // The same diff_id as the plain zstd layer: the tar inside is the same.
    let plain = run(&mut append_cmd(
        &layout,
        &[&zst],
        &["--tag", "plain", "--json"],
    ));
    assert!(plain.success(), "{}", plain.describe());
    assert_eq!(
        report["layers"][0]["diff_id"],
        plain.json()["layers"][0]["diff_id"]
    );
}

#[test]
fn append_on_a_full_disk_removes_the_blobs_it_wrote() {
    let sb = Sandbox::new();
    let small = small_layer(&sb, "small.tar.gz", "gzip");
    let big_src = big_source(&sb, "big-src", 4 << 20);
    let big = sb.join("big.tar.gz");
    let ran = run(pexinit().args(["layer", "-o"]).arg(&big).arg(&big_src));
    assert!(ran.success(), "{}", ran.describe());
    let template = tiny_layout(&sb.join("template"));
    let disk = sb.mkdir("disk");
    // The listing of the layout (names, sizes, sha256) before and after the append,
    // taken inside the namespace that sees the tmpfs.
    let ran = run(&mut in_mount_namespace(
        "mount -t tmpfs -o size=1m tmpfs \"$1\" && cp -a \"$2\" \"$1/layout\" || exit 99
         list() { (cd \"$1/layout\" && find . -type f -exec sha256sum {} + | sort); }
         before=$(list \"$1\")
         \"$3\" image append --layout \"$1/layout\" --ref base --tag app --layer \"$4\" --layer \"$5\"
         rc=$?
         [ \"$before\" = \"$(list \"$1\")\" ] && echo unchanged
         exit $rc",
        &[&disk, &template, &pexinit_bin(), &small, &big],
    ));
    assert_one_line_error(&ran, 125, "No space left on device");
    assert_eq!(ran.stdout, "unchanged\n", "{}", ran.describe());
}

// ---------------------------------------------------------------------------------------
// completions on a full or closed stdout; out-of-range ids

#[test]
fn completions_on_a_full_disk_exit_125_and_on_a_closed_pipe_exit_0_silently() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let ran = run(pexinit().args(["completions", shell]).stdout(full));
        assert_one_line_error(&ran, 125, "No space left on device");

        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let ran = run(pexinit().args(["completions", shell]).stdout(writer));
        assert_eq!(ran.code, Some(0), "{shell}: {}", ran.describe());
        assert_eq!(ran.stderr, "", "{shell}");
    }
}

#[test]
fn ids_out_of_uid_t_range_are_refused() {
    let sb = Sandbox::new();
    let src = sb.mkdir("src");
    sb.write("src/file", b"x");
    let seed = sb.mkdir("seed");
    let before = snapshot(sb.path());
    let out = sb.join("out.tar.gz");
    for owner in [
        "4294967296",
        "1:99999999999",
        "4294967295",
        "0:4294967295",
        "+1",
    ] {
        let ran = run(pexinit()
            .args(["layer", "--owner", owner, "-o"])
            .arg(&out)
            .arg(&src));
        assert_one_line_error(&ran, 125, &format!("--owner {owner}: "));
    }
    for chown in ["4294967295:4294967295", "4294967296:0", "0:99999999999"] {
        let ran = run(pexinit()
            .args(["prime", "--chown", chown, "--from"])
            .arg(&seed)
            .arg("--into")
            .arg(sb.join("primed")));
        assert_one_line_error(&ran, 125, &format!("--chown {chown}: "));
    }
    let ran = run(pexinit()
        .args(["seed", "--runtime-user", "4294967295", "--pex-root"])
        .arg(sb.join("root"))
        .arg(sb.join("app.pex")));
    assert_one_line_error(&ran, 125, "--runtime-user 4294967295: ");
    assert_eq!(snapshot(sb.path()), before);
    // The largest id is still accepted, and stored as GNU tar reads it.
    let ran = run(pexinit()
        .args([
            "layer",
            "--compression",
            "none",
            "--owner",
            "4294967294:7",
            "-o",
        ])
        .arg(&out)
        .arg(format!("{}:/x", src.display())));
    assert!(ran.success(), "{}", ran.describe());
    let listing = must(
        "tar",
        tool("tar").args(["--numeric-owner", "-tvf"]).arg(&out),
    );
    assert!(
        listing.stdout.contains("4294967294/7"),
        "{}",
        listing.describe()
    );
}

// ---------------------------------------------------------------------------------------
// config files: bounded, regular, and parsed in linear time

/// `pexinit env --config CONFIG` with HOME, TMPDIR and cwd in the sandbox, killed after
/// 60 s (a read of a fifo must fail the test, not hang it).
fn env_with_config(sb: &Sandbox, config: &Path) -> Command {
    let home = sb.mkdir("home");
    let mut cmd = tool("timeout");
    cmd.args(["-s", "KILL", "60", pexinit_bin(), "env", "--config"])
        .arg(config)
        .env("HOME", home)
        .env("TMPDIR", sb.mkdir("tmp"))
        .env("PEX_ROOT", sb.mkdir("home/pex-root"))
        .current_dir(sb.path());
    cmd
}

#[test]
fn bad_config_files_exit_125_fast_with_one_line_naming_the_problem() {
    let sb = Sandbox::new();
    let fifo = sb.join("fifo.yaml");
    must("mkfifo", tool("mkfifo").arg(&fifo));
    let zero = sb.symlink("/dev/zero", "zero.yaml");
    let binary = sb.write("binary.yaml", &[0xff, 0xfe, 0, 1, 2]);
    let duplicate = sb.write(
        "dup.yaml",
        b"python: /usr/bin/python3.11\nlog: warn\npython: /x\n",
    );
    let deep = sb.write(
        "deep.yaml",
        format!(
            "log: warn\nvenv: {}{}\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        )
        .as_bytes(),
    );
    let mut aliases = b"env:\n  A: &big xxxxxxxx\nvenv:\n".to_vec();
    for _ in 0..2000 {
        aliases.extend_from_slice(b"  - *big\n");
    }
    let aliases = sb.write("aliases.yaml", &aliases);
    let large = sb.write("large.yaml", &[b'#'; 70_000]);
    env_with_config(&sb, &large);
    let cases: [(&Path, &str); 7] = [
        (&fifo, "is a fifo, not a regular file"),
        (&zero, "is a device, not a regular file"),
        (&binary, "not UTF-8 text"),
        (&duplicate, "duplicate field `python` at line 3"),
        (&deep, "line 2: [ ] or { } nested more than 32 deep"),
        (&aliases, "more than 64 aliases"),
        (&large, "over the limit of 65536 bytes"),
    ];
    let before = snapshot(sb.path());
    for (config, needle) in cases {
        let started = Instant::now();
        let ran = run(&mut env_with_config(&sb, config));
        assert_one_line_error(&ran, 125, needle);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}: {:?}",
            config.display(),
            started.elapsed()
        );
        assert_eq!(snapshot(sb.path()), before, "{}", config.display());
    }
    // /dev/null stays an empty config.
    let ran = run(&mut env_with_config(&sb, Path::new("/dev/null")));
    assert!(ran.success(), "{}", ran.describe());
}

// ---------------------------------------------------------------------------------------
// PROGRAM that is no program; errors that stay one line

#[test]
fn empty_fifo_and_device_programs_fail_at_once_with_their_status() {
    let sb = Sandbox::new();
    let fifo = sb.join("fifo");
    must("mkfifo", tool("mkfifo").arg(&fifo));
    let home = sb.mkdir("home");
    let before = snapshot(sb.path());
    let cases: [(&str, &[&str], i32, &str); 5] = [
        // (command, arguments, status, the error)
        ("run", &["--", ""], 127, "PROGRAM is an empty string"),
        (
            "env",
            &["--", "./fifo"],
            126,
            "./fifo is a fifo, not a program",
        ),
        (
            "run",
            &["--", "./fifo"],
            126,
            "./fifo is a fifo, not a program",
        ),
        (
            "doctor",
            &["./fifo"],
            126,
            "./fifo is a fifo, not a program",
        ),
        (
            "env",
            &["--", "/dev/null"],
            126,
            "/dev/null is a device, not a program",
        ),
    ];
    for (command, args, code, needle) in cases {
        let started = Instant::now();
        let ran = run(tool("timeout")
            .args(["-s", "KILL", "30", pexinit_bin(), command])
            .args(args)
            .env("HOME", &home)
            .env("PEX_ROOT", &home)
            .current_dir(sb.path()));
        if command == "doctor" {
            // doctor reports the problem and exits 1 (unhealthy).
            assert_eq!(ran.code, Some(1), "{}", ran.describe());
            ran.assert_stdout_has(&format!("problem: {needle}"));
        } else {
            assert_one_line_error(&ran, code, needle);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{command} {args:?}"
        );
        assert_eq!(snapshot(sb.path()), before, "{command} {args:?}");
    }
}

#[test]
fn a_newline_in_a_path_stays_inside_the_one_error_line() {
    let sb = Sandbox::new();
    let before = snapshot(sb.path());
    let ran = run(pexinit()
        .args(["prime", "--from"])
        .arg(sb.join("no\nseed"))
        .arg("--into")
        .arg(sb.join("p\nr")));
    assert_one_line_error(&ran, 125, "no\\nseed");
    let ran = run(pexinit()
        .args(["layer", "-o"])
        .arg(sb.join("out.tar"))
        .arg(sb.join("missing\nsource")));
    assert_one_line_error(&ran, 125, "missing\\nsource");
    assert_eq!(snapshot(sb.path()), before);
}

// ---------------------------------------------------------------------------------------
// the suite from a checkout only its owner can enter

#[test]
fn programs_and_files_run_as_another_uid_are_reachable_from_a_private_checkout() {
    // A checkout in a directory only root may enter, as /root/pexinit is.
    let private = tempfile::Builder::new()
        .prefix("pexinit-private-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    let bin = private.path().join("target/debug/pexinit");
    fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    fs::copy(pexinit_bin(), &bin).expect("copy pexinit");
    let script = private.path().join("target/tool.sh");
    fs::write(&script, "#!/bin/sh\necho tool\n").expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = Sandbox::new();

    let mut cmd = clean_command(&bin);
    cmd.args(["run", "--"])
        .arg(&script)
        .env("HOME", home.path());
    let ran = run(&mut as_user(65534, 65534, &cmd));
    assert!(ran.success(), "{}", ran.describe());
    assert_eq!(ran.stdout, "tool\n");
    // The copies are outside the private directory, and readable by others.
    let copy = reachable(&bin);
    assert!(!copy.starts_with(private.path()), "{}", copy.display());
    assert_eq!(fs::read(&copy).expect("copy"), fs::read(&bin).expect("bin"));
    assert_eq!(
        reachable(home.path()),
        home.path(),
        "a reachable path is kept"
    );
}

// ---------------------------------------------------------------------------------------
// paths that are not UTF-8

/// `/tmp/...` sandbox path plus a name whose last byte is 0xff.
fn non_utf8(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = dir.as_os_str().as_encoded_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0xff);
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

fn hex_of(path: &Path) -> String {
    pexinit::oci::compress::hex(path.as_os_str().as_encoded_bytes())
}

#[test]
fn non_utf8_paths_are_exported_byte_for_byte_and_encoded_losslessly_in_json() {
    let sb = Sandbox::new();
    let home = non_utf8(sb.path(), "h");
    fs::create_dir(&home).expect("mkdir home");
    let cwd = non_utf8(sb.path(), "cwd");
    fs::create_dir(&cwd).expect("mkdir cwd");

    // run: HOME and PEX_ROOT reach the program as the same bytes.
    let out = pexinit()
        .args([
            "run",
            "--",
            "/bin/sh",
            "-c",
            "printf '%s|%s' \"$HOME\" \"$PEX_ROOT\"",
        ])
        .env("HOME", &home)
        .current_dir(&cwd)
        .output()
        .expect("pexinit run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut expected = home.as_os_str().as_encoded_bytes().to_vec();
    expected.push(b'|');
    expected.extend_from_slice(home.join(".cache/pex").as_os_str().as_encoded_bytes());
    assert_eq!(out.stdout, expected);

    // env --json and doctor --json: such values are {"bytes_hex": ...}.
    for command in ["env", "doctor"] {
        let ran = run(pexinit()
            .args([command, "--json"])
            .env("HOME", &home)
            .current_dir(&cwd));
        assert!(ran.code == Some(0), "{command}: {}", ran.describe());
        let json = ran.json();
        let decision = |name: &str| {
            json["decisions"]
                .as_array()
                .expect("decisions")
                .iter()
                .find(|d| d["variable"] == name)
                .cloned()
                .expect("decision")
        };
        assert_eq!(
            decision("HOME")["value"]["bytes_hex"],
            hex_of(&home),
            "{command}"
        );
        assert_eq!(
            decision("PWD")["value"]["bytes_hex"],
            hex_of(&cwd),
            "{command}"
        );
        assert_eq!(
            decision("PEX_ROOT")["value"]["bytes_hex"],
            hex_of(&home.join(".cache/pex")),
            "{command}"
        );
        assert_eq!(json["cwd"]["bytes_hex"], hex_of(&cwd), "{command}");
        if command == "env" {
            assert_eq!(json["env"]["HOME"]["bytes_hex"], hex_of(&home));
        }
    }

    // layer --json with a non-UTF-8 output name.
    let out_file = non_utf8(sb.path(), "layer.tar");
    let src = sb.mkdir("src");
    let ran = run(pexinit()
        .args(["layer", "--json", "-o"])
        .arg(&out_file)
        .arg(&src));
    assert!(ran.success(), "{}", ran.describe());
    assert_eq!(
        ran.json()["layers"][0]["path"]["bytes_hex"],
        hex_of(&out_file)
    );
}

// ---------------------------------------------------------------------------------------
// prime into a directory it cannot write

#[test]
fn prime_into_a_read_only_or_foreign_directory_names_the_cause() {
    let sb = Sandbox::new();
    let seed = sb.join("seed");
    let ran = run(pexinit()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["seed", "--python", PYTHON, "--pex-root"])
        .arg(&seed)
        .arg(cowsay(PEX_NEWEST, Kind::Zipapp)));
    assert!(ran.success(), "{}", ran.describe());
    let ro = sb.mkdir("ro");
    let foreign = sb.mkdir("foreign");
    let before = snapshot(sb.path());

    let ran = run(&mut in_mount_namespace(
        "mount -t tmpfs -o ro tmpfs \"$1\" && exec \"$2\" prime --from \"$3\" --into \"$1/p\"",
        &[&ro, &pexinit_bin(), &seed],
    ));
    assert_one_line_error(&ran, 125, "Read-only file system");

    let mut prime = pexinit();
    prime
        .args(["prime", "--from"])
        .arg(&seed)
        .arg("--into")
        .arg(foreign.join("p"));
    let ran = run(&mut as_user(65534, 65534, &prime));
    assert_one_line_error(&ran, 125, "Permission denied");
    assert_eq!(snapshot(sb.path()), before);
}

/// A PEX-INFO `pex_hash` names directories in PEX_ROOT: one that is not a hex digest
/// (`../../../../escaped`) is refused before pex could write outside PEX_ROOT.
#[test]
fn a_pex_hash_that_is_not_hex_is_refused_before_pex_runs() {
    let sb = Sandbox::new();
    let pex = sb.join("evil.pex");
    let rewrite = run(clean_command(PYTHON)
        .args([
            "-c",
            "import json, sys, zipfile\n\
             src, dst = sys.argv[1:]\n\
             with zipfile.ZipFile(src) as i, zipfile.ZipFile(dst, 'w') as o:\n\
             \x20   for item in i.infolist():\n\
             \x20       data = i.read(item)\n\
             \x20       if item.filename == 'PEX-INFO':\n\
             \x20           info = json.loads(data)\n\
             \x20           info['pex_hash'] = '../../../../escaped'\n\
             \x20           data = json.dumps(info).encode()\n\
             \x20       o.writestr(item, data)\n",
        ])
        .arg(cowsay(PEX_NEWEST, Kind::Zipapp))
        .arg(&pex));
    assert!(rewrite.success(), "{}", rewrite.describe());
    let home = sb.mkdir("home");
    let before = sb.tree();
    let ran = run(pexinit()
        .env("HOME", &home)
        .env("PEX_ROOT", home.join("root"))
        .args(["run", "--"])
        .arg(&pex));
    assert_eq!(ran.code, Some(126), "{}", ran.describe());
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    ran.assert_stderr_has("is not a hex digest");
    let created: Vec<String> = sb
        .tree()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(created.is_empty(), "written: {created:?}");
}

/// Every path `run` joins to a seed comes from its manifest: one that leads out of the
/// seed (a launcher's, the bytecode launcher's) makes the seed unusable (the app runs
/// without it, and says why), never an exec of what lies outside.
#[test]
fn a_seed_manifest_path_leading_out_of_the_seed_is_not_used() {
    let pex = cowsay(PEX_NEWEST, Kind::Zipapp);
    for pointer in ["/entries/0/launcher/file", "/bytecode_launcher"] {
        let sb = Sandbox::new();
        let seed = sb.join("seed");
        let seeded = run(pexinit()
            .args(["seed", "--python", PYTHON, "--pex-root"])
            .arg(&seed)
            .arg(&pex));
        assert!(seeded.success(), "{}", seeded.describe());
        let manifest_path = seed.join(".pexinit-seed.json");
        let mut manifest: Value =
            serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("json");
        let field = manifest
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the manifest has no {pointer}"));
        *field = Value::from("../outside.py");
        fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
        fs::write(sb.join("outside.py"), "print('escaped')\n").expect("write");
        let ran = run(pexinit()
            .env("HOME", sb.mkdir("home"))
            .args(["run", "--python", PYTHON, "--seed"])
            .arg(&seed)
            .arg("--")
            .arg(&pex)
            .args(["-t", "moo"]));
        assert_cowsay_said(&ran, "moo");
        ran.assert_stdout_lacks("escaped");
        ran.assert_stderr_has("does not stay inside the seed");
    }
}

// ---------------------------------------------------------------------------------------
// seed killed, or out of space, then run again

const SEED_EPOCH: &str = "1700000000";
const FAST_PATH_TAKEN: &str = "pexinit: info: fast path: exec the seeded venv";
const LAUNCHER_TAKEN: &str = "pexinit: info: fast path: exec the seeded launcher";

/// `pexinit seed --python python3.11 --pex-root ROOT APPS...` with a fixed epoch.
fn seed_cmd(root: &Path, apps: &[&Path]) -> Command {
    let mut cmd = pexinit();
    cmd.env("SOURCE_DATE_EPOCH", SEED_EPOCH)
        .args(["seed", "--python", PYTHON, "--pex-root"])
        .arg(root)
        .args(apps)
        .stdout(Stdio::null());
    cmd
}

fn seed_ok(root: &Path, apps: &[&Path]) {
    let ran = run(&mut seed_cmd(root, apps));
    assert!(ran.success(), "seed {apps:?}: {}", ran.describe());
}

/// Modes, owners, mtimes, link targets and content hashes of every path below `root`:
/// seeds of the same inputs at the same path give equal listings.
fn fingerprint(root: &Path) -> Vec<String> {
    nodes(root).iter().map(Node::describe).collect()
}

/// The pids of processes whose environment holds `PEX_ROOT=root`: pex processes a seed
/// of `root` started.
fn pex_processes_of(root: &Path) -> Vec<u32> {
    let mut needle = b"PEX_ROOT=".to_vec();
    needle.extend_from_slice(root.as_os_str().as_encoded_bytes());
    needle.push(0);
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
        {
            found.push(pid);
        }
    }
    found
}

/// Each app runs warm from the seed: the right fast path, nothing new in the seed.
fn assert_runs_warm_from(seed: &Path, apps: &[(&Path, &str)], home: &Path, label: &str) {
    let before = content(seed);
    for (app, taken) in apps {
        let ran = run(pexinit()
            .env("HOME", home)
            .args(["-v", "run", "--python", PYTHON, "--seed"])
            .arg(seed)
            .arg("--")
            .arg(app)
            .args(["-t", "moo"]));
        assert_cowsay_said(&ran, "moo");
        assert!(ran.stderr.contains(taken), "{label}: {}", ran.describe());
    }
    assert_eq!(
        content(seed),
        before,
        "{label}: a run from the seed created files"
    );
}

/// A seed killed with `kill -9` at a random moment (pex warming, compiling, verifying,
/// writing the manifest, setting owners) is finished by the same command run again: the
/// result is the tree an uninterrupted seed gives, byte for byte, and runs warm. The pex
/// processes a killed seed started die with it, and the next seed removes the scratch
/// directory it left in TMPDIR. The same holds for a re-seed that adds a PEX to a
/// finished seed.
#[test]
fn a_seed_killed_at_a_random_moment_is_finished_by_the_same_command() {
    let venv = cowsay(PEX_NEWEST, Kind::Venv);
    let zipapp = cowsay(PEX_NEWEST, Kind::Zipapp);
    let apps = [venv.as_path(), zipapp.as_path()];
    let warm = [
        (venv.as_path(), FAST_PATH_TAKEN),
        (zipapp.as_path(), LAUNCHER_TAKEN),
    ];
    let sb = Sandbox::new();
    let home = Sandbox::new();
    let tmp = Sandbox::new();
    let root = sb.join("seed");

    // The reference: uninterrupted, at the same path; and how long a seed takes.
    let started = Instant::now();
    seed_ok(&root, &apps);
    let full = started.elapsed();
    let reference = fingerprint(&root);
    fs::remove_dir_all(&root).expect("rm seed");
    seed_ok(&root, &apps[..1]);
    let started = Instant::now();
    seed_ok(&root, &apps[1..]);
    let reseed = started.elapsed();
    let reference_reseeded = fingerprint(&root);
    fs::remove_dir_all(&root).expect("rm seed");
    let outside = snapshot(sb.path());

    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut killed_running = 0;
    for trial in 0..7 {
        // Five kills of a first seed, two of a re-seed adding the zipapp.
        let adding = trial >= 5;
        let (killed_apps, span, expected) = match adding {
            false => (&apps[..], full, &reference),
            true => {
                seed_ok(&root, &apps[..1]);
                (&apps[1..], reseed, &reference_reseeded)
            }
        };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(x % span.as_millis().max(1) as u64);
        let label = format!("trial {trial}: killed after {delay:?} of {span:?}");
        let mut child = seed_cmd(&root, killed_apps)
            .env("TMPDIR", tmp.path())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn seed");
        std::thread::sleep(delay);
        if child.try_wait().expect("try_wait").is_none() {
            killed_running += 1;
        }
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pex_processes_of(&root).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{label}: pex processes outlived the killed seed: {:?}",
                pex_processes_of(&root)
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let ran = run(seed_cmd(&root, killed_apps).env("TMPDIR", tmp.path()));
        assert!(ran.success(), "{label}: {}", ran.describe());
        assert!(ran.stderr.is_empty(), "{label}: {}", ran.describe());
        // The killed seed's scratch directory is gone too.
        assert_eq!(names_in(tmp.path()), Vec::<String>::new(), "{label}");
        let got = fingerprint(&root);
        let diff: Vec<_> = got
            .iter()
            .filter(|l| !expected.contains(l))
            .take(5)
            .collect();
        assert!(
            got == *expected,
            "{label}: the seed differs from an uninterrupted one ({} vs {} paths): {diff:#?}",
            got.len(),
            expected.len()
        );
        assert_runs_warm_from(&root, &warm, home.path(), &label);
        fs::remove_dir_all(&root).expect("rm seed");
        assert_eq!(
            snapshot(sb.path()),
            outside,
            "{label}: changed outside the seed"
        );
    }
    assert!(killed_running >= 4, "the seeds ended before the kill");
}

/// `find` and `sha256sum` listing of a tree, made the same way inside and outside a mount
/// namespace.
const LIST_TREE: &str = "cd \"$1\" && find . -printf '%p %m %U:%G %T@ %l\\n' | LC_ALL=C sort \
     && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum";

/// A seed that runs out of space (in pex's warm-up, or writing the manifest) fails with
/// the documented status and one line; once space is freed, the same command seeds the
/// same directory: the tree an uninterrupted seed gives, which runs warm.
#[test]
fn a_seed_that_ran_out_of_space_is_finished_once_space_is_freed() {
    let venv = cowsay(PEX_NEWEST, Kind::Venv);
    let zipapp = cowsay(PEX_NEWEST, Kind::Zipapp);
    let sb = Sandbox::new();
    let home = Sandbox::new();
    let disk = sb.mkdir("disk");
    let root = disk.join("seed");
    let out = sb.mkdir("out");
    seed_ok(&root, &[&venv, &zipapp]);
    let reference = run(tool("sh").args(["-c", LIST_TREE, "sh"]).arg(&root));
    assert!(reference.success(), "{}", reference.describe());
    fs::remove_dir_all(&root).expect("rm seed");
    let outside = snapshot(sb.path());

    // 4m: pex's warm-up fails; 20m: writing the manifest fails.
    for size in ["4m", "20m"] {
        let ran = run(&mut in_mount_namespace(
            &format!(
                "mount -t tmpfs -o size={size} tmpfs \"$1\" || exit 99
                 export SOURCE_DATE_EPOCH={SEED_EPOCH}
                 seed() {{ \"$2\" seed --python \"$3\" --pex-root \"$1/seed\" \"$4\" \"$5\"; }}
                 seed \"$@\" >/dev/null 2>\"$6/full.err\"; echo $? >\"$6/full.code\"
                 mount -o remount,size=256m \"$1\" || exit 98
                 seed \"$@\" >/dev/null 2>\"$6/again.err\" || exit 97
                 sh -c \"$8\" sh \"$1/seed\" || exit 96
                 for app in \"$4\" \"$5\"; do
                     HOME=\"$7\" \"$2\" -v run --python \"$3\" --seed \"$1/seed\" -- \"$app\" -t moo \
                         >>\"$6/run.out\" 2>>\"$6/run.err\" || exit 95
                 done"
            ),
            &[
                &disk,
                &pexinit_bin(),
                &PYTHON,
                &venv,
                &zipapp,
                &out,
                &home.path(),
                &LIST_TREE,
            ],
        ));
        let read = |name: &str| fs::read_to_string(out.join(name)).unwrap_or_default();
        let full = Ran {
            code: read("full.code").trim().parse().ok(),
            stdout: String::new(),
            stderr: read("full.err"),
        };
        assert_one_line_error(&full, 1, "No space left on device");
        assert!(
            ran.success(),
            "{size}: {}\nagain: {}\nrun: {}",
            ran.describe(),
            read("again.err"),
            read("run.err")
        );
        assert_eq!(read("again.err"), "", "{size}");
        let said = read("run.out");
        assert_eq!(said.matches("| moo |").count(), 2, "{size}: {said}");
        let run_err = read("run.err");
        assert!(
            run_err.contains(FAST_PATH_TAKEN) && run_err.contains(LAUNCHER_TAKEN),
            "{size}: {run_err}"
        );
        assert!(
            ran.stdout == reference.stdout,
            "{size}: the seed differs from an uninterrupted one"
        );
        for name in names_in(&out) {
            fs::remove_file(out.join(name)).expect("rm");
        }
        assert_eq!(
            snapshot(sb.path()),
            outside,
            "{size}: changed outside the seed"
        );
    }
}

// ---------------------------------------------------------------------------------------
// seed into a directory it cannot write

/// A read-only file system (a read-only tmpfs, a read-only bind mount) or a root-owned
/// 0755 directory seeded by another uid: 125 and one line naming the path, the cause and
/// the fix, before anything is written.
#[test]
fn seed_into_a_read_only_or_foreign_directory_names_the_path_and_the_fix() {
    let sb = Sandbox::new();
    let app = cowsay(PEX_NEWEST, Kind::Zipapp);
    let ro = sb.mkdir("ro");
    let bound = sb.mkdir("bound");
    let foreign = sb.mkdir("foreign");
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = snapshot(sb.path());

    let ran = run(&mut in_mount_namespace(
        "mount -t tmpfs -o ro tmpfs \"$1\" && exec \"$2\" seed --python \"$3\" --pex-root \"$1/seed\" \"$4\"",
        &[&ro, &pexinit_bin(), &PYTHON, &app],
    ));
    assert_one_line_error(
        &ran,
        125,
        &format!(
            "cannot create --pex-root {}/seed in {}: read-only file system; seed into a directory on a writable file system",
            ro.display(),
            ro.display()
        ),
    );
    let ran = run(&mut in_mount_namespace(
        "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" \
         && exec \"$2\" seed --python \"$3\" --pex-root \"$1\" \"$4\"",
        &[&bound, &pexinit_bin(), &PYTHON, &app],
    ));
    assert_one_line_error(
        &ran,
        125,
        &format!(
            "cannot write to --pex-root {}: read-only file system",
            bound.display()
        ),
    );

    for (dir, what) in [
        (
            foreign.clone(),
            format!("cannot write to --pex-root {}", foreign.display()),
        ),
        (
            foreign.join("seed"),
            format!(
                "cannot create --pex-root {}/seed in {}",
                foreign.display(),
                foreign.display()
            ),
        ),
    ] {
        let mut seed = pexinit();
        seed.args(["seed", "--python", PYTHON, "--pex-root"])
            .arg(&dir)
            .arg(&app);
        let ran = run(&mut as_user(65534, 65534, &seed));
        assert_one_line_error(
            &ran,
            125,
            &format!(
                "{what}: permission denied ({} is owned by uid 0 gid 0, mode 0755); seed into a directory you can write",
                foreign.display()
            ),
        );
    }
    assert_eq!(snapshot(sb.path()), before);
}

// ---------------------------------------------------------------------------------------
// prime trusts only the build path the seed itself names

/// Rewrites the seed manifest at `seed` with `edit` applied to `original`.
fn edit_manifest(seed: &Path, original: &[u8], edit: impl FnOnce(&mut Value)) {
    let mut manifest: Value = serde_json::from_slice(original).expect("manifest json");
    edit(&mut manifest);
    fs::write(
        seed.join(".pexinit-seed.json"),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");
}

fn prime_cmd(from: &Path, into: &Path) -> Command {
    let mut cmd = pexinit();
    cmd.args(["prime", "--json", "--from"])
        .arg(from)
        .arg("--into")
        .arg(into);
    cmd
}

/// A prime relocates from the path the seed was built for, which the seed's venvs name
/// in their `#!` lines. A manifest whose `pex_root` says another path (`/etc`, `/usr`, a
/// relative one) or whose entry path leads out of the seed through a link is refused
/// (125, one line) before anything is written. A seed without venvs names no path: its
/// `pex_root` is not used, and nothing it holds is rewritten (`/usr/bin/python3.11` in
/// pex's interpreter cache stays).
#[test]
fn prime_trusts_only_the_build_path_the_seed_itself_names() {
    let sb = Sandbox::new();
    let home = Sandbox::new();
    let venv = cowsay(PEX_NEWEST, Kind::Venv);
    let zipapp = cowsay(PEX_NEWEST, Kind::Zipapp);
    let seed = sb.join("seed");
    seed_ok(&seed, &[&venv, &zipapp]);
    let original = fs::read(seed.join(".pexinit-seed.json")).expect("manifest");
    let into = sb.mkdir("volume").join("pex-root");

    let escaping = format!("{}/../elsewhere", sb.path().display());
    for (pex_root, needle) in [
        (
            "/etc",
            "pex_root /etc is not the path the seed was built for".to_owned(),
        ),
        (
            "/usr",
            "pex_root /usr is not the path the seed was built for".to_owned(),
        ),
        (
            "relative/root",
            "pex_root relative/root is not an absolute path".to_owned(),
        ),
        (
            escaping.as_str(),
            format!("pex_root {escaping} is not an absolute path"),
        ),
    ] {
        edit_manifest(&seed, &original, |m| m["pex_root"] = Value::from(pex_root));
        let before = snapshot(sb.path());
        let ran = run(&mut prime_cmd(&seed, &into));
        assert_one_line_error(&ran, 125, &needle);
        ran.assert_stderr_has("rebuild the seed with `pexinit seed`");
        assert_eq!(snapshot(sb.path()), before, "{pex_root}");
    }

    // An entry path that leads out of the seed through a link on the way.
    edit_manifest(&seed, &original, |_| {});
    let aside = sb.join("aside");
    fs::rename(seed.join("unzipped_pexes"), &aside).expect("move");
    std::os::unix::fs::symlink(&aside, seed.join("unzipped_pexes")).expect("link");
    let before = snapshot(sb.path());
    let ran = run(&mut prime_cmd(&seed, &into));
    assert_one_line_error(
        &ran,
        125,
        "does not resolve beneath the seed (a link on the way leads out of it)",
    );
    assert_eq!(snapshot(sb.path()), before);
    fs::remove_file(seed.join("unzipped_pexes")).expect("rm link");
    fs::rename(&aside, seed.join("unzipped_pexes")).expect("move back");

    // The untouched manifest primes, relocated from the seed's own path.
    let ran = run(&mut prime_cmd(&seed, &into));
    assert!(ran.success(), "{}", ran.describe());
    assert_eq!(
        ran.json()["relocated_from"].as_str(),
        seed.to_str(),
        "{}",
        ran.describe()
    );

    // A seed without venvs: `pex_root` names nothing the seed holds, and is not used.
    let zseed = sb.join("zseed");
    seed_ok(&zseed, &[&zipapp]);
    let zoriginal = fs::read(zseed.join(".pexinit-seed.json")).expect("manifest");
    edit_manifest(&zseed, &zoriginal, |m| m["pex_root"] = Value::from("/usr"));
    let zinto = sb.join("volume/z");
    let ran = run(&mut prime_cmd(&zseed, &zinto));
    assert!(ran.success(), "{}", ran.describe());
    let report = ran.json();
    assert!(report["relocated_from"].is_null(), "{report:#}");
    assert_eq!(report["tree"]["files_rewritten"], 0, "{report:#}");
    let interp_infos: Vec<Node> = nodes(&zseed.join("interpreters"))
        .into_iter()
        .filter(|n| n.rel.ends_with("INTERP-INFO"))
        .collect();
    assert!(!interp_infos.is_empty());
    for info in interp_infos {
        let primed = fs::read(zinto.join("interpreters").join(&info.rel)).expect("primed");
        assert_eq!(
            primed,
            fs::read(zseed.join("interpreters").join(&info.rel)).expect("seeded"),
            "{} was rewritten",
            info.rel
        );
        assert!(String::from_utf8_lossy(&primed).contains("/usr/bin/python3.11"));
    }
    let before = content(&zinto);
    let ran = run(pexinit()
        .env("HOME", home.path())
        .env("PEXINIT_PEX_ROOT", &zinto)
        .args(["run", "--python", PYTHON, "--"])
        .arg(&zipapp)
        .args(["-t", "moo"]));
    assert_cowsay_said(&ran, "moo");
    assert_eq!(content(&zinto), before, "a run from the prime was not warm");
}

// ---------------------------------------------------------------------------------------
// doctor judges the cache entries of the PEX it examines

/// `dir/<version>/<name>` for the cache-format version directory that holds `name`.
fn versioned_entry(dir: &Path, name: &str) -> PathBuf {
    fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path().join(name))
        .find(|p| p.symlink_metadata().is_ok())
        .unwrap_or_else(|| panic!("no {name} in {}", dir.display()))
}

/// Replaces `path` with a link to `target`, keeping the original at `aside`.
fn replace_with_link(path: &Path, target: &str, aside: &Path) {
    fs::rename(path, aside).expect("move aside");
    std::os::unix::fs::symlink(target, path).expect("link");
}

fn put_back(path: &Path, aside: &Path) {
    fs::remove_file(path).expect("rm link");
    fs::rename(aside, path).expect("move back");
}

/// The entries of the PEX doctor examines are judged: an entry (or the directory holding
/// the venv entries) that is a link to `/` makes `run` fail, so `doctor` says unhealthy
/// (status 1) with a line naming the path and its fix; a broken entry is a problem with
/// `--repair off` (run would not heal it; with the default, run does). doctor writes
/// nothing.
#[test]
fn doctor_reports_cache_entries_of_the_pex_that_lead_out_of_pex_root() {
    let sb = Sandbox::new();
    let home = sb.mkdir("home");
    let root = sb.join("pex-root");
    let zipapp = cowsay(PEX_NEWEST, Kind::Zipapp);
    let venv = cowsay(PEX_NEWEST, Kind::Venv);
    let with = |args: &[&str], app: &Path| {
        let mut cmd = pexinit();
        cmd.env("HOME", &home)
            .env("PEX_ROOT", &root)
            .args(args)
            .arg("--")
            .arg(app);
        cmd
    };
    for app in [&zipapp, &venv] {
        let ran = run(with(&["run", "--python", PYTHON], app).args(["-t", "moo"]));
        assert_cowsay_said(&ran, "moo");
    }
    let hash = |app: &Path| {
        pexinit::pex::info::open(app)
            .expect("PEX-INFO")
            .info
            .pex_hash
            .expect("pex_hash")
    };
    let unzipped = versioned_entry(&root.join("unzipped_pexes"), &hash(&zipapp));
    let venv_hash_dir = versioned_entry(&root.join("venvs"), &hash(&venv));
    let venv_entry = fs::read_dir(&venv_hash_dir)
        .expect("venv entries")
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("a venv entry");
    let aside = sb.join("aside");
    let doctor = |app: &Path, extra: &[&str]| {
        let before = sb.tree();
        let mut args = vec!["doctor", "--python", PYTHON];
        args.extend_from_slice(extra);
        let ran = run(&mut with(&args, app));
        assert!(ran.stderr_lines().is_empty(), "{}", ran.describe());
        assert_eq!(sb.tree(), before, "doctor changed something");
        ran
    };
    let problem = |ran: &Ran| -> String {
        assert_eq!(ran.code, Some(1), "{}", ran.describe());
        assert!(ran.stdout.ends_with("unhealthy\n"), "{}", ran.describe());
        let problems: Vec<&str> = ran
            .stdout
            .lines()
            .filter(|l| l.starts_with("problem: "))
            .collect();
        assert_eq!(problems.len(), 1, "{}", ran.describe());
        problems[0].to_owned()
    };

    for (app, entry) in [(&zipapp, &unzipped), (&venv, &venv_entry)] {
        replace_with_link(entry, "/", &aside);
        let ran = run(with(&["run", "--python", PYTHON], app).args(["-t", "moo"]));
        assert!(
            !ran.success(),
            "run got through a link to /: {}",
            ran.describe()
        );
        let line = problem(&doctor(app, &[]));
        let rel = entry
            .strip_prefix(&root)
            .expect("in root")
            .display()
            .to_string();
        assert!(
            line.contains(&format!(
                "cache entry {} of this PEX has a link out of PEX_ROOT ({rel} -> /)",
                entry.display()
            )) && line.contains(&format!("remove the entry (`rm -r {}`)", entry.display())),
            "{line}"
        );
        put_back(entry, &aside);
    }

    replace_with_link(&venv_hash_dir, "/", &aside);
    let line = problem(&doctor(&venv, &[]));
    assert!(
        line.contains(&format!(
            "{} is a symlink where pex keeps a directory of this PEX's cache; remove it (`rm {}`)",
            venv_hash_dir.display(),
            venv_hash_dir.display()
        )),
        "{line}"
    );
    put_back(&venv_hash_dir, &aside);

    // A broken entry: run heals it by default, so only --repair off makes it a problem.
    replace_with_link(&unzipped, "missing", &aside);
    let ran = doctor(&zipapp, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    ran.assert_stdout_has("would quarantine");
    let line = problem(&doctor(&zipapp, &["--repair", "off"]));
    assert!(
        line.contains(&format!("run `pexinit repair {}`", root.display())),
        "{line}"
    );
    put_back(&unzipped, &aside);
    for app in [&zipapp, &venv] {
        let ran = doctor(app, &[]);
        assert_eq!(ran.code, Some(0), "{}", ran.describe());
    }
}

// ---------------------------------------------------------------------------------------
// the seed manifest: a regular file of bounded size, or not read at all

/// A fifo, a link to `/dev/zero` or an oversized file as the seed manifest is refused at
/// once: `run` runs the app without that seed (one warning line naming why), `prime`
/// refuses (125, one line) and changes nothing.
#[test]
fn a_seed_manifest_that_is_not_a_small_regular_file_is_refused_at_once() {
    let sb = Sandbox::new();
    let home = Sandbox::new();
    let zipapp = cowsay(PEX_NEWEST, Kind::Zipapp);
    let seed = sb.join("seed");
    seed_ok(&seed, &[&zipapp]);
    let manifest = seed.join(".pexinit-seed.json");
    let into = sb.mkdir("volume").join("pex-root");
    let in_time = |cmd: &Command| {
        let mut timed = clean_command("/usr/bin/timeout");
        timed.args(["-s", "KILL", "60"]).arg(cmd.get_program());
        timed.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                timed.env(k, v);
            }
        }
        timed
    };
    for (what, needle) in [
        ("fifo", "is a fifo, not a regular file"),
        ("device", "is a device, not a regular file"),
        (
            "oversized",
            "is 16777217 bytes, over the limit of 16777216 bytes",
        ),
    ] {
        fs::remove_file(&manifest).expect("rm manifest");
        match what {
            "fifo" => {
                must("mkfifo", tool("mkfifo").arg(&manifest));
            }
            "device" => std::os::unix::fs::symlink("/dev/zero", &manifest).expect("link"),
            _ => fs::write(&manifest, vec![b' '; (16 << 20) + 1]).expect("write"),
        }
        let before = snapshot(sb.path());
        let started = Instant::now();
        let mut seeded_run = pexinit();
        seeded_run
            .env("HOME", home.path())
            .args(["run", "--python", PYTHON, "--seed"])
            .arg(&seed)
            .arg("--")
            .arg(&zipapp)
            .args(["-t", "moo"]);
        let ran = run(&mut in_time(&seeded_run));
        assert_cowsay_said(&ran, "moo");
        let lines = ran.stderr_lines();
        assert!(
            lines.len() == 1
                && lines[0].starts_with("pexinit: warning: seed ")
                && lines[0].contains(needle)
                && lines[0].ends_with("running without it"),
            "{what}: {}",
            ran.describe()
        );
        let ran = run(&mut in_time(&prime_cmd(&seed, &into)));
        assert_one_line_error(&ran, 125, needle);
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        assert_eq!(snapshot(sb.path()), before, "{what}");
    }

    // Found at PEX_ROOT (no --seed): the same warning, and pex runs with that PEX_ROOT.
    fs::remove_file(&manifest).expect("rm manifest");
    must("mkfifo", tool("mkfifo").arg(&manifest));
    let mut found = pexinit();
    found
        .env("HOME", home.path())
        .env("PEX_ROOT", &seed)
        .args(["run", "--python", PYTHON, "--"])
        .arg(&zipapp)
        .args(["-t", "moo"]);
    let ran = run(&mut in_time(&found));
    assert_cowsay_said(&ran, "moo");
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    ran.assert_stderr_has("is a fifo, not a regular file");
}

// ---------------------------------------------------------------------------------------
// env's text output is bytes

/// `env` prints a HOME that is not UTF-8 as its bytes, never with U+FFFD, in its
/// `NAME=value` lines and in `--export` lines that a shell reads back to the same bytes.
#[test]
fn env_text_output_prints_non_utf8_paths_byte_for_byte() {
    let sb = Sandbox::new();
    let home = non_utf8(sb.path(), "h");
    fs::create_dir(&home).expect("mkdir home");
    let before = sb.tree();
    let bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
    let line = |name: &str, value: &[u8]| {
        let mut line = format!("{name}=").into_bytes();
        line.extend_from_slice(value);
        line.push(b'\n');
        line
    };
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    let out = pexinit()
        .arg("env")
        .env("HOME", &home)
        .current_dir(sb.path())
        .output()
        .expect("pexinit env");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert!(!has(&out.stdout, "\u{fffd}".as_bytes()), "lossy: {out:?}");
    assert!(has(&out.stdout, &line("HOME", &bytes(&home))), "{out:?}");
    assert!(
        has(
            &out.stdout,
            &line("PEX_ROOT", &bytes(&home.join(".cache/pex")))
        ),
        "{out:?}"
    );

    let out = pexinit()
        .args(["env", "--export"])
        .env("HOME", &home)
        .current_dir(sb.path())
        .output()
        .expect("pexinit env --export");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!has(&out.stdout, "\u{fffd}".as_bytes()), "lossy: {out:?}");
    let script = sb.join("exports.sh");
    fs::write(&script, &out.stdout).expect("write script");
    let shell = clean_command("/bin/sh")
        .arg("-c")
        .arg(". \"$1\" && printf '%s|%s' \"$HOME\" \"$PEX_ROOT\"")
        .arg("sh")
        .arg(&script)
        .output()
        .expect("sh");
    let mut expected = bytes(&home);
    expected.push(b'|');
    expected.extend_from_slice(&bytes(&home.join(".cache/pex")));
    assert_eq!(shell.stdout, expected, "{shell:?}");
    fs::remove_file(&script).expect("rm script");
    assert_eq!(sb.tree(), before);
}
