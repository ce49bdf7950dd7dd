//! Property test of every page edit: random mixes of insert, overwrite, remove (single, pair
//! and runs), bulk load, and scans both ways against a `BTreeMap` model, at 512-byte and
//! 4 KiB pages, with `verify` after every step and the whole tree compared with the model
//! after each commit, reopen and crash. Keys come in the shapes hosts use: 8-byte integers,
//! 16-byte keys (an 8-byte prefix and an integer) and 17-255-byte keys (cut to the page's key
//! limit); values run from 8 to 1,000 bytes, so large values leave the page and come back.
//! A failing run names its seed: `PCORE_BTREE_SEED=<seed> cargo test --release --lib
//! property_mixes`.

use super::{drop_tree, max_inline_value_bytes, max_key_bytes, BTree, Cursor, Duplicates, TreeOptions};
use crate::btree::cursor::tests::{in_place_scan, three_scans};
use crate::error::Error;
use crate::store::tests::{reopen, TempDir};
use crate::store::{Durability, Store, StoreOptions};
use crate::test_rng::TestRng;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// key -> its values (one in an Overwrite tree, a sorted set in a Multi tree).
type Model = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

/// Keys are drawn from this many integers, so overwrites and removes of present keys are
/// common and pages fill, split and empty again many times in one run.
const KEY_SPACE: u64 = 1_500;

const TREE: &[u8] = b"mixes";

#[test]
fn property_mixes_of_every_edit_match_a_model() {
    let seeds: Vec<u64> = match std::env::var("PCORE_BTREE_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        // Seed 1 found internal pages left without a separator by removes, seed 3 by bulk loads.
        Err(_) => vec![1, 3],
    };
    for seed in seeds {
        for page_bytes in [512u32, 4096] {
            for dup in [Duplicates::Overwrite, Duplicates::Multi] {
                Mix::new(seed, page_bytes, dup, None).run(if page_bytes == 512 { 2_500 } else { 1_500 });
            }
        }
        // Kizuna's entry ceiling: counts, not bytes, decide most splits and merges.
        Mix::new(seed, 4096, Duplicates::Overwrite, Some(5)).run(1_500);
    }
}

/// Sequential removes of long keys (17-255 bytes, a long shared prefix: separators cut deep
/// and differ in length) with values of 8-1,000 bytes, in ascending and descending order at
/// 512-byte and 4 KiB pages: the edge leaf empties entry by entry and merges, and internal
/// pages merge and even out up to the root. `verify` after every remove, and the tree
/// against the model after each commit and reopen (or crash). Seeds 37 and 58 (of 60 tried)
/// at 512-byte pages, descending, left an internal page with a single child, whose leaf then
/// emptied (see `sequential_removes_of_long_keys_at_512_byte_pages`).
#[test]
fn property_sequential_removes_of_long_keys_match_a_model() {
    let seeds: Vec<u64> = match std::env::var("PCORE_BTREE_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => vec![37, 58],
    };
    for seed in seeds {
        for page_bytes in [512u32, 4096] {
            for descending in [true, false] {
                let mut mix = Mix::new(seed, page_bytes, Duplicates::Overwrite, None);
                mix.sequential_removes(3_000, descending);
            }
        }
    }
}

struct Mix {
    seed: u64,
    page_bytes: u32,
    dup: Duplicates,
    rng: TestRng,
    dir: TempDir,
    sopts: StoreOptions,
    topts: TreeOptions,
    store: Store,
    tree: BTree,
    model: Model,
    committed: Model,
    step: usize,
}

impl Mix {
    fn new(seed: u64, page_bytes: u32, dup: Duplicates, ceiling: Option<u32>) -> Mix {
        let dir = TempDir::new("btree-mixes");
        let sopts = StoreOptions { durability: Durability::Eventual, ..StoreOptions::default() };
        let topts =
            TreeOptions { page_bytes, duplicates: dup, max_entries_per_page: ceiling, ..TreeOptions::default() };
        let store = Store::open(dir.path(), &sopts).unwrap();
        let tree = BTree::open(&store, TREE, &topts).unwrap();
        store.commit().unwrap();
        let rng = TestRng::from_seed(seed ^ u64::from(page_bytes) ^ ((dup as u64) << 32));
        Mix {
            seed,
            page_bytes,
            dup,
            rng,
            dir,
            sopts,
            topts,
            store,
            tree,
            model: Model::new(),
            committed: Model::new(),
            step: 0,
        }
    }

    fn ctx(&self) -> String {
        format!(
            "seed {} page {} {:?} ceiling {:?} step {} (PCORE_BTREE_SEED={})",
            self.seed, self.page_bytes, self.dup, self.topts.max_entries_per_page, self.step, self.seed
        )
    }

