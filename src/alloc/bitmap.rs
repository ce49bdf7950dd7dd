//! The free-block bitmaps of one size class.
//!
//! Each segment has a bitmap (1 = free) covering the blocks below its high-water mark; blocks
//! at or above the mark have never been handed out. Only the last segment is bumped, so every
//! earlier segment's mark is its full length. Segments with free blocks sit on a stack, so an
//! allocation finds a freed block in O(1): the top segment, a word scan from its hint, and
//! `trailing_zeros`. Free computes the segment from the block index: O(1).

use super::stats::ClassStats;

/// Why a free was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FreeError {
    NotAllocated,
    OutOfRange,
}

struct SegmentBits {
    free: Vec<u64>,
    high_water: u32,
    free_count: u32,
    /// No word before this one has a free bit.
    search_from_word: u32,
    on_free_stack: bool,
    /// Blocks at or above this index were never written since the segment was created in this
    /// session, so they are known to be zero and need no clearing when bumped.
    zero_from: u32,
}

/// Where an allocated block came from, for the statistics and for zero-filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Bump { known_zero: bool },
    Bitmap,
}

pub(crate) struct ClassBitmap {
    blocks_per_segment: u32,
    /// log2 of `blocks_per_segment` (a power of two): every free finds its segment with a
    /// shift, not a division (~25 cycles of latency on the free path).
    segment_shift: u32,
    segments: Vec<SegmentBits>,
    free_stack: Vec<u32>,
    counters: Counters,
    /// Segments from this one on are being emptied by relocation (`alloc::shrink`): an
    /// allocation takes a free block below it when there is one. u32::MAX: none.
    drain_from: u32,
    /// No segment below this one has a free block.
    front_hint: u32,
    /// Blocks of the last segment that exist: all of it, unless its file was cut inside it
    /// (`alloc::shrink`). Bumping stops here until the file is extended.
    last_limit: u32,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    allocs_from_bump: u64,
    allocs_from_bitmap: u64,
    frees_to_bitmap: u64,
}

impl ClassBitmap {
    pub(crate) fn new(blocks_per_segment: u32) -> ClassBitmap {
        assert!(blocks_per_segment.is_power_of_two() && blocks_per_segment >= 8);
        ClassBitmap {
            blocks_per_segment,
            segment_shift: blocks_per_segment.trailing_zeros(),
            segments: Vec::new(),
            free_stack: Vec::new(),
            counters: Counters::default(),
            drain_from: u32::MAX,
            front_hint: 0,
            last_limit: blocks_per_segment,
        }
    }

    pub(crate) fn segment_count(&self) -> u32 {
        self.segments.len() as u32
    }

    fn words(&self) -> usize {
        (self.blocks_per_segment as usize).div_ceil(64)
    }

    /// Adds an empty segment. `fresh` says its bytes are known to be zero (just created).
    pub(crate) fn add_segment(&mut self, fresh: bool) {
        assert_eq!(self.last_limit, self.blocks_per_segment, "a partial last segment is extended first");
        let zero_from = if fresh { 0 } else { self.blocks_per_segment };
        self.segments.push(SegmentBits {
            free: vec![0; self.words()],
            high_water: 0,
            free_count: 0,
            search_from_word: 0,
            on_free_stack: false,
            zero_from,
        });
    }

    /// A free block, or `None` when every segment is full and a new one must be added.
    pub(crate) fn allocate(&mut self) -> Option<(u32, Source)> {
        if self.free_stack.last().is_some_and(|&top| top >= self.drain_from) {
            if let Some(found) = self.allocate_front(u64::from(self.drain_from) * u64::from(self.blocks_per_segment)) {
                return Some((found, Source::Bitmap));
            }
        }
        if let Some(found) = self.allocate_freed() {
            self.counters.allocs_from_bitmap += 1;
            return Some((found, Source::Bitmap));
        }
        let bps = self.blocks_per_segment;
        let seg_index = self.segments.len().checked_sub(1)?;
        let seg = &mut self.segments[seg_index];
        if seg.high_water >= self.last_limit {
            return None;
        }
        let index = seg.high_water;
        seg.high_water += 1;
        self.counters.allocs_from_bump += 1;
        let known_zero = index >= seg.zero_from;
        Some((seg_index as u32 * bps + index, Source::Bump { known_zero }))
    }

