//! The B+ tree: pages are store nodes, sized and split by the bytes entries really use.
#![forbid(unsafe_code)]

#[cfg(test)]
mod atomic_tests;
mod bulk;
mod cursor;
#[cfg(test)]
mod damage_tests;
mod inspect;
pub(crate) mod page;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod snapshot_tests;
mod split;
mod tree;

pub use cursor::Cursor;
pub use inspect::TreeStats;
pub use tree::{
    drop_tree, list_named_roots, list_trees, max_inline_value_bytes, max_key_bytes, BTree, Comparator, Duplicates,
    TreeDescription, TreeOptions, DEPTH_MAX, KIND_INTERNAL, KIND_LEAF, KIND_OVERFLOW, PAGE_BYTES_MAX, PAGE_BYTES_MIN,
    ROOT_PREFIX, VALUE_BYTES_MAX,
};

/// Decodes `bytes` as a B+ tree page the way tree operations do: the header, every entry,
/// the byte accounting, a search for `probe` (and, in an internal page, the child it leads
/// to), and an in-place insert of `probe` into a copy. Returns the number of entries, or
/// `Corrupt` naming page `page_id`; never panics, whatever the bytes. For fuzzing and tests.
#[doc(hidden)]
pub fn decode_page(bytes: &[u8], page_id: u64, probe: &[u8]) -> crate::Result<usize> {
    let p = page::PageRef::parse(bytes, page_id)?;
    let cells = p.cells()?;
    let used = p.used_bytes()?;
    debug_assert_eq!(used, cells.iter().map(page::Cell::bytes).sum::<usize>());
    // The bytewise fast path reads keys its own way: it must agree, damaged page or not.
    let word = page::prefix_word(probe);
    let found = p.search(|k| k.cmp(probe));
    debug_assert_eq!(found.as_ref().ok(), p.search_bytewise(word, probe).as_ref().ok());
    let at = match found? {
        Ok(i) | Err(i) => i,
    };
    if !p.is_leaf() {
        let child = p.child_for(|k| k.cmp(probe));
        // Searches trust the prefix words the slots record; verify checks them.
        let words = p.check_words();
        if words.is_ok() {
            debug_assert_eq!(child.as_ref().ok(), p.child_for_bytewise(word, probe).as_ref().ok());
        }
        p.child_for_bytewise(word, probe)?;
        child?;
        words?;
    }
    let _ = p.leftmost_child();
    let mut copy = bytes.to_vec();
    let payload = if p.is_leaf() { page::Payload::Leaf(page::Value::Inline(probe)) } else { page::Payload::Child(1) };
    let e = page::Entry { key: probe, payload };
    page::insert_in_place(copy.as_mut_slice(), page_id, at, &e)?;
    Ok(cells.len())
}
