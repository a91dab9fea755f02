//! What pexinit knows about PEX files and the pex runtimes baked into them.

pub mod bugs;
pub mod info;
