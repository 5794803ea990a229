//! How the process's heap treats the large, short-lived activation buffers of a forward pass
//! (glibc on Linux; elsewhere these are no-ops).
//!
//! A `run_with_cache` over every hook point keeps each activation of the pass alive (about
//! 1.8 GB for SmolLM2 at 8 × 128 tokens). glibc's default policy hands such a heap back to the
//! kernel as soon as it is freed (`M_TRIM_THRESHOLD`, tens of MB by default), so the next pass
//! page-faults the same amount back in, and the kernel zeroes every page: that was most of
//! `run_with_cache`'s overhead over a plain forward (`BENCHMARKS.md`). PyTorch's caching
//! allocators keep freed blocks for reuse for the same reason.
//!
//! [`retain_freed_memory`] keeps freed heap memory in the process for the next pass (the
//! logits too, 200 MB at 8 × 128), and [`release_memory`] returns it on demand.

use std::sync::Once;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    extern "C" {
        pub fn malloc_trim(pad: usize) -> i32;
        pub fn mallopt(param: i32, value: i32) -> i32;
    }
    /// `M_TRIM_THRESHOLD` of glibc's `<malloc.h>`.
    pub const M_TRIM_THRESHOLD: i32 = -1;
    /// `M_MMAP_MAX` of glibc's `<malloc.h>`.
    pub const M_MMAP_MAX: i32 = -4;
}

/// Give the heap's free pages back to the operating system now (glibc's `malloc_trim(0)`; a
/// no-op elsewhere).
///
/// Once a model is built, glibc keeps the memory a pass frees for the next pass instead of
/// returning it (so that a `run_with_cache` does not page-fault its activations in afresh each
/// time): the process's resident size stays at its largest pass. Call this after dropping a
/// large [`ActivationCache`](crate::ActivationCache) when the process should shrink again.
/// saescope calls it after loading a model.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        glibc::malloc_trim(0);
    }
}

/// From now on, keep freed heap memory in the process for reuse instead of handing it back to
/// the kernel after each pass (glibc: no automatic trimming, and large blocks such as the
/// logits come from the heap too rather than from fresh `mmap`s, which are unmapped again on
/// free). Called once when a model is built; idempotent.
///
/// The resident size then stays at the largest pass's footprint until [`release_memory`].
pub(crate) fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes the allocator's tuning parameters; glibc serialises it
        // with the allocator's own locks, and both values are documented ones (mallopt(3):
        // -1 disables trimming, 0 disables mmap for large requests; a thread arena that cannot
        // grow its heap still falls back to mmap).
        unsafe {
            glibc::mallopt(glibc::M_TRIM_THRESHOLD, -1);
            glibc::mallopt(glibc::M_MMAP_MAX, 0);
        }
    });
}
