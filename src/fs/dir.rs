//! Directories, and the files in them, opened, listed, walked and changed relative to a
//! descriptor, never through a link: what pexinit walks, copies or removes cannot be
//! redirected by a symlink planted on the way.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::Serialize;

/// Size of the buffer directory listings are read into: a few hundred names per call.
pub const LIST_BUFFER: usize = 32 * 1024;

/// What a directory entry is, from `d_type` (or an lstat when the filesystem does not
/// say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Directory,
    Symlink,
    File,
    Other,
}

/// Opens the directory `path` (relative to `at`), failing on a symlink in its last
/// component.
pub fn open_dir<Fd: AsFd>(at: Fd, path: &(impl nix::NixPath + ?Sized)) -> nix::Result<OwnedFd> {
    openat(
        at,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `path`, following links anywhere in it, the last component
/// included: for a path the caller resolved itself, or whose links it trusts.
pub fn open_dir_following(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `rel` below `root` (empty: `root` itself), refusing any symlink
/// on the way and any step that would leave `root`.
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    retry_races(|| openat2(root, dot_if_empty(rel), how))
}

/// Whether `rel` resolves to something that exists without leaving `root` at any step.
/// Links inside `root` are followed by the kernel; any `..` above `root` or absolute
/// link fails with EXDEV, a dangling one with ENOENT, a loop with ELOOP.
pub fn resolves_beneath(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<()> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    retry_races(|| openat2(root, dot_if_empty(rel), how)).map(drop)
}

/// Opens the file `rel` below `root` for reading, following only links that stay inside
/// `root` (as [`resolves_beneath`]); never blocks on a fifo.
pub fn open_file_beneath(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    retry_races(|| openat2(root, dot_if_empty(rel), how))
}

/// How often a lookup is retried when the kernel saw a rename race.
const RACE_RETRIES: usize = 100;

/// With RESOLVE_BENEATH the kernel answers EAGAIN when any rename on the system raced
/// with a `..` step (its rename seqlock is global): busy machines see it routinely. The
/// lookup is simply retried; a caller still getting EAGAIN treats it as "unknown".
fn retry_races<T>(mut lookup: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut tries = 0;
    loop {
        match lookup() {
            Err(Errno::EAGAIN | Errno::EINTR) if tries < RACE_RETRIES => tries += 1,
            other => return other,
        }
    }
}

fn dot_if_empty(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// Opens the parent directory of `rel` below `root`, one component at a time with
/// [`open_dir`], so no link on the way is followed; returns it with the last
/// component's name. `rel` must be a plain relative path (no `.`, `..` or root).
pub fn open_parent<'p>(root: BorrowedFd<'_>, rel: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
    let mut parts: Vec<&OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::other("not a plain relative path")),
        })
        .collect::<io::Result<_>>()?;
    let name = parts.pop().ok_or_else(|| io::Error::other("empty path"))?;
    let mut dir = open_dir(root, ".")?;
    for part in parts {
        dir = open_dir(dir.as_fd(), part)?;
    }
    Ok((dir, name))
}

/// Opens the file `name` in `dir` for reading, failing on a symlink.
pub fn open_file(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<File> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

/// Creates the file `name` in `dir` for writing; fails when anything, a link included,
/// is there already.
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> nix::Result<File> {
    openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map(File::from)
}

/// Every name in `dir` except `.` and `..`, with its kind, read from the descriptor's
/// current offset. Regular files are listed too (callers count them) but cost no
/// syscall beyond getdents64 itself: the kind comes from `d_type`.
pub fn read_dir(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Vec<(OsString, FileKind)>> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the directory reader only
    // stores bytes the kernel wrote, never uninitialized ones, so `buf` holds valid
    // `u8`s again once the reader is dropped.
    let buf = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [std::mem::MaybeUninit<u8>]) };
    let mut entries = rustix::fs::RawDir::new(dir, buf);
    let mut out = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let kind = match entry.file_type() {
            rustix::fs::FileType::Directory => FileKind::Directory,
            rustix::fs::FileType::Symlink => FileKind::Symlink,
            rustix::fs::FileType::RegularFile => FileKind::File,
            // Some filesystems do not fill d_type: ask, without following.
            rustix::fs::FileType::Unknown => lstat_kind(dir, name).unwrap_or(FileKind::Other),
            _ => FileKind::Other,
        };
        out.push((name.to_os_string(), kind));
    }
    Ok(out)
}

/// The kind of `name` in `dir`, without following it; None when it does not exist.
pub fn lstat_kind(dir: BorrowedFd<'_>, name: &OsStr) -> Option<FileKind> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(kind_of_mode(st.st_mode))
}

fn kind_of_mode(mode: libc::mode_t) -> FileKind {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFLNK => FileKind::Symlink,
        SFlag::S_IFREG => FileKind::File,
        _ => FileKind::Other,
    }
}