    fn run(&mut self, steps: usize) {
        for step in 0..steps {
            self.step = step;
            match self.rng.below(100) {
                0..=39 => self.insert_new(),
                40..=52 => self.overwrite(),
                53..=69 => self.remove_one(),
                70..=73 => self.insert_run(),
                74..=77 => self.remove_run(),
                78..=87 => self.scan(),
                88 => self.bulk_reload(),
                89..=95 => self.commit(),
                _ => self.reopen(),
            }
            self.tree.verify().unwrap_or_else(|e| panic!("{}: verify: {e}", self.ctx()));
        }
        self.commit();
        self.reopen();
    }

    /// The key of integer `n`, its shape chosen by `n` so one integer is always one key.
    fn key(&self, n: u64) -> Vec<u8> {
        match n % 3 {
            0 => n.to_be_bytes().to_vec(),
            1 => [*b"prefix16", n.to_be_bytes()].concat(),
            _ => {
                let limit = max_key_bytes(self.page_bytes).min(255);
                let len = 17 + (n.wrapping_mul(7_919) % (limit as u64 - 16)) as usize;
                // A long shared prefix, then the integer: separators must cut deep.
                let mut k = vec![b'L'; len - 8];
                k.extend_from_slice(&n.to_be_bytes());
                k
            }
        }
    }

    /// Loads `n` long keys of random lengths, commits, then removes them all in key order
    /// (or descending), checking the tree after each remove and against the model after
    /// each commit and reopen.
    fn sequential_removes(&mut self, n: u64, descending: bool) {
        let limit = max_key_bytes(self.page_bytes).min(255);
        for i in 0..n {
            let len = 17 + self.rng.below(limit as u64 - 16) as usize;
            let mut key = vec![b'L'; len - 8];
            key.extend_from_slice(&(i.wrapping_mul(7_919) % 100_003).to_be_bytes());
            // Mostly values that stay in the leaf, so leaves hold few long keys each.
            let value = match self.rng.below(10) {
                0 => self.value(),
                _ => vec![7u8; 8 + self.rng.below(60) as usize],
            };
            self.put(key, value);
        }
        self.commit();
        let mut keys: Vec<Vec<u8>> = self.model.keys().cloned().collect();
        if descending {
            keys.reverse();
        }
        for (step, key) in keys.iter().enumerate() {
            self.step = step;
            assert!(self.tree.remove(key).unwrap_or_else(|e| panic!("{}: remove: {e}", self.ctx())));
            self.model.remove(key);
            self.tree.verify().unwrap_or_else(|e| panic!("{}: descending {descending}: verify: {e}", self.ctx()));
            if step % 211 == 0 {
                self.commit();
                self.reopen();
            }
        }
        self.commit();
        self.reopen();
        assert_eq!(self.tree.stats().unwrap().height, 1, "{}: collapsed to a root leaf", self.ctx());
    }

    fn random_key(&mut self) -> Vec<u8> {
        let n = self.rng.below(KEY_SPACE);
        self.key(n)
    }

    fn value(&mut self) -> Vec<u8> {
        let max = if self.dup == Duplicates::Multi { max_inline_value_bytes(self.page_bytes) } else { 1_000 };
        let len = match self.rng.below(10) {
            0 => 8 + self.rng.below(max as u64 - 7) as usize,
            1 => max,
            _ => 8 + self.rng.below(25) as usize,
        };
        let fill = self.rng.next() as u8;
        (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
    }

    /// Inserts `key` with `value`, the model following what the tree's mode says.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let r = self.tree.insert(&key, &value);
        let duplicate = self.dup == Duplicates::Multi && self.model.get(&key).is_some_and(|vs| vs.contains(&value));
        if duplicate {
            assert!(matches!(r, Err(Error::DuplicateKey(_))), "{}: {r:?}", self.ctx());
            return;
        }
        r.unwrap_or_else(|e| panic!("{}: insert: {e}", self.ctx()));
        let values = self.model.entry(key).or_default();
        if self.dup != Duplicates::Multi {
            values.clear();
        }
        values.insert(value);
    }

    fn insert_new(&mut self) {
        let key = self.random_key();
        let value = self.value();
        self.put(key, value);
    }

    fn present_key(&mut self) -> Option<Vec<u8>> {
        if self.model.is_empty() {
            return None;
        }
        let at = self.rng.below(self.model.len() as u64) as usize;
        self.model.keys().nth(at).cloned()
    }

    /// A present key gets another value: replaced in an Overwrite tree, added in a Multi one.
    fn overwrite(&mut self) {
        if let Some(key) = self.present_key() {
            let value = self.value();
            self.put(key, value);
        }
    }

    fn remove_one(&mut self) {
        let key = match self.present_key() {
            Some(k) if self.rng.below(8) != 0 => k,
            _ => self.random_key(),
        };
        if self.dup == Duplicates::Multi && self.rng.below(2) == 0 {
            let value = self.model.get(&key).and_then(|vs| vs.iter().next().cloned()).unwrap_or_else(|| self.value());
            let removed = self.tree.remove_pair(&key, &value).unwrap_or_else(|e| panic!("{}: {e}", self.ctx()));
            let values = self.model.entry(key.clone()).or_default();
            assert_eq!(removed, values.remove(&value), "{}: remove_pair", self.ctx());
            if values.is_empty() {
                self.model.remove(&key);
            }
            return;
        }
        let removed = self.tree.remove(&key).unwrap_or_else(|e| panic!("{}: remove: {e}", self.ctx()));
        assert_eq!(removed, self.model.remove(&key).is_some(), "{}: remove", self.ctx());
    }

