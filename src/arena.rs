//! The allocator of the pexinit binary: a bump arena for start-up, the system allocator
//! after it.
//!
//! `pexinit run` makes a few hundred small allocations (argument parsing, the planned
//! environment) and then execs or waits. Served by the C allocator they cost system
//! calls and page faults on every container start — musl's allocator maps and unmaps
//! memory eagerly (about fifty mmap/munmap calls per `run`). A bump arena in zeroed
//! static memory serves them with no system call, and only the pages actually used are
//! ever faulted in. When the arena is full (long-running commands such as `seed` or
//! `layer`), allocations fall through to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Enough for `run`, `env` and `doctor` with a large environment (they use ~60 KiB).
const ARENA_SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Memory(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: disjoint ranges of the memory are handed out by an atomic bump pointer.
unsafe impl Sync for Memory {}

pub struct StartupArena {
    memory: Memory,
    /// Offset of the first free byte.
    next: AtomicUsize,
}

impl StartupArena {
    pub const fn new() -> Self {
        StartupArena {
            memory: Memory(UnsafeCell::new([0; ARENA_SIZE])),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.memory.0.get() as usize
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        addr >= self.base() && addr < self.base() + ARENA_SIZE
    }

    /// A block from the arena, or None when it does not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + next).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > ARENA_SIZE {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(current) => next = current,
            }
        }
    }

    /// Gives back the arena's most recent block (start-up code often frees what it just
    /// allocated); older blocks stay used until exit.
    fn release(&self, ptr: *mut u8, size: usize) {
        let start = ptr as usize - self.base();
        let _ =
            self.next
                .compare_exchange(start + size, start, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Default for StartupArena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks come either from the arena (disjoint, aligned, never reused while
// live) or from `System`, and each is returned to where it came from.
unsafe impl GlobalAlloc for StartupArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: forwarding the caller's valid layout.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => {
                // A released block may be handed out again: zero it.
                // SAFETY: ptr is valid for layout.size() bytes.
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // SAFETY: forwarding the caller's valid layout.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.contains(ptr) {
            self.release(ptr, layout.size());
        } else {
            // SAFETY: ptr came from System.alloc with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.contains(ptr) {
            // SAFETY: ptr came from System with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Grow or shrink in place when the block is the arena's most recent one.
        let start = ptr as usize - self.base();
        if start + new_size <= ARENA_SIZE
            && self
                .next
                .compare_exchange(
                    start + layout.size(),
                    start + new_size,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return ptr;
        }
        // SAFETY: the caller guarantees new_size is valid for the alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: valid layout.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            self.release(ptr, layout.size());
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_fall_back_when_full() {
        let arena = Box::new(StartupArena::new());
        let small = Layout::from_size_align(24, 8).unwrap();
        let page = Layout::from_size_align(100, 4096).unwrap();
        // SAFETY: valid layouts; blocks freed with the same layouts.
        unsafe {
            let a = arena.alloc(small);
            let b = arena.alloc(page);
            assert!(arena.contains(a) && arena.contains(b));
            assert_eq!(b as usize % 4096, 0);
            assert!(b as usize >= a as usize + 24);
            let huge = Layout::from_size_align(ARENA_SIZE, 8).unwrap();
            let c = arena.alloc(huge);
            assert!(!c.is_null() && !arena.contains(c), "too big: from System");
            arena.dealloc(c, huge);
            // Freeing the most recent block makes its room reusable.
            arena.dealloc(b, page);
            let d = arena.alloc(page);
            assert_eq!(d, b);
            arena.dealloc(d, page);
            arena.dealloc(a, small);
        }
    }

    #[test]
    fn realloc_keeps_contents_in_and_out_of_the_arena() {
        let arena = Box::new(StartupArena::new());
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: valid layouts and sizes; every block is freed with its layout.
        unsafe {
            let a = arena.alloc(layout);
            a.copy_from_nonoverlapping(b"0123456789abcdef".as_ptr(), 16);
            let _pin = arena.alloc(layout); // `a` is no longer the most recent block
            let grown = arena.realloc(a, layout, 64);
            assert_ne!(grown, a);
            assert_eq!(std::slice::from_raw_parts(grown, 16), b"0123456789abcdef");
            let big = arena.realloc(grown, Layout::from_size_align(64, 8).unwrap(), ARENA_SIZE);
            assert!(!arena.contains(big));
            assert_eq!(std::slice::from_raw_parts(big, 16), b"0123456789abcdef");
            arena.dealloc(big, Layout::from_size_align(ARENA_SIZE, 8).unwrap());
        }
    }
}
