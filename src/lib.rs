//! pexinit: run PEX applications in containers with physical, writable HOME,
//! XDG_CACHE_HOME and PEX_ROOT.
//!
//! Every command builds a [`run::plan`] first (a plain value: resolved paths, the program's
//! environment, the command to execute), then applies it. `env` and `doctor` print the
//! same plan `run` applies.

pub mod arena;
pub mod cli;
pub mod config;
pub mod envmap;
pub mod epoch;
pub mod error;
pub mod fs;
pub mod identity;
pub mod json_bytes;
pub mod log;
pub mod oci;
pub mod paths;
pub mod pex;
pub mod progress;
pub mod run;
pub mod yaml_shape;

mod commands;

pub use commands::dispatch;
