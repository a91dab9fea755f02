//! The seed manifest: what `pexinit seed` warmed, and what `run` needs to trust it.
//!
//! Written as `DIR/.pexinit-seed.json` at the root of the seeded PEX_ROOT. pex never
//! looks at unknown names at the root of its cache (it only opens `access.lck` and its
//! own top-level directories), and `pex3 cache prune` only walks those directories too,
//! so the file survives every pex version. It is written atomically (temp file, fsync,
//! rename), so a reader sees the old manifest or the new one, never half of one.
//!
//! Paths to cache entries are stored relative to PEX_ROOT: a seed may be reached through
//! a link farm at another path (see [`crate::pex::materialize`]), and the fast path must
//! exec the venv through the PEX_ROOT pex itself would use.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fs::bounded;
use crate::fs::digest::{hex, sha256_reader};
use crate::pex::cache::CacheRoot;
use crate::pex::info::{self, PEX_INFO, Pex};

/// The manifest's file name at the root of a seeded PEX_ROOT.
pub const MANIFEST_NAME: &str = ".pexinit-seed.json";
/// Bumped when a reader of an older format would misread the file. A full seed is still
/// written as format 1 (older pexinit reads it right); a slim seed is format 2: an older
/// reader would let pex's bootstrap run against a seed that lacks pex's runtime.
pub const FORMAT: u32 = 2;
/// The format of a seed that is not slim.
pub const FORMAT_FULL: u32 = 1;

/// How a seeded PEX runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// pex unzips (or for loose PEXes, runs in place) and imports from the cache.
    Zipapp,
    /// A `--venv` PEX: pex execs a venv under `PEX_ROOT/venvs`.
    Venv,
    /// A zipapp built with `--include-tools` run with `PEX_VENV=1` (config `venv: true`).
    VenvByEnv,
}

impl RunMode {
    pub fn is_venv(self) -> bool {
        matches!(self, RunMode::Venv | RunMode::VenvByEnv)
    }
}

/// How pex's bootstrap execs a venv; it changed between pex generations (see
/// `crate::run::fast_path` for each generation's argv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStyle {
    /// pex ≤ 2.27: `<venv>/bin/python [python args] [-sE] <venv>/pex ARGS`.
    VenvPython,
    /// Newer pex: the interpreter and flag on the first line of `<venv>/pex`.
    Shebang,
}

/// A seeded venv, relative to PEX_ROOT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenvEntry {
    /// `venvs/<N>/<pex hash>/<interpreter hash>`.
    pub dir: PathBuf,
    pub exec_style: ExecStyle,
    /// `venv_hermetic_scripts` from PEX-INFO: pex ≤ 2.27 adds `-sE`.
    pub hermetic: bool,
    /// The venv's `__main__.py` honours `_PEX_CACHE_SET_LAST_ACCESS` (newer pex): the
    /// fast path sets it to 0 so a read-only seed needs no write at all.
    pub last_access_env: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The PEX's file name (older seeds: its path at seed time). Only the name is kept, so
    /// the seed's bytes do not depend on the directory it was built in; `run` finds a
    /// seeded PEX by it when the file itself was left out of the image.
    pub pex: PathBuf,
    /// sha256 of the zipapp file, or of PEX-INFO for packed and loose directories
    /// (pex_hash already covers their content; hashing a whole tree costs too much).
    pub sha256: String,
    pub digest_of: DigestOf,
    pub pex_hash: String,
    pub pex_version: Option<String>,
    pub layout: Layout,
    pub mode: RunMode,
    /// PEX-INFO `inject_python_args`: pex puts them between interpreter and script.
    #[serde(default)]
    pub inject_python_args: Vec<String>,
    /// `unzipped_pexes/<N>/<pex hash>` for zipapp and packed PEXes.
    pub unzipped: Option<PathBuf>,
    pub venv: Option<VenvEntry>,
    /// The launcher that starts a zipapp, packed or loose PEX without pex's bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<LauncherEntry>,
    /// Why a non-venv PEX has no launcher (pex does something a launcher cannot replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_launcher: Option<String>,
}

/// How the launcher starts the app, as pex's `PEX.execute()` would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// `module:function` (also a console script, resolved at seed time): imported, called.
    Callable,
    /// `module`: run as `__main__` by runpy.
    Module,
    /// No entry point: the PEX is an interpreter (only `-m MODULE` is replayed).
    Interpreter,
}

/// A seeded launcher, relative to PEX_ROOT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherEntry {
    /// `.pexinit/launch/<pex hash>-<layout>.py`.
    pub file: PathBuf,
    pub entry: EntryKind,
}

