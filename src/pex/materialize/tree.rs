//! Copying a seed's tree into a new directory by copy, hardlink or reflink.
//!
//! The walk never follows a link: every directory is opened with O_NOFOLLOW relative to
//! its parent's descriptor, on both sides, and every file is created with O_EXCL. Links
//! are recreated as links (relative ones unchanged). Modes, owners and mtimes follow the
//! seed, so `.pyc` files stay valid (Python checks the source's mtime and size) and the
//! result is as reproducible as the seed.
//!
//! A hardlink shares the seed's inode, so nothing is ever changed through one: files pex
//! writes on a warm run (`access.lck`, `.last-access`, other `.lck` files), files the
//! relocation rewrites, and files whose owner differs from the one asked for are copied
//! instead. Files hardlinked to each other inside the seed stay hardlinked to each other
//! (as `cp -a` keeps them), so a copy takes no more room than the seed.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, readlinkat};
use nix::sys::stat::{
    FileStat, Mode, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, linkat, symlinkat, unlinkat};
use serde::Serialize;

use super::pool::{self, Pool};
use super::relocate::Relocation;
use crate::fs::dir::{self, FileKind, open_dir, open_file, read_dir};
use crate::fs::rename::chown_nofollow;

/// How file contents get into the new tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// Reflink when the filesystem can, else hardlink when allowed, else copy.
    Auto,
    Copy,
    Hardlink,
    Reflink,
}

/// What to copy where.
pub struct TreeRequest<'a> {
    pub src: &'a Path,
    pub dst: &'a Path,
    pub mode: LinkMode,
    /// Owner of everything created; None: the seed's owners when running as root (as
    /// `cp -a`), else our own.
    pub owner: Option<(u32, u32)>,
    pub relocation: Option<&'a Relocation>,
    /// The caller flushes the tree before publishing it: push each copy towards the disk
    /// as it is made (in a tree of links, sync its few copies one by one). Otherwise
    /// copies are left in the page cache and only counted.
    pub flush: bool,
    /// Names at the top of `src` that are not copied (pexinit's own files).
    pub skip_top: &'a (dyn Fn(&OsStr) -> bool + Sync),
    /// Called once per entry copied (progress).
    pub tick: &'a (dyn Fn() + Sync),
}

/// What copying did, by kind of work.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TreeReport {
    pub dirs: u64,
    pub symlinks: u64,
    pub files_copied: u64,
    pub files_hardlinked: u64,
    pub files_reflinked: u64,
    /// Copied with the old root replaced (relocation).
    pub files_rewritten: u64,
    /// Bytecode of rewritten sources, left out (see [`super::relocate`]).
    pub stale_bytecode_dropped: u64,
    /// Data written by copies (not by links).
    pub bytes_copied: u64,
    /// Sockets, FIFOs and devices: pex never makes them; skipped.
    pub skipped_special: u64,
    /// Copies whose data is not yet known to be on disk: the caller flushes the
    /// filesystem before making the tree visible, or records that it did not. A tree of
    /// links made with `flush` needs no flush: its few copies are synced one by one, and
    /// the links are metadata, which journaling filesystems commit in order, before the
    /// rename that publishes them.
    #[serde(skip)]
    pub unsynced_copies: u64,
}