    /// Consecutive integers of one shape, ascending or descending: appends and prepends at
    /// a leaf's edge, the split points sorted loads take.
    fn insert_run(&mut self) {
        let start = self.rng.below(KEY_SPACE);
        let len = 10 + self.rng.below(60);
        let down = self.rng.below(2) == 0;
        for i in 0..len {
            let n = if down { start.saturating_sub(3 * i) } else { start + 3 * i };
            let (key, value) = (self.key(n), self.value());
            self.put(key, value);
        }
    }

    /// A run of neighbouring present keys removed in order: leaves empty, merge and collapse.
    fn remove_run(&mut self) {
        let Some(first) = self.present_key() else { return };
        let len = 10 + self.rng.below(120) as usize;
        let keys: Vec<Vec<u8>> = self.model.range(first..).take(len).map(|(k, _)| k.clone()).collect();
        for key in keys {
            assert!(self.tree.remove(&key).unwrap(), "{}: remove run", self.ctx());
            self.model.remove(&key);
        }
    }

    fn pairs(model: &Model, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .range::<[u8], _>((lower, upper))
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .collect()
    }

    /// A random range read forward through the combined and the batch reads, and backward.
    fn scan(&mut self) {
        let a = self.random_key();
        let b = self.random_key();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let lower = match self.rng.below(3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(lo.as_slice()),
            _ => Bound::Excluded(lo.as_slice()),
        };
        let upper = match self.rng.below(3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(hi.as_slice()),
            _ => Bound::Excluded(hi.as_slice()),
        };
        let want = if lo == hi && matches!((lower, upper), (Bound::Excluded(_), Bound::Excluded(_))) {
            Vec::new() // BTreeMap::range panics on (Excluded(x), Excluded(x))
        } else {
            Self::pairs(&self.model, lower, upper)
        };
        let batch = 1 + self.rng.below(50) as usize;
        for (way, got) in three_scans(&self.tree, lower, upper, batch).iter().enumerate() {
            assert_eq!(got, &want, "{}: way {way} (batches of {batch})", self.ctx());
        }
        // The entries handed out in place (the C ABI's `get` and `next_get`).
        assert_eq!(in_place_scan(&self.tree, lower, upper), want, "{}: in place", self.ctx());
        let mut c = Cursor::new(&self.tree);
        c.set_bounds(lower, upper).unwrap();
        c.last().unwrap();
        let mut backward = Vec::new();
        while let Some(e) = c.current().unwrap() {
            backward.push(e);
            c.move_prev().unwrap();
        }
        backward.reverse();
        assert_eq!(backward, want, "{}: backward", self.ctx());
    }

    /// The tree dropped and bulk-loaded again from the model (plus a few new keys), so the
    /// edits that follow work on the full pages bulk loads build.
    fn bulk_reload(&mut self) {
        for _ in 0..self.rng.below(50) {
            let key = self.random_key();
            let value = self.value();
            let values = self.model.entry(key).or_default();
            if self.dup != Duplicates::Multi {
                values.clear();
            }
            values.insert(value);
        }
        drop_tree(&self.store, TREE).unwrap();
        self.tree = BTree::open(&self.store, TREE, &self.topts).unwrap();
        let pairs = Self::pairs(&self.model, Bound::Unbounded, Bound::Unbounded);
        self.tree.bulk_load(pairs).unwrap_or_else(|e| panic!("{}: bulk_load: {e}", self.ctx()));
    }

    fn commit(&mut self) {
        self.store.commit().unwrap();
        self.committed = self.model.clone();
        self.check_all("after commit");
    }

    /// A crash or a clean close, then a reopen: the tree is what was last committed.
    fn reopen(&mut self) {
        let crashed = self.rng.below(2) == 0;
        if crashed {
            self.store.simulate_crash();
        } else {
            self.store.close().unwrap();
        }
        self.store = reopen(self.dir.path(), &self.sopts);
        self.tree = BTree::open(&self.store, TREE, &self.topts).unwrap();
        self.model = self.committed.clone();
        self.check_all(if crashed { "after a crash" } else { "after a reopen" });
        self.store.verify().unwrap_or_else(|e| panic!("{}: store verify: {e}", self.ctx()));
    }

    fn check_all(&self, when: &str) {
        let all = self.tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
        let want = Self::pairs(&self.model, Bound::Unbounded, Bound::Unbounded);
        assert_eq!(all.len(), want.len(), "{}: {when}: entry count", self.ctx());
        assert!(all == want, "{}: {when}: contents differ from the model", self.ctx());
        assert_eq!(self.tree.len(), want.len() as u64, "{}: {when}: len", self.ctx());
    }
}