/// Every name in `dir`, from the start (a fresh descriptor of the same directory, so the
/// caller's offset is untouched).
pub fn list_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = open_dir(dir, ".")?;
    let mut buf = vec![0u8; LIST_BUFFER];
    Ok(read_dir(fd.as_fd(), &mut buf)?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// A walk's failure and the path, relative to where the walk started, it failed at.
#[derive(Debug)]
pub struct WalkError {
    pub rel: PathBuf,
    pub error: io::Error,
}

/// What [`walk`] calls for each entry: the directory holding it, its name, its kind and
/// its path relative to where the walk started.
pub type WalkVisit<'f> = dyn FnMut(BorrowedFd<'_>, &OsStr, FileKind, &Path) -> io::Result<()> + 'f;

/// Calls `f` for everything below `dir`, depth-first, a directory before its contents.
/// Every directory is opened with [`open_dir`] relative to its parent's descriptor, so
/// a symlink is handed to `f` as a link and never entered, even one planted while the
/// walk runs. Names are visited in byte order, so the same tree gives the same calls
/// in the same order and a failure names the same path on every run. The first error,
/// from `f` or from the walk, stops it.
///
/// `dir` is taken, not borrowed: listing it moves its offset to the end, so a second
/// walk from the same descriptor would find nothing.
pub fn walk(dir: OwnedFd, f: &mut WalkVisit<'_>) -> Result<(), WalkError> {
    let mut rel = PathBuf::new();
    let mut buf = vec![0u8; LIST_BUFFER];
    // On an error `rel` still names where it happened: nothing is popped on the way out.
    walk_below(dir.as_fd(), &mut rel, &mut buf, f).map_err(|error| WalkError { rel, error })
}

fn walk_below(
    dir: BorrowedFd<'_>,
    rel: &mut PathBuf,
    buf: &mut [u8],
    f: &mut WalkVisit<'_>,
) -> io::Result<()> {
    let mut names = read_dir(dir, buf)?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in names {
        rel.push(&name);
        f(dir, &name, kind, rel)?;
        if kind == FileKind::Directory {
            let child = open_dir(dir, name.as_os_str())?;
            walk_below(child.as_fd(), rel, buf, f)?;
        }
        rel.pop();
    }
    Ok(())
}

/// Removes `parent/name` and everything below it without following links; directories a
/// seed made read-only are made writable first. Gone already is done.
pub fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, buf: &mut [u8]) -> io::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = open_dir(parent, name)?;
    let st = fstat(fd.as_fd())?;
    if st.st_mode & 0o700 != 0o700 {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(0o700))?;
    }
    for (child, kind) in read_dir(fd.as_fd(), buf)? {
        if kind == FileKind::Directory {
            remove_tree(fd.as_fd(), &child, buf)?;
        } else {
            match unlinkat(fd.as_fd(), child.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Flushes the filesystem holding `path` (one call instead of an fsync per file).
pub fn sync_fs(path: &Path) -> io::Result<()> {
    let fd = open_dir(nix::fcntl::AT_FDCWD, path)?;
    // SAFETY: syncfs on a descriptor we own, open for the whole call.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn remove_tree_never_follows_links_and_opens_read_only_dirs() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let tree = t.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), "x").unwrap();
        symlink(&outside, tree.join("a/link")).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();

        let root = open_dir(nix::fcntl::AT_FDCWD, t.path()).unwrap();
        let mut names = list_names(root.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, ["outside", "tree"]);
        let mut buf = vec![0u8; LIST_BUFFER];
        remove_tree(root.as_fd(), OsStr::new("tree"), &mut buf).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        // Already gone: nothing to do.
        remove_tree(root.as_fd(), OsStr::new("tree"), &mut buf).unwrap();
        assert_eq!(
            open_dir(root.as_fd(), "outside-link").unwrap_err(),
            Errno::ENOENT
        );
        symlink(&outside, t.path().join("outside-link")).unwrap();
        // With O_DIRECTORY, Linux says ENOTDIR for a link where a directory is wanted.
        assert_eq!(
            open_dir(root.as_fd(), "outside-link").unwrap_err(),
            Errno::ENOTDIR
        );
    }

    #[test]
    fn walk_visits_in_name_order_and_never_enters_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "x").unwrap();
        let tree = t.path().join("tree");
        fs::create_dir_all(tree.join("b/c")).unwrap();
        fs::write(tree.join("b/c/f"), "x").unwrap();
        fs::write(tree.join("a"), "x").unwrap();
        symlink(&outside, tree.join("b/link")).unwrap();

        let open = || open_dir(nix::fcntl::AT_FDCWD, &tree).unwrap();
        let mut seen = Vec::new();
        walk(open(), &mut |_, name, kind, rel| {
            assert_eq!(rel.file_name(), Some(name));
            seen.push((rel.to_string_lossy().into_owned(), kind));
            Ok(())
        })
        .unwrap();
        let expected = [
            ("a", FileKind::File),
            ("b", FileKind::Directory),
            ("b/c", FileKind::Directory),
            ("b/c/f", FileKind::File),
            ("b/link", FileKind::Symlink),
        ];
        let expected: Vec<_> = expected.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(seen, expected);

        let err = walk(open(), &mut |_, name, _, _| match name == "f" {
            true => Err(io::Error::other("stop")),
            false => Ok(()),
        })
        .unwrap_err();
        assert_eq!(err.rel, Path::new("b/c/f"));
        assert_eq!(err.error.to_string(), "stop");
    }
}
