//! Modes that do not depend on the builder's umask.

/// `mode` with group permissions equal to the user's and others' equal to the user's
/// without write: what a umask would have decided is decided by the user bits alone
/// (0644 and 0664 both become 0664, 0700 becomes 0775). Sticky, setuid and setgid are
/// kept. Group write is kept on purpose: an arbitrary uid in group 0 (OpenShift,
/// Kubernetes `runAsUser`) may need it.
pub fn from_user_bits(mode: u32) -> u32 {
    let user = (mode >> 6) & 0o7;
    (mode & !0o077) | (user << 3) | (user & 0o5)
}

#[cfg(test)]
mod tests {
    use super::from_user_bits;

    #[test]
    fn modes_from_any_umask_agree() {
        for umask in [0o022, 0o002, 0o027, 0o077] {
            assert_eq!(from_user_bits(0o666 & !umask), 0o664, "umask {umask:o}");
            assert_eq!(from_user_bits(0o777 & !umask), 0o775, "umask {umask:o}");
        }
        assert_eq!(from_user_bits(0o2750), 0o2775);
        assert_eq!(from_user_bits(0o444), 0o444);
    }
}
