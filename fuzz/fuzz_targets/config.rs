//! A config's text: the shape check before parsing never panics, and what it lets through
//! parses in bounded time and memory (libFuzzer's -timeout and -rss_limit_mb catch the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if pexinit::yaml_shape::check(text).is_ok() {
        let _ = serde_yaml::from_str::<serde_yaml::Value>(text);
    }
});
