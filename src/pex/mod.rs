//! What pexinit knows about PEX files and the pex runtimes baked into them.

pub mod bugs;
pub mod cache;
pub mod info;
pub mod repair;
