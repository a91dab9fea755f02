//! `pexinit prime`: make a directory a warm PEX_ROOT from a seed.

use crate::cli::PrimeArgs;
use crate::error::Result;
use crate::identity::numeric_owner;
use crate::pex::prime::{self, Request};

pub fn prime(args: &PrimeArgs, verbose: u8) -> Result<u8> {
    super::init_logging(verbose)?;
    let owner = args
        .chown
        .as_deref()
        .map(|text| numeric_owner("--chown", text))
        .transpose()?;
    let report = prime::prime(&Request {
        from: args.from.clone(),
        into: args.into.clone(),
        owner,
        mode: args.link,
    })?;
    super::print(&super::json_or(args.json, &report, || report.text())?)?;
    Ok(0)
}
