//! Making a directory a warm PEX_ROOT from a seed (`pexinit prime`).

use crate::cli::PrimeArgs;
use crate::error::{Error, Result};

/// `pexinit prime`: returns the exit status.
pub fn command(_args: &PrimeArgs) -> Result<u8> {
    Err(Error::Usage("pexinit prime: not built yet".into()))
}
