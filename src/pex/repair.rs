//! Finding and healing PEX caches poisoned by pex's symlink bugs.
//!
//! pex before 2.20.4 computes its relative cache links from the *logical* PEX_ROOT path
//! while the targets are physical (pex#2572): under a symlinked HOME it writes
//! `unzipped_pexes/0/<h>/.bootstrap -> ../../../../../../a/b/c/.cache/pex/bootstraps/0/<b>`.
//! pex trusts existing cache entries, so every later run fails (`No module named 'pex'`)
//! even with HOME fixed. Such a link embeds a tail of the physical PEX_ROOT path followed
//! by the path inside the root; the link a fixed pex writes is the relative path from
//! the link's directory to that same place.
//!
//! [`plan`] reads the cache and returns a [`RepairPlan`] (a plain value, printed by
//! `--dry-run` and `--json`); [`apply`] carries it out entry by entry, each under the
//! entry's own pex lock, re-judging the entry after taking the lock so a concurrent pex
//! or repair is never raced. Nothing outside PEX_ROOT is ever written, and no link is
//! followed out of it.
//!
//! | verdict | what pexinit does |
//! |---|---|
//! | healthy | nothing |
//! | poisoned, the intended target exists | rewrite the link (same form: relative stays relative) |
//! | poisoned with no target, dangling or looping inside the root, an entry that is not a directory | quarantine the whole entry: pex rebuilds it |
//! | leaves PEX_ROOT in no pattern pex produces (`/etc/passwd`, `../../../../../x`) | report as suspicious, leave alone |

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, OFlag, fcntl, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};
use serde::{Serialize, Serializer};

use crate::error::exit;
use crate::fs::dir::FileKind;
use crate::fs::lock::lock_exclusive;
use crate::fs::rename::rename_noreplace;
use crate::paths::resolve_physical;
use crate::pex::cache::{
    CacheRoot, EntryKind, EntryRef, HEAL_TMP_PREFIX, LinkRef, Problem, QUARANTINE_DIR, Visitor,
    is_linked_top_dir,
};

/// Rounds of plan-and-apply: healing or quarantining one entry can reveal work in
/// another (a venv whose wheels were quarantined); pex's dependency chains are short.
const MAX_ROUNDS: usize = 4;

fn lossy<S: Serializer, T: AsRef<OsStr>>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.as_ref().to_string_lossy())
}

/// One link to rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkFix {
    /// Relative to PEX_ROOT.
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    #[serde(serialize_with = "lossy")]
    pub old: OsString,
    #[serde(serialize_with = "lossy")]
    pub new: OsString,
}

/// A link that is broken beyond rewriting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    #[serde(serialize_with = "lossy")]
    pub target: OsString,
    pub reason: String,
    /// Where the link points inside PEX_ROOT, when it stays inside.
    #[serde(skip)]
    lexical: Option<PathBuf>,
}

/// A cache entry (pex's atomic directory) with poisoned links to rewrite.
#[derive(Debug, Clone, Serialize)]
pub struct EntryHeal {
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    pub kind: EntryKind,
    pub links: Vec<LinkFix>,
}

/// A cache entry to move aside so pex rebuilds it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryQuarantine {
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    pub kind: EntryKind,
    pub reason: String,
    pub links: Vec<BrokenLink>,
}

/// A link pexinit does not understand: left alone, reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuspiciousLink {
    /// The cache entry holding the link (the link itself when the entry is a link).
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    #[serde(serialize_with = "lossy")]
    pub target: OsString,
    pub reason: String,
}

/// A place the walker could not look into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathProblem {
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    #[serde(flatten)]
    pub problem: Problem,
}

/// A temporary link left by a repair that was killed mid-heal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
}

