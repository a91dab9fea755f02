//! A stack for a `CLONE_VM` child: its own mapping with an inaccessible guard page below
//! it, so a child that runs out of stack faults (and dies of SIGSEGV) instead of writing
//! over the memory it shares with pexinit.

use std::io;

pub struct GuardedStack {
    /// Start of the mapping: the guard page, then the usable stack up to `base + len`.
    base: *mut libc::c_void,
    len: usize,
    guard: usize,
}

impl GuardedStack {
    /// A stack of at least `size` usable bytes. Pages are only faulted in when the child
    /// touches them.
    pub fn new(size: usize) -> io::Result<GuardedStack> {
        // SAFETY: sysconf only reads a system constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let usable = size.div_ceil(page) * page;
        let len = usable + page;
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = GuardedStack {
            base,
            len,
            guard: page,
        };
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Where the child's stack pointer starts: the end of the mapping (page aligned, so
    /// 16-byte aligned as every ABI wants). Stacks grow down towards the guard.
    pub fn top(&self) -> *mut libc::c_void {
        self.base.wrapping_byte_add(self.len)
    }

    /// The guard page's address range.
    pub fn guard(&self) -> std::ops::Range<usize> {
        let start = self.base as usize;
        start..start + self.guard
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `new` made; the child that used it has
        // exec'd or exited (CLONE_VFORK) before anyone drops it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard page is in /proc/self/maps as an inaccessible mapping just below the
    /// stack.
    #[test]
    fn the_page_below_the_stack_is_inaccessible() {
        let stack = GuardedStack::new(64 * 1024).unwrap();
        let guard = stack.guard();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| {
                let range = l.split(' ').next().unwrap_or("");
                let start = range.split('-').next().unwrap_or("");
                usize::from_str_radix(start, 16) == Ok(guard.start)
            })
            .unwrap_or_else(|| panic!("no mapping at {:#x}:\n{maps}", guard.start));
        assert!(line.split(' ').nth(1) == Some("---p"), "{line}");
        assert!(stack.top() as usize - guard.end >= 64 * 1024);
    }

    /// A child that overflows its stack dies of SIGSEGV on the guard page and leaves
    /// the memory below untouched.
    #[test]
    fn a_child_running_off_its_stack_faults() {
        extern "C" fn recurse(depth: *mut libc::c_void) -> libc::c_int {
            let depth = depth as usize;
            // A frame with a page of its own, written so it is really used.
            let mut frame = [0u8; 4096];
            // SAFETY: volatile write into a local array.
            unsafe { std::ptr::write_volatile(&mut frame[0], depth as u8) };
            if depth > 0 {
                recurse((depth - 1) as *mut libc::c_void);
            }
            // SAFETY: keep the frame alive past the recursion.
            libc::c_int::from(unsafe { std::ptr::read_volatile(&frame[0]) })
        }
        extern "C" fn child(_: *mut libc::c_void) -> libc::c_int {
            // 64 pages deep on a 16-page stack.
            recurse(64 as *mut libc::c_void);
            // SAFETY: leave without running the parent's exit code.
            unsafe { libc::_exit(0) }
        }
        let stack = GuardedStack::new(16 * 4096).unwrap();
        // SAFETY: a CLONE_VM | CLONE_VFORK child on its own stack; we wait for it.
        let pid = unsafe {
            libc::clone(
                child,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        assert!(pid > 0, "{}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "status {status:#x}"
        );
    }
}
