//! Bulk load: sorted pairs into an empty tree, pages built directly and full, bottom up.
//! No page is split and nothing is read back; the result is the tree a sorted insert sequence
//! would build (append-aware splits), only faster.

use super::page::{self, Entry, Payload, Value, TYPE_INTERNAL, TYPE_LEAF};
use super::tree::{BTree, Duplicates, KIND_INTERNAL, KIND_LEAF, KIND_OVERFLOW};
use crate::error::{Error, Result};
use crate::store::NodeId;
use std::borrow::Cow;
use std::cmp::Ordering;

impl BTree {
    /// Loads `pairs`, sorted by key (by key then value in a Multi tree) with no duplicates,
    /// into this empty tree. `InvalidArgument` if the tree is not empty or the input is not
    /// strictly sorted (checked before anything is written: the input is collected first).
    pub fn bulk_load<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        self.bulk_load_indexed(pairs.len(), |i| Ok((pairs[i].0.as_ref(), pairs[i].1.as_ref())))
    }

    /// `bulk_load` of the `n` pairs `pair(0..n)` gives, read twice: once to check them all
    /// (nothing is written before that), once to build the pages as they come. Nothing of
    /// the input's size is allocated: a million pairs cost no more memory than their pages.
    pub(crate) fn bulk_load_indexed<'p>(
        &self,
        n: usize,
        pair: impl Fn(usize) -> Result<(&'p [u8], &'p [u8])>,
    ) -> Result<()> {
        let mut previous: Option<Cow<'p, [u8]>> = None;
        for i in 0..n {
            let (k, v) = pair(i)?;
            self.check_entry(k, v)?;
            let skey = self.stored_key(k, v);
            if previous.as_ref().is_some_and(|prev| self.cmp_stored(prev, &skey) != Ordering::Less) {
                return Err(Error::InvalidArgument("bulk_load input is not strictly sorted".into()));
            }
            previous = Some(skey);
        }
        let store = self.store()?;
        let mut st = self.write_state()?;
        if st.entries != 0 {
            return Err(Error::InvalidArgument("bulk_load needs an empty tree".into()));
        }
        let pb = self.page_bytes();
        let mut allocated: Vec<u64> = Vec::new();
        let result = (|| -> Result<(u64, u32)> {
            // Level by level: (first key, page id) of each page built.
            let mut level = self.build_leaves(&store, &mut allocated, n, &pair, pb)?;
            let mut height = 1u32;
            while level.len() > 1 {
                let separators: Vec<Vec<u8>> = level.iter().map(|(k, _)| k.clone()).collect();
                let entries: Vec<Entry<'_>> = level[1..]
                    .iter()
                    .zip(&separators[1..])
                    .map(|((_, id), k)| Entry { key: k, payload: Payload::Child(*id) })
                    .collect();
                level = self.build_internal_level(&store, &mut allocated, level[0].1, &separators[0], &entries, pb)?;
                height += 1;
            }
            Ok((level[0].1, height))
        })();
        match result {
            Ok((root, height)) => {
                let old_root = st.root;
                st.root = root;
                st.height = height;
                st.entries = n as u64;
                self.bump_version_locked();
                self.save_anchor_locked(&st)?;
                store.free(NodeId::from_raw(old_root))?; // the empty root leaf
                Ok(())
            }
            Err(e) => {
                for id in allocated {
                    let _ = store.free(NodeId::from_raw(id));
                }
                Err(e)
            }
        }
    }

    /// Packs the pairs into full leaves, each written as soon as the next pair no longer
    /// fits it (a value over the inline limit first goes to its own node). Returns each
    /// leaf's first key and id; no pairs make one empty leaf.
    fn build_leaves<'p>(
        &self,
        store: &crate::Store,
        allocated: &mut Vec<u64>,
        n: usize,
        pair: &impl Fn(usize) -> Result<(&'p [u8], &'p [u8])>,
        pb: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>> {
        let inline_max = super::max_inline_value_bytes(pb as u32);
        let mut out = Vec::new();
        let mut page: Vec<(Cow<'p, [u8]>, Value<'p>)> = Vec::new();
        let mut used = 0;
        for i in 0..n {
            let (k, v) = pair(i)?;
            let skey = self.stored_key(k, v);
            let value = if self.duplicates() == Duplicates::Multi {
                Value::Inline(&[])
            } else if v.len() <= inline_max {
                Value::Inline(v)
            } else {
                let (id, _, _) = store.allocate(v.len(), KIND_OVERFLOW)?;
                allocated.push(id.raw());
                store.publish(id, v)?;
                Value::Overflow(id.raw(), v.len() as u32)
            };
            let bytes = page::entry_bytes(skey.len(), &Payload::Leaf(value));
            if !page.is_empty() && (!page::fits(used + bytes, pb) || !self.count_fits(page.len() + 1)) {
                out.push(flush_leaf(store, allocated, &mut page, pb)?);
                used = 0;
            }
            used += bytes;
            page.push((skey, value));
        }
        if !page.is_empty() || out.is_empty() {
            out.push(flush_leaf(store, allocated, &mut page, pb)?);
        }
        Ok(out)
    }

    /// Packs (separator, child) entries into full internal pages. Each page's first child is
    /// its leftmost pointer; the separator in front of it moves up a level.
    fn build_internal_level(
        &self,
        store: &crate::Store,
        allocated: &mut Vec<u64>,
        first_child: u64,
        first_key: &[u8],
        entries: &[Entry<'_>],
        pb: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        let (mut leftmost, mut key) = (first_child, first_key.to_vec());
        let mut start = 0;
        loop {
            let mut end = self.page_end(entries, start, pb);
            if end + 1 == entries.len() && end - start >= 2 {
                // The next page would get only a leftmost child: a page with no separator
                // leaves its child no sibling to merge with, and that leaf could empty.
                end -= 1;
            }
            let id = write_page(store, allocated, KIND_INTERNAL, TYPE_INTERNAL, leftmost, &entries[start..end], pb)?;
            out.push((key, id));
            if end >= entries.len() {
                return Ok(out);
            }
            // The next page starts with entries[end]: its child is the leftmost pointer.
            let Payload::Child(c) = entries[end].payload else { unreachable!("internal entries hold children") };
            leftmost = c;
            key = entries[end].key.to_vec();
            start = end + 1;
        }
    }

    /// The end of the run of entries from `start` that fills one page.
    fn page_end(&self, entries: &[Entry<'_>], start: usize, pb: usize) -> usize {
        let mut used = 0;
        let mut end = start;
        while end < entries.len() && page::fits(used + entries[end].bytes(), pb) && self.count_fits(end - start + 1) {
            used += entries[end].bytes();
            end += 1;
        }
        end
    }
}

/// Writes the pending leaf's entries as a new page and empties it: (first key, page id).
fn flush_leaf(
    store: &crate::Store,
    allocated: &mut Vec<u64>,
    page: &mut Vec<(Cow<'_, [u8]>, Value<'_>)>,
    pb: usize,
) -> Result<(Vec<u8>, u64)> {
    let entries: Vec<Entry<'_>> = page.iter().map(|(k, v)| Entry { key: k, payload: Payload::Leaf(*v) }).collect();
    let id = write_page(store, allocated, KIND_LEAF, TYPE_LEAF, 0, &entries, pb)?;
    let first = page.first().map(|(k, _)| k.to_vec()).unwrap_or_default();
    page.clear();
    Ok((first, id))
}

fn write_page(
    store: &crate::Store,
    allocated: &mut Vec<u64>,
    kind: u8,
    ty: u8,
    leftmost: u64,
    entries: &[Entry<'_>],
    pb: usize,
) -> Result<u64> {
    let (id, _, _) = store.allocate(pb, kind)?;
    allocated.push(id.raw());
    // Built straight into the new node's block: no page image to fill and copy.
    store.try_update(id, |block| Ok((pb, page::build(&mut block[..pb], ty, leftmost, entries))))?;
    Ok(id.raw())
}
