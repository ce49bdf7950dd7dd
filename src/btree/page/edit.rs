//! Editing a page in place: an entry in or out, a separator replaced, cells added.

use super::*;
use crate::store::PageBytes;
use std::ops::Range;

/// Inserts an entry at slot `index` in place, when the contiguous gap holds it. Returns false
/// (page untouched) when it does not: the caller then rebuilds or splits. Writes through
/// `PageBytes` only, so a store `Edit` records it as four ops (cell, slots moved up, new
/// slot, header) for the commit to log.
pub(crate) fn insert_in_place<P: PageBytes + ?Sized>(
    page: &mut P,
    page_id: u64,
    index: usize,
    e: &Entry<'_>,
) -> Result<bool> {
    let new = NewCell { page_type: e.page_type(), len: e.cell_bytes(), word: prefix_word(e.key) };
    insert_cell_in_place(page, page_id, index, new, |cell| write_cell(cell, e))
}

/// As `insert_in_place`, for a leaf cell as it lies in a page (`raw`, its encoded bytes).
pub(crate) fn insert_leaf_cell_in_place<P: PageBytes + ?Sized>(
    page: &mut P,
    page_id: u64,
    index: usize,
    raw: &[u8],
) -> Result<bool> {
    let new = NewCell { page_type: TYPE_LEAF, len: raw.len(), word: 0 };
    insert_cell_in_place(page, page_id, index, new, |cell| copy_short(cell, raw))
}

/// A cell about to be inserted: its page type, encoded length and slot word.
struct NewCell {
    page_type: u8,
    len: usize,
    word: u64,
}

fn insert_cell_in_place<P: PageBytes + ?Sized>(
    page: &mut P,
    page_id: u64,
    index: usize,
    new: NewCell,
    write: impl FnOnce(&mut [u8]),
) -> Result<bool> {
    let page_type = page.bytes()[0];
    let p = PageRef::parse(page.bytes(), page_id)?;
    if new.page_type != page_type {
        return Err(p.corrupt(0, &format!("a {} entry for this page", if p.is_leaf() { "child" } else { "leaf" })));
    }
    let slot_bytes = slot_bytes(page_type);
    if p.gap_bytes() < new.len + slot_bytes || index > p.len() {
        return Ok(false);
    }
    let (count, cells) = (p.len(), p.cells_start());
    let at = cells - new.len;
    page.write_with(at, new.len, write);
    let slot = HEADER_BYTES + index * slot_bytes;
    page.move_bytes(slot..HEADER_BYTES + count * slot_bytes, slot + slot_bytes);
    page.write_with(slot, slot_bytes, |s| write_slot(s, at, new.word));
    write_header(page, count + 1, at);
    Ok(true)
}

/// A page's entry count and the start of its cell area, as one write.
fn write_header<P: PageBytes + ?Sized>(page: &mut P, count: usize, cells_start: usize) {
    page.write_with(2, 6, |header| {
        header[..2].copy_from_slice(&(count as u16).to_le_bytes());
        header[2..].copy_from_slice(&(cells_start as u32).to_le_bytes());
    });
}