impl TreeReport {
    /// Adds another worker's counts.
    fn add(&mut self, other: &TreeReport) {
        // Destructured, so that a new field cannot be forgotten here.
        let TreeReport {
            dirs,
            symlinks,
            files_copied,
            files_hardlinked,
            files_reflinked,
            files_rewritten,
            stale_bytecode_dropped,
            bytes_copied,
            skipped_special,
            unsynced_copies,
        } = other;
        self.dirs += dirs;
        self.symlinks += symlinks;
        self.files_copied += files_copied;
        self.files_hardlinked += files_hardlinked;
        self.files_reflinked += files_reflinked;
        self.files_rewritten += files_rewritten;
        self.stale_bytecode_dropped += stale_bytecode_dropped;
        self.bytes_copied += bytes_copied;
        self.skipped_special += skipped_special;
        self.unsynced_copies += unsynced_copies;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The requested link mode cannot work here: nothing wrong with the data.
    #[error("{0}")]
    Impossible(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TreeError {
    TreeError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Copies the tree below `req.src` into the existing, empty directory `req.dst`. The
/// roots themselves are left to the caller (their metadata is set last, by it).
///
/// Directories are filled on every core: a worker that meets a subdirectory while
/// another worker is idle hands it over (see [`pool`]). A directory's metadata is set by
/// whoever filled it, once its own entries are all there; what happens deeper down
/// touches neither its mtime nor needs its permissions (everything goes through
/// descriptors).
pub fn copy_tree(req: &TreeRequest<'_>) -> Result<TreeReport, TreeError> {
    let src = open_dir(nix::fcntl::AT_FDCWD, req.src).map_err(|e| io_err(req.src, e))?;
    let dst = open_dir(nix::fcntl::AT_FDCWD, req.dst).map_err(|e| io_err(req.dst, e))?;
    let shared = Shared {
        reflink: ProbeCell::new(match req.mode {
            LinkMode::Auto | LinkMode::Reflink => Probe::Unknown,
            _ => Probe::No,
        }),
        hardlink: ProbeCell::new(match req.mode {
            LinkMode::Auto | LinkMode::Hardlink => Probe::Unknown,
            _ => Probe::No,
        }),
        as_root: nix::unistd::geteuid().is_root(),
        creator: creator(dst.as_fd()).map_err(|e| io_err(req.dst, e))?,
        inodes: Mutex::new(HashMap::new()),
        dst_root: dst.try_clone().map_err(|e| io_err(req.dst, e))?,
        total: Mutex::new(TreeReport::default()),
    };
    let root = Job {
        src,
        dst,
        rel: PathBuf::new(),
        rewritten_above: HashSet::new(),
        meta: None,
    };
    Pool::run(pool::workers(), root, |job, pool| {
        let mut copier = Copier {
            req,
            shared: &shared,
            pool,
            report: TreeReport::default(),
            buf: vec![0u8; 64 * 1024],
        };
        let result = copier.job(job);
        lock(&shared.total).add(&copier.report);
        result
    })?;
    Ok(shared.total.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Unknown,
    Yes,
    No,
}

/// What one worker learned about reflinks or hardlinks, for all of them.
struct ProbeCell(AtomicU8);

impl ProbeCell {
    fn new(probe: Probe) -> ProbeCell {
        ProbeCell(AtomicU8::new(probe as u8))
    }

    fn get(&self) -> Probe {
        match self.0.load(Ordering::Relaxed) {
            x if x == Probe::Yes as u8 => Probe::Yes,
            x if x == Probe::No as u8 => Probe::No,
            _ => Probe::Unknown,
        }
    }

    fn set(&self, probe: Probe) {
        self.0.store(probe as u8, Ordering::Relaxed);
    }
}

/// What the workers of one copy share.
struct Shared {
    reflink: ProbeCell,
    hardlink: ProbeCell,
    as_root: bool,
    /// Who owns what we create, when that is certain (no set-group-ID directory above):
    /// a chown to the same owner would only cost a journal write per inode.
    creator: Option<(u32, u32)>,
    /// Seed inodes with several links, and where their first copy went (relative).
    inodes: Mutex<HashMap<(u64, u64), PathBuf>>,
    dst_root: OwnedFd,
    /// The workers' reports, summed.
    total: Mutex<TreeReport>,
}

/// A directory to fill, by the worker that found it or by an idle one.
struct Job {
    src: OwnedFd,
    dst: OwnedFd,
    rel: PathBuf,
    /// For a `__pycache__`: the sources of its parent that were rewritten.
    rewritten_above: HashSet<OsString>,
    /// The directory's own descriptor and the seed's metadata for it, set once it is
    /// filled (none for the root: the caller sets that).
    meta: Option<(OwnedFd, FileStat)>,
}

struct Copier<'a> {
    req: &'a TreeRequest<'a>,
    shared: &'a Shared,
    pool: &'a Pool<Job>,
    report: TreeReport,
    buf: Vec<u8>,
}

impl Copier<'_> {
    fn shown(&self, rel: &Path) -> PathBuf {
        self.req.dst.join(rel)
    }

    /// Copies the children of `src` into `dst`: files and links first, so that a
    /// `__pycache__` below knows which sources of this directory were rewritten.
    fn dir(
        &mut self,
        src: OwnedFd,
        dst: OwnedFd,
        rel: &mut PathBuf,
        rewritten_here_above: &HashSet<OsString>,
    ) -> Result<(), TreeError> {
        if self.pool.stopped() {
            // Another worker failed; its error is the one reported.
            return Err(io_err(&self.req.src.join(&*rel), "stopped"));
        }
        let mut names = read_dir(src.as_fd(), &mut self.buf)
            .map_err(|e| io_err(&self.req.src.join(&*rel), e))?;
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let top = rel.as_os_str().is_empty();
        let in_pycache = rel.file_name() == Some(OsStr::new("__pycache__"));
        let mut rewritten: HashSet<OsString> = HashSet::new();
        let mut subdirs = Vec::new();
        for (name, kind) in names {
            if top && (self.req.skip_top)(&name) {
                continue;
            }
            rel.push(&name);
            match kind {
                FileKind::Directory => subdirs.push(name.clone()),
                FileKind::Symlink => self.symlink(src.as_fd(), dst.as_fd(), &name, rel)?,
                FileKind::File => {
                    if in_pycache && is_stale_bytecode(&name, rewritten_here_above) {
                        self.report.stale_bytecode_dropped += 1;
                    } else if self.file(src.as_fd(), dst.as_fd(), &name, rel)? {
                        rewritten.insert(name.clone());
                    }
                }
                FileKind::Other => {
                    tracing::warn!(
                        "{}: not a file, directory or link; skipped",
                        self.req.src.join(&*rel).display()
                    );
                    self.report.skipped_special += 1;
                }
            }
            rel.pop();
        }
        for name in subdirs {
            rel.push(&name);
            let st = fstatat(src.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(&self.req.src.join(&*rel), e))?;
            // Created private and writable; the seed's mode is set once it is filled.
            mkdirat(
                dst.as_fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(0o700),
            )
            .map_err(|e| io_err(&self.shown(rel), e))?;
            let child_src = open_dir(src.as_fd(), name.as_os_str())
                .map_err(|e| io_err(&self.req.src.join(&*rel), e))?;
            let child_dst =
                open_dir(dst.as_fd(), name.as_os_str()).map_err(|e| io_err(&self.shown(rel), e))?;
            let meta_fd = child_dst
                .try_clone()
                .map_err(|e| io_err(&self.shown(rel), e))?;
            let job = Job {
                src: child_src,
                dst: child_dst,
                rel: rel.clone(),
                rewritten_above: if name == "__pycache__" {
                    rewritten.clone()
                } else {
                    HashSet::new()
                },
                meta: Some((meta_fd, st)),
            };
            if let Some(job) = self.pool.offer(job) {
                self.job(job)?;
            }
            rel.pop();
        }
        Ok(())
    }

    /// Fills the job's directory, then sets its metadata.
    fn job(&mut self, job: Job) -> Result<(), TreeError> {
        let Job {
            src,
            dst,
            mut rel,
            rewritten_above,
            meta,
        } = job;
        self.dir(src, dst, &mut rel, &rewritten_above)?;
        if let Some((fd, st)) = meta {
            self.set_meta(fd.as_fd(), &st)
                .map_err(|e| io_err(&self.shown(&rel), e))?;
            self.report.dirs += 1;
            (self.req.tick)();
        }
        Ok(())
    }

    fn owner_for(&self, st: &FileStat) -> Option<(u32, u32)> {
        match self.req.owner {
            Some(owner) => Some(owner),
            None if self.shared.as_root => Some((st.st_uid, st.st_gid)),
            None => None,
        }
    }

    /// chown (first: it clears set-id bits), chmod, then times, on a descriptor.
    fn set_meta(&self, fd: BorrowedFd<'_>, st: &FileStat) -> nix::Result<()> {
        if let Some((uid, gid)) = self
            .owner_for(st)
            .filter(|o| Some(*o) != self.shared.creator)
        {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
        futimens(fd, &atime(st), &mtime(st))
    }

    fn symlink(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<(), TreeError> {
        let target = readlinkat(src, name).map_err(|e| io_err(&self.req.src.join(rel), e))?;
        let target = PathBuf::from(target);
        let target = self
            .req
            .relocation
            .and_then(|r| r.link_target(&target))
            .unwrap_or(target);
        symlinkat(target.as_path(), dst, name).map_err(|e| io_err(&self.shown(rel), e))?;
        let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&self.req.src.join(rel), e))?;
        if let Some(owner) = self
            .owner_for(&st)
            .filter(|o| Some(*o) != self.shared.creator)
        {
            chown_nofollow(dst, name, owner).map_err(|e| io_err(&self.shown(rel), e))?;
        }
        utimensat(
            dst,
            name,
            &atime(&st),
            &mtime(&st),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_err(&self.shown(rel), e))?;
        self.report.symlinks += 1;
        (self.req.tick)();
        Ok(())
    }

    /// One regular file; returns whether its content was rewritten (relocation).
    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<bool, TreeError> {
        let shown_src = self.req.src.join(rel);
        if self.shared.hardlink.get() != Probe::No
            && self.shared.reflink.get() == Probe::No
            && self.req.owner.is_none()
            && !written_at_run_time(name)
            && !self.req.relocation.is_some_and(|r| r.scans(rel))
            && linkat(src, name, dst, name, AtFlags::empty()).is_ok()
        {
            // Nothing to decide from the inode: one syscall per file. (Failures take the
            // full path below, which explains them.)
            self.shared.hardlink.set(Probe::Yes);
            self.report.files_hardlinked += 1;
            (self.req.tick)();
            return Ok(false);
        }
        let st =
            fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| io_err(&shown_src, e))?;
        (self.req.tick)();
        let key = (st.st_dev, st.st_ino);
        // The first name of an inode with several is placed with the table held, so a
        // worker meeting another name of it links to a whole file.
        // (Through a copy of the reference: the guard must not borrow `self`.)
        let shared = self.shared;
        let first_of_inode = (st.st_nlink > 1).then(|| lock(&shared.inodes));
        if let Some(first) = first_of_inode.as_ref().and_then(|inodes| inodes.get(&key)) {
            // A hardlink inside the seed: the same inode here too.
            linkat(
                self.shared.dst_root.as_fd(),
                first.as_path(),
                dst,
                name,
                AtFlags::empty(),
            )
            .map_err(|e| io_err(&self.shown(rel), e))?;
            return Ok(false);
        }
        let mut rewritten = false;
        if let Some(relocation) = self.req.relocation.filter(|r| r.scans(rel)) {
            let mut bytes = Vec::with_capacity(st.st_size as usize);
            let mut file = open_file(src, name).map_err(|e| io_err(&shown_src, e))?;
            file.read_to_end(&mut bytes)
                .map_err(|e| io_err(&shown_src, e))?;
            if let Some(new) = relocation.rewrite(&bytes) {
                let mut out = create_file(dst, name).map_err(|e| io_err(&self.shown(rel), e))?;
                out.write_all(&new)
                    .map_err(|e| io_err(&self.shown(rel), e))?;
                self.set_meta(out.as_fd(), &st)
                    .map_err(|e| io_err(&self.shown(rel), e))?;
                self.written(&out, new.len() as u64);
                self.report.files_rewritten += 1;
                self.report.bytes_copied += new.len() as u64;
                rewritten = true;
            }
        }
        if !rewritten {
            self.place(src, dst, name, rel, &st)?;
        }
        if let Some(mut inodes) = first_of_inode
            && !rewritten
        {
            inodes.insert(key, rel.to_path_buf());
        }
        Ok(rewritten)
    }

    /// When the caller flushes: a copy made durable now when the tree is mostly links (a
    /// handful of copies), else started towards the disk and left to the single flush.
    fn written(&mut self, file: &File, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if !self.req.flush {
            self.report.unsynced_copies += 1;
            return;
        }
        let linking = self.shared.hardlink.get() == Probe::Yes
            || self.shared.reflink.get() == Probe::Yes
            || matches!(self.req.mode, LinkMode::Hardlink | LinkMode::Reflink);
        if linking && file.sync_data().is_ok() {
            return;
        }
        start_writeback(file);
        self.report.unsynced_copies += 1;
    }

    /// Puts an unchanged file in place by the cheapest means allowed.
    fn place(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        st: &FileStat,
    ) -> Result<(), TreeError> {
        let shown_src = self.req.src.join(rel);
        let written_by_pex = written_at_run_time(name);
        if self.shared.reflink.get() != Probe::No && !written_by_pex {
            let from = open_file(src, name).map_err(|e| io_err(&shown_src, e))?;
            let to = create_file(dst, name).map_err(|e| io_err(&self.shown(rel), e))?;
            // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
            let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
            if rc == 0 {
                self.shared.reflink.set(Probe::Yes);
                self.set_meta(to.as_fd(), st)
                    .map_err(|e| io_err(&self.shown(rel), e))?;
                self.report.files_reflinked += 1;
                return Ok(());
            }
            let why = io::Error::last_os_error();
            drop(to);
            unlinkat(dst, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_err(&self.shown(rel), e))?;
            if self.req.mode == LinkMode::Reflink {
                return Err(TreeError::Impossible(format!(
                    "cannot reflink {} into {} ({why}): the filesystem does not share blocks; use --link copy (or --link auto)",
                    self.req.src.display(),
                    self.req.dst.display()
                )));
            }
            tracing::info!(
                "no reflinks between {} and {} ({why})",
                self.req.src.display(),
                self.req.dst.display()
            );
            self.shared.reflink.set(Probe::No);
        }
        if self.shared.hardlink.get() != Probe::No && !written_by_pex {
            let owner_differs = self
                .req
                .owner
                .is_some_and(|(uid, gid)| (uid, gid) != (st.st_uid, st.st_gid));
            if owner_differs {
                if self.req.mode == LinkMode::Hardlink {
                    return Err(TreeError::Impossible(format!(
                        "{} is owned by {}:{}, not the --chown owner: a hardlink cannot change its owner without changing the seed; use --link copy, or drop --chown",
                        shown_src.display(),
                        st.st_uid,
                        st.st_gid
                    )));
                }
            } else {
                match linkat(src, name, dst, name, AtFlags::empty()) {
                    Ok(()) => {
                        self.shared.hardlink.set(Probe::Yes);
                        self.report.files_hardlinked += 1;
                        return Ok(());
                    }
                    Err(e @ (Errno::EXDEV | Errno::EPERM | Errno::EMLINK | Errno::EACCES)) => {
                        if self.req.mode == LinkMode::Hardlink {
                            return Err(TreeError::Impossible(format!(
                                "cannot hardlink {} into {} ({}); use --link copy",
                                shown_src.display(),
                                self.req.dst.display(),
                                if e == Errno::EXDEV {
                                    "they are on different filesystems".to_owned()
                                } else {
                                    e.to_string()
                                }
                            )));
                        }
                        if e == Errno::EXDEV {
                            tracing::info!(
                                "{} and {} are on different filesystems: copying",
                                self.req.src.display(),
                                self.req.dst.display()
                            );
                            self.shared.hardlink.set(Probe::No);
                        }
                    }
                    Err(e) => return Err(io_err(&self.shown(rel), e)),
                }
            }
        }
        let mut from = open_file(src, name).map_err(|e| io_err(&shown_src, e))?;
        let mut to = create_file(dst, name).map_err(|e| io_err(&self.shown(rel), e))?;
        // std uses copy_file_range (in-kernel, and shared blocks where the filesystem
        // offers them), falling back to read/write.
        let n = io::copy(&mut from, &mut to).map_err(|e| io_err(&self.shown(rel), e))?;
        self.written(&to, n);
        self.set_meta(to.as_fd(), st)
            .map_err(|e| io_err(&self.shown(rel), e))?;
        self.report.files_copied += 1;
        self.report.bytes_copied += n;
        Ok(())
    }
}

/// Starts writing a copied file to disk without waiting, so the caller's final `syncfs`
/// finds most of the data already written instead of all of it dirty.
fn start_writeback(file: &File) {
    // SAFETY: sync_file_range on a descriptor we own; failure only loses the head start.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The owner new inodes below `dst` get: ours, unless `dst` is set-group-ID (then the
/// group comes from it: not certain, so every inode is chowned).
fn creator(dst: BorrowedFd<'_>) -> nix::Result<Option<(u32, u32)>> {
    let st = nix::sys::stat::fstat(dst)?;
    Ok((st.st_mode & libc::S_ISGID == 0).then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }))
}

/// Files pex opens for writing on a warm run: never shared with the seed.
fn written_at_run_time(name: &OsStr) -> bool {
    let n = name.as_bytes();
    n.ends_with(b".lck") || n == b".last-access"
}

/// `stem.<tag>.pyc` (or `.opt-N.pyc`) of a source rewritten in the directory above; or
/// the bytecode of a venv's `pex` script (a link to its `__main__.py`) when that
/// `__main__.py` was rewritten: Python names the bytecode of a source without suffix
/// `<name><tag>.pyc` (`pexcpython-311.pyc`).
fn is_stale_bytecode(name: &OsStr, rewritten: &HashSet<OsString>) -> bool {
    let n = name.as_bytes();
    if rewritten.is_empty() || !n.ends_with(b".pyc") {
        return false;
    }
    if n.starts_with(b"pex")
        && !n[3..].starts_with(b".")
        && rewritten.contains(OsStr::new("__main__.py"))
    {
        return true;
    }
    let Some(dot) = n.iter().position(|&b| b == b'.') else {
        return false;
    };
    let stem = &n[..dot];
    rewritten.iter().any(|src| {
        let s = src.as_bytes();
        s.len() == stem.len() + 3 && s.starts_with(stem) && s.ends_with(b".py")
    })
}

fn atime(st: &FileStat) -> TimeSpec {
    TimeSpec::new(st.st_atime, st.st_atime_nsec)
}

fn mtime(st: &FileStat) -> TimeSpec {
    TimeSpec::new(st.st_mtime, st.st_mtime_nsec)
}

/// Created private: the seed's mode is set once the content is in.
fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<File> {
    dir::create_file(dir, name, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_bytecode_is_the_rewritten_sources_only() {
        let rewritten: HashSet<OsString> = ["__main__.py".into()].into_iter().collect();
        assert!(is_stale_bytecode(
            OsStr::new("__main__.cpython-311.pyc"),
            &rewritten
        ));
        assert!(is_stale_bytecode(
            OsStr::new("__main__.cpython-311.opt-1.pyc"),
            &rewritten
        ));
        assert!(!is_stale_bytecode(
            OsStr::new("__main___x.cpython-311.pyc"),
            &rewritten
        ));
        assert!(!is_stale_bytecode(
            OsStr::new("other.cpython-311.pyc"),
            &rewritten
        ));
        assert!(!is_stale_bytecode(
            OsStr::new("__main__.cpython-311.pyc"),
            &HashSet::new()
        ));
        // The venv's `pex` script is `__main__.py` by another name.
        assert!(is_stale_bytecode(
            OsStr::new("pexcpython-311.pyc"),
            &rewritten
        ));
        assert!(!is_stale_bytecode(
            OsStr::new("pexcpython-311.pyc"),
            &["other.py".into()].into_iter().collect()
        ));
        assert!(!is_stale_bytecode(
            OsStr::new("pex.cpython-311.pyc"),
            &rewritten
        ));
    }

    #[test]
    fn run_time_files_are_never_shared() {
        assert!(written_at_run_time(OsStr::new("access.lck")));
        assert!(written_at_run_time(OsStr::new(".last-access")));
        assert!(!written_at_run_time(OsStr::new("PEX-INFO")));
    }
}