/// The PEX's layout, as recorded (mirrors [`info::Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Zipapp,
    Packed,
    Loose,
}

impl From<info::Layout> for Layout {
    fn from(layout: info::Layout) -> Self {
        match layout {
            info::Layout::Zipapp => Layout::Zipapp,
            info::Layout::Packed => Layout::Packed,
            info::Layout::Loose => Layout::Loose,
        }
    }
}

impl From<Layout> for info::Layout {
    fn from(layout: Layout) -> Self {
        match layout {
            Layout::Zipapp => info::Layout::Zipapp,
            Layout::Packed => info::Layout::Packed,
            Layout::Loose => info::Layout::Loose,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestOf {
    File,
    PexInfo,
}

/// Who the seed was made usable for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Owner of every file (None: left as created, i.e. the seeding user).
    pub uid: Option<u32>,
    pub gid: u32,
    /// Group permissions copied from the user's (the OpenShift convention).
    pub group_like_user: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The physical PEX_ROOT the seed was built at. Venvs embed it in shebangs and
    /// links, so the seed works only when this path reaches it (directly or as a farm).
    pub pex_root: PathBuf,
    /// realpath of the interpreter: part of pex's venv hash.
    pub python: PathBuf,
    pub source_date_epoch: i64,
    pub ownership: Ownership,
    /// `.pexinit/launch/bytecode.py` when the seed compiled the scripts the fast path
    /// starts (Python ≥ 3.11): they are started through it, from their bytecode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytecode_launcher: Option<PathBuf>,
    pub entries: Vec<Entry>,
    /// `pexinit seed --slim`: only what the fast path reads is kept (no pex runtime, no
    /// interpreter cache), so pex's bootstrap must never run against this seed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slim: bool,
    /// Set by `pexinit prime` when it published this tree without flushing it to disk:
    /// the kernel boot it did so in. After a restart of the machine the tree may have
    /// lost data (see `prime`'s durability); `run` warns. Never set in a seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unflushed_boot_id: Option<String>,
}

impl Manifest {
    /// The first path of an entry that could lead out of the seed: every path `run` and
    /// `prime` join to the seed must be relative and free of `..`. None when all stay in.
    pub fn escaping_path(&self) -> Option<&Path> {
        self.entry_paths()
            .chain(self.bytecode_launcher.as_deref())
            .find(|p| !stays_inside(p))
    }

    /// Every path of an entry, relative to the seed.
    fn entry_paths(&self) -> impl Iterator<Item = &Path> {
        self.entries
            .iter()
            .flat_map(|e| {
                e.unzipped
                    .iter()
                    .chain(e.venv.as_ref().map(|v| &v.dir))
                    .chain(e.launcher.as_ref().map(|l| &l.file))
            })
            .map(PathBuf::as_path)
    }

    /// Checks the manifest against the seed it was read from (`seed`, physical), for a
    /// command that copies the seed elsewhere (`prime`):
    /// - every entry path resolves beneath the seed: links inside it are followed, and
    ///   none on the way may lead out of it or dangle;
    /// - `pex_root` is the path the seed was built for. A seed may sit elsewhere than
    ///   that path (an image keeps it at another path, a volume is mounted elsewhere), so
    ///   it is checked against what the seed holds: the `#!` line of every listed venv's
    ///   `pex` script names it.
    ///
    /// Returns the path the seed's content names, to relocate from: `pex_root`, or None
    /// when the seed lists no venv (nothing in it names its build path) and is not at
    /// `pex_root` (the path is then unproven, and nothing needs it). The error is one
    /// line saying what does not hold.
    pub fn built_for(&self, seed: &Path) -> Result<Option<&Path>, String> {
        if let Some(bad) = self.escaping_path() {
            return Err(format!(
                "entry path {} does not stay inside the seed",
                bad.display()
            ));
        }
        let root = CacheRoot::open(seed).map_err(|e| format!("{}: {e}", seed.display()))?;
        for rel in self.entry_paths() {
            if let Err(e) = root.resolves_beneath(rel) {
                return Err(format!(
                    "entry path {} does not resolve beneath the seed ({})",
                    rel.display(),
                    beneath_failure(e)
                ));
            }
        }
        // Compared as bytes below: spelled exactly as its components (no `.`, no `//`).
        let normal: PathBuf = self.pex_root.components().collect();
        let absolute = self.pex_root.is_absolute()
            && normal.as_os_str() == self.pex_root.as_os_str()
            && self
                .pex_root
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !absolute {
            return Err(format!(
                "pex_root {} is not an absolute path without `.` or `..`",
                self.pex_root.display()
            ));
        }
        let mut named = self.pex_root.as_os_str() == seed.as_os_str();
        for venv in self.entries.iter().filter_map(|e| e.venv.as_ref()) {
            let script = venv.dir.join("pex");
            let head = read_head(&root, &script, SCRIPT_HEAD)
                .map_err(|e| format!("cannot read the venv script {}: {e}", script.display()))?;
            if !names_root(&head, self.pex_root.as_os_str().as_bytes()) {
                return Err(format!(
                    "pex_root {} is not the path the seed was built for (the venv script {} names another)",
                    self.pex_root.display(),
                    script.display()
                ));
            }
            named = true;
        }
        Ok(named.then_some(self.pex_root.as_path()))
    }

    /// The entry for a PEX with this hash and layout, if seeded. The layouts of one
    /// build share a pex_hash but not their cache entries or launchers.
    pub fn entry(&self, pex_hash: &str, layout: Layout) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.pex_hash == pex_hash && e.layout == layout)
    }

