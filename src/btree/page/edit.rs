//! Editing a page in place: an entry in or out, a separator replaced, cells added.

use super::*;

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
        copy_short(&mut page[end..end + raw.len()], raw);
        page[HEADER_BYTES + (first + i) * SLOT_BYTES..][..2].copy_from_slice(&(end as u16).to_le_bytes());
    }
    page[2..4].copy_from_slice(&((count + added) as u16).to_le_bytes());
    page[4..8].copy_from_slice(&(end as u32).to_le_bytes());
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
    page[2..4].copy_from_slice(&((count - 1) as u16).to_le_bytes());
    page[4..8].copy_from_slice(&((start + len) as u32).to_le_bytes());
    Ok(())
}
