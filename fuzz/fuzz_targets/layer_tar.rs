//! The tar stream check of `image append`: any bytes give a diff_id or an error, never a
//! panic, and reading never runs past the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pexinit::oci::inspect::diff_id(data);
});
