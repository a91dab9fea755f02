//! `seed --slim`: a seed that holds only what `run`'s fast path reads.
//!
//! The fast path execs a seeded venv or a launcher (see `crate::run::fast_path`): it
//! reads `installed_wheels/`, `user_code/`, `unzipped_pexes/` (PEX-INFO and the app's
//! own sources), `venvs/` and `.pexinit/`, and nothing of pex's runtime. What only pex's
//! bootstrap uses is removed:
//!
//! | removed | what it is | why it costs |
//! |---|---|---|
//! | `bootstraps/`, `isolated/` | pex's own code, byte-compiled | megabytes in every image |
//! | `interpreters/` | pex's interpreter identity cache | keyed on the build host's kernel |
//! | `unzipped_pexes/…/.bootstrap` | a link into `bootstraps/` | would dangle |
//! | `unzipped_pexes/…/__pycache__/__main__.*.pyc` | bytecode of a script run as `__main__` | never loaded by anyone |
//!
//! With these gone the seed depends only on the distributions, the app and the
//! interpreter path, and no PEX file is needed at run time: `run` starts a seeded PEX
//! by its file name when the file is not there. A PEX that has no fast path (pex does
//! something a launcher cannot replay) cannot be seeded slim.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::fs::dir::{LIST_BUFFER, list_names, open_dir, open_dir_beneath, remove_tree};
use crate::pex::manifest::Entry;

use super::{SeedError, io_err};

/// Top-level directories of a PEX_ROOT that only pex's bootstrap reads.
pub const BOOTSTRAP_ONLY: [&str; 3] = ["bootstraps", "isolated", "interpreters"];

/// Why `entry` cannot be part of a slim seed, if it cannot.
pub fn refusal(entry: &Entry) -> Option<String> {
    if entry.venv.is_some() || entry.launcher.is_some() {
        return None;
    }
    Some(format!(
        "{} cannot start without pex's bootstrap ({}); seed it without --slim",
        entry.pex.display(),
        entry
            .no_launcher
            .as_deref()
            .unwrap_or("the seed recorded no fast path for it")
    ))
}

/// Removes from the seed at `root` what only pex's bootstrap reads (see the module
/// docs). Never follows a link: every directory is opened relative to the seed's, with
/// no symlink on the way.
pub fn strip(root: &Path, entries: &[Entry]) -> Result<(), SeedError> {
    let root_fd = open_dir(nix::fcntl::AT_FDCWD, root)
        .map_err(|e| io_err(root.display().to_string())(e.into()))?;
    let mut buf = vec![0u8; LIST_BUFFER];
    for name in BOOTSTRAP_ONLY {
        remove_tree(root_fd.as_fd(), OsStr::new(name), &mut buf)
            .map_err(io_err(format!("removing {}", root.join(name).display())))?;
    }
    for unzipped in entries.iter().filter_map(|e| e.unzipped.as_ref()) {
        let dir = match open_dir_beneath(root_fd.as_fd(), unzipped) {
            Ok(dir) => dir,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(io_err(root.join(unzipped).display().to_string())(e.into())),
        };
        // A link into `bootstraps/` in newer pex, a copy of pex's code in older ones.
        remove_tree(dir.as_fd(), OsStr::new(".bootstrap"), &mut buf).map_err(io_err(format!(
            "removing {}",
            root.join(unzipped).join(".bootstrap").display()
        )))?;
        remove_main_bytecode(dir.as_fd()).map_err(io_err(format!(
            "removing {}",
            root.join(unzipped)
                .join("__pycache__/__main__.*.pyc")
                .display()
        )))?;
    }
    Ok(())
}

/// The bytecode pex compiled for an unzipped PEX's `__main__.py`: the launcher never runs
/// it, and Python never loads a `__main__` script from bytecode anyway.
fn remove_main_bytecode(unzipped: BorrowedFd<'_>) -> std::io::Result<()> {
    let cache = match open_dir(unzipped, "__pycache__") {
        Ok(cache) => cache,
        // None, or not a directory of this entry's own (a link, as packed PEXes have).
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for name in list_names(cache.as_fd())? {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"__main__.") && bytes.ends_with(b".pyc") {
            match unlinkat(cache.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
