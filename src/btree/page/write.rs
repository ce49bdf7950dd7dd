//! Writing whole pages: the one page writer, from cells.

use super::*;

/// What a page is written from: a cell as a page holds it, copied as it is, or a new entry,
/// encoded by the one encoder (`write_cell`). One page writer takes both.
pub(crate) trait CellSource {
    /// The bytes of its cell, its slot not included.
    fn cell_len(&self) -> usize;
    /// The type of page that holds it.
    fn page_type(&self) -> u8;
    fn key(&self) -> &[u8];
    /// Writes the cell into `dst` (of `cell_len` bytes).
    fn write(&self, dst: &mut [u8]);
}

impl CellSource for Cell<'_> {
    #[inline(always)]
    fn cell_len(&self) -> usize {
        self.raw.len()
    }

    #[inline(always)]
    fn page_type(&self) -> u8 {
        Cell::page_type(self)
    }

    #[inline(always)]
    fn key(&self) -> &[u8] {
        Cell::key(self)
    }

    #[inline(always)]
    fn write(&self, dst: &mut [u8]) {
        copy_short(dst, self.raw)
    }
}

impl CellSource for Entry<'_> {
    #[inline(always)]
    fn cell_len(&self) -> usize {
        self.cell_bytes()
    }

    #[inline(always)]
    fn page_type(&self) -> u8 {
        Entry::page_type(self)
    }

    #[inline(always)]
    fn key(&self) -> &[u8] {
        self.key
    }

    #[inline(always)]
    fn write(&self, dst: &mut [u8]) {
        write_cell(dst, self)
    }
}

/// Writes a whole page from cells in order, all of `page_type`: cells of other pages, or new
/// entries (a bulk load's), encoded as they are written. Panics if they do not fit: callers
/// decide with [`fits`], which uses the same accounting.
pub(crate) fn build(out: &mut [u8], page_type: u8, leftmost_child: u64, cells: &[impl CellSource]) -> usize {
    let page_bytes = out.len();
    let Some(mut w) = PageWriter::new(out, page_type, leftmost_child, cells.len()) else { unfit(page_bytes) };
    for c in cells.iter().rev() {
        w.push_cell(c).unwrap_or_else(|| unfit(page_bytes));
    }
    w.finish()
}

#[cold]
pub(super) fn unfit(page_bytes: usize) -> ! {
    panic!("entries do not fit a {page_bytes}-byte page")
}

/// The page writer: the header, then the cells from the last to the first, each growing down
/// from the page's end and its slot filled from the slot array's end. Every page image is
/// written by it. The first entry's cell lies lowest, next to the free gap: removing entries
/// from the front of a page (ascending removes, the common sequential case) then moves no
/// other cell (`remove_in_place`).
pub(super) struct PageWriter<'o> {
    out: &'o mut [u8],
    /// Where the last cell written starts.
    end: usize,
    /// The offset of the slot last written (the slot array's end before the first).
    slot: usize,
    slots_end: usize,
    slot_bytes: usize,
}

impl<'o> PageWriter<'o> {
    /// A writer of a page of `count` entries, header written; `None` when their slots alone
    /// do not fit.
    pub(super) fn new(out: &'o mut [u8], page_type: u8, leftmost_child: u64, count: usize) -> Option<PageWriter<'o>> {
        let slot_bytes = slot_bytes(page_type);
        let slots_end = HEADER_BYTES + count * slot_bytes;
        if slots_end > out.len() || count > u16::MAX as usize {
            return None;
        }
        out[0] = page_type;
        out[1] = 0;
        out[2..4].copy_from_slice(&(count as u16).to_le_bytes());
        out[8..16].copy_from_slice(&leftmost_child.to_le_bytes());
        Some(PageWriter { end: out.len(), out, slot: slots_end, slots_end, slot_bytes })
    }

    /// Adds the cell before the last one added (the page's last first), of `len` bytes written
    /// by `write`, whose key's prefix word is `word` (an internal page records it; a leaf does
    /// not); `None` when it does not fit (or is one more than the count given).
    #[inline(always)]
    fn push(&mut self, len: usize, word: u64, write: impl FnOnce(&mut [u8])) -> Option<()> {
        // Cells grow down towards the slot array: it is all the room there is.
        if self.end < self.slots_end + len || self.slot <= HEADER_BYTES {
            return None;
        }
        self.end -= len;
        self.slot -= self.slot_bytes;
        write(&mut self.out[self.end..self.end + len]);
        write_slot(&mut self.out[self.slot..self.slot + self.slot_bytes], self.end, word);
        Some(())
    }

    /// Adds a cell as [`PageWriter::push`] does: copied, or encoded from a new entry.
    #[inline(always)]
    pub(super) fn push_cell(&mut self, c: &impl CellSource) -> Option<()> {
        debug_assert_eq!(self.slot_bytes, slot_bytes(c.page_type()), "a cell of another kind of page");
        let word = if self.slot_bytes == WORD_SLOT_BYTES { prefix_word(c.key()) } else { 0 };
        self.push(c.cell_len(), word, |dst| c.write(dst))
    }

    /// Records where the cells start; returns the page's length.
    pub(super) fn finish(self) -> usize {
        debug_assert_eq!(self.slot, HEADER_BYTES, "fewer cells than the count given");
        self.out[4..8].copy_from_slice(&(self.end as u32).to_le_bytes());
        self.out.len()
    }
}

/// Writes a slot (`slot` is its page's slot size): the cell's offset, and in an internal page
/// its key's prefix word.
#[inline(always)]
pub(super) fn write_slot(slot: &mut [u8], offset: usize, word: u64) {
    slot[..SLOT_BYTES].copy_from_slice(&(offset as u16).to_le_bytes());
    if slot.len() == WORD_SLOT_BYTES {
        slot[SLOT_BYTES..].copy_from_slice(&word.to_le_bytes());
    }
}

/// Copies a short slice (`dst` and `src` of one length): a cell, or a scan's key or value.
/// Most are a few dozen bytes, and pages are rebuilt (and batches filled) one at a time: two
/// overlapping fixed-size moves cost less than a call to memcpy.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (17..=32).contains(&n) {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if (33..=64).contains(&n) {
        dst[..32].copy_from_slice(&src[..32]);
        dst[n - 32..].copy_from_slice(&src[n - 32..]);
    } else {
        dst.copy_from_slice(src);
    }
}

#[inline]
pub(super) fn write_cell(cell: &mut [u8], e: &Entry<'_>) {
    let mut at = put_varint(cell, e.key.len() as u64);
    cell[at..at + e.key.len()].copy_from_slice(e.key);
    at += e.key.len();
    match e.payload {
        Payload::Child(c) => cell[at..at + 8].copy_from_slice(&c.to_le_bytes()),
        Payload::Leaf(v) => {
            at += put_varint(&mut cell[at..], v.header());
            match v {
                Value::Inline(bytes) => cell[at..at + bytes.len()].copy_from_slice(bytes),
                Value::Overflow(id, _) => cell[at..at + 8].copy_from_slice(&id.to_le_bytes()),
            }
        }
    }
}
