//! Moving a seed to another PEX_ROOT path: rewriting the absolute references pex wrote.
//!
//! pex links its cache together with relative links, but a venv names its own location:
//! script shebangs (`#!<root>/venvs/<N>/s/<short>/venv/bin/python3.11 -I`), the venv's
//! `__main__.py` (the same path as `shebang_python=`), `pyvenv.cfg`, the `activate`
//! scripts, and pex ≤ 2.20's absolute `venvs/<N>/s/<short>/venv` link. The interpreter
//! cache (`interpreters/`) records the venv interpreter's path in `INTERP-INFO`. Nothing
//! else holds the root: wheels, bootstraps and unzipped PEXes are position independent,
//! and `.pyc` files carry their source path only for tracebacks (Python replaces it with
//! the real path when it loads them).
//!
//! Cache entry names stay valid: the venv directory is a hash of the PEX and the
//! interpreter, not of PEX_ROOT; the short `s/<hash>` name is chosen once, when the venv
//! is made, and only read back through the shebangs rewritten here.
//!
//! A rewritten `.py` file no longer matches the `.pyc` compiled from it (size, and
//! constants holding the old root): that bytecode is left out, so Python never runs the
//! old constants. The only such file pex writes is the venv's `__main__.py`, which runs
//! as a script; its bytecode is the one `pexinit seed` compiles for the fast path under
//! the name of the venv's `pex` script (a link to it), so a relocated venv's script
//! starts from its source.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Top-level directories whose files may name the root (their other files are copied or
/// linked without being read).
const SCANNED_TOPS: [&str; 2] = ["venvs", "interpreters"];

/// Longest `#!` line every Linux since 5.1 reads whole (BINPRM_BUF_SIZE); pex itself warns
/// above 128.
const MAX_SHEBANG: usize = 255;

/// Longest path below PEX_ROOT a shebang names: `/venvs/<N>/s/<up to 40 hex>/venv/bin/
/// python3.NN` plus the ` -sE` flag.
const SHEBANG_TAIL: usize =
    "/venvs/99/s/0123456789012345678901234567890123456789/venv/bin/python3.99 -sE".len();

/// The old and new physical PEX_ROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    from: PathBuf,
    to: PathBuf,
}

impl Relocation {
    /// A relocation from the path the seed was built for to `to`, or why `to` cannot hold
    /// it (one line, naming the fix).
    pub fn new(from: &Path, to: &Path) -> Result<Relocation, String> {
        let fix = format!(
            "prime into the seed's own path {} (or a short path without spaces)",
            from.display()
        );
        let bytes = to.as_os_str().as_bytes();
        if bytes
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{} holds whitespace: venv shebangs cannot name it; {fix}",
                to.display()
            ));
        }
        if bytes.len() + SHEBANG_TAIL + 2 > MAX_SHEBANG {
            return Err(format!(
                "{} is too long for the venv shebangs that must name it ({MAX_SHEBANG} bytes at most); {fix}",
                to.display()
            ));
        }
        Ok(Relocation {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        })
    }

    pub fn from(&self) -> &Path {
        &self.from
    }

    /// Whether the file at `rel` (relative to the root) may name the root and must be read.
    pub fn scans(&self, rel: &Path) -> bool {
        let top = rel.iter().next().unwrap_or_default();
        SCANNED_TOPS.iter().any(|t| top == OsStr::new(t))
            && rel.extension() != Some(OsStr::new("pyc"))
    }

    /// `bytes` with every mention of the old root replaced, or None when it names none.
    /// A mention is the old root followed by something that cannot continue a path
    /// component (`/`, a quote, the end…), so `/srv/pex` never matches in `/srv/pex2`.
    pub fn rewrite(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let from = self.from.as_os_str().as_bytes();
        let to = self.to.as_os_str().as_bytes();
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut at = 0;
        while let Some(found) = find(&bytes[at..], from) {
            let start = at + found;
            let end = start + from.len();
            at = start + 1;
            if bytes.get(end).is_some_and(|&b| continues_component(b)) {
                continue;
            }
            let out = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 64));
            out.extend_from_slice(&bytes[copied..start]);
            out.extend_from_slice(to);
            copied = end;
            at = end;
        }
        let mut out = out?;
        out.extend_from_slice(&bytes[copied..]);
        Some(out)
    }

    /// A link target with the old root replaced, when it is absolute and points into it.
    pub fn link_target(&self, target: &Path) -> Option<PathBuf> {
        target
            .strip_prefix(&self.from)
            .ok()
            .map(|rest| self.to.join(rest))
    }
}

fn continues_component(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloc() -> Relocation {
        Relocation::new(Path::new("/opt/pex-root"), Path::new("/cache/pex")).expect("valid")
    }

    #[test]
    fn rewrites_whole_components_only() {
        let r = reloc();
        let text = b"#!/opt/pex-root/venvs/1/s/abc/venv/bin/python3.11 -I\nx='/opt/pex-root'\n/opt/pex-root2/y /opt/pex-root.d";
        let out = r.rewrite(text).expect("rewritten");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "#!/cache/pex/venvs/1/s/abc/venv/bin/python3.11 -I\nx='/cache/pex'\n/opt/pex-root2/y /opt/pex-root.d"
        );
        assert_eq!(r.rewrite(b"nothing here"), None);
        assert_eq!(r.rewrite(b"/opt/pex-rootx"), None);
    }

    #[test]
    fn links_into_the_root_move_and_others_stay() {
        let r = reloc();
        assert_eq!(
            r.link_target(Path::new("/opt/pex-root/venvs/0/abc")),
            Some(PathBuf::from("/cache/pex/venvs/0/abc"))
        );
        assert_eq!(r.link_target(Path::new("/usr/bin/python3.11")), None);
        assert_eq!(r.link_target(Path::new("/opt/pex-root2/x")), None);
        assert_eq!(r.link_target(Path::new("../../x")), None);
    }

    #[test]
    fn refuses_roots_a_shebang_cannot_name() {
        let from = Path::new("/opt/pex-root");
        assert!(Relocation::new(from, Path::new("/a b/pex")).is_err());
        let long = format!("/{}", "x".repeat(200));
        let err = Relocation::new(from, Path::new(&long)).expect_err("too long");
        assert!(err.contains("/opt/pex-root"), "{err}");
    }
}
