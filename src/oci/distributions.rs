//! `--split APP_FILE --distributions DIR`: the dependency side of a seed as one layer
//! per large distribution plus one layer for everything else, so that a change of one
//! distribution re-uploads only that distribution's layer.
//!
//! A distribution is one directory `installed_wheels/[<n>/]<hash>/` holding an unpacked
//! `<name>.whl/` directory (pex's layout since 2.1; `<n>` is the cache version level of
//! pex > 2.17); pex's lock beside it (`.<hash>.atomic_directory.lck`) goes with it. Its
//! size is the sum of its files' sizes. Distributions of at least `min_size` bytes get
//! their own layer, at most `max_layers` of them: beyond that, the smallest join the
//! group (ties broken by name). The rest of the dependency side (small distributions,
//! pex's runtime, `access.lck`) is the group layer. Each layer also carries the
//! directories above its content (DEST's parents, `installed_wheels/`, `<n>/`), the same
//! entries in every layer.
//!
//! Every choice depends only on the paths and sizes in the seed, and the layers come out
//! sorted by wheel name, so the same seed gives the same layers, and a distribution whose
//! content changes changes only its own layer (and its file name when its version does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::source::Source;
use crate::oci::walk::{Entry, Kind};

/// Default `--min-distribution-size`: 5 MiB.
pub const DEFAULT_MIN_SIZE: u64 = 5 << 20;
/// Default `--max-distribution-layers`: well under the 127 layers Docker accepts, with
/// room for the base image's layers.
pub const DEFAULT_MAX_LAYERS: usize = 40;

/// How the dependency layer is divided.
#[derive(Debug, Clone)]
pub struct DistributionLayers {
    /// Where each distribution's layer is written, as `<wheel name>.tar[.gz|.zst]`.
    pub dir: PathBuf,
    pub min_size: u64,
    pub max_layers: usize,
}

/// One distribution given its own layer: its wheel name and its entries (with the
/// directories above it).
#[derive(Debug)]
pub struct Distribution {
    pub name: String,
    pub entries: Vec<Entry>,
}

const WHEELS: &[u8] = b"installed_wheels";

/// Sizes like `5242880`, `512K`, `5M`, `5MiB`, `1G` (K, M, G are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => u32::MAX,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| shift != u32::MAX)
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--min-distribution-size {text:?}: write a size such as 5242880, 512K, 5M or 1G"
            ))
        })
}

/// The directory `installed_wheels/[<n>/]<hash>` of a wheel directory entry, and the
/// wheel's name; None for anything else.
fn unit_of(entry: &Entry, depth: usize) -> Option<(Vec<u8>, String)> {
    if !matches!(entry.kind, Kind::Dir) {
        return None;
    }
    let components: Vec<&[u8]> = entry.path.split(|b| *b == b'/').collect();
    let name = *components.last()?;
    let below = components.len().checked_sub(depth)?;
    // installed_wheels/<hash>/<name>.whl or installed_wheels/<n>/<hash>/<name>.whl
    if !(3..=4).contains(&below) || components[depth] != WHEELS {
        return None;
    }
    if name.starts_with(b".") || !name.ends_with(b".whl") {
        return None;
    }
    let prefix = entry.path[..entry.path.len() - name.len() - 1].to_vec();
    Some((prefix, String::from_utf8_lossy(name).into_owned()))
}

/// Divides the dependency entries of a seed placed at a DEST of `depth` components into
/// (the group, the distributions with a layer of their own, sorted by name).
pub fn divide(
    deps: Vec<Entry>,
    depth: usize,
    min_size: u64,
    max_layers: usize,
) -> (Vec<Entry>, Vec<Distribution>) {
    // Every distribution: its directory -> (wheel name, size).
    let mut units: BTreeMap<Vec<u8>, (String, u64)> = BTreeMap::new();
    for entry in &deps {
        if let Some((prefix, name)) = unit_of(entry, depth) {
            units.entry(prefix).or_insert((name, 0));
        }
    }
    let owner = |path: &[u8]| -> Option<Vec<u8>> {
        // Inside a distribution's directory, or its lock beside it.
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|b| *b == b'/') {
            end += i;
            if units.contains_key(&path[..end]) {
                return Some(path[..end].to_vec());
            }
            end += 1;
        }
        if units.contains_key(path) {
            return Some(path.to_vec());
        }
        let slash = path.iter().rposition(|b| *b == b'/')?;
        let name = path[slash + 1..]
            .strip_prefix(b".")?
            .strip_suffix(b".atomic_directory.lck")?;
        let mut dir = path[..=slash].to_vec();
        dir.extend_from_slice(name);
        units.contains_key(&dir).then_some(dir)
    };
    let owners: Vec<Option<Vec<u8>>> = deps.iter().map(|e| owner(&e.path)).collect();
    for (entry, owner) in deps.iter().zip(&owners) {
        if let (Some(owner), Kind::File { size, .. }) = (owner, &entry.kind)
            && let Some(unit) = units.get_mut(owner)
        {
            unit.1 += size;
        }
    }

    // The largest distributions of at least min_size, at most max_layers of them.
    let mut big: Vec<(&Vec<u8>, &(String, u64))> = units
        .iter()
        .filter(|(_, (_, size))| *size >= min_size)
        .collect();
    big.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.1.0.cmp(&b.1.0)));
    big.truncate(max_layers);
    let mut chosen: BTreeMap<Vec<u8>, Distribution> = big
        .into_iter()
        .map(|(prefix, (name, _))| {
            (
                prefix.clone(),
                Distribution {
                    name: name.clone(),
                    entries: Vec::new(),
                },
            )
        })
        .collect();

    let mut group = Vec::new();
    for (entry, owner) in deps.into_iter().zip(owners) {
        match owner.and_then(|o| chosen.get_mut(&o)) {
            Some(dist) => dist.entries.push(entry),
            None => {
                // Directories above a chosen distribution go in its layer too.
                for (prefix, dist) in chosen.iter_mut() {
                    if prefix.len() > entry.path.len()
                        && prefix.starts_with(&entry.path)
                        && prefix[entry.path.len()] == b'/'
                    {
                        dist.entries.push(entry.clone());
                    }
                }
                group.push(entry);
            }
        }
    }
    let mut dists: Vec<Distribution> = chosen.into_values().collect();
    dists.sort_by(|a, b| a.name.cmp(&b.name));
    (group, dists)
}

