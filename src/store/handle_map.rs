//! Maps keyed by node handle. std's default hasher (SipHash, keyed per map against inputs
//! chosen to collide) cost a publish four hashes of ~100 instructions each, more than the
//! rest of the call. Handles are not chosen by the host: pcore hands them out, densely from 1
//! (`ObjectTable::take_handle`), so a multiplicative hash spreads them well and leaves nothing
//! to flood.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from node handle to `V`.
pub(crate) type HandleMap<V> = HashMap<u64, V, BuildHasherDefault<HandleHasher>>;

/// Fibonacci hashing of one `u64`: the product's high bits (hashbrown's control byte) mix
/// every bit of the handle, and its low bits (the bucket) stay a bijection of the handle's.
#[derive(Default)]
pub(crate) struct HandleHasher(u64);

impl Hasher for HandleHasher {
    #[inline]
    fn write_u64(&mut self, handle: u64) {
        self.0 = (self.0 ^ handle).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Only `u64` keys are hashed here; any other input still hashes (bytes folded in as
    /// words), just not as fast.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_handles_fill_a_map_and_are_all_found() {
        let mut m = HandleMap::default();
        for h in 1..=100_000u64 {
            m.insert(h, h * 3);
        }
        assert_eq!(m.len(), 100_000);
        assert!((1..=100_000u64).all(|h| m.get(&h) == Some(&(h * 3))));
        assert_eq!(m.get(&0), None);
        assert_eq!(m.remove(&77), Some(231));
        assert_eq!(m.get(&77), None);
    }
}
