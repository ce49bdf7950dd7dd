//! The B+ tree's page layout and its one byte-accounting function.
//!
//! A page is a store node of the tree's page size. Layout, little-endian:
//! ```text
//! 0   u8  page type: 1 leaf, 2 internal
//! 1   u8  0
//! 2   u16 entry count
//! 4   u32 start of the cell area (cells grow down from the page's end; = page size if empty)
//! 8   u64 internal: the leftmost child's node id (keys below the first separator); leaf: 0
//! 16  slot array, in key order (grows up): count slots of
//!       leaf:     u16 cell offset
//!       internal: u16 cell offset, u64 the separator's prefix word (little-endian): its
//!                 first eight bytes as a big-endian number, zero-padded ([`prefix_word`])
//!     ... free space ...
//!     cells (lengths are LEB128 varints: one byte below 128):
//!       leaf:     varint key length, key, varint (value length << 1 | overflow),
//!                 then the value bytes (inline) or a u64 node id holding them (overflow)
//!       internal: varint key length, key (the separator), u64 child node id
//! ```
//! A 17-byte key with an 8-byte value takes 29 bytes, its slot included: 140 per 4 KiB page.
//! An internal page's search compares a probe with the prefix words in its slot array, which
//! lie together in a few cache lines, and reads a separator's cell only when the words tie.
//! (Page type 2 was the internal page without prefix words, in trees of anchor version 1.)
//! Every size decision uses [`entry_bytes`]: the split decision and the page writer cannot
//! disagree about whether entries fit (the root cause of Kizuna's RECORD_TOO_LARGE).

use crate::error::{Error, Result};

pub(crate) const HEADER_BYTES: usize = 16;
/// A leaf's slot: its cell's offset.
const SLOT_BYTES: usize = 2;
/// An internal page's slot: its cell's offset and its separator's prefix word.
const WORD_SLOT_BYTES: usize = SLOT_BYTES + 8;
/// The CPU's cache line (x86-64, most ARM cores).
const CACHE_LINE: usize = 64;
pub(crate) const TYPE_LEAF: u8 = 1;
pub(crate) const TYPE_INTERNAL: u8 = 3;
const OVERFLOW_ID_BYTES: usize = 8;

/// Bytes of `v` as a LEB128 varint.
#[inline]
fn varint_bytes(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut [u8], mut v: u64) -> usize {
    if v < 0x80 {
        out[0] = v as u8;
        return 1;
    }
    let mut i = 0;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        out[i] = byte | if v != 0 { 0x80 } else { 0 };
        i += 1;
        if v == 0 {
            return i;
        }
    }
}

/// (value, bytes read), or None if the varint runs past `b` or past 10 bytes.
fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A key's first eight bytes as one big-endian word, zero-padded. Where two keys' words
/// differ they order as the keys do bytewise (shorter first on a common prefix: the padding
/// sorts first), so most comparisons in a bytewise tree are one integer compare.
#[inline]
pub(crate) fn prefix_word(k: &[u8]) -> u64 {
    if let Some(p) = k.first_chunk::<8>() {
        return u64::from_be_bytes(*p);
    }
    let mut w = 0u64;
    for (i, &byte) in k.iter().enumerate() {
        w |= u64::from(byte) << (56 - 8 * i);
    }
    w
}

/// The bits of a big-endian word that the first `len` bytes fill (all of them from 8 on).
#[inline(always)]
fn word_mask(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        !(u64::MAX >> (8 * len))
    }
}

/// How a leaf stores a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Inline(&'a [u8]),
    /// In its own store node: (node id, length).
    Overflow(u64, u32),
}

impl Value<'_> {
    /// The varint header: length << 1, with the low bit set for an overflow value.
    #[inline]
    fn header(&self) -> u64 {
        match self {
            Value::Inline(v) => (v.len() as u64) << 1,
            Value::Overflow(_, len) => u64::from(*len) << 1 | 1,
        }
    }

    #[inline]
    fn field_bytes(&self) -> usize {
        varint_bytes(self.header())
            + match self {
                Value::Inline(v) => v.len(),
                Value::Overflow(..) => OVERFLOW_ID_BYTES,
            }
    }
}

/// What a cell holds besides its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    Leaf(Value<'a>),
    Child(u64),
}

/// THE byte-accounting function: the bytes an entry takes in a page, its slot included (an
/// internal entry's slot holds its separator's prefix word too).
/// `fits`, the split policy and the page writer all use it, so they always agree.
#[inline]
pub(crate) fn entry_bytes(key_len: usize, payload: &Payload<'_>) -> usize {
    SLOT_BYTES
        + varint_bytes(key_len as u64)
        + key_len
        + match payload {
            Payload::Leaf(v) => v.field_bytes(),
            Payload::Child(_) => 8 + (WORD_SLOT_BYTES - SLOT_BYTES),
        }
}

/// Bytes available to entries in a page of `page_bytes`.
pub(crate) fn capacity(page_bytes: usize) -> usize {
    page_bytes - HEADER_BYTES
}

/// An entry in a page, borrowed from it or from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub key: &'a [u8],
    pub payload: Payload<'a>,
}

impl Entry<'_> {
    #[inline]
    pub fn bytes(&self) -> usize {
        entry_bytes(self.key.len(), &self.payload)
    }

    /// The bytes of its cell: [`Entry::bytes`] less its slot.
    #[inline]
    fn cell_bytes(&self) -> usize {
        self.bytes() - slot_bytes(self.page_type())
    }

    /// The type of page that holds such an entry.
    #[inline]
    fn page_type(&self) -> u8 {
        match self.payload {
            Payload::Leaf(_) => TYPE_LEAF,
            Payload::Child(_) => TYPE_INTERNAL,
        }
    }
}

/// The bytes of a slot in a page of this type.
#[inline]
fn slot_bytes(page_type: u8) -> usize {
    if page_type == TYPE_LEAF {
        SLOT_BYTES
    } else {
        WORD_SLOT_BYTES
    }
}

/// A leaf entry as its page stores it: the cell's bytes, moved between pages by one copy
/// (a split or shift rewrites pages without decoding and re-encoding every entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell<'a> {
    raw: &'a [u8],
    key_at: u8,
    key_len: u16,
}

