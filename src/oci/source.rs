//! `SRC[:DEST]` arguments: where a tree comes from and where it lands in the image.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// One `SRC[:DEST]` argument, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// SRC as the user wrote it (for messages).
    pub given: PathBuf,
    /// SRC with every link in the path itself resolved: what the walk starts from.
    /// Links *below* SRC are stored as links, never followed.
    pub path: PathBuf,
    /// DEST as path components inside the image; empty for `/`.
    pub dest: Vec<Vec<u8>>,
}

/// Splits `SRC[:DEST]` at the last `:` that starts an absolute DEST; a colon anywhere
/// else belongs to SRC.
pub fn parse(arg: &str) -> Result<Source> {
    let (src, dest) = match arg.rsplit_once(':') {
        Some((src, dest)) if dest.starts_with('/') && !src.is_empty() => (src, Some(dest)),
        _ => (arg, None),
    };
    let given = PathBuf::from(src);
    // The SRC path itself may go through links (a /tmp symlink, a `current` link):
    // those are the user's way of naming SRC. A loop or a dangling link is an error.
    let path = std::fs::canonicalize(&given).map_err(|e| {
        Error::Usage(format!(
            "{src}: cannot resolve the source ({e}); give an existing file or directory"
        ))
    })?;
    let dest = match dest {
        Some(dest) => dest_components(dest)?,
        None => dest_components(&default_dest(&given, &path).to_string_lossy())?,
    };
    Ok(Source { given, path, dest })
}

/// DEST when none is given: SRC as written, made absolute but not resolved (a SRC named
/// through a `current` link lands at `current`); with `..` in it, its resolved path.
fn default_dest(given: &Path, resolved: &Path) -> PathBuf {
    match std::path::absolute(given) {
        Ok(abs) if !abs.components().any(|c| c == Component::ParentDir) => abs,
        _ => resolved.to_path_buf(),
    }
}

/// `/opt/pex-root` → [`opt`, `pex-root`]; refuses `..` (a layer never writes outside
/// the place it names).
fn dest_components(dest: &str) -> Result<Vec<Vec<u8>>> {
    let path = Path::new(dest);
    if !path.is_absolute() {
        return Err(Error::Usage(format!(
            "DEST {dest:?} must be an absolute path in the image, e.g. /opt/pex-root"
        )));
    }
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name.as_bytes().to_vec()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Usage(format!(
                    "DEST {dest:?} must not contain `..`; name the directory in the image directly"
                )));
            }
        }
    }
    Ok(out)
}

/// Joins image path components with `/` (no leading slash, as tar stores them).
pub fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

/// A message-friendly view of image path bytes.
pub fn display(path: &[u8]) -> String {
    Path::new(OsStr::from_bytes(path)).display().to_string()
}

/// A path pexinit writes its layers to (`--output FILE`, `--distributions DIR`, named by
/// `flag`, a `kind` of "file" or "directory"): its parent must resolve, it must have a
/// name, and it must not lie inside a source, or the next run would store these layers
/// in the new ones.
pub fn check_outside_sources(
    flag: &str,
    path: &Path,
    kind: &str,
    sources: &[Source],
) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).map_err(|e| {
        Error::Usage(format!(
            "{flag} {}: its directory cannot be used ({e}); create it first",
            path.display()
        ))
    })?;
    if path.file_name().is_none() {
        return Err(Error::Usage(format!(
            "{flag} {}: name a {kind}",
            path.display()
        )));
    }
    if let Some(source) = sources.iter().find(|s| parent.starts_with(&s.path)) {
        return Err(Error::Usage(format!(
            "{flag} {} is inside the source {}: the layers would contain themselves; write them elsewhere",
            path.display(),
            source.given.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_after_last_colon_when_absolute() {
        let dir = std::env::temp_dir();
        let arg = format!("{}:/opt/pex-root", dir.display());
        let source = parse(&arg).expect("parse");
        assert_eq!(source.dest, vec![b"opt".to_vec(), b"pex-root".to_vec()]);
        assert_eq!(
            parse(&format!("{}:/", dir.display())).expect("root").dest,
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn dest_refuses_parent_components() {
        assert!(dest_components("/opt/../etc").is_err());
        assert!(dest_components("relative").is_err());
    }
}
