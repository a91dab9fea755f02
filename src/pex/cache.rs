//! The PEX_ROOT model: where pex keeps which entries, and a walker over them that never
//! follows a symlink.
//!
//! pex builds every cache entry as an "atomic directory": it populates a work dir
//! `<entry>.lck.work` (or `<entry>.<uuid>.work`) under the lock file
//! `<parent>/.<entry>.atomic_directory.lck`, then renames it into place. Afterwards it
//! trusts the entry blindly: an existing entry is reused as is. So the unit pexinit
//! judges, heals or quarantines is the entry, and it takes the entry's lock to do so.
//!
//! Layout (every cache-format version directory `0`, `1`, `3`, `4`… alike):
//! ```text
//! unzipped_pexes/V/<pex hash>                  links to bootstraps, user_code, installed_wheels
//! bootstraps/V/<hash>   user_code/V/<hash>     plain files
//! installed_wheels/V/<hash>/<wheel file name>  plain files, or a link `../<hash2>/<wheel>`
//! venvs/V/<pex hash>/<interpreter hash>        site-packages links to installed_wheels
//! venvs/V/s/<8 hex>                            `venv` link to a venv entry (the short path)
//! ```
//! `interpreters/` and `isolated/` hold no links; they are not walked.
//!
//! The walker opens every directory with `O_NOFOLLOW` relative to its parent's file
//! descriptor, so a symlink planted anywhere (even while we walk) is seen as a link and
//! reported, never entered. It reads directories with getdents64 and uses the kernel's
//! `d_type`, so it costs no stat per file: this runs on every `pexinit run`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use crate::fs::dir::{self, FileKind, LIST_BUFFER, lstat_kind, open_dir, read_dir};

/// Deeper than any real pex entry (a venv's deepest package paths are ~20 levels below
/// PEX_ROOT); bounds the walk's open file descriptors on a hostile cache.
pub const MAX_DEPTH: usize = 64;

/// Names pexinit gives its own temporary links while healing (see `repair`): a crash
/// can leave one behind, and the next repair removes it.
pub const HEAL_TMP_PREFIX: &str = ".pexinit-heal.";

/// Where quarantined entries go, inside PEX_ROOT (pex never looks there).
pub const QUARANTINE_DIR: &str = ".pexinit-quarantine";

/// What kind of cache entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    UnzippedPex,
    Bootstrap,
    UserCode,
    InstalledWheel,
    Venv,
    /// `venvs/V/s/<8 hex>`: the short path whose `venv` link points at a venv.
    VenvShortLink,
}

/// The top-level directories pex links between, and how many levels below each the
/// entries sit.
const TOP_DIRS: [(&str, usize); 5] = [
    ("unzipped_pexes", 2),
    ("bootstraps", 2),
    ("user_code", 2),
    ("installed_wheels", 3),
    ("venvs", 3),
];

/// Whether `name` is a cache-format version directory (`0`, `1`, `3`, `4`…). pex ≤ 2.17
/// had no version level: its entries (40- and 64-hex hashes) sit right below the
/// top-level directory, one level higher.
pub fn is_version_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes.len() <= 3 && bytes.iter().all(u8::is_ascii_digit)
}

/// Whether `name` is one of the top-level directories the walker covers: a link target
/// inside PEX_ROOT must start with one of them.
pub fn is_linked_top_dir(name: &OsStr) -> bool {
    TOP_DIRS.iter().any(|(top, _)| name == OsStr::new(top))
}

impl EntryKind {
    /// The kind of the entry at `rel` (relative to PEX_ROOT, exactly entry depth, with
    /// or without the version level).
    fn of(rel: &Path) -> Option<EntryKind> {
        let mut parts = rel.iter();
        let top = parts.next()?;
        let second = parts.next()?;
        let third = if is_version_name(second) {
            parts.next()
        } else {
            Some(second)
        };
        Some(match top.as_bytes() {
            b"unzipped_pexes" => EntryKind::UnzippedPex,
            b"bootstraps" => EntryKind::Bootstrap,
            b"user_code" => EntryKind::UserCode,
            b"installed_wheels" => EntryKind::InstalledWheel,
            b"venvs" if third == Some(OsStr::new("s")) => EntryKind::VenvShortLink,
            b"venvs" => EntryKind::Venv,
            _ => return None,
        })
    }
}