/// What a repair would do to a PEX_ROOT: computed by reading only.
#[derive(Debug, Clone, Serialize)]
pub struct RepairPlan {
    #[serde(serialize_with = "lossy")]
    pub pex_root: PathBuf,
    pub entries_scanned: usize,
    pub dir_entries_read: usize,
    pub links_checked: usize,
    pub heal: Vec<EntryHeal>,
    pub quarantine: Vec<EntryQuarantine>,
    pub suspicious: Vec<SuspiciousLink>,
    pub problems: Vec<PathProblem>,
    pub leftovers: Vec<Leftover>,
}

impl RepairPlan {
    /// Whether applying the plan would change anything.
    pub fn has_work(&self) -> bool {
        !(self.heal.is_empty() && self.quarantine.is_empty() && self.leftovers.is_empty())
    }

    /// Whether something remains that repair leaves alone.
    pub fn has_suspicious(&self) -> bool {
        !(self.suspicious.is_empty() && self.problems.is_empty())
    }

    pub fn poisoned_links(&self) -> usize {
        self.heal.iter().map(|h| h.links.len()).sum()
    }
}

/// Why `plan` could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("PEX_ROOT {path}: {message}")]
    Root { path: PathBuf, message: String },
}

/// Reads the PEX_ROOT at `pex_root` (resolved to its physical path first) and plans
/// its repair. Never writes.
pub fn plan(pex_root: &Path) -> Result<RepairPlan, RepairError> {
    let root = open_root(pex_root)?;
    Ok(plan_root(&root))
}

/// Plans the repair of the entries one PEX runs from (see [`CacheRoot::walk_pex`]).
/// `pex_root` is already physical (the PEX_ROOT `run` exports), so it is opened as is:
/// resolving it again would cost a stat per component on every start.
pub fn plan_pex(pex_root: &Path, pex_hash: &str) -> Result<RepairPlan, RepairError> {
    let root = CacheRoot::open(pex_root).map_err(|e| RepairError::Root {
        path: pex_root.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut judge = Judge::new(&root);
    root.walk_pex(pex_hash, &mut judge);
    Ok(judge.finish())
}

/// Opens `pex_root` by its physical path: suffix matching against the physical path is
/// what recognizes poisoned links.
pub fn open_root(pex_root: &Path) -> Result<CacheRoot, RepairError> {
    let error = |message: String| RepairError::Root {
        path: pex_root.to_path_buf(),
        message,
    };
    let absolute = if pex_root.is_absolute() {
        pex_root.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| error(format!("no working directory: {e}")))?
            .join(pex_root)
    };
    let resolved = resolve_physical(&absolute).map_err(|e| error(e.to_string()))?;
    if !resolved.exists {
        return Err(error("does not exist".into()));
    }
    CacheRoot::open(&resolved.physical).map_err(|e| error(e.to_string()))
}

/// Plans the repair of an opened root.
pub fn plan_root(root: &CacheRoot) -> RepairPlan {
    let mut judge = Judge::new(root);
    root.walk(&mut judge);
    judge.finish()
}

/// Judges links as the walker finds them, gathering per-entry verdicts.
struct Judge<'r> {
    root: &'r CacheRoot,
    /// The physical PEX_ROOT, component by component.
    root_parts: Vec<OsString>,
    plan: RepairPlan,
    current: Option<EntryVerdicts>,
    entries: Vec<EntryVerdicts>,
}

struct EntryVerdicts {
    rel: PathBuf,
    kind: EntryKind,
    not_a_directory: bool,
    fixes: Vec<LinkFix>,
    broken: Vec<BrokenLink>,
}

enum Verdict {
    Healthy,
    Poisoned(OsString),
    Broken {
        reason: String,
        lexical: Option<PathBuf>,
    },
    Suspicious(String),
}

/// Whether a path inside PEX_ROOT can be reached. Only a definite "no" makes an entry
/// broken: a directory this user cannot search (EACCES) or a lookup that kept racing
/// proves nothing, and quarantining on it would throw away a good entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Yes,
    No(Errno),
    Unknown(Errno),
}

