//! The plan: which paths resolve to what and which environment the program gets.
//!
//! Building a plan only reads the filesystem; [`crate::run::apply`] makes it happen. `env`
//! and `doctor` print the very plan `run` applies, so what users see is what happens.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Settings, Source, VenvMode};
use crate::envmap::EnvMap;
use crate::identity::Identity;
use crate::paths::{DirPolicy, LinkHop, Resolved, Usability, resolve_physical, usable_dir};

/// Where the private fallback home goes when TMPDIR is unset or unusable.
const DEFAULT_TMP: &str = "/tmp";

/// Everything a plan is computed from, gathered once so planning itself is pure.
pub struct Inputs {
    pub env: EnvMap,
    pub cwd: io::Result<PathBuf>,
    pub identity: Identity,
}

impl Inputs {
    /// This process's environment and working directory, planned for `identity` (the
    /// user the program will run as).
    pub fn from_process(identity: Identity) -> Self {
        Inputs {
            env: EnvMap::from_process(),
            cwd: std::env::current_dir(),
            identity,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Already physical and usable: passed through unchanged.
    Kept,
    /// Replaced by its physical path.
    Resolved,
    /// HOME was unset: taken from the passwd entry (then made physical).
    FromPasswd,
    /// Unset: computed by pexinit (PEX_ROOT from XDG_CACHE_HOME or HOME).
    Derived,
    /// Unusable: replaced by pexinit's private fallback.
    Fallback,
    /// Unusable: removed from the environment.
    Dropped,
    /// Not set, and nothing to do.
    Unset,
}

/// What happened to one variable, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub variable: &'static str,
    /// The value received (None = unset).
    #[serde(serialize_with = "crate::json_bytes::opt_os")]
    pub input: Option<OsString>,
    /// The value the program gets (None = unset), byte for byte.
    #[serde(serialize_with = "crate::json_bytes::opt_os")]
    pub value: Option<OsString>,
    pub action: Action,
    /// Symlinks crossed while resolving the value.
    pub links: Vec<LinkHop>,
    /// Whether the program's user can write there.
    pub status: Option<Usability>,
    /// Why a fallback or drop happened, or where a derived value came from.
    pub note: Option<String>,
}

/// A directory `apply` creates below an existing physical `root`.
#[derive(Debug, Clone, Serialize)]
pub struct MkDir {
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub root: PathBuf,
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub path: PathBuf,
    pub policy: DirPolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub uid: u32,
    pub gid: u32,
    pub name: Option<String>,
    #[serde(serialize_with = "crate::json_bytes::opt_os")]
    pub passwd_home: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvPlan {
    pub user: UserSummary,
    pub decisions: Vec<Decision>,
    /// The physical working directory (None when it was deleted under us).
    #[serde(serialize_with = "crate::json_bytes::opt_os")]
    pub cwd: Option<PathBuf>,
    pub mkdirs: Vec<MkDir>,
    /// Printed once each by `run`; listed by `doctor`.
    pub warnings: Vec<String>,
    /// What is normal where it happens but worth knowing: `run` says it at info level
    /// (with `-v`), `doctor` lists it. HOME=/ or no HOME at all for a uid without a
    /// passwd entry is what podman and Kubernetes give an arbitrary uid.
    pub notices: Vec<String>,
    /// What `run` cannot fix: `doctor` is unhealthy when this is not empty.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub env: EnvMap,
}

impl EnvPlan {
    pub fn decision(&self, variable: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.variable == variable)
    }

