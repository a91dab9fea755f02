//! Reproducible OCI layers and daemon-less edits of OCI image layouts.
//!
//! `layer`: [`source`] parses `SRC[:DEST]`, [`walk`] plans every entry, [`split`]
//! divides a seed, [`archive`] writes the tar, [`compress`] compresses and digests it,
//! [`crate::fs::atomic`] puts the file in place. `image append`: [`layout`] reads and verifies an
//! OCI image layout, [`inspect`] reads the layer files, [`config`] edits the image config,
//! [`append`] edits manifest and index and writes them.

pub mod append;
pub mod archive;
pub mod compress;
pub mod config;
pub mod distributions;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod progress;
pub mod source;
pub mod split;
pub mod walk;

use std::path::PathBuf;

pub use archive::Owner;
pub use media::Compression;

/// What `pexinit layer` is asked to write.
#[derive(Debug, Clone)]
pub struct LayerRequest {
    /// The layer file (with `split`: the dependencies' layer).
    pub output: PathBuf,
    pub compression: Compression,
    /// None: the compression's default level.
    pub level: Option<i32>,
    /// Every mtime is clamped to this many seconds since the epoch.
    pub mtime: u64,
    /// Owner of every entry.
    pub owner: Owner,
    /// Keep setuid / setgid bits instead of refusing files that carry them.
    pub allow_setuid: bool,
    pub normalize_modes: bool,
    /// Compression threads; None: the number of cores.
    pub threads: Option<usize>,
    /// Split one seed into two layers: the application's goes to this file.
    pub split: Option<PathBuf>,
    /// With `split`: one layer per large distribution, in a directory of its own.
    pub distributions: Option<distributions::DistributionLayers>,
    /// `SRC[:DEST]` as given.
    pub sources: Vec<String>,
}

/// What `pexinit image append` is asked to do.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// The image to append to, by ref name; None: the layout's only image.
    pub reference: Option<String>,
    /// Layer files, in order.
    pub layer: Vec<PathBuf>,
    /// The new image's ref name; None: `reference`'s, which moves.
    pub tag: Option<String>,
    /// JSON array or a plain command line.
    pub entrypoint: Option<String>,
    /// JSON array or a plain command line.
    pub cmd: Option<String>,
    /// `K=V` pairs.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// `K=V` pairs.
    pub label: Vec<String>,
    /// `K=V` pairs set in the manifest's annotations.
    pub annotation: Vec<String>,
    /// `OS/ARCH[/VARIANT]`: the image to append to inside a multi-platform index.
    pub platform: Option<String>,
    /// `created` of the config and history; None: the base's is kept.
    pub source_date_epoch: Option<i64>,
}
