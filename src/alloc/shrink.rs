//! Giving space back: the queries and moves that relocation (`store::compact`) needs, and
//! cutting the free tail of a class file. Apart from `space.rs`'s fast paths on purpose.

use super::space::Space;
use super::Loc;
use crate::error::Result;

impl Space {
    pub(crate) fn segment_count(&self, class: u8) -> u32 {
        self.per_class[class as usize].bits.segment_count()
    }

    pub(crate) fn blocks_per_segment(&self, class: u8) -> u32 {
        self.per_class[class as usize].blocks_per_segment
    }

    /// Blocks allocated in a class (live versions, and freed ones not yet reusable).
    pub(crate) fn allocated_blocks(&self, class: u8) -> u64 {
        self.per_class[class as usize].bits.allocated()
    }

    /// The segment a block lies in.
    pub(crate) fn segment_of(&self, loc: Loc) -> u32 {
        loc.block / self.per_class[loc.class as usize].blocks_per_segment
    }

    /// Bytes of all class segments (files or memory).
    pub(crate) fn segment_bytes_total(&self) -> u64 {
        (0..self.per_class.len() as u8)
            .map(|c| u64::from(self.segment_count(c)) * self.classes().segment_bytes(c))
            .sum()
    }

    /// A free block of `class` in the lowest segment below `before` that has one, or `None`
    /// (the caller then leaves its node where it is). Never grows the file.
    pub(crate) fn allocate_front(&mut self, class: u8, before: u32) -> Option<Loc> {
        let block = self.per_class[class as usize].bits.allocate_front(before)?;
        Some(Loc { class, block })
    }

    /// Makes allocations of `class` prefer free blocks below `segment` (u32::MAX: no
    /// preference), so that what relocation empties is not filled again meanwhile.
    pub(crate) fn set_drain_from(&mut self, class: u8, segment: u32) {
        self.per_class[class as usize].bits.set_drain_from(segment);
    }

    /// Cuts every class file's wholly free tail, keeping `slack` free segments at the end of
    /// each, so a store that shrank and grows again does not cut and regrow at every turn.
    /// Returns the bytes given back. The caller must know no block in a free segment is needed
    /// by anyone outside the allocator: see `Store`'s rules in `compact.rs`.
    pub(crate) fn truncate_free_tails(&mut self, slack: u32) -> Result<u64> {
        let mut given = 0;
        for c in &mut self.per_class {
            let n = c.bits.free_tail_segments().saturating_sub(slack);
            if n == 0 {
                continue;
            }
            c.file.shrink(n)?;
            c.bits.drop_tail_segments(n);
            given += u64::from(n) * u64::from(c.blocks_per_segment) * u64::from(c.bytes);
        }
        Ok(given)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Backing, SizeClasses};
    use super::*;

    fn space() -> Space {
        let mut s = Space::open(SizeClasses::new(64, 4096).unwrap(), &Backing::Memory).unwrap();
        s.rebuild(&vec![Vec::new(); 7]).unwrap();
        s
    }

    #[test]
    fn front_allocation_takes_the_lowest_hole_and_never_grows() {
        let mut s = space();
        let bps = s.blocks_per_segment(6);
        let all: Vec<Loc> = (0..3 * bps).map(|_| s.allocate(6).unwrap()).collect();
        s.free(all[5]).unwrap();
        s.free(all[(2 * bps + 1) as usize]).unwrap();
        assert_eq!(s.allocate_front(6, 2), Some(all[5]));
        assert_eq!(s.allocate_front(6, 2), None, "the hole in segment 2 is not below it");
        assert_eq!(s.segment_count(6), 3);
        s.verify().unwrap();
    }

    #[test]
    fn only_wholly_free_tail_segments_are_cut_and_slack_stays() {
        let mut s = space();
        let bps = s.blocks_per_segment(6);
        let all: Vec<Loc> = (0..4 * bps).map(|_| s.allocate(6).unwrap()).collect();
        // Segment 1 empties but is not at the tail; segments 2 and 3 empty but for one block.
        for (i, &l) in all.iter().enumerate().skip(bps as usize) {
            if i as u32 != 3 * bps + 7 {
                s.free(l).unwrap();
            }
        }
        assert_eq!(s.truncate_free_tails(0).unwrap(), 0, "the tail segment still holds a block");
        s.free(all[(3 * bps + 7) as usize]).unwrap();
        assert_eq!(s.truncate_free_tails(1).unwrap(), 2 * 1024 * 1024, "two of three, one kept as slack");
        assert_eq!(s.segment_count(6), 2);
        s.verify().unwrap();
        // Allocation after a cut reuses the holes, then grows again.
        let again: Vec<Loc> = (0..2 * bps).map(|_| s.allocate(6).unwrap()).collect();
        assert!(again.iter().all(|l| s.is_allocated(*l)));
        assert_eq!(s.segment_count(6), 3);
        s.verify().unwrap();
    }
}
