//! Known cache bugs of pex runtimes, keyed by the pex version that built a PEX.
//!
//! The runtime is baked into each PEX file, so these depend on PEX-INFO's
//! `build_properties.pex_version`, not on any pex installed on the machine.

use serde::Serialize;

use crate::pex::info::Layout;

/// What kind of PEX a bug bites: some only bite `--venv` PEXes, or one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexKind {
    pub layout: Layout,
    pub venv: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnownBug {
    pub id: &'static str,
    /// The first affected pex version, when the bug was introduced later than 2.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<&'static str>,
    pub fixed_in: &'static str,
    pub summary: &'static str,
    /// What pexinit does about it.
    pub mitigation: &'static str,
    #[serde(skip)]
    bites: fn(PexKind) -> bool,
}

fn any_pex(_: PexKind) -> bool {
    true
}

fn venv_pex(kind: PexKind) -> bool {
    kind.venv
}

const BUGS: &[KnownBug] = &[
    KnownBug {
        id: "pex#2572",
        fixed_in: "2.20.4",
        summary: "relative cache symlinks are computed from the logical path of HOME: a HOME or \
                  ~/.cache that is (or sits below) a symlink writes dangling links \
                  (ModuleNotFoundError: No module named 'pex')",
        mitigation: "pexinit run exports a physical HOME and an explicit physical PEX_ROOT",
        since: None,
        bites: any_pex,
    },
    KnownBug {
        id: "pex#2626",
        fixed_in: "2.27.1",
        summary: "PEX_ROOT from the environment is expanded but not made physical (realpath), so \
                  cache paths can carry a logical prefix",
        mitigation: "pexinit run always exports an explicit physical PEX_ROOT",
        since: None,
        bites: any_pex,
    },
    KnownBug {
        id: "pex#2023",
        since: None,
        fixed_in: "2.1.120",
        summary: "a `--layout loose --venv` PEX links its venv to paths relative to the working \
                  directory: started from another directory it fails to import its code",
        mitigation: "none: rebuild with pex >= 2.1.120 (pexinit seed warms it from its absolute \
                     path, so a seed built in another directory still holds the bad links)",
        bites: |kind| kind.venv && kind.layout == Layout::Loose,
    },
    KnownBug {
        id: "pex#2160",
        since: None,
        fixed_in: "2.1.138",
        summary: "an interrupted venv build leaves a poisoned `installed_wheels` entry that later \
                  venvs link to and reuse",
        mitigation: "pexinit repair and run's cache look quarantine broken entries; a seed is \
                     verified before its manifest is written",
        bites: venv_pex,
    },
    KnownBug {
        id: "pex#3030",
        since: Some("2.60.0"),
        fixed_in: "2.72.2",
        summary: "a `--layout packed --venv` PEX fails with ModuleNotFoundError",
        mitigation: "none: rebuild with pex >= 2.72.2",
        bites: |kind| kind.venv && kind.layout == Layout::Packed,
    },
    KnownBug {
        id: "pex#3223",
        since: None,
        fixed_in: "2.98.3",
        summary: "a `--venv` PEX's venv started directly (`--sh-boot`, a scie, a fast path) \
                  never refreshes its `.last-access`, so `pex3 cache prune` removes a venv in \
                  use",
        mitigation: "for seeded starts: pexinit run refreshes the seeded venv's .last-access \
                     on a seed it can write (a read-only seed is never pruned); else rebuild \
                     with pex >= 2.98.3",
        bites: venv_pex,
    },
];

/// The known bugs of the runtime built by pex `version` that bite a PEX of `kind`. An
/// unparsable version is assumed affected by everything: an unknown runtime is not a
/// safe one.
pub fn affecting(version: Option<&str>, kind: PexKind) -> Vec<KnownBug> {
    let parsed = version.and_then(parse_version);
    BUGS.iter()
        .filter(|bug| (bug.bites)(kind))
        .filter(|bug| match (parsed, parse_version(bug.fixed_in)) {
            (Some(v), Some(fixed)) => {
                v < fixed
                    && bug
                        .since
                        .and_then(parse_version)
                        .is_none_or(|since| v >= since)
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// `2.20.3` → (2, 20, 3); pre-release or local suffixes on the last part are ignored.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_text = parts.next().unwrap_or("0");
    let digits: String = patch_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let patch = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZIPAPP: PexKind = PexKind {
        layout: Layout::Zipapp,
        venv: false,
    };

    fn ids(version: &str, kind: PexKind) -> Vec<&'static str> {
        affecting(Some(version), kind)
            .iter()
            .map(|b| b.id)
            .collect()
    }

    fn venv(layout: Layout) -> PexKind {
        PexKind { layout, venv: true }
    }

    #[test]
    fn versions_map_to_bugs() {
        assert_eq!(ids("2.20.3", ZIPAPP), ["pex#2572", "pex#2626"]);
        assert_eq!(ids("2.20.4", ZIPAPP), ["pex#2626"]);
        assert_eq!(ids("2.27.0", ZIPAPP), ["pex#2626"]);
        assert!(ids("2.27.1", ZIPAPP).is_empty());
        assert!(ids("2.105.2", ZIPAPP).is_empty());
        assert!(ids("2.1.164", ZIPAPP).len() == 2);
        assert_eq!(affecting(None, ZIPAPP).len(), 2);
        assert_eq!(affecting(Some("garbage"), ZIPAPP).len(), 2);
    }

    #[test]
    fn venv_bugs_bite_only_their_kind_and_range() {
        assert_eq!(
            ids("2.1.100", venv(Layout::Loose)),
            ["pex#2572", "pex#2626", "pex#2023", "pex#2160", "pex#3223"]
        );
        assert!(ids("2.1.137", venv(Layout::Zipapp)).contains(&"pex#2160"));
        assert!(!ids("2.1.138", venv(Layout::Zipapp)).contains(&"pex#2160"));
        assert_eq!(ids("2.59.0", venv(Layout::Packed)), ["pex#3223"]);
        assert_eq!(
            ids("2.60.0", venv(Layout::Packed)),
            ["pex#3030", "pex#3223"]
        );
        assert_eq!(ids("2.72.2", venv(Layout::Packed)), ["pex#3223"]);
        assert_eq!(ids("2.60.0", venv(Layout::Zipapp)), ["pex#3223"]);
        assert!(ids("2.98.3", venv(Layout::Packed)).is_empty());
    }
}
