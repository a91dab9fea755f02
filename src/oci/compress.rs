//! Compression of the tar stream, and both digests in the same pass: `diff_id` (sha256
//! of the tar) and the blob digest (sha256 of what is written).
//!
//! gzip uses every core and still gives the same bytes on any machine: the tar is cut
//! into fixed 1 MiB chunks, each chunk is deflated on its own with the 32 KiB before it
//! as preset dictionary (as pigz does) and ended with a sync flush, and the raw deflate
//! pieces are joined under one gzip header (mtime 0, fixed OS byte) with the CRC
//! combined. The cut points and dictionaries depend only on the input, never on the
//! number of threads, and the result is a single ordinary gzip member.
//!
//! zstd: libzstd's multithreaded mode gives the same frame for any number of workers
//! ≥ 1 (but not the same as its single-threaded mode), so at least one worker is always
//! used.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use flate2::{Compress, Crc, FlushCompress, Status};
use sha2::{Digest, Sha256};

pub use crate::fs::digest::hex;
use crate::oci::Compression;

/// Input per gzip chunk: large enough that sync-flush overhead is negligible, small
/// enough that two cores stay busy on a small layer.
const CHUNK: usize = 1 << 20;
/// Deflate's window: the dictionary each chunk starts from.
const WINDOW: usize = 32 * 1024;
/// The gzip header's OS byte: "unknown", whatever system wrote the layer.
const GZIP_OS_UNKNOWN: u8 = 255;

/// What a compressed layer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// sha256 of the uncompressed tar, hex.
    pub diff_id: String,
    /// sha256 of the bytes written, hex.
    pub digest: String,
    /// Bytes written.
    pub size: u64,
}

pub fn default_level(kind: Compression) -> i32 {
    match kind {
        Compression::Gzip => 6,
        Compression::Zstd => 3,
        Compression::None => 0,
    }
}

/// Valid levels, checked before anything is written.
pub fn check_level(kind: Compression, level: i32) -> Result<(), String> {
    let range = match kind {
        Compression::Gzip => 0..=9,
        Compression::Zstd => 1..=19,
        Compression::None => return Ok(()),
    };
    if range.contains(&level) {
        Ok(())
    } else {
        Err(format!(
            "--level {level} is out of range for {kind:?}: use {}..={}",
            range.start(),
            range.end()
        ))
    }
}

/// Runs `produce` (which writes the tar) and compresses what it writes into `out`.
pub fn compress<W: Write + Send>(
    kind: Compression,
    level: i32,
    threads: usize,
    out: W,
    produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<(W, Digests)> {
    let mut sink = Hashing::new(out);
    let mut tar_hash = Sha256::new();
    match kind {
        Compression::None => {
            let mut tee = Tee {
                hash: &mut tar_hash,
                out: &mut sink,
            };
            produce(&mut tee)?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(&mut sink, level)?;
            encoder.multithread(u32::try_from(threads.max(1)).unwrap_or(1))?;
            encoder.include_checksum(true)?;
            let mut tee = Tee {
                hash: &mut tar_hash,
                out: &mut encoder,
            };
            produce(&mut tee)?;
            encoder.finish()?;
        }
        Compression::Gzip => {
            let level = u32::try_from(level).unwrap_or(6);
            parallel_gzip(level, threads.max(1), &mut sink, &mut tar_hash, produce)?;
        }
    }
    let size = sink.size;
    let digest = hex(&sink.hash.finalize());
    let mut out = sink.out;
    out.flush()?;
    Ok((
        out,
        Digests {
            diff_id: hex(&tar_hash.finalize()),
            digest,
            size,
        },
    ))
}

/// Counts and hashes what passes through to `out`.
struct Hashing<W> {
    out: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(out: W) -> Self {
        Hashing {
            out,
            hash: Sha256::new(),
            size: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Hashes the tar on its way into the compressor.
struct Tee<'a> {
    hash: &'a mut Sha256,
    out: &'a mut dyn Write,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Job {
    index: usize,
    dictionary: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    index: usize,
    deflated: io::Result<Vec<u8>>,
    crc: Crc,
}

/// Cuts what is written into chunks and hands them to the workers.
struct Chunker<'a> {
    jobs: mpsc::SyncSender<Job>,
    buf: Vec<u8>,
    index: usize,
    dictionary: Vec<u8>,
    tar_hash: &'a mut Sha256,
    /// A send failed: every worker had stopped.
    workers_gone: bool,
}

impl Chunker<'_> {
    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tar_hash.update(&data);
        // The next chunk's dictionary is this chunk's tail (plus, for a short chunk,
        // the tail of the one before).
        let mut next_dictionary = std::mem::take(&mut self.dictionary);
        next_dictionary.extend_from_slice(&data[data.len().saturating_sub(WINDOW)..]);
        let keep = next_dictionary.len().saturating_sub(WINDOW);
        next_dictionary.drain(..keep);
        let job = Job {
            index: self.index,
            dictionary: std::mem::replace(&mut self.dictionary, next_dictionary),
            data,
            last,
        };
        self.index += 1;
        self.jobs.send(job).map_err(|_| {
            self.workers_gone = true;
            io::Error::other("a compression worker stopped")
        })
    }
}