    /// The value a variable will have in the program's environment.
    pub fn value(&self, variable: &str) -> Option<&OsStr> {
        self.env.get(variable)
    }
}

/// Plans the program's environment: physical HOME, XDG_CACHE_HOME, PEX_ROOT, TMPDIR
/// and PWD, all usable by `inputs.identity`.
pub fn plan_environment(settings: &Settings, inputs: &Inputs) -> EnvPlan {
    let mut planner = Planner {
        who: &inputs.identity,
        env: inputs.env.clone(),
        decisions: Vec::new(),
        mkdirs: Vec::new(),
        warnings: Vec::new(),
        notices: Vec::new(),
        problems: Vec::new(),
    };
    for (name, value) in &settings.env {
        if planner.env.get(name).is_none() {
            planner.env.set(name, value);
        }
    }
    if let Some((pex_root, _)) = &settings.pex_root {
        planner.env.set("PEX_ROOT", pex_root);
    }
    if settings.venv == VenvMode::All {
        // Config `venv: true`: pex runs a PEX built with --include-tools in venv mode.
        // (A list of PEX files is applied once the program is known: `select_venv`.)
        planner.env.set("PEX_VENV", "1");
    }
    let cwd = planner.plan_cwd(&inputs.cwd);
    let tmp = planner.plan_tmpdir();
    let home = planner.plan_home(&tmp);
    let xdg = planner.plan_xdg_cache_home();
    planner.plan_pex_root(cwd.as_deref(), &home, xdg.as_deref(), &tmp);
    if let Some((_, Source::PexInfo)) = &settings.pex_root
        && let Some(decision) = planner
            .decisions
            .iter_mut()
            .find(|d| d.variable == "PEX_ROOT")
    {
        decision.note =
            Some("from the PEX's PEX-INFO pex_root (built with --runtime-pex-root)".to_owned());
    }
    EnvPlan {
        user: UserSummary {
            uid: inputs.identity.uid,
            gid: inputs.identity.gid,
            name: inputs.identity.passwd.as_ref().map(|p| p.name.clone()),
            passwd_home: inputs.identity.passwd.as_ref().map(|p| p.home.clone()),
        },
        decisions: planner.decisions,
        cwd,
        mkdirs: planner.mkdirs,
        warnings: planner.warnings,
        notices: planner.notices,
        problems: planner.problems,
        env: planner.env,
    }
}

struct Planner<'a> {
    who: &'a Identity,
    env: EnvMap,
    decisions: Vec<Decision>,
    mkdirs: Vec<MkDir>,
    warnings: Vec<String>,
    notices: Vec<String>,
    problems: Vec<String>,
}

/// A physical, usable directory chosen for one variable.
struct Chosen {
    resolved: Resolved,
    status: Usability,
}

impl Chosen {
    fn path(&self) -> &Path {
        &self.resolved.physical
    }
}

/// The private fallback home, and whether it is usable.
struct Fallback {
    home: PathBuf,
    /// The existing directory below which it is created.
    root: PathBuf,
}

