//! Filesystem primitives shared by every command: atomic writes and content digests.

pub mod atomic;
pub mod bounded;
pub mod digest;
