//! The in-place executor of the planner's decision for a full leaf ([`BTree::overflow_plan`]),
//! for the insert's common slow case: a new key with an inline value whose leaf is full. The
//! leaf is rewritten with the cells that stay, a sibling takes shifted cells into its free gap,
//! and the parent's separator is replaced, or the new page's added, in the parent's gap: the
//! pages are read where they lie, never copied to be decoded.
//!
//! It decides nothing: it takes the plan when it can carry it out whole, and otherwise (a leaf
//! that is the root, a parent without room, a key-count ceiling, no cut) leaves the operation,
//! nothing changed, to the copy executor (`insert.rs`), which asks the same planner. Both carry
//! the plan out through a `Plan`: every shadow and new page is taken before any page is written.

use super::{edge_at, BTree, Overflow, PageReader, PageWrite, Plan, Scratch, State, KIND_LEAF};
use crate::btree::page::{self, Cell, Entry, LeafCells, LeafWithInsert, PageRef, Payload};
use crate::error::{Error, Result};
use crate::store::{NodeEditor, NodeId};

/// Where a full leaf's moved cells go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// To the sibling `id` under the same parent: its front when it is the leaf's right
    /// sibling, its end when the left.
    Sibling { id: u64, right: bool },
    /// To a new page right of the leaf.
    NewPage,
}

/// The planner's shift or split, ready to be carried out in place: checked and its page
/// images built from the pages as they are, before anything is written.
struct Move {
    to: Destination,
    /// The parent's entry whose separator is replaced (a shift) or inserted (a split).
    sep_index: usize,
    separator: Vec<u8>,
    /// The moved cells, in order, as a leaf page: a split's new page as it is.
    moved: Scratch,
    /// The leaf's write: the cells that stay kept in place (the new cell among them or not),
    /// or its new image.
    rest: PageWrite,
}

impl BTree {
    /// Inserts `new` at `at` of the full leaf `leaf_id` (the last page of `path`'s descent)
    /// by a shift or split in place. Returns false, nothing changed, when that does not
    /// apply; an error leaves the tree as it was.
    pub(super) fn overflow_in_place(
        &self,
        editor: &mut NodeEditor<'_>,
        st: &mut State,
        path: &[(u64, usize)],
        leaf_id: u64,
        at: usize,
        new: &Entry<'_>,
    ) -> Result<bool> {
        let Some(&(parent_id, _)) = path.last() else { return Ok(false) };
        let mut cell_buf = Vec::new();
        let cell = Cell::encode(new, &mut cell_buf);
        let Some(m) = self.plan_move(editor, path, leaf_id, at, cell)? else { return Ok(false) };
        // The leaf gets its new image; the sibling and the parent are edited where they lie,
        // as the planning checked they can be.
        let mut plan = Plan::new(self, editor);
        plan.edit(leaf_id, m.rest);
        match m.to {
            Destination::Sibling { id, right } => {
                plan.edit(id, PageWrite::AddCells { moved: m.moved, front: right });
                if let Err(e) = self.plan_separator(&mut plan, parent_id, m.sep_index, m.separator) {
                    return plan.abort(e);
                }
            }
            Destination::NewPage => {
                let id = match plan.alloc_page(KIND_LEAF) {
                    Ok(id) => id,
                    Err(e) => return plan.abort(e),
                };
                plan.put(id, m.moved);
                plan.edit(parent_id, PageWrite::InsertSeparator { index: m.sep_index, key: m.separator, child: id });
            }
        }
        plan.apply(st)?;
        Ok(true)
    }