    fn allocate_freed(&mut self) -> Option<u32> {
        let &seg_index = self.free_stack.last()?;
        Some(self.take_free_block(seg_index))
    }

    /// Takes the first free block of segment `seg_index` (which has one) and returns its
    /// number in the class; a segment left with none leaves the free stack.
    fn take_free_block(&mut self, seg_index: u32) -> u32 {
        let seg = &mut self.segments[seg_index as usize];
        let start = seg.search_from_word as usize;
        let offset = seg.free[start..].iter().position(|&w| w != 0).expect("a segment with free blocks has a free bit");
        let word = start + offset;
        let bit = seg.free[word].trailing_zeros();
        seg.free[word] &= !(1u64 << bit);
        seg.free_count -= 1;
        seg.search_from_word = word as u32;
        if seg.free_count == 0 {
            seg.on_free_stack = false;
            if self.free_stack.last() == Some(&seg_index) {
                self.free_stack.pop();
            } else {
                self.free_stack.retain(|&s| s != seg_index);
            }
        }
        seg_index * self.blocks_per_segment + word as u32 * 64 + bit
    }

    fn locate(&self, block: u32) -> Result<(usize, u32), FreeError> {
        let seg = (block >> self.segment_shift) as usize;
        let index = block & (self.blocks_per_segment - 1);
        match self.segments.get(seg) {
            Some(s) if index < s.high_water => Ok((seg, index)),
            _ => Err(FreeError::OutOfRange),
        }
    }

    pub(crate) fn free(&mut self, block: u32) -> Result<(), FreeError> {
        let (seg_index, index) = self.locate(block)?;
        let seg = &mut self.segments[seg_index];
        let (word, mask) = ((index / 64) as usize, 1u64 << (index % 64));
        if seg.free[word] & mask != 0 {
            return Err(FreeError::NotAllocated);
        }
        seg.free[word] |= mask;
        seg.free_count += 1;
        seg.search_from_word = seg.search_from_word.min(word as u32);
        self.front_hint = self.front_hint.min(seg_index as u32);
        if !seg.on_free_stack {
            seg.on_free_stack = true;
            self.free_stack.push(seg_index as u32);
        }
        self.counters.frees_to_bitmap += 1;
        Ok(())
    }

    pub(crate) fn is_allocated(&self, block: u32) -> bool {
        match self.locate(block) {
            Ok((seg, index)) => self.segments[seg].free[(index / 64) as usize] & (1u64 << (index % 64)) == 0,
            Err(_) => false,
        }
    }

