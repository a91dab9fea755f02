//! Layer files given to `image append`: digest, size, compression (from the first
//! bytes, not the name) and diff_id, and a check that they hold a tar.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::oci::compress::hex;
use crate::oci::layout;
use crate::oci::media::LayerFormat;

/// A layer file, inspected.
#[derive(Debug, Clone, Serialize)]
pub struct NewLayer {
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

/// Digest, size and diff_id of a layer file; its compression is read from its first
/// bytes, and its uncompressed content must start like a tar.
pub fn inspect_layer(file: &PathBuf, docker: bool) -> Result<NewLayer> {
    let context = || format!("layer {}", file.display());
    let digest =
        layout::sha256_of(file).map_err(|e| Error::Usage(format!("{}: {e}", context())))?;
    let size = std::fs::metadata(file)
        .map_err(|e| Error::io(context(), e))?
        .len();
    let mut head = [0u8; 4];
    let mut f = File::open(file).map_err(|e| Error::io(context(), e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(context(), e))?;
    let format = LayerFormat::sniff(&head[..n]);
    let media_type = format
        .media_type(docker)
        .map_err(|e| Error::Usage(format!("{}: {e}", context())))?;
    let f = File::open(file).map_err(|e| Error::io(context(), e))?;
    let reader: Box<dyn Read> = match format {
        LayerFormat::Tar => Box::new(f),
        LayerFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(f))),
        LayerFormat::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| Error::io(context(), e))?)
        }
    };
    let diff_id = diff_id(reader).map_err(|e| {
        Error::Usage(format!(
            "{}: not a layer ({e}); give a file written by `pexinit layer`",
            context()
        ))
    })?;
    Ok(NewLayer {
        file: file.clone(),
        media_type,
        digest,
        size,
        diff_id,
    })
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = f.read(&mut buf[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// sha256 of the uncompressed stream, which must begin with a tar header (or the
/// zero block of an empty tar).
fn diff_id(mut reader: Box<dyn Read>) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut first = Vec::with_capacity(512);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if first.len() < 512 {
            let take = (512 - first.len()).min(n);
            first.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
    }
    if first.len() < 512 || !tar_header_ok(&first) {
        return Err(io::Error::other("no tar header at its start"));
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn tar_header_ok(block: &[u8]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(computed)
}
