//! What only `run`, `env` and `doctor` use: the environment plan, the command plan, the
//! seed and fast-path choice, the cache guard, privileges, exec, PID-1 supervision (with
//! its signals and the terminal's job control), and the reports `env` / `doctor` print.

pub mod apply;
pub mod cache_guard;
pub mod command;
pub mod exec;
pub mod fast_path;
pub mod init;
pub mod job;
pub mod plan;
pub mod privileges;
pub mod report;
pub mod seed_use;
pub mod setup;
pub mod signals;
pub mod stack;
