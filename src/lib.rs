//! pexinit: run PEX applications in containers with physical, writable HOME,
//! XDG_CACHE_HOME and PEX_ROOT.
//!
//! Every command builds a [`plan`] first (a plain value: resolved paths, the program's
//! environment, the command to execute), then applies it. `env` and `doctor` print the
//! same plan `run` applies.

pub mod apply;
pub mod arena;
pub mod atomic;
pub mod cache_guard;
pub mod cli;
pub mod command;
pub mod config;
pub mod digest;
pub mod envmap;
pub mod error;
pub mod identity;
pub mod init;
pub mod log;
pub mod oci;
pub mod paths;
pub mod pex;
pub mod plan;
pub mod privileges;
pub mod report;
pub mod seeded;

mod commands;

pub use commands::dispatch;
