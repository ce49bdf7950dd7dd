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
        let mut stored: Vec<(Cow<'_, [u8]>, &[u8])> = Vec::with_capacity(pairs.len());
        for (k, v) in &pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            self.check_entry(k, v)?;
            let skey = self.stored_key(k, v);
            if let Some((prev, _)) = stored.last() {
                if self.cmp_stored(prev, &skey) != Ordering::Less {
                    return Err(Error::InvalidArgument("bulk_load input is not strictly sorted".into()));
                }
            }
            let value: &[u8] = if self.duplicates() == Duplicates::Multi { &[] } else { v };
            stored.push((skey, value));
        }
        let store = self.store()?;
        let mut st = self.write_state();
        if st.entries != 0 {
            return Err(Error::InvalidArgument("bulk_load needs an empty tree".into()));
        }
        let pb = self.page_bytes();
        let inline_max = super::max_inline_value_bytes(pb as u32);
        let mut allocated: Vec<u64> = Vec::new();
        let result = (|| -> Result<(u64, u32)> {
            // Overflow values first, so leaf entries can name their nodes.
            let mut values: Vec<Value<'_>> = Vec::with_capacity(stored.len());
            for (_, v) in &stored {
                if v.len() <= inline_max {
                    values.push(Value::Inline(v));
                } else {
                    let (id, _, _) = store.allocate(v.len(), KIND_OVERFLOW)?;
                    allocated.push(id.raw());
                    store.publish(id, v)?;
                    values.push(Value::Overflow(id.raw(), v.len() as u32));
                }
            }
            let leaf_entries: Vec<Entry<'_>> =
                stored.iter().zip(&values).map(|((k, _), v)| Entry { key: k, payload: Payload::Leaf(*v) }).collect();
            // Level by level: (first key, page id) of each page built.
            let mut level = self.build_level(&store, &mut allocated, TYPE_LEAF, 0, &leaf_entries, pb)?;
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
                st.entries = stored.len() as u64;
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

    /// Packs leaf entries into full pages; returns each page's first key and id.
    fn build_level(
        &self,
        store: &crate::Store,
        allocated: &mut Vec<u64>,
        ty: u8,
        leftmost: u64,
        entries: &[Entry<'_>],
        pb: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < entries.len() || (out.is_empty() && entries.is_empty()) {
            let end = self.page_end(entries, start, pb);
            let id = write_page(store, allocated, KIND_LEAF, ty, leftmost, &entries[start..end], pb)?;
            out.push((entries.get(start).map(|e| e.key.to_vec()).unwrap_or_default(), id));
            if entries.is_empty() {
                break;
            }
            start = end;
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
            let end = self.page_end(entries, start, pb);
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