/// Something the walker could not look into; reported, never guessed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A file (or device, socket…) where pex keeps a directory.
    NotADirectory,
    /// A symlink where pex keeps a real directory: not followed.
    SymlinkInsteadOfDirectory,
    /// The directory cannot be opened or read (EACCES for a non-root repair, EIO…).
    Unreadable { error: String },
    /// Nested deeper than [`MAX_DEPTH`]: not walked further.
    TooDeep,
}

/// An entry the walker found, at entry depth below a top-level directory.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub kind: EntryKind,
    /// Relative to PEX_ROOT.
    pub rel: &'a Path,
    pub file_kind: FileKind,
}

/// A symlink found inside an entry (or the entry itself, when it is a link).
#[derive(Debug, Clone, Copy)]
pub struct LinkRef<'a> {
    /// The directory holding the link, opened without following links.
    pub dir: BorrowedFd<'a>,
    pub name: &'a OsStr,
    /// The link's path relative to PEX_ROOT.
    pub rel: &'a Path,
}

/// Receives what the walker finds, in depth-first order; an entry's links arrive
/// between its `entry` and the next `entry`.
pub trait Visitor {
    fn entry(&mut self, entry: &EntryRef<'_>);
    fn link(&mut self, entry: &EntryRef<'_>, link: &LinkRef<'_>);
    /// A temporary link a crashed repair left behind.
    fn leftover(&mut self, entry: &EntryRef<'_>, rel: &Path);
    fn problem(&mut self, rel: &Path, problem: Problem);
    /// How many directory entries were read, for reports.
    fn count(&mut self, _entries: usize) {}
}

/// A PEX_ROOT opened once: every later lookup is relative to this descriptor.
#[derive(Debug)]
pub struct CacheRoot {
    path: PathBuf,
    fd: OwnedFd,
}

impl CacheRoot {
    /// Opens the physical directory `path`. The caller resolves symlinks first (the
    /// last component is opened with O_NOFOLLOW, so a link there is an error).
    pub fn open(path: &Path) -> io::Result<CacheRoot> {
        let fd = open_dir(nix::fcntl::AT_FDCWD, path)?;
        Ok(CacheRoot {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `rel` below the root, refusing any symlink on the way.
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        dir::open_dir_beneath(self.fd(), rel)
    }

    /// Whether `rel` resolves to something that exists without leaving PEX_ROOT at any
    /// step. Links inside the root are followed by the kernel; any `..` above the root
    /// or absolute link fails with EXDEV, a dangling one with ENOENT, a loop with ELOOP.
    pub fn resolves_beneath(&self, rel: &Path) -> Result<(), Errno> {
        dir::resolves_beneath(self.fd(), rel)
    }

    /// Opens the file `rel` below the root for reading, following only links that stay
    /// inside the root (as [`CacheRoot::resolves_beneath`]); never blocks on a fifo.
    pub fn open_file_beneath(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        dir::open_file_beneath(self.fd(), rel)
    }

    /// Walks every entry of the linked top-level directories.
    pub fn walk(&self, visitor: &mut dyn Visitor) {
        let mut walker = Walker {
            visitor,
            rel: PathBuf::new(),
            buf: vec![0; LIST_BUFFER],
        };
        for (top, entry_depth) in TOP_DIRS {
            walker.rel.push(top);
            if let Some(fd) = walker.open_child(self.fd(), OsStr::new(top), true) {
                walker.walk_versions(fd.as_fd(), entry_depth - 1);
            }
            walker.rel.pop();
        }
    }

    /// Walks only the entries one PEX runs from: `unzipped_pexes/V/<pex_hash>` and
    /// `venvs/V/<pex_hash>/*`, in every cache-format version. The links a PEX follows all
    /// start there, so a run checks what it uses at a cost independent of how many
    /// other PEX files share the cache.
    pub fn walk_pex(&self, pex_hash: &str, visitor: &mut dyn Visitor) {
        let hash = Path::new(pex_hash);
        if hash.components().count() != 1 || !is_entry_name(hash.as_os_str()) {
            return; // not a plain name: nothing pex would have written
        }
        let mut buf = vec![0; LIST_BUFFER];
        for top in ["unzipped_pexes", "venvs"] {
            let top_fd = match self.open_dir(Path::new(top)) {
                Ok(fd) => fd,
                Err(e) => {
                    self.report_not_a_dir(Path::new(top), e, visitor);
                    continue;
                }
            };
            let Ok(versions) = read_dir(top_fd.as_fd(), &mut buf) else {
                continue;
            };
            // pex ≤ 2.17: `<top>/<pex_hash>` with no version level.
            let unversioned = Some((OsString::new(), FileKind::Directory));
            for (version, kind) in versions.into_iter().chain(unversioned) {
                if !(version.is_empty() || is_version_name(&version)) {
                    continue;
                }
                if kind != FileKind::Directory {
                    // pex would go through it to reach its entries of that version.
                    let rel = Path::new(top).join(&version);
                    self.report_not_a_dir(&rel, Errno::ENOTDIR, visitor);
                    continue;
                }
                let at_hash = Path::new(top).join(&version).join(hash);
                let parent = Path::new(top).join(&version);
                let Ok(parent_fd) = self.open_dir(&parent) else {
                    continue;
                };
                let Some(hash_kind) = lstat_kind(parent_fd.as_fd(), hash.as_os_str()) else {
                    continue; // this version holds nothing of this PEX
                };
                if top == "unzipped_pexes" {
                    self.walk_entry(&at_hash, visitor);
                    continue;
                }
                // `venvs/V/<pex_hash>` holds the entries, one per interpreter: a link or
                // a file there is what pex would go through to reach them.
                let hash_fd = match hash_kind {
                    FileKind::Directory => self.open_dir(&at_hash),
                    _ => Err(Errno::ENOTDIR),
                };
                let hash_fd = match hash_fd {
                    Ok(fd) => fd,
                    Err(e) => {
                        self.report_not_a_dir(&at_hash, e, visitor);
                        continue;
                    }
                };
                let Ok(venvs) = read_dir(hash_fd.as_fd(), &mut buf) else {
                    continue;
                };
                for (venv, _) in venvs.into_iter().filter(|(n, _)| is_entry_name(n)) {
                    self.walk_entry(&at_hash.join(venv), visitor);
                }
            }
        }
    }

    /// Reports `rel`, a directory pex goes through, when a link or a file stands there
    /// (`e` from opening it without following links); a missing one is no problem.
    fn report_not_a_dir(&self, rel: &Path, e: Errno, visitor: &mut dyn Visitor) {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return;
        };
        if e == Errno::ENOENT {
            return;
        }
        let Ok(parent_fd) = self.open_dir(parent) else {
            return;
        };
        let problem = match lstat_kind(parent_fd.as_fd(), name) {
            None => return,
            Some(FileKind::Directory) => Problem::Unreadable {
                error: io::Error::from(e).to_string(),
            },
            Some(FileKind::Symlink) => Problem::SymlinkInsteadOfDirectory,
            Some(FileKind::File | FileKind::Other) => Problem::NotADirectory,
        };
        visitor.problem(rel, problem);
    }

    /// Walks the one entry at `rel` (used under the entry's lock, to re-judge it).
    /// Returns false when the entry no longer exists.
    pub fn walk_entry(&self, rel: &Path, visitor: &mut dyn Visitor) -> bool {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return false;
        };
        let Ok(parent_fd) = self.open_dir(parent) else {
            return false;
        };
        let Some(file_kind) = lstat_kind(parent_fd.as_fd(), name) else {
            return false;
        };
        let Some(kind) = EntryKind::of(rel) else {
            return false;
        };
        let mut walker = Walker {
            visitor,
            rel: rel.to_path_buf(),
            buf: vec![0; LIST_BUFFER],
        };
        walker.visit_entry(parent_fd.as_fd(), name, kind, file_kind);
        true
    }
}

/// Names at entry level pex is still working on, or that are lock files or ours: not
/// entries.
fn is_entry_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !(bytes.starts_with(b".")
        || bytes.ends_with(b".work")
        // pex shortens long work dir names to `<prefix>...<sha256>`.
        || bytes.windows(3).any(|w| w == b"..."))
}

struct Walker<'v> {
    visitor: &'v mut dyn Visitor,
    /// The current path relative to PEX_ROOT.
    rel: PathBuf,
    /// getdents64 buffer, reused for every directory.
    buf: Vec<u8>,
}

