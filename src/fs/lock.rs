//! Advisory locks (flock) that make concurrent pexinit (and pex) processes take turns.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, Flockable};

/// Takes an exclusive flock on `file`, waiting as long as another holder keeps it;
/// `on_wait` runs once, before waiting, so the caller can say why it stalls. Released
/// when the returned guard is dropped.
pub fn lock_exclusive<T: Flockable>(
    file: T,
    on_wait: impl FnOnce(),
) -> Result<Flock<T>, (T, Errno)> {
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => return Ok(locked),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err(other) => return Err(other),
    };
    on_wait();
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            // A signal (SIGCHLD, a resize) interrupted the wait, not the lock.
            Err((again, Errno::EINTR)) => file = again,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("lock");
        let first = lock_exclusive(File::create(&path).unwrap(), || panic!("free")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = lock_exclusive(File::open(&path).unwrap(), || tx.send(()).unwrap());
        });
        rx.recv().unwrap();
        drop(first);
        waiter.join().unwrap();
    }
}
