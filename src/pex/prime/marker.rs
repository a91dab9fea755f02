//! What a primed DIR says about itself: the marker, written last.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    /// The seed's physical path (provenance only).
    pub seed: PathBuf,
    /// sha256 of the seed's `.pexinit-seed.json`.
    pub seed_manifest_sha256: String,
    /// The physical PEX_ROOT this tree is valid at.
    pub pex_root: PathBuf,
    pub owner: Option<(u32, u32)>,
    /// The path the seed was built for, when it differs from `pex_root`.
    pub relocated_from: Option<PathBuf>,
    /// The tree's data was on disk before the tree was published.
    pub flushed: bool,
    /// The kernel boot that published an unflushed tree: the only one that may trust it
    /// (see [`super::durability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Marker {
    /// Whether a tree with this marker is what `wanted` would make.
    pub(super) fn same_prime(&self, wanted: &Marker) -> bool {
        self.format == wanted.format
            && self.seed_manifest_sha256 == wanted.seed_manifest_sha256
            && self.pex_root == wanted.pex_root
            && self.owner == wanted.owner
    }

    /// Whether the tree can be trusted in the boot `boot`: it was flushed, or published
    /// in that very boot (nothing can have been lost since).
    pub(super) fn durable_in(&self, boot: Option<&str>) -> bool {
        self.flushed || (self.boot_id.is_some() && self.boot_id.as_deref() == boot)
    }
}
