//! `pexinit layer`: plan the layers (every entry, sorted, final metadata), then write
//! each one atomically and report its descriptor.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::atomic::Pending;
use crate::oci::archive::{self, Owner};
use crate::oci::compress::{self, Digests};
use crate::oci::distributions;
use crate::oci::media::LayerFormat;
use crate::oci::progress::Progress;
use crate::oci::source::{self, Source};
use crate::oci::split;
use crate::oci::walk::{self, Entry, Kind, Rules};
use crate::oci::{Compression, LayerRequest};
use crate::pex::manifest::MANIFEST_NAME;

/// One layer to write.
#[derive(Debug)]
pub struct LayerPlan {
    pub output: PathBuf,
    pub target: Target,
    pub entries: Vec<Entry>,
}

/// Where a layer's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A regular file (or a new name): written beside it and renamed into place.
    File,
    /// pexinit's standard output (`-o -`, or a path naming the same file): streamed.
    Stdout,
    /// An existing device or pipe: opened and streamed into, never replaced.
    Stream,
}

/// Everything `layer` will do, decided before anything is written.
#[derive(Debug)]
pub struct Plan {
    pub layers: Vec<LayerPlan>,
    pub owner: Owner,
    pub compression: Compression,
    pub level: i32,
    pub threads: usize,
    /// Created (if missing) before the layers are written: `--distributions DIR`.
    pub distributions_dir: Option<PathBuf>,
}

/// What a written layer is: its descriptor and diff_id.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub path: PathBuf,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub entries: usize,
}

