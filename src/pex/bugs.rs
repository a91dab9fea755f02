//! Known cache bugs of pex runtimes, keyed by the pex version that built a PEX.
//!
//! The runtime is baked into each PEX file, so these depend on PEX-INFO's
//! `build_properties.pex_version`, not on any pex installed on the machine.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct KnownBug {
    pub id: &'static str,
    pub fixed_in: &'static str,
    pub summary: &'static str,
    /// What pexinit does about it.
    pub mitigation: &'static str,
}

const BUGS: &[KnownBug] = &[
    KnownBug {
        id: "pex#2572",
        fixed_in: "2.20.4",
        summary: "relative cache symlinks are computed from the logical path of HOME: a HOME or \
                  ~/.cache that is (or sits below) a symlink writes dangling links \
                  (ModuleNotFoundError: No module named 'pex')",
        mitigation: "pexinit run exports a physical HOME and an explicit physical PEX_ROOT",
    },
    KnownBug {
        id: "pex#2626",
        fixed_in: "2.27.1",
        summary: "PEX_ROOT from the environment is expanded but not made physical (realpath), so \
                  cache paths can carry a logical prefix",
        mitigation: "pexinit run always exports an explicit physical PEX_ROOT",
    },
];

/// The known bugs of the runtime built by pex `version`. An unparsable version is
/// assumed affected by everything: an unknown runtime is not a safe one.
pub fn affecting(version: Option<&str>) -> Vec<KnownBug> {
    let parsed = version.and_then(parse_version);
    BUGS.iter()
        .filter(|bug| match (parsed, parse_version(bug.fixed_in)) {
            (Some(v), Some(fixed)) => v < fixed,
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

    fn ids(version: &str) -> Vec<&'static str> {
        affecting(Some(version)).iter().map(|b| b.id).collect()
    }

    #[test]
    fn versions_map_to_bugs() {
        assert_eq!(ids("2.20.3"), ["pex#2572", "pex#2626"]);
        assert_eq!(ids("2.20.4"), ["pex#2626"]);
        assert_eq!(ids("2.27.0"), ["pex#2626"]);
        assert!(ids("2.27.1").is_empty());
        assert!(ids("2.105.2").is_empty());
        assert!(ids("2.1.164").len() == 2);
        assert_eq!(affecting(None).len(), 2);
        assert_eq!(affecting(Some("garbage")).len(), 2);
    }
}
