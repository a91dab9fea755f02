//! SOURCE_DATE_EPOCH, the reproducible-builds convention for "the time the sources were
//! last changed": read here once for `seed` (file mtimes), `layer` (the mtime clamp) and
//! `image append` (`created`).

use std::str::FromStr;

use crate::error::{Error, Result};

/// mtime of every seeded file (and `layer`'s clamp) when SOURCE_DATE_EPOCH is unset:
/// 1980-01-01, the zip epoch (a constant, so seeds stay reproducible without any setting).
pub const DEFAULT_SOURCE_DATE_EPOCH: i64 = 315_532_800;

/// SOURCE_DATE_EPOCH as seconds; None when unset or empty (as CI systems export it when
/// they have no value). `T` is the range the caller accepts: a value outside it is an
/// error like any other non-number.
pub fn source_date_epoch<T: FromStr>() -> Result<Option<T>> {
    parse(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())
}

fn parse<T: FromStr>(value: Option<&std::ffi::OsStr>) -> Result<Option<T>> {
    let Some(value) = value else { return Ok(None) };
    let text = value.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        Error::Usage(format!(
            "SOURCE_DATE_EPOCH={text:?} is not a number of seconds; set it to e.g. $(git log -1 --format=%ct)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn empty_is_unset_and_garbage_names_the_fix() {
        assert_eq!(parse::<i64>(None).unwrap(), None);
        assert_eq!(parse::<i64>(Some(OsStr::new(""))).unwrap(), None);
        assert_eq!(parse::<i64>(Some(OsStr::new("  "))).unwrap(), None);
        assert_eq!(parse::<i64>(Some(OsStr::new(" 17 "))).unwrap(), Some(17));
        assert_eq!(parse::<i64>(Some(OsStr::new("-5"))).unwrap(), Some(-5));
        let err = parse::<u64>(Some(OsStr::new("-5")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("SOURCE_DATE_EPOCH=\"-5\" is not a number"),
            "{err}"
        );
        let err = parse::<i64>(Some(OsStr::new("soon"))).unwrap_err();
        assert!(err.to_string().contains("git log -1"), "{err}");
    }
}
