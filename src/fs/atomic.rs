//! Files that appear whole or not at all: written to a temp file in the same directory
//! (created O_EXCL, never through a link), fsynced, then renamed over the target.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file being written; dropped without [`Pending::commit`], it is removed.
pub struct Pending {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Pending {
    pub fn create(target: &Path, mode: u32) -> io::Result<Pending> {
        let dir = parent(target);
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", target.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_file(&tmp);
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        Ok(Pending {
            file: Some(file),
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("an open pending file")
    }

    /// fsync, rename over the target, fsync the directory so the rename survives a crash.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("an open pending file");
        file.sync_all()?;
        drop(file);
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        if let Ok(dir) = File::open(parent(&self.target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
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