    /// The planner's shift or split for the pages as they are, with its page images, nothing
    /// written: `None` when it cannot be carried out in place.
    fn plan_move(
        &self,
        editor: &NodeEditor<'_>,
        path: &[(u64, usize)],
        leaf_id: u64,
        at: usize,
        cell: Cell<'_>,
    ) -> Result<Option<Move>> {
        let Some(&(parent_id, pos)) = path.last() else { return Ok(None) };
        let pb = self.inner.page_bytes;
        let pages = PageReader { nodes: &editor.reader(), page_bytes: pb };
        let leaf = pages.page(leaf_id)?;
        self.check_kind(&leaf, leaf_id, true)?;
        let cells = LeafWithInsert { page: leaf, at, cell };
        let n = cells.len();
        if page::fits(cells.bytes(), pb) {
            return Ok(None); // the in-place insert failed for another reason: a count ceiling
        }
        let parent = pages.page(parent_id)?;
        self.check_kind(&parent, parent_id, false)?;
        let edge = edge_at(path, at, n, |id| pages.page(id).ok().map(|p| p.len()));
        let sibling = |id| {
            let p = pages.page(id)?;
            self.check_kind(&p, id, true)?;
            Ok((p.occupied_bytes(), p.len()))
        };
        let (to, k, separator) = match self.overflow_plan(sibling, Some((&parent, pos)), &cells, edge)? {
            Some(Overflow::Shift { id, right, cut, separator }) => (Destination::Sibling { id, right }, cut, separator),
            Some(Overflow::Split { cut, separator }) => {
                // In place only when the parent's gap takes the new separator, and within the
                // key-count ceiling.
                let room = parent.gap_bytes() >= page::entry_bytes(separator.len(), &Payload::Child(0));
                if !room || !self.count_fits(cut) || !self.count_fits(n - cut) || !self.count_fits(parent.len() + 1) {
                    return Ok(None);
                }
                (Destination::NewPage, cut, separator)
            }
            None => return Ok(None),
        };
        let right = !matches!(to, Destination::Sibling { right: false, .. });
        let (moved_range, rest_range) = if right { (k..n, 0..k) } else { (0..k, k..n) };
        let mut moved = Scratch::new(pb);
        cells.build(&mut moved, moved_range)?;
        // A leaf whose edits are recorded keeps its cells where they lie (a few moves in its
        // script); one that is new in this commit, or logged some other way, is rebuilt,
        // which costs less when nothing is recorded.
        let rest = if editor.records(NodeId::from_raw(leaf_id)) {
            retain(&cells, rest_range)
        } else {
            let mut image = Scratch::new(pb);
            cells.build(&mut image, rest_range)?;
            PageWrite::Image(image)
        };
        Ok(Some(Move { to, sep_index: if right { pos } else { pos - 1 }, separator, moved, rest }))
    }

    /// Plans internal entry `index` of page `id` taking `key` as its separator, which
    /// [`BTree::separator_fits`] allowed: in place when it fits there, else the page rebuilt.
    pub(super) fn plan_separator(&self, plan: &mut Plan<'_, '_>, id: u64, index: usize, key: Vec<u8>) -> Result<()> {
        if plan.with_page(id, |p| page::separator_fits_in_place(&p, index, &key))?? {
            plan.edit(id, PageWrite::ReplaceSeparator { index, key });
            return Ok(());
        }
        let bytes = plan.copy_page(id)?;
        let p = PageRef::parse(&bytes, id)?;
        let mut cells = self.page_cells(&p, id, false)?;
        let mut buf = Vec::new();
        cells[index] = Cell::separator(&key, p.child(index)?, &mut buf);
        if !self.cells_fit(&cells) {
            return Err(Error::Internal("a separator planned to fit its parent did not".into()));
        }
        plan.write_internal(id, p.leftmost_child(), &cells);
        Ok(())
    }
}

/// The leaf's edit that leaves `rest` (a range of `cells`, the leaf with the new cell) in it:
/// the old entries in that range kept where they lie, the new cell inserted when it falls in
/// the range.
fn retain(cells: &LeafWithInsert<'_>, rest: std::ops::Range<usize>) -> PageWrite {
    let old = |j: usize| if j > cells.at { j - 1 } else { j };
    let cell = rest.contains(&cells.at).then(|| (cells.at - rest.start, cells.cell.raw_bytes().to_vec()));
    PageWrite::Retain { keep: old(rest.start)..old(rest.end), cell }
}

#[cfg(test)]
mod tests {
    use crate::btree::{BTree, TreeOptions};
    use crate::{Store, StoreOptions};
    use std::ops::Bound;

