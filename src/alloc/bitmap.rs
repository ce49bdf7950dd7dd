//! The free-block bitmaps of one size class.
//!
//! Each segment has a bitmap (1 = free) covering the blocks below its high-water mark; blocks
//! at or above the mark have never been handed out. Only the last segment is bumped, so every
//! earlier segment's mark is its full length. Segments with free blocks sit on a stack, so an
//! allocation finds a freed block in O(1): the top segment, a word scan from its hint, and
//! `trailing_zeros`. Free computes the segment from the block index: O(1).
//!
//! Placement: an allocation fills one segment's free blocks, in address order, before it moves
//! to another, so that the blocks a run of allocations writes share pages and a checkpoint
//! flushes few of them. For small blocks (many to a page) a class can also pass over scattered
//! holes: a segment is filled only once an eighth of it is free, and until then new blocks come
//! from the end of the file (see [`ClassBitmap::with_dense_placement`]).

use super::stats::ClassStats;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// On `ClassBitmap::dense` (a segment is listed once however many blocks it frees).
    on_dense: bool,
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
    /// The segment allocations take free blocks from until it has none (u32::MAX: none).
    fill: u32,
    /// Segments that reached `dense_at` free blocks since they were last chosen to fill, the
    /// lowest first: filling the front of the file lets its tail empty (see `alloc::shrink`).
    dense: BinaryHeap<Reverse<u32>>,
    /// Free blocks that make a segment worth filling while scattered holes are passed over;
    /// 0: every free block is reused before the file grows.
    dense_at: u32,
    /// Free blocks in all segments (the sum of their free counts).
    free_blocks: u64,
    /// Blocks of the last segment that exist: all of it, unless its file was cut inside it
    /// (`alloc::shrink`). Bumping stops here until the file is extended.
    last_limit: u32,
}

/// Below this many segments a class reuses every hole before it grows: a small file's pages
/// are few anyway, and a store of a few nodes keeps the address of a block just freed.
const SPARSE_REUSE_BELOW_SEGMENTS: usize = 16;

