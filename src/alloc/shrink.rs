//! Giving space back: the queries and moves that relocation (`store::compact`) needs, and
//! cutting the free tail of a class file. Apart from `space.rs`'s fast paths on purpose.

use super::class_file::ClassFile;
use super::space::Space;
use super::Loc;
use crate::error::Result;

impl Space {
    #[cfg(test)]
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

    /// Bytes of all class segments (files or memory), a last segment cut inside it as far
    /// as it goes.
    pub(crate) fn segment_bytes_total(&self) -> u64 {
        self.per_class.iter().map(|c| c.file.mapped_bytes()).sum()
    }

    /// Where a cut would end the class file if its blocks past `blocks` were free: `blocks`
    /// rounded up to the cut's granule. Relocation drains only past this line: moving nodes
    /// that no cut would follow gives nothing back.
    pub(crate) fn cut_line(&self, class: u8, blocks: u64) -> u64 {
        let bytes = u64::from(self.capacity(class));
        (blocks * bytes).next_multiple_of(CUT_GRANULE_BYTES.max(bytes)) / bytes
    }

    /// One past the last allocated block of a class (0: none).
    pub(crate) fn in_use_end(&self, class: u8) -> u64 {
        self.per_class[class as usize].bits.in_use_end()
    }

    /// The lowest free block of `class` in the lowest segment that has one, if it lies below
    /// block `before`; else `None` (the caller then leaves its node where it is). Never grows
    /// the file.
    pub(crate) fn allocate_front(&mut self, class: u8, before: u64) -> Option<Loc> {
        let c = &mut self.per_class[class as usize];
        let block = c.bits.allocate_front(before)?;
        if c.unpunch(block).is_err() {
            // A full disk: the node stays where it is, and the block free.
            let _ = c.bits.free(block);
            return None;
        }
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
            if n > 0 {
                let before = c.file.mapped_bytes();
                c.file.shrink(n)?;
                c.bits.drop_tail_segments(n);
                c.forget_punches_past_end();
                given += before - c.file.mapped_bytes();
            }
            if slack == 0 {
                let in_use = c.bits.last_segment_in_use();
                given += cut_last_segment_after(c, in_use, 0)?;
            }
        }
        Ok(given)
    }

    /// Cuts each class file after the blocks its last segment ever handed out (rounded up to
    /// the granule) and one growth step (`ClassFile::tail_step`, so that a growing store does
    /// not grow back at its next commit what this one cut): space no node was ever in, so no
    /// log frame, checkpoint or snapshot names it, and a commit may give it back between
    /// checkpoints (a small store's last segment is mostly such space). Returns the bytes
    /// given back. The caller must know no reader process maps the files (their mappings keep
    /// their length).
    pub(crate) fn cut_untouched_tails(&mut self) -> Result<u64> {
        let mut given = 0;
        for c in &mut self.per_class {
            let high_water = c.bits.last_segment_high_water();
            let slack = ClassFile::tail_step(u64::from(c.bytes));
            given += cut_last_segment_after(c, high_water, slack)?;
        }
        Ok(given)
    }
}

/// A cut inside a segment ends on a multiple of this many bytes (or of the block, when
/// larger): a store that cuts and grows again does not do so a block at a time, and the
/// file's end stays on the prefault windows' boundaries (`Space::prefault_fresh`).
const CUT_GRANULE_BYTES: u64 = 64 << 10;