pub fn plan(args: &LayerRequest) -> Result<Plan> {
    let level = args
        .level
        .unwrap_or(compress::default_level(args.compression));
    compress::check_level(args.compression, level).map_err(Error::Usage)?;
    let owner = args.owner;
    let rules = Rules {
        mtime_clamp: args.mtime,
        allow_setuid: args.allow_setuid,
        normalize_modes: args.normalize_modes,
    };
    let sources = args
        .sources
        .iter()
        .map(|s| source::parse(s))
        .collect::<Result<Vec<Source>>>()?;
    let mut outputs = vec![args.output.clone()];
    outputs.extend(args.split.iter().cloned());
    let mut targets = Vec::new();
    for output in &outputs {
        targets.push(check_output(output, &sources)?);
    }
    if outputs.len() == 2
        && (outputs[0] == outputs[1] || targets.iter().all(|t| *t == Target::Stdout))
    {
        return Err(Error::Usage(
            "--split names the same file as --output; give the application layer its own file"
                .into(),
        ));
    }
    if let Some(d) = &args.distributions {
        distributions::check_dir(&d.dir, &sources)?;
    }
    let entries = walk::collect(&sources, rules)?;
    let layers = match &args.split {
        None => vec![LayerPlan {
            output: args.output.clone(),
            target: targets[0],
            entries: walk::finish(entries),
        }],
        Some(app_output) => {
            let [seed] = sources.as_slice() else {
                return Err(Error::Usage(
                    "--split takes exactly one SRC[:DEST], a seed made by `pexinit seed`".into(),
                ));
            };
            if !seed.path.join(MANIFEST_NAME).is_file() {
                return Err(Error::Usage(format!(
                    "--split: {} holds no {MANIFEST_NAME}; split a PEX_ROOT made by `pexinit seed`, or drop --split",
                    seed.given.display()
                )));
            }
            let (deps, app) = split::split(entries, &seed.dest);
            let mut layers = Vec::new();
            match &args.distributions {
                None => layers.push(LayerPlan {
                    output: args.output.clone(),
                    target: targets[0],
                    entries: walk::finish(deps),
                }),
                Some(d) => {
                    let (group, dists) =
                        distributions::divide(deps, seed.dest.len(), d.min_size, d.max_layers);
                    layers.push(LayerPlan {
                        output: args.output.clone(),
                        target: targets[0],
                        entries: walk::finish(group),
                    });
                    let ext = match args.compression {
                        Compression::Gzip => ".tar.gz",
                        Compression::Zstd => ".tar.zst",
                        Compression::None => ".tar",
                    };
                    let outputs = distributions::outputs(&d.dir, &dists, ext);
                    for (dist, output) in dists.into_iter().zip(outputs) {
                        // A new file in a directory checked empty: written and renamed.
                        layers.push(LayerPlan {
                            output,
                            target: Target::File,
                            entries: walk::finish(dist.entries),
                        });
                    }
                }
            }
            layers.push(LayerPlan {
                output: app_output.clone(),
                target: targets[1],
                entries: walk::finish(app),
            });
            layers
        }
    };
    let threads = match args.threads {
        Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    Ok(Plan {
        layers,
        owner,
        compression: args.compression,
        level,
        threads,
        distributions_dir: args.distributions.as_ref().map(|d| d.dir.clone()),
    })
}

/// Writes every planned layer; each file appears whole (temp + rename) or not at all.
/// A device or pipe is streamed into.
pub fn write(plan: &Plan) -> Result<Vec<Written>> {
    if let Some(dir) = &plan.distributions_dir {
        distributions::make_dir(dir)?;
    }
    let mut written = Vec::new();
    for layer in &plan.layers {
        let mut sink = Sink::open(layer)?;
        let total: u64 = layer
            .entries
            .iter()
            .map(|e| match e.kind {
                Kind::File { size, .. } => size,
                _ => 0,
            })
            .sum();
        let progress = Progress::new(total, layer.output.display().to_string());
        let out = BufWriter::with_capacity(1 << 20, sink.file());
        let result =
            compress::compress(plan.compression, plan.level, plan.threads, out, &mut |w| {
                archive::write_tar(&layer.entries, plan.owner, &mut progress.wrap(w))
            });
        progress.finish();
        let (out, digests): (BufWriter<&mut File>, Digests) =
            result.map_err(|e| Error::io(format!("writing {}", layer.output.display()), e))?;
        out.into_inner()
            .map_err(|e| Error::io(format!("{}", layer.output.display()), e.into_error()))?;
        sink.commit()
            .map_err(|e| Error::io(format!("{}", layer.output.display()), e))?;
        let format = match plan.compression {
            Compression::Gzip => LayerFormat::Gzip,
            Compression::Zstd => LayerFormat::Zstd,
            Compression::None => LayerFormat::Tar,
        };
        written.push(Written {
            path: layer.output.clone(),
            media_type: format.media_type(false).map_err(Error::Usage)?,
            digest: format!("sha256:{}", digests.digest),
            size: digests.size,
            diff_id: format!("sha256:{}", digests.diff_id),
            entries: layer.entries.len(),
        });
    }
    Ok(written)
}

/// What a layer is written to.
enum Sink {
    File(Pending),
    Stream(File),
}

impl Sink {
    fn open(layer: &LayerPlan) -> Result<Sink> {
        let context = |e| Error::io(format!("{}", layer.output.display()), e);
        match layer.target {
            Target::File => Pending::create(&layer.output, 0o644)
                .map(Sink::File)
                .map_err(context),
            Target::Stdout => {
                use std::os::fd::AsFd;
                let fd = std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(context)?;
                Ok(Sink::Stream(File::from(fd)))
            }
            Target::Stream => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = File::options()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
                    .open(&layer.output)
                    .map_err(context)?;
                // It was a device or pipe when planned; a regular file now would be
                // written in place without truncation.
                if file.metadata().map_err(context)?.is_file() {
                    return Err(Error::Usage(format!(
                        "--output {} was replaced by a regular file while planning; run again",
                        layer.output.display()
                    )));
                }
                Ok(Sink::Stream(file))
            }
        }
    }

    fn file(&mut self) -> &mut File {
        match self {
            Sink::File(pending) => pending.file(),
            Sink::Stream(file) => file,
        }
    }

    fn commit(self) -> std::io::Result<()> {
        match self {
            Sink::File(pending) => pending.commit(),
            Sink::Stream(mut file) => std::io::Write::flush(&mut file),
        }
    }
}

/// Where `output` is: stdout (`-`, or the file stdout is), an existing device or pipe
/// (streamed into), or a file. A file's directory must exist, and must not lie inside a
/// source: the next run would store the previous layer in the new one.
fn check_output(output: &Path, sources: &[Source]) -> Result<Target> {
    use std::os::unix::fs::MetadataExt;
    if output.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    match std::fs::metadata(output) {
        Ok(meta) => {
            if is_stdout(&meta) {
                return Ok(Target::Stdout);
            }
            if meta.is_dir() {
                return Err(Error::Usage(format!(
                    "--output {} is a directory; name a file in it",
                    output.display()
                )));
            }
            let kind = meta.mode() & libc::S_IFMT;
            if kind == libc::S_IFSOCK {
                return Err(Error::Usage(format!(
                    "--output {} is a socket; name a file, a device, a pipe or - for stdout",
                    output.display()
                )));
            }
            if !meta.is_file() {
                return Ok(Target::Stream);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Usage(format!(
                "--output {}: {e}; name a file pexinit can write",
                output.display()
            )));
        }
    }
    source::check_outside_sources("--output", output, "file", sources)?;
    Ok(Target::File)
}

/// `meta` is the file pexinit's stdout is open on (a `/dev/stdout` link, say).
fn is_stdout(meta: &std::fs::Metadata) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|out| out.dev() == meta.dev() && out.ino() == meta.ino())
}
