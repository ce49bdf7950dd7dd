//! A hint to the CPU: start loading a cache line that a search is about to read.

/// Asks the CPU to start loading the cache line holding `bytes[at]` (nothing when `at` is out
/// of range). It changes no memory and never faults; a binary search over a page that is not
/// in the cache uses it to overlap the misses of its next probes with the current one.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bytes.get(at) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch only hints the cache; it reads nothing into the program, writes
        // nothing and cannot fault (and the address is a live byte of `bytes` besides).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}
