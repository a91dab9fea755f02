//! `pexinit layer`: write reproducible OCI layers of directories.

use std::fmt::Write;

use crate::cli::LayerArgs;
use crate::epoch::{DEFAULT_SOURCE_DATE_EPOCH, source_date_epoch};
use crate::error::Result;
use crate::identity::numeric_owner;
use crate::oci::distributions::{self, DistributionLayers};
use crate::oci::{LayerRequest, Owner, layer};

pub fn layer(args: &LayerArgs, verbose: u8) -> Result<u8> {
    super::init_logging(verbose)?;
    let owner = match &args.owner {
        Some(text) => {
            let (uid, gid) = numeric_owner("--owner", text)?;
            Owner {
                uid: uid.into(),
                gid: gid.into(),
            }
        }
        None => Owner::default(),
    };
    // The default clamp is the epoch `pexinit seed` gives its files, so a seed's mtimes
    // (which its .pyc files record) survive the clamp unchanged.
    let mtime = match args.mtime {
        Some(mtime) => mtime,
        None => source_date_epoch()?.unwrap_or(DEFAULT_SOURCE_DATE_EPOCH.unsigned_abs()),
    };
    let distributions = match &args.distributions {
        None => None,
        Some(dir) => Some(DistributionLayers {
            dir: dir.clone(),
            min_size: match &args.min_distribution_size {
                Some(text) => distributions::parse_size(text)?,
                None => distributions::DEFAULT_MIN_SIZE,
            },
            max_layers: args
                .max_distribution_layers
                .unwrap_or(distributions::DEFAULT_MAX_LAYERS),
        }),
    };
    let plan = layer::plan(&LayerRequest {
        output: args.output.clone(),
        compression: args.compression,
        level: args.level,
        mtime,
        owner,
        allow_setuid: args.allow_setuid,
        normalize_modes: args.normalize_modes,
        threads: args.threads,
        split: args.split.clone(),
        distributions,
        sources: args.sources.clone(),
    })?;
    let written = layer::write(&plan)?;
    #[derive(serde::Serialize)]
    struct Layers<'a> {
        layers: &'a [layer::Written],
    }
    let text = if args.json {
        super::json(&Layers { layers: &written })?
    } else {
        written.iter().fold(String::new(), |mut text, w| {
            let _ = writeln!(
                text,
                "{}: {} {} bytes {} diff_id {} ({} entries)",
                w.path.display(),
                w.digest,
                w.size,
                w.media_type,
                w.diff_id,
                w.entries
            );
            text
        })
    };
    // With a layer on stdout (`-o -`), the descriptors go to stderr.
    if plan
        .layers
        .iter()
        .any(|l| l.target == layer::Target::Stdout)
    {
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        super::print(&text)?;
    }
    Ok(0)
}
