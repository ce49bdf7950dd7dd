//! A changed node's CRC32C from its committed CRC and the byte ranges its edit script wrote,
//! instead of from all its bytes. A statement-sized commit changes a few hundred bytes of
//! each 4 KiB page it touches; checksumming every touched page whole was 11 % of such a
//! commit run's time (docs/LOG.md, "Checksums from what changed").
//!
//! CRC32C is linear over GF(2). For two messages of one length, `crc(a) ^ crc(b)` is the raw
//! CRC of `a ^ b` (the register started at 0, no final inversion): the initial value and the
//! final inversion contribute the same to both and cancel. Where the new version equals its
//! base, `a ^ b` is zero, and running the raw register over `n` zero bytes multiplies it by
//! `x^(8n)` modulo the polynomial. So, over the ranges `r` that changed,
//!
//! ```text
//! crc(new) = crc(base) ^ XOR over r of (raw(base[r]) ^ raw(new[r])) * x^(8 (len - r.end))
//! ```
//!
//! which costs two CRCs of the changed bytes and two multiplications a range. The base's CRC
//! is the one its commit recorded, not one computed now: a base damaged in memory gives a new
//! CRC its bytes do not match, so the damage is found (a full CRC would have sealed it).

use std::ops::Range;

/// CRC-32C's polynomial (Castagnoli), bit-reversed as the register holds it.
const POLY: u32 = 0x82F6_3B78;
/// The polynomial 1 in that representation (bit 31 is x^0, bit 0 is x^31).
const ONE: u32 = 1 << 31;

/// `a * b` modulo the polynomial.
const fn mul(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
            if a & (bit - 1) == 0 {
                break; // no higher power of x left in `a`
            }
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 }; // b * x
        bit >>= 1;
    }
    product
}

/// `x^(8 i)` for i in 0..256, and each entry times `x^(8 * 256)` after the last.
const fn byte_powers(first: u32, step: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    t[0] = first;
    let mut i = 1;
    while i < 256 {
        t[i] = mul(t[i - 1], step);
        i += 1;
    }
    t
}

/// `x^8`: one zero byte.
const X8: u32 = ONE >> 8;
/// `x^(8 i)`, i < 256.
const LOW: [u32; 256] = byte_powers(ONE, X8);
/// `x^(8 * 256 i)`, i < 256.
const HIGH: [u32; 256] = byte_powers(ONE, mul(LOW[255], X8));
/// `x^(8 * 65536)`: what `LOW` and `HIGH` together cannot reach in one step.
const X8_64K: u32 = mul(HIGH[255], mul(LOW[255], X8));

/// `x^-1`: the polynomial is `x * q + 1`, so `x * q` is 1 modulo it, and `q` (its bits above
/// x^0, one power down, with x^31 for its x^32) is the inverse of `x`.
const X_INVERSE: u32 = ((POLY & !ONE) << 1) | 1;

const fn power(base: u32, mut n: u32) -> u32 {
    let mut p = ONE;
    while n > 0 {
        p = mul(p, base);
        n -= 1;
    }
    p
}

/// The tables with `x^-33` folded in, for the CPU's multiply, which adds `x^33`
/// (`os::carryless_multiply`).
const fn unscaled(t: [u32; 256]) -> [u32; 256] {
    let inverse = power(X_INVERSE, 33);
    let mut out = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = mul(t[i], inverse);
        i += 1;
    }
    out
}

const LOW_CPU: [u32; 256] = unscaled(LOW);
const HIGH_CPU: [u32; 256] = unscaled(HIGH);
const X8_64K_CPU: u32 = mul(X8_64K, power(X_INVERSE, 33));

/// The raw register `state` run over `n` zero bytes, by the CPU's carry-less multiply, or
/// `None` when it has none.
#[inline]
fn shift_by_cpu(mut state: u32, mut n: usize) -> Option<u32> {
    use crate::os::carryless_multiply as times;
    while n >= 1 << 16 {
        state = times(state, X8_64K_CPU)?;
        n -= 1 << 16;
    }
    times(times(state, LOW_CPU[n & 0xFF])?, HIGH_CPU[n >> 8])
}

/// `shift_by_cpu` in software: ~30 times slower, for the tests.
#[cfg(test)]
fn shift_by_software(mut state: u32, mut n: usize) -> u32 {
    while n >= 1 << 16 {
        state = mul(state, X8_64K);
        n -= 1 << 16;
    }
    mul(mul(state, LOW[n & 0xFF]), HIGH[n >> 8])
}

