//! One file per size class, grown a whole segment at a time. Each segment is preallocated on
//! disk before it is mapped, so a full disk is a clean `NoSpace` at grow time and never a
//! SIGBUS on a later write through the mapping.
//!
//! Giving space back may cut the file inside its last segment (`cut_tail`): the segment stays
//! mapped whole, but the allocator hands out no block past the file's end (`tail_bytes`), and
//! before it does, `extend_tail` preallocates more of the segment again, a step at a time. A
//! file whose length is not a whole number of segments is therefore a normal state at open,
//! whether a cut, a step or an interrupted growth left it.

use crate::error::{Error, Result};
use crate::os::{preallocate, reserve, Arena, Mapping};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a store's blocks live.
#[derive(Debug, Clone)]
pub(crate) enum Backing {
    /// Anonymous memory; nothing survives the store.
    Memory,
    /// Files in this directory, mapped shared: the writer's view.
    Shared(PathBuf),
    /// Files in this directory, mapped privately: a read-only view that never changes a file.
    Private(PathBuf),
}

/// See `ClassFile::tail_step`.
const TAIL_STEP_BYTES: u64 = 64 << 10;

pub(crate) struct ClassFile {
    backing: Backing,
    name: String,
    file: Option<File>,
    segment_bytes: u64,
    segments: Vec<Mapping>,
    /// Where the file's segments are mapped, side by side (after `segments`: it must drop last).
    arena: Arena,
    /// Bytes of the last segment that the file holds (all of it unless cut inside it); every
    /// earlier segment is whole. No block past them is handed out or read.
    tail_bytes: u64,
    /// Per segment: written since its last flush. Atomic so a checkpoint can flush under the
    /// store's shared lock while readers go on.
    dirty: Vec<AtomicBool>,
    /// The file grew since its size was last synced (by a checkpoint).
    grown: AtomicBool,
    /// The file was created since its directory entry was last synced.
    created: AtomicBool,
    /// The holes (free pages a writer at rest punched) found at the open, unless it filled
    /// them (`Holes`): the free blocks in them are marked punched (`Space::rebuild`), and a
    /// read-only view's statistics count them as given back.
    pub(crate) holes: Vec<(u64, u64)>,
}

/// What a writable open does with the holes of a class file (free pages a store at rest gave
/// back to the file system; their marks do not outlive the process). A read-only view always
/// marks them: it writes nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Holes {
    /// Allocates them again before anything is written: recovery replays the log through the
    /// mapping, into blocks the log names, where a hole on a full disk would be a `SIGBUS`.
    Fill,
    /// Marks the free blocks in them as punched, as the process that punched them did: every
    /// later write into such a block goes through an allocation that fills its pages first
    /// (`Class::unpunch`). With no log to replay, so a store that rested opens on a disk others
    /// have filled since.
    Mark,
}

