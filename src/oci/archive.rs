//! Writes a layer plan as a tar stream: GNU headers with nothing in them but the
//! plan's own fields (no uname/gname, atime or ctime), so the bytes depend only on the
//! plan.
//!
//! Names and link targets are copied verbatim; longer than 100 bytes they go in a
//! GNU long-name (`L`) or long-link (`K`) entry, whose header is all zeros but for
//! the size, as GNU tar reads them. The tar crate's builder would re-normalize link
//! targets through `Path::components` (dropping `./` and trailing slashes), which
//! changes what a symlink means, so headers are filled here with its `Header` type.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use tar::{EntryType, Header};

use crate::oci::walk::{Entry, Kind};

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;

/// uid and gid of every entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// Writes every entry then the two zero blocks that end a tar archive.
pub fn write_tar(entries: &[Entry], owner: Owner, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    for entry in entries {
        write_entry(entry, owner, out, &mut buf)?;
    }
    out.write_all(&[0u8; 2 * BLOCK])
}

fn write_entry(entry: &Entry, owner: Owner, out: &mut dyn Write, buf: &mut [u8]) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(owner.uid);
    header.set_gid(owner.gid);
    header.set_mtime(entry.mtime);
    header.set_size(0);
    let mut name = entry.path.clone();
    let link: Option<&[u8]> = match &entry.kind {
        Kind::Dir => {
            header.set_entry_type(EntryType::Directory);
            name.push(b'/');
            None
        }
        Kind::File { size, .. } => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(*size);
            None
        }
        Kind::Symlink { target } => {
            header.set_entry_type(EntryType::Symlink);
            Some(target)
        }
        Kind::Hardlink { target } => {
            header.set_entry_type(EntryType::Link);
            Some(target)
        }
    };
    if name.len() > NAME_FIELD {
        write_long(out, b'L', &name)?;
    }
    let gnu = header.as_gnu_mut().expect("a GNU header");
    copy_field(&mut gnu.name, &name);
    if let Some(link) = link {
        if link.len() > NAME_FIELD {
            write_long(out, b'K', link)?;
        }
        copy_field(&mut gnu.linkname, link);
    }
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    if let Kind::File { source, size } = &entry.kind {
        copy_exact(source, *size, out, buf)?;
        pad(*size, out)?;
    }
    Ok(())
}

/// A GNU long name or long link: a pseudo-entry `././@LongLink` whose data is the name
/// and a NUL. Every other field is zero so it carries no noise.
fn write_long(out: &mut dyn Write, kind: u8, value: &[u8]) -> io::Result<()> {
    let mut header = Header::new_gnu();
    let gnu = header.as_gnu_mut().expect("a GNU header");
    copy_field(&mut gnu.name, b"././@LongLink");
    header.set_mode(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(value.len() as u64 + 1);
    header.set_entry_type(EntryType::new(kind));
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(value)?;
    out.write_all(&[0])?;
    pad(value.len() as u64 + 1, out)
}

/// The first bytes of `value` that fit; a long value's full text is in its `L`/`K` entry.
fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn pad(size: u64, out: &mut dyn Write) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Copies exactly `size` bytes of the file the plan saw. The file is opened without
/// following a link (it may have been swapped since the walk); a file that changed
/// size since then is an error rather than a corrupt archive.
fn copy_exact(
    path: &std::path::Path,
    size: u64,
    out: &mut dyn Write,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let changed = || {
        io::Error::other(format!(
            "{} changed while the layer was written; write the layer from a tree nothing modifies",
            path.display()
        ))
    };
    if file.metadata()?.len() != size {
        return Err(changed());
    }
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed());
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}
