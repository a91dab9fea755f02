//! Numeric user and group ids given on the command line (`layer --owner`, `prime
//! --chown`, `seed --runtime-user`): decimal numbers a `uid_t` / `gid_t` can hold, except
//! 4294967295, which is `(uid_t)-1`, the "leave unchanged" value of chown(2) and no id.

/// The largest id accepted.
pub const MAX_ID: u32 = u32::MAX - 1;

/// A decimal id in `0..=MAX_ID` (digits only: no sign, no spaces).
pub fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|id| *id <= MAX_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_what_uid_t_holds_except_minus_one() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("4294967294"), Some(4_294_967_294));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "4294967295",
            "4294967296",
            "99999999999",
            "x",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
