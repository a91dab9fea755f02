//! Walking a tree on every core: a worker that meets a subtree hands it to an idle
//! worker, when there is one, instead of walking it itself.
//!
//! Handing off only to idle workers keeps the queue short (at most one job per idle
//! worker), so the open descriptors a job carries stay few, and a machine with one core
//! walks the tree exactly as a plain recursion would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

pub(crate) struct Pool<J> {
    state: Mutex<State<J>>,
    changed: Condvar,
    /// Workers waiting for a job (read without the lock by `offer`'s quick check).
    idle: AtomicUsize,
    /// A job failed: the others stop at their next check.
    stopped: AtomicBool,
}

struct State<J> {
    jobs: Vec<J>,
    /// Workers running a job; with `jobs` empty and none busy, the walk is over.
    busy: usize,
}

/// How many workers to walk with: one per core the process may use (std reads the
/// cgroup's CPU quota in a container), at most 8.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

impl<J: Send> Pool<J> {
    /// Runs `work` on `first` and on every job handed off meanwhile, on `workers` threads
    /// (this one included). Returns the first error; the other workers stop early.
    pub(crate) fn run<E: Send>(
        workers: usize,
        first: J,
        work: impl Fn(J, &Pool<J>) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        let pool = Pool {
            state: Mutex::new(State {
                jobs: vec![first],
                busy: 0,
            }),
            changed: Condvar::new(),
            idle: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        };
        let first_error = Mutex::new(None);
        let worker = || pool.worker(&work, &first_error);
        std::thread::scope(|scope| {
            for _ in 1..workers.max(1) {
                scope.spawn(worker);
            }
            worker();
        });
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gives `job` to an idle worker, or back to the caller (to run itself) when every
    /// worker is busy.
    pub(crate) fn offer(&self, job: J) -> Option<J> {
        if self.idle.load(Ordering::Relaxed) == 0 {
            return Some(job);
        }
        let mut state = self.lock();
        if state.jobs.len() >= self.idle.load(Ordering::Relaxed) {
            return Some(job);
        }
        state.jobs.push(job);
        self.changed.notify_one();
        None
    }

    /// Whether a job failed: whatever is still running may as well stop. (Its own error
    /// is not kept: the first one is already recorded.)
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn worker<E>(
        &self,
        work: &impl Fn(J, &Pool<J>) -> Result<(), E>,
        first_error: &Mutex<Option<E>>,
    ) {
        loop {
            let job = {
                let mut state = self.lock();
                loop {
                    if self.stopped() {
                        return;
                    }
                    if let Some(job) = state.jobs.pop() {
                        state.busy += 1;
                        break job;
                    }
                    if state.busy == 0 {
                        // Nothing queued and nobody left to queue anything: done.
                        self.changed.notify_all();
                        return;
                    }
                    self.idle.fetch_add(1, Ordering::Relaxed);
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    self.idle.fetch_sub(1, Ordering::Relaxed);
                }
            };
            if let Err(e) = work(job, self) {
                // Recorded before `stopped` is set, so that the errors of workers that
                // stop because of it come second.
                first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                self.stopped.store(true, Ordering::Release);
            }
            let mut state = self.lock();
            state.busy -= 1;
            if self.stopped() || (state.busy == 0 && state.jobs.is_empty()) {
                self.changed.notify_all();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    struct Walk {
        visited: AtomicU64,
        threads: Mutex<HashSet<std::thread::ThreadId>>,
        fail_at: Option<u64>,
    }

    /// Node `node` of a full binary tree with `levels` levels below it; children are
    /// offered to idle workers, else visited here.
    fn visit(walk: &Walk, node: u64, levels: u32, pool: &Pool<(u64, u32)>) -> Result<(), u64> {
        walk.visited.fetch_add(1, Ordering::Relaxed);
        walk.threads
            .lock()
            .expect("threads")
            .insert(std::thread::current().id());
        // Slow enough that the other workers are idle, and get offers, meanwhile.
        std::thread::sleep(Duration::from_micros(20));
        if Some(node) == walk.fail_at {
            return Err(node);
        }
        if levels == 0 || pool.stopped() {
            return Ok(());
        }
        for child in [2 * node, 2 * node + 1] {
            if let Some((child, levels)) = pool.offer((child, levels - 1)) {
                visit(walk, child, levels, pool)?;
            }
        }
        Ok(())
    }

    fn walk(workers: usize, fail_at: Option<u64>) -> (Result<(), u64>, Walk) {
        let walk = Walk {
            visited: AtomicU64::new(0),
            threads: Mutex::new(HashSet::new()),
            fail_at,
        };
        let result = Pool::run(workers, (1, 11), |(node, levels), pool| {
            visit(&walk, node, levels, pool)
        });
        (result, walk)
    }

    #[test]
    fn every_node_is_visited_once_and_idle_workers_get_subtrees() {
        for workers in [1, 2, 4] {
            let (result, walk) = walk(workers, None);
            assert_eq!(result, Ok(()));
            assert_eq!(
                walk.visited.into_inner(),
                (1 << 12) - 1,
                "{workers} workers"
            );
            let threads = walk.threads.into_inner().expect("threads").len();
            assert_eq!(
                threads > 1,
                workers > 1,
                "{workers} workers ran on {threads} threads"
            );
        }
    }

    #[test]
    fn the_first_error_is_returned_and_the_walk_stops() {
        for workers in [1, 3] {
            let (result, walk) = walk(workers, Some(77));
            assert_eq!(result, Err(77), "{workers} workers");
            assert!(walk.visited.into_inner() < (1 << 12) - 1);
        }
    }
}
