//! What the server process allocates: every heap allocation counted.

/// Counts every heap allocation of the process: Rust's, GStreamer's and
/// GLib's alike. The executable's own `malloc` family comes first in symbol
/// resolution, so every library loaded calls it; it counts and hands the
/// work to glibc's entry points. (`free` stays glibc's.) Two relaxed atomic
/// additions per allocation: a few nanoseconds against the ~20 µs an echoed
/// frame costs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod counting {
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    static CALLS: AtomicU64 = AtomicU64::new(0);
    static BYTES: AtomicU64 = AtomicU64::new(0);

    /// Allocations and bytes allocated so far (a `realloc` counts as an
    /// allocation of its new size).
    pub fn allocated() -> (u64, u64) {
        (CALLS.load(Relaxed), BYTES.load(Relaxed))
    }

    fn count(bytes: usize) {
        CALLS.fetch_add(1, Relaxed);
        BYTES.fetch_add(bytes as u64, Relaxed);
    }

    unsafe extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
        fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as malloc.
        unsafe { __libc_malloc(size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
        count(n.saturating_mul(size));
        // SAFETY: the same contract as calloc.
        unsafe { __libc_calloc(n, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as realloc.
        unsafe { __libc_realloc(ptr, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as memalign.
        unsafe { __libc_memalign(align, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: glibc's aligned_alloc is its memalign.
        unsafe { __libc_memalign(align, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn posix_memalign(
        out: *mut *mut c_void,
        align: usize,
        size: usize,
    ) -> c_int {
        const EINVAL: c_int = 22;
        const ENOMEM: c_int = 12;
        if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
            return EINVAL;
        }
        count(size);
        // SAFETY: align is valid for memalign; `out` is the caller's to fill.
        unsafe {
            let p = __libc_memalign(align, size);
            if p.is_null() {
                return ENOMEM;
            }
            *out = p;
        }
        0
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod counting {
    /// Not counted off glibc.
    pub fn allocated() -> (u64, u64) {
        (0, 0)
    }
}

pub use counting::allocated;
