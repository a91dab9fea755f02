//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/`): reading
//! with verification, and writing blobs so that every file appears whole.
//!
//! Every blob read is checked against its digest and size: an edit on top of a corrupt
//! base would publish the corruption under a new, valid-looking digest.
//!
//! An open [`Layout`] holds an exclusive `flock` on the layout directory itself (no lock
//! file is added to the layout): two appends to one layout take turns, and each reads
//! `index.json` only once it holds the lock, so neither loses the other's tag.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fs::atomic::{self, Pending};
use crate::fs::bounded;
use crate::fs::digest::{hex, sha256_reader};
use crate::fs::dir::open_dir_following;

pub const INDEX: &str = "index.json";
const LAYOUT_FILE: &str = "oci-layout";

#[derive(Debug)]
pub struct Layout {
    pub dir: PathBuf,
    blobs: PathBuf,
    /// The layout directory, flocked exclusively while this value lives.
    _lock: File,
}

impl Layout {
    /// Opens `dir` as an OCI image layout: `oci-layout` names a version, and
    /// `blobs/sha256` is a real directory (a link there would send writes elsewhere).
    pub fn open(dir: &Path) -> Result<Layout> {
        let not_a_layout = |e: &dyn std::fmt::Display| {
            Error::Usage(format!(
                "{} is not an OCI image layout ({LAYOUT_FILE}: {e}); point --layout at a directory made by `umoci init` or `skopeo copy ... oci:DIR:TAG`",
                dir.display()
            ))
        };
        let lock = lock_dir(dir).map_err(|e| not_a_layout(&e))?;
        let marker = dir.join(LAYOUT_FILE);
        let text = bounded::read(&marker, bounded::OCI_LAYOUT_FILE_LIMIT, false)
            .map_err(|e| not_a_layout(&e))?;
        let version = serde_json::from_slice::<Value>(&text)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_string));
        let Some(version) = version else {
            return Err(Error::Usage(format!(
                "{}: not a valid {LAYOUT_FILE} (no imageLayoutVersion); the layout is damaged",
                marker.display()
            )));
        };
        if !supported_version(&version) {
            return Err(Error::Usage(format!(
                "{}: imageLayoutVersion {version:?} is not supported; pexinit writes layouts of version 1.x (1.0.0)",
                marker.display()
            )));
        }
        for sub in ["blobs", "blobs/sha256"] {
            let path = dir.join(sub);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Usage(format!(
                        "{} is not a directory (a link?); pexinit writes only into a real blobs directory",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(Error::Usage(format!(
                        "{}: {e}; the layout is incomplete",
                        path.display()
                    )));
                }
            }
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            blobs: dir.join("blobs/sha256"),
            _lock: lock,
        })
    }

    pub fn read_index(&self) -> Result<Value> {
        let path = self.dir.join(INDEX);
        let bytes = bounded::read(&path, bounded::OCI_INDEX_LIMIT, false).map_err(|e| {
            Error::Usage(format!(
                "{}: {e}; the layout has no image index",
                path.display()
            ))
        })?;
        let index: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{}: not JSON ({e}); the layout is damaged",
                path.display()
            ))
        })?;
        if !index.get("manifests").is_some_and(Value::is_array) {
            return Err(Error::Usage(format!(
                "{}: no \"manifests\" list; the layout is damaged",
                path.display()
            )));
        }
        Ok(index)
    }

    /// Where the blob with `digest` lives; refuses digests that are not sha256 hex (a
    /// digest is also a file name: it must not be able to name another path).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unsupported digest {digest:?} in {}; pexinit reads sha256 layouts",
                    self.dir.display()
                ))
            })?;
        Ok(self.blobs.join(hex))
    }

    /// Reads a blob and checks it against its descriptor's digest and size.
    /// The size is checked before anything is read, and a blob over
    /// [`bounded::OCI_JSON_BLOB_LIMIT`] is refused.
    pub fn read_blob(&self, what: &str, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let file = bounded::open_regular(&path, true).map_err(|e| self.missing(what, digest, e))?;
        let on_disk = file
            .metadata()
            .map_err(|e| self.missing(what, digest, e))?
            .len();
        if let Some(size) = size
            && size != on_disk
        {
            return Err(Error::Usage(format!(
                "the {what} blob {digest} is {on_disk} bytes but its descriptor says {size}; the layout is corrupt"
            )));
        }
        if on_disk > bounded::OCI_JSON_BLOB_LIMIT {
            return Err(Error::Usage(format!(
                "the {what} blob {digest} is {on_disk} bytes, over the limit of {} for a {what}; the layout is corrupt",
                bounded::OCI_JSON_BLOB_LIMIT
            )));
        }
        let mut bytes = Vec::new();
        file.take(bounded::OCI_JSON_BLOB_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.missing(what, digest, e))?;
        let actual = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        if actual != digest {
            return Err(Error::Usage(format!(
                "the {what} blob {digest} does not match its digest (its content hashes to {actual}); the layout is corrupt: copy the image again"
            )));
        }
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(Error::Usage(format!(
                "the {what} blob {digest} is {} bytes but its descriptor says {size}; the layout is corrupt",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// A blob exists with the size its descriptor gives (base layers: present, not rehashed).
    pub fn check_blob(&self, what: &str, digest: &str, size: Option<u64>) -> Result<()> {
        let path = self.blob_path(digest)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| self.missing(what, digest, e))?;
        if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
            return Err(Error::Usage(format!(
                "the {what} blob {digest} is not a file of the size its descriptor gives; the layout is corrupt"
            )));
        }
        Ok(())
    }

    fn missing(&self, what: &str, digest: &str, e: io::Error) -> Error {
        Error::Usage(format!(
            "the {what} blob {digest} cannot be read from {} ({e}); the layout is incomplete: copy the image again",
            self.blobs.display()
        ))
    }

    /// Writes a blob unless an intact one is already there; true when it was written.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.blob_path(digest)?;
        if self.intact(&path, digest) {
            return Ok(false);
        }
        atomic::write(&path, bytes, 0o644)
            .map_err(|e| Error::io(format!("{}", path.display()), e))?;
        Ok(true)
    }

    /// Removes blobs this append wrote (it failed before `index.json` named them).
    pub fn remove_blobs(&self, digests: &[String]) {
        for digest in digests {
            if let Ok(path) = self.blob_path(digest) {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Copies a layer file into the blobs, hashing as it copies: a file that changed
    /// since it was planned is an error and leaves no blob behind.
    pub fn put_blob_from_file(&self, digest: &str, source: &Path) -> Result<bool> {
        let path = self.blob_path(digest)?;
        if self.intact(&path, digest) {
            return Ok(false);
        }
        let context = || format!("copying {} to {}", source.display(), path.display());
        let mut input =
            bounded::open_regular(source, false).map_err(|e| Error::io(context(), e))?;
        let mut pending = Pending::create(&path, 0o644).map_err(|e| Error::io(context(), e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).map_err(|e| Error::io(context(), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            pending
                .file()
                .write_all(&buf[..n])
                .map_err(|e| Error::io(context(), e))?;
        }
        if format!("sha256:{}", hex(&hasher.finalize())) != digest {
            return Err(Error::Usage(format!(
                "{} changed while it was appended; nothing was referenced, run again",
                source.display()
            )));
        }
        pending.commit().map_err(|e| Error::io(context(), e))?;
        Ok(true)
    }

    pub fn write_index(&self, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(INDEX);
        atomic::write(&path, bytes, 0o644).map_err(|e| Error::io(format!("{}", path.display()), e))
    }

    fn intact(&self, path: &Path, digest: &str) -> bool {
        sha256_of(path).is_ok_and(|d| d == digest)
    }
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    bounded::open_regular(path, true)
}

/// image-spec's layout versions this code understands: 1.x.
fn supported_version(version: &str) -> bool {
    let mut parts = version.split('.');
    parts.next() == Some("1")
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && version.split('.').count() == 3
}

/// Opens `dir` and takes an exclusive flock on it, waiting for other holders.
fn lock_dir(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let file = File::from(open_dir_following(dir)?);
    loop {
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `sha256:<hex>` of a file's content.
pub fn sha256_of(path: &Path) -> io::Result<String> {
    Ok(format!("sha256:{}", sha256_reader(open_nofollow(path)?)?))
}