impl Write for Chunker<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let room = CHUNK - self.buf.len();
            let n = room.min(buf.len());
            self.buf.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.buf.len() == CHUNK {
                self.send(false)?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn parallel_gzip(
    level: u32,
    threads: usize,
    out: &mut (dyn Write + Send),
    tar_hash: &mut Sha256,
    produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let mut crc = Crc::new();
                    crc.update(&job.data);
                    let deflated = deflate_chunk(level, &job.dictionary, &job.data, job.last);
                    if done_tx
                        .send(Done {
                            index: job.index,
                            deflated,
                            crc,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        // Only the workers may hold the job receiver: once they have all stopped (the
        // writer failed, say on a full disk), a send must fail instead of waiting forever.
        drop(job_rx);
        drop(done_tx);
        let writer = scope.spawn(move || write_members(out, done_rx));
        let mut chunker = Chunker {
            jobs: job_tx,
            buf: Vec::with_capacity(CHUNK),
            index: 0,
            dictionary: Vec::new(),
            tar_hash,
            workers_gone: false,
        };
        let produced = produce(&mut chunker).and_then(|()| chunker.send(true));
        let workers_gone = chunker.workers_gone;
        // Closing the job channel stops the workers, then the writer.
        drop(chunker);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the gzip writer panicked")));
        match (produced, written) {
            // The workers stopped because the writer failed: its error is the cause.
            (Err(_), Err(cause)) if workers_gone => Err(cause),
            (produced, written) => produced.and(written),
        }
    })
}

/// Writes the gzip header, the deflated chunks in order, and the trailer.
fn write_members(out: &mut (dyn Write + Send), done: mpsc::Receiver<Done>) -> io::Result<()> {
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, GZIP_OS_UNKNOWN])?;
    let mut pending: BTreeMap<usize, Done> = BTreeMap::new();
    let mut next = 0;
    let mut crc = Crc::new();
    for result in done {
        pending.insert(result.index, result);
        while let Some(chunk) = pending.remove(&next) {
            out.write_all(&chunk.deflated?)?;
            crc.combine(&chunk.crc);
            next += 1;
        }
    }
    if !pending.is_empty() || next == 0 {
        return Err(io::Error::other("a compression worker failed"));
    }
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())
}

/// Raw deflate of one chunk: primed with `dictionary`, ended with a sync flush (byte
/// aligned, not final) or, for the last chunk, with the final block.
fn deflate_chunk(level: u32, dictionary: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
        let status = deflate
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(deflate.total_in()).unwrap_or(0) == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete when deflate stopped with output space left.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial: repeated text with a counter, > 3 chunks.
        let mut data = Vec::new();
        let mut i = 0u64;
        while data.len() < 3 * CHUNK + 12345 {
            data.extend_from_slice(
                format!("line {i} of the sample {}\n", i * 7919 % 1000).as_bytes(),
            );
            i += 1;
        }
        data
    }

    fn gzip(data: &[u8], threads: usize) -> (Vec<u8>, Digests) {
        compress(Compression::Gzip, 6, threads, Vec::new(), &mut |w| {
            w.write_all(data)
        })
        .expect("gzip")
    }

    #[test]
    fn gzip_is_one_member_any_reader_accepts_and_independent_of_threads() {
        let data = sample();
        let (one, d1) = gzip(&data, 1);
        let (four, d4) = gzip(&data, 4);
        assert_eq!(one, four);
        assert_eq!(d1, d4);
        let mut back = Vec::new();
        // A single-member reader: no reliance on multi-member support.
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, data);
        assert_eq!(d1.diff_id, hex(&Sha256::digest(&data)));
        assert_eq!(d1.digest, hex(&Sha256::digest(&one)));
        assert_eq!(d1.size, one.len() as u64);
    }

    #[test]
    fn empty_input_gives_a_valid_gzip() {
        let (out, _) = gzip(&[], 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert!(back.is_empty());
    }

    #[test]
    fn zstd_is_independent_of_threads() {
        // Large enough for libzstd to cut three jobs (a job is 4 windows, 8 MiB at level
        // 3), so workers really do split the input; no larger, as this is the fast tier.
        // Four letters of 16 per step, no formatting: cheap to generate in a debug build.
        let mut data = Vec::with_capacity(20 * CHUNK);
        let mut x: u64 = 7;
        while data.len() < 20 * CHUNK {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let r = x >> 33;
            data.extend_from_slice(&[
                b'a' + (r & 15) as u8,
                b'a' + (r >> 4 & 15) as u8,
                b'a' + (r >> 8 & 15) as u8,
                b' ',
            ]);
        }
        let run = |threads| {
            compress(Compression::Zstd, 3, threads, Vec::new(), &mut |w| {
                w.write_all(&data)
            })
            .expect("zstd")
            .0
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(zstd::decode_all(&one[..]).expect("unzstd"), data);
    }
}