impl ClassFile {
    /// Opens the class file if it exists (mapping every whole segment in it); creates nothing.
    pub(crate) fn open(backing: &Backing, name: String, segment_bytes: u64, holes: Holes) -> Result<ClassFile> {
        let mut cf = ClassFile {
            backing: backing.clone(),
            name,
            file: None,
            segment_bytes,
            segments: Vec::new(),
            arena: Arena::new(segment_bytes as usize),
            tail_bytes: segment_bytes,
            dirty: Vec::new(),
            grown: AtomicBool::new(false),
            created: AtomicBool::new(false),
            holes: Vec::new(),
        };
        let Some(path) = cf.path() else { return Ok(cf) };
        if !path.exists() {
            return Ok(cf);
        }
        let writable = matches!(cf.backing, Backing::Shared(_));
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| Error::io(format!("stat {}", path.display()), e))?.len();
        // A partial segment at the end is a cut inside it, or a growth a crash interrupted: it
        // is mapped whole, and only its bytes in the file are used.
        let partial = len % segment_bytes;
        let segments = len.div_ceil(segment_bytes);
        if segments > 0 {
            cf.arena
                .reserve_first(segments as usize)
                .map_err(|e| Error::io(format!("reserve address space for {}", path.display()), e))?;
        }
        for i in 0..segments {
            let m = cf.map_segment(&file, i)?;
            cf.segments.push(m);
            cf.dirty.push(AtomicBool::new(false));
        }
        cf.tail_bytes = if partial == 0 { segment_bytes } else { partial };
        if !writable {
            cf.holes = crate::os::holes(&file, len).unwrap_or_default();
        } else if holes == Holes::Mark {
            // A hole left unmarked would be written through the mapping: not a guess here.
            cf.holes = crate::os::holes(&file, len)
                .map_err(|e| Error::io(format!("find the free blocks given back in {}", path.display()), e))?;
        } else {
            fill_holes(&path, &file, len)
                .map_err(|e| Error::io(format!("allocate the free blocks given back in {}", path.display()), e))?;
        }
        cf.file = Some(file);
        Ok(cf)
    }

    /// Gives the disk space of `offset..offset + len` of a segment back (see `os::punch_hole`):
    /// free blocks the store at rest does not need on disk. `Ok(false)` when there is nothing
    /// to punch (memory, a read-only view) or the file system cannot; the caller fills the
    /// range again (`fill`) before it hands out a block there.
    pub(crate) fn punch(&self, segment: u32, offset: u64, len: u64) -> Result<bool> {
        let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) else { return Ok(false) };
        let at = u64::from(segment) * self.segment_bytes + offset;
        crate::os::punch_hole(file, at, len)
            .map_err(|e| Error::io(format!("give back {len} bytes of {}", self.name), e))
    }

    /// Allocates a punched range of a segment on disk again, so that writes through the mapping
    /// cannot fault on a full disk: `NoSpace` here instead, with nothing changed.
    pub(crate) fn fill(&self, segment: u32, offset: u64, len: u64) -> Result<()> {
        let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) else { return Ok(()) };
        let at = u64::from(segment) * self.segment_bytes + offset;
        let path = self.path().expect("shared backing has a path");
        reserve(&path, len)
            .and_then(|_| preallocate(file, at, len))
            .map_err(|e| Error::io(format!("allocate {len} bytes of {} again", self.name), e))
    }

    fn path(&self) -> Option<PathBuf> {
        match &self.backing {
            Backing::Memory => None,
            Backing::Shared(dir) | Backing::Private(dir) => Some(dir.join(&self.name)),
        }
    }

    fn map_segment(&mut self, file: &File, index: u64) -> Result<Mapping> {
        let private = matches!(self.backing, Backing::Private(_));
        let mapped = self.arena.map(file, index * self.segment_bytes, private);
        mapped.map_err(|e| Error::io(format!("map {} segment {index}", self.name), e))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn segment_count(&self) -> u32 {
        self.segments.len() as u32
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes of the last segment the file holds (the segment's size unless cut inside it).
    pub(crate) fn tail_bytes(&self) -> u64 {
        self.tail_bytes
    }

    /// Adds one segment at the end of the file. On failure nothing is added. The last
    /// segment must be whole (see `extend_tail`).
    pub(crate) fn grow(&mut self) -> Result<()> {
        assert_eq!(self.tail_bytes, self.segment_bytes, "a partial last segment is extended, not grown past");
        let index = self.segments.len() as u64;
        let mapping =
            match self.backing {
                Backing::Memory => Mapping::anonymous(self.segment_bytes as usize)
                    .map_err(|e| Error::io("map anonymous segment", e))?,
                // A read-only view grows only when recovery finds a node whose segment the file
                // lost (its size never synced) and the log holds the node's bytes: the segment
                // lives in memory, and the file is left as it is.
                Backing::Private(_) => Mapping::anonymous(self.segment_bytes as usize)
                    .map_err(|e| Error::io("map anonymous segment", e))?,
                Backing::Shared(_) => {
                    if self.file.is_none() {
                        let path = self.path().expect("shared backing has a path");
                        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
                        self.file = Some(f.map_err(|e| Error::io(format!("create {}", path.display()), e))?);
                        self.created.store(true, Ordering::Relaxed);
                    }
                    let file = self.file.take().expect("opened above");
                    let path = self.path().expect("shared backing has a path");
                    let mapping = reserve(&path, self.segment_bytes)
                        .and_then(|_| preallocate(&file, index * self.segment_bytes, self.segment_bytes))
                        .map_err(|e| Error::io(format!("preallocate {} segment {index}", self.name), e))
                        .and_then(|()| self.map_segment(&file, index));
                    self.file = Some(file);
                    let mapping = mapping?;
                    self.grown.store(true, Ordering::Relaxed);
                    mapping
                }
            };
        self.segments.push(mapping);
        self.dirty.push(AtomicBool::new(false));
        Ok(())
    }

    /// Makes `offset..offset + len` of a segment, never written since it was created, ready to
    /// be written through the mapping. A first write to a page of a preallocated file through a
    /// shared mapping is a page fault that reads the (unwritten) extent into the page cache and
    /// builds its buffers, about 3 µs a page on ext4, and evicts the writer's working set from
    /// the caches. Writing the range's zeros with `pwrite` puts the pages in the cache far more
    /// cheaply, and one `MADV_POPULATE_WRITE` then maps them all. Both are only hints: on failure
    /// the pages fault in as before, and the zeros written are the bytes already there.
    ///
    /// The zeros are not what keeps a full disk from becoming a SIGBUS: `grow` reserved every
    /// block of the segment (`fallocate`) before mapping it, and the store tests that on a
    /// really full file system. They are only the cheapest way found to bring the pages in:
    /// without them (`MADV_POPULATE_WRITE` alone, reading the unwritten extents) allocating
    /// 64-byte nodes took 126-139 ns a call instead of 98-115 (node_bench, 1 M nodes).
    pub(crate) fn prefault(&self, segment: u32, offset: usize, len: usize) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mapping = &self.segments[segment as usize];
        // Never past the file's end: a write there would grow the file unreserved, and a page
        // there faulted in through the mapping is a SIGBUS.
        let end = if segment as usize + 1 == self.segments.len() { self.tail_bytes as usize } else { mapping.len() };
        let len = len.min(end.saturating_sub(offset));
        if let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) {
            use std::os::unix::fs::FileExt;
            let at = u64::from(segment) * self.segment_bytes + offset as u64;
            for chunk in (0..len).step_by(ZEROS.len()) {
                let n = ZEROS.len().min(len - chunk);
                let _ = file.write_all_at(&ZEROS[..n], at + chunk as u64);
            }
        }
        mapping.prefault_for_writing(offset, len);
    }

    pub(crate) fn segment(&self, index: u32) -> &Mapping {
        &self.segments[index as usize]
    }

    pub(crate) fn segment_mut(&mut self, index: u32) -> &mut Mapping {
        self.dirty[index as usize].store(true, Ordering::Relaxed);
        &mut self.segments[index as usize]
    }

    /// Segment `from`, to read, and segment `to` (another), to write.
    pub(crate) fn segment_pair(&mut self, from: u32, to: u32) -> (&Mapping, &mut Mapping) {
        self.dirty[to as usize].store(true, Ordering::Relaxed);
        let (to, from) = super::space::two_mut(&mut self.segments, to as usize, from as usize);
        (from, to)
    }

    /// Writes every segment changed since the last flush back to disk and waits
    /// (`sync_pieces`: a checkpoint after a bulk load of 1 M entries made 144 `msync`s, one per
    /// segment, 0.22 s of a close). A file that grew since its size was last synced is synced
    /// whole instead: that `fdatasync` makes its size durable too (`sync_growth` then has
    /// nothing left to do), one sync where there were two.
    ///
    /// A failure cannot be retried: after a failed sync Linux may have marked the pages clean
    /// (or dropped them), so a second sync would succeed without writing them. The caller
    /// stops the store (`Shared::poison`); the log still holds what the pages held.
    pub(crate) fn flush_dirty(&self) -> Result<()> {
        if !matches!(self.backing, Backing::Shared(_)) {
            return Ok(());
        }
        let dirty: Vec<(u32, usize, usize)> = (0..self.dirty.len())
            .filter(|&i| self.dirty[i].swap(false, Ordering::Relaxed))
            .map(|i| (i as u32, 0, self.segments[i].len()))
            .collect();
        let grown = self.file.is_some() && self.grown.swap(false, Ordering::Relaxed);
        if grown {
            self.sync_data()
        } else {
            self.sync_pieces(&dirty)
        }
    }

    /// Makes `(segment, offset, len)` pieces of the file durable with one sync: an `msync` of
    /// the piece when there is one, else an `fdatasync` of the file, which writes back every
    /// dirty page of it at once (each `msync` is a sync, and a device flush, of its own).
    pub(crate) fn sync_pieces(&self, pieces: &[(u32, usize, usize)]) -> Result<()> {
        match pieces {
            [] => Ok(()),
            &[(segment, offset, len)] => self.flush_range(segment, offset, len),
            _ if self.file.is_some() => self.sync_data(),
            _ => pieces.iter().try_for_each(|&(segment, offset, len)| self.flush_range(segment, offset, len)),
        }
    }

    /// Makes the file's directory entry durable if the file was created since the last call
    /// (returns whether the directory must be synced), and, with `sizes`, its size if it grew
    /// (fdatasync, which also writes back every dirty page of the file: a checkpoint's job, not
    /// a commit's; a commit relies on recovery to extend a file whose growth was lost).
    pub(crate) fn sync_growth(&self, sizes: bool) -> Result<bool> {
        let Some(file) = &self.file else { return Ok(false) };
        if sizes && self.grown.swap(false, Ordering::Relaxed) {
            // As `flush_dirty`'s: a failure stops the store, not retried.
            self.simulated_sync_failure()
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(format!("sync the size of {}", self.name), e))?;
        }
        Ok(self.created.swap(false, Ordering::Relaxed))
    }

    /// Writes every changed page of the file back to disk and waits (`fdatasync`): one sync
    /// for all the blocks a commit wrote there, however many.
    pub(crate) fn sync_data(&self) -> Result<()> {
        let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) else { return Ok(()) };
        count_sync();
        self.simulated_sync_failure()
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(format!("sync {}", self.name), e))
    }

    /// `EIO` when a test made the syncs of this file's directory fail (its path is built in
    /// test builds only).
    fn simulated_sync_failure(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(path) = self.path() {
            crate::os::simulated_sync_failure(&path)?;
        }
        Ok(())
    }

    /// `EIO` when a test made the cuts of files in this file's directory fail.
    fn simulated_cut_failure(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(path) = self.path() {
            crate::os::simulated_cut_failure(&path)?;
        }
        Ok(())
    }

    pub(crate) fn flush_range(&self, segment: u32, offset: usize, len: usize) -> Result<()> {
        if !matches!(self.backing, Backing::Shared(_)) {
            return Ok(());
        }
        count_sync();
        self.simulated_sync_failure()
            .and_then(|()| self.segments[segment as usize].flush_range(offset, len))
            .map_err(|e| Error::io(format!("flush {} segment {segment}", self.name), e))
    }

    /// Drops the last `n` segments: cuts the file to the segments left and unmaps them. The
    /// caller knows no block there is needed by anyone (see `alloc::shrink`). The cut needs
    /// no sync: a power cut that loses it leaves a longer file, which is harmless. The file is
    /// cut first: a cut that fails changes nothing (an outside tester's `EIO` there left the
    /// segments unmapped under an allocator that still handed their blocks out: a panic at
    /// the next allocation, and the close cut the file under live nodes).
    pub(crate) fn shrink(&mut self, n: u32) -> Result<()> {
        // A read-only view never changes its files; its caller never cuts (see
        // `Store::give_back_tail`), and an accidental call must not either.
        if n == 0 || matches!(self.backing, Backing::Private(_)) {
            return Ok(());
        }
        let keep = self.segments.len() - n as usize;
        if let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) {
            self.simulated_cut_failure()
                .and_then(|()| file.set_len(keep as u64 * self.segment_bytes))
                .map_err(|e| Error::io(format!("truncate {} to {keep} segments", self.name), e))?;
        }
        while self.segments.len() > keep {
            let cut = self.segments.pop().expect("more than `keep` segments");
            if cut.is_placed() {
                self.arena.release_last(cut);
            }
        }
        self.dirty.truncate(keep);
        self.tail_bytes = self.segment_bytes;
        Ok(())
    }

    /// Cuts the file inside its last segment, to `keep` bytes of it. The caller knows no block
    /// past them is needed by anyone (as for `shrink`); the mapping stays, unused past the end.
    /// Only a shared file is cut: memory and a read-only view keep their bytes.
    pub(crate) fn cut_tail(&mut self, keep: u64) -> Result<()> {
        let (Backing::Shared(_), Some(file)) = (&self.backing, &self.file) else { return Ok(()) };
        if self.segments.is_empty() || keep >= self.tail_bytes {
            return Ok(());
        }
        let start = (self.segments.len() as u64 - 1) * self.segment_bytes;
        file.set_len(start + keep).map_err(|e| Error::io(format!("cut {} to {} bytes", self.name, start + keep), e))?;
        self.tail_bytes = keep;
        Ok(())
    }

    /// What a cut last segment grows back by at a time, and the untouched space a commit's cut
    /// leaves past the blocks handed out (`Space::cut_untouched_tails`): 64 KiB, or a block
    /// when larger. Leaving the step that growth adds is what stops the cycle: a store whose
    /// directory is past the footprint's trigger cuts its untouched tails at every commit, and
    /// a growing one extended them again at the next, then up to a whole segment each time
    /// (a Kizuna-like load on tmpfs: ~10 % of its time in `ftruncate` and `fallocate`).
    pub(crate) fn tail_step(block_bytes: u64) -> u64 {
        TAIL_STEP_BYTES.max(block_bytes)
    }

    /// Extends the last segment after a cut inside it, by `tail_step` or to its end: the bytes
    /// added are preallocated (a full disk is an error here, never a SIGBUS later). On failure
    /// nothing changes.
    pub(crate) fn extend_tail(&mut self, block_bytes: u64) -> Result<()> {
        let missing = self.segment_bytes - self.tail_bytes;
        if missing == 0 || self.segments.is_empty() {
            return Ok(());
        }
        let last = self.segments.len() - 1;
        // A read-only view: what the file holds of the segment now (a writer may have extended
        // it since this view was mapped), looked up once.
        let in_file = match (&self.backing, &self.file) {
            (Backing::Private(_), Some(file)) => self.tail_in_file(file, block_bytes),
            _ => 0,
        };
        match (&self.backing, &self.file) {
            (Backing::Shared(_), Some(file)) => {
                let at = last as u64 * self.segment_bytes + self.tail_bytes;
                let step = Self::tail_step(block_bytes).min(missing);
                let path = self.path().expect("shared backing has a path");
                reserve(&path, step)
                    .and_then(|_| preallocate(file, at, step))
                    .map_err(|e| Error::io(format!("preallocate {} segment {last}", self.name), e))?;
                self.grown.store(true, Ordering::Relaxed);
                self.tail_bytes += step;
                return Ok(());
            }
            // A read-only view whose file a writer has extended since (a step at a time): the
            // private mapping reads the file's pages as far as the file now goes, unlogged
            // payloads included. Only whole blocks: a writer extends by whole blocks.
            (Backing::Private(_), Some(_)) if in_file > self.tail_bytes => {
                self.tail_bytes = in_file;
                return Ok(());
            }
            // A read-only view (see `grow`): the segment moves to memory, its file bytes along.
            _ => {
                let mut whole = Mapping::anonymous(self.segment_bytes as usize)
                    .map_err(|e| Error::io("map anonymous segment", e))?;
                let held = self.tail_bytes as usize;
                whole.write(0, self.segments[last].read(0, held));
                self.segments[last] = whole;
            }
        }
        self.tail_bytes = self.segment_bytes;
        Ok(())
    }

    /// Bytes of the last segment that `file` holds now, in whole blocks (a writer may have
    /// extended it since this view was mapped).
    fn tail_in_file(&self, file: &File, block_bytes: u64) -> u64 {
        let start = (self.segments.len() as u64 - 1) * self.segment_bytes;
        let held = file.metadata().map_or(0, |m| m.len()).saturating_sub(start).min(self.segment_bytes);
        held - held % block_bytes
    }

    /// Bytes of the segments' memory in use: whole segments, the last one as far as it goes.
    pub(crate) fn mapped_bytes(&self) -> u64 {
        match self.segments.len() as u64 {
            0 => 0,
            n => (n - 1) * self.segment_bytes + self.tail_bytes,
        }
    }

    /// Bytes the file takes on disk.
    pub(crate) fn file_bytes(&self) -> u64 {
        if self.file.is_some() {
            self.mapped_bytes()
        } else {
            0
        }
    }
}

