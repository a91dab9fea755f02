//! One member of a zipapp PEX, read without indexing the whole archive.
//!
//! Every `pexinit run` of a zipapp reads its PEX-INFO. The `zip` crate indexes every
//! member first (a name map and a few hundred bytes of metadata per member): for a PEX
//! of 4,000 members that is over a millisecond and thousands of allocations on each
//! container start, to read one small file. Here the central directory is read with one
//! `pread` and scanned for the one name; the member is then inflated and its CRC-32
//! checked.
//!
//! Only what pex writes is handled: no ZIP64, no encryption, stored or deflated
//! members, possibly behind a `#!` prefix. Anything else is [`Lookup::Unsupported`], and
//! the caller reads the archive with the `zip` crate instead; a file with no zip end
//! record at all (a shell script, any other program `run` is asked to start) is
//! [`Lookup::NotZip`], with no second reader.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Longest archive comment: the end record is within this many bytes of the end.
const MAX_COMMENT: u64 = u16::MAX as u64;
const END_RECORD_LEN: usize = 22;
const END_RECORD_SIG: u32 = 0x0605_4b50;
const CENTRAL_HEADER_LEN: usize = 46;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
/// A central directory larger than this is left to the `zip` crate.
const MAX_CENTRAL_DIRECTORY: u64 = 64 << 20;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const ENCRYPTED: u16 = 1;

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The member's bytes, inflated and checked.
    Found(Vec<u8>),
    /// No member of that name.
    Missing,
    /// A member larger than the limit the caller gave: its size.
    TooLarge(u64),
    /// No end of central directory record: not a zip archive at all.
    NotZip,
    /// Not an archive this reader handles (ZIP64, encryption, another compression, a
    /// layout it does not recognize): read it with the `zip` crate.
    Unsupported,
}

/// The member `name` of the zip archive `file`, at most `max` bytes once inflated.
/// I/O errors are errors; a malformed archive is [`Lookup::Unsupported`], so that the
/// `zip` crate gives its own diagnosis.
pub fn read(file: &File, name: &str, max: u64) -> io::Result<Lookup> {
    let len = file.metadata()?.len();
    let end = match end_record(file, len)? {
        Ok(end) => end,
        Err(not_read_here) => return Ok(not_read_here),
    };
    let member = match find(file, &end, name.as_bytes())? {
        Entry::Found(member) => member,
        Entry::Missing => return Ok(Lookup::Missing),
        Entry::Unsupported => return Ok(Lookup::Unsupported),
    };
    if member.size > max {
        return Ok(Lookup::TooLarge(member.size));
    }
    // Deflate never needs much more room than the data it holds: a larger claim (or one
    // past the end of the file) is not an archive to trust with an allocation.
    if member.compressed > member.size + member.size / 8 + 1024 || member.compressed > len {
        return Ok(Lookup::Unsupported);
    }
    inflate(file, len, &member)
}

/// The end of central directory record, where it says the directory starts (adjusted
/// for data before the archive, such as pex's `#!` line).
struct EndRecord {
    /// Where the directory starts in the file.
    directory_at: u64,
    directory_len: u64,
    entries: u16,
    /// Bytes before the archive: member offsets are relative to this.
    prefix: u64,
}

/// The end record, or why it is not read here: [`Lookup::NotZip`] when there is none,
/// [`Lookup::Unsupported`] for one this reader does not handle.
fn end_record(file: &File, len: u64) -> io::Result<Result<EndRecord, Lookup>> {
    if len < END_RECORD_LEN as u64 {
        return Ok(Err(Lookup::NotZip));
    }
    // pex writes no archive comment: the record is the last 22 bytes. Else it is the
    // last signature whose comment length reaches exactly to the end of the file.
    let mut tail_len = END_RECORD_LEN as u64;
    let mut tail = vec![0u8; END_RECORD_LEN];
    file.read_exact_at(&mut tail, len - tail_len)?;
    if u32_at(&tail, 0) != END_RECORD_SIG || u16_at(&tail, 20) != 0 {
        tail_len = len.min(END_RECORD_LEN as u64 + MAX_COMMENT);
        tail = vec![0u8; tail_len as usize];
        file.read_exact_at(&mut tail, len - tail_len)?;
    }
    let found = (0..=tail.len() - END_RECORD_LEN).rev().find(|&at| {
        u32_at(&tail, at) == END_RECORD_SIG
            && at + END_RECORD_LEN + u16_at(&tail, at + 20) as usize == tail.len()
    });
    let Some(at) = found else {
        return Ok(Err(Lookup::NotZip));
    };
    let record = &tail[at..];
    let (disk, directory_disk) = (u16_at(record, 4), u16_at(record, 6));
    let (on_disk, entries) = (u16_at(record, 8), u16_at(record, 10));
    let directory_len = u64::from(u32_at(record, 12));
    let directory_offset = u64::from(u32_at(record, 16));
    // Multi-disk archives and ZIP64 (its markers are all-ones fields).
    if disk != 0 || directory_disk != 0 || on_disk != entries || entries == u16::MAX {
        return Ok(Err(Lookup::Unsupported));
    }
    if directory_len == u64::from(u32::MAX) || directory_offset == u64::from(u32::MAX) {
        return Ok(Err(Lookup::Unsupported));
    }
    let end_at = len - tail_len + at as u64;
    let Some(prefix) = end_at
        .checked_sub(directory_len)
        .and_then(|start| start.checked_sub(directory_offset))
    else {
        return Ok(Err(Lookup::Unsupported));
    };
    if directory_len > MAX_CENTRAL_DIRECTORY {
        return Ok(Err(Lookup::Unsupported));
    }
    Ok(Ok(EndRecord {
        directory_at: directory_offset + prefix,
        directory_len,
        entries,
        prefix,
    }))
}

