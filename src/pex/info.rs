//! Recognising a PEX (zipapp, packed or loose directory) and reading its PEX-INFO.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::zip_member::Lookup;

/// The metadata file every PEX carries at its root.
pub const PEX_INFO: &str = "PEX-INFO";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// A single zip file (with a shebang line in front).
    Zipapp,
    /// A directory whose `.bootstrap` and dependencies are zip files.
    Packed,
    /// A directory with everything unpacked.
    Loose,
}

/// The parts of PEX-INFO pexinit uses. Everything else in the file is ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PexInfo {
    #[serde(default)]
    pub build_properties: BuildProperties,
    #[serde(default)]
    pub pex_hash: Option<String>,
    #[serde(default)]
    pub code_hash: Option<String>,
    #[serde(default)]
    pub bootstrap_hash: Option<String>,
    #[serde(default)]
    pub venv: bool,
    #[serde(default)]
    pub entry_point: Option<String>,
    #[serde(default)]
    pub interpreter_constraints: Vec<String>,
    /// The PEX_ROOT pex uses when none is set in the environment (`--runtime-pex-root`).
    #[serde(default)]
    pub pex_root: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BuildProperties {
    #[serde(default)]
    pub pex_version: Option<String>,
}

/// A PEX found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Pex {
    pub path: PathBuf,
    pub layout: Layout,
    pub info: PexInfo,
    /// PEX-INFO as written: the keys only some commands need (seed's) are read from it
    /// without opening the PEX again.
    #[serde(skip)]
    pub raw_info: serde_json::Value,
    /// The interpreter the PEX asks for in its shebang line, if it has one.
    pub shebang: Option<Shebang>,
    /// The file is not here: PEX-INFO was read from the seed that holds this PEX (an image
    /// built with `pexinit seed --slim` need not ship the .pex files).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_seed_only: bool,
}

/// An interpreter line `#!PROGRAM [ARG]`. With `/usr/bin/env NAME`, `program` is NAME,
/// to be looked up on PATH as env would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shebang {
    pub program: String,
    pub args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PexError {
    #[error("is not a zip archive, so not a PEX file ({0})")]
    NotZip(String),
    #[error("is a zip archive without PEX-INFO, so not a PEX file")]
    NoPexInfo,
    #[error("is a directory without PEX-INFO, so not a PEX directory")]
    DirWithoutPexInfo,
    #[error("has an unreadable PEX-INFO ({0})")]
    BadPexInfo(String),
    #[error("cannot be read ({0})")]
    Io(#[from] io::Error),
}

/// Whether `path` names something that should be treated as a PEX: a directory with
/// PEX-INFO, a file named `*.pex`, or any file that is a zip archive holding PEX-INFO.
///
/// Cheap for the common case of a native binary: only files starting with `#!` or a
/// zip signature are opened as archives.
pub fn is_pex_candidate(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if meta.is_dir() {
        return path.join(PEX_INFO).is_file();
    }
    if path.extension().is_some_and(|e| e == "pex") {
        return true;
    }
    starts_like_zipapp(path) && read_zip_pex_info(path).is_ok()
}

/// The PEX at `path` when [`is_pex_candidate`] would say it is one, opened: `None` when
/// it is not, else what [`open`] gave. A file known only by its content is opened once,
/// not once to ask and once to open.
pub fn probe(path: &Path) -> Option<Result<Pex, PexError>> {
    let meta = fs::metadata(path).ok()?;
    if meta.is_dir() {
        return path.join(PEX_INFO).is_file().then(|| open(path));
    }
    if path.extension().is_some_and(|e| e == "pex") {
        return Some(open(path));
    }
    if !starts_like_zipapp(path) {
        return None;
    }
    open(path).ok().map(Ok)
}

/// Starts with a `#!` line or a zip's first local header.
fn starts_like_zipapp(path: &Path) -> bool {
    let mut head = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && (head.starts_with(b"#!") || head == *b"PK\x03\x04")
}

/// Opens the PEX at `path`: a zipapp file or a packed/loose directory.
pub fn open(path: &Path) -> Result<Pex, PexError> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        let info_path = path.join(PEX_INFO);
        let text = match fs::read_to_string(&info_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PexError::DirWithoutPexInfo);
            }
            Err(e) => return Err(PexError::Io(e)),
        };
        let layout = if path.join(".bootstrap").is_dir() {
            Layout::Loose
        } else {
            Layout::Packed
        };
        let (info, raw_info) = parse_info(&text)?;
        return Ok(Pex {
            path: path.to_path_buf(),
            layout,
            info,
            raw_info,
            shebang: read_shebang(&path.join("__main__.py"))?,
            in_seed_only: false,
        });
    }
    let (info, raw_info) = read_zip_pex_info(path)?;
    Ok(Pex {
        path: path.to_path_buf(),
        layout: Layout::Zipapp,
        info,
        raw_info,
        shebang: read_shebang(path)?,
        in_seed_only: false,
    })
}

/// The PEX at `path`, whose file is not there, as a seed recorded it: `info_file` is the
/// PEX-INFO pex unpacked into the seed. It has no #! line: the seed's interpreter runs it.
pub fn from_seed(path: &Path, layout: Layout, info_file: &Path) -> Result<Pex, PexError> {
    let bytes = crate::fs::bounded::read(info_file, MAX_PEX_INFO, true)?;
    let text = String::from_utf8(bytes).map_err(|e| PexError::BadPexInfo(e.to_string()))?;
    let (info, raw_info) = parse_info(&text)?;
    Ok(Pex {
        path: path.to_path_buf(),
        layout,
        info,
        raw_info,
        shebang: None,
        in_seed_only: true,
    })
}

