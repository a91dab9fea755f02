//! Layer files given to `image append`: digest, size, compression (from the first
//! bytes, not the name) and diff_id, and a check that they hold a tar.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fs::bounded;
use crate::fs::digest::sha256_reader;
use crate::oci::compress::hex;
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
/// bytes, and its uncompressed content must be a whole tar stream.
pub fn inspect_layer(file: &Path, docker: bool) -> Result<NewLayer> {
    let context = || format!("layer {}", file.display());
    let mut f = bounded::open_regular(file, false)
        .map_err(|e| Error::Usage(format!("{}: {e}; give a layer file", context())))?;
    let size = f.metadata().map_err(|e| Error::io(context(), e))?.len();
    let digest = format!(
        "sha256:{}",
        sha256_reader(&mut f).map_err(|e| Error::io(context(), e))?
    );
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(context(), e))?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(context(), e))?;
    let format = LayerFormat::sniff(&head[..n]);
    let media_type = format
        .media_type(docker)
        .map_err(|e| Error::Usage(format!("{}: {e}", context())))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(context(), e))?;
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
        file: file.to_path_buf(),
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

/// sha256 of the uncompressed stream (`sha256:<hex>`), which must be a whole tar stream
/// (see [`TarCheck`]).
pub fn diff_id(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut check = TarCheck::default();
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        check.feed(&buf[..n])?;
        hasher.update(&buf[..n]);
    }
    check.finish()?;
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// Follows a tar stream header by header as it passes: every header's checksum must be
/// right, every member's data (its size from the header, or from a pax `size` record)
/// must be there, and the stream must end between members. Header-only members (links,
/// devices, directories, fifos) carry no data, as tar readers treat them.
#[derive(Default)]
struct TarCheck {
    block: Vec<u8>,
    /// Data bytes (padding included) still to pass before the next header.
    skip: u64,
    /// The pax extended header being collected, and the bytes of it still to come.
    pax: Option<(Vec<u8>, u64)>,
    /// A `size` from the last pax header, for the member after it.
    pax_size: Option<u64>,
    headers: u64,
    ended: bool,
}

/// The largest pax extended header read (a real one holds a few long names).
const PAX_LIMIT: u64 = 1 << 20;

impl TarCheck {
    fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.ended {
                // After the end-of-archive blocks only zero padding may follow.
                if data.iter().any(|b| *b != 0) {
                    return Err(io::Error::other("data after the end of the tar archive"));
                }
                return Ok(());
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if let Some((text, want)) = &mut self.pax
                    && *want > 0
                {
                    let take = usize::try_from(*want).unwrap_or(usize::MAX).min(n);
                    text.extend_from_slice(&data[..take]);
                    *want -= take as u64;
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0
                    && let Some((text, _)) = self.pax.take()
                {
                    self.pax_size = pax_size(&text)?;
                }
                continue;
            }
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                let block = std::mem::take(&mut self.block);
                self.header(&block)?;
            }
        }
        Ok(())
    }

    fn header(&mut self, block: &[u8]) -> io::Result<()> {
        if block.iter().all(|b| *b == 0) {
            self.ended = true;
            return Ok(());
        }
        if !tar_header_ok(block) {
            return Err(io::Error::other(format!(
                "tar header {} has a bad checksum",
                self.headers + 1
            )));
        }
        self.headers += 1;
        let kind = block[156];
        let size = match self.pax_size.take() {
            Some(size) => size,
            None => header_size(&block[124..136]).ok_or_else(|| {
                io::Error::other(format!("tar header {} has a bad size", self.headers))
            })?,
        };
        let data = if matches!(kind, b'1'..=b'6') { 0 } else { size };
        if matches!(kind, b'x' | b'X') {
            if data > PAX_LIMIT {
                return Err(io::Error::other("a pax header over 1 MiB"));
            }
            self.pax = Some((Vec::new(), data));
        }
        self.skip = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        if self.skip == 0
            && let Some((text, _)) = self.pax.take()
        {
            self.pax_size = pax_size(&text)?;
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        if self.headers == 0 && !self.ended {
            return Err(io::Error::other("no tar header at its start"));
        }
        if self.skip > 0 || !self.block.is_empty() {
            return Err(io::Error::other(format!(
                "the tar stream is cut short in member {}",
                self.headers
            )));
        }
        Ok(())
    }
}

const BLOCK: usize = 512;

/// A header's size field: octal, or GNU base-256 (high bit of the first byte set).
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of a pax extended header (`LEN size=N\n` records), if any.
fn pax_size(text: &[u8]) -> io::Result<Option<u64>> {
    let bad = || io::Error::other("a malformed pax header");
    let mut rest = text;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > space && *l <= rest.len())
            .ok_or_else(bad)?;
        let record = &rest[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").ok_or_else(bad)?;
            size = Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(bad)?,
            );
        }
        rest = &rest[len..];
    }
    Ok(size)
}

fn tar_header_ok(block: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *data)
                .expect("append");
        }
        builder.into_inner().expect("tar")
    }

    fn check(bytes: &[u8]) -> io::Result<()> {
        let mut check = TarCheck::default();
        // In odd pieces, as a decompressor hands them over.
        for piece in bytes.chunks(333) {
            check.feed(piece)?;
        }
        check.finish()
    }

    #[test]
    fn whole_tar_streams_pass_and_cut_or_lying_ones_fail() {
        let good = tar(&[("a", b"hello"), ("b", &[7u8; 1500])]);
        check(&good).expect("a whole tar");
        check(&good[..1024]).expect("members without the end blocks");
        assert!(check(&good[..700]).is_err(), "cut in a member's data");
        assert!(check(&good[..100]).is_err(), "cut in a header");
        let mut lying = good.clone();
        // The second header claims 10^12 bytes.
        let second = 1024;
        lying[second + 124..second + 136].copy_from_slice(b"16432451210\0");
        let mut header = tar::Header::new_old();
        header
            .as_mut_bytes()
            .copy_from_slice(&lying[second..second + 512]);
        header.set_cksum();
        lying[second..second + 512].copy_from_slice(header.as_bytes());
        assert!(check(&lying).is_err(), "a size past the end");
        let mut corrupt = good.clone();
        corrupt[1024] ^= 1;
        assert!(check(&corrupt).is_err(), "a bad checksum");
        assert!(check(b"").is_err(), "empty");
    }
}