/// File names for the distributions' layers in `dir`: `<wheel name><ext>`, made unique
/// (by a counter in sorted order) when two distributions share a wheel name.
pub fn outputs(dir: &Path, dists: &[Distribution], ext: &str) -> Vec<PathBuf> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    dists
        .iter()
        .map(|d| {
            let n = seen.entry(d.name.as_str()).or_insert(0);
            *n += 1;
            let name = if *n == 1 {
                format!("{}{ext}", d.name)
            } else {
                format!("{}-{n}{ext}", d.name)
            };
            dir.join(name)
        })
        .collect()
}

/// DIR must be an empty directory, or not exist yet (its parent must): layers left
/// from an earlier build would be appended with the new ones by a `DIR/*` glob. Nor
/// may it lie inside a source: the next run would store these layers in the new ones.
pub fn check_dir(dir: &Path, sources: &[Source]) -> Result<()> {
    crate::oci::source::check_outside_sources("--distributions", dir, "directory", sources)?;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut list = std::fs::read_dir(dir)
                .map_err(|e| Error::Usage(format!("--distributions {}: {e}", dir.display())))?;
            if list.next().is_some() {
                return Err(Error::Usage(format!(
                    "--distributions {} is not empty; give an empty or new directory (old layers there would be appended with the new ones)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(Error::Usage(format!(
            "--distributions {} is not a directory (a link?); give an empty or new directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Usage(format!(
            "--distributions {}: {e}",
            dir.display()
        ))),
    }
}

/// Creates DIR when missing, without following a link in its place.
pub fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => Err(Error::Usage(format!(
                    "--distributions {} is not a directory (a link?); give an empty or new directory",
                    dir.display()
                ))),
            }
        }
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: Kind::Dir,
            mode: 0o755,
            mtime: 0,
            inode: None,
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: Kind::File {
                source: PathBuf::from("/dev/null"),
                size,
            },
            mode: 0o644,
            mtime: 0,
            inode: None,
        }
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    fn seed() -> Vec<Entry> {
        let r = "opt/pex-root";
        let w = "opt/pex-root/installed_wheels/3";
        vec![
            dir("opt"),
            dir(r),
            file(&format!("{r}/access.lck"), 0),
            dir(&format!("{r}/installed_wheels")),
            dir(w),
            file(&format!("{w}/.aaa.atomic_directory.lck"), 0),
            dir(&format!("{w}/aaa")),
            dir(&format!("{w}/aaa/numpy-2.0-cp311.whl")),
            file(&format!("{w}/aaa/numpy-2.0-cp311.whl/big.so"), 900),
            file(&format!("{w}/.bbb.atomic_directory.lck"), 0),
            dir(&format!("{w}/bbb")),
            dir(&format!("{w}/bbb/six-1.0-py3.whl")),
            file(&format!("{w}/bbb/six-1.0-py3.whl/six.py"), 10),
            dir(&format!("{w}/ccc")),
            dir(&format!("{w}/ccc/attrs-1.0-py3.whl")),
            file(&format!("{w}/ccc/attrs-1.0-py3.whl/a.py"), 500),
        ]
    }

    #[test]
    fn big_distributions_get_layers_small_ones_stay_grouped() {
        let (group, dists) = divide(seed(), 2, 100, 40);
        let names: Vec<&str> = dists.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["attrs-1.0-py3.whl", "numpy-2.0-cp311.whl"]);
        let w = "opt/pex-root/installed_wheels/3";
        assert_eq!(
            paths(&dists[1].entries),
            [
                "opt",
                "opt/pex-root",
                "opt/pex-root/installed_wheels",
                w,
                &format!("{w}/.aaa.atomic_directory.lck"),
                &format!("{w}/aaa"),
                &format!("{w}/aaa/numpy-2.0-cp311.whl"),
                &format!("{w}/aaa/numpy-2.0-cp311.whl/big.so"),
            ]
        );
        let group = paths(&group);
        assert!(group.iter().any(|p| p.ends_with("six.py")));
        assert!(
            group
                .iter()
                .any(|p| p.ends_with(".bbb.atomic_directory.lck"))
        );
        assert!(!group.iter().any(|p| p.contains("aaa") || p.contains("ccc")));
    }

    #[test]
    fn the_cap_sends_the_smallest_big_ones_to_the_group() {
        let (group, dists) = divide(seed(), 2, 100, 1);
        assert_eq!(dists.len(), 1);
        assert_eq!(dists[0].name, "numpy-2.0-cp311.whl");
        assert!(
            paths(&group)
                .iter()
                .any(|p| p.ends_with("attrs-1.0-py3.whl/a.py"))
        );
        let (group, dists) = divide(seed(), 2, 1000, 40);
        assert!(dists.is_empty());
        assert_eq!(group.len(), seed().len());
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("5M").expect("5M"), 5 << 20);
        assert_eq!(parse_size("5MiB").expect("5MiB"), 5 << 20);
        assert_eq!(parse_size("512K").expect("512K"), 512 << 10);
        assert_eq!(parse_size("100").expect("100"), 100);
        for bad in ["", "M", "5X", "-1", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