/// A member's central directory record: what it takes to read it.
struct Member {
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_header_at: u64,
}

/// What the central directory says of a name.
enum Entry {
    Found(Member),
    Missing,
    /// Found but not readable here, or a directory this reader does not understand.
    Unsupported,
}

/// The last member of that name, as Python's `zipfile` (what pex reads PEX-INFO with)
/// finds it.
fn find(file: &File, end: &EndRecord, name: &[u8]) -> io::Result<Entry> {
    let mut directory = vec![0u8; end.directory_len as usize];
    file.read_exact_at(&mut directory, end.directory_at)?;
    let mut found = Entry::Missing;
    let mut at = 0;
    for _ in 0..end.entries {
        let Some(header) = directory.get(at..at + CENTRAL_HEADER_LEN) else {
            return Ok(Entry::Unsupported);
        };
        if u32_at(header, 0) != CENTRAL_HEADER_SIG {
            return Ok(Entry::Unsupported);
        }
        let name_len = u16_at(header, 28) as usize;
        let extra_len = u16_at(header, 30) as usize;
        let comment_len = u16_at(header, 32) as usize;
        let name_at = at + CENTRAL_HEADER_LEN;
        let next = name_at + name_len + extra_len + comment_len;
        if directory.get(name_at..name_at + name_len) == Some(name) {
            let compressed = u32_at(header, 20);
            let size = u32_at(header, 24);
            let local = u32_at(header, 42);
            let method = u16_at(header, 10);
            let readable = u16_at(header, 8) & ENCRYPTED == 0
                && matches!(method, STORED | DEFLATED)
                && ![compressed, size, local].contains(&u32::MAX);
            found = match readable {
                true => Entry::Found(Member {
                    method,
                    crc: u32_at(header, 16),
                    compressed: u64::from(compressed),
                    size: u64::from(size),
                    local_header_at: u64::from(local) + end.prefix,
                }),
                false => Entry::Unsupported,
            };
        }
        at = next;
    }
    if at != directory.len() {
        // The entries do not fill the directory: not what the end record says.
        return Ok(Entry::Unsupported);
    }
    Ok(found)
}

