//! Everything a prime decides before it takes the lock: read-only checks of the seed,
//! DIR, the link mode and relocation.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::paths::resolve_physical;
use crate::pex::manifest::{self, MANIFEST_NAME, Manifest};
use crate::pex::materialize::relocate::Relocation;
use crate::pex::materialize::tree::LinkMode;

use super::durability::{Durability, current_boot};
use super::marker::Marker;
use super::{FORMAT, Request, bad, failed};

/// Everything decided before the lock is taken: read-only checks.
pub(super) struct Plan {
    pub(super) seed: PathBuf,
    pub(super) into: PathBuf,
    pub(super) parent: PathBuf,
    pub(super) name: OsString,
    pub(super) manifest: Manifest,
    pub(super) marker: Marker,
    pub(super) relocation: Option<Relocation>,
    pub(super) mount_point: bool,
    /// The current boot, when the kernel tells it.
    pub(super) boot: Option<String>,
    pub(super) durability: Durability,
}

pub(super) fn plan(req: &Request) -> Result<Plan> {
    let seed = absolute(&req.from)?;
    let seed =
        resolve_physical(&seed).map_err(|e| bad(format!("--from {}: {e}", seed.display())))?;
    if !seed.exists || !seed.physical.is_dir() {
        return Err(bad(format!(
            "--from {} is not a directory; name a seed made by `pexinit seed`",
            seed.physical.display()
        )));
    }
    let seed = seed.physical;
    let manifest_path = seed.join(MANIFEST_NAME);
    let (manifest, manifest_bytes) =
        manifest::read_with_bytes(&seed).map_err(|e| bad(format!("--from: {e}")))?;

    let into = absolute(&req.into)?;
    let resolved =
        resolve_physical(&into).map_err(|e| bad(format!("--into {}: {e}", into.display())))?;
    let into = resolved.physical;
    let (Some(parent), Some(name)) = (into.parent(), into.file_name()) else {
        return Err(bad("--into /: name a directory below the root"));
    };
    if resolved.exists {
        let meta = fs::symlink_metadata(&into).map_err(failed(into.display()))?;
        if !meta.is_dir() {
            return Err(bad(format!(
                "--into {} is not a directory; name a new or empty directory",
                into.display()
            )));
        }
    } else if !parent.is_dir() {
        return Err(bad(format!(
            "--into {}: {} does not exist; create it first",
            into.display(),
            parent.display()
        )));
    }
    if into.starts_with(&seed) || seed.starts_with(&into) {
        return Err(bad(format!(
            "--into {} and --from {} overlap; prime into a directory outside the seed",
            into.display(),
            seed.display()
        )));
    }
    // What the seed's content names, never what the manifest merely says: a relocation
    // from another path would rewrite the wrong references.
    let built_for = manifest.built_for(&seed).map_err(|e| {
        bad(format!(
            "--from: seed manifest {}: {e}; rebuild the seed with `pexinit seed`",
            manifest_path.display()
        ))
    })?;
    let relocation = match built_for {
        Some(from) if from != into => Some(Relocation::new(from, &into).map_err(|e| {
            bad(format!(
                "the seed was built for {}, and --into {} cannot take it: {e}",
                from.display(),
                into.display()
            ))
        })?),
        _ => None,
    };
    let mount_point = resolved.exists && is_mount_point(&into, parent);
    if req.mode == LinkMode::Hardlink {
        let seed_dev = fs::metadata(&seed).map_err(failed(seed.display()))?.dev();
        // What DIR's tree lands on: the mount itself, else the filesystem of the parent.
        let at = if mount_point { into.as_path() } else { parent };
        let dev = fs::metadata(at).map_err(failed(at.display()))?.dev();
        if seed_dev != dev {
            return Err(bad(format!(
                "--link hardlink: {} and {} are on different filesystems; use --link copy",
                seed.display(),
                into.display()
            )));
        }
    }
    if req.mode == LinkMode::Reflink {
        let at = if mount_point { into.as_path() } else { parent };
        if let Err(e) = probe_reflink(&manifest_path, at) {
            return Err(bad(format!(
                "--link reflink: cannot reflink from {} into {} ({e}); use --link copy (or --link auto)",
                seed.display(),
                into.display()
            )));
        }
    }
    let boot = current_boot();
    let durability = Durability::for_dir(
        if mount_point { into.as_path() } else { parent },
        boot.as_deref(),
    );
    Ok(Plan {
        marker: Marker {
            format: FORMAT,
            seed: seed.clone(),
            seed_manifest_sha256: manifest::sha256_bytes(&manifest_bytes),
            pex_root: into.clone(),
            owner: req.owner,
            relocated_from: relocation.as_ref().map(|r| r.from().to_path_buf()),
            flushed: false,
            boot_id: None,
        },
        boot,
        durability,
        seed,
        parent: parent.to_path_buf(),
        name: name.to_os_string(),
        into,
        manifest,
        relocation,
        mount_point,
    })
}

/// Clones `file` into an unnamed file in `dir` (O_TMPFILE: nothing ever appears there).
/// A filesystem without unnamed files is not judged here; the copy finds out.
pub(super) fn probe_reflink(file: &Path, dir: &Path) -> io::Result<()> {
    let from = File::open(file)?;
    let to = match fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(to) => to,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    if unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `path` from the working directory; `..` is left for the physical resolution.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(failed("the working directory"))
}

/// A mount point (an emptyDir, a volume, a bind mount): another mount than its parent's.
pub(super) fn is_mount_point(dir: &Path, parent: &Path) -> bool {
    match (mount_id(dir), mount_id(parent)) {
        (Some(a), Some(b)) => a != b,
        _ => {
            let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
            dev(dir) != dev(parent)
        }
    }
}

pub(super) fn mount_id(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data, for which all zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes into the struct we own; the path is NUL-terminated.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    fn request(from: &Path, into: &Path, mode: LinkMode) -> Request {
        Request {
            from: from.to_path_buf(),
            into: into.to_path_buf(),
            owner: None,
            mode,
        }
    }

    fn refusal(req: &Request) -> String {
        let Err(e) = plan(req) else {
            panic!("planned {req:?}")
        };
        assert_eq!(e.exit_code(), exit::PEXINIT_FAILED, "{e}");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let into = base.join("volume/pex");
        let text = refusal(&request(&base.join("missing"), &into, LinkMode::Auto));
        assert!(text.contains("is not a directory"), "{text}");
        fs::write(base.join("file"), "").unwrap();
        let text = refusal(&request(&base.join("file"), &into, LinkMode::Auto));
        assert!(
            text.contains("name a seed made by `pexinit seed`"),
            "{text}"
        );
        fs::create_dir(base.join("not-a-seed")).unwrap();
        let text = refusal(&request(&base.join("not-a-seed"), &into, LinkMode::Copy));
        assert!(text.starts_with("--from: "), "{text}");
        let names = |dir: &Path| fs::read_dir(dir).unwrap().count();
        assert_eq!(names(&base), 2, "nothing written beside the inputs");
    }

    #[test]
    fn mount_ids_tell_a_mount_point_from_a_plain_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        fs::create_dir(&dir).unwrap();
        assert!(!is_mount_point(&dir, t.path()));
        assert!(is_mount_point(Path::new("/proc"), Path::new("/")));
    }
}
