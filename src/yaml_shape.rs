//! Bounds on a YAML config's shape, checked on its text before it is parsed.
//!
//! The config is parsed with serde_yaml (its derive-based API names every bad key and
//! its line), whose scanner (unsafe-libyaml) takes time quadratic in the nesting of flow
//! collections (`[[[[...]]]]`: 40 KB took 25 s), and which expands every alias in full (a
//! 1 MiB scalar under 2000 aliases took 2 GB). A config is a few lines, so the text is
//! held to [`MAX_FLOW_DEPTH`] levels of flow nesting and [`MAX_ALIASES`] aliases (with
//! the 64 KiB size limit of a config file, at most 4 MiB of copies) before the parser sees
//! it.
//!
//! The scan is conservative: it follows quotes and comments, and counts a `*` as an
//! alias, and a `[` or `{` as flow nesting, only where a node may start. Text it cannot
//! place (inside block scalars) may be counted, never missed.

/// Flow collections nested deeper than this are refused.
pub const MAX_FLOW_DEPTH: usize = 32;
/// More aliases (`*name`) than this are refused.
pub const MAX_ALIASES: usize = 64;

/// Checks `text` against the bounds; the error names the line.
pub fn check(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut aliases = 0usize;
    let mut line = 1usize;
    // A node may start here: line start, after `[`, `{`, `,` (in flow), `: `, `- `, `? `.
    let mut node_start = true;
    // The last byte was an indicator that starts a node when whitespace follows.
    let mut indicator = false;
    let mut after_space = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                line += 1;
                node_start = true;
                indicator = false;
                after_space = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                if indicator {
                    node_start = true;
                    indicator = false;
                }
                after_space = true;
                i += 1;
                continue;
            }
            b'#' if after_space => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\'' | b'"' if node_start => {
                // A quoted scalar: skip to its end (`''` or `\"` escapes), counting lines.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\n' => line += 1,
                        b'\\' if b == b'"' => i += 1,
                        b'\'' if b == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        c if c == b => break,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                node_start = false;
                indicator = false;
                after_space = false;
                continue;
            }
            b'*' if node_start => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(format!(
                        "line {line}: more than {MAX_ALIASES} aliases (*name); write the values out"
                    ));
                }
                node_start = false;
            }
            b'[' | b'{' if node_start || depth > 0 => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "line {line}: [ ] or {{ }} nested more than {MAX_FLOW_DEPTH} deep; a config needs a few levels"
                    ));
                }
                node_start = true;
                after_space = false;
                indicator = false;
                i += 1;
                continue;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => {
                node_start = true;
                after_space = false;
                indicator = false;
                i += 1;
                continue;
            }
            b':' | b'-' | b'?' => {
                indicator = true;
                node_start = false;
                after_space = false;
                i += 1;
                continue;
            }
            _ => node_start = false,
        }
        indicator = false;
        after_space = false;
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_configs_pass() {
        let text = "# comment [[[[\npython: /usr/bin/python3.11\nvenv: [/app/a.pex, '/app/[b].pex']\n\
                    env:\n  A: \"*not an alias*\"\n  B: it's [fine] *too\n  C: &x 1\n  D: *x\n";
        check(text).expect("ordinary");
    }

    #[test]
    fn deep_flow_nesting_and_many_aliases_are_refused_with_the_line() {
        let deep = format!("python: x\nvenv: {}{}\n", "[".repeat(33), "]".repeat(33));
        let e = check(&deep).expect_err("deep");
        assert!(e.starts_with("line 2:"), "{e}");
        check(&format!("venv: {}{}\n", "[".repeat(32), "]".repeat(32))).expect("32 deep");
        let aliases = format!("env:\n  A: &a x\n{}", "  - *a\n".repeat(65));
        assert!(check(&aliases).expect_err("aliases").contains("aliases"));
    }
}
