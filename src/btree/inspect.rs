//! `stats` (a tree's health in a few numbers, like `mdb_stat`) and `verify` (every invariant
//! checked, every page read; a damaged page or a comparator that is not a total order is
//! reported with the page's id).

use super::page::{self, PageRef, Value};
use super::tree::BTree;
use crate::error::{Error, Result};
use crate::store::NodeId;
use std::cmp::Ordering;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeStats {
    pub height: u32,
    /// Pages per level, root first.
    pub pages_per_level: Vec<u64>,
    pub entries: u64,
    pub leaf_pages: u64,
    pub keys_per_leaf_min: u64,
    pub keys_per_leaf_max: u64,
    pub keys_per_leaf_avg: f64,
    /// Bytes the leaves' entries use over the leaves' capacity.
    pub leaf_fill: f64,
    /// All pages' bytes over the entries.
    pub bytes_per_entry: f64,
    pub overflow_values: u64,
    pub page_bytes: u32,
}

struct Walk {
    stats: TreeStats,
    leaf_used_bytes: u64,
    leaf_depth: Option<usize>,
    entries: u64,
}

impl BTree {
    pub fn stats(&self) -> Result<TreeStats> {
        Ok(self.walk()?.stats)
    }

    /// Checks every page: layout, entries in strictly increasing order, every key within its
    /// parent's separators, all leaves at one depth and none empty but a root leaf, the entry
    /// count, and that every value node exists with the length its leaf records.
    pub fn verify(&self) -> Result<()> {
        self.walk().map(|_| ())
    }

    fn walk(&self) -> Result<Walk> {
        let st = self.read_state()?;
        let mut w = Walk {
            stats: TreeStats { height: st.height, page_bytes: self.page_bytes() as u32, ..TreeStats::default() },
            leaf_used_bytes: 0,
            leaf_depth: None,
            entries: 0,
        };
        w.stats.keys_per_leaf_min = u64::MAX;
        self.walk_page(st.root, 0, None, None, &mut w)?;
        if w.entries != st.entries {
            return Err(Error::corrupt(
                "B+ tree anchor",
                0,
                format!("counts {} entries, the leaves hold {}", st.entries, w.entries),
            ));
        }
        let s = &mut w.stats;
        s.entries = w.entries;
        if s.leaf_pages > 0 {
            s.keys_per_leaf_avg = w.entries as f64 / s.leaf_pages as f64;
            s.leaf_fill = w.leaf_used_bytes as f64 / (s.leaf_pages as f64 * page::capacity(self.page_bytes()) as f64);
        }
        if s.keys_per_leaf_min == u64::MAX {
            s.keys_per_leaf_min = 0;
        }
        let pages: u64 = s.pages_per_level.iter().sum();
        s.bytes_per_entry =
            if w.entries == 0 { 0.0 } else { (pages * self.page_bytes() as u64) as f64 / w.entries as f64 };
        Ok(w)
    }

    fn walk_page(&self, id: u64, depth: usize, low: Option<&[u8]>, high: Option<&[u8]>, w: &mut Walk) -> Result<()> {
        let bad = |what: String| Error::corrupt(format!("B+ tree page {id:#x}"), 0, what);
        if depth >= w.stats.height as usize {
            return Err(bad(format!("deeper than the tree's height {}", w.stats.height)));
        }
        if w.stats.pages_per_level.len() <= depth {
            w.stats.pages_per_level.resize(depth + 1, 0);
        }
        w.stats.pages_per_level[depth] += 1;
        let bytes = self.store()?.read(NodeId::from_raw(id)).map_err(|e| super::tree::missing_page(id, e))?;
        let p = PageRef::parse(&bytes, id)?;
        let cells = p.cells()?;
        let keys: Vec<&[u8]> = cells.iter().map(|c| c.key()).collect();
        p.check_words()?;
        let used = p.used_bytes()?;
        if !page::fits(used, self.page_bytes()) {
            return Err(bad(format!(
                "{used} bytes of entries in a page of capacity {}",
                page::capacity(self.page_bytes())
            )));
        }
        for pair in keys.windows(2) {
            if self.cmp_stored(pair[0], pair[1]) != Ordering::Less {
                return Err(bad("keys out of order (or a comparator that is not a total order)".into()));
            }
        }
        for &key in &keys {
            let below_low = low.is_some_and(|l| self.cmp_stored(key, l) == Ordering::Less);
            let at_or_above_high = high.is_some_and(|h| self.cmp_stored(key, h) != Ordering::Less);
            if below_low || at_or_above_high {
                return Err(bad(
                    "a key outside its parent's separators (or a comparator that is not a total order)".into()
                ));
            }
        }
        if p.is_leaf() {
            if let Some(d) = w.leaf_depth.filter(|&d| d != depth) {
                return Err(bad(format!("a leaf at depth {depth}, others at {d}")));
            }
            if depth + 1 != w.stats.height as usize {
                return Err(bad(format!("a leaf at depth {depth} in a tree of height {}", w.stats.height)));
            }
            if keys.is_empty() && depth > 0 {
                // Scans take an empty leaf for the tree's end; removes merge it away first.
                return Err(bad("an empty leaf below the root".into()));
            }
            w.leaf_depth = Some(depth);
            w.stats.leaf_pages += 1;
            w.entries += keys.len() as u64;
            w.leaf_used_bytes += used as u64;
            w.stats.keys_per_leaf_min = w.stats.keys_per_leaf_min.min(keys.len() as u64);
            w.stats.keys_per_leaf_max = w.stats.keys_per_leaf_max.max(keys.len() as u64);
            for i in 0..keys.len() {
                if let Value::Overflow(vid, len) = p.leaf_value(i)? {
                    self.read_overflow(vid, len)?;
                    w.stats.overflow_values += 1;
                }
            }
            return Ok(());
        }
        let separators: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let children: Vec<u64> = std::iter::once(Ok(p.leftmost_child()))
            .chain((0..keys.len()).map(|i| p.child(i)))
            .collect::<Result<_>>()?;
        drop(bytes);
        for (i, child) in children.iter().enumerate() {
            let lo = if i == 0 { low } else { Some(separators[i - 1].as_slice()) };
            let hi = if i == separators.len() { high } else { Some(separators[i].as_slice()) };
            self.walk_page(*child, depth + 1, lo, hi, w)?;
        }
        Ok(())
    }
}