impl<'a> Cell<'a> {
    #[inline]
    pub fn key(&self) -> &'a [u8] {
        &self.raw[self.key_at as usize..self.key_at as usize + self.key_len as usize]
    }

    /// The bytes the cell takes in a page, its slot included: [`entry_bytes`] of its entry.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.raw.len() + SLOT_BYTES
    }

    /// Encodes an entry as a cell into `buf` (cleared first).
    pub fn encode(e: &Entry<'_>, buf: &'a mut Vec<u8>) -> Cell<'a> {
        buf.clear();
        debug_assert_eq!(e.page_type(), TYPE_LEAF, "cells are a leaf's");
        buf.resize(e.cell_bytes(), 0);
        write_cell(buf, e);
        Cell { raw: buf, key_at: varint_bytes(e.key.len() as u64) as u8, key_len: e.key.len() as u16 }
    }
}

#[cold]
#[inline(never)]
fn bad_page(page_id: u64, what: String) -> Error {
    Error::corrupt(format!("B+ tree page {page_id:#x}"), 0, what)
}

/// A leaf's cells with one more, `cell`, at index `at`: what a new key's slow path cuts in
/// two. Its cells are read where they lie, one at a time, and only those a shift needs.
#[derive(Clone, Copy)]
pub(crate) struct LeafWithInsert<'a> {
    pub page: PageRef<'a>,
    pub at: usize,
    pub cell: Cell<'a>,
}

impl<'a> LeafWithInsert<'a> {
    pub fn len(&self) -> usize {
        self.page.len() + 1
    }

    /// Bytes of all the cells, slots included (the page has no holes: it is a leaf).
    pub fn bytes(&self) -> usize {
        self.page.occupied_bytes() + self.cell.bytes()
    }

    #[inline(always)]
    pub fn get(&self, j: usize) -> Result<Cell<'a>> {
        match j.cmp(&self.at) {
            std::cmp::Ordering::Less => self.page.leaf_cell(j),
            std::cmp::Ordering::Equal => Ok(self.cell),
            std::cmp::Ordering::Greater => self.page.leaf_cell(j - 1),
        }
    }

    /// Writes cells `range` as a whole leaf into `out`, reading each cell once. A damaged
    /// cell, or cells that do not fit (a damaged page's lengths), are `Corrupt`, with `out`
    /// partly written (pass a buffer).
    pub fn build(&self, out: &mut [u8], range: std::ops::Range<usize>) -> Result<()> {
        let unfit = || self.page.corrupt(0, "cells that do not fit a page");
        let mut w = PageWriter::new(out, TYPE_LEAF, 0, range.len()).ok_or_else(unfit)?;
        // Last first (see `PageWriter`): the page's cells after the new one, the new one, the
        // page's cells before it.
        let after = range.start.max(self.at + 1);
        for i in (after - 1..range.end.max(after) - 1).rev() {
            w.push_cell(self.page.leaf_cell(i)?.raw).ok_or_else(unfit)?;
        }
        if range.contains(&self.at) {
            w.push_cell(self.cell.raw).ok_or_else(unfit)?;
        }
        for i in (range.start..range.end.min(self.at)).rev() {
            w.push_cell(self.page.leaf_cell(i)?.raw).ok_or_else(unfit)?;
        }
        w.finish();
        Ok(())
    }
}

/// How a search compares a page's entry with its probe. A trait rather than a closure so
/// that the comparison is inlined into the search loop.
trait KeyOrder {
    /// How entry i's key compares with the probe.
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering>;
}

/// Any order, given as `order(key)`: how a stored key compares with the probe.
struct ByKey<F>(F);

impl<F: Fn(&[u8]) -> std::cmp::Ordering> KeyOrder for ByKey<F> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        Ok((self.0)(page.key(i)?))
    }
}

/// Bytewise order against `key`, whose [`prefix_word`] is `word`.
struct Bytewise<'k> {
    word: u64,
    key: &'k [u8],
}

impl KeyOrder for Bytewise<'_> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        page.cmp_bytewise(i, self.word, self.key)
    }
}

/// Bytewise order against `key`, whose [`prefix_word`] is `word`, in an internal page: by the
/// words its slots record.
struct SlotWords<'k> {
    word: u64,
    key: &'k [u8],
}

impl KeyOrder for SlotWords<'_> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        match page.recorded_word(i).map(|w| w.cmp(&self.word)) {
            Some(std::cmp::Ordering::Equal) | None => page.cmp_bytewise(i, self.word, self.key),
            Some(unequal) => Ok(unequal),
        }
    }
}

/// Reads a page, checking its layout as it goes: a damaged page is `Corrupt` naming the page,
/// never a panic or an out-of-bounds read.
#[derive(Clone, Copy)]
pub(crate) struct PageRef<'a> {
    bytes: &'a [u8],
    page_id: u64,
    /// A leaf's slot array (empty in an internal page): the entry count is its length, so an
    /// index below it needs no check.
    slots: &'a [[u8; SLOT_BYTES]],
    /// An internal page's slot array (empty in a leaf).
    word_slots: &'a [[u8; WORD_SLOT_BYTES]],
    cells_start: usize,
}

impl<'a> PageRef<'a> {
    #[inline(always)]
    pub fn parse(bytes: &'a [u8], page_id: u64) -> Result<PageRef<'a>> {
        let (Some(&ty), Some(count), Some(cells)) =
            (bytes.first(), bytes.get(2..4), bytes.get(4..8).and_then(<[u8]>::first_chunk::<4>))
        else {
            return Err(bad_page(page_id, format!("{} bytes, shorter than a page header", bytes.len())));
        };
        if ty != TYPE_LEAF && ty != TYPE_INTERNAL {
            return Err(bad_page(page_id, format!("unknown page type {ty}")));
        }
        let count = u16::from_le_bytes([count[0], count[1]]) as usize;
        let cells = u32::from_le_bytes(*cells) as usize;
        let slots_end = HEADER_BYTES + count * slot_bytes(ty);
        if slots_end > cells || cells > bytes.len() {
            return Err(bad_page(
                page_id,
                format!("{count} slots and cells from {cells} do not fit {} bytes", bytes.len()),
            ));
        }
        let array = &bytes[HEADER_BYTES..slots_end];
        let (slots, word_slots) = if ty == TYPE_LEAF {
            (array.as_chunks::<SLOT_BYTES>().0, &[][..])
        } else {
            (&[][..], array.as_chunks::<WORD_SLOT_BYTES>().0)
        };
        Ok(PageRef { bytes, page_id, slots, word_slots, cells_start: cells })
    }

    /// The whole page.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn is_leaf(&self) -> bool {
        self.bytes[0] == TYPE_LEAF
    }