/// Keeps only the leaf's entries `keep` (the others went to a sibling or a new page), in
/// place: the kept cells slide up to the page's end, keeping their order there, as few runs
/// moved as they form, and the slot array is rewritten. A page a shift or split leaves behind
/// is then a few moves in its script rather than a new image the commit would search its base
/// for. A leaf's cells tile its cell area (it has no holes), so a cell ends where the next one
/// up starts: cells are found in offset order from a bitmap of their starts, not sorted.
/// Before writing anything it checks that the starts are distinct and lie in the cell area,
/// the lowest at its start, and that each kept cell ends where the next starts (a damaged
/// page is `Corrupt`, the page untouched).
pub(crate) fn retain_in_place<P: PageBytes + ?Sized>(page: &mut P, page_id: u64, keep: Range<usize>) -> Result<()> {
    let page_len = page.bytes().len();
    let p = PageRef::parse(page.bytes(), page_id)?;
    if !p.is_leaf() || keep.end > p.len() || keep.start > keep.end {
        return Err(p.corrupt(keep.end, "not a leaf entry range to keep"));
    }
    let (cells_start, count) = (p.cells_start(), p.len());
    let words = page_len.div_ceil(64);
    let (mut starts, mut kept) = (vec![0u64; words], vec![0u64; words]);
    let mut offsets = Vec::with_capacity(keep.len());
    for (i, slot) in p.slots.iter().enumerate() {
        let off = usize::from(u16::from_le_bytes(*slot));
        if off < cells_start || off >= page_len || starts[off / 64] & (1 << (off % 64)) != 0 {
            return Err(p.corrupt(i, "its cell overlaps another"));
        }
        starts[off / 64] |= 1 << (off % 64);
        if keep.contains(&i) {
            kept[off / 64] |= 1 << (off % 64);
            offsets.push(off);
        }
    }
    if count > 0 && starts[cells_start / 64] & (1 << (cells_start % 64)) == 0 {
        return Err(p.corrupt(0, "no cell starts its cell area"));
    }
    // A kept cell moves as the bytes up to the next cell's start: it must end there.
    for (k, &off) in offsets.iter().enumerate() {
        if off + p.leaf_cell(keep.start + k)?.raw.len() != next_start(&starts, off, page_len) {
            return Err(p.corrupt(keep.start + k, "its cell overlaps another"));
        }
    }
    // Runs of kept cells moved together, highest first: (source, how far up).
    let mut runs: Vec<(Range<usize>, usize)> = Vec::with_capacity(keep.len());
    let (mut end, mut dest) = (page_len, page_len);
    for w in (0..words).rev() {
        let mut bits = starts[w];
        while bits != 0 {
            let bit = 63 - bits.leading_zeros() as usize;
            bits &= !(1 << bit);
            let off = w * 64 + bit;
            if kept[w] & (1 << bit) != 0 {
                dest -= end - off;
                let shift = dest - off;
                match runs.last_mut() {
                    Some((src, s)) if *s == shift && src.start == end => src.start = off,
                    _ => runs.push((off..end, shift)),
                }
            }
            end = off;
        }
    }
    for (src, shift) in &runs {
        if *shift > 0 {
            page.move_bytes(src.clone(), src.start + shift);
        }
    }
    // A kept cell's new offset: its run's shift added (runs lie highest first).
    let moved_to = |off: usize| {
        let run = runs.partition_point(|(src, _)| src.start > off);
        off + runs[run].1
    };
    page.write_with(HEADER_BYTES, offsets.len() * SLOT_BYTES, |slots| {
        for (slot, &off) in slots.chunks_exact_mut(SLOT_BYTES).zip(&offsets) {
            slot.copy_from_slice(&(moved_to(off) as u16).to_le_bytes());
        }
    });
    write_header(page, keep.len(), dest);
    Ok(())
}

/// The first cell start in `starts` (a bitmap of offsets) past `off`, or `page_len`.
fn next_start(starts: &[u64], off: usize, page_len: usize) -> usize {
    let (mut w, bit) = (off / 64, off % 64);
    let mut bits = starts[w] & (u64::MAX << bit << 1);
    while bits == 0 {
        w += 1;
        if w == starts.len() {
            return page_len;
        }
        bits = starts[w];
    }
    w * 64 + bits.trailing_zeros() as usize
}

