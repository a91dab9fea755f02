//! What pexinit knows about PEX files and the pex runtimes baked into them.

pub mod bugs;
pub mod cache;
pub mod info;
pub mod manifest;
pub mod materialize;
pub mod prime;
pub mod repair;
pub mod seed;
pub mod zip_member;
