//! Where each entry of the cursor's copy of its leaf lies, found once per leaf: a scan's step
//! within the leaf then reads two offsets instead of parsing the page and decoding a cell per
//! call, which cost more than the rest of the step.

use super::*;

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

/// The spans of a copy's leading entries whose values lie inline: all of them, unless an
/// entry's value lies in its own node or its cell is damaged. The entries from there on are
/// left to the general path (which reads the node, or reports the damage).
pub(super) fn find(tree: &BTree, copy: &[u8], id: u64, out: &mut Vec<Span>) {
    out.clear();
    let Ok(page) = PageRef::parse(copy, id) else { return };
    if !page.is_leaf() {
        return;
    }
    let multi = tree.duplicates() == Duplicates::Multi;
    let base = copy.as_ptr() as usize;
    // An empty part may not point into the copy (a short composite's value): any offset does.
    let at = |s: &[u8]| if s.is_empty() { 0 } else { (s.as_ptr() as usize - base) as u32 };
    out.reserve(page.len());
    for i in 0..page.len() {
        let Ok((key, Value::Inline(value))) = page.leaf_entry(i) else { return };
        let (key, value) = if multi { split_composite(key) } else { (key, value) };
        out.push(Span {
            key_at: at(key),
            key_len: key.len() as u32,
            value_at: at(value),
            value_len: value.len() as u32,
        });
    }
}
