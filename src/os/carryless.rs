//! Multiplication modulo CRC-32C's polynomial with the CPU's carry-less multiply and its
//! CRC32 instruction (x86-64 with PCLMULQDQ and SSE4.2), for `store::crc_update`. Elsewhere
//! `multiply` answers `None` and the caller computes the CRC whole.

/// `a * b * x^33` modulo the polynomial, both bit-reversed as a CRC register holds them, or
/// `None` when this CPU has no carry-less multiply. The caller folds `x^-33` into `b`.
#[inline]
pub(crate) fn multiply(a: u32, b: u32) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_instructions() {
            // SAFETY: the CPU has PCLMULQDQ and SSE4.2, checked just above.
            return Some(unsafe { multiply_x86(a, b) });
        }
    }
    let _ = (a, b);
    None
}

/// The raw CRC32C (the register started at 0, no final inversion) of `a ^ b`, two slices of
/// one length, by the CPU's CRC32 instruction, or `None` as `multiply`.
#[inline]
pub(crate) fn crc_of_difference(a: &[u8], b: &[u8]) -> Option<u32> {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_instructions() {
            // SAFETY: the CPU has SSE4.2, checked just above.
            return Some(unsafe { crc_of_difference_x86(a, b) });
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc_of_difference_x86(a: &[u8], b: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let mut state = 0u64;
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_words.remainder(), b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        state = _mm_crc32_u64(state, word(x) ^ word(y));
    }
    let mut state = state as u32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        state = _mm_crc32_u8(state, x ^ y);
    }
    state
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_instructions() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not looked at yet, 1: absent, 2: present.
    static FOUND: AtomicU8 = AtomicU8::new(0);
    match FOUND.load(Ordering::Relaxed) {
        0 => {
            let present =
                std::arch::is_x86_feature_detected!("pclmulqdq") && std::arch::is_x86_feature_detected!("sse4.2");
            FOUND.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
        found => found == 2,
    }
}

/// The 64-bit carry-less product of the two registers (bit k stands for x^(62-k), so as a
/// 64-bit register it is the product times x), reduced by the CRC32 instruction, which
/// multiplies by x^32 on the way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,sse4.2")]
unsafe fn multiply_x86(a: u32, b: u32) -> u32 {
    use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi128_si64, _mm_cvtsi32_si128};
    let product = _mm_clmulepi64_si128::<0>(_mm_cvtsi32_si128(a as i32), _mm_cvtsi32_si128(b as i32));
    _mm_crc32_u64(0, _mm_cvtsi128_si64(product) as u64) as u32
}
