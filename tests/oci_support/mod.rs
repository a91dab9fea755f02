//! OCI test support: a local base image (made with umoci from the host's python3.11,
//! there is no registry here), tree snapshots with hashes, and the OCI tools.

#![allow(dead_code)]

pub mod recipe;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pexinit::oci::compress::hex;
use sha2::{Digest, Sha256};

use crate::support::{PATH, PYTHON, Ran, pexinit_bin, run};

pub const OCI_HINT: &str =
    "run scripts/install-test-deps (apt-get install -y umoci skopeo podman runc catatonit)";

/// A tool the tests need, by absolute path; a missing one fails the test by name.
pub fn tool(name: &str) -> Command {
    let path = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed; {OCI_HINT}"));
    let mut cmd = Command::new(path);
    cmd.env_clear().env("PATH", PATH);
    cmd
}

/// Runs a tool and fails the test, with its output, unless it succeeds.
pub fn must(what: &str, cmd: &mut Command) -> Ran {
    let ran = run(cmd);
    assert!(ran.success(), "{what} failed:\n{}", ran.describe());
    ran
}

/// podman with the project's containers.conf (cgroupfs, runc, file events).
/// Held while a test has an image in podman's storage: two images sharing a base layer
/// must not be added and removed at the same time (removing one image drops a layer the
/// other's `skopeo copy` is about to reference: "layer not known"). A flock, so other
/// test binaries using podman take turns too.
pub struct StorageLock(std::fs::File);

pub fn podman_storage_lock() -> StorageLock {
    use std::os::fd::AsRawFd;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(".podman-storage.lock");
    let file = fs::File::create(&path).expect("podman storage lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    StorageLock(file)
}

pub fn podman() -> Command {
    let mut cmd = tool("podman");
    cmd.env(
        "CONTAINERS_CONF",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/podman/containers.conf"),
    );
    cmd
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex(&Sha256::digest(fs::read(path).expect("read")))
    )
}

/// The shared libraries `ldd` names for `binary`.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let ran = run(tool("ldd").arg(binary));
    ran.stdout
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => line.trim().split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A merged-usr root file system holding python3.11 with its standard library, the
/// libraries it and pexinit's test build load (pexinit is linked against glibc), /tmp
/// and a passwd with root only.
fn build_rootfs(rootfs: &Path) {
    for dir in ["usr/bin", "usr/lib", "usr/lib64", "etc", "root", "app"] {
        fs::create_dir_all(rootfs.join(dir)).expect("mkdir rootfs");
    }
    fs::create_dir_all(rootfs.join("tmp")).expect("mkdir tmp");
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        symlink(target, rootfs.join(link)).expect("merged-usr link");
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    fs::copy(PYTHON, rootfs.join("usr/bin/python3.11")).expect("copy python");
    must(
        "cp -a /usr/lib/python3.11",
        tool("cp")
            .args(["-a", "/usr/lib/python3.11"])
            .arg(rootfs.join("usr/lib/")),
    );
    let mut binaries = vec![PathBuf::from(PYTHON), PathBuf::from(pexinit_bin())];
    for entry in fs::read_dir("/usr/lib/python3.11/lib-dynload")
        .expect("lib-dynload")
        .flatten()
    {
        binaries.push(entry.path());
    }
    let mut libs = BTreeSet::new();
    for binary in &binaries {
        libs.extend(libraries(binary));
    }
    for lib in libs {
        // /lib and /lib64 are links into /usr here as on the host: put the file where
        // the host's directory really is, under the name the loader asks for.
        let dir = fs::canonicalize(lib.parent().expect("lib dir")).expect("lib dir realpath");
        let dest = rootfs
            .join(dir.strip_prefix("/").expect("absolute"))
            .join(lib.file_name().expect("name"));
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir lib dir");
        fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
}

/// The base image layout (tag `base`), built once per test process with umoci: init,
/// new, unpack, add the root file system, repack. Tests copy it before changing it.
pub fn base_layout() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        remove_stale_bases();
        let work = tempfile::Builder::new()
            .prefix(&format!("pexinit-oci-base-{}-", std::process::id()))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir")
            .keep();
        let layout = work.join("layout");
        let bundle = work.join("bundle");
        let image = format!("{}:base", layout.display());
        must(
            "umoci init",
            tool("umoci").args(["init", "--layout"]).arg(&layout),
        );
        must("umoci new", tool("umoci").args(["new", "--image", &image]));
        must(
            "umoci unpack",
            tool("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle),
        );
        build_rootfs(&bundle.join("rootfs"));
        must(
            "umoci repack",
            tool("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle),
        );
        must(
            "umoci config",
            tool("umoci").args([
                "config",
                "--image",
                &image,
                "--config.env",
                "PATH=/usr/bin:/bin",
            ]),
        );
        must(
            "umoci gc",
            tool("umoci").args(["gc", "--layout"]).arg(&layout),
        );
        let _ = fs::remove_dir_all(&bundle);
        layout
    })
}

/// Base layouts outlive their test process (a static is never dropped): remove those of
/// processes that are gone.
fn remove_stale_bases() {
    let Ok(entries) = fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pexinit-oci-base-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A private copy of the base layout at `dest`.
pub fn copy_base(dest: &Path) -> PathBuf {
    must(
        "cp -a base layout",
        tool("cp").arg("-a").arg(base_layout()).arg(dest),
    );
    dest.to_path_buf()
}

/// A directory removed when dropped (for paths outside the sandbox, such as the
/// image path a seed must be built at).
pub struct RemoveOnDrop(pub PathBuf);

impl RemoveOnDrop {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// `/opt/pexinit-<name>-<pid>`, removed when dropped: where a test builds a seed at the
/// path its image will have it (a seed is valid only at the path it was built for).
pub fn image_dir(name: &str) -> RemoveOnDrop {
    RemoveOnDrop(PathBuf::from(format!(
        "/opt/pexinit-{name}-{}",
        std::process::id()
    )))
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
