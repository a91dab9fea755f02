//! The link farm: a writable PEX_ROOT in front of a read-only seed, for `run`.
//!
//! A seed the runtime user cannot write (a root-owned image layer, a `--read-only` root
//! filesystem, an arbitrary UID) would make pex fall back to a temporary PEX_ROOT: cold
//! again, with a warning. pex only checks that PEX_ROOT itself is writable, and writes
//! exactly three kinds of things on a warm run: `PEX_ROOT/access.lck`,
//! `.last-access` in the unzipped-PEX or venv entry it runs (pex ≥ 2.27), and lock files
//! next to entries it has to create (none, when warm).
//!
//! So the *link farm* is a small writable directory holding:
//! - its own `access.lck`;
//! - for each `unzipped_pexes/<N>/<hash>` and `venvs/<N>/<pex hash>/<interp hash>` entry,
//!   a real directory whose children are links to the seed's children, plus a real,
//!   writable `.last-access`;
//! - links to every other top-level directory of the seed (`installed_wheels`, …) and to
//!   `venvs/<N>/s`.
//!
//! The seed's content is used in place: the cost grows with the number of seeded PEXes
//! (a handful of entries), never with the seed's size. Links are absolute, to the seed's
//! physical path; the seed's own links are relative or point at the path the seed was
//! built for, which the farm or the seed itself provides.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::readlinkat;
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::symlinkat;
use serde::{Deserialize, Serialize};

use crate::fs::bounded;
use crate::fs::dir::{create_file, open_dir, open_parent};
use crate::fs::rename::chown_nofollow;
use crate::pex::cache::is_version_name;
use crate::pex::manifest;

/// Marks a finished farm: which seed (and which manifest of it) it mirrors. Written last,
/// atomically, so a farm with a matching marker is complete and can be reused as is.
pub const FARM_MARKER: &str = ".pexinit-farm.json";

/// Top-level directories holding entries pex touches on warm runs (`.last-access`).
const PER_ENTRY_TOPS: [&str; 2] = ["unzipped_pexes", "venvs"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmMarker {
    pub seed: PathBuf,
    pub manifest_sha256: String,
}

/// One thing to create in the farm, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Dir {
        path: PathBuf,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    /// An empty file pex writes to (`access.lck`, `.last-access`).
    WritableFile {
        path: PathBuf,
    },
}