impl Reach {
    fn of(result: Result<(), Errno>) -> Reach {
        match result {
            Ok(()) => Reach::Yes,
            Err(e @ (Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR)) => Reach::No(e),
            Err(e) => Reach::Unknown(e),
        }
    }
}

fn unverifiable(e: Errno) -> Verdict {
    Verdict::Suspicious(format!(
        "its target cannot be checked: {}",
        io::Error::from(e)
    ))
}

impl<'r> Judge<'r> {
    fn new(root: &'r CacheRoot) -> Self {
        Judge {
            root,
            root_parts: normal_parts(root.path()).unwrap_or_default(),
            plan: RepairPlan {
                pex_root: root.path().to_path_buf(),
                entries_scanned: 0,
                dir_entries_read: 0,
                links_checked: 0,
                heal: Vec::new(),
                quarantine: Vec::new(),
                suspicious: Vec::new(),
                problems: Vec::new(),
                leftovers: Vec::new(),
            },
            current: None,
            entries: Vec::new(),
        }
    }

    fn close_entry(&mut self) {
        if let Some(entry) = self.current.take()
            && (entry.not_a_directory || !entry.fixes.is_empty() || !entry.broken.is_empty())
        {
            self.entries.push(entry);
        }
    }

    fn finish(mut self) -> RepairPlan {
        self.close_entry();
        let healed: BTreeSet<PathBuf> = self
            .entries
            .iter()
            .flat_map(|e| e.fixes.iter().map(|f| f.path.clone()))
            .collect();
        for mut entry in std::mem::take(&mut self.entries) {
            // A link that dangles only because it passes through a link about to be
            // rewritten is not broken: the next round re-checks it.
            entry
                .broken
                .retain(|b| !b.lexical.as_ref().is_some_and(|t| through_any(t, &healed)));
            if entry.not_a_directory || !entry.broken.is_empty() {
                let reason = if entry.not_a_directory {
                    "not a directory (pex would trust it as is)".to_owned()
                } else {
                    format!("{} link(s) with no valid target", entry.broken.len())
                };
                self.plan.quarantine.push(EntryQuarantine {
                    entry: entry.rel,
                    kind: entry.kind,
                    reason,
                    links: entry.broken,
                });
            } else if !entry.fixes.is_empty() {
                self.plan.heal.push(EntryHeal {
                    entry: entry.rel,
                    kind: entry.kind,
                    links: entry.fixes,
                });
            }
        }
        self.plan
    }

    fn judge(&self, entry: &EntryRef<'_>, link: &LinkRef<'_>) -> Option<(Verdict, OsString)> {
        // The common case, one syscall: a relative link that resolves without ever
        // leaving PEX_ROOT. The kernel refuses absolute links and any `..` above it.
        let failure = match self.root.resolves_beneath(link.rel) {
            Ok(()) => return Some((Verdict::Healthy, OsString::new())),
            Err(e) => e,
        };
        // Gone since the walker listed it (a concurrent repair or pex): nothing to judge.
        let text = readlinkat(link.dir, link.name).ok()?;
        let verdict = if Path::new(&text).is_absolute() {
            self.judge_absolute(entry, link, Path::new(&text))
        } else {
            self.judge_relative(link, Path::new(&text), failure)
        };
        Some((verdict, text))
    }