    /// Loads `keys` one insert at a time, checking the tree every `every` inserts and at the
    /// end; returns the tree.
    fn load(store: &Store, name: &[u8], page_bytes: u32, keys: &[Vec<u8>], every: usize) -> BTree {
        let tree = BTree::open(store, name, &TreeOptions { page_bytes, ..TreeOptions::default() }).unwrap();
        for (i, k) in keys.iter().enumerate() {
            tree.insert(k, &(i as u32).to_le_bytes()).unwrap();
            if i % every == 0 {
                tree.verify().unwrap();
            }
        }
        tree.verify().unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(tree.get(k).unwrap().as_deref(), Some(&(i as u32).to_le_bytes()[..]), "key {i}");
        }
        tree
    }

    /// Inserts `key` through the copy executor alone (`insert_rewriting`), as the insert does
    /// when the in-place paths do not apply.
    fn insert_by_copy(tree: &BTree, key: &[u8], value: &[u8]) {
        use crate::btree::tree::{PageReader, Path};
        let mut st = tree.write_state().unwrap();
        tree.store()
            .unwrap()
            .with_editor(|editor| {
                let pages = PageReader { nodes: &editor.reader(), page_bytes: tree.inner.page_bytes };
                let mut path = Path::default();
                let (leaf_id, found, _) = tree.descend_in(&pages, &st, &tree.probe(key), &mut path)?;
                tree.insert_rewriting(editor, &mut st, &path, leaf_id, found, key, value)
            })
            .unwrap();
        drop(st);
        tree.bump_version();
    }

    /// One decision, two executors: the same inserts carried out in place where they can be
    /// and by copy only leave the same tree (page for page by every measure `stats` takes),
    /// because both executors carry out the one planner's decisions.
    #[test]
    fn the_in_place_and_the_copy_executor_leave_the_same_tree() {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        let mut rng = crate::test_rng::TestRng::new(0x0b1a_de5e);
        let mut next = move || rng.next();
        let keys: Vec<Vec<u8>> = (0..4000).map(|_| (0..1 + next() % 40).map(|_| next() as u8).collect()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        for page_bytes in [512u32, 4096] {
            for (order, keys) in [("random", &keys), ("ascending", &sorted)] {
                let opts = TreeOptions { page_bytes, ..TreeOptions::default() };
                let name = format!("{order}-{page_bytes}");
                let in_place = BTree::open(&store, format!("p-{name}").as_bytes(), &opts).unwrap();
                let by_copy = BTree::open(&store, format!("c-{name}").as_bytes(), &opts).unwrap();
                for (i, k) in keys.iter().enumerate() {
                    let v = (i as u32).to_le_bytes();
                    if in_place.get(k).unwrap().is_some() {
                        continue; // a short random key drawn twice
                    }
                    in_place.insert(k, &v).unwrap();
                    insert_by_copy(&by_copy, k, &v);
                }
                by_copy.verify().unwrap();
                let (a, b) = (in_place.stats().unwrap(), by_copy.stats().unwrap());
                assert!(a.height >= 2, "{name}: the leaves overflowed");
                assert_eq!(a, b, "{name}");
                assert_eq!(
                    in_place.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
                    by_copy.range(Bound::Unbounded, Bound::Unbounded).unwrap()
                );
            }
        }
    }

    #[test]
    fn full_leaves_shift_or_split_in_place_in_every_load_order() {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        let mut rng = crate::test_rng::TestRng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        // Keys of 1 to 40 bytes: cuts by bytes, not by count.
        let random: Vec<Vec<u8>> = (0..6000)
            .map(|_| (0..1 + next() % 40).map(|_| next() as u8).collect())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut shuffled = random.clone();
        crate::test_rng::TestRng::new(next()).shuffle(&mut shuffled);
        let descending: Vec<Vec<u8>> = random.iter().rev().cloned().collect();
        for page_bytes in [512u32, 4096] {
            for (order, keys) in [("ascending", &random), ("descending", &descending), ("random", &shuffled)] {
                let name = format!("{order}-{page_bytes}");
                let tree = load(&store, name.as_bytes(), page_bytes, keys, 97);
                let s = tree.stats().unwrap();
                assert!(s.height >= 2, "{name}: the leaves overflowed");
                // Edge splits leave full pages behind them; random ones stay above 70 %.
                let floor = if order == "random" { 0.70 } else { 0.90 };
                assert!(s.leaf_fill >= floor, "{name}: leaf fill {}", s.leaf_fill);
            }
        }
    }

    /// Inserts that commit every few hundred keys fill a small disk: the insert that finds no
    /// room (for a new page, or a shadow of a committed one) fails with `NoSpace` and leaves
    /// the tree as it was; with room again, the same tree carries on.
    #[test]
    fn an_insert_that_finds_no_space_leaves_the_tree_as_it_was() {
        let dir = crate::store::tests::TempDir::new("btree-overflow-full");
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let tree = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
        crate::store::simulate_disk_limit(dir.path(), Some(6 << 20));
        let key = |i: u64| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8).to_be_bytes();
        let mut failed_at = None;
        for i in 0..1_000_000u64 {
            let r = tree.insert(&key(i), &i.to_le_bytes()).and_then(|_| match i % 500 {
                499 => store.commit().map(drop),
                _ => Ok(()),
            });
            match r {
                Ok(()) => {}
                Err(crate::Error::NoSpace(_)) => {
                    failed_at = Some(i);
                    break;
                }
                Err(e) => panic!("insert {i}: {e}"),
            }
        }
        let failed_at = failed_at.expect("the budget was reached");
        // A failed commit also answers NoSpace, with the insert before it in the tree.
        let inserted = if failed_at % 500 == 499 && tree.get(&key(failed_at)).unwrap().is_some() {
            failed_at + 1
        } else {
            failed_at
        };
        tree.verify().unwrap();
        assert_eq!(tree.len(), inserted);
        for i in 0..inserted {
            assert!(tree.get(&key(i)).unwrap().is_some(), "key {i} of {inserted}");
        }
        crate::store::simulate_disk_limit(dir.path(), None);
        for i in inserted..inserted + 2000 {
            tree.insert(&key(i), &i.to_le_bytes()).unwrap();
        }
        store.commit().unwrap();
        tree.verify().unwrap();
        assert_eq!(tree.len(), inserted + 2000);
    }
}