/// What materializing a seed into `into` will do: computed by reading only.
#[derive(Debug, Clone, Serialize)]
pub struct FarmPlan {
    pub seed: PathBuf,
    pub into: PathBuf,
    pub marker: FarmMarker,
    /// `into` already is a complete farm of this seed: nothing to do.
    pub reuse: bool,
    pub items: Vec<Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "{0} is not empty and not a link farm of this seed; empty it or point PEX_ROOT elsewhere"
    )]
    NotEmpty(PathBuf),
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> MaterializeError {
    MaterializeError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl FarmMarker {
    /// The marker a farm of `seed` (physical path) carries, whose manifest is
    /// `manifest_bytes` (as read once by the caller, so the farm mirrors exactly the
    /// manifest the caller trusted).
    pub fn new(seed: &Path, manifest_bytes: &[u8]) -> FarmMarker {
        FarmMarker {
            seed: seed.to_path_buf(),
            manifest_sha256: manifest::sha256_bytes(manifest_bytes),
        }
    }
}

/// Whether `into` holds a finished farm with this marker.
pub fn is_farm_of(into: &Path, marker: &FarmMarker) -> bool {
    bounded::read(&into.join(FARM_MARKER), bounded::SEED_MANIFEST_LIMIT, true)
        .ok()
        .and_then(|b| serde_json::from_slice::<FarmMarker>(&b).ok())
        .is_some_and(|m| &m == marker)
}

/// Plans a link farm of the seed `marker` names (physical) at the physical path `into`
/// (which may be missing, empty, a finished farm of the same seed, or a farm an earlier
/// attempt left half-done).
pub fn plan_link_farm(marker: FarmMarker, into: &Path) -> Result<FarmPlan, MaterializeError> {
    let seed = marker.seed.clone();
    if is_farm_of(into, &marker) {
        return Ok(FarmPlan {
            seed: seed.clone(),
            into: into.to_path_buf(),
            marker,
            reuse: true,
            items: Vec::new(),
        });
    }
    let mut items = vec![Item::WritableFile {
        path: PathBuf::from("access.lck"),
    }];
    for (name, is_dir) in list(&seed)? {
        let rel = PathBuf::from(&name);
        if name == "access.lck" || name.as_bytes().starts_with(b".pexinit") {
            // Our own files (manifest, quarantine) stay in the seed: the manifest's
            // pex_root names the seed's build path, not the farm's.
            continue;
        }
        if is_dir && PER_ENTRY_TOPS.iter().any(|t| name == OsStr::new(t)) {
            plan_per_entry(&seed, &rel, &mut items)?;
        } else if is_dir && name == "interpreters" {
            plan_interpreters(&seed, &rel, &mut items)?;
        } else {
            items.push(Item::Link {
                target: seed.join(&rel),
                path: rel,
            });
        }
    }
    if let Ok(existing) = list(into) {
        let planned: Vec<&Path> = items.iter().map(item_path).collect();
        let foreign = existing.iter().any(|(name, _)| {
            name != OsStr::new(FARM_MARKER)
                && name != OsStr::new("lost+found")
                && !planned.iter().any(|p| p.as_os_str() == name)
        });
        if foreign {
            return Err(MaterializeError::NotEmpty(into.to_path_buf()));
        }
    }
    Ok(FarmPlan {
        seed: seed.clone(),
        into: into.to_path_buf(),
        marker,
        reuse: false,
        items,
    })
}

/// `unzipped_pexes/<N>/<entry>` or `venvs/<N>/<pex hash>/<interp hash>`: real
/// directories down to each entry, links to the entry's children, a writable
/// `.last-access`. Lock files are left out: pex takes them only to create an entry,
/// and then it creates them itself, in the writable farm.
fn plan_per_entry(seed: &Path, top: &Path, items: &mut Vec<Item>) -> Result<(), MaterializeError> {
    // Entries sit 2 levels below `unzipped_pexes` and 3 below `venvs`; one less in the
    // caches of pex ≤ 2.17, which have no version level.
    let depth = if top == Path::new("venvs") { 3 } else { 2 };
    let mut level = vec![(top.to_path_buf(), depth)];
    let mut entries = Vec::new();
    while let Some((dir, remaining)) = level.pop() {
        if remaining == 0 {
            entries.push(dir);
            continue;
        }
        items.push(Item::Dir { path: dir.clone() });
        for (name, is_dir) in list(&seed.join(&dir))? {
            let rel = dir.join(&name);
            if is_lock(&name) {
                continue;
            }
            if name == "s" && top == Path::new("venvs") || !is_dir {
                // `venvs/<N>/s` holds only short links pex never writes into.
                items.push(Item::Link {
                    target: seed.join(&rel),
                    path: rel,
                });
            } else if dir == top && !is_version_name(&name) {
                level.push((rel, remaining - 2));
            } else {
                level.push((rel, remaining - 1));
            }
        }
    }
    entries.sort();
    for entry in entries {
        items.push(Item::Dir {
            path: entry.clone(),
        });
        for (name, _) in list(&seed.join(&entry))? {
            let rel = entry.join(&name);
            if name == ".last-access" {
                continue;
            }
            items.push(Item::Link {
                target: seed.join(&rel),
                path: rel,
            });
        }
        items.push(Item::WritableFile {
            path: entry.join(".last-access"),
        });
    }
    items.dedup();
    Ok(())
}

/// `interpreters/<N>/<os hash>/` made writable, the binary-hash entries below linked:
/// pex keys its interpreter cache on the kernel (`uname`) and on the python binary's
/// hash, so on a node unlike the build host it adds an entry at one of these two levels,
/// which a read-only seed refuses (EROFS) and the farm takes.
fn plan_interpreters(
    seed: &Path,
    top: &Path,
    items: &mut Vec<Item>,
) -> Result<(), MaterializeError> {
    let mut level = vec![(top.to_path_buf(), 2)];
    while let Some((dir, remaining)) = level.pop() {
        items.push(Item::Dir { path: dir.clone() });
        for (name, is_dir) in list(&seed.join(&dir))? {
            if is_lock(&name) {
                continue;
            }
            let path = dir.join(&name);
            if is_dir && remaining > 0 {
                level.push((path, remaining - 1));
            } else {
                items.push(Item::Link {
                    target: seed.join(&path),
                    path,
                });
            }
        }
    }
    Ok(())
}

fn is_lock(name: &OsStr) -> bool {
    name.as_bytes().ends_with(b".lck")
}

fn item_path(item: &Item) -> &Path {
    match item {
        Item::Dir { path } | Item::Link { path, .. } | Item::WritableFile { path } => path,
    }
}

/// Names in `dir` (sorted, for a reproducible plan) and whether each is a real directory.
fn list(dir: &Path) -> Result<Vec<(OsString, bool)>, MaterializeError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push((entry.file_name(), is_dir));
    }
    out.sort();
    Ok(out)
}