/// Where `replace_separator_in_place` would write internal entry `index`'s new separator
/// `key`: (offset, the entry's child, cell bytes), or `None` when the page has no room.
pub(super) fn separator_spot(p: &PageRef<'_>, index: usize, key: &[u8]) -> Result<Option<(usize, u64, usize)>> {
    let child = p.child(index)?;
    let old_cell = p.cell_len(index)?;
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
pub(crate) fn replace_separator_in_place<P: PageBytes + ?Sized>(
    page: &mut P,
    page_id: u64,
    index: usize,
    key: &[u8],
) -> Result<bool> {
    let p = PageRef::parse(page.bytes(), page_id)?;
    let Some((at, child, cell)) = separator_spot(&p, index, key)? else { return Ok(false) };
    let cells = p.cells_start();
    page.write_with(at, cell, |c| write_cell(c, &Entry { key, payload: Payload::Child(child) }));
    let slot = HEADER_BYTES + index * WORD_SLOT_BYTES;
    page.write_with(slot, WORD_SLOT_BYTES, |s| write_slot(s, at, prefix_word(key)));
    if at < cells {
        page.write_with(4, 4, |h| h.copy_from_slice(&(at as u32).to_le_bytes()));
    }
    Ok(true)
}

/// Adds all of `src`'s cells (a leaf's, in order) to a leaf in place, before its first entry
/// (`front`) or after its last, packed into the free gap (no holes: see
/// `PageRef::occupied_bytes`). Returns false, the page untouched, when the gap cannot hold
/// them.
pub(crate) fn insert_cells_in_place<P: PageBytes + ?Sized>(
    page: &mut P,
    page_id: u64,
    src: &PageRef<'_>,
    front: bool,
) -> Result<bool> {
    let p = PageRef::parse(page.bytes(), page_id)?;
    let (count, added) = (p.len(), src.len());
    if !p.is_leaf() || !src.is_leaf() || p.gap_bytes() < src.occupied_bytes() {
        return Ok(false);
    }
    let cells_start = p.cells_start();
    // `src` is a page `PageWriter` laid out (the first cell lowest, no holes): its cell area
    // goes over as one run, and its slots move with it.
    let (src_cells, src_bytes) = (src.cells_start(), src.as_bytes());
    let total = src_bytes.len() - src_cells;
    debug_assert_eq!(total, (0..added).map(|i| src.leaf_cell(i).map_or(0, |c| c.raw.len())).sum::<usize>());
    let end = cells_start - total;
    let first = if front {
        page.move_bytes(HEADER_BYTES..HEADER_BYTES + count * SLOT_BYTES, HEADER_BYTES + added * SLOT_BYTES);
        0
    } else {
        count
    };
    page.write_with(end, total, |run| run.copy_from_slice(&src_bytes[src_cells..]));
    page.write_with(HEADER_BYTES + first * SLOT_BYTES, added * SLOT_BYTES, |slots| {
        for (slot, from) in slots.chunks_exact_mut(SLOT_BYTES).zip(src.slots) {
            let offset = usize::from(u16::from_le_bytes(*from)) - src_cells + end;
            slot.copy_from_slice(&(offset as u16).to_le_bytes());
        }
    });
    write_header(page, count + added, end);
    Ok(true)
}

/// Removes entry `index` in place, from a leaf or an internal page (a separator with the
/// child right of it): the cells below it (nearer the slot array) move up over it, the slots
/// of the moved cells are fixed, and its slot leaves the array, so a packed page stays packed
/// (see `PageRef::occupied_bytes`). Before writing anything it checks that no other slot points
/// into the removed cell or outside the cell area (a damaged page whose cells overlap is
/// `Corrupt`, the page untouched).
pub(crate) fn remove_in_place(page: &mut [u8], page_id: u64, index: usize) -> Result<()> {
    let p = PageRef::parse(page, page_id)?;
    let (count, start) = (p.len(), p.cells_start());
    let off = p.cell_offset(index)?;
    let len = p.cell_len(index)?;
    let slot_bytes = slot_bytes(page[0]);
    let slots_end = HEADER_BYTES + count * slot_bytes;
    // One slot (the removed entry's own) points into the removed cell, none below the cell
    // area. Counted without a branch per slot, in a u16 (at most two per slot, and a page has
    // fewer than 32 Ki slots), so that the count vectorizes: the passes over the slots are most
    // of a remove's own work.
    let (off16, len16, start16) = (off as u16, len as u16, start as u16);
    let stray = |o: u16| u16::from(o.wrapping_sub(off16) < len16) + u16::from(o < start16);
    let strays = match p.is_leaf() {
        true => p.slots.iter().fold(0u16, |n, s| n.wrapping_add(stray(u16::from_le_bytes(*s)))),
        false => p.word_slots.iter().fold(0u16, |n, s| n.wrapping_add(stray(u16::from_le_bytes([s[0], s[1]])))),
    };
    if strays != 1 {
        return Err(p.corrupt(index, "its cell overlaps another"));
    }
    page.copy_within(start..off, start + len);
    let removed = HEADER_BYTES + index * slot_bytes;
    page.copy_within(removed + slot_bytes..slots_end, removed);
    // Only cells below the removed one moved; none when it lay lowest (the first entry of a
    // page its writer laid out: ascending removes).
    let fix = |o: u16| o + if o < off16 { len16 } else { 0 };
    if off > start {
        let slots = &mut page[HEADER_BYTES..slots_end - slot_bytes];
        if slot_bytes == SLOT_BYTES {
            for slot in slots.as_chunks_mut::<SLOT_BYTES>().0 {
                *slot = fix(u16::from_le_bytes(*slot)).to_le_bytes();
            }
        } else {
            for slot in slots.as_chunks_mut::<WORD_SLOT_BYTES>().0 {
                let o = fix(u16::from_le_bytes([slot[0], slot[1]]));
                slot[..SLOT_BYTES].copy_from_slice(&o.to_le_bytes());
            }
        }
    }
    write_header(page, count - 1, start + len);
    Ok(())
}