/// Cuts the last segment's file after its first `blocks` blocks (rounded up to the granule;
/// none of the blocks past them allocated) and `slack` bytes more; returns the bytes given
/// back. Memory is never cut inside a segment.
fn cut_last_segment_after(c: &mut super::space::Class, blocks: u32, slack: u64) -> Result<u64> {
    if !c.file.is_open() || c.bits.segment_count() == 0 {
        return Ok(0);
    }
    let bytes = u64::from(c.bytes);
    let granule = CUT_GRANULE_BYTES.max(bytes);
    let keep = (u64::from(blocks) * bytes).next_multiple_of(granule).max(granule) + slack;
    let held = c.file.tail_bytes();
    if keep >= held {
        return Ok(0);
    }
    c.file.cut_tail(keep)?;
    if c.file.tail_bytes() == keep {
        c.bits.cut_last_segment((keep / bytes) as u32);
    }
    c.forget_punches_past_end();
    Ok(held - c.file.tail_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::{Backing, Holes, SizeClasses};
    use super::*;

    fn space() -> Space {
        let mut s = Space::open(SizeClasses::new(64, 4096).unwrap(), &Backing::Memory, Holes::Fill).unwrap();
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
        assert_eq!(s.allocate_front(6, 5), None, "the hole is not below block 5");
        assert_eq!(s.allocate_front(6, u64::from(2 * bps)), Some(all[5]));
        assert_eq!(s.allocate_front(6, u64::from(2 * bps)), None, "the hole in segment 2 is not below it");
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

#[cfg(test)]
mod cut_tests {
    use super::super::{Backing, Holes, Loc, SizeClasses, Space};

    fn file_space(dir: &std::path::Path) -> Space {
        let mut s =
            Space::open(SizeClasses::new(64, 4096).unwrap(), &Backing::Shared(dir.to_path_buf()), Holes::Fill).unwrap();
        s.rebuild(&vec![Vec::new(); 7]).unwrap();
        s
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pcore-cut-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Between checkpoints only the space past what the last segment ever handed out goes:
    /// a block handed out and freed since may still be named by the log, so it stays.
    #[test]
    fn untouched_tails_are_cut_after_the_blocks_ever_handed_out() {
        let dir = temp_dir("untouched");
        let path = dir.join("class-06-4096.seg");
        let mut s = file_space(&dir);
        let all: Vec<Loc> = (0..100).map(|_| s.allocate(6).unwrap()).collect();
        for &l in &all[21..] {
            s.free(l).unwrap();
        }
        // 100 blocks, in 64 KiB steps, and one growth step of 64 KiB.
        assert_eq!(s.cut_untouched_tails().unwrap(), (1 << 20) - (512 << 10));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 512 << 10);
        assert_eq!(s.cut_untouched_tails().unwrap(), 0, "nothing more past the blocks handed out");
        s.verify().unwrap();
        // Growth extends the file before it hands a block out there, a step at a time (a
        // store cut at each commit and growing at the next does not preallocate, and cut
        // again, the rest of the segment each time): 221 blocks in use need six steps.
        let again: Vec<Loc> = (0..200).map(|_| s.allocate(6).unwrap()).collect();
        assert_eq!(again.iter().map(|l| l.block).max(), Some(220));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (512 + 6 * 64) << 10);
        assert_eq!(s.file_bytes(), (512 + 6 * 64) << 10);
        assert_eq!(s.cut_untouched_tails().unwrap(), 0, "within a step of the blocks handed out");
        // The last step stops at the segment's end.
        let more: Vec<Loc> = (0..35).map(|_| s.allocate(6).unwrap()).collect();
        assert_eq!(more.iter().map(|l| l.block).max(), Some(255));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        assert_eq!(s.segment_count(6), 1);
        s.verify().unwrap();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file is cut after its last block in use, inside the segment; allocation past the cut
    /// extends it first, and a reopen maps the partial segment.
    #[test]
    fn a_file_is_cut_inside_its_last_segment_and_grows_back() {
        let dir = temp_dir("inside");
        let path = dir.join("class-06-4096.seg");
        let mut s = file_space(&dir);
        let all: Vec<Loc> = (0..100).map(|_| s.allocate(6).unwrap()).collect();
        s.write(all[20], b"kept");
        for &l in &all[21..] {
            s.free(l).unwrap();
        }
        assert_eq!(s.truncate_free_tails(0).unwrap(), (1 << 20) - (128 << 10));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 << 10, "21 blocks, in 64 KiB steps");
        assert_eq!(s.file_bytes(), 128 << 10);
        s.verify().unwrap();
        // The 11 free blocks left below the cut are reused, then the file is extended.
        let again: Vec<Loc> = (0..40).map(|_| s.allocate(6).unwrap()).collect();
        assert!(again.iter().all(|l| l.block < 61));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (128 + 2 * 64) << 10, "extended by two steps");
        for l in &again {
            s.write(*l, b"new!");
        }
        for &l in &again {
            s.free(l).unwrap();
        }
        s.truncate_free_tails(0).unwrap();
        s.flush_dirty().unwrap();
        drop(s);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, 128 << 10);
        let mut s =
            Space::open(SizeClasses::new(64, 4096).unwrap(), &Backing::Shared(dir.clone()), Holes::Fill).unwrap();
        let mut used = vec![Vec::new(); 7];
        used[6] = (0..21).collect();
        s.rebuild(&used).unwrap();
        assert_eq!(s.read(all[20], 4), b"kept");
        assert_eq!(s.file_bytes(), 128 << 10);
        let beyond = Loc { class: 6, block: 40 };
        assert!(!s.covers(beyond), "a block past the cut is not in the file");
        let mut past = vec![Vec::new(); 7];
        past[6] = vec![40];
        assert!(s.rebuild(&past).is_err(), "a table naming a block past the file's end is refused");
        s.rebuild(&used).unwrap();
        s.cover(beyond).unwrap();
        assert!(s.covers(beyond));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (128 + 64) << 10);
        s.verify().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A read-only view that needs a block past its end (its recovery finding a node that a
    /// writer wrote after the view was mapped) reads it from the file, which the writer
    /// extended a step at a time: not zeros from a copy of what the view held.
    #[test]
    fn a_read_only_view_reads_a_block_a_writer_wrote_past_its_end() {
        let dir = temp_dir("view");
        let mut w = file_space(&dir);
        let all: Vec<Loc> = (0..100).map(|_| w.allocate(6).unwrap()).collect();
        for &l in &all[21..] {
            w.free(l).unwrap();
        }
        w.truncate_free_tails(0).unwrap();
        w.flush_dirty().unwrap();
        let mut r =
            Space::open(SizeClasses::new(64, 4096).unwrap(), &Backing::Private(dir.clone()), Holes::Fill).unwrap();
        let mut used = vec![Vec::new(); 7];
        used[6] = (0..21).collect();
        r.rebuild(&used).unwrap();
        assert_eq!(r.file_bytes(), 128 << 10);
        let again: Vec<Loc> = (0..40).map(|_| w.allocate(6).unwrap()).collect();
        let far = *again.iter().max_by_key(|l| l.block).unwrap();
        assert_eq!(far.block, 60, "past the view's end, inside the writer's steps");
        w.write(far, b"written by the writer");
        w.flush_dirty().unwrap();
        assert!(!r.covers(far));
        r.cover(far).unwrap();
        assert_eq!(r.read(far, 21), b"written by the writer");
        drop((r, w));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Under a disk budget, extending a cut segment is a clean error and changes nothing.
    #[test]
    fn extending_a_cut_segment_on_a_full_disk_is_an_error_not_a_sigbus() {
        let dir = temp_dir("full");
        let mut s = file_space(&dir);
        let all: Vec<Loc> = (0..40).map(|_| s.allocate(6).unwrap()).collect();
        for &l in &all[16..] {
            s.free(l).unwrap();
        }
        s.truncate_free_tails(0).unwrap();
        assert_eq!(s.file_bytes(), 64 << 10);
        crate::os::simulate_disk_limit(&dir, Some(100 << 10));
        let r = (0..20).map(|_| s.allocate(6)).find(|r| r.is_err());
        assert!(matches!(r, Some(Err(crate::error::Error::NoSpace(_)))), "{r:?}");
        assert_eq!(s.file_bytes(), 64 << 10, "nothing changed");
        s.verify().unwrap();
        crate::os::simulate_disk_limit(&dir, None);
        assert!(s.allocate(6).is_ok());
        assert_eq!(s.file_bytes(), (64 + 64) << 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