impl Planner<'_> {
    fn input(&self, name: &str) -> Option<OsString> {
        self.env.get(name).map(OsStr::to_os_string)
    }

    fn record(&mut self, decision: Decision) {
        match &decision.value {
            Some(value) => self.env.set(decision.variable, value),
            None => self.env.remove(decision.variable),
        }
        self.decisions.push(decision);
    }

    /// Resolves `value` to a physical directory the user can write to (or create).
    fn usable(&self, value: &Path) -> Result<Chosen, String> {
        let resolved = resolve_physical(value).map_err(|e| e.to_string())?;
        let status = usable_dir(&resolved, self.who);
        if !status.is_usable() {
            return Err(format!("is {} for uid {}", status.describe(), self.who.uid));
        }
        Ok(Chosen { resolved, status })
    }

    fn create_if_missing(&mut self, chosen: &Chosen, policy: DirPolicy) {
        if !chosen.resolved.exists {
            self.mkdirs.push(MkDir {
                root: chosen.resolved.existing_ancestor.clone(),
                path: chosen.resolved.physical.clone(),
                policy,
            });
        }
    }

    /// The kernel's cwd is always physical; PWD (what shells and some tools trust) may
    /// not be. pex #2634 failed with the cwd inside a symlinked home.
    fn plan_cwd(&mut self, cwd: &io::Result<PathBuf>) -> Option<PathBuf> {
        let input = self.input("PWD");
        match cwd {
            Ok(cwd) => {
                let value = cwd.as_os_str().to_os_string();
                let action = action_for(input.as_deref(), &value);
                self.record(Decision {
                    variable: "PWD",
                    input,
                    value: Some(value),
                    action,
                    links: Vec::new(),
                    status: None,
                    note: None,
                });
                Some(cwd.clone())
            }
            Err(e) => {
                let note = format!("the working directory is gone ({e})");
                self.warnings.push(format!("PWD dropped: {note}"));
                self.record(Decision {
                    variable: "PWD",
                    input,
                    value: None,
                    action: Action::Dropped,
                    links: Vec::new(),
                    status: None,
                    note: Some(note),
                });
                None
            }
        }
    }

    fn plan_tmpdir(&mut self) -> Option<PathBuf> {
        let Some(raw) = self.input("TMPDIR").filter(|v| !v.is_empty()) else {
            self.record(unset("TMPDIR"));
            return None;
        };
        self.plan_optional_dir("TMPDIR", raw)
    }

    fn plan_xdg_cache_home(&mut self) -> Option<PathBuf> {
        let Some(raw) = self.input("XDG_CACHE_HOME") else {
            self.record(unset("XDG_CACHE_HOME"));
            return None;
        };
        if raw.is_empty() {
            // The XDG base directory spec treats an empty value as unset.
            let mut decision = unset("XDG_CACHE_HOME");
            decision.input = Some(OsString::new());
            self.record(decision);
            return None;
        }
        self.plan_optional_dir("XDG_CACHE_HOME", raw)
    }

    /// TMPDIR and XDG_CACHE_HOME: physical when usable, otherwise dropped with a warning.
    fn plan_optional_dir(&mut self, variable: &'static str, raw: OsString) -> Option<PathBuf> {
        let input = Some(raw.clone());
        let path = PathBuf::from(&raw);
        let verdict = if path.is_relative() {
            Err("is relative; the XDG base directory spec says to ignore it".to_owned())
        } else {
            self.usable(&path)
        };
        match verdict {
            Ok(chosen) => {
                let value = chosen.path().as_os_str().to_os_string();
                self.create_if_missing(&chosen, DirPolicy::Shared);
                self.record(Decision {
                    variable,
                    action: action_for(input.as_deref(), &value),
                    input,
                    value: Some(value),
                    links: chosen.resolved.links.clone(),
                    status: Some(chosen.status),
                    note: None,
                });
                Some(chosen.resolved.physical)
            }
            Err(why) => {
                self.warnings.push(format!(
                    "{variable}={} {why}: ignoring it",
                    raw.to_string_lossy()
                ));
                self.record(Decision {
                    variable,
                    input,
                    value: None,
                    action: Action::Dropped,
                    links: Vec::new(),
                    status: None,
                    note: Some(why),
                });
                None
            }
        }
    }

    fn fallback(&self, tmp: &Option<PathBuf>) -> Fallback {
        let root = match tmp {
            Some(tmp) => tmp.clone(),
            None => resolve_physical(Path::new(DEFAULT_TMP))
                .map(|r| r.physical)
                .unwrap_or_else(|_| PathBuf::from(DEFAULT_TMP)),
        };
        Fallback {
            home: root.join(format!("pexinit-{}", self.who.uid)).join("home"),
            root,
        }
    }

    /// HOME: physical and writable, else the passwd home, else a private fallback.
    fn plan_home(&mut self, tmp: &Option<PathBuf>) -> PathBuf {
        let raw = self.input("HOME").filter(|v| !v.is_empty());
        let input = raw.clone();
        let (candidate, from_passwd) = match (&raw, &self.who.passwd) {
            (Some(v), _) => (Some(PathBuf::from(v)), false),
            (None, Some(entry)) => (Some(entry.home.clone()), true),
            (None, None) => (None, false),
        };
        let verdict = match &candidate {
            None => Err(format!("uid {} has no passwd entry", self.who.uid)),
            Some(path) if path.is_relative() => Err("is not an absolute path".to_owned()),
            Some(path) => self.usable(path).and_then(|chosen| {
                if !chosen.resolved.exists {
                    Err("does not exist".to_owned())
                } else if chosen.path() == Path::new("/") {
                    Err("is / (pex would put its cache in /.cache)".to_owned())
                } else {
                    Ok(chosen)
                }
            }),
        };
        match verdict {
            Ok(chosen) => {
                let value = chosen.path().as_os_str().to_os_string();
                let action = if from_passwd {
                    Action::FromPasswd
                } else {
                    action_for(input.as_deref(), &value)
                };
                self.record(Decision {
                    variable: "HOME",
                    input,
                    value: Some(value),
                    action,
                    links: chosen.resolved.links.clone(),
                    status: Some(chosen.status),
                    note: from_passwd.then(|| "HOME was unset: passwd home".to_owned()),
                });
                chosen.resolved.physical
            }
            Err(why) => {
                let fallback = self.fallback(tmp);
                let named = match (&candidate, from_passwd) {
                    (None, _) => "HOME is unset and".to_owned(),
                    (Some(p), true) => format!("HOME is unset and the passwd home {}", p.display()),
                    (Some(p), false) => format!("HOME={}", p.display()),
                };
                let message = format!(
                    "{named} {why}: using private fallback home {}",
                    fallback.home.display()
                );
                // An arbitrary uid (no passwd entry) gets HOME=/, none at all, or the
                // image's HOME it cannot write, from podman, OpenShift and Kubernetes:
                // the fallback is the expected case there.
                let expected =
                    candidate.as_deref() == Some(Path::new("/")) || self.who.passwd.is_none();
                if expected {
                    self.notices.push(message);
                } else {
                    self.warnings.push(message);
                }
                if !crate::paths::dir_writable_by(&fallback.root, self.who) {
                    self.problems.push(format!(
                        "no usable HOME: {} is not writable for the fallback home; mount a writable \
                         volume there or set HOME to a writable directory",
                        fallback.root.display()
                    ));
                }
                self.mkdirs.push(MkDir {
                    root: fallback.root.clone(),
                    path: fallback.home.clone(),
                    policy: DirPolicy::Private,
                });
                self.record(Decision {
                    variable: "HOME",
                    input,
                    value: Some(fallback.home.as_os_str().to_os_string()),
                    action: Action::Fallback,
                    links: Vec::new(),
                    status: None,
                    note: Some(format!("{named} {why}")),
                });
                fallback.home
            }
        }
    }

    /// PEX_ROOT: always exported, physical, so the runtime never sees a logical path and
    /// the cache cannot split across two roots.
    fn plan_pex_root(
        &mut self,
        cwd: Option<&Path>,
        home: &Path,
        xdg: Option<&Path>,
        tmp: &Option<PathBuf>,
    ) {
        let raw = self.input("PEX_ROOT").filter(|v| !v.is_empty());
        let input = raw.clone();
        let (wanted, note) = match (&raw, xdg) {
            (Some(raw), _) => {
                let path = PathBuf::from(raw);
                match (path.is_relative(), cwd) {
                    (true, Some(cwd)) => (
                        cwd.join(path),
                        Some("relative: taken from the working directory"),
                    ),
                    _ => (path, None),
                }
            }
            (None, Some(xdg)) => (
                xdg.join("pex"),
                Some("PEX_ROOT was unset: XDG_CACHE_HOME/pex"),
            ),
            (None, None) => (
                home.join(".cache/pex"),
                Some("PEX_ROOT was unset: HOME/.cache/pex"),
            ),
        };
        let note = note.map(str::to_owned);
        let action_if_ok = |value: &OsStr| match &input {
            None => Action::Derived,
            Some(i) if i == value => Action::Kept,
            Some(_) => Action::Resolved,
        };
        match self.usable(&wanted) {
            Ok(chosen) => {
                let value = chosen.path().as_os_str().to_os_string();
                self.create_if_missing(&chosen, DirPolicy::Shared);
                self.record(Decision {
                    variable: "PEX_ROOT",
                    action: action_if_ok(&value),
                    input,
                    value: Some(value),
                    links: chosen.resolved.links.clone(),
                    status: Some(chosen.status),
                    note,
                });
            }
            Err(why) if raw.is_some() => {
                // The user named this PEX_ROOT: keep it (physical if possible) and say
                // plainly that pex will start cold from a temporary cache.
                let resolved = resolve_physical(&wanted).ok();
                let value = resolved
                    .as_ref()
                    .map_or(wanted.clone(), |r| r.physical.clone());
                let message = format!(
                    "PEX_ROOT={} {why}: pex will fall back to a temporary cache and start cold; \
                     make it writable or point PEX_ROOT at a writable directory",
                    wanted.display()
                );
                self.warnings.push(message.clone());
                self.problems.push(message);
                self.record(Decision {
                    variable: "PEX_ROOT",
                    input,
                    value: Some(value.as_os_str().to_os_string()),
                    action: Action::Kept,
                    links: resolved.map(|r| r.links).unwrap_or_default(),
                    status: None,
                    note: Some(why),
                });
            }
            Err(why) => {
                // A derived root that is unusable (say ~/.cache is a read-only file):
                // use the private fallback home's cache instead.
                let fallback = self.fallback(tmp);
                let value = fallback.home.join(".cache/pex");
                self.warnings.push(format!(
                    "{} {why}: using {} for PEX_ROOT",
                    wanted.display(),
                    value.display()
                ));
                self.mkdirs.push(MkDir {
                    root: fallback.root,
                    path: fallback.home.clone(),
                    policy: DirPolicy::Private,
                });
                self.mkdirs.push(MkDir {
                    root: fallback.home,
                    path: value.clone(),
                    policy: DirPolicy::Shared,
                });
                self.record(Decision {
                    variable: "PEX_ROOT",
                    input,
                    value: Some(value.as_os_str().to_os_string()),
                    action: Action::Fallback,
                    links: Vec::new(),
                    status: None,
                    note: Some(format!("{} {why}", wanted.display())),
                });
            }
        }
    }
}

