//! The layer plan: every entry a layer will hold, sorted, with its final metadata.
//!
//! The plan is built completely before a byte is written, so a bad input (a fifo, a
//! setuid file, two sources claiming one path) fails with nothing written, and `--json`
//! can describe exactly what the tar holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::source::{self, Source};

/// Mode of directories pexinit adds above DEST (`opt/` for `/opt/pex-root`).
const PARENT_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file whose content is read from `source` when the tar is written.
    File {
        source: PathBuf,
        size: u64,
    },
    /// A symlink, stored with its target verbatim (never followed).
    Symlink {
        target: Vec<u8>,
    },
    /// A second name of a file stored earlier in the same layer.
    Hardlink {
        target: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path in the image, relative to `/`, without a trailing slash.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits, sticky, setuid and setgid included.
    pub mode: u32,
    /// Seconds since the epoch, already clamped.
    pub mtime: u64,
    /// (st_dev, st_ino) of a file with more than one name; used to find hardlink pairs.
    pub inode: Option<(u64, u64)>,
}

/// How entries are made: the clamp and the policy for risky modes.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub mtime_clamp: u64,
    pub allow_setuid: bool,
    /// `--normalize-modes`: group and others from the user bits (see
    /// [`crate::fs::mode::from_user_bits`]), so the builder's umask leaves no trace.
    pub normalize_modes: bool,
}

/// Walks every source and returns its entries (parents of DEST included), not yet
/// sorted into a layer: see [`finish`].
pub fn collect(sources: &[Source], rules: Rules) -> Result<Vec<Entry>> {
    // Keyed by path: one entry per path in the image; BTreeMap gives the byte order.
    let mut entries: BTreeMap<Vec<u8>, (Entry, Option<usize>)> = BTreeMap::new();
    for (index, source) in sources.iter().enumerate() {
        for depth in 1..source.dest.len() {
            let path = source::join(&source.dest[..depth]);
            entries.entry(path.clone()).or_insert_with(|| {
                let dir = Entry {
                    path,
                    kind: Kind::Dir,
                    mode: PARENT_DIR_MODE,
                    mtime: rules.mtime_clamp,
                    inode: None,
                };
                (dir, None)
            });
        }
        let mut found = Vec::new();
        walk(&source.path, source.dest.clone(), rules, &mut found)?;
        for entry in found {
            match entries.get(&entry.path) {
                // A directory pexinit added above DEST gives way to a real one.
                Some((_, None)) => {}
                // Two sources may fill one directory; anything else is ambiguous.
                Some((existing, Some(_)))
                    if existing.kind == Kind::Dir && entry.kind == Kind::Dir =>
                {
                    continue;
                }
                Some((_, Some(other))) => {
                    return Err(Error::Usage(format!(
                        "/{} comes from both {} and {}; give each source its own DEST",
                        source::display(&entry.path),
                        sources[*other].given.display(),
                        source.given.display()
                    )));
                }
                None => {}
            }
            entries.insert(entry.path.clone(), (entry, Some(index)));
        }
    }
    // Every entry's parent must be a directory of this layer, or extraction would fail.
    for (path, (_, _)) in &entries {
        if let Some(cut) = path.iter().rposition(|b| *b == b'/') {
            let parent = &path[..cut];
            if entries
                .get(parent)
                .is_some_and(|(e, _)| e.kind != Kind::Dir)
            {
                return Err(Error::Usage(format!(
                    "/{} is not a directory in the layer but /{} is stored below it; give the sources other DESTs",
                    source::display(parent),
                    source::display(path)
                )));
            }
        }
    }
    Ok(entries.into_values().map(|(e, _)| e).collect())
}

/// Sorts entries by path bytes and turns second names of one inode into hardlink
/// entries that point to the first name, as GNU tar does.
pub fn finish(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut first_name: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in &mut entries {
        let Some(inode) = entry.inode else { continue };
        if !matches!(entry.kind, Kind::File { .. }) {
            continue;
        }
        match first_name.get(&inode) {
            Some(target) => {
                entry.kind = Kind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first_name.insert(inode, entry.path.clone());
            }
        }
    }
    entries
}

fn walk(path: &Path, dest: Vec<Vec<u8>>, rules: Rules, out: &mut Vec<Entry>) -> Result<()> {
    let meta =
        fs::symlink_metadata(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
    let kind = kind_of(path, &meta)?;
    if dest.is_empty() && kind != Kind::Dir {
        return Err(Error::Usage(format!(
            "{} is not a directory: it cannot be stored at / (give it a DEST such as /usr/local/bin/NAME)",
            path.display()
        )));
    }
    let mode = meta.mode() & 0o7777;
    let is_dir = kind == Kind::Dir;
    // setgid on a directory only makes new files inherit its group: no privilege.
    if mode & 0o6000 != 0 && !is_dir && !rules.allow_setuid {
        return Err(Error::Usage(format!(
            "{} has the setuid/setgid bit (mode {:o}); clear it (chmod ug-s) or pass --allow-setuid",
            path.display(),
            mode
        )));
    }
    let mode = match rules.normalize_modes && !matches!(kind, Kind::Symlink { .. }) {
        true => crate::fs::mode::from_user_bits(mode),
        false => mode,
    };
    let inode = (!is_dir && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    let mtime = u64::try_from(meta.mtime())
        .unwrap_or(0)
        .min(rules.mtime_clamp);
    if !dest.is_empty() {
        out.push(Entry {
            path: source::join(&dest),
            kind,
            mode,
            mtime,
            inode,
        });
    }
    if is_dir {
        let reader = fs::read_dir(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
        let mut names = Vec::new();
        for child in reader {
            let child = child.map_err(|e| Error::io(format!("{}", path.display()), e))?;
            names.push(child.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let mut child_dest = dest.clone();
            child_dest.push(name.as_bytes().to_vec());
            walk(&path.join(&name), child_dest, rules, out)?;
        }
    }
    Ok(())
}

fn kind_of(path: &Path, meta: &Metadata) -> Result<Kind> {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        Ok(Kind::Dir)
    } else if file_type.is_file() {
        Ok(Kind::File {
            source: path.to_path_buf(),
            size: meta.len(),
        })
    } else if file_type.is_symlink() {
        let target =
            fs::read_link(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
        Ok(Kind::Symlink {
            target: target.as_os_str().as_bytes().to_vec(),
        })
    } else {
        let what = if file_type.is_fifo() {
            "a fifo"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a device node"
        };
        Err(Error::Usage(format!(
            "{} is {what}: a layer holds only files, directories and links; remove it from the source",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, inode: Option<(u64, u64)>) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: Kind::File {
                source: PathBuf::from("/dev/null"),
                size: 0,
            },
            mode: 0o644,
            mtime: 0,
            inode,
        }
    }

    #[test]
    fn second_name_becomes_a_hardlink_to_the_first_in_byte_order() {
        let entries = finish(vec![
            file("b/z", Some((1, 7))),
            file("a", Some((1, 7))),
            file("c", None),
        ]);
        let paths: Vec<&[u8]> = entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(paths, vec![&b"a"[..], b"b/z", b"c"]);
        assert!(matches!(entries[0].kind, Kind::File { .. }));
        assert_eq!(
            entries[1].kind,
            Kind::Hardlink {
                target: b"a".to_vec()
            }
        );
    }
}