impl Walker<'_> {
    /// Opens directory `name` in `dir` without following a link; reports what stands
    /// in the way. `at_rel` is `self.rel` already pointing at `name`.
    fn open_child(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        missing_ok: bool,
    ) -> Option<OwnedFd> {
        match open_dir(dir, name) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT) if missing_ok => None,
            // With O_NOFOLLOW | O_DIRECTORY a symlink gives ELOOP or ENOTDIR: ask which.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let problem = match lstat_kind(dir, name) {
                    Some(FileKind::Symlink) => Problem::SymlinkInsteadOfDirectory,
                    _ => Problem::NotADirectory,
                };
                self.visitor.problem(&self.rel, problem);
                None
            }
            Err(e) => {
                self.visitor.problem(
                    &self.rel,
                    Problem::Unreadable {
                        error: io::Error::from(e).to_string(),
                    },
                );
                None
            }
        }
    }

    /// Lists `dir`, reporting a read error against `self.rel`.
    fn list(&mut self, dir: BorrowedFd<'_>) -> Option<Vec<(OsString, FileKind)>> {
        match read_dir(dir, &mut self.buf) {
            Ok(names) => Some(names),
            Err(e) => {
                self.visitor.problem(
                    &self.rel,
                    Problem::Unreadable {
                        error: e.to_string(),
                    },
                );
                None
            }
        }
    }

    /// The children of a top-level directory: version directories, below which entries
    /// sit `levels` deep, or (pex ≤ 2.17) hashes one level higher.
    fn walk_versions(&mut self, top: BorrowedFd<'_>, levels: usize) {
        let Some(names) = self.list(top) else { return };
        self.visitor.count(names.len());
        let (versions, unversioned): (Vec<_>, Vec<_>) = names
            .into_iter()
            .partition(|(name, _)| is_version_name(name));
        self.walk_names(top, versions, levels);
        self.walk_names(top, unversioned, levels - 1);
    }

    /// Descends `levels` more directory levels (versions, hashes) down to the entries.
    fn walk_levels(&mut self, dir: BorrowedFd<'_>, levels: usize) {
        let Some(names) = self.list(dir) else { return };
        self.visitor.count(names.len());
        self.walk_names(dir, names, levels);
    }

    fn walk_names(&mut self, dir: BorrowedFd<'_>, names: Vec<(OsString, FileKind)>, levels: usize) {
        for (name, file_kind) in names {
            if levels == 0
                && file_kind == FileKind::Symlink
                && let Some(entry) = name.as_bytes().strip_prefix(HEAL_TMP_PREFIX.as_bytes())
            {
                self.entry_level_leftover(&name, OsStr::from_bytes(entry));
                continue;
            }
            if !is_entry_name(&name) {
                continue;
            }
            self.rel.push(&name);
            if levels == 0 {
                if let Some(kind) = EntryKind::of(&self.rel) {
                    self.visit_entry(dir, &name, kind, file_kind);
                }
            } else {
                match file_kind {
                    FileKind::Directory => {
                        if let Some(fd) = self.open_child(dir, &name, true) {
                            self.walk_levels(fd.as_fd(), levels - 1);
                        }
                    }
                    FileKind::Symlink => self
                        .visitor
                        .problem(&self.rel, Problem::SymlinkInsteadOfDirectory),
                    FileKind::File | FileKind::Other => {
                        self.visitor.problem(&self.rel, Problem::NotADirectory)
                    }
                }
            }
            self.rel.pop();
        }
    }

    /// A temporary link left next to an entry that is itself a link (an
    /// `installed_wheels` alias): it belongs to, and is removed under the lock of, the
    /// entry it was meant to replace.
    fn entry_level_leftover(&mut self, name: &OsStr, entry_name: &OsStr) {
        let entry_rel = self.rel.join(entry_name);
        let leftover_rel = self.rel.join(name);
        if let Some(kind) = EntryKind::of(&entry_rel) {
            let entry = EntryRef {
                kind,
                rel: &entry_rel,
                file_kind: FileKind::Symlink,
            };
            self.visitor.leftover(&entry, &leftover_rel);
        }
    }

    /// One entry: `self.rel` points at it; `parent` holds it.
    fn visit_entry(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        kind: EntryKind,
        file_kind: FileKind,
    ) {
        let rel = self.rel.clone();
        let entry = EntryRef {
            kind,
            rel: &rel,
            file_kind,
        };
        self.visitor.entry(&entry);
        match file_kind {
            FileKind::Symlink => {
                let link = LinkRef {
                    dir: parent,
                    name,
                    rel: &rel,
                };
                self.visitor.link(&entry, &link);
            }
            FileKind::Directory => {
                if let Some(fd) = self.open_child(parent, name, true) {
                    self.walk_tree(&entry, fd.as_fd(), rel.iter().count());
                }
            }
            FileKind::File | FileKind::Other => {}
        }
    }

    /// Everything below an entry directory, depth-first.
    fn walk_tree(&mut self, entry: &EntryRef<'_>, dir: BorrowedFd<'_>, depth: usize) {
        if depth >= MAX_DEPTH {
            self.visitor.problem(&self.rel, Problem::TooDeep);
            return;
        }
        let Some(names) = self.list(dir) else { return };
        self.visitor.count(names.len());
        for (name, file_kind) in names {
            self.rel.push(&name);
            match file_kind {
                FileKind::Symlink if name.as_bytes().starts_with(HEAL_TMP_PREFIX.as_bytes()) => {
                    self.visitor.leftover(entry, &self.rel);
                }
                FileKind::Symlink => {
                    let link = LinkRef {
                        dir,
                        name: &name,
                        rel: &self.rel,
                    };
                    self.visitor.link(entry, &link);
                }
                FileKind::Directory => {
                    if let Some(fd) = self.open_child(dir, &name, true) {
                        self.walk_tree(entry, fd.as_fd(), depth + 1);
                    }
                }
                FileKind::File | FileKind::Other => {}
            }
            self.rel.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[derive(Default)]
    struct Seen {
        entries: Vec<(EntryKind, PathBuf, FileKind)>,
        links: Vec<PathBuf>,
        problems: Vec<(PathBuf, Problem)>,
        leftovers: Vec<PathBuf>,
    }

    impl Visitor for Seen {
        fn entry(&mut self, e: &EntryRef<'_>) {
            self.entries
                .push((e.kind, e.rel.to_path_buf(), e.file_kind));
        }
        fn link(&mut self, _: &EntryRef<'_>, l: &LinkRef<'_>) {
            self.links.push(l.rel.to_path_buf());
        }
        fn leftover(&mut self, _: &EntryRef<'_>, rel: &Path) {
            self.leftovers.push(rel.to_path_buf());
        }
        fn problem(&mut self, rel: &Path, p: Problem) {
            self.problems.push((rel.to_path_buf(), p));
        }
    }

    #[test]
    fn walks_entries_of_every_version_and_never_enters_links() {
        let t = tempfile::tempdir().unwrap();
        let r = fs::canonicalize(t.path()).unwrap();
        let outside = r.join("outside");
        fs::create_dir_all(outside.join("inner")).unwrap();
        fs::create_dir_all(r.join("root/unzipped_pexes/0/aaa/.deps")).unwrap();
        fs::create_dir_all(r.join("root/unzipped_pexes/4/bbb")).unwrap();
        fs::create_dir_all(r.join("root/unzipped_pexes/0/ccc.lck.work")).unwrap();
        fs::create_dir_all(r.join("root/venvs/1/s/1234abcd")).unwrap();
        fs::create_dir_all(r.join("root/interpreters/0/x")).unwrap();
        symlink("x", r.join("root/interpreters/0/x/ignored")).unwrap();
        symlink(
            "../../../x",
            r.join("root/unzipped_pexes/0/aaa/.deps/w.whl"),
        )
        .unwrap();
        symlink(&outside, r.join("root/unzipped_pexes/0/aaa/dir")).unwrap();
        symlink(&outside, r.join("root/bootstraps")).unwrap();
        symlink("../../x", r.join("root/venvs/1/s/1234abcd/venv")).unwrap();
        symlink("t", r.join("root/unzipped_pexes/4/bbb/.pexinit-heal.x")).unwrap();
        fs::write(
            r.join("root/unzipped_pexes/0/.aaa.atomic_directory.lck"),
            b"",
        )
        .unwrap();

        let root = CacheRoot::open(&r.join("root")).unwrap();
        let mut seen = Seen::default();
        root.walk(&mut seen);
        let mut entries: Vec<_> = seen.entries.iter().map(|e| (e.0, e.1.clone())).collect();
        entries.sort();
        assert_eq!(
            entries,
            [
                (
                    EntryKind::UnzippedPex,
                    PathBuf::from("unzipped_pexes/0/aaa")
                ),
                (
                    EntryKind::UnzippedPex,
                    PathBuf::from("unzipped_pexes/4/bbb")
                ),
                (
                    EntryKind::VenvShortLink,
                    PathBuf::from("venvs/1/s/1234abcd")
                ),
            ]
        );
        seen.links.sort();
        assert_eq!(
            seen.links,
            [
                PathBuf::from("unzipped_pexes/0/aaa/.deps/w.whl"),
                PathBuf::from("unzipped_pexes/0/aaa/dir"),
                PathBuf::from("venvs/1/s/1234abcd/venv"),
            ]
        );
        assert_eq!(
            seen.problems,
            [(
                PathBuf::from("bootstraps"),
                Problem::SymlinkInsteadOfDirectory
            )]
        );
        assert_eq!(
            seen.leftovers,
            [PathBuf::from("unzipped_pexes/4/bbb/.pexinit-heal.x")]
        );
    }

    #[test]
    fn files_where_directories_belong_and_deep_trees_are_problems() {
        let t = tempfile::tempdir().unwrap();
        let r = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(r.join("user_code")).unwrap();
        fs::write(r.join("user_code/0"), b"").unwrap();
        fs::create_dir_all(r.join("bootstraps/0")).unwrap();
        fs::write(r.join("bootstraps/0/abc"), b"").unwrap();
        let mut deep = r.join("unzipped_pexes/0/abc");
        for _ in 0..MAX_DEPTH {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        symlink("/etc/passwd", deep.join("evil")).unwrap();

        let root = CacheRoot::open(&r).unwrap();
        let mut seen = Seen::default();
        root.walk(&mut seen);
        assert!(seen.links.is_empty(), "{:?}", seen.links);
        let kinds: Vec<_> = seen.problems.iter().map(|p| p.1.clone()).collect();
        assert!(kinds.contains(&Problem::NotADirectory), "{kinds:?}");
        assert!(kinds.contains(&Problem::TooDeep), "{kinds:?}");
        assert!(seen.entries.contains(&(
            EntryKind::Bootstrap,
            PathBuf::from("bootstraps/0/abc"),
            FileKind::File
        )));
    }

    #[test]
    fn resolves_beneath_refuses_escapes() {
        let t = tempfile::tempdir().unwrap();
        let r = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(r.join("root/a")).unwrap();
        symlink("../a", r.join("root/a/inside")).unwrap();
        symlink("../../root/a", r.join("root/a/out_and_back")).unwrap();
        symlink("/etc", r.join("root/a/abs")).unwrap();
        symlink("nothing", r.join("root/a/dangling")).unwrap();
        let root = CacheRoot::open(&r.join("root")).unwrap();
        assert_eq!(root.resolves_beneath(Path::new("a/inside")), Ok(()));
        assert_eq!(
            root.resolves_beneath(Path::new("a/out_and_back")),
            Err(Errno::EXDEV)
        );
        assert_eq!(root.resolves_beneath(Path::new("a/abs")), Err(Errno::EXDEV));
        assert_eq!(
            root.resolves_beneath(Path::new("a/dangling")),
            Err(Errno::ENOENT)
        );
    }
}
