//! Writes a layer plan as a tar stream: headers with nothing in them but the plan's own
//! fields (no uname/gname, atime or ctime), so the bytes depend only on the plan.
//!
//! Names and link targets are copied verbatim. A name that fits POSIX ustar's 100-byte
//! name field, or splits at a `/` into its 155-byte prefix and the name field, gets a
//! ustar header: a seed's paths (`…/installed_wheels/3/<sha256>/<wheel>/…`) are mostly
//! too long for the name field alone, and a GNU long-name entry would add 1 KiB to
//! each of them (tens of kilobytes per layer once compressed). Any other entry gets a
//! GNU header, its name or link target longer than 100 bytes in a GNU long-name (`L`)
//! or long-link (`K`) entry, whose header is all zeros but for the size, as GNU tar
//! reads them; so does an entry whose owner or size needs GNU's base-256 numbers.
//!
//! The tar crate's builder would re-normalize link targets through `Path::components`
//! (dropping `./` and trailing slashes), which changes what a symlink means, so headers
//! are filled here with its `Header` type.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use tar::{EntryType, Header};

use crate::oci::walk::{Entry, Kind};

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;
const PREFIX_FIELD: usize = 155;
/// The largest number a ustar header's 8-byte octal fields (uid, gid) hold.
const USTAR_MAX_ID: u64 = 0o7777777;
/// The largest size its 12-byte octal size field holds.
const USTAR_MAX_SIZE: u64 = 0o77777777777;

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
    let mut name = entry.path.clone();
    let (kind, size, link): (EntryType, u64, Option<&[u8]>) = match &entry.kind {
        Kind::Dir => {
            name.push(b'/');
            (EntryType::Directory, 0, None)
        }
        Kind::File { size, .. } => (EntryType::Regular, *size, None),
        Kind::Symlink { target } => (EntryType::Symlink, 0, Some(target)),
        Kind::Hardlink { target } => (EntryType::Link, 0, Some(target)),
    };
    let numbers_fit =
        owner.uid <= USTAR_MAX_ID && owner.gid <= USTAR_MAX_ID && size <= USTAR_MAX_SIZE;
    let link_fits = link.is_none_or(|l| l.len() <= NAME_FIELD);
    let ustar = ustar_split(&name).filter(|_| numbers_fit && link_fits);
    let mut header = match ustar {
        Some(_) => Header::new_ustar(),
        None => Header::new_gnu(),
    };
    header.set_mode(entry.mode);
    header.set_uid(owner.uid);
    header.set_gid(owner.gid);
    header.set_mtime(entry.mtime);
    header.set_size(size);
    header.set_entry_type(kind);
    match ustar {
        Some((prefix, rest)) => {
            let fields = header.as_ustar_mut().expect("a ustar header");
            copy_field(&mut fields.prefix, prefix);
            copy_field(&mut fields.name, rest);
            if let Some(link) = link {
                copy_field(&mut fields.linkname, link);
            }
        }
        None => {
            if name.len() > NAME_FIELD {
                write_long(out, b'L', &name)?;
            }
            if let Some(link) = link
                && link.len() > NAME_FIELD
            {
                write_long(out, b'K', link)?;
            }
            let fields = header.as_gnu_mut().expect("a GNU header");
            copy_field(&mut fields.name, &name);
            if let Some(link) = link {
                copy_field(&mut fields.linkname, link);
            }
        }
    }
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    if let Kind::File { source, size } = &entry.kind {
        copy_exact(source, *size, out, buf)?;
        pad(*size, out)?;
    }
    Ok(())
}

/// `name` as ustar's (prefix, name) fields: the whole name when it fits the name field,
/// else split at the first `/` that leaves at most 100 bytes after it and at most 155
/// before it. None when no split fits.
fn ustar_split(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_FIELD {
        return Some((&[], name));
    }
    // A directory's trailing `/` belongs to the name part: never split there.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    body.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(at, _)| at)
        .find(|at| name.len() - at - 1 <= NAME_FIELD)
        .filter(|at| *at <= PREFIX_FIELD && *at > 0)
        .map(|at| (&name[..at], &name[at + 1..]))
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

#[cfg(test)]
mod tests {
    use super::ustar_split;

    #[test]
    fn names_split_into_ustar_prefix_and_name_or_not_at_all() {
        assert_eq!(ustar_split(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let dir = [
            b"p".repeat(150),
            b"/".to_vec(),
            b"n".repeat(99),
            b"/".to_vec(),
        ]
        .concat();
        assert_eq!(ustar_split(&dir), Some((&dir[..150], &dir[151..])));
        // The split is at the first `/` leaving at most 100 bytes after it.
        let name = [b"a/".repeat(60), b"f".repeat(90)].concat();
        let (prefix, rest) = ustar_split(&name).expect("splits");
        assert!(rest.len() <= 100 && prefix.len() <= 155);
        assert_eq!([prefix, b"/", rest].concat(), name);
        // No `/` in the last 101 bytes, or a prefix over 155 bytes: no split.
        assert_eq!(
            ustar_split(&[b"d/".to_vec(), b"f".repeat(101)].concat()),
            None
        );
        assert_eq!(
            ustar_split(&[b"p".repeat(156), b"/f".to_vec()].concat()),
            None
        );
    }
}
