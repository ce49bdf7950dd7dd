//! Where an entry of the cursor's copy of its leaf lies: a scan's step decodes the one cell it
//! hands out, from the copy's layout read once per copy (`Layout`), instead of parsing the
//! page per call or finding every entry's place up front (which cost more than the step).

use super::*;
use crate::btree::page::leaf_inline_at;

/// An entry of the copy as the user sees it (a Multi tree's composite key already split):
/// byte ranges of the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    key_at: u32,
    key_len: u32,
    value_at: u32,
    value_len: u32,
}

impl Span {
    /// (key, value) in `copy`, the bytes the span was found in.
    #[inline]
    pub(super) fn of<'a>(&self, copy: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let key = &copy[self.key_at as usize..][..self.key_len as usize];
        let value = &copy[self.value_at as usize..][..self.value_len as usize];
        (key, value)
    }
}

/// What a scan's step needs of its copy's layout, read once when the copy is taken: its entry
/// count and where its cells start (both 0 for a copy whose layout is damaged: every step
/// then takes the general path, which reports the damage).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Layout {
    pub(super) len: usize,
    cells_start: usize,
}

impl Layout {
    pub(super) fn of(copy: &[u8], id: u64) -> Layout {
        match PageRef::parse(copy, id) {
            Ok(p) if p.is_leaf() => Layout { len: p.len(), cells_start: p.cells_start() },
            _ => Layout::default(),
        }
    }

    /// Entry `index`'s span in `copy` (the copy this layout was read from) when the quick path
    /// can hand it out: a tree that is not Multi, an inline value, a cell of common lengths.
    #[inline(always)]
    pub(super) fn quick(&self, copy: &[u8], index: usize) -> Option<Span> {
        if index >= self.len {
            return None;
        }
        let (key_at, key_len, value_at, value_len) = leaf_inline_at(copy, self.cells_start, index)?;
        // A page is at most 64 KiB: every offset and length fits a u32.
        Some(Span {
            key_at: key_at as u32,
            key_len: key_len as u32,
            value_at: value_at as u32,
            value_len: value_len as u32,
        })
    }
}

/// Entry `index`'s span in `copy` (leaf `id`), any cell with an inline value (a Multi tree's
/// composite split); `None` past the leaf's end, for a value in its own node, or a damaged
/// cell (left to the general path, which reads the node, or reports the damage).
pub(super) fn find(tree: &BTree, copy: &[u8], id: u64, index: usize) -> Option<Span> {
    let page = PageRef::parse(copy, id).ok().filter(PageRef::is_leaf)?;
    if index >= page.len() {
        return None;
    }
    let Ok((key, Value::Inline(value))) = page.leaf_entry(index) else { return None };
    let (key, value) = user_entry(tree, key, value);
    let base = copy.as_ptr() as usize;
    // An empty part may not point into the copy (a short composite's value): any offset does.
    let at = |s: &[u8]| if s.is_empty() { 0 } else { (s.as_ptr() as usize - base) as u32 };
    Some(Span { key_at: at(key), key_len: key.len() as u32, value_at: at(value), value_len: value.len() as u32 })
}