    pub fn len(&self) -> usize {
        // One of the two is empty.
        self.slots.len() + self.word_slots.len()
    }

    /// Where the slot array ends (and the free gap begins).
    fn slots_end(&self) -> usize {
        HEADER_BYTES + self.slots.len() * SLOT_BYTES + self.word_slots.len() * WORD_SLOT_BYTES
    }

    /// The prefix word internal entry i's slot records (None in a leaf, or past the end).
    #[inline(always)]
    fn recorded_word(&self, i: usize) -> Option<u64> {
        self.word_slots.get(i).map(|s| u64::from_le_bytes([s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9]]))
    }

    /// Every internal entry's recorded prefix word is its separator's: `Corrupt` otherwise
    /// (searches trust the words; `verify` checks them).
    pub fn check_words(&self) -> Result<()> {
        for i in 0..self.word_slots.len() {
            if self.recorded_word(i) != Some(prefix_word(self.key(i)?)) {
                return Err(self.corrupt(i, "its slot's prefix word is not its separator's"));
            }
        }
        Ok(())
    }

    pub fn leftmost_child(&self) -> u64 {
        u64::from_le_bytes(self.bytes[8..16].try_into().expect("8 bytes"))
    }

    fn cells_start(&self) -> usize {
        self.cells_start
    }

    #[cold]
    #[inline(never)]
    fn corrupt(&self, i: usize, what: &str) -> Error {
        Error::corrupt(
            format!("B+ tree page {:#x}", self.page_id),
            (HEADER_BYTES + i * slot_bytes(self.bytes[0])) as u64,
            format!("entry {i}: {what}"),
        )
    }

    #[inline(always)]
    fn cell_offset(&self, i: usize) -> Result<usize> {
        let slot = match (self.slots.get(i), self.word_slots.get(i)) {
            (Some(s), _) => *s,
            (None, Some(s)) => [s[0], s[1]],
            (None, None) => return Err(self.missing_entry(i)),
        };
        let off = u16::from_le_bytes(slot) as usize;
        if off < self.cells_start() || off >= self.bytes.len() {
            return Err(self.corrupt(i, "cell offset outside the cell area"));
        }
        Ok(off)
    }

    #[cold]
    #[inline(never)]
    fn missing_entry(&self, i: usize) -> Error {
        self.corrupt(i.min(self.len()), &format!("no entry {i} in a page of {}", self.len()))
    }

    #[inline]
    fn varint(&self, i: usize, at: usize) -> Result<(usize, usize)> {
        // One byte covers every key under 128 bytes: the common case, decoded inline.
        if let Some(&b) = self.bytes.get(at) {
            if b < 0x80 {
                return Ok((b as usize, 1));
            }
        }
        let (v, n) =
            get_varint(&self.bytes[at.min(self.bytes.len())..]).ok_or_else(|| self.corrupt(i, "bad length"))?;
        let v = usize::try_from(v)
            .ok()
            .filter(|&v| v <= self.bytes.len() << 1 | 1)
            .ok_or_else(|| self.corrupt(i, "length beyond the page"))?;
        Ok((v, n))
    }

    #[inline]
    fn take(&self, i: usize, at: usize, n: usize) -> Result<&'a [u8]> {
        match self.bytes.get(at..).and_then(|rest| rest.get(..n)) {
            Some(b) => Ok(b),
            None => Err(self.corrupt(i, "cell runs past the page")),
        }
    }

    #[inline]
    fn take_array<const N: usize>(&self, i: usize, at: usize) -> Result<&'a [u8; N]> {
        match self.bytes.get(at..).and_then(<[u8]>::first_chunk::<N>) {
            Some(b) => Ok(b),
            None => Err(self.corrupt(i, "cell runs past the page")),
        }
    }

    #[inline(always)]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        // A key under 128 bytes (one length byte) is the common case: one bounds check.
        let cell = &self.bytes[off..];
        if let Some((&len, rest)) = cell.split_first() {
            if len < 0x80 {
                return rest.get(..len as usize).ok_or_else(|| self.corrupt(i, "cell runs past the page"));
            }
        }
        let (len, n) = self.varint(i, off)?;
        self.take(i, off + n, len)
    }

    #[inline]
    pub fn entry(&self, i: usize) -> Result<Entry<'a>> {
        let off = self.cell_offset(i)?;
        let (key_len, n) = self.varint(i, off)?;
        let key = self.take(i, off + n, key_len)?;
        let at = off + n + key_len;
        let payload = if self.is_leaf() {
            let (header, n) = self.value_header(i, at)?;
            let (len, at) = (header >> 1, at + n);
            if header & 1 == 0 {
                let len = usize::try_from(len).map_err(|_| self.corrupt(i, "value length"))?;
                Payload::Leaf(Value::Inline(self.take(i, at, len)?))
            } else {
                let id = u64::from_le_bytes(*self.take_array::<8>(i, at)?);
                let len = u32::try_from(len).map_err(|_| self.corrupt(i, "overflow value length"))?;
                Payload::Leaf(Value::Overflow(id, len))
            }
        } else {
            Payload::Child(u64::from_le_bytes(*self.take_array::<8>(i, at)?))
        };
        Ok(Entry { key, payload })
    }

    /// Entry i's value in a page known to be a leaf: found from its cell's lengths, the key
    /// passed over (a lookup has just compared it).
    #[inline(always)]
    pub fn leaf_value(&self, i: usize) -> Result<Value<'a>> {
        Ok(self.leaf_entry(i)?.1)
    }

    /// Entry i of a page known to be a leaf, as (key, value), from its cell's lengths: what a
    /// scan reads of every entry.
    #[inline(always)]
    pub fn leaf_entry(&self, i: usize) -> Result<(&'a [u8], Value<'a>)> {
        let cell = self.leaf_cell(i)?;
        let key = cell.key();
        // The cell ends where its value does: after the value header come exactly the value's
        // bytes, or an overflow value's node id.
        let rest = &cell.raw[cell.key_at as usize + cell.key_len as usize..];
        let (header, n) = match rest.first() {
            Some(&b) if b < 0x80 => (u64::from(b), 1),
            _ => get_varint(rest).ok_or_else(|| self.corrupt(i, "bad value header"))?,
        };
        let body = &rest[n..];
        if header & 1 == 0 {
            return Ok((key, Value::Inline(body)));
        }
        let id = body.first_chunk::<8>().ok_or_else(|| self.corrupt(i, "cell runs past the page"))?;
        let len = u32::try_from(header >> 1).map_err(|_| self.corrupt(i, "overflow value length"))?;
        Ok((key, Value::Overflow(u64::from_le_bytes(*id), len)))
    }

    /// The child a probe belongs to in an internal page: the entry index of the last
    /// separator <= the probe, or None for the leftmost child. `order(separator)` compares a
    /// separator with the probe.
    #[inline]
    pub fn child_for(&self, order: impl Fn(&[u8]) -> std::cmp::Ordering) -> Result<(Option<usize>, u64)> {
        self.child_at(&ByKey(order))
    }

    /// `child_for` with a bytewise probe `key` whose [`prefix_word`] is `word`: compared with
    /// the words the slots record, a separator's cell read only where they tie.
    #[inline]
    pub fn child_for_bytewise(&self, word: u64, key: &[u8]) -> Result<(Option<usize>, u64)> {
        self.child_at(&SlotWords { word, key })
    }

    /// `child_for`, with `order` comparing separator j with the probe.
    #[inline(always)]
    fn child_at(&self, order: &impl KeyOrder) -> Result<(Option<usize>, u64)> {
        debug_assert!(!self.is_leaf());
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if order.at(self, mid)? == std::cmp::Ordering::Greater {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo == 0 {
            Ok((None, self.leftmost_child()))
        } else {
            Ok((Some(lo - 1), self.child(lo - 1)?))
        }
    }

    /// The child at position `pos` of an internal page: 0 is the leftmost child, j + 1 the
    /// child of separator j (the positions a descent's path records).
    #[inline]
    pub fn child_at_position(&self, pos: usize) -> Result<u64> {
        if pos == 0 && !self.is_leaf() {
            return Ok(self.leftmost_child());
        }
        self.child(pos.saturating_sub(1))
    }

    /// The child id of internal entry i, read without decoding the rest of its cell.
    #[inline(always)]
    pub fn child(&self, i: usize) -> Result<u64> {
        if self.is_leaf() {
            return Err(self.corrupt(i, "leaf cell in an internal page"));
        }
        let off = self.cell_offset(i)?;
        let (key_len, n) = self.varint(i, off)?;
        Ok(u64::from_le_bytes(*self.take_array::<8>(i, off + n + key_len)?))
    }

    /// `Ok(i)` when entry i's key equals the probe, `Err(i)` for where it would go.
    /// `order(key)` compares a stored key with the probe.
    #[inline]
    pub fn search(&self, order: impl Fn(&[u8]) -> std::cmp::Ordering) -> Result<std::result::Result<usize, usize>> {
        self.search_at(&ByKey(order))
    }

    /// `search` with a bytewise probe: see [`PageRef::cmp_bytewise`].
    #[inline]
    pub fn search_bytewise(&self, word: u64, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        self.search_at(&Bytewise { word, key })
    }

    /// `search`, with `order` comparing entry i's key with the probe.
    #[inline(always)]
    fn search_at(&self, order: &impl KeyOrder) -> Result<std::result::Result<usize, usize>> {
        let (mut lo, mut hi) = (0usize, self.len());
        // A leaf is often not in the cache (a large tree's leaves outnumber the cache's
        // lines): the slot array's lines are requested at once, and each probe requests the
        // cells of both probes that may follow it, so the misses overlap instead of queueing.
        for line in (CACHE_LINE..self.slots_end()).step_by(CACHE_LINE) {
            crate::os::prefetch(self.bytes, line);
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            self.prefetch_cell((lo + mid) / 2);
            self.prefetch_cell((mid + 1 + hi) / 2);
            match order.at(self, mid)? {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// How entry i's key compares, bytewise, with a probe `key` whose [`prefix_word`] is
    /// `word`. A key under 128 bytes whose cell has eight bytes after its length byte (every
    /// cell but a short one at the page's very end) gives its word in one load, masked to its
    /// length: no slice of it is made, and only keys whose words tie are compared whole.
    #[inline(always)]
    pub fn cmp_bytewise(&self, i: usize, word: u64, key: &[u8]) -> Result<std::cmp::Ordering> {
        let off = self.cell_offset(i)?;
        let cell = &self.bytes[off..];
        if let (Some(&len), Some(w)) = (cell.first(), cell.get(1..).and_then(<[u8]>::first_chunk::<8>)) {
            let len = len as usize;
            if len < 0x80 {
                let stored = u64::from_be_bytes(*w) & word_mask(len);
                if stored != word {
                    if len >= cell.len() {
                        return Err(self.corrupt(i, "cell runs past the page"));
                    }
                    return Ok(stored.cmp(&word));
                }
            }
        }
        Ok(self.key(i)?.cmp(key))
    }

    /// Requests the cache line of entry i's cell (its key's first bytes), if there is one.
    #[inline(always)]
    fn prefetch_cell(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            crate::os::prefetch(self.bytes, u16::from_le_bytes(*slot) as usize);
        }
    }

    /// A leaf value's header varint at `at`: (length << 1 | overflow, bytes read).
    #[inline]
    fn value_header(&self, i: usize, at: usize) -> Result<(u64, usize)> {
        match self.bytes.get(at) {
            Some(&b) if b < 0x80 => Ok((u64::from(b), 1)),
            _ => get_varint(self.bytes.get(at..).unwrap_or(&[])).ok_or_else(|| self.corrupt(i, "bad value header")),
        }
    }

    /// Entry i's cell of a page known to be a leaf: its bytes found from the lengths it
    /// records, nothing decoded.
    #[inline(always)]
    fn leaf_cell(&self, i: usize) -> Result<Cell<'a>> {
        let off = self.cell_offset(i)?;
        // The common cell: a key under 128 bytes and an inline value under 64 (or an
        // overflow value's id), one length byte each.
        let cell = &self.bytes[off..];
        if let Some(&key_len) = cell.first() {
            let key_len = key_len as usize;
            if key_len < 0x80 {
                if let Some(&header) = cell.get(1 + key_len) {
                    if header < 0x80 {
                        let value = if header & 1 == 0 { (header >> 1) as usize } else { OVERFLOW_ID_BYTES };
                        if let Some(raw) = cell.get(..2 + key_len + value) {
                            return Ok(Cell { raw, key_at: 1, key_len: key_len as u16 });
                        }
                    }
                }
            }
        }
        self.leaf_cell_decoded(i, off)
    }

    /// `leaf_cell` for cells with longer lengths, and damaged ones.
    #[cold]
    #[inline(never)]
    fn leaf_cell_decoded(&self, i: usize, off: usize) -> Result<Cell<'a>> {
        let (key_len, n) = self.varint(i, off)?;
        let at = off + n + key_len;
        let (header, m) = self.value_header(i, at)?;
        let value = if header & 1 == 0 { header >> 1 } else { OVERFLOW_ID_BYTES as u64 };
        let value = usize::try_from(value).map_err(|_| self.corrupt(i, "value length"))?;
        let raw = self.take(i, off, (n + key_len + m).saturating_add(value))?;
        // A page is at most 64 KiB: the key's length fits a u16, its varint a u8.
        Ok(Cell { raw, key_at: n as u8, key_len: key_len as u16 })
    }

    /// The bytes leaf entry i takes, its slot included, read from its cell's lengths.
    pub fn leaf_cell_bytes(&self, i: usize) -> Result<usize> {
        Ok(self.leaf_cell(i)?.bytes())
    }

    pub fn cells(&self) -> Result<Vec<Cell<'a>>> {
        if !self.is_leaf() {
            return Err(self.corrupt(0, "cells read as a leaf's in an internal page"));
        }
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            out.push(self.leaf_cell(i)?);
        }
        Ok(out)
    }

    /// Bytes the entries use (slots included), by the byte-accounting function.
    pub fn used_bytes(&self) -> Result<usize> {
        (0..self.len()).map(|i| self.entry(i).map(|e| e.bytes())).sum()
    }

    pub fn entries(&self) -> Result<Vec<Entry<'a>>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            out.push(self.entry(i)?);
        }
        Ok(out)
    }

    /// Contiguous free bytes between the slot array and the cells.
    pub fn gap_bytes(&self) -> usize {
        self.cells_start() - self.slots_end()
    }

    /// The page's capacity less its gap: the bytes its entries use when its cell area has no
    /// holes, which a leaf's never has (every leaf writer packs cells: `PageWriter`,
    /// `insert_in_place`, `insert_cells_in_place`), and an upper bound otherwise.
    pub fn occupied_bytes(&self) -> usize {
        capacity(self.bytes.len()) - self.gap_bytes()
    }
}

