//! `--split`: a seeded PEX_ROOT as two layers, dependencies then application code, so
//! an image rebuilt after a code change re-uploads only the small second layer.
//!
//! pex keys every cache directory by content, and the top-level directory says what the
//! content is (checked on seeded zipapp and `--venv` PEX files of pex 2.20 to 2.105):
//!
//! | top-level name | holds | changes when |
//! |---|---|---|
//! | `installed_wheels/` | every third-party distribution, unpacked | requirements change |
//! | `isolated/`, `bootstraps/` | pex's own runtime code (absent from a `seed --slim`) | the pex version changes |
//! | `interpreters/` | the interpreter identity cache, keyed on the kernel (`uname`), also for each `--venv` venv's python | the kernel or the PEX changes |
//! | `access.lck` | pex's cache lock (empty) | never |
//! | `user_code/` | the application's own sources (zipapp) | the code changes |
//! | `unzipped_pexes/` | PEX-INFO, `__main__.py`, links into `installed_wheels` | the PEX changes |
//! | `venvs/` | the `--venv` venv: scripts, PEX-INFO, sources, links into `installed_wheels` | the PEX changes |
//! | `.pexinit/`, `.pexinit-seed.json` | the launchers and the seed manifest | the PEX changes |
//!
//! The first group is the dependency layer; everything else, including names pexinit
//! does not know, goes in the application layer. `interpreters/` is in the application
//! layer: its names depend on the build host's kernel and its entries on the app's venv,
//! and the dependency layer must depend on neither (a slim seed has no `interpreters/`).
//! So nothing that might change is frozen in the layer meant to stay the same. The
//! directories above and at DEST are in both layers (same entries, so the order of the
//! layers does not matter for them).

use crate::oci::walk::Entry;

/// Top-level names of a PEX_ROOT that belong to the dependency layer.
pub const DEPENDENCY_NAMES: [&str; 4] =
    ["installed_wheels", "isolated", "bootstraps", "access.lck"];

/// Splits the entries of one seed placed at `dest` into (dependencies, application).
pub fn split(entries: Vec<Entry>, dest: &[Vec<u8>]) -> (Vec<Entry>, Vec<Entry>) {
    let depth = dest.len();
    let mut deps = Vec::new();
    let mut app = Vec::new();
    for entry in entries {
        let components: Vec<&[u8]> = entry.path.split(|b| *b == b'/').collect();
        if components.len() <= depth {
            deps.push(entry.clone());
            app.push(entry);
        } else if DEPENDENCY_NAMES
            .iter()
            .any(|n| n.as_bytes() == components[depth])
        {
            deps.push(entry);
        } else {
            app.push(entry);
        }
    }
    (deps, app)
}