/// Holes are reused however scattered once this share of a class's blocks is free (1/10:
/// the hosts' bound on dead space), so passing over them never costs more disk than that.
const DEAD_SHARE_DENOMINATOR: u64 = 10;

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
            fill: u32::MAX,
            dense: BinaryHeap::new(),
            dense_at: 0,
            free_blocks: 0,
            last_limit: blocks_per_segment,
        }
    }

    /// Turns on dense placement: scattered holes are passed over (new blocks come from the end
    /// of the file) until a segment has an eighth of its blocks free, and that segment is then
    /// filled. With many blocks to a page, reusing holes one by one dirties a page per block,
    /// and after random rewrites of a large store every checkpoint flushed most of the file;
    /// filling a segment an eighth free writes several blocks per page, in address order.
    /// Small classes (under `SPARSE_REUSE_BELOW_SEGMENTS` segments) and a class whose dead
    /// share reaches 1/`DEAD_SHARE_DENOMINATOR` still reuse every hole.
    pub(crate) fn with_dense_placement(mut self) -> ClassBitmap {
        self.dense_at = self.blocks_per_segment / 8;
        self
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
            on_dense: false,
            zero_from,
        });
    }

    /// A free block, or `None` when every segment is full and a new one must be added.
    /// Inlined into `Space::allocate_over`: every allocate comes here.
    #[inline]
    pub(crate) fn allocate(&mut self) -> Option<(u32, Source)> {
        if self.drain_from != u32::MAX && self.free_blocks > 0 {
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

    #[inline]
    fn allocate_freed(&mut self) -> Option<u32> {
        if self.segments.get(self.fill as usize).is_none_or(|s| s.free_count == 0) {
            self.fill = self.next_fill()?;
        }
        Some(self.take_free_block(self.fill))
    }

    /// The next segment to fill: the lowest that became dense, else (when holes are not passed over)
    /// the segment that last gained a free block.
    fn next_fill(&mut self) -> Option<u32> {
        while let Some(Reverse(seg_index)) = self.dense.pop() {
            let seg = &mut self.segments[seg_index as usize];
            seg.on_dense = false;
            if seg.free_count > 0 {
                return Some(seg_index);
            }
        }
        if self.reuses_every_hole() {
            return self.free_stack.last().copied();
        }
        None
    }

    fn reuses_every_hole(&self) -> bool {
        let blocks = self.segments.len() as u64 * u64::from(self.blocks_per_segment);
        self.dense_at == 0
            || self.segments.len() < SPARSE_REUSE_BELOW_SEGMENTS
            || self.free_blocks * DEAD_SHARE_DENOMINATOR >= blocks
    }

    /// A free block wherever one is, dense or not: for a class that may not grow any more.
    pub(crate) fn allocate_any_hole(&mut self) -> Option<u32> {
        let &seg_index = self.free_stack.last()?;
        self.fill = seg_index;
        self.counters.allocs_from_bitmap += 1;
        Some(self.take_free_block(seg_index))
    }

    /// Takes the first free block of segment `seg_index` (which has one) and returns its
    /// number in the class; a segment left with none leaves the free stack.
    #[inline]
    fn take_free_block(&mut self, seg_index: u32) -> u32 {
        let seg = &mut self.segments[seg_index as usize];
        let start = seg.search_from_word as usize;
        let offset = seg.free[start..].iter().position(|&w| w != 0).expect("a segment with free blocks has a free bit");
        let word = start + offset;
        let bit = seg.free[word].trailing_zeros();
        seg.free[word] &= !(1u64 << bit);
        seg.free_count -= 1;
        self.free_blocks -= 1;
        seg.search_from_word = word as u32;
        if seg.free_count == 0 {
            seg.on_free_stack = false;
            if self.free_stack.last() == Some(&seg_index) {
                self.free_stack.pop();
            } else {
                self.leave_free_stack(seg_index);
            }
        }
        seg_index * self.blocks_per_segment + word as u32 * 64 + bit
    }

    #[cold]
    fn leave_free_stack(&mut self, seg_index: u32) {
        self.free_stack.retain(|&s| s != seg_index);
    }

    #[inline]
    fn locate(&self, block: u32) -> Result<(usize, u32), FreeError> {
        let seg = (block >> self.segment_shift) as usize;
        let index = block & (self.blocks_per_segment - 1);
        match self.segments.get(seg) {
            Some(s) if index < s.high_water => Ok((seg, index)),
            _ => Err(FreeError::OutOfRange),
        }
    }

    /// Inlined into `Space::free`: every free of a block comes here.
    #[inline(always)]
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
        self.free_blocks += 1;
        self.front_hint = self.front_hint.min(seg_index as u32);
        if seg.free_count == self.dense_at && !seg.on_dense && seg_index as u32 != self.fill {
            seg.on_dense = true;
            became_dense(&mut self.dense, seg_index as u32);
        }
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
        self.dense.clear();
        self.front_hint = 0;
        self.fill = u32::MAX;
        self.free_blocks = 0;
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
            self.free_blocks += u64::from(seg.free_count);
            seg.on_dense = self.dense_at != 0 && seg.free_count >= self.dense_at;
            if seg.on_dense {
                self.dense.push(Reverse(seg_index as u32));
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
        let free: u64 = self.segments.iter().map(|s| u64::from(s.free_count)).sum();
        if free != self.free_blocks {
            return Err(format!("{} free blocks counted but {free} in the segments", self.free_blocks));
        }
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

/// Lists a segment that reached `dense_at` free blocks (rare: once per segment filled).
#[cold]
fn became_dense(dense: &mut BinaryHeap<Reverse<u32>>, seg_index: u32) {
    dense.push(Reverse(seg_index));
}

/// Giving space back (see `alloc::shrink`): where live blocks are, allocation toward the
/// front of the file, and dropping a wholly free tail. Kept apart from the fast paths above.
impl ClassBitmap {
    /// Calls `f(first block, count)` for every run of free blocks, in address order; a run
    /// never spans two segments.
    pub(crate) fn free_runs(&self, mut f: impl FnMut(u32, u32)) {
        for (index, seg) in self.segments.iter().enumerate() {
            let base = index as u32 * self.blocks_per_segment;
            let mut run: Option<u32> = None;
            let mut block = 0;
            while block < seg.high_water {
                let word = seg.free[(block / 64) as usize];
                // A whole word that neither starts nor ends a run is passed over at once.
                let whole = block % 64 == 0 && block + 64 <= seg.high_water;
                if whole && ((word == 0 && run.is_none()) || (word == u64::MAX && run.is_some())) {
                    block += 64;
                    continue;
                }
                match (word & (1u64 << (block % 64)) != 0, run) {
                    (true, None) => run = Some(block),
                    (false, Some(start)) => {
                        f(base + start, block - start);
                        run = None;
                    }
                    _ => {}
                }
                block += 1;
            }
            if let Some(start) = run {
                f(base + start, seg.high_water - start);
            }
        }
    }

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
        self.free_blocks -= self.segments[keep..].iter().map(|s| u64::from(s.free_count)).sum::<u64>();
        self.segments.truncate(keep);
        self.free_stack.retain(|&s| (s as usize) < keep);
        self.dense.retain(|&Reverse(s)| (s as usize) < keep);
        if self.fill as usize >= keep {
            self.fill = u32::MAX;
        }
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

    /// Blocks of the last segment ever handed out (its bump line; 0: none, or no segment).
    pub(crate) fn last_segment_high_water(&self) -> u32 {
        self.segments.last().map_or(0, |seg| seg.high_water)
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
            self.free_blocks -= u64::from(seg.free_count);
            seg.high_water = limit;
            seg.free_count = 0;
            for (w, word) in seg.free.iter_mut().enumerate() {
                *word &= below_mask(limit, w as u32);
                seg.free_count += word.count_ones();
            }
            self.free_blocks += u64::from(seg.free_count);
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

    /// `segments` full segments of `bps` blocks, every block allocated.
    fn full_bitmap(bps: u32, segments: u32, dense: bool) -> ClassBitmap {
        let mut b = ClassBitmap::new(bps);
        if dense {
            b = b.with_dense_placement();
        }
        for _ in 0..segments {
            b.add_segment(false);
        }
        b.rebuild(0..segments * bps).unwrap();
        b
    }

    /// A block, growing the class by a fresh segment when the bitmap asks for one.
    fn take(b: &mut ClassBitmap) -> u32 {
        b.allocate().map(|(blk, _)| blk).unwrap_or_else(|| {
            b.add_segment(true);
            b.allocate().unwrap().0
        })
    }

    #[test]
    fn allocations_fill_one_segment_before_moving_on_while_frees_land_elsewhere() {
        for dense in [false, true] {
            let (bps, segments) = (256u32, 32u32);
            let mut b = full_bitmap(bps, segments, dense);
            let mut rng = crate::test_rng::TestRng::new(11);
            // A quarter of every segment free, at random places.
            for seg in 0..segments {
                while b.segments[seg as usize].free_count < bps / 4 {
                    let _ = b.free(seg * bps + (rng.next() % u64::from(bps)) as u32);
                }
            }
            // Rewrites: each allocation is followed by a free somewhere else.
            let n = 300u32;
            let mut used = std::collections::BTreeSet::new();
            for _ in 0..n {
                let block = take(&mut b);
                used.insert(block / bps);
                loop {
                    let victim = (rng.next() % u64::from(segments * bps)) as u32;
                    if victim / bps != block / bps && b.free(victim).is_ok() {
                        break;
                    }
                }
            }
            assert!(used.len() as u32 <= n.div_ceil(bps / 4) + 1, "dense {dense}: {} segments", used.len());
            b.verify().unwrap();
        }
    }

    #[test]
    fn scattered_holes_are_passed_over_until_a_segment_is_an_eighth_free() {
        let (bps, segments) = (256u32, 32u32);
        let mut b = full_bitmap(bps, segments, true);
        let holes: Vec<u32> = (0..segments).map(|s| s * bps + 7).collect();
        for &h in &holes {
            b.free(h).unwrap();
        }
        assert_eq!(b.allocate(), None, "one hole a segment is not worth a page write each");
        b.add_segment(true);
        for _ in 0..bps {
            assert!(!holes.contains(&take(&mut b)));
        }
        // Segment 3 gains an eighth of its blocks free: it is filled, holes first.
        for i in 0..bps / 8 - 1 {
            b.free(3 * bps + 100 + i).unwrap();
        }
        let mut got: Vec<u32> = (0..bps / 8).map(|_| take(&mut b)).collect();
        got.sort();
        let mut want: Vec<u32> = (0..bps / 8 - 1).map(|i| 3 * bps + 100 + i).collect();
        want.push(3 * bps + 7);
        want.sort();
        assert_eq!(got, want);
        b.verify().unwrap();
    }

    #[test]
    fn holes_are_reused_however_scattered_in_a_small_class_or_past_a_tenth_dead() {
        let bps = 256u32;
        let mut small = full_bitmap(bps, 4, true);
        small.free(bps + 9).unwrap();
        assert_eq!(small.allocate(), Some((bps + 9, Source::Bitmap)), "a small class keeps every hole");

        let segments = 32u32;
        let mut b = full_bitmap(bps, segments, true);
        let tenth = (segments * bps).div_ceil(10);
        let holes: Vec<u32> = (0..tenth).map(|i| (i % segments) * bps + i / segments).collect();
        for &h in &holes[..holes.len() - 1] {
            b.free(h).unwrap();
        }
        assert_eq!(b.allocate(), None, "below a tenth dead, scattered holes wait");
        b.free(holes[holes.len() - 1]).unwrap();
        let (block, source) = b.allocate().unwrap();
        assert!(holes.contains(&block) && source == Source::Bitmap, "a tenth dead: holes are reused");
        assert!(holes.contains(&b.allocate_any_hole().unwrap()));
        b.verify().unwrap();
    }

    #[test]
    fn rebuild_lists_the_dense_segments_and_a_dropped_tail_leaves_no_trace() {
        let bps = 64u32;
        let mut b = ClassBitmap::new(bps).with_dense_placement();
        for _ in 0..20 {
            b.add_segment(false);
        }
        // Segment 5 is half free, the rest full except the last two (wholly free).
        b.rebuild((0..18 * bps).filter(|&blk| blk / bps != 5 || blk % 2 == 0)).unwrap();
        assert_eq!(b.allocate(), Some((5 * bps + 1, Source::Bitmap)));
        b.drop_tail_segments(2);
        b.verify().unwrap();
        for _ in 0..bps / 2 - 1 {
            assert_eq!(take(&mut b) / bps, 5);
        }
        assert_eq!(take(&mut b), 18 * bps, "then a new segment, the holes all used");
        b.verify().unwrap();
    }

    /// Random rewrites of a large class of small blocks, frees taking effect at each round's
    /// end (as a commit does): the pages a round writes, with holes reused one by one and with
    /// dense placement, once the free space has spread over the whole class.
    #[test]
    fn in_steady_random_rewrites_dense_placement_writes_a_fraction_of_the_pages() {
        const BLOCKS_PER_PAGE: u32 = 64;
        let (bps, segments, changes) = (1024u32, 64u32, 2000usize);
        let rounds = if cfg!(miri) { 2 } else { 40 };
        let mut pages_per_round = Vec::new();
        for dense in [false, true] {
            let mut b = full_bitmap(bps, segments, dense);
            let mut nodes: Vec<u32> = (0..segments * bps).collect();
            let mut rng = crate::test_rng::TestRng::new(5);
            let mut pages = std::collections::BTreeSet::new();
            let mut worst_dead = 0.0f64;
            for _ in 0..rounds {
                pages.clear();
                let mut freed = Vec::new();
                for _ in 0..changes {
                    let node = (rng.next() % nodes.len() as u64) as usize;
                    let block = take(&mut b);
                    pages.insert(block / BLOCKS_PER_PAGE);
                    freed.push(std::mem::replace(&mut nodes[node], block));
                }
                for f in freed {
                    b.free(f).unwrap();
                }
                let s = b.stats(1);
                worst_dead = worst_dead.max(s.dead_bytes as f64 / (s.live_bytes + s.dead_bytes) as f64);
            }
            b.verify().unwrap();
            assert!(worst_dead < 0.10 + changes as f64 / f64::from(segments * bps), "dense {dense}: {worst_dead}");
            pages_per_round.push(pages.len());
        }
        let (plain, dense) = (pages_per_round[0], pages_per_round[1]);
        assert!(plain > changes * 2 / 5, "holes reused one by one: about a page each ({plain})");
        assert!(dense <= changes / 4, "dense: {dense} pages for {changes} blocks (plain: {plain})");
    }
}