    fn judge_absolute(&self, entry: &EntryRef<'_>, link: &LinkRef<'_>, text: &Path) -> Verdict {
        if let Ok(inside) = text.strip_prefix(self.root.path()) {
            // pex 2.20.3 writes `venvs/0/s/<h>/venv -> <PEX_ROOT>/venvs/0/<h>/<i>`.
            let reach = match normal_parts(inside) {
                Some(parts) if !parts.is_empty() => self.reach(inside),
                _ => Reach::No(Errno::ENOENT),
            };
            return match reach {
                Reach::Yes => Verdict::Healthy,
                Reach::Unknown(e) => unverifiable(e),
                Reach::No(_) => Verdict::Broken {
                    reason: "absolute link into PEX_ROOT whose target is missing".into(),
                    lexical: Some(inside.to_path_buf()),
                },
            };
        }
        if let Some(inside) = self.alias_inside(text) {
            return match self.reach(&inside) {
                Reach::Yes => Verdict::Poisoned(self.root.path().join(inside).into_os_string()),
                Reach::Unknown(e) => unverifiable(e),
                Reach::No(_) => Verdict::Broken {
                    reason: "points into a symlinked alias of PEX_ROOT at a missing entry".into(),
                    lexical: None,
                },
            };
        }
        let parent = link.rel.parent();
        if entry.kind == EntryKind::Venv && parent == Some(&entry.rel.join("bin")) {
            // The venv's interpreter link (`bin/python3.11 -> /usr/bin/python3.11`).
            return Verdict::Healthy;
        }
        Verdict::Suspicious("absolute link out of PEX_ROOT".into())
    }

    fn judge_relative(&self, link: &LinkRef<'_>, text: &Path, failure: Errno) -> Verdict {
        let dir = link.rel.parent().unwrap_or(Path::new(""));
        match lexical(dir, text) {
            Lexical::Inside(target) => match Reach::of(Err(failure)) {
                // Stays inside but crosses another link that leaves the root: that link
                // gets its own verdict, and this one is fine once it is healed.
                Reach::Unknown(Errno::EXDEV) => Verdict::Healthy,
                Reach::No(e) => Verdict::Broken {
                    reason: describe(e).into(),
                    lexical: Some(target),
                },
                Reach::Unknown(e) => unverifiable(e),
                Reach::Yes => Verdict::Healthy,
            },
            Lexical::Escapes(rest) => match self.logical_inside(&rest) {
                Some((inside, Reach::Yes)) => Verdict::Poisoned(relative_path(dir, &inside)),
                Some((_, Reach::Unknown(e))) => unverifiable(e),
                Some((_, Reach::No(_))) => Verdict::Broken {
                    reason: "written from a symlinked PEX_ROOT path; its target is missing".into(),
                    lexical: None,
                },
                None => Verdict::Suspicious("relative link out of PEX_ROOT".into()),
            },
            Lexical::Odd => Verdict::Suspicious("relative link out of PEX_ROOT".into()),
        }
    }

    fn reach(&self, inside: &Path) -> Reach {
        Reach::of(self.root.resolves_beneath(inside))
    }

    /// The place inside PEX_ROOT a poisoned relative link meant: `rest` (the text after
    /// its leading `..`s) is a tail of the physical root's components followed by a
    /// path inside the root. Prefers a candidate that exists.
    fn logical_inside(&self, rest: &[OsString]) -> Option<(PathBuf, Reach)> {
        let parts = &self.root_parts;
        let mut first = None;
        for k in 0..parts.len() {
            let tail = &parts[k..];
            if rest.len() <= tail.len() || rest[..tail.len()] != *tail {
                continue;
            }
            let inside = &rest[tail.len()..];
            if !is_linked_top_dir(&inside[0]) {
                continue;
            }
            let inside: PathBuf = inside.iter().collect();
            match self.reach(&inside) {
                Reach::Yes => return Some((inside, Reach::Yes)),
                reach => {
                    first.get_or_insert((inside, reach));
                }
            }
        }
        first
    }

    /// For an absolute link into a symlinked alias of PEX_ROOT (`/home/u/.cache/pex/…`
    /// when the root is `/var/home/u/.cache/pex`), the path inside the root. The alias
    /// is confirmed by resolving it (lstat and readlink only; nothing is opened).
    fn alias_inside(&self, text: &Path) -> Option<PathBuf> {
        let parts = normal_parts(text)?;
        (1..parts.len())
            .filter(|&j| is_linked_top_dir(&parts[j]))
            .find_map(|j| {
                let alias: PathBuf = Path::new("/").join(parts[..j].iter().collect::<PathBuf>());
                let physical = resolve_physical(&alias).ok()?.physical;
                (physical == self.root.path()).then(|| parts[j..].iter().collect())
            })
    }
}

