// pexinit starts before every container's program, so its own start-up is on every
// launch's path: a C `main` skips the Rust runtime's set-up, which on Linux reads and
// parses /proc/self/maps and installs an alternate signal stack for stack-overflow
// reports (measured in docs/BENCHMARKS.md, "Launch overhead"). What pexinit needs of it
// is done here: SIGPIPE ignored (writes to a closed pipe fail with EPIPE instead of
// killing pexinit), the arguments taken from `main`'s own argv (the standard library
// only learns them by itself on glibc), and stdout flushed before exit.
#![no_main]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

use pexinit::arena::StartupArena;
use pexinit::error::exit;

#[global_allocator]
static ALLOCATOR: StartupArena = StartupArena::new();

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // SAFETY: setting a standard disposition; no handler code involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
    let args = unsafe { arguments(argc, argv) };
    let code = pexinit_main(args);
    // Returning from a C main exits without the Rust runtime's stdout flush.
    let _ = std::io::stdout().flush();
    c_int::from(code)
}

/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings, as the C runtime passes them.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the caller guarantees argv[0..argc] are valid C strings.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) })
        .map(|arg| OsString::from_vec(arg.to_bytes().to_vec()))
        .collect()
}

fn pexinit_main(args: Vec<OsString>) -> u8 {
    let cli = match pexinit::cli::parse(args) {
        Ok(cli) => cli,
        // --help and --version, printed as clap formats them.
        Err(None) => return 0,
        Err(Some(usage)) => {
            // Bad flags are pexinit's own failure (125, as `docker run` does).
            eprintln!("pexinit: error: {usage}");
            return exit::PEXINIT_FAILED;
        }
    };
    match pexinit::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "pexinit: error: {}",
                pexinit::error::one_line(&e.to_string())
            );
            e.exit_code()
        }
    }
}
