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
//!
//! The module's parts: `read` (checked reads and searches of a page), `write` (whole pages
//! built from cells), `edit` (in-place edits: insert, remove, a new separator), `cells` (a
//! leaf's cells as the planner cuts them).

mod cells;
mod edit;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub(crate) use cells::*;
pub(crate) use edit::*;
pub(crate) use read::*;
pub(crate) use write::*;

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

/// An entry as its page stores it, a leaf's or an internal page's: the cell's bytes, moved
/// between pages by one copy (a split, shift, merge or even-out rewrites pages without
/// decoding and re-encoding every entry; only a new entry is encoded, by the one encoder:
/// [`Cell::encode`], or the page writer as it writes a bulk load's entries, [`build`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell<'a> {
    raw: &'a [u8],
    key_at: u8,
    /// The bytes of its slot: which kind of page holds it.
    slot: u8,
    key_len: u16,
}

impl<'a> Cell<'a> {
    /// The cell's bytes as a page holds them.
    #[inline]
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.raw
    }

    #[inline]
    pub fn key(&self) -> &'a [u8] {
        &self.raw[self.key_at as usize..self.key_at as usize + self.key_len as usize]
    }

    /// The bytes the cell takes in a page, its slot included: [`entry_bytes`] of its entry.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.raw.len() + self.slot as usize
    }

    /// The type of page that holds it.
    #[inline]
    pub fn page_type(&self) -> u8 {
        if self.slot as usize == SLOT_BYTES {
            TYPE_LEAF
        } else {
            TYPE_INTERNAL
        }
    }

    /// An internal cell's child (its last eight bytes: see [`PageRef::internal_cell`]).
    #[inline]
    pub fn child(&self) -> u64 {
        debug_assert_eq!(self.page_type(), TYPE_INTERNAL, "a leaf cell has no child");
        let id = self.raw.last_chunk::<8>().expect("an internal cell ends with its child");
        u64::from_le_bytes(*id)
    }

    /// Encodes a new entry as a cell into `buf` (cleared first).
    pub fn encode(e: &Entry<'_>, buf: &'a mut Vec<u8>) -> Cell<'a> {
        buf.clear();
        buf.resize(e.cell_bytes(), 0);
        write_cell(buf, e);
        let slot = slot_bytes(e.page_type()) as u8;
        Cell { raw: buf, key_at: varint_bytes(e.key.len() as u64) as u8, slot, key_len: e.key.len() as u16 }
    }

    /// Encodes a new separator pointing at `child` as an internal cell into `buf`.
    pub fn separator(key: &[u8], child: u64, buf: &'a mut Vec<u8>) -> Cell<'a> {
        Cell::encode(&Entry { key, payload: Payload::Child(child) }, buf)
    }
}

#[cold]
#[inline(never)]
fn bad_page(page_id: u64, what: String) -> Error {
    Error::corrupt(format!("B+ tree page {page_id:#x}"), 0, what)
}

/// Whether entries of `total_bytes` fit a page.
pub(crate) fn fits(total_bytes: usize, page_bytes: usize) -> bool {
    total_bytes <= capacity(page_bytes)
}
