//! What `env` and `doctor` print: the plan, in text for people and JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::paths::Usability;
use crate::pex::bugs::{self, KnownBug};
use crate::pex::info::{Layout, Pex};
use crate::run::cache_guard::CacheCheck;
use crate::run::command::{CommandPlan, InterpreterSource};
use crate::run::fast_path::FastPath;
use crate::run::plan::{Action, EnvPlan};
use crate::run::seed_use::SeedCheck;

/// `env --json`: the environment and the plan that produced it.
#[derive(Serialize)]
pub struct EnvReport<'a> {
    /// Names and values byte for byte (see [`crate::json_bytes`]).
    pub env: BTreeMap<String, crate::json_bytes::Json<'a>>,
    #[serde(flatten)]
    pub plan: &'a EnvPlan,
    pub command: Option<&'a CommandPlan>,
    /// The exec that replaces pex's bootstrap (already applied to `command` and `env`),
    /// or why there is none; absent without a seed or a PEX.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<&'a Result<FastPath, String>>,
}

impl<'a> EnvReport<'a> {
    pub fn new(
        plan: &'a EnvPlan,
        command: Option<&'a CommandPlan>,
        fast_path: Option<&'a Result<FastPath, String>>,
    ) -> Self {
        let env = plan
            .env
            .iter()
            .map(|(k, v)| (crate::json_bytes::key(k), crate::json_bytes::Json(v)))
            .collect();
        EnvReport {
            env,
            plan,
            command,
            fast_path,
        }
    }
}

/// `NAME=value` lines, as env(1) prints them: names and values byte for byte (a path
/// that is not UTF-8 is printed as the bytes the program gets).
pub fn env_lines(plan: &EnvPlan) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in plan.env.iter() {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

/// `export NAME='value'` lines, plus `unset` for what run drops, for `eval`; values byte
/// for byte inside the quotes.
pub fn export_lines(plan: &EnvPlan) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in plan.env.iter() {
        out.extend_from_slice(b"export ");
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        shell_quote(v.as_bytes(), &mut out);
        out.push(b'\n');
    }
    for d in &plan.decisions {
        if d.value.is_none() && d.input.is_some() {
            let _ = writeln!(out, "unset {}", d.variable);
        }
    }
    out
}