    /// Rebuild at open: `used` are the blocks the object table references (each once; the
    /// caller checks for duplicates). Everything else below the marks becomes free.
    pub(crate) fn rebuild(&mut self, used: impl Iterator<Item = u32>) -> Result<(), u32> {
        let bps = self.blocks_per_segment;
        let n = self.segments.len();
        let mut used_bits: Vec<Vec<u64>> = vec![vec![0; self.words()]; n];
        let mut last_high_water = 0u32;
        for block in used {
            let (seg, index) = ((block / bps) as usize, block % bps);
            if seg >= n || (seg == n - 1 && index >= self.last_limit) {
                return Err(block);
            }
            used_bits[seg][(index / 64) as usize] |= 1u64 << (index % 64);
            if seg == n - 1 {
                last_high_water = last_high_water.max(index + 1);
            }
        }
        self.free_stack.clear();
        self.front_hint = 0;
        for (seg_index, (seg, used)) in self.segments.iter_mut().zip(used_bits).enumerate() {
            seg.high_water = if seg_index == n - 1 { last_high_water } else { bps };
            seg.free_count = 0;
            for (w, used_word) in used.iter().enumerate() {
                let below = below_mask(seg.high_water, w as u32);
                seg.free[w] = !used_word & below;
                seg.free_count += seg.free[w].count_ones();
            }
            seg.search_from_word = 0;
            seg.on_free_stack = seg.free_count > 0;
            if seg.on_free_stack {
                self.free_stack.push(seg_index as u32);
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self, class_bytes: u32) -> ClassStats {
        let (mut live, mut dead, mut active) = (0u64, 0u64, 0u64);
        for seg in &self.segments {
            let seg_live = u64::from(seg.high_water - seg.free_count);
            live += seg_live;
            dead += u64::from(seg.free_count);
            active += u64::from(seg_live > 0);
        }
        let c = self.counters;
        ClassStats {
            class_bytes: u64::from(class_bytes),
            live_bytes: live * u64::from(class_bytes),
            dead_bytes: dead * u64::from(class_bytes),
            total_segments: self.segments.len() as u64,
            active_segments: active,
            allocs_from_bump: c.allocs_from_bump,
            allocs_from_bitmap: c.allocs_from_bitmap,
            frees_to_bitmap: c.frees_to_bitmap,
            total_allocations: c.allocs_from_bump + c.allocs_from_bitmap,
            total_frees: c.frees_to_bitmap,
        }
    }

    /// Checks the counts against the bits and the free stack against the counts.
    pub(crate) fn verify(&self) -> Result<(), String> {
        for (i, seg) in self.segments.iter().enumerate() {
            let bits: u32 = seg.free.iter().map(|w| w.count_ones()).sum();
            if bits != seg.free_count {
                return Err(format!("segment {i}: free_count {} but {bits} free bits", seg.free_count));
            }
            let above: u32 = seg
                .free
                .iter()
                .enumerate()
                .map(|(w, word)| (word & !below_mask(seg.high_water, w as u32)).count_ones())
                .sum();
            if above != 0 {
                return Err(format!(
                    "segment {i}: {above} free bits at or above the high-water mark {}",
                    seg.high_water
                ));
            }
            if seg.on_free_stack != (seg.free_count > 0) || seg.on_free_stack != self.free_stack.contains(&(i as u32)) {
                return Err(format!("segment {i}: free stack membership disagrees with its free count"));
            }
            if i + 1 == self.segments.len() && seg.high_water > self.last_limit {
                return Err(format!("segment {i}: filled to {} past its end {}", seg.high_water, self.last_limit));
            }
            if i + 1 < self.segments.len() && seg.high_water != self.blocks_per_segment {
                return Err(format!("segment {i}: not the last segment but only filled to {}", seg.high_water));
            }
        }
        Ok(())
    }
}

/// Giving space back (see `alloc::shrink`): where live blocks are, allocation toward the
/// front of the file, and dropping a wholly free tail. Kept apart from the fast paths above.
impl ClassBitmap {
    /// Blocks allocated in segment `seg`.
    pub(crate) fn segment_live(&self, seg: u32) -> u32 {
        let s = &self.segments[seg as usize];
        s.high_water - s.free_count
    }

    /// Blocks allocated in the whole class.
    pub(crate) fn allocated(&self) -> u64 {
        (0..self.segment_count()).map(|s| u64::from(self.segment_live(s))).sum()
    }

    /// The lowest free block of the lowest segment that has one, if it lies below block
    /// `before`: relocation fills the front of the file so that its tail empties.
    pub(crate) fn allocate_front(&mut self, before: u64) -> Option<u32> {
        let end = (before.div_ceil(u64::from(self.blocks_per_segment)) as u32).min(self.segment_count());
        let found = (self.front_hint.min(end)..end).find(|&s| self.segments[s as usize].free_count > 0);
        self.front_hint = found.unwrap_or(end);
        let seg_index = found?;
        let seg = &self.segments[seg_index as usize];
        let word =
            seg.free[seg.search_from_word as usize..].iter().position(|&w| w != 0)? + seg.search_from_word as usize;
        let lowest = seg_index * self.blocks_per_segment + word as u32 * 64 + seg.free[word].trailing_zeros();
        if u64::from(lowest) >= before {
            return None;
        }
        self.counters.allocs_from_bitmap += 1;
        Some(self.take_free_block(seg_index))
    }

    /// Sets where relocation empties the class from (see `drain_from`).
    pub(crate) fn set_drain_from(&mut self, segment: u32) {
        self.drain_from = segment;
    }

    /// How many segments at the end hold no allocated block.
    pub(crate) fn free_tail_segments(&self) -> u32 {
        self.segments.iter().rev().take_while(|s| s.high_water == s.free_count).count() as u32
    }

    /// Removes the last `n` segments, which must hold no allocated block.
    pub(crate) fn drop_tail_segments(&mut self, n: u32) {
        assert!(n <= self.free_tail_segments(), "only free segments are dropped");
        if n == 0 {
            return;
        }
        let keep = self.segments.len() - n as usize;
        self.segments.truncate(keep);
        self.free_stack.retain(|&s| (s as usize) < keep);
        self.last_limit = self.blocks_per_segment;
    }

    /// Blocks of the last segment that exist (see `last_limit`).
    pub(crate) fn last_limit(&self) -> u32 {
        self.last_limit
    }

    /// Says how many blocks of the last segment exist: at open, for a file cut inside it,
    /// and `blocks_per_segment` once it is extended.
    pub(crate) fn set_last_limit(&mut self, limit: u32) {
        assert!(limit <= self.blocks_per_segment);
        if let Some(last) = self.segments.last() {
            assert!(last.high_water <= limit, "blocks handed out past the new end");
        }
        self.last_limit = limit;
    }

    /// One past the last allocated block of the last segment (0: none allocated).
    pub(crate) fn last_segment_in_use(&self) -> u32 {
        self.segments.last().map_or(0, |seg| seg.in_use_end())
    }

    /// One past the last allocated block of the class (0: none allocated). Looks at the
    /// segments from the end until one holds a block.
    pub(crate) fn in_use_end(&self) -> u64 {
        let bps = u64::from(self.blocks_per_segment);
        (0..self.segments.len())
            .rev()
            .find(|&i| self.segment_live(i as u32) > 0)
            .map_or(0, |i| i as u64 * bps + u64::from(self.segments[i].in_use_end()))
    }

    /// Ends the last segment at block `limit`, which no allocated block is at or past: its
    /// free blocks there are forgotten.
    pub(crate) fn cut_last_segment(&mut self, limit: u32) {
        assert!(limit >= self.last_segment_in_use(), "only free blocks are cut");
        let Some(seg_index) = self.segments.len().checked_sub(1) else { return };
        let seg = &mut self.segments[seg_index];
        if limit < seg.high_water {
            seg.high_water = limit;
            seg.free_count = 0;
            for (w, word) in seg.free.iter_mut().enumerate() {
                *word &= below_mask(limit, w as u32);
                seg.free_count += word.count_ones();
            }
            seg.search_from_word = seg.search_from_word.min((limit / 64).min(seg.free.len() as u32 - 1));
            if seg.free_count == 0 && seg.on_free_stack {
                seg.on_free_stack = false;
                self.free_stack.retain(|&s| s as usize != seg_index);
            }
        }
        self.last_limit = limit.min(self.last_limit);
    }
}

impl SegmentBits {
    /// One past its last allocated block (0: none).
    fn in_use_end(&self) -> u32 {
        (0..self.high_water)
            .rev()
            .find(|&i| self.free[(i / 64) as usize] & (1u64 << (i % 64)) == 0)
            .map_or(0, |i| i + 1)
    }
}

/// The bits of word `w` that stand for blocks below `high_water`.
fn below_mask(high_water: u32, w: u32) -> u64 {
    let first = w * 64;
    if high_water >= first + 64 {
        u64::MAX
    } else if high_water <= first {
        0
    } else {
        (1u64 << (high_water - first)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap_with_segment(bps: u32) -> ClassBitmap {
        let mut b = ClassBitmap::new(bps);
        b.add_segment(true);
        b
    }

    #[test]
    fn bumps_then_asks_for_a_segment() {
        let mut b = bitmap_with_segment(128);
        for i in 0..128 {
            assert_eq!(b.allocate(), Some((i, Source::Bump { known_zero: true })));
        }
        assert_eq!(b.allocate(), None);
        b.add_segment(true);
        assert_eq!(b.allocate().unwrap().0, 128);
        b.verify().unwrap();
    }

    #[test]
    fn a_freed_block_is_reused_first_and_in_place() {
        let mut b = bitmap_with_segment(64);
        for _ in 0..10 {
            b.allocate().unwrap();
        }
        b.free(3).unwrap();
        assert_eq!(b.allocate(), Some((3, Source::Bitmap)));
        assert_eq!(b.allocate(), Some((10, Source::Bump { known_zero: true })));
        let s = b.stats(64);
        assert_eq!((s.allocs_from_bump, s.allocs_from_bitmap, s.frees_to_bitmap), (11, 1, 1));
        b.verify().unwrap();
    }

    #[test]
    fn double_free_and_unknown_blocks_are_refused() {
        let mut b = bitmap_with_segment(64);
        b.allocate().unwrap();
        b.free(0).unwrap();
        assert_eq!(b.free(0), Err(FreeError::NotAllocated));
        assert_eq!(b.free(1), Err(FreeError::OutOfRange));
        assert_eq!(b.free(1000), Err(FreeError::OutOfRange));
    }

    #[test]
    fn rebuild_frees_every_hole_and_keeps_bumping_the_last_segment() {
        let mut b = ClassBitmap::new(64);
        b.add_segment(false);
        b.add_segment(false);
        b.rebuild([1u32, 5, 64 + 2].into_iter()).unwrap();
        let s = b.stats(100);
        assert_eq!(s.live_bytes, 300);
        // Segment 0: 62 holes; segment 1: blocks 0 and 1 below its mark of 3.
        assert_eq!(s.dead_bytes, 6400);
        assert!(b.is_allocated(5) && !b.is_allocated(4));
        let mut got: Vec<u32> = (0..64).map(|_| b.allocate().unwrap().0).collect();
        got.sort();
        assert!(!got.contains(&1) && !got.contains(&5) && !got.contains(&66));
        assert_eq!(b.allocate(), Some((67, Source::Bump { known_zero: false })));
        b.verify().unwrap();
    }

    #[test]
    fn rebuild_rejects_blocks_beyond_the_segments() {
        let mut b = bitmap_with_segment(64);
        assert_eq!(b.rebuild([64u32].into_iter()), Err(64));
    }

    /// Random operations below; Miri interprets some thousand times slower than native code.
    const RANDOM_OPS: usize = if cfg!(miri) { 600 } else { 20_000 };

    #[test]
    fn random_alloc_free_keeps_counts_consistent() {
        let mut b = bitmap_with_segment(256);
        let mut live = std::collections::BTreeSet::new();
        let mut rng = crate::test_rng::TestRng::new(0x9e3779b97f4a7c15);
        for _ in 0..RANDOM_OPS {
            let x = rng.next();
            if !x.is_multiple_of(3) || live.is_empty() {
                let block = match b.allocate() {
                    Some((blk, _)) => blk,
                    None => {
                        b.add_segment(true);
                        b.allocate().unwrap().0
                    }
                };
                assert!(live.insert(block), "block {block} handed out twice");
            } else {
                let victim = *live.iter().nth((x as usize / 3) % live.len()).unwrap();
                live.remove(&victim);
                b.free(victim).unwrap();
            }
        }
        b.verify().unwrap();
        let s = b.stats(1);
        assert_eq!(s.live_bytes, live.len() as u64);
        assert_eq!(s.total_allocations - s.total_frees, live.len() as u64);
    }
}