/// Allocates every hole of a class file opened for writing (`Holes::Fill`). One `lseek` for a
/// file without holes.
fn fill_holes(path: &Path, file: &File, len: u64) -> std::io::Result<()> {
    for (at, n) in crate::os::holes(file, len)? {
        reserve(path, n).and_then(|_| preallocate(file, at, n))?;
    }
    Ok(())
}

/// Counts a sync of class file data for the tests (`SYNC_CALLS`); nothing in a build.
#[inline(always)]
fn count_sync() {
    #[cfg(test)]
    SYNC_CALLS.with(|c| c.set(c.get() + 1));
}

#[cfg(test)]
thread_local! {
    /// Syncs of class file data (msync or fdatasync) made on this thread: tests count them.
    pub(crate) static SYNC_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_file_lies_in_one_reservation() {
        const SEGMENT: u64 = 64 << 10;
        let dir = std::env::temp_dir().join(format!("pcore-class-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let backing = Backing::Shared(dir.clone());
        let mut grown = ClassFile::open(&backing, "class.seg".into(), SEGMENT, Holes::Fill).unwrap();
        for i in 0..200u64 {
            grown.grow().unwrap();
            grown.segment_mut(i as u32).write(0, &i.to_le_bytes());
        }
        assert_eq!(grown.arena.reservations(), 3, "grown slot by slot: 64 + 128 + 256 slots");
        grown.flush_dirty().unwrap();
        drop(grown);

        let mut reopened = ClassFile::open(&backing, "class.seg".into(), SEGMENT, Holes::Fill).unwrap();
        assert_eq!(reopened.segment_count(), 200);
        assert_eq!(reopened.arena.reservations(), 1, "a close unmaps it with one call");
        assert_eq!(reopened.arena.reserved_bytes(), 200 * SEGMENT, "no unused slots: one kernel mapping");
        for i in 0..200u64 {
            assert_eq!(reopened.segment(i as u32).read(0, 8), i.to_le_bytes());
        }
        // Growing goes on in a reservation twice as large.
        reopened.grow().unwrap();
        reopened.segment_mut(200).write(0, &200u64.to_le_bytes());
        assert_eq!(reopened.arena.reservations(), 2);
        assert_eq!(reopened.arena.reserved_bytes(), 600 * SEGMENT);
        assert_eq!(reopened.segment(199).read(0, 8), 199u64.to_le_bytes());
        drop(reopened);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