fn inflate(file: &File, len: u64, member: &Member) -> io::Result<Lookup> {
    if member.local_header_at + LOCAL_HEADER_LEN as u64 > len {
        return Ok(Lookup::Unsupported);
    }
    let mut local = [0u8; LOCAL_HEADER_LEN];
    file.read_exact_at(&mut local, member.local_header_at)?;
    if u32_at(&local, 0) != LOCAL_HEADER_SIG {
        return Ok(Lookup::Unsupported);
    }
    let data_at = member.local_header_at
        + LOCAL_HEADER_LEN as u64
        + u64::from(u16_at(&local, 26))
        + u64::from(u16_at(&local, 28));
    if data_at + member.compressed > len {
        return Ok(Lookup::Unsupported);
    }
    let mut raw = vec![0u8; member.compressed as usize];
    file.read_exact_at(&mut raw, data_at)?;
    let bytes = match member.method {
        STORED => raw,
        _ => {
            let mut out = Vec::with_capacity(member.size as usize);
            let inflated = flate2::read::DeflateDecoder::new(raw.as_slice())
                .take(member.size + 1)
                .read_to_end(&mut out);
            if inflated.is_err() {
                return Ok(Lookup::Unsupported);
            }
            out
        }
    };
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    if bytes.len() as u64 != member.size || crc.sum() != member.crc {
        return Ok(Lookup::Unsupported);
    }
    Ok(Lookup::Found(bytes))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A zip archive behind a `#!` line, its offsets relative to the archive's start
    /// (the prefix is data before the archive), as a zipapp is laid out.
    fn zipapp(members: &[(&str, &[u8], zip::CompressionMethod)]) -> tempfile::NamedTempFile {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes, method) in members {
            let options = zip::write::SimpleFileOptions::default().compression_method(*method);
            zip.start_file(*name, options).expect("start file");
            zip.write_all(bytes).expect("write member");
        }
        let archive = zip.finish().expect("finish").into_inner();
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"#!/usr/bin/env python3\n").expect("write");
        file.write_all(&archive).expect("write");
        file
    }

    /// `bytes` in a temporary file, opened for reading (the file lives as long as the
    /// open descriptor needs it: unlinked, still readable).
    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("write");
        file.reopen().expect("open")
    }

    #[test]
    fn finds_stored_and_deflated_members_behind_a_prefix() {
        let text = b"{\"pex_hash\": \"abc\"}".repeat(50);
        let inflated = text.len() as u64;
        let archive = zipapp(&[
            ("__main__.py", b"print(1)\n", zip::CompressionMethod::Stored),
            ("PEX-INFO", &text, zip::CompressionMethod::Deflated),
            ("stored.txt", b"plain", zip::CompressionMethod::Stored),
        ]);
        let file = archive.reopen().expect("open");
        assert_eq!(
            read(&file, "PEX-INFO", 1 << 20).expect("read"),
            Lookup::Found(text)
        );
        assert_eq!(
            read(&file, "stored.txt", 1 << 20).expect("read"),
            Lookup::Found(b"plain".to_vec())
        );
        assert_eq!(read(&file, "PEX", 1 << 20).expect("read"), Lookup::Missing);
        assert_eq!(
            read(&file, "PEX-INFO", 10).expect("read"),
            Lookup::TooLarge(inflated)
        );
    }

    #[test]
    fn of_two_members_of_one_name_the_last_is_read_as_python_reads_it() {
        // The zip crate writes no duplicate name: the second is renamed in the bytes
        // (names are not covered by the CRC).
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, text) in [("PEX-INFO", b"first"), ("PEX-INFX", b"last!")] {
            zip.start_file(name, options).expect("start file");
            zip.write_all(text).expect("write member");
        }
        let mut archive = zip.finish().expect("finish").into_inner();
        while let Some(at) = archive.windows(8).position(|w| w == b"PEX-INFX") {
            archive[at + 7] = b'O';
        }
        let file = file_of(&archive);
        assert_eq!(
            read(&file, "PEX-INFO", 1 << 20).expect("read"),
            Lookup::Found(b"last!".to_vec())
        );
    }

    #[test]
    fn an_archive_comment_is_stepped_over() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.set_comment("a comment with PK\x05\x06 inside")
            .expect("comment");
        zip.start_file("PEX-INFO", zip::write::SimpleFileOptions::default())
            .expect("start file");
        zip.write_all(b"{}").expect("write member");
        let archive = zip.finish().expect("finish").into_inner();
        let file = file_of(&archive);
        assert_eq!(
            read(&file, "PEX-INFO", 1 << 20).expect("read"),
            Lookup::Found(b"{}".to_vec())
        );
    }

    #[test]
    fn what_it_does_not_handle_is_left_to_the_zip_crate() {
        let file = file_of(b"#!/bin/sh\necho not a zip at all\n");
        assert_eq!(
            read(&file, "PEX-INFO", 1 << 20).expect("read"),
            Lookup::NotZip
        );

        // A damaged member: its CRC no longer matches.
        let archive = zipapp(&[("PEX-INFO", b"{}", zip::CompressionMethod::Stored)]);
        let mut bytes = std::fs::read(archive.path()).expect("read");
        let at = bytes
            .windows(4)
            .position(|w| w == b"PK\x03\x04")
            .expect("local header")
            + LOCAL_HEADER_LEN
            + "PEX-INFO".len();
        bytes[at] = b'[';
        std::fs::write(archive.path(), &bytes).expect("write");
        let file = archive.reopen().expect("open");
        assert_eq!(
            read(&file, "PEX-INFO", 1 << 20).expect("read"),
            Lookup::Unsupported
        );
    }
}
