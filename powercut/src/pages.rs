//! A file's two images, current and durable, with page-granular tracking of where they may differ.

/// The unit of writeback: the kernel writes a mapping's dirty memory back in pages of this size,
/// and a disk that loses power mid-write loses or keeps whole pages (or, torn, parts of one).
pub const PAGE: usize = 4096;

/// The set of pages whose current bytes may differ from the durable ones, as a bitset: a
/// workload of many small writes marks bits, and an fsync visits only the marked pages.
#[derive(Default, Clone, Debug)]
struct PageSet {
    words: Vec<u64>,
}

impl PageSet {
    fn insert_bytes(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let (first, last) = (start / PAGE, (end - 1) / PAGE);
        if self.words.len() <= last / 64 {
            self.words.resize(last / 64 + 1, 0);
        }
        for page in first..=last {
            self.words[page / 64] |= 1 << (page % 64);
        }
    }

    fn pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(i, &word)| (0..64).filter(move |bit| word & (1 << bit) != 0).map(move |bit| i * 64 + bit))
    }

    fn clear(&mut self) {
        self.words.clear();
    }
}

/// A regular file's contents. Invariant: every page outside `dirty` holds the same bytes in
/// `current` and `durable`, and every page between the two lengths is in `dirty`, so making
/// the file durable copies only the dirty pages.
#[derive(Default, Clone, Debug)]
pub struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty: PageSet,
}

impl FileData {
    #[cfg(test)]
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    pub fn durable(&self) -> &[u8] {
        &self.durable
    }

    pub fn len(&self) -> u64 {
        self.current.len() as u64
    }

    pub fn read(&self, offset: u64, size: usize) -> &[u8] {
        let start = (offset as usize).min(self.current.len());
        let end = start.saturating_add(size).min(self.current.len());
        &self.current[start..end]
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let start = offset as usize;
        let end = start + data.len();
        if end > self.current.len() {
            self.set_len(end as u64);
        }
        self.current[start..end].copy_from_slice(data);
        self.dirty.insert_bytes(start, end);
    }

    pub fn set_len(&mut self, len: u64) {
        let (old, new) = (self.current.len(), len as usize);
        self.current.resize(new, 0);
        self.dirty.insert_bytes(old.min(new), old.max(new));
    }

    /// Zeroes `[offset, offset + len)`, growing the file unless `keep_size` (fallocate's
    /// FALLOC_FL_ZERO_RANGE and FALLOC_FL_PUNCH_HOLE both read back as zeros).
    pub fn zero(&mut self, offset: u64, len: u64, keep_size: bool) {
        let start = offset as usize;
        let mut end = start + len as usize;
        if end > self.current.len() {
            if keep_size {
                end = self.current.len();
            } else {
                self.set_len(end as u64);
            }
        }
        if start < end {
            self.current[start..end].fill(0);
            self.dirty.insert_bytes(start, end);
        }
    }

    /// fsync / fdatasync: the current contents and size become durable.
    pub fn sync(&mut self) {
        let len = self.current.len();
        self.durable.resize(len, 0);
        for page in self.dirty.pages() {
            let start = page * PAGE;
            if start >= len {
                break;
            }
            let end = (start + PAGE).min(len);
            self.durable[start..end].copy_from_slice(&self.current[start..end]);
        }
        self.dirty.clear();
    }

    /// The pages that may differ between the two images, ascending.
    pub fn dirty_pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.dirty.pages()
    }

    /// The current bytes of `[start, end)`, reading zeros past the current end: what a
    /// page written back after a shrink or before a growth shows.
    pub fn current_padded(&self, start: usize, end: usize) -> Vec<u8> {
        let mut out = vec![0; end - start];
        if start < self.current.len() {
            let have = end.min(self.current.len());
            out[..have - start].copy_from_slice(&self.current[start..have]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_copies_dirty_pages_and_size() {
        let mut f = FileData::default();
        f.write(10_000, b"abc");
        assert_eq!(f.len(), 10_003);
        assert!(f.durable().is_empty());
        f.sync();
        assert_eq!(f.durable(), f.current());
        f.set_len(5);
        f.write(0, b"xy");
        assert_eq!(f.durable().len(), 10_003);
        f.sync();
        assert_eq!(f.durable(), &[b'x', b'y', 0, 0, 0]);
    }

    #[test]
    fn shrink_then_grow_reads_zeros_and_syncs_them() {
        let mut f = FileData::default();
        f.write(0, &[7; 3 * PAGE]);
        f.sync();
        f.set_len(100);
        f.set_len(3 * PAGE as u64);
        assert!(f.current()[100..].iter().all(|&b| b == 0));
        f.sync();
        assert_eq!(f.durable(), f.current());
    }

    #[test]
    fn zero_range_respects_keep_size() {
        let mut f = FileData::default();
        f.write(0, &[1; 100]);
        f.zero(50, 100, true);
        assert_eq!(f.len(), 100);
        assert!(f.current()[50..].iter().all(|&b| b == 0));
        f.zero(0, 200, false);
        assert_eq!(f.len(), 200);
    }
}
