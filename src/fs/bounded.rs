//! Reading files that someone else wrote: only regular files, and only up to a limit
//! per kind of file, checked from the file's size before anything is read.
//!
//! A FIFO would block the reader forever and a link to `/dev/zero` would be read until
//! memory runs out, so files are opened with `O_NONBLOCK` (a FIFO opens at once) and
//! refused unless `fstat` says they are regular. The limits (README, "Limits") are far
//! above what a real file of each kind holds.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `index.json` of an OCI image layout.
pub const OCI_INDEX_LIMIT: u64 = 16 << 20;
/// `oci-layout`.
pub const OCI_LAYOUT_FILE_LIMIT: u64 = 64 << 10;
/// An image manifest or image config blob.
pub const OCI_JSON_BLOB_LIMIT: u64 = 16 << 20;
/// A pexinit YAML config file.
pub const CONFIG_LIMIT: u64 = 64 << 10;
/// A seed manifest (`.pexinit-seed.json`): about 1 KiB per seeded PEX.
pub const SEED_MANIFEST_LIMIT: u64 = 16 << 20;

/// Opens `path` for reading if it is a regular file (following links unless `nofollow`).
pub fn open_regular(path: &Path, nofollow: bool) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = File::options().read(true).custom_flags(flags).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_of(&meta)),
        ));
    }
    Ok(file)
}

/// The whole content of the regular file `path`, refused when larger than `limit`.
pub fn read(path: &Path, limit: u64, nofollow: bool) -> io::Result<Vec<u8>> {
    let file = open_regular(path, nofollow)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_large(size, limit));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow while it is read: never take more than the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn too_large(size: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("is {size} bytes, over the limit of {limit} bytes"),
    )
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("cstring");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read(&fifo, 10, false).expect_err("fifo");
        assert!(e.to_string().contains("a fifo"), "{e}");
        let e = read(Path::new("/dev/zero"), 10, false).expect_err("device");
        assert!(e.to_string().contains("a device"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, [0u8; 11]).expect("write");
        assert!(read(&big, 10, false).is_err());
        assert_eq!(read(&big, 11, false).expect("read").len(), 11);
    }
}
