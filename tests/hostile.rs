//! Hostile input, full disks, kills and races: every command keeps the README's promises
//! (documented exit status, one line on stderr, nothing half-written, nothing touched
//! outside the user's paths) under real faults: devices and pipes as outputs, tmpfs
//! mounts that fill up, `kill -9` at random moments, concurrent processes.

mod oci_support;
mod support;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_support::*;
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
