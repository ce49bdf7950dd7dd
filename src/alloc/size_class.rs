//! Size classes: powers of two from a minimum to a maximum, fixed when a store is created.

use crate::error::{Error, Result};
use crate::limits::{CLASS_BYTES_MAX, CLASS_BYTES_MIN, CLASS_COUNT_MAX, SEGMENT_BLOCKS_MIN, SEGMENT_BYTES_MIN};

/// Which class a node moves to when a publish outgrows its block. Classes double, so under
/// either rule a node that outgrows its block at least doubles its capacity: a node growing
/// from 0 to n bytes moves at most log2(n / smallest class) + 1 times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrowthRule {
    /// The smallest class that holds the new length. A node never sits in more than twice its
    /// length (XTree's leaves of ~1.1 KB take 2 KiB, not 4 KiB).
    #[default]
    Fit,
    /// The smallest class of at least twice the new length, capped at the largest (the seed's
    /// rule): fewer moves for a node that keeps growing, up to four times its length on disk.
    Double,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeClasses {
    bytes: Vec<u32>,
}

impl SizeClasses {
    /// Doubling classes from `min_bytes` to `max_bytes`, both powers of two.
    pub fn new(min_bytes: u32, max_bytes: u32) -> Result<SizeClasses> {
        let valid = |b: u32| b.is_power_of_two() && (CLASS_BYTES_MIN..=CLASS_BYTES_MAX).contains(&b);
        if !valid(min_bytes) || !valid(max_bytes) || min_bytes > max_bytes {
            return Err(Error::InvalidArgument(format!(
                "size classes {min_bytes}..{max_bytes}: both must be powers of two in {CLASS_BYTES_MIN}..={CLASS_BYTES_MAX}, min <= max"
            )));
        }
        let bytes: Vec<u32> = (min_bytes.trailing_zeros()..=max_bytes.trailing_zeros()).map(|s| 1u32 << s).collect();
        debug_assert!(bytes.len() <= CLASS_COUNT_MAX);
        Ok(SizeClasses { bytes })
    }

    /// No class at all: the classes of a closed store's state, which nothing allocates from.
    pub(crate) fn none() -> SizeClasses {
        SizeClasses { bytes: Vec::new() }
    }

    pub fn count(&self) -> usize {
        self.bytes.len()
    }

    pub fn bytes(&self, class: u8) -> u32 {
        self.bytes[class as usize]
    }

    pub fn min_bytes(&self) -> u32 {
        self.bytes[0]
    }

    pub fn max_bytes(&self) -> u32 {
        *self.bytes.last().expect("at least one class")
    }

    /// The smallest class holding `len` bytes, or `TooLarge`. Classes double from the
    /// smallest, so it is the power of two that holds `len`, counted from there: no scan (every
    /// allocate asks).
    #[inline]
    pub fn class_for(&self, len: u64) -> Result<u8> {
        match (self.bytes.first(), self.bytes.last()) {
            (Some(&min), Some(&max)) if len <= u64::from(max) => {
                let holds = len.max(u64::from(min)).next_power_of_two();
                Ok((holds.trailing_zeros() - min.trailing_zeros()) as u8)
            }
            _ => Err(self.too_large(len)),
        }
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, len: u64) -> Error {
        let max = self.bytes.last().copied().unwrap_or(0);
        Error::TooLarge(format!("{len} bytes exceed the largest size class ({max} bytes)"))
    }

    /// Where a node of `len` bytes moves when it outgrows its block (see [`GrowthRule`]).
    pub fn growth_class(&self, len: u64, rule: GrowthRule) -> Result<u8> {
        let fit = self.class_for(len)?;
        Ok(match rule {
            GrowthRule::Fit => fit,
            GrowthRule::Double => self.class_for(len.saturating_mul(2)).unwrap_or((self.count() - 1) as u8),
        })
    }

    /// Bytes per segment of a class: at least 1 MiB, and at least a few blocks.
    pub fn segment_bytes(&self, class: u8) -> u64 {
        SEGMENT_BYTES_MIN.max(SEGMENT_BLOCKS_MIN * u64::from(self.bytes(class)))
    }

    pub fn blocks_per_segment(&self, class: u8) -> u32 {
        (self.segment_bytes(class) / u64::from(self.bytes(class))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_are_thirteen_doublings() {
        let c = SizeClasses::new(64, 256 << 10).unwrap();
        assert_eq!(c.count(), 13);
        assert_eq!(c.bytes(0), 64);
        assert_eq!(c.bytes(12), 256 << 10);
    }

    #[test]
    fn class_for_picks_the_smallest_that_fits() {
        let c = SizeClasses::new(64, 4096).unwrap();
        assert_eq!(c.class_for(0).unwrap(), 0);
        assert_eq!(c.class_for(64).unwrap(), 0);
        assert_eq!(c.class_for(65).unwrap(), 1);
        assert_eq!(c.class_for(4096).unwrap(), 6);
        assert!(matches!(c.class_for(4097), Err(Error::TooLarge(_))));
    }

    /// The computed class is the first of the list that holds the length, for every length.
    #[test]
    fn class_for_agrees_with_a_scan_of_the_classes() {
        for (min, max) in [(64, 4096), (256, 256), (128, 256 << 10)] {
            let c = SizeClasses::new(min, max).unwrap();
            let lens = (0..=2 * u64::from(max)).step_by(1 + max as usize / 8192).chain([u64::MAX, u64::from(max) + 1]);
            for len in lens {
                let scanned = (0..c.count() as u8).find(|&k| u64::from(c.bytes(k)) >= len);
                match (c.class_for(len), scanned) {
                    (Ok(k), Some(want)) => assert_eq!(k, want, "{len} bytes in classes {min}..{max}"),
                    (Err(Error::TooLarge(_)), None) => {}
                    (got, want) => panic!("{len} bytes in classes {min}..{max}: {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn double_growth_doubles_then_caps() {
        let c = SizeClasses::new(64, 4096).unwrap();
        assert_eq!(c.bytes(c.growth_class(71, GrowthRule::Double).unwrap()), 256);
        assert_eq!(c.bytes(c.growth_class(3000, GrowthRule::Double).unwrap()), 4096);
        assert!(c.growth_class(4097, GrowthRule::Double).is_err());
    }

    #[test]
    fn fit_growth_takes_the_smallest_class_that_holds_the_length() {
        let c = SizeClasses::new(64, 4096).unwrap();
        assert_eq!(c.bytes(c.growth_class(71, GrowthRule::Fit).unwrap()), 128);
        // XTree's grown leaf: 1,107 bytes go to 2 KiB, not 4 KiB.
        assert_eq!(c.bytes(c.growth_class(1107, GrowthRule::Fit).unwrap()), 2048);
        assert_eq!(c.bytes(c.growth_class(4096, GrowthRule::Fit).unwrap()), 4096);
        assert!(c.growth_class(4097, GrowthRule::Fit).is_err());
        assert_eq!(GrowthRule::default(), GrowthRule::Fit);
    }

    #[test]
    fn rejects_bad_bounds() {
        assert!(SizeClasses::new(100, 4096).is_err());
        assert!(SizeClasses::new(32, 4096).is_err());
        assert!(SizeClasses::new(4096, 64).is_err());
        assert!(SizeClasses::new(64, 16 << 20).is_err());
    }

    #[test]
    fn segments_hold_at_least_eight_blocks() {
        let c = SizeClasses::new(64, 256 << 10).unwrap();
        assert_eq!(c.blocks_per_segment(0), 16384);
        assert_eq!(c.blocks_per_segment(12), 8);
    }
}
