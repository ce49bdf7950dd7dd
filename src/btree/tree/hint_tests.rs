//! The leaf hint (`hint.rs`): writes next to the leaf the last write edited in place go where
//! they belong while splits, merges, shifts and root changes elsewhere change the tree, and an
//! abort leaves no hint to a page it took back. Keys share a 10-byte prefix, so their prefix
//! words tie and only the leaf's keys and the path's edges decide whether the hint applies.
//! `verify` after every write, the whole tree against a model at the end of each phase.

use super::*;
use crate::store::StoreOptions;
use crate::test_rng::TestRng;
use std::collections::BTreeMap;
use std::ops::Bound;

fn key(n: u64) -> Vec<u8> {
    [&b"LLLLLLLLLL"[..], &(n as u32).to_be_bytes()].concat()
}

/// A tree and the model it must match (Overwrite trees: one value per key).
struct Checked {
    store: Store,
    tree: BTree,
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    rng: TestRng,
    what: String,
}

impl Checked {
    fn new(options: TreeOptions, seed: u64, what: &str) -> Checked {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        let tree = BTree::open(&store, b"hinted", &options).unwrap();
        Checked {
            store,
            tree,
            model: BTreeMap::new(),
            committed: BTreeMap::new(),
            rng: TestRng::new(seed),
            what: what.to_string(),
        }
    }

    /// A value of 4 to 32 bytes (a Multi tree's limit at 512-byte pages): leaves of 512 bytes
    /// hold a handful to a few dozen entries.
    fn value(&mut self, n: u64) -> Vec<u8> {
        vec![n as u8; 4 + self.rng.below(29) as usize]
    }

    fn insert(&mut self, n: u64) {
        let v = self.value(n);
        match self.tree.duplicates() {
            Duplicates::Multi => {
                // One value per key: an insert of a present key first takes its value out.
                if self.model.contains_key(&key(n)) {
                    self.remove(n);
                }
            }
            _ => assert_eq!(self.tree.duplicates(), Duplicates::Overwrite),
        }
        self.tree.insert(&key(n), &v).unwrap_or_else(|e| panic!("{}: insert {n}: {e}", self.what));
        self.model.insert(key(n), v);
        self.check(n);
    }

    fn remove(&mut self, n: u64) {
        let removed = self.tree.remove(&key(n)).unwrap_or_else(|e| panic!("{}: remove {n}: {e}", self.what));
        assert_eq!(removed, self.model.remove(&key(n)).is_some(), "{}: remove {n}", self.what);
        self.check(n);
    }

    fn check(&self, n: u64) {
        self.tree.verify().unwrap_or_else(|e| panic!("{}: after a write of {n}: verify: {e}", self.what));
        assert_eq!(self.tree.get(&key(n)).unwrap(), self.model.get(&key(n)).cloned(), "{}: get {n}", self.what);
    }

    fn check_all(&self, when: &str) {
        // In key order as the model keeps it (`verify` checks the tree's own order).
        let mut all = self.tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
        all.sort();
        let want: Vec<(Vec<u8>, Vec<u8>)> = self.model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(all == want, "{}: {when}: the tree differs from the model", self.what);
        assert_eq!(self.tree.len(), want.len() as u64, "{}: {when}: len", self.what);
    }

    /// The present key at or after `n` (in key order), if any.
    fn present_from(&self, n: u64) -> Option<u64> {
        self.model.range(key(n)..).next().map(|(k, _)| u64::from(u32::from_be_bytes(k[10..].try_into().unwrap())))
    }

    /// A burst of random writes anywhere: pages split, merge, shift and even out, the root
    /// grows or shrinks, the hinted leaf among them or not.
    fn elsewhere(&mut self, span: u64) {
        for _ in 0..1 + self.rng.below(30) {
            let n = self.rng.below(span);
            if self.rng.below(2) == 0 {
                self.insert(n);
            } else {
                self.remove(n);
            }
        }
    }
}

/// Every kind of tree whose order the hint reads: bytewise, Multi (composites), and a host's
/// comparator (here descending, so the tree's first key is the largest number).
fn trees() -> Vec<(TreeOptions, &'static str)> {
    let base = TreeOptions { page_bytes: 512, duplicates: Duplicates::Overwrite, ..TreeOptions::default() };
    let reverse: Comparator = Arc::new(|a: &[u8], b: &[u8]| b.cmp(a));
    vec![
        (base.clone(), "bytewise"),
        (TreeOptions { duplicates: Duplicates::Multi, ..base.clone() }, "multi"),
        (TreeOptions { comparator: Some(reverse), ..base.clone() }, "descending comparator"),
        (TreeOptions { max_entries_per_page: Some(5), ..base }, "ceiling of 5"),
    ]
}

