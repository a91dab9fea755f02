//! Renames that say what they may replace, and ownership changes that never follow a link.

use std::ffi::OsStr;
use std::os::fd::AsFd;

/// `renameat2(RENAME_NOREPLACE)`: moves `name` to `new_name` only if nothing is there, in
/// one step.
pub fn rename_noreplace(
    dir: impl AsFd,
    name: &OsStr,
    new_dir: impl AsFd,
    new_name: &OsStr,
) -> nix::Result<()> {
    renameat2(dir, name, new_dir, new_name, libc::RENAME_NOREPLACE)
}

/// `renameat2(RENAME_EXCHANGE)`: swaps `name` and `new_name` (both must exist) in one
/// step.
pub fn rename_exchange(
    dir: impl AsFd,
    name: &OsStr,
    new_dir: impl AsFd,
    new_name: &OsStr,
) -> nix::Result<()> {
    renameat2(dir, name, new_dir, new_name, libc::RENAME_EXCHANGE)
}

/// renameat2(2) through the raw system call: libc wrappers for it exist in glibc only,
/// and the shipped binary links musl.
fn renameat2(
    dir: impl AsFd,
    name: &OsStr,
    new_dir: impl AsFd,
    new_name: &OsStr,
    flags: libc::c_uint,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let new_name =
        std::ffi::CString::new(new_name.as_encoded_bytes()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: valid descriptors and NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            new_dir.as_fd().as_raw_fd(),
            new_name.as_ptr(),
            flags,
        )
    };
    nix::Error::result(rc).map(drop)
}

/// Gives `name` in `dir` the owner `uid:gid`, without following it if it is a link.
pub fn chown_nofollow(
    dir: impl AsFd,
    name: &(impl nix::NixPath + ?Sized),
    (uid, gid): (u32, u32),
) -> nix::Result<()> {
    nix::unistd::fchownat(
        dir.as_fd(),
        name,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}
