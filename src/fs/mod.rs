//! Filesystem primitives shared by every command: directories opened, listed and removed
//! relative to a descriptor without following links, renames that cannot clobber, locks,
//! atomic writes and content digests.

pub mod atomic;
pub mod bounded;
pub mod digest;
pub mod dir;
pub mod lock;
pub mod mode;
pub mod rename;
