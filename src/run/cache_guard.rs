//! What `run` and `doctor` do about a poisoned PEX_ROOT before the program starts.
//!
//! A cache poisoned by an older run (pex < 2.20.4 under a symlinked HOME) fails every
//! later run even once HOME is physical: pex trusts existing entries. So `run` looks
//! before it starts a PEX, and heals (`--repair auto`) or refuses (`--repair check`).
//! Only PEX programs pay for the look (a plain command has no cache to protect), and
//! only for the entries that PEX runs from: its cost does not grow with the cache.

use std::path::Path;

use serde::Serialize;

use crate::config::RepairMode;
use crate::error::{Error, Result};
use crate::pex::cache::Problem;
use crate::pex::info::Pex;
use crate::pex::repair::{self, RepairPlan};

/// The cache verdict shown by `doctor` and acted on by `run`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CacheCheck {
    /// Not looked at, and why.
    Skipped { reason: String },
    /// Looked at: the plan a repair would carry out (empty when healthy).
    Scanned { plan: Box<RepairPlan> },
}

impl CacheCheck {
    /// Reads (never writes) the entries of the PEX_ROOT the program `pex` will use.
    pub fn scan(
        pex_root: Option<&Path>,
        mode: RepairMode,
        pex: Option<&Pex>,
        seeded: bool,
    ) -> CacheCheck {
        let skipped = |reason: &str| CacheCheck::Skipped {
            reason: reason.to_owned(),
        };
        if mode == RepairMode::Off {
            return skipped("--repair off");
        }
        let Some(pex) = pex else {
            return skipped("the program is not a PEX");
        };
        if seeded {
            // `pexinit seed` verified it with the same scan; a start from a seed must not
            // pay for walking a tree of any size.
            return skipped("a seed, verified when it was made");
        }
        let Some(pex_root) = pex_root.filter(|p| p.is_dir()) else {
            return skipped("PEX_ROOT does not exist yet: nothing to repair");
        };
        let scanned = match &pex.info.pex_hash {
            Some(pex_hash) => repair::plan_pex(pex_root, pex_hash),
            // Too old to name its entries: look at everything.
            None => repair::plan(pex_root),
        };
        match scanned {
            Ok(plan) => CacheCheck::Scanned {
                plan: Box::new(plan),
            },
            Err(e) => skipped(&format!("cannot scan: {e}")),
        }
    }

    /// The plan, when there is work for a repair.
    pub fn poisoned(&self) -> Option<&RepairPlan> {
        match self {
            CacheCheck::Scanned { plan } if plan.has_work() => Some(plan),
            _ => None,
        }
    }

    /// What `run` leaves in the entries of the PEX that makes pex fail or run something
    /// it did not write, one line each with its fix: a link out of PEX_ROOT (repair
    /// leaves those alone), a link or a file where pex keeps a directory, a place that
    /// cannot be read. `doctor` counts each as a problem.
    pub fn problems(&self) -> Vec<String> {
        let CacheCheck::Scanned { plan } = self else {
            return Vec::new();
        };
        let root = &plan.pex_root;
        let mut out = Vec::new();
        for s in &plan.suspicious {
            out.push(format!(
                "cache entry {} of this PEX has a link out of PEX_ROOT ({} -> {}) that pex would follow and `pexinit repair` leaves alone; remove the entry (`rm -r {}`): pex rebuilds it",
                root.join(&s.entry).display(),
                s.path.display(),
                s.target.to_string_lossy(),
                root.join(&s.entry).display()
            ));
        }
        for p in &plan.problems {
            let path = root.join(&p.path);
            out.push(match &p.problem {
                Problem::SymlinkInsteadOfDirectory | Problem::NotADirectory => format!(
                    "{} is {} where pex keeps a directory of this PEX's cache; remove it (`rm {}`): pex rebuilds it",
                    path.display(),
                    if p.problem == Problem::NotADirectory { "a file" } else { "a symlink" },
                    path.display()
                ),
                Problem::TooDeep => format!(
                    "{} is nested deeper than pex writes; remove the entry holding it: pex rebuilds it",
                    path.display()
                ),
                Problem::Unreadable { error } => format!(
                    "{} in this PEX's cache cannot be read ({error}); make it readable for this user, or remove it: pex rebuilds it",
                    path.display()
                ),
            });
        }
        out
    }

    /// One line for `doctor`'s text report.
    pub fn summary(&self) -> String {
        match self {
            CacheCheck::Skipped { reason } => format!("not scanned ({reason})"),
            CacheCheck::Scanned { plan } if plan.has_work() => format!(
                "poisoned: {} link(s) to heal in {} entries, {} entries to quarantine",
                plan.poisoned_links(),
                plan.heal.len(),
                plan.quarantine.len()
            ),
            CacheCheck::Scanned { plan } if plan.has_suspicious() => format!(
                "{} suspicious link(s), {} problem(s): left alone (see pexinit repair --dry-run)",
                plan.suspicious.len(),
                plan.problems.len()
            ),
            CacheCheck::Scanned { plan } => {
                format!("healthy ({} entries scanned)", plan.entries_scanned)
            }
        }
    }
}

/// `run`'s step before exec: heal what the scan found, or refuse in check mode.
pub fn enforce(check: &CacheCheck, pex_root: &Path, mode: RepairMode) -> Result<()> {
    let Some(plan) = check.poisoned() else {
        return Ok(());
    };
    if mode == RepairMode::Check {
        return Err(Error::Normalize(format!(
            "PEX_ROOT {} is poisoned ({} link(s) to heal, {} entries to quarantine); run \
             `pexinit repair {}` or use --repair auto",
            pex_root.display(),
            plan.poisoned_links(),
            plan.quarantine.len(),
            pex_root.display()
        )));
    }
    let report = repair::repair(pex_root, false).map_err(|e| Error::Normalize(e.to_string()))?;
    for heal in &report.outcome.healed {
        tracing::warn!(
            "healed {} poisoned link(s) in {}",
            heal.links.len(),
            pex_root.join(&heal.entry).display()
        );
    }
    for q in &report.outcome.quarantined {
        tracing::warn!(
            "quarantined {} ({}): pex rebuilds it",
            pex_root.join(&q.entry).display(),
            q.reason
        );
    }
    for f in &report.outcome.failed {
        tracing::warn!(
            "could not heal {}: {}",
            pex_root.join(&f.entry).display(),
            f.error
        );
    }
    Ok(())
}
