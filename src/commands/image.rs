//! `pexinit image append`: append layers to an image of an OCI image layout.

use crate::cli::ImageAppendArgs;
use crate::epoch::source_date_epoch;
use crate::error::Result;
use crate::oci::{AppendRequest, append};

pub fn append(args: &ImageAppendArgs, verbose: u8) -> Result<u8> {
    super::init_logging(verbose)?;
    let plan = append::plan(&AppendRequest {
        layout: args.layout.clone(),
        reference: args.reference.clone(),
        layer: args.layer.clone(),
        tag: args.tag.clone(),
        entrypoint: args.entrypoint.clone(),
        cmd: args.cmd.clone(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        label: args.label.clone(),
        annotation: args.annotation.clone(),
        platform: args.platform.clone(),
        source_date_epoch: source_date_epoch()?,
    })?;
    let report = append::apply(&plan)?;
    super::print(&super::json_or(args.json, &report, || {
        format!(
            "{}: manifest {} ({} bytes), config {}, {} layer(s) appended\n",
            report.reference.as_deref().unwrap_or("(untagged)"),
            report.manifest.digest,
            report.manifest.size,
            report.config.digest,
            report.layers.len()
        )
    })?)?;
    Ok(0)
}