/// After a write edits a leaf in place, the next writes land on it, just past its ends (in
/// it, or in a neighbour: the hint must tell them apart by the leaf's keys and the path's
/// edges), beyond the tree's ends, or anywhere (changing the tree's shape); ascending and
/// descending runs of removes and inserts go leaf by leaf.
#[test]
fn writes_next_to_a_hinted_leaf_go_where_they_belong() {
    const SPAN: u64 = 4_000;
    for (options, what) in trees() {
        let mut t = Checked::new(options, 0x4117_0001, what);
        for n in (0..SPAN).step_by(4) {
            t.insert(n);
        }
        for round in 0..400 {
            let from = t.rng.below(SPAN);
            let Some(at) = t.present_from(from) else { continue };
            t.remove(at); // in place, mostly: the hint now names its leaf
            match t.rng.below(8) {
                0 => {
                    // A run of removes from there on.
                    for _ in 0..t.rng.below(40) {
                        let Some(next) = t.present_from(at) else { break };
                        t.remove(next);
                    }
                }
                1 => {
                    // A run of inserts from there on, ascending or descending.
                    let down = t.rng.below(2) == 0;
                    for i in 0..t.rng.below(60) {
                        t.insert(if down { at.saturating_sub(i) } else { at + i });
                    }
                }
                2 => {
                    // Just past the next present key and just before it: its leaf or this one.
                    let next = t.present_from(at).unwrap_or(SPAN);
                    t.insert(next + 1);
                    t.insert(next.saturating_sub(1));
                    t.remove(next);
                }
                3 => {
                    // Beyond the tree's ends: the edges of the path decide.
                    t.insert(SPAN + round);
                    t.insert(0);
                    t.remove(SPAN + round);
                }
                4 => {
                    // The same key again, and its neighbours.
                    t.insert(at);
                    t.remove(at + 1);
                    t.insert(at.saturating_sub(1));
                }
                _ => t.elsewhere(SPAN),
            }
        }
        t.check_all("after the rounds");
        // Everything out in ascending order, then sorted inserts back, then out descending.
        while let Some(n) = t.present_from(0) {
            t.remove(n);
        }
        for n in 0..SPAN / 2 {
            t.insert(n);
        }
        for n in (0..SPAN / 2).rev() {
            t.remove(n);
        }
        t.check_all("after emptying it twice");
    }
}

/// An abort takes pages back, the hinted leaf's contents among them, and may free the leaf
/// itself (a page split off since the commit): the writes after it go where the committed
/// tree says.
#[test]
fn an_abort_leaves_no_hint_behind() {
    const SPAN: u64 = 3_000;
    for (options, what) in trees() {
        let mut t = Checked::new(options, 0x4117_0002, what);
        for n in (0..SPAN).step_by(3) {
            t.insert(n);
        }
        t.store.commit().unwrap();
        t.committed = t.model.clone();
        for round in 0..60 {
            let start = t.rng.below(SPAN);
            // New keys around `start` (splits: new leaves since the commit), then removes from
            // there on: the hint names a leaf that may not exist once the abort is done.
            for i in 0..t.rng.below(40) {
                t.insert(start + 3 * i + 1);
            }
            for _ in 0..t.rng.below(30) {
                let Some(next) = t.present_from(start) else { break };
                t.remove(next);
            }
            if round % 3 == 0 {
                t.elsewhere(SPAN);
            }
            if t.rng.below(4) == 0 {
                t.store.commit().unwrap();
                t.committed = t.model.clone();
                continue;
            }
            t.store.abort().unwrap();
            t.model = t.committed.clone();
            t.check_all("right after an abort");
            // The same place again, where the hint pointed before the abort.
            for _ in 0..t.rng.below(20) {
                let Some(next) = t.present_from(start) else { break };
                t.remove(next);
            }
            t.insert(start + 2);
            t.check_all("after writes following an abort");
        }
    }
}

/// A bulk load replaces every page, the hinted root leaf among them (freed, its id free for
/// reuse): the writes after it descend the new tree.
#[test]
fn a_bulk_load_leaves_no_hint_behind() {
    for (options, what) in trees() {
        let mut t = Checked::new(options, 0x4117_0003, what);
        // In place at the root leaf, twice: the hint names the (empty) root leaf.
        t.insert(7);
        t.remove(7);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000).map(|n| (key(2 * n), vec![n as u8; 8])).collect();
        let mut sorted = pairs.clone();
        sorted.sort_by(|a, b| t.tree.cmp_stored(&a.0, &b.0));
        t.tree.bulk_load(sorted).unwrap();
        t.model.extend(pairs);
        for n in [1, 2, 4_001, 3_999, 0, 5] {
            t.insert(n);
            t.remove(n + 2);
        }
        t.check_all("after writes following a bulk load");
    }
}
