//! The reader table: how a process that opens a store read-only keeps the writer, in another
//! process, from reusing the blocks it reads.
//!
//! A read-only open reads the store as of one commit, its epoch E. A block freed by a later
//! commit still holds a node of E's version, so the writer must not hand it out again while
//! that reader lives. LMDB solves this with a reader table in its lock file; this is ours: a
//! file `readers` in the store's directory, a header and [`SLOTS`] records of 64 bytes. A
//! reader owns a record by holding an open-file-description lock on its bytes and writes
//! there `E + 1` (0 marks an empty record). The writer takes the smallest E over the
//! records whose lock someone holds: a record whose owner died (SIGKILL included) has no
//! lock, so it pins nothing, whatever it says.
//!
//! Registration races a commit; the order of steps closes the race. A reader first writes
//! `1` (E = 0: "keep everything"), then reads the meta, checkpoint and log, then writes its
//! real epoch. The writer looks at the table only after writing the frame of the commit
//! whose frees it wants to release. So either the writer sees the reader (and keeps the
//! blocks), or the reader registered after the frame was written and reads that commit, in
//! which those blocks are free already.
//!
//! The reader writes its real epoch once it has read the log (and verified the groups the log
//! touches), before it replays the log, the long part of an open beside a busy writer: two
//! readers opening in turn otherwise kept "keep everything" in the table nearly all the time.
//! What the replay reads from the class files after that is delta bases, held until a newer
//! checkpoint whatever the readers (`held_bases`); one reused after such a checkpoint fails
//! the rebuilt version's CRC, and the open starts again from the new meta, pinning
//! everything again first (`open_beside_a_writer`).

use crate::error::{Error, Result};
use crate::os::SharedWords;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) const READERS_FILE: &str = "readers";
/// Records in the table: at most this many read-only opens of one store at once.
pub(crate) const SLOTS: usize = 127;
const RECORD_BYTES: u64 = 64;
const HEADER_BYTES: u64 = 64;
const FILE_BYTES: u64 = HEADER_BYTES + SLOTS as u64 * RECORD_BYTES;
const WORDS_PER_RECORD: usize = (RECORD_BYTES / 8) as usize;
/// "pcoreRDR", then the table's format version: a file of another shape is refused.
const MAGIC: u64 = u64::from_le_bytes(*b"pcoreRDR");
const FORMAT: u64 = 1;

pub(crate) struct ReaderTable {
    words: SharedWords,
    /// Records this open owns: its own lock does not exclude itself, so it keeps count.
    owned: parking_lot::Mutex<Vec<bool>>,
}

/// One record of the table, owned by this open; emptied and unlocked when dropped.
pub(crate) struct ReaderSlot {
    table: Arc<ReaderTable>,
    index: usize,
}

impl ReaderTable {
    /// Opens the store's reader table, creating it when `create`.
    pub(crate) fn open(dir: &Path, create: bool) -> Result<Arc<ReaderTable>> {
        let path = dir.join(READERS_FILE);
        let words = SharedWords::open(&path, FILE_BYTES, create)
            .map_err(|e| Error::io(format!("open the reader table {}", path.display()), e))?;
        let io = |e| Error::io(format!("read the reader table {}", path.display()), e);
        // A table with its header is only read here (see `SharedWords::map`). Otherwise
        // whoever comes first writes the header, through the mapping; everyone checks it.
        let mut header = [0u64; 2];
        words.read(0, &mut header).map_err(io)?;
        if header != [MAGIC, FORMAT] {
            let w = words.map().map_err(io)?;
            let _ = w[0].compare_exchange(0, MAGIC, Ordering::SeqCst, Ordering::SeqCst);
            let _ = w[1].compare_exchange(0, FORMAT, Ordering::SeqCst, Ordering::SeqCst);
            if w[0].load(Ordering::SeqCst) != MAGIC || w[1].load(Ordering::SeqCst) != FORMAT {
                return Err(Error::corrupt(READERS_FILE, 0, "not a pcore reader table of format 1"));
            }
        }
        Ok(Arc::new(ReaderTable { words, owned: parking_lot::Mutex::new(vec![false; SLOTS]) }))
    }

    /// Maps the table, for a writer about to look at it at every commit (a read then costs a
    /// few loads instead of a `pread`).
    #[inline]
    pub(crate) fn map(&self) -> Result<()> {
        if self.words.is_mapped() {
            return Ok(()); // at every commit but the first
        }
        self.words.map().map(|_| ()).map_err(|e| Error::io("map the reader table", e))
    }