    /// The entries seeded from a PEX file of this name (its file name at seed time).
    pub fn entries_named<'m>(
        &'m self,
        name: &'m std::ffi::OsStr,
    ) -> impl Iterator<Item = &'m Entry> {
        self.entries
            .iter()
            .filter(move |e| e.pex.file_name() == Some(name))
    }

    /// Serialized form: stable key order and a final newline, so equal manifests are
    /// equal bytes (the seed must be reproducible).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serializes to JSON");
        bytes.push(b'\n');
        bytes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no seed manifest {0}; build the seed with `pexinit seed --pex-root DIR APP.pex`")]
    Missing(PathBuf),
    #[error("cannot read seed manifest {path}: {message}; rebuild the seed with `pexinit seed`")]
    Invalid { path: PathBuf, message: String },
}

/// How much of a venv's `pex` script is read for the root its `#!` line names (pex
/// writes a `/bin/sh` preamble naming it when the path is too long for a `#!` line).
const SCRIPT_HEAD: usize = 4096;

fn beneath_failure(e: Errno) -> String {
    match e {
        Errno::EXDEV => "a link on the way leads out of it".into(),
        Errno::ENOENT => "it does not exist".into(),
        Errno::ELOOP => "a symlink loop".into(),
        other => io::Error::from(other).to_string(),
    }
}