/// The CRC32C of `new`, from `base_crc`, the CRC of `base` (as long as `new`), given that
/// the two differ only within `changed` (ranges in order, not overlapping). Computed whole
/// on a CPU without a carry-less multiply.
pub(crate) fn updated(base_crc: u32, base: &[u8], new: &[u8], changed: impl Iterator<Item = Range<usize>>) -> u32 {
    debug_assert_eq!(base.len(), new.len());
    let mut c = base_crc;
    for r in changed {
        let after = new.len() - r.end;
        // `raw(base[r]) ^ raw(new[r])`, which is `raw(base[r] ^ new[r])`, in one pass.
        let d = crate::os::crc_of_difference(&base[r.clone()], &new[r]).and_then(|d| shift_by_cpu(d, after));
        match d {
            Some(d) => c ^= d,
            None => return crc32c::crc32c(new),
        }
    }
    c
}

/// Ranges written, merged as they come, at most `CHANGED_MAX`: past that the two closest
/// become one (the bytes between them count as changed, which costs only their CRC).
#[derive(Clone, Copy, Default)]
pub(crate) struct Changed {
    /// One more than kept, for the moment a new range comes in.
    ranges: [(u32, u32); CHANGED_MAX + 1],
    count: usize,
}

/// Enough for a B+ tree page's edits (header, slots, cells) with room to spare.
const CHANGED_MAX: usize = 6;

impl Changed {
    /// Counts `start..end` as changed.
    #[inline]
    pub fn add(&mut self, start: usize, end: usize) {
        let (s, e) = (start as u32, end as u32);
        // Half a leaf insert's edits fall in a range already counted: the new slot, the header.
        if s >= e || self.ranges[..self.count].iter().any(|&(a, b)| a <= s && e <= b) {
            return;
        }
        self.add_new(s, e);
    }

    /// `add` of a range not inside one already counted.
    #[inline(never)]
    fn add_new(&mut self, s: u32, e: u32) {
        let (r, n) = (&mut self.ranges, self.count);
        // The ranges that overlap or touch `s..e` are `first..past`.
        let mut first = 0;
        while first < n && r[first].1 < s {
            first += 1;
        }
        let mut past = first;
        while past < n && r[past].0 <= e {
            past += 1;
        }
        if past > first {
            r[first] = (s.min(r[first].0), e.max(r[past - 1].1));
            let gone = past - first - 1;
            for i in first + 1..n - gone {
                r[i] = r[i + gone];
            }
            self.count = n - gone;
            return;
        }
        for i in (first..n).rev() {
            r[i + 1] = r[i];
        }
        r[first] = (s, e);
        if n < CHANGED_MAX {
            self.count = n + 1;
            return;
        }
        let i = (0..n).min_by_key(|&i| r[i + 1].0 - r[i].1).expect("two ranges at least");
        r[i].1 = r[i + 1].1;
        for j in i + 1..n {
            r[j] = r[j + 1];
        }
        self.count = n;
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.ranges[..self.count].iter().map(|&(s, e)| s as usize..e as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    #[test]
    fn a_shift_is_the_raw_register_run_over_zeros() {
        let mut rng = TestRng::new(7);
        assert_eq!(mul(X_INVERSE, ONE >> 1), ONE, "x^-1 times x");
        for n in [0usize, 1, 7, 255, 256, 257, 4095, 65535, 65536, 65537, 200_000] {
            let state = rng.next() as u32;
            let zeros = vec![0u8; n];
            let by_bytes = !crc32c::crc32c_append(!state, &zeros);
            assert_eq!(shift_by_software(state, n), by_bytes, "{n} zero bytes");
            if let Some(by_cpu) = shift_by_cpu(state, n) {
                assert_eq!(by_cpu, by_bytes, "{n} zero bytes, by the CPU");
            }
        }
    }

    #[test]
    fn the_crc_from_the_changed_ranges_is_the_crc_of_the_new_bytes() {
        let mut rng = TestRng::new(11);
        for round in 0..300 {
            let len = 1 + (rng.next() % 9000) as usize;
            let base: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut new = base.clone();
            let mut changed = Changed::default();
            for _ in 0..rng.next() % 12 {
                let at = (rng.next() as usize) % len;
                let end = (at + (rng.next() as usize) % 300).min(len);
                for b in &mut new[at..end] {
                    *b = rng.next() as u8;
                }
                changed.add(at, end);
            }
            let ranges: Vec<_> = changed.ranges().collect();
            assert!(ranges.len() <= CHANGED_MAX, "round {round}");
            assert!(ranges.windows(2).all(|w| w[0].end < w[1].start), "round {round}: {ranges:?}");
            let crc = crc32c::crc32c(&new);
            assert_eq!(updated(crc32c::crc32c(&base), &base, &new, changed.ranges()), crc, "round {round}");
        }
    }

    #[test]
    fn a_damaged_base_gives_a_crc_the_new_bytes_do_not_match() {
        let base = vec![5u8; 4096];
        let base_crc = crc32c::crc32c(&base);
        let mut damaged = base.clone();
        damaged[100] ^= 1;
        let mut new = damaged.clone();
        new[2000..2010].fill(9);
        let mut changed = Changed::default();
        changed.add(2000, 2010);
        assert_ne!(updated(base_crc, &damaged, &new, changed.ranges()), crc32c::crc32c(&new));
    }
}