    fn record_start(index: usize) -> u64 {
        HEADER_BYTES + index as u64 * RECORD_BYTES
    }

    fn epoch_word(&self, index: usize) -> &std::sync::atomic::AtomicU64 {
        self.words.word((Self::record_start(index) / 8) as usize)
    }

    /// Claims a free record (one whose lock nobody holds) and makes it pin everything until
    /// [`ReaderSlot::set_epoch`]. `Busy` when all [`SLOTS`] are taken.
    pub(crate) fn claim(self: &Arc<Self>) -> Result<ReaderSlot> {
        self.map()?;
        let mut owned = self.owned.lock();
        for index in (0..SLOTS).filter(|&i| !owned[i]) {
            let locked = self
                .words
                .try_lock(Self::record_start(index), RECORD_BYTES)
                .map_err(|e| Error::io("lock a record of the reader table", e))?;
            if locked {
                let base = (Self::record_start(index) / 8) as usize;
                self.words.word(base + 1).store(u64::from(std::process::id()), Ordering::SeqCst);
                for w in 2..WORDS_PER_RECORD {
                    self.words.word(base + w).store(0, Ordering::SeqCst);
                }
                self.epoch_word(index).store(1, Ordering::SeqCst);
                owned[index] = true;
                return Ok(ReaderSlot { table: self.clone(), index });
            }
        }
        Err(Error::Busy(format!("{SLOTS} read-only opens of this store are alive; the reader table is full")))
    }

    /// The records' words, a record's epoch word first in it.
    fn record_words(&self) -> &[std::sync::atomic::AtomicU64] {
        let first = (HEADER_BYTES / 8) as usize;
        &self.words.words()[first..first + SLOTS * WORDS_PER_RECORD]
    }

    fn epoch_words(&self) -> impl Iterator<Item = &std::sync::atomic::AtomicU64> {
        self.record_words().chunks_exact(WORDS_PER_RECORD).map(|r| &r[0])
    }

    /// False when every record is empty, as the writer finds them at nearly every commit: the
    /// epoch words read four at a time, OR-ed, a few instructions a record. A table not mapped
    /// yet is read with one `pread` instead.
    fn any_record_in_use(&self) -> Result<bool> {
        if !self.words.is_mapped() {
            return self.any_record_in_use_read();
        }
        Ok(self.any_mapped_record_in_use())
    }

    #[cold]
    fn any_record_in_use_read(&self) -> Result<bool> {
        let mut records = vec![0u64; SLOTS * WORDS_PER_RECORD];
        self.words
            .read((HEADER_BYTES / 8) as usize, &mut records)
            .map_err(|e| Error::io("read the reader table", e))?;
        Ok(records.chunks_exact(WORDS_PER_RECORD).any(|r| r[0] != 0))
    }

    fn any_mapped_record_in_use(&self) -> bool {
        let load = |w: &std::sync::atomic::AtomicU64| w.load(Ordering::SeqCst);
        let mut quads = self.record_words().chunks_exact(4 * WORDS_PER_RECORD);
        let mut any = 0;
        for q in &mut quads {
            any |= load(&q[0])
                | load(&q[WORDS_PER_RECORD])
                | load(&q[2 * WORDS_PER_RECORD])
                | load(&q[3 * WORDS_PER_RECORD]);
        }
        any |= quads.remainder().chunks_exact(WORDS_PER_RECORD).fold(0, |a, r| a | load(&r[0]));
        any != 0
    }

    /// The oldest epoch a live reader reads, or `None` when no live reader is registered.
    /// Costs a syscall per occupied record (to tell its owner alive).
    pub(crate) fn oldest_reader(&self) -> Result<Option<u64>> {
        if !self.any_record_in_use()? {
            return Ok(None);
        }
        self.map()?;
        let mut oldest: Option<u64> = None;
        for (index, word) in self.epoch_words().enumerate() {
            let stored = word.load(Ordering::SeqCst);
            if stored == 0 {
                continue;
            }
            let alive = self
                .words
                .is_locked_elsewhere(Self::record_start(index), RECORD_BYTES)
                .map_err(|e| Error::io("look at the reader table's locks", e))?;
            if alive {
                oldest = Some(oldest.map_or(stored - 1, |o| o.min(stored - 1)));
            }
        }
        Ok(oldest)
    }

