//! Files that appear whole or not at all: written to an unnamed file in the target's
//! directory (`O_TMPFILE`), fsynced, given a temp name with `linkat` and renamed over the
//! target. A process killed while writing leaves nothing behind: the kernel frees an
//! unnamed file with its last descriptor.
//!
//! Where `O_TMPFILE` is not supported (some filesystems, no `/proc`), the file is written
//! under the temp name `.NAME.tmp.PID` (created O_EXCL, never through a link) instead.
//! Temp files of NAME left by processes that no longer exist (killed in the short window
//! between link and rename, or on such a filesystem) are removed by the next write of
//! NAME.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file being written; dropped without [`Pending::commit`], it is removed.
pub struct Pending {
    file: Option<File>,
    /// The temp name, once the file has one (always, without `O_TMPFILE`).
    named: Option<PathBuf>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Pending {
    pub fn create(target: &Path, mode: u32) -> io::Result<Pending> {
        let dir = parent(target);
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", target.display())))?;
        remove_stale_temps(dir, name);
        let tmp = dir.join(temp_name(name, std::process::id()));
        if Path::new("/proc/self/fd").is_dir() {
            match File::options()
                .write(true)
                .mode(mode)
                .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
                .open(dir)
            {
                Ok(file) => {
                    return Ok(Pending {
                        file: Some(file),
                        named: None,
                        tmp,
                        target: target.to_path_buf(),
                    });
                }
                // Not supported by this kernel or filesystem: a named temp file.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let _ = fs::remove_file(&tmp);
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        Ok(Pending {
            file: Some(file),
            named: Some(tmp.clone()),
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("an open pending file")
    }

    /// fsync, name the file, rename it over the target, fsync the directory so the
    /// rename survives a crash.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("an open pending file");
        file.sync_all()?;
        if self.named.is_none() {
            let _ = fs::remove_file(&self.tmp);
            link_unnamed(&file, &self.tmp)?;
            self.named = Some(self.tmp.clone());
        }
        drop(file);
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            let _ = fs::remove_file(&self.tmp);
            self.named = None;
            return Err(e);
        }
        self.named = None;
        if let Ok(dir) = File::open(parent(&self.target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(named) = self.named.take() {
            let _ = fs::remove_file(named);
        }
    }
}

/// Gives an `O_TMPFILE` file the name `tmp` (which must not exist).
fn link_unnamed(file: &File, tmp: &Path) -> io::Result<()> {
    let from =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let to = CString::new(tmp.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; the
    // descriptor named by `from` is open (borrowed from `file`).
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn temp_name(name: &OsStr, pid: u32) -> OsString {
    let mut temp = b".".to_vec();
    temp.extend_from_slice(name.as_bytes());
    temp.extend_from_slice(format!(".tmp.{pid}").as_bytes());
    OsString::from_vec(temp)
}

/// Whether `name` is a temp name a write of `target` (a file name) uses: `.NAME.tmp.PID`.
pub fn is_temp_of(name: &OsStr, target: &OsStr) -> bool {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(target.as_bytes());
    prefix.extend_from_slice(b".tmp.");
    name.as_bytes()
        .strip_prefix(prefix.as_slice())
        .is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit))
}

/// Removes `.NAME.tmp.PID` files in `dir` whose process is gone. Only regular files are
/// removed (a link is never followed); anything unreadable is left alone.
fn remove_stale_temps(dir: &Path, name: &OsStr) {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".tmp.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .as_bytes()
            .strip_prefix(prefix.as_slice())
            .and_then(|pid| std::str::from_utf8(pid).ok())
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        if !process_gone(pid) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// No process with this id exists (in this pid namespace).
pub fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let mut pending = Pending::create(target, mode)?;
    pending.file().write_all(bytes)?;
    pending.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_pending_file_leaves_nothing_and_a_committed_one_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out");
        {
            let mut pending = Pending::create(&target, 0o644).expect("create");
            std::io::Write::write_all(pending.file(), b"half").expect("write");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
        write(&target, b"whole", 0o644).expect("write");
        assert_eq!(fs::read(&target).expect("read"), b"whole");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn temp_files_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = dir.path().join(temp_name(OsStr::new("out"), dead));
        let live = dir.path().join(temp_name(OsStr::new("out"), 1));
        let other = dir.path().join(temp_name(OsStr::new("other"), dead));
        for path in [&stale, &live, &other] {
            fs::write(path, b"x").expect("write");
        }
        write(&dir.path().join("out"), b"new", 0o644).expect("write");
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
        assert!(is_temp_of(stale.file_name().unwrap(), OsStr::new("out")));
        assert!(!is_temp_of(other.file_name().unwrap(), OsStr::new("out")));
        assert!(!is_temp_of(OsStr::new(".out.tmp."), OsStr::new("out")));
    }
}