/// The first `limit` bytes of the regular file `rel` below `root`, reached without
/// leaving it.
fn read_head(root: &CacheRoot, rel: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let fd = root.open_file_beneath(rel).map_err(beneath_failure)?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut head = Vec::with_capacity(limit);
    file.take(limit as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    Ok(head)
}

/// Whether `bytes` names `root` as a whole path: `root` followed by `/venvs/`, and not
/// preceded by something that continues a path (`/srv/pex` is not in `/x/srv/pex`).
fn names_root(bytes: &[u8], root: &[u8]) -> bool {
    let mut needle = root.to_vec();
    needle.extend_from_slice(b"/venvs/");
    bytes.windows(needle.len()).enumerate().any(|(at, window)| {
        window == needle.as_slice()
            && (at == 0
                || !(bytes[at - 1] == b'/'
                    || bytes[at - 1].is_ascii_alphanumeric()
                    || matches!(bytes[at - 1], b'.' | b'_' | b'-' | b'+' | b'~')))
    })
}

/// Whether `rel` joined to a directory stays inside it: relative, only plain names.
fn stays_inside(rel: &Path) -> bool {
    rel.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Reads `DIR/.pexinit-seed.json`.
pub fn read(seed_dir: &Path) -> Result<Manifest, ManifestError> {
    read_with_bytes(seed_dir).map(|(manifest, _)| manifest)
}

/// Reads `DIR/.pexinit-seed.json`, and returns the bytes it was parsed from (what a
/// prime records the digest of). Only a regular file of at most
/// [`bounded::SEED_MANIFEST_LIMIT`] bytes is read: a fifo or a device in its place is
/// refused at once.
pub fn read_with_bytes(seed_dir: &Path) -> Result<(Manifest, Vec<u8>), ManifestError> {
    let path = seed_dir.join(MANIFEST_NAME);
    let text = match bounded::read(&path, bounded::SEED_MANIFEST_LIMIT, false) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ManifestError::Missing(path)),
        Err(e) => {
            return Err(ManifestError::Invalid {
                path,
                message: e.to_string(),
            });
        }
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ManifestError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if let Some(bad) = manifest.escaping_path() {
        return Err(ManifestError::Invalid {
            path,
            message: format!("entry path {} does not stay inside the seed", bad.display()),
        });
    }
    if !(FORMAT_FULL..=FORMAT).contains(&manifest.format) {
        return Err(ManifestError::Invalid {
            path,
            message: format!(
                "format {} is not one this pexinit reads ({FORMAT_FULL} to {FORMAT})",
                manifest.format
            ),
        });
    }
    Ok((manifest, text))
}

/// Writes the manifest atomically: a reader (or a crash) never sees half a file.
pub fn write(seed_dir: &Path, manifest: &Manifest) -> io::Result<()> {
    write_atomic(seed_dir, MANIFEST_NAME, &manifest.to_bytes(), 0o644)
}

/// Writes `dir/name` atomically (see [`crate::fs::atomic`]).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    crate::fs::atomic::write(&dir.join(name), bytes, mode)
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_reader(File::open(path)?)
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The digest recorded for a PEX: the file for a zipapp, PEX-INFO for a directory.
pub fn pex_digest(pex: &Pex) -> io::Result<(String, DigestOf)> {
    match pex.layout {
        info::Layout::Zipapp => Ok((sha256_file(&pex.path)?, DigestOf::File)),
        info::Layout::Packed | info::Layout::Loose => {
            Ok((sha256_file(&pex.path.join(PEX_INFO))?, DigestOf::PexInfo))
        }
    }
}

/// A member of the PEX (`PEX-INFO`, `__main__.py`) as bytes: from the zip, or the file.
pub fn read_member(pex: &Pex, name: &str) -> io::Result<Vec<u8>> {
    match pex.layout {
        info::Layout::Zipapp => {
            let file = io::BufReader::new(File::open(&pex.path)?);
            let mut archive = zip::ZipArchive::new(file).map_err(io::Error::other)?;
            let mut entry = archive.by_name(name).map_err(io::Error::other)?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            Ok(bytes)
        }
        info::Layout::Packed | info::Layout::Loose => fs::read(pex.path.join(name)),
    }
}

/// The PEX-INFO keys the seed and the fast path need beyond [`crate::pex::info::PexInfo`].
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeInfo {
    /// PEX-INFO as written, for the seed's launcher capture.
    #[serde(skip)]
    pub raw: serde_json::Value,
    #[serde(default)]
    pub includes_tools: bool,
    #[serde(default)]
    pub inject_python_args: Vec<String>,
    #[serde(default = "yes")]
    pub venv_hermetic_scripts: bool,
    /// A non-empty pex_path changes the venv hash and the bootstrap's sys.path.
    #[serde(default)]
    pub pex_path: serde_json::Value,
}

fn yes() -> bool {
    true
}

impl RuntimeInfo {
    /// The PEX-INFO [`crate::pex::info::open`] read, seen for the keys seed needs.
    pub fn read(pex: &Pex) -> io::Result<RuntimeInfo> {
        let mut info = RuntimeInfo::deserialize(&pex.raw_info).map_err(io::Error::other)?;
        info.raw = pex.raw_info.clone();
        Ok(info)
    }

    pub fn has_pex_path(&self) -> bool {
        match &self.pex_path {
            serde_json::Value::Null => false,
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            _ => true,
        }
    }
}

/// Which exec style the PEX's own bootstrap uses: pex ≤ 2.27 passes
/// `hermetic_venv_scripts=` to `boot(...)` and execs `<venv>/bin/python`; newer pex
/// passes `hermetic_boot=` and execs the interpreter named by `<venv>/pex`'s `#!` line.
pub fn exec_style(main_py: &[u8]) -> ExecStyle {
    if contains(main_py, b"hermetic_venv_scripts=") {
        ExecStyle::VenvPython
    } else {
        ExecStyle::Shebang
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_named_only_as_a_whole_path() {
        let root = b"/srv/pex";
        assert!(names_root(
            b"#!/srv/pex/venvs/4/s/ab/venv/bin/python -I",
            root
        ));
        assert!(names_root(b"#!/bin/sh\n'/srv/pex/venvs/4/x'", root));
        assert!(!names_root(b"#!/x/srv/pex/venvs/4/s/ab", root));
        assert!(!names_root(b"#!/srv/pex2/venvs/4/s/ab", root));
        assert!(!names_root(b"#!/srv/pex/installed_wheels/", root));
    }

    #[test]
    fn entry_paths_must_stay_inside_the_seed() {
        for (rel, inside) in [
            ("venvs/4/abc/def", true),
            (".pexinit/launch/abc-zipapp.py", true),
            ("../outside", false),
            ("/etc", false),
            ("venvs/../../outside", false),
            ("./venvs", false),
        ] {
            assert_eq!(stays_inside(Path::new(rel)), inside, "{rel}");
        }
    }
}
