//! Applying a plan: create the directories it names. Then the program starts: in place of
//! pexinit ([`crate::run::exec`]) or under [`crate::run::init::supervise`].

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::paths::create_dirs;
use crate::run::plan::EnvPlan;

/// Creates every directory the plan needs, without following links, owned by `who` (so
/// root preparing for `--user` leaves directories that user can write).
pub fn prepare(plan: &EnvPlan, who: &Identity) -> Result<()> {
    for dir in &plan.mkdirs {
        create_dirs(&dir.root, &dir.path, dir.policy, who).map_err(|e| {
            Error::Normalize(format!(
                "cannot create {}: {e}; remove what is in the way or set HOME / PEX_ROOT to a \
                 writable directory",
                dir.path.display()
            ))
        })?;
    }
    Ok(())
}
