//! The one pseudo-random generator of the tests, the fuzz-style property tests and the `pcore`
//! program's workloads: xorshift64 (Marsaglia 2003), so a failing seed reproduces on any
//! machine and no test depends on a crate's changing sequence. Not for anything secret.

/// xorshift64: a 64-bit state that is never zero, stepped by three shifts.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

/// Stands in for a zero seed, which would stay zero forever.
const ZERO_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

impl TestRng {
    /// A generator whose state starts at `seed` (zero is replaced: xorshift never leaves it).
    pub fn new(seed: u64) -> TestRng {
        TestRng(if seed == 0 { ZERO_SEED } else { seed })
    }

    /// A generator from a small seed (1, 2, 3...), its bits spread first so neighbouring
    /// seeds give unrelated sequences.
    pub fn from_seed(seed: u64) -> TestRng {
        TestRng::new(seed.wrapping_mul(ZERO_SEED) | 1)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0); the modulo's slight bias does not matter here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Puts `items` in a random order (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TestRng;

    #[test]
    fn a_seed_gives_the_same_sequence_and_zero_is_not_stuck() {
        let (mut a, mut b) = (TestRng::new(7), TestRng::new(7));
        assert!((0..100).all(|_| a.next() == b.next()));
        let mut z = TestRng::new(0);
        assert_ne!(z.next(), 0);
        let mut v: Vec<u32> = (0..50).collect();
        TestRng::from_seed(1).shuffle(&mut v);
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
