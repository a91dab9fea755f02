//! Turning a seed into a working PEX_ROOT somewhere else.
//!
//! Two shapes, for two situations:
//! - [`farm`]: a small writable link farm in front of a read-only seed, made by `run`
//!   at start-up; it costs a handful of entries whatever the seed's size.
//! - [`tree`]: a full, independent tree made by `pexinit prime` (an initContainer
//!   filling a volume): copies, hardlinks or reflinks of the seed's files, with
//!   [`relocate`] rewriting the seed's absolute in-root references when the new
//!   PEX_ROOT is not the path the seed was built for.

pub mod farm;
pub(crate) mod pool;
pub mod relocate;
pub mod tree;

pub use farm::*;
