//! Flags of `pexinit layer` and `pexinit image append`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::oci::Compression;

value_enum!(Compression {
    Gzip => "gzip";
    Zstd => "zstd";
    None => "none";
});

#[derive(Debug, Args)]
pub struct LayerArgs {
    /// The layer file to write (written atomically: temp file + rename); an existing
    /// device or pipe is written into; `-` is stdout.
    #[arg(long, short = 'o', value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Compression of the layer.
    #[arg(long, value_enum, value_name = "KIND", default_value = "gzip")]
    pub compression: Compression,

    /// Compression level [default: 6 for gzip, 3 for zstd].
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,

    /// Clamp every mtime to EPOCH seconds [default: $SOURCE_DATE_EPOCH, else 315532800
    /// (1980-01-01, the epoch `pexinit seed` gives its files)].
    #[arg(long, value_name = "EPOCH")]
    pub mtime: Option<u64>,

    /// Owner of every entry, as numbers (GID defaults to 0) [default: 0:0].
    #[arg(long, value_name = "UID[:GID]")]
    pub owner: Option<String>,

    /// Keep setuid / setgid bits instead of refusing files that carry them.
    #[arg(long)]
    pub allow_setuid: bool,

    /// Group permissions from the user's, others' from the user's without write (0644 and
    /// 0664 both become 0664): the layer's bytes do not depend on the builder's umask.
    /// `pexinit seed` already writes its seeds this way.
    #[arg(long)]
    pub normalize_modes: bool,

    /// Compression threads [default: the number of cores]. The output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Write a seed (one SRC made by `pexinit seed`) as two layers: its dependencies
    /// (installed wheels, pex's runtime) to --output, its application code (user code,
    /// unzipped PEX, venvs, the seed manifest) to APP_FILE.
    #[arg(long, value_name = "APP_FILE")]
    pub split: Option<PathBuf>,

    /// With --split: write each large distribution of installed_wheels as a layer of its
    /// own, DIR/<wheel name>.tar.gz (DIR empty or new); the small ones stay in --output.
    #[arg(long, value_name = "DIR", requires = "split")]
    pub distributions: Option<PathBuf>,

    /// With --distributions: the size (sum of file sizes; K, M, G are powers of 1024) from
    /// which a distribution gets its own layer [default: 5M].
    #[arg(long, value_name = "SIZE", requires = "distributions")]
    pub min_distribution_size: Option<String>,

    /// With --distributions: at most N distribution layers; beyond it the smallest join
    /// --output [default: 40].
    #[arg(long, value_name = "N", requires = "distributions")]
    pub max_distribution_layers: Option<usize>,

    /// Print the descriptor and diff_id as JSON.
    #[arg(long)]
    pub json: bool,

    /// Directories or files to store, each at DEST in the image [default DEST: SRC made
    /// absolute]. SRC itself may be reached through links; nothing below it is followed.
    #[arg(value_name = "SRC[:DEST]", required = true)]
    pub sources: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Append layers to an image in an OCI image layout, without a daemon.
    #[command(after_help = "Examples:\n  \
        pexinit layer -o seed.tar.gz /opt/pex-root\n  \
        pexinit image append --layout ./img --ref latest --layer seed.tar.gz \\\n      \
        --entrypoint '[\"/usr/bin/pexinit\",\"run\",\"--\"]' --cmd '[\"/app/app.pex\"]' --tag v2")]
    Append(ImageAppendArgs),
}

#[derive(Debug, Args)]
pub struct ImageAppendArgs {
    /// The OCI image layout directory (oci-layout, index.json, blobs/).
    #[arg(long, value_name = "DIR", required = true)]
    pub layout: PathBuf,

    /// The image to append to, by its org.opencontainers.image.ref.name [default: the
    /// only image of the layout].
    #[arg(long = "ref", value_name = "NAME")]
    pub reference: Option<String>,

    /// Layer files written by `pexinit layer` (or any tar, tar.gz, tar.zst), in order.
    #[arg(long, value_name = "FILE", required = true, num_args = 1)]
    pub layer: Vec<PathBuf>,

    /// The ref name the new image gets [default: the --ref it came from, which moves].
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,

    /// New entrypoint, as a JSON array or a plain command line split on whitespace.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,

    /// New cmd, as a JSON array or a plain command line split on whitespace.
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,

    /// Environment variable to set (repeatable).
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,

    /// User the image runs as.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Working directory of the image.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Label to set (repeatable).
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,

    /// Manifest annotation to set (repeatable), e.g.
    /// org.opencontainers.image.source=https://example.com/app.
    #[arg(long, value_name = "K=V")]
    pub annotation: Vec<String>,

    /// When --ref names a multi-platform index: the platform whose image gets the layers
    /// (the index is rewritten, its other entries unchanged).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Print the new manifest's descriptor as JSON.
    #[arg(long)]
    pub json: bool,
}
