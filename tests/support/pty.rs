//! A real terminal for tests: a command runs as the session leader of a new session whose
//! controlling terminal is a pseudo-terminal; the test types into it and reads what
//! appears on the screen, as a user at a keyboard would.
//!
//! Waits are for text on the screen or for the process to end, bounded only by a
//! generous deadline against hangs; a hang fails the test with the whole transcript.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Against hangs only: every wait ends far sooner when things work.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// ^C, ^Z as typed (the terminal's default VINTR and VSUSP).
pub const CTRL_C: &str = "\x03";
pub const CTRL_Z: &str = "\x1a";

#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    /// The terminal's last writer is gone (read gave EIO or end of file).
    closed: bool,
}

pub struct Pty {
    child: Child,
    master: File,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    /// How much of the screen `expect` has consumed.
    seen: usize,
}

impl Pty {
    /// Starts `command` on a new terminal: stdin, stdout and stderr are the terminal, and
    /// it is the controlling terminal of the command's new session.
    pub fn spawn(mut command: Command) -> Pty {
        let (master, slave) = open_pty();
        let slave_file = File::from(slave);
        let stdio = |f: &File| f.try_clone().expect("dup the terminal");
        command
            .stdin(stdio(&slave_file))
            .stdout(stdio(&slave_file))
            .stderr(stdio(&slave_file));
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                super::default_signal_dispositions();
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        drop(slave_file);
        drop(command);
        let master = File::from(master);
        let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
        let reader = master.try_clone().expect("dup the terminal's master");
        let shared = Arc::clone(&screen);
        thread::spawn(move || read_screen(reader, &shared));
        Pty {
            child,
            master,
            screen,
            seen: 0,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Types `text` (control characters included).
    pub fn send(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("type into the terminal");
    }

    /// Waits until `text` appears on the screen after what earlier calls consumed;
    /// returns the screen up to and including it.
    pub fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        let (lock, changed) = &*self.screen;
        let mut screen = lock.lock().expect("screen lock");
        loop {
            let fresh = String::from_utf8_lossy(&screen.bytes[self.seen..]).into_owned();
            if let Some(at) = fresh.find(text) {
                let end = at + text.len();
                // `fresh` is lossy: count the bytes of the matched prefix, not chars.
                self.seen += fresh[..end].len();
                return fresh[..end].to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if screen.closed || left.is_zero() {
                let why = if screen.closed {
                    "the terminal closed"
                } else {
                    "still waiting after the hang guard"
                };
                let shown = String::from_utf8_lossy(&screen.bytes).into_owned();
                // Unlocked first: a panic holding the lock would poison it for the reader.
                drop(screen);
                panic!("{text:?} never appeared ({why}); the screen:\n{shown}");
            }
            screen = changed.wait_timeout(screen, left).expect("screen lock").0;
        }
    }

    /// Everything the terminal showed so far.
    pub fn transcript(&self) -> String {
        let screen = self.screen.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&screen.bytes).into_owned()
    }

    /// Waits for the command to exit; its exit status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the command never exited; the screen:\n{}",
                self.transcript()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to exit with a status code (not a signal); the code.
    pub fn exit_code(&mut self) -> i32 {
        let status = self.wait();
        status.code().unwrap_or_else(|| {
            panic!(
                "the command died of signal {:?}; the screen:\n{}",
                status.signal(),
                self.transcript()
            )
        })
    }
}

impl Drop for Pty {
    /// Nothing a test started outlives it, even when it failed half-way: every process
    /// of the terminal's session is killed.
    fn drop(&mut self) {
        kill_session(self.pid());
        let _ = self.child.wait();
    }
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two descriptors; null name, termios and window size ask for
    // the defaults (canonical input, echo, ^C and ^Z generating signals).
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

fn read_screen(mut master: File, screen: &(Mutex<Screen>, Condvar)) {
    let mut buffer = [0u8; 4096];
    loop {
        let n = master.read(&mut buffer).unwrap_or(0);
        let (lock, changed) = screen;
        let mut screen = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if n == 0 {
            screen.closed = true;
        } else {
            screen.bytes.extend_from_slice(&buffer[..n]);
        }
        changed.notify_all();
        if n == 0 {
            return;
        }
    }
}

/// SIGKILL to every process of session `sid` (they may sit in other PID namespaces:
/// the host's /proc lists them all).
pub fn kill_session(sid: i32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if session_of(pid) == Some(sid) {
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The session id of `pid`, from /proc/PID/stat.
fn session_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 2..];
    after.split(' ').nth(3)?.parse().ok()
}
