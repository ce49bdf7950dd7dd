//! A hint to the CPU: start loading a cache line that a search is about to read.

/// Asks the CPU to start loading the cache line holding `items[at]` (nothing when `at` is out
/// of range). It changes no memory and never faults; a binary search over a page that is not
/// in the cache uses it to overlap the misses of its next probes with the current one, and a
/// checkpoint the misses of the table entries it writes next.
#[inline(always)]
pub(crate) fn prefetch<T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = items.get(at) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch only hints the cache; it reads nothing into the program, writes
        // nothing and cannot fault (and the address is a live item of `items` besides).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}