/// PEX-INFO is a few kilobytes; a PEX claiming more is refused before it is inflated.
const MAX_PEX_INFO: u64 = 16 << 20;

fn read_zip_pex_info(path: &Path) -> Result<(PexInfo, serde_json::Value), PexError> {
    let file = File::open(path)?;
    let bytes = match super::zip_member::read(&file, PEX_INFO, MAX_PEX_INFO)? {
        Lookup::Found(bytes) => bytes,
        Lookup::Missing => return Err(PexError::NoPexInfo),
        Lookup::TooLarge(size) => return Err(too_large(size)),
        Lookup::NotZip => {
            return Err(PexError::NotZip(
                "no end of central directory record".into(),
            ));
        }
        Lookup::Unsupported => {
            tracing::debug!("{}: read with the zip crate", path.display());
            read_pex_info_with_zip_crate(file)?
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| PexError::BadPexInfo(e.to_string()))?;
    parse_info(&text)
}

/// PEX-INFO of an archive the quick reader leaves alone (ZIP64, a damaged member…):
/// the `zip` crate reads it or says what is wrong.
fn read_pex_info_with_zip_crate(file: File) -> Result<Vec<u8>, PexError> {
    let file = BufReader::new(file);
    let mut archive = zip::ZipArchive::new(file).map_err(|e| PexError::NotZip(e.to_string()))?;
    let mut bytes = Vec::new();
    match archive.by_name(PEX_INFO) {
        Ok(entry) if entry.size() > MAX_PEX_INFO => return Err(too_large(entry.size())),
        Ok(entry) => {
            entry
                .take(MAX_PEX_INFO)
                .read_to_end(&mut bytes)
                .map_err(|e| PexError::BadPexInfo(e.to_string()))?;
        }
        Err(zip::result::ZipError::FileNotFound) => return Err(PexError::NoPexInfo),
        Err(e) => return Err(PexError::BadPexInfo(e.to_string())),
    }
    Ok(bytes)
}

fn too_large(size: u64) -> PexError {
    PexError::BadPexInfo(format!(
        "it inflates to {size} bytes, more than the {MAX_PEX_INFO} a PEX-INFO may hold"
    ))
}

fn parse_info(text: &str) -> Result<(PexInfo, serde_json::Value), PexError> {
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PexError::BadPexInfo(e.to_string()))?;
    // Read from the parsed value in place: PEX-INFO is parsed once on run's start-up.
    let info = PexInfo::deserialize(&raw).map_err(|e| PexError::BadPexInfo(e.to_string()))?;
    // pex_hash names directories in PEX_ROOT (`unzipped_pexes/<hash>`, `venvs/<hash>`):
    // anything but hex could walk out of it.
    if let Some(hash) = &info.pex_hash
        && !is_hex_digest(hash)
    {
        return Err(PexError::BadPexInfo(format!(
            "pex_hash {hash:?} is not a hex digest; rebuild the PEX with pex"
        )));
    }
    Ok((info, raw))
}

/// A non-empty run of lowercase hex digits, as pex writes its hashes.
fn is_hex_digest(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads the `#!` line of `path`, if it has one. A missing file has none.
fn read_shebang(path: &Path) -> Result<Option<Shebang>, PexError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The kernel reads at most 256 bytes of an interpreter line; so do we.
    let mut line = Vec::new();
    BufReader::new(file.take(256)).read_until(b'\n', &mut line)?;
    Ok(parse_shebang(&line))
}

pub fn parse_shebang(line: &[u8]) -> Option<Shebang> {
    let rest = line.strip_prefix(b"#!")?;
    let text = String::from_utf8_lossy(rest);
    let mut words = text.split_whitespace().map(str::to_owned);
    let program = words.next()?;
    let args: Vec<String> = words.collect();
    if Path::new(&program).file_name().is_some_and(|n| n == "env") {
        // `#!/usr/bin/env python3.11`: the interpreter is the first word env is given,
        // skipping env's own `-S` that some tools add to pass several arguments.
        let mut args = args.into_iter().skip_while(|a| a == "-S");
        let program = args.next()?;
        return Some(Shebang {
            program,
            args: args.collect(),
        });
    }
    Some(Shebang { program, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pex_hash_must_be_hex() {
        let info = |hash: &str| parse_info(&format!(r#"{{"pex_hash": "{hash}"}}"#));
        assert!(info("19462551180dbaa263b154ac4b6400f87e6069d6").is_ok());
        for bad in ["../../../../escaped", "", "ABC", "a/b", "0x12"] {
            assert!(info(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn shebang_forms() {
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env python3.11\n"),
            Some(Shebang {
                program: "python3.11".into(),
                args: vec![]
            })
        );
        assert_eq!(
            parse_shebang(b"#!/usr/bin/python3 -sE\n"),
            Some(Shebang {
                program: "/usr/bin/python3".into(),
                args: vec!["-sE".into()]
            })
        );
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env -S python3 -I\n"),
            Some(Shebang {
                program: "python3".into(),
                args: vec!["-I".into()]
            })
        );
        assert_eq!(parse_shebang(b"PK\x03\x04"), None);
        assert_eq!(parse_shebang(b"#!\n"), None);
    }
}
