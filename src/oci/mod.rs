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
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod media;
pub mod progress;
pub mod source;
pub mod split;
pub mod walk;

use crate::cli::{ImageAppendArgs, LayerArgs};
use crate::error::Result;

/// `pexinit layer`: returns the exit status.
pub fn layer_command(args: &LayerArgs) -> Result<u8> {
    let plan = layer::plan(args)?;
    let written = layer::write(&plan)?;
    let to_stderr = plan
        .layers
        .iter()
        .any(|l| l.target == layer::Target::Stdout);
    layer::print(&written, args.json, to_stderr)?;
    Ok(0)
}

/// `pexinit image append`: returns the exit status.
pub fn append_command(args: &ImageAppendArgs) -> Result<u8> {
    let plan = append::plan(args)?;
    let report = append::apply(&plan)?;
    append::print(&report, args.json)?;
    Ok(0)
}