/// `value` in single quotes, each `'` written as `'\''`.
fn shell_quote(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(br"'\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

/// The PEX part of a diagnosis.
#[derive(Serialize)]
pub struct PexReport {
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub path: PathBuf,
    pub layout: Layout,
    pub pex_version: Option<String>,
    pub venv: bool,
    pub pex_hash: Option<String>,
    pub entry_point: Option<String>,
    pub known_bugs: Vec<KnownBug>,
    /// The file is not here: the PEX is known from the seed that holds it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_seed_only: bool,
}

impl PexReport {
    pub fn new(pex: &Pex) -> Self {
        let version = pex.info.build_properties.pex_version.clone();
        PexReport {
            path: pex.path.clone(),
            layout: pex.layout,
            in_seed_only: pex.in_seed_only,
            known_bugs: bugs::affecting(
                version.as_deref(),
                bugs::PexKind {
                    layout: pex.layout,
                    venv: pex.info.venv,
                },
            ),
            pex_version: version,
            venv: pex.info.venv,
            pex_hash: pex.info.pex_hash.clone(),
            entry_point: pex.info.entry_point.clone(),
        }
    }
}

/// `doctor`: the plan, the program, and whether run can make it all work.
#[derive(Serialize)]
pub struct Diagnosis<'a> {
    pub healthy: bool,
    #[serde(serialize_with = "crate::json_bytes::opt_os")]
    pub config_file: Option<PathBuf>,
    #[serde(flatten)]
    pub plan: &'a EnvPlan,
    pub command: Option<&'a CommandPlan>,
    pub pex: Option<PexReport>,
    /// The seed run would use, and its fast path.
    pub seed: SeedCheck,
    /// What run's cache check found in PEX_ROOT (what `pexinit repair` would do).
    pub cache: CacheCheck,
    /// Everything run cannot fix (plan problems and a program that cannot run).
    pub problems: Vec<String>,
}

impl Diagnosis<'_> {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let user = &self.plan.user;
        let _ = writeln!(
            out,
            "user: uid {} gid {} ({}), passwd home {}",
            user.uid,
            user.gid,
            user.name.as_deref().unwrap_or("no passwd entry"),
            user.passwd_home
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
        );
        if let Some(path) = &self.config_file {
            let _ = writeln!(out, "config: {}", path.display());
        }
        for d in &self.plan.decisions {
            let shown = |v: &Option<std::ffi::OsString>| {
                v.as_ref()
                    .map_or("(unset)".into(), |v| v.to_string_lossy().into_owned())
            };
            let verdict = match d.action {
                Action::Kept => format!("{} (already physical)", shown(&d.value)),
                Action::Unset => "(unset)".into(),
                Action::Dropped => format!("{} -> dropped", shown(&d.input)),
                _ => format!(
                    "{} -> {} ({})",
                    shown(&d.input),
                    shown(&d.value),
                    action_word(d.action)
                ),
            };
            let _ = writeln!(out, "{:<15} {verdict}", d.variable);
            for hop in &d.links {
                let _ = writeln!(
                    out,
                    "{:<15}   symlink {} -> {}",
                    "",
                    hop.link.display(),
                    hop.target.display()
                );
            }
            if let Some(status) = d
                .status
                .filter(|s| *s != Usability::Writable || d.variable != "PWD")
            {
                let _ = writeln!(out, "{:<15}   {}", "", status.describe());
            }
            if let Some(note) = &d.note {
                let _ = writeln!(out, "{:<15}   {note}", "");
            }
        }
        if let Some(command) = self.command {
            let _ = writeln!(out, "exec: {}", command.argv.join(" "));
            if let Some(source) = command.interpreter_source {
                let origin = match source {
                    InterpreterSource::Flag => "--python / PEXINIT_PYTHON",
                    InterpreterSource::ConfigFile => "config file",
                    InterpreterSource::Shebang => "the PEX's #! line",
                    InterpreterSource::Seed => "the seed: the PEX file is not here",
                };
                let _ = writeln!(
                    out,
                    "interpreter: {} (from {origin})",
                    command.executable.display()
                );
            }
        }
        if let Some(pex) = &self.pex {
            let _ = writeln!(
                out,
                "pex: {} ({:?} layout{}), built by pex {}, pex_hash {}",
                pex.path.display(),
                pex.layout,
                if pex.venv { ", venv mode" } else { "" },
                pex.pex_version.as_deref().unwrap_or("(unknown version)"),
                pex.pex_hash.as_deref().unwrap_or("(none)"),
            );
            if pex.in_seed_only {
                let _ = writeln!(
                    out,
                    "  the file is not here: the seed holds this PEX, and only its fast path can start it"
                );
            }
            for bug in &pex.known_bugs {
                let _ = writeln!(
                    out,
                    "known bug {} (fixed in pex {}): {}\n  handled: {}",
                    bug.id, bug.fixed_in, bug.summary, bug.mitigation
                );
            }
        }
        match &self.seed {
            SeedCheck::None => {}
            SeedCheck::Unusable { seed, reason } => {
                let _ = writeln!(out, "seed: {} not used: {reason}", seed.display());
            }
            SeedCheck::Used { seeded, fast_path } => {
                if seeded.manifest.slim {
                    let _ = writeln!(
                        out,
                        "seed: {} is slim: no pex runtime in it, only the fast path starts its PEX files",
                        seeded.seed.display()
                    );
                }
                if crate::run::seed_use::needs_seed_root(fast_path.as_ref()) {
                    let _ = writeln!(
                        out,
                        "seed: {} used as PEX_ROOT {}",
                        seeded.seed.display(),
                        seeded.used.pex_root().display()
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "seed: {} read in place by its launcher (nothing written)",
                        seeded.seed.display()
                    );
                }
                match fast_path {
                    Some(Ok(fast)) => {
                        let _ = writeln!(out, "fast path: exec {}", fast.argv.join(" "));
                    }
                    Some(Err(why)) => {
                        let _ = writeln!(out, "fast path: none ({why})");
                    }
                    None => {}
                }
            }
        }
        let _ = writeln!(out, "cache: {}", self.cache.summary());
        if let Some(plan) = self.cache.poisoned() {
            for heal in &plan.heal {
                for link in &heal.links {
                    let _ = writeln!(
                        out,
                        "  would heal {} -> {} (was {})",
                        link.path.display(),
                        link.new.to_string_lossy(),
                        link.old.to_string_lossy()
                    );
                }
            }
            for q in &plan.quarantine {
                let _ = writeln!(
                    out,
                    "  would quarantine {} ({})",
                    q.entry.display(),
                    q.reason
                );
            }
        }
        for warning in &self.plan.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        for notice in &self.plan.notices {
            let _ = writeln!(out, "note: {notice}");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "problem: {problem}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.healthy { "healthy" } else { "unhealthy" }
        );
        out
    }
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Kept => "kept",
        Action::Resolved => "resolved symlinks",
        Action::FromPasswd => "from passwd",
        Action::Derived => "derived",
        Action::Fallback => "fallback",
        Action::Dropped => "dropped",
        Action::Unset => "unset",
    }
}