impl Visitor for Judge<'_> {
    fn entry(&mut self, entry: &EntryRef<'_>) {
        self.close_entry();
        self.plan.entries_scanned += 1;
        self.current = Some(EntryVerdicts {
            rel: entry.rel.to_path_buf(),
            kind: entry.kind,
            not_a_directory: matches!(entry.file_kind, FileKind::File | FileKind::Other),
            fixes: Vec::new(),
            broken: Vec::new(),
        });
    }

    fn link(&mut self, entry: &EntryRef<'_>, link: &LinkRef<'_>) {
        self.plan.links_checked += 1;
        let Some((verdict, text)) = self.judge(entry, link) else {
            return;
        };
        let path = link.rel.to_path_buf();
        match verdict {
            Verdict::Healthy => {}
            Verdict::Suspicious(reason) => self.plan.suspicious.push(SuspiciousLink {
                entry: entry.rel.to_path_buf(),
                path,
                target: text,
                reason,
            }),
            Verdict::Poisoned(new) => {
                if let Some(current) = &mut self.current {
                    current.fixes.push(LinkFix {
                        path,
                        old: text,
                        new,
                    });
                }
            }
            Verdict::Broken { reason, lexical } => {
                if let Some(current) = &mut self.current {
                    current.broken.push(BrokenLink {
                        path,
                        target: text,
                        reason,
                        lexical,
                    });
                }
            }
        }
    }

    fn leftover(&mut self, entry: &EntryRef<'_>, rel: &Path) {
        self.plan.leftovers.push(Leftover {
            entry: entry.rel.to_path_buf(),
            path: rel.to_path_buf(),
        });
    }

    fn problem(&mut self, rel: &Path, problem: Problem) {
        self.plan.problems.push(PathProblem {
            path: rel.to_path_buf(),
            problem,
        });
    }

    fn count(&mut self, entries: usize) {
        self.plan.dir_entries_read += entries;
    }
}

fn describe(e: Errno) -> &'static str {
    match e {
        Errno::ENOENT => "dangling: the target does not exist",
        Errno::ELOOP => "a symlink loop",
        Errno::ENOTDIR => "a path component of the target is not a directory",
        _ => "the target cannot be resolved",
    }
}

/// Whether `target` is, or lies below, one of `links`.
fn through_any(target: &Path, links: &BTreeSet<PathBuf>) -> bool {
    target.ancestors().any(|a| links.contains(a))
}

/// The normal components of `path`; None when it has `.` or `..` in it.
fn normal_parts(path: &Path) -> Option<Vec<OsString>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => parts.push(name.to_os_string()),
            Component::RootDir => {}
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts)
}

enum Lexical {
    /// Where the link points, relative to PEX_ROOT, never leaving it on the way.
    Inside(PathBuf),
    /// `../` × n leaving the root, then these plain components.
    Escapes(Vec<OsString>),
    /// Leaves the root in a shape pex never writes (`..` after names, `.`).
    Odd,
}

/// Resolves relative link text `text` found in directory `dir` (relative to PEX_ROOT)
/// by string operations only.
fn lexical(dir: &Path, text: &Path) -> Lexical {
    let mut at: Vec<&OsStr> = dir.iter().collect();
    let mut parts = text.components().peekable();
    let mut ups = 0;
    while parts.next_if_eq(&Component::ParentDir).is_some() {
        ups += 1;
    }
    if ups > at.len() {
        let rest: Option<Vec<OsString>> = parts
            .map(|c| match c {
                Component::Normal(name) => Some(name.to_os_string()),
                _ => None,
            })
            .collect();
        return match rest {
            Some(rest) if !rest.is_empty() => Lexical::Escapes(rest),
            _ => Lexical::Odd,
        };
    }
    at.truncate(at.len() - ups);
    for c in parts {
        match c {
            Component::Normal(name) => at.push(name),
            Component::CurDir => {}
            Component::ParentDir if at.pop().is_some() => {}
            _ => return Lexical::Odd,
        }
    }
    Lexical::Inside(at.iter().collect())
}