/// Writes a whole page from entries in order. Panics if they do not fit: callers decide with
/// [`fits`], which uses the same accounting.
pub(crate) fn build(out: &mut [u8], page_type: u8, leftmost_child: u64, entries: &[Entry<'_>]) -> usize {
    let page_bytes = out.len();
    let Some(mut w) = PageWriter::new(out, page_type, leftmost_child, entries.len()) else { unfit(page_bytes) };
    for e in entries.iter().rev() {
        debug_assert_eq!(e.page_type(), page_type, "an entry of another kind of page");
        w.push(e.cell_bytes(), prefix_word(e.key), |dst| write_cell(dst, e)).unwrap_or_else(|| unfit(page_bytes));
    }
    w.finish()
}

/// Writes a whole page from cells in order, as [`build`] does from entries.
pub(crate) fn build_cells(out: &mut [u8], page_type: u8, leftmost_child: u64, cells: &[Cell<'_>]) -> usize {
    let page_bytes = out.len();
    let Some(mut w) = PageWriter::new(out, page_type, leftmost_child, cells.len()) else { unfit(page_bytes) };
    for c in cells.iter().rev() {
        w.push_cell(c.raw).unwrap_or_else(|| unfit(page_bytes));
    }
    w.finish()
}

#[cold]
fn unfit(page_bytes: usize) -> ! {
    panic!("entries do not fit a {page_bytes}-byte page")
}

/// The page writer: the header, then the cells from the last to the first, each growing down
/// from the page's end and its slot filled from the slot array's end. Every page image is
/// written by it. The first entry's cell lies lowest, next to the free gap: removing entries
/// from the front of a page (ascending removes, the common sequential case) then moves no
/// other cell (`remove_in_place`).
struct PageWriter<'o> {
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
    fn new(out: &'o mut [u8], page_type: u8, leftmost_child: u64, count: usize) -> Option<PageWriter<'o>> {
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

    #[inline(always)]
    fn push_cell(&mut self, raw: &[u8]) -> Option<()> {
        debug_assert_eq!(self.slot_bytes, SLOT_BYTES, "cells are a leaf's");
        self.push(raw.len(), 0, |dst| copy_cell(dst, raw))
    }

    /// Records where the cells start; returns the page's length.
    fn finish(self) -> usize {
        debug_assert_eq!(self.slot, HEADER_BYTES, "fewer cells than the count given");
        self.out[4..8].copy_from_slice(&(self.end as u32).to_le_bytes());
        self.out.len()
    }
}

/// Writes a slot (`slot` is its page's slot size): the cell's offset, and in an internal page
/// its key's prefix word.
#[inline(always)]
fn write_slot(slot: &mut [u8], offset: usize, word: u64) {
    slot[..SLOT_BYTES].copy_from_slice(&(offset as u16).to_le_bytes());
    if slot.len() == WORD_SLOT_BYTES {
        slot[SLOT_BYTES..].copy_from_slice(&word.to_le_bytes());
    }
}

/// Copies a cell (`dst` and `src` of one length). Most cells are a few dozen bytes, and pages
/// are rebuilt a cell at a time: two overlapping fixed-size moves cost less than a call to
/// memcpy.
#[inline(always)]
fn copy_cell(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (16..=32).contains(&n) {
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
fn write_cell(cell: &mut [u8], e: &Entry<'_>) {
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

/// Whether entries of `total_bytes` fit a page.
pub(crate) fn fits(total_bytes: usize, page_bytes: usize) -> bool {
    total_bytes <= capacity(page_bytes)
}

/// Inserts an entry at slot `index` in place, when the contiguous gap holds it. Returns false
/// (page untouched) when it does not: the caller then rebuilds or splits.
pub(crate) fn insert_in_place(page: &mut [u8], page_id: u64, index: usize, e: &Entry<'_>) -> Result<bool> {
    let p = PageRef::parse(page, page_id)?;
    if e.page_type() != page[0] {
        return Err(p.corrupt(0, &format!("a {} entry for this page", if p.is_leaf() { "child" } else { "leaf" })));
    }
    if p.gap_bytes() < e.bytes() || index > p.len() {
        return Ok(false);
    }
    let (count, cells, slot_bytes) = (p.len(), p.cells_start(), slot_bytes(page[0]));
    let at = cells - e.cell_bytes();
    write_cell(&mut page[at..cells], e);
    let slot = HEADER_BYTES + index * slot_bytes;
    page.copy_within(slot..HEADER_BYTES + count * slot_bytes, slot + slot_bytes);
    write_slot(&mut page[slot..slot + slot_bytes], at, prefix_word(e.key));
    page[2..4].copy_from_slice(&((count + 1) as u16).to_le_bytes());
    page[4..8].copy_from_slice(&(at as u32).to_le_bytes());
    Ok(true)
}

/// Where `replace_separator_in_place` would write internal entry `index`'s new separator
/// `key`: (offset, the entry's child, cell bytes), or `None` when the page has no room.
fn separator_spot(p: &PageRef<'_>, index: usize, key: &[u8]) -> Result<Option<(usize, u64, usize)>> {
    let child = p.child(index)?;
    let old_cell = p.entry(index)?.cell_bytes();
    let cell = Entry { key, payload: Payload::Child(child) }.cell_bytes();
    let (old_at, cells) = (p.cell_offset(index)?, p.cells_start());
    let at = if cell <= old_cell {
        old_at
    } else if p.gap_bytes() >= cell {
        cells - cell
    } else {
        return Ok(None);
    };
    Ok(Some((at, child, cell)))
}

/// Whether `replace_separator_in_place` would succeed, nothing written.
pub(crate) fn separator_fits_in_place(p: &PageRef<'_>, index: usize, key: &[u8]) -> Result<bool> {
    Ok(separator_spot(p, index, key)?.is_some())
}

/// Gives internal entry `index` a new separator (its child unchanged), in place: over the old
/// cell when the new one is no longer (the rest of the old cell becomes a hole that the next
/// rebuild reclaims), else in the free gap (the whole old cell becomes a hole). Returns false,
/// the page untouched, when neither has room.
pub(crate) fn replace_separator_in_place(page: &mut [u8], page_id: u64, index: usize, key: &[u8]) -> Result<bool> {
    let p = PageRef::parse(page, page_id)?;
    let Some((at, child, cell)) = separator_spot(&p, index, key)? else { return Ok(false) };
    let cells = p.cells_start();
    write_cell(&mut page[at..at + cell], &Entry { key, payload: Payload::Child(child) });
    let slot = HEADER_BYTES + index * WORD_SLOT_BYTES;
    write_slot(&mut page[slot..slot + WORD_SLOT_BYTES], at, prefix_word(key));
    if at < cells {
        page[4..8].copy_from_slice(&(at as u32).to_le_bytes());
    }
    Ok(true)
}

/// Adds all of `src`'s cells (a leaf's, in order) to a leaf in place, before its first entry
/// (`front`) or after its last, packed into the free gap (no holes: see
/// `PageRef::occupied_bytes`). Returns false, the page untouched, when the gap cannot hold
/// them.
pub(crate) fn insert_cells_in_place(page: &mut [u8], page_id: u64, src: &PageRef<'_>, front: bool) -> Result<bool> {
    let p = PageRef::parse(page, page_id)?;
    let (count, added) = (p.len(), src.len());
    if !p.is_leaf() || !src.is_leaf() || p.gap_bytes() < src.occupied_bytes() {
        return Ok(false);
    }
    let mut end = p.cells_start();
    let first = if front {
        page.copy_within(HEADER_BYTES..HEADER_BYTES + count * SLOT_BYTES, HEADER_BYTES + added * SLOT_BYTES);
        0
    } else {
        count
    };
    // Last first, as `PageWriter` lays cells out: the first lies lowest.
    for i in (0..added).rev() {
        let raw = src.leaf_cell(i)?.raw;
        end -= raw.len();
        copy_cell(&mut page[end..end + raw.len()], raw);
        page[HEADER_BYTES + (first + i) * SLOT_BYTES..][..2].copy_from_slice(&(end as u16).to_le_bytes());
    }
    page[2..4].copy_from_slice(&((count + added) as u16).to_le_bytes());
    page[4..8].copy_from_slice(&(end as u32).to_le_bytes());
    Ok(true)
}

/// Removes leaf entry `index` in place: the cells below it (nearer the slot array) move up
/// over it, the slots of the moved cells are fixed, and its slot leaves the array, so the
/// leaf stays packed (no holes: see `PageRef::occupied_bytes`). Before writing anything it
/// checks that no other slot points into the removed cell or outside the cell area (a
/// damaged leaf whose cells overlap is `Corrupt`, the page untouched).
pub(crate) fn remove_in_place(page: &mut [u8], page_id: u64, index: usize) -> Result<()> {
    let p = PageRef::parse(page, page_id)?;
    if !p.is_leaf() {
        return Err(p.corrupt(0, "a leaf's remove in an internal page"));
    }
    let (count, start) = (p.len(), p.cells_start());
    let off = p.cell_offset(index)?;
    let len = p.leaf_cell(index)?.raw.len();
    // One slot (the removed entry's own) points into the removed cell, none below the cell
    // area. Counted without a branch per slot: the two passes over the slots are most of a
    // remove's own work.
    let (off16, len16, start16) = (off as u16, len as u16, start as u16);
    let strays: u32 = p
        .slots
        .iter()
        .map(|s| {
            let o = u16::from_le_bytes(*s);
            u32::from(o.wrapping_sub(off16) < len16) + u32::from(o < start16)
        })
        .sum();
    if strays != 1 {
        return Err(p.corrupt(index, "its cell overlaps another"));
    }
    page.copy_within(start..off, start + len);
    let slots_end = HEADER_BYTES + count * SLOT_BYTES;
    let removed = HEADER_BYTES + index * SLOT_BYTES;
    page.copy_within(removed + SLOT_BYTES..slots_end, removed);
    // Only cells below the removed one moved; none when it lay lowest (the first entry of a
    // page its writer laid out: ascending removes).
    if off > start {
        for slot in page[HEADER_BYTES..slots_end - SLOT_BYTES].as_chunks_mut::<SLOT_BYTES>().0 {
            let o = u16::from_le_bytes(*slot);
            *slot = (o + if o < off16 { len16 } else { 0 }).to_le_bytes();
        }
    }
    page[2..4].copy_from_slice(&((count - 1) as u16).to_le_bytes());
    page[4..8].copy_from_slice(&((start + len) as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf<'a>(k: &'a [u8], v: &'a [u8]) -> Entry<'a> {
        Entry { key: k, payload: Payload::Leaf(Value::Inline(v)) }
    }

    #[test]
    fn varints_round_trip_and_are_sized_exactly() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut buf = [0u8; 10];
            let n = put_varint(&mut buf, v);
            assert_eq!(n, varint_bytes(v), "{v}");
            assert_eq!(get_varint(&buf[..n]), Some((v, n)));
            assert_eq!(get_varint(&buf[..n - 1]), None);
        }
    }

    #[test]
    fn a_seventeen_byte_key_and_eight_byte_value_take_twenty_nine_bytes() {
        let e = Entry { key: &[0u8; 17], payload: Payload::Leaf(Value::Inline(&[0u8; 8])) };
        assert_eq!(e.bytes(), 29);
        assert_eq!(capacity(4096) / 29, 140);
    }

    #[test]
    fn build_then_read_back_every_kind_of_entry() {
        let mut page = vec![0u8; 512];
        let entries = [
            leaf(b"", b""),
            leaf(b"a", b"1"),
            Entry { key: b"big", payload: Payload::Leaf(Value::Overflow(0x1234_0001, 70000)) },
        ];
        build(&mut page, TYPE_LEAF, 0, &entries);
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.entries().unwrap(), entries);
        assert_eq!(p.used_bytes().unwrap(), entries.iter().map(Entry::bytes).sum::<usize>());
        assert_eq!(p.search(|k| k.cmp(b"a")).unwrap(), Ok(1));
        assert_eq!(p.search(|k| k.cmp(b"b")).unwrap(), Err(2));
    }

    #[test]
    fn the_writer_fills_exactly_what_the_accounting_promises() {
        // Entries of mixed sizes, added until the accounting says the next would not fit:
        // the writer must accept all of them, and the page must then be full to the byte.
        let mut page = vec![0u8; 4096];
        let keys: Vec<Vec<u8>> = (0..400).map(|i| vec![b'k'; 1 + (i * 37) % 60]).collect();
        let mut entries = Vec::new();
        let mut total = 0;
        for k in &keys {
            let e = Entry { key: k, payload: Payload::Leaf(Value::Inline(b"12345678")) };
            if !fits(total + e.bytes(), 4096) {
                break;
            }
            total += e.bytes();
            entries.push(e);
        }
        build(&mut page, TYPE_LEAF, 0, &entries);
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.gap_bytes(), capacity(4096) - total);
        assert!(p.gap_bytes() < entries.last().unwrap().bytes() + 60);
    }

    #[test]
    fn in_place_insert_keeps_order_and_refuses_when_full() {
        let mut page = vec![0u8; 256];
        build(&mut page, TYPE_LEAF, 0, &[leaf(b"a", b"1"), leaf(b"c", b"3")]);
        assert!(insert_in_place(&mut page, 1, 1, &leaf(b"b", b"2")).unwrap());
        let keys: Vec<&[u8]> = PageRef::parse(&page, 1).unwrap().entries().unwrap().iter().map(|e| e.key).collect();
        assert_eq!(keys, [b"a", b"b", b"c"]);
        let big_key = [b'z'; 230];
        let big = leaf(&big_key, b"");
        let before = page.clone();
        assert!(!insert_in_place(&mut page, 1, 3, &big).unwrap());
        assert_eq!(page, before);
    }

    #[test]
    fn cells_carry_exactly_the_bytes_the_accounting_gives_their_entries() {
        let (long_key, long_value) = ([b'k'; 200], [b'v'; 300]);
        let entries = [
            leaf(b"", b""),
            leaf(b"a", b"1"),
            leaf(&long_key, b"x"),
            leaf(b"b", &long_value),
            Entry { key: b"big", payload: Payload::Leaf(Value::Overflow(0x1234_0001, 70000)) },
        ];
        let mut page = vec![0u8; 1024];
        build(&mut page, TYPE_LEAF, 0, &entries);
        let p = PageRef::parse(&page, 1).unwrap();
        let cells = p.cells().unwrap();
        for (i, (c, e)) in cells.iter().zip(&entries).enumerate() {
            assert_eq!((c.key(), c.bytes()), (e.key, e.bytes()));
            assert_eq!(Payload::Leaf(p.leaf_value(i).unwrap()), e.payload);
        }
        let mut copy = vec![0u8; 1024];
        build_cells(&mut copy, TYPE_LEAF, 0, &cells);
        assert_eq!(PageRef::parse(&copy, 2).unwrap().entries().unwrap(), entries);
        let mut buf = Vec::new();
        assert_eq!(Cell::encode(&entries[3], &mut buf), cells[3]);
    }

    #[test]
    fn a_separator_is_replaced_in_place_over_its_cell_or_in_the_gap_or_not_at_all() {
        let child = |k: &'static [u8], c: u64| Entry { key: k, payload: Payload::Child(c) };
        let mut page = vec![0u8; 128];
        build(&mut page, TYPE_INTERNAL, 7, &[child(b"ccc", 8), child(b"ggg", 9)]);
        // Shorter: over the old cell. Longer: in the gap. Either way the children stay.
        assert!(replace_separator_in_place(&mut page, 1, 0, b"b").unwrap());
        assert!(replace_separator_in_place(&mut page, 1, 1, b"ffffffff").unwrap());
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.entries().unwrap(), [child(b"b", 8), child(b"ffffffff", 9)]);
        assert_eq!(p.leftmost_child(), 7);
        // No room for a longer one: the page is left exactly as it was.
        let before = page.clone();
        assert!(!replace_separator_in_place(&mut page, 1, 0, &[b'x'; 100]).unwrap());
        assert_eq!(page, before);
    }

    /// Separators of 0 to 12 bytes from a small alphabet: many share their first eight bytes,
    /// so searches meet ties of prefix words as well as differences.
    fn separators(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut rng = crate::test_rng::TestRng::new(seed | 1);
        let mut keys: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let x = rng.next();
                (0..(x % 13) as usize).map(|i| [0u8, 1, b'a', 0xff][(x >> (8 + 2 * i)) as usize & 3]).collect()
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn internal_slots_record_prefix_words_through_every_writer() {
        let keys = separators(0x9e37_79b9_7f4a_7c15, 40);
        fn child(k: &[u8], c: usize) -> Entry<'_> {
            Entry { key: k, payload: Payload::Child(100 + c as u64) }
        }
        let entries: Vec<Entry<'_>> = keys.iter().enumerate().map(|(i, k)| child(k, i)).collect();
        let mut page = vec![0u8; 4096];
        build(&mut page, TYPE_INTERNAL, 7, &entries[1..]);
        PageRef::parse(&page, 1).unwrap().check_words().unwrap();
        // An in-place insert shifts the slots, words with them; a replaced separator gets its
        // new word, over its old cell or in the gap.
        assert!(insert_in_place(&mut page, 1, 0, &entries[0]).unwrap());
        assert!(replace_separator_in_place(&mut page, 1, 3, &keys[3][..keys[3].len().min(1)]).unwrap());
        assert!(replace_separator_in_place(&mut page, 1, 5, &[&keys[5][..], &[0u8; 30]].concat()).unwrap());
        let p = PageRef::parse(&page, 1).unwrap();
        p.check_words().unwrap();
        assert_eq!(p.len(), entries.len());
        let shrunk = keys[3].len() - keys[3].len().min(1);
        assert_eq!(p.used_bytes().unwrap() + shrunk, entries.iter().map(Entry::bytes).sum::<usize>() + 30);
        // A leaf entry is refused by an internal page, and a child entry by a leaf.
        assert!(insert_in_place(&mut page, 1, 0, &leaf(b"x", b"y")).is_err());
        let mut leaf_page = vec![0u8; 512];
        build(&mut leaf_page, TYPE_LEAF, 0, &[leaf(b"a", b"1")]);
        assert!(insert_in_place(&mut leaf_page, 2, 0, &child(b"b", 0)).is_err());
        // A damaged word is caught by the check that verify makes.
        page[HEADER_BYTES + 2 * WORD_SLOT_BYTES + 4] ^= 0x10;
        assert!(matches!(PageRef::parse(&page, 1).unwrap().check_words(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn the_word_searches_agree_with_the_key_order() {
        // Miri interprets some thousand times slower than native code.
        for seed in 1..if cfg!(miri) { 3 } else { 40u64 } {
            let keys = separators(seed.wrapping_mul(0x2545_f491_4f6c_dd1d), 60);
            let entries: Vec<Entry<'_>> =
                keys.iter().enumerate().map(|(i, k)| Entry { key: k, payload: Payload::Child(i as u64 + 1) }).collect();
            let leaves: Vec<Entry<'_>> = keys.iter().map(|k| leaf(k, b"v")).collect();
            // Small pages put short cells at the page's very end, where a word cannot be loaded.
            let (mut internal, mut leaf_page) = (vec![0u8; 2048], vec![0u8; 2048]);
            build(&mut internal, TYPE_INTERNAL, 99, &entries);
            build(&mut leaf_page, TYPE_LEAF, 0, &leaves);
            let (ip, lp) = (PageRef::parse(&internal, 1).unwrap(), PageRef::parse(&leaf_page, 2).unwrap());
            for probe in separators(seed ^ 0xabcdef, 80).iter().chain(&keys) {
                let word = prefix_word(probe);
                assert_eq!(ip.child_for_bytewise(word, probe).unwrap(), ip.child_for(|k| k.cmp(probe)).unwrap());
                assert_eq!(lp.search_bytewise(word, probe).unwrap(), lp.search(|k| k.cmp(probe)).unwrap());
                assert_eq!(lp.search_bytewise(word, probe).unwrap(), keys.binary_search(probe));
            }
        }
    }

    /// Damaged copies tried below; Miri interprets some thousand times slower than native code.
    const DAMAGED_PAGES: usize = if cfg!(miri) { 400 } else { 20_000 };

    #[test]
    fn damaged_pages_are_corrupt_never_a_panic() {
        let mut page = vec![0u8; 512];
        build(&mut page, TYPE_LEAF, 0, &[leaf(b"key", b"value"), leaf(b"key2", b"v")]);
        let mut rng = crate::test_rng::TestRng::new(0x1234_5678_9abc_def1);
        for _ in 0..DAMAGED_PAGES {
            let x = rng.next();
            let mut bad = page.clone();
            bad[(x % 512) as usize] ^= 1 << (x >> 60 & 7);
            bad[((x >> 20) % 512) as usize] = (x >> 40) as u8;
            if let Ok(p) = PageRef::parse(&bad, 7) {
                let _ = p.entries();
                let _ = p.search(|k| k.cmp(b"key"));
            }
        }
        page[0] = 9;
        assert!(matches!(PageRef::parse(&page, 7), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn removing_in_place_keeps_the_leaf_packed_and_equal_to_a_rebuild() {
        let keys: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b'k', i, i]).collect();
        let values: Vec<Vec<u8>> = (0..30usize).map(|i| vec![7u8; i % 9]).collect();
        let entries: Vec<Entry<'_>> = keys.iter().zip(&values).map(|(k, v)| leaf(k, v)).collect();
        for index in [0, 1, 14, 28, 29] {
            let mut page = vec![0u8; 1024];
            build(&mut page, TYPE_LEAF, 0, &entries);
            remove_in_place(&mut page, 1, index).unwrap();
            let mut rest = entries.clone();
            rest.remove(index);
            let p = PageRef::parse(&page, 1).unwrap();
            assert_eq!(p.entries().unwrap(), rest, "remove {index}");
            assert_eq!(p.occupied_bytes(), rest.iter().map(Entry::bytes).sum::<usize>(), "packed");
        }
        // A slot pointing into the removed cell: refused, the page untouched.
        let mut page = vec![0u8; 1024];
        build(&mut page, TYPE_LEAF, 0, &entries);
        let (s0, s1) = (page[16], page[17]);
        page[18] = s0;
        page[19] = s1;
        let before = page.clone();
        assert!(matches!(remove_in_place(&mut page, 1, 0), Err(Error::Corrupt { .. })));
        assert_eq!(page, before);
    }
}
