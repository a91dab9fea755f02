//! Reproducible OCI layers and daemon-less edits of OCI image layouts.

use crate::cli::{ImageAppendArgs, LayerArgs};
use crate::error::{Error, Result};

/// `pexinit layer`: returns the exit status.
pub fn layer_command(_args: &LayerArgs) -> Result<u8> {
    Err(Error::Usage("pexinit layer: not built yet".into()))
}

/// `pexinit image append`: returns the exit status.
pub fn append_command(_args: &ImageAppendArgs) -> Result<u8> {
    Err(Error::Usage("pexinit image append: not built yet".into()))
}