/// The relative link text from directory `from` to `to` (both relative to PEX_ROOT),
/// as Python's `os.path.relpath` computes it, so healed links equal a clean pex's.
fn relative_path(from: &Path, to: &Path) -> OsString {
    let from: Vec<_> = from.iter().collect();
    let to: Vec<_> = to.iter().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out.into_os_string()
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairOutcome {
    pub healed: Vec<EntryHeal>,
    pub quarantined: Vec<Quarantined>,
    pub leftovers_removed: usize,
    pub failed: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    /// Where the entry went, relative to PEX_ROOT.
    #[serde(serialize_with = "lossy")]
    pub moved_to: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    #[serde(serialize_with = "lossy")]
    pub entry: PathBuf,
    pub error: String,
}

impl RepairOutcome {
    fn merge(&mut self, other: RepairOutcome) {
        self.healed.extend(other.healed);
        self.quarantined.extend(other.quarantined);
        self.leftovers_removed += other.leftovers_removed;
        self.failed.extend(other.failed);
    }
}

/// Carries out `plan` on `root`, entry by entry under each entry's pex lock. Each entry
/// is judged again once locked, and only what is still wrong is changed: a concurrent
/// repair or pex may have changed it since the plan was made.
pub fn apply(root: &CacheRoot, plan: &RepairPlan) -> RepairOutcome {
    let mut outcome = RepairOutcome::default();
    let quarantine: BTreeSet<&Path> = plan.quarantine.iter().map(|q| q.entry.as_path()).collect();
    // Heals first: a link healed in one entry can make another entry whole again.
    let mut order: Vec<&Path> = plan.heal.iter().map(|h| h.entry.as_path()).collect();
    order.extend(plan.leftovers.iter().map(|l| l.entry.as_path()));
    order.extend(quarantine.iter().copied());
    let mut done = BTreeSet::new();
    for entry in order {
        if done.insert(entry) {
            let may_quarantine = quarantine.contains(entry);
            if let Err(e) = apply_entry(root, entry, may_quarantine, &mut outcome) {
                outcome.failed.push(Failure {
                    entry: entry.to_path_buf(),
                    error: e.to_string(),
                });
            }
        }
    }
    outcome
}

fn apply_entry(
    root: &CacheRoot,
    entry: &Path,
    may_quarantine: bool,
    outcome: &mut RepairOutcome,
) -> io::Result<()> {
    let _lock = EntryLock::acquire(root, entry)?;
    let mut judge = Judge::new(root);
    if !root.walk_entry(entry, &mut judge) {
        return Ok(()); // Quarantined or removed by someone else meanwhile.
    }
    let fresh = judge.finish();
    for leftover in &fresh.leftovers {
        remove_link(root, &leftover.path)?;
        outcome.leftovers_removed += 1;
    }
    if let Some(q) = fresh.quarantine.into_iter().next() {
        if may_quarantine {
            let moved_to = quarantine_entry(root, entry)?;
            outcome.quarantined.push(Quarantined {
                entry: q.entry,
                moved_to,
                reason: q.reason,
            });
        }
        return Ok(());
    }
    if let Some(heal) = fresh.heal.into_iter().next() {
        for fix in &heal.links {
            heal_link(root, fix)?;
        }
        outcome.healed.push(heal);
    }
    Ok(())
}

/// pex's lock for an entry, held in both styles pex uses: POSIX record locks (pex
/// before 2.28 by default) and flock (newer pex, or `_PEX_FILE_LOCK_STYLE=bsd`). The
/// two never exclude each other on Linux, so taking only one would not stop a pex.
/// The record lock is an open-file-description lock, which conflicts with pex's
/// classic POSIX locks but, unlike them, also excludes other threads of this process.
struct EntryLock {
    _fd: Flock<OwnedFd>,
}

impl EntryLock {
    fn acquire(root: &CacheRoot, entry: &Path) -> io::Result<EntryLock> {
        let (parent, name) = split(entry)?;
        let dir = root.open_dir(parent)?;
        let mut lock_name = OsString::from(".");
        lock_name.push(name);
        lock_name.push(".atomic_directory.lck");
        let fd = openat(
            dir.as_fd(),
            lock_name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?;
        let fd = lock_exclusive(fd, || {}).map_err(|(_, e)| io::Error::from(e))?;
        let whole_file = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        retry_eintr(|| fcntl(&*fd, FcntlArg::F_OFD_SETLKW(&whole_file)).map(drop))?;
        Ok(EntryLock { _fd: fd })
    }
}

fn retry_eintr(mut op: impl FnMut() -> Result<(), Errno>) -> io::Result<()> {
    loop {
        match op() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::other(format!(
            "{} is not a cache path",
            rel.display()
        ))),
    }
}

/// Rewrites one link atomically: the new link is made under a temporary name in the
/// same directory, then renamed over the old one, so readers see the old or the new
/// link, never none. A crash leaves at most the temporary link, which the next repair
/// removes.
fn heal_link(root: &CacheRoot, fix: &LinkFix) -> io::Result<()> {
    let (parent, name) = split(&fix.path)?;
    let dir = root.open_dir(parent)?;
    let mut tmp = OsString::from(HEAL_TMP_PREFIX);
    tmp.push(name);
    match unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    symlinkat(fix.new.as_os_str(), &dir, tmp.as_os_str())?;
    renameat(&dir, tmp.as_os_str(), &dir, name)?;
    root.resolves_beneath(&fix.path).map_err(|e| {
        io::Error::other(format!(
            "{} -> {} still does not resolve: {e}",
            fix.path.display(),
            fix.new.to_string_lossy()
        ))
    })
}

fn remove_link(root: &CacheRoot, rel: &Path) -> io::Result<()> {
    let (parent, name) = split(rel)?;
    let dir = root.open_dir(parent)?;
    match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Moves an entry to `PEX_ROOT/.pexinit-quarantine/` (or, when that is on another
/// filesystem, to a hidden sibling) with one rename: pex finds the entry missing and
/// rebuilds it. Returns the new path relative to PEX_ROOT.
fn quarantine_entry(root: &CacheRoot, entry: &Path) -> io::Result<PathBuf> {
    let (parent, name) = split(entry)?;
    let parent_fd = root.open_dir(parent)?;
    let stamp = format!(
        "{}.{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let flat = entry.to_string_lossy().replace('/', "+");
    let moved = format!("{flat}.{stamp}");
    match mkdirat(root.fd(), QUARANTINE_DIR, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let quarantine = root.open_dir(Path::new(QUARANTINE_DIR))?;
    match rename_noreplace(&parent_fd, name, &quarantine, OsStr::new(&moved)) {
        Ok(()) => Ok(Path::new(QUARANTINE_DIR).join(moved)),
        Err(Errno::EXDEV) => {
            let mut sibling = OsString::from(".");
            sibling.push(name);
            sibling.push(format!(".pexinit-quarantined.{stamp}"));
            rename_noreplace(&parent_fd, name, &parent_fd, &sibling)?;
            Ok(parent.join(sibling))
        }
        Err(e) => Err(e.into()),
    }
}

/// A repair as the CLI runs it: the first plan, what was done, and what is left.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    pub plan: RepairPlan,
    pub outcome: RepairOutcome,
    /// The plan after applying: what repair left alone (suspicious links, problems).
    pub remaining: RepairPlan,
}

impl RepairReport {
    /// For people: one summary line, then one line per change, suspicious link,
    /// problem and failure.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let plan = &self.plan;
        let mut out = format!(
            "{}: scanned {} entries ({} links): {} poisoned link(s) in {} entries, {} to \
             quarantine, {} suspicious, {} problem(s)\n",
            plan.pex_root.display(),
            plan.entries_scanned,
            plan.links_checked,
            plan.poisoned_links(),
            plan.heal.len(),
            plan.quarantine.len(),
            self.remaining.suspicious.len(),
            self.remaining.problems.len(),
        );
        let verb = if self.dry_run { "would heal" } else { "healed" };
        let heals = if self.dry_run {
            &plan.heal
        } else {
            &self.outcome.healed
        };
        for heal in heals {
            for link in &heal.links {
                let _ = writeln!(
                    out,
                    "{verb} {} -> {} (was {})",
                    link.path.display(),
                    link.new.to_string_lossy(),
                    link.old.to_string_lossy()
                );
            }
        }
        if self.dry_run {
            for q in &plan.quarantine {
                let _ = writeln!(out, "would quarantine {} ({})", q.entry.display(), q.reason);
            }
        }
        for q in &self.outcome.quarantined {
            let _ = writeln!(
                out,
                "quarantined {} -> {} ({})",
                q.entry.display(),
                q.moved_to.display(),
                q.reason
            );
        }
        for s in &self.remaining.suspicious {
            let _ = writeln!(
                out,
                "suspicious {} -> {} ({}): left alone",
                s.path.display(),
                s.target.to_string_lossy(),
                s.reason
            );
        }
        for p in &self.remaining.problems {
            let _ = writeln!(out, "problem {}: {:?}", p.path.display(), p.problem);
        }
        for f in &self.outcome.failed {
            let _ = writeln!(out, "failed {}: {}", f.entry.display(), f.error);
        }
        out
    }

    /// The exit status of `pexinit repair` (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        if !self.outcome.failed.is_empty() || (!self.dry_run && self.remaining.has_work()) {
            exit::NOT_HEALED
        } else if self.remaining.has_suspicious() {
            exit::SUSPICIOUS
        } else if self.dry_run && self.plan.has_work() {
            exit::WOULD_REPAIR
        } else {
            exit::OK
        }
    }
}

/// Plans and (unless `dry_run`) applies, re-planning after each round until nothing is
/// left to do.
pub fn repair(pex_root: &Path, dry_run: bool) -> Result<RepairReport, RepairError> {
    let root = open_root(pex_root)?;
    let first = plan_root(&root);
    let mut outcome = RepairOutcome::default();
    let mut current = first.clone();
    if !dry_run {
        for _ in 0..MAX_ROUNDS {
            if !current.has_work() {
                break;
            }
            outcome.merge(apply(&root, &current));
            current = plan_root(&root);
        }
    }
    Ok(RepairReport {
        dry_run,
        plan: first,
        outcome,
        remaining: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<OsString> {
        s.split('/').map(OsString::from).collect()
    }

    #[test]
    fn relative_path_matches_python_relpath() {
        assert_eq!(
            relative_path(
                Path::new("unzipped_pexes/0/h/.deps"),
                Path::new("installed_wheels/0/w/x.whl")
            ),
            OsString::from("../../../../installed_wheels/0/w/x.whl")
        );
        assert_eq!(
            relative_path(Path::new("venvs/1/s/abcd1234"), Path::new("venvs/1/p/i")),
            OsString::from("../../p/i")
        );
    }

    #[test]
    fn lexical_tells_inside_from_escapes() {
        let dir = Path::new("unzipped_pexes/0/h");
        assert!(matches!(
            lexical(dir, Path::new("../../../bootstraps/0/b")),
            Lexical::Inside(p) if p == Path::new("bootstraps/0/b")
        ));
        assert!(matches!(
            lexical(dir, Path::new("../../../../../a/b/c/.cache/pex/bootstraps/0/b")),
            Lexical::Escapes(rest) if rest == parts("a/b/c/.cache/pex/bootstraps/0/b")
        ));
        assert!(matches!(
            lexical(dir, Path::new("../../../../x/../y")),
            Lexical::Odd
        ));
    }
}