    /// Live readers and the pid each registered with (for `pcore stat`).
    pub(crate) fn live_readers(&self) -> Vec<(u32, u64)> {
        if !matches!(self.any_record_in_use(), Ok(true)) || self.map().is_err() {
            return Vec::new();
        }
        (0..SLOTS)
            .filter_map(|index| {
                let stored = self.epoch_word(index).load(Ordering::SeqCst);
                let start = Self::record_start(index);
                let alive = stored != 0 && self.words.is_locked_elsewhere(start, RECORD_BYTES).unwrap_or(false);
                let pid = self.words.word((start / 8) as usize + 1).load(Ordering::SeqCst) as u32;
                // Lazily: an unused record stores 0, and `stored - 1` would overflow (a panic in a
                // debug build, where every test opening a store came here).
                alive.then(|| (pid, stored - 1))
            })
            .collect()
    }
}

impl ReaderSlot {
    /// The table the record is in.
    pub(crate) fn table(&self) -> &Arc<ReaderTable> {
        &self.table
    }

    /// Pins the blocks of commit `epoch` (and nothing older).
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.table.epoch_word(self.index).store(epoch + 1, Ordering::SeqCst);
    }
}

impl Drop for ReaderSlot {
    /// Empties the record whole: a read-only open that closes leaves the file as it found it.
    fn drop(&mut self) {
        self.table.epoch_word(self.index).store(0, Ordering::SeqCst);
        let base = (ReaderTable::record_start(self.index) / 8) as usize;
        for w in 1..WORDS_PER_RECORD {
            self.table.words.word(base + w).store(0, Ordering::SeqCst);
        }
        self.table.words.unlock(ReaderTable::record_start(self.index), RECORD_BYTES);
        self.table.owned.lock()[self.index] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_live_reader_pins_and_a_released_record_does_not() {
        let dir = tempfile_dir("readers");
        let writer_view = ReaderTable::open(&dir, true).unwrap();
        assert_eq!(writer_view.oldest_reader().unwrap(), None);
        let table = ReaderTable::open(&dir, true).unwrap();
        let a = table.claim().unwrap();
        assert_eq!(writer_view.oldest_reader().unwrap(), Some(0), "a new reader pins everything");
        a.set_epoch(7);
        let other = ReaderTable::open(&dir, true).unwrap();
        let b = other.claim().unwrap();
        b.set_epoch(9);
        assert_eq!(writer_view.oldest_reader().unwrap(), Some(7));
        assert_ne!(a.index, b.index, "two opens never share a record");
        drop(a);
        assert_eq!(writer_view.oldest_reader().unwrap(), Some(9));
        drop(b);
        assert_eq!(writer_view.oldest_reader().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_left_by_a_dead_owner_pins_nothing() {
        let dir = tempfile_dir("readers-dead");
        let writer_view = ReaderTable::open(&dir, true).unwrap();
        writer_view.map().unwrap();
        // A record as a killed reader leaves it: its epoch written, its lock gone with it.
        writer_view.epoch_word(5).store(3, Ordering::SeqCst);
        assert_eq!(writer_view.oldest_reader().unwrap(), None);
        let table = ReaderTable::open(&dir, true).unwrap();
        let slot = table.claim().unwrap();
        slot.set_epoch(11);
        assert_eq!(writer_view.oldest_reader().unwrap(), Some(11));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_in_use_is_seen_in_every_place_of_the_table() {
        let dir = tempfile_dir("readers-every");
        let table = ReaderTable::open(&dir, true).unwrap();
        let unmapped = ReaderTable::open(&dir, true).unwrap();
        table.map().unwrap();
        assert!(!table.any_record_in_use().unwrap());
        for index in 0..SLOTS {
            table.epoch_word(index).store(1, Ordering::SeqCst);
            assert!(table.any_record_in_use().unwrap(), "record {index}");
            assert!(unmapped.any_record_in_use().unwrap(), "record {index}, read without mapping");
            table.epoch_word(index).store(0, Ordering::SeqCst);
        }
        assert!(!table.any_record_in_use().unwrap());
        assert!(!unmapped.any_record_in_use().unwrap());
        assert!(!unmapped.words.is_mapped());
        // The words past a record's epoch word (its pid) say nothing of its use.
        table.words.word(HEADER_BYTES as usize / 8 + 1).store(42, Ordering::SeqCst);
        assert!(!table.any_record_in_use().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pcore-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