/// What applying a farm plan did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FarmReport {
    pub created: usize,
    pub existing: usize,
}

/// Creates the farm. `into` must exist (the caller creates it, privately when in a
/// shared TMPDIR). Every step is relative to a directory opened with O_NOFOLLOW, so a
/// link planted in the farm is never followed; an item that already exists as planned
/// (a concurrent start, a crashed one) is accepted. `owner`: chown what we create (root
/// preparing the farm for the `--user` it then becomes).
pub fn apply(plan: &FarmPlan, owner: Option<(u32, u32)>) -> Result<FarmReport, MaterializeError> {
    let mut report = FarmReport::default();
    if plan.reuse {
        return Ok(report);
    }
    let root = open_dir(nix::fcntl::AT_FDCWD, &plan.into).map_err(|e| io_error(&plan.into, e))?;
    for item in &plan.items {
        let path = item_path(item);
        let shown = plan.into.join(path);
        let (parent, name) = open_parent(root.as_fd(), path).map_err(|e| io_error(&shown, e))?;
        let created = match item {
            Item::Dir { .. } => {
                match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => true,
                    Err(Errno::EEXIST) => {
                        open_dir(parent.as_fd(), name).map_err(|e| {
                            io_error(&shown, format!("exists but is not a directory ({e})"))
                        })?;
                        false
                    }
                    Err(e) => return Err(io_error(&shown, e)),
                }
            }
            Item::Link { target, .. } => match symlinkat(target.as_path(), parent.as_fd(), name) {
                Ok(()) => true,
                Err(Errno::EEXIST) => {
                    let current =
                        readlinkat(parent.as_fd(), name).map_err(|e| io_error(&shown, e))?;
                    if Path::new(&current) != target {
                        return Err(MaterializeError::NotEmpty(plan.into.clone()));
                    }
                    false
                }
                Err(e) => return Err(io_error(&shown, e)),
            },
            Item::WritableFile { .. } => match create_file(parent.as_fd(), name, 0o644) {
                Ok(_) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(io_error(&shown, e)),
            },
        };
        if created {
            report.created += 1;
            if let Some(owner) = owner {
                chown_nofollow(parent.as_fd(), name, owner).map_err(|e| io_error(&shown, e))?;
            }
        } else {
            report.existing += 1;
        }
    }
    let marker = serde_json::to_vec_pretty(&plan.marker).expect("marker serializes");
    manifest::write_atomic(&plan.into, FARM_MARKER, &marker, 0o644)
        .map_err(|e| io_error(&plan.into.join(FARM_MARKER), e))?;
    if let Some(owner) = owner {
        chown_nofollow(root.as_fd(), FARM_MARKER, owner).map_err(|e| io_error(&plan.into, e))?;
    }
    Ok(report)
}