fn unset(variable: &'static str) -> Decision {
    Decision {
        variable,
        input: None,
        value: None,
        action: Action::Unset,
        links: Vec::new(),
        status: None,
        note: None,
    }
}

fn action_for(input: Option<&OsStr>, value: &OsStr) -> Action {
    if input == Some(value) {
        Action::Kept
    } else {
        Action::Resolved
    }
}

/// Config `venv: [PEX files]`: sets PEX_VENV=1 when the program runs one of them.
pub fn select_venv(plan: &mut EnvPlan, settings: &Settings, pex: Option<&std::path::Path>) {
    if let (VenvMode::Only(_), Some(pex)) = (&settings.venv, pex)
        && settings.venv.applies_to(pex)
    {
        plan.env.set("PEX_VENV", "1");
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::config::Source;

    /// A plan for this process's own identity, from `env` alone, in `cwd`.
    fn plan(settings: &Settings, env: &[(&str, &Path)], cwd: &Path) -> EnvPlan {
        let inputs = Inputs {
            env: EnvMap::from_pairs(
                env.iter()
                    .map(|(k, v)| (OsString::from(k), v.as_os_str().to_owned())),
            ),
            cwd: Ok(cwd.to_path_buf()),
            identity: Identity::current(),
        };
        plan_environment(settings, &inputs)
    }

    #[test]
    fn a_home_reached_through_a_link_is_made_physical_and_pex_root_exported() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(base.join("real/home")).unwrap();
        fs::create_dir(base.join("tmp")).unwrap();
        symlink("real", base.join("link")).unwrap();
        let linked_home = base.join("link/home");
        let plan = plan(
            &Settings::default(),
            &[("HOME", &linked_home), ("TMPDIR", &base.join("tmp"))],
            &base,
        );
        assert_eq!(plan.value("HOME"), Some(base.join("real/home").as_os_str()));
        assert_eq!(plan.decision("HOME").unwrap().action, Action::Resolved);
        let pex_root = PathBuf::from(plan.value("PEX_ROOT").expect("PEX_ROOT is exported"));
        assert!(pex_root.starts_with(base.join("real/home")), "{pex_root:?}");
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    }

    #[test]
    fn a_pex_root_setting_wins_over_the_derived_one() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(base.join("home")).unwrap();
        fs::create_dir_all(base.join("cache/pex")).unwrap();
        symlink("cache", base.join("cache-link")).unwrap();
        let settings = Settings {
            pex_root: Some((base.join("cache-link/pex"), Source::Flag)),
            ..Settings::default()
        };
        let plan = plan(&settings, &[("HOME", &base.join("home"))], &base);
        assert_eq!(
            plan.value("PEX_ROOT"),
            Some(base.join("cache/pex").as_os_str())
        );
    }
}
