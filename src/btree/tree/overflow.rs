//! The insert's slow path for its common case, done in place: a new key with an inline value
//! whose leaf is full. The overflowing cells go to a sibling with room (a shift: no new page,
//! and pages stay fuller on random inserts, B*-tree style) or to a new page right of the leaf
//! (a split). The leaf is rewritten with the cells that stay, a sibling takes the moved cells
//! into its free gap, and the parent's separator is replaced, or the new page's added, in the
//! parent's gap: the pages are read where they lie, never copied to be decoded.
//!
//! Whatever this does not cover (a leaf that is the root, a parent without room, a key-count
//! ceiling, an edge split that would leave a page over it) is left, nothing changed, to the
//! general path. Both carry their decision out through a `Plan`: every shadow and new page is
//! taken before any page is written.

use super::{edge_at, BTree, PageReader, PageWrite, Plan, Scratch, State, KIND_LEAF};
use crate::btree::page::{self, Cell, Entry, LeafCells, LeafWithInsert, PageRef, Payload};
use crate::btree::split::{shift_cut, shift_fits, split_cut, Edge};
use crate::error::{Error, Result};
use crate::store::NodeEditor;

/// Where a full leaf's overflowing cells go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    /// To the sibling `id` under the same parent: its front when it is the leaf's right
    /// sibling, its end when the left.
    Sibling { id: u64, right: bool },
    /// To a new page right of the leaf.
    NewPage,
}

/// A shift or split decided from the pages as they are, before anything is written.
struct Move {
    to: Destination,
    /// The parent's entry whose separator is replaced (a shift) or inserted (a split).
    sep_index: usize,
    separator: Vec<u8>,
    /// The moved cells, in order, as a leaf page: a split's new page as it is.
    moved: Scratch,
    /// The leaf's new image: the cells that stay.
    rest: Scratch,
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
        plan.put(leaf_id, m.rest);
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

    /// Decides a shift or split from the pages as they are, nothing written: `None` when
    /// neither applies in place.
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
        let cap = page::capacity(pb);
        let pages = PageReader { nodes: &editor.reader(), page_bytes: pb };
        let leaf = pages.page(leaf_id)?;
        self.check_kind(&leaf, leaf_id, true)?;
        let cells = LeafWithInsert { page: leaf, at, cell };
        let (n, total) = (cells.len(), cells.bytes());
        if page::fits(total, pb) {
            return Ok(None); // the in-place insert failed for another reason: a count ceiling
        }
        let parent = pages.page(parent_id)?;
        self.check_kind(&parent, parent_id, false)?;
        let edge = edge_at(path, at, n, |id| pages.page(id).ok().map(|p| p.len()));
        let shift = match edge {
            Edge::Middle => {
                let sibling = |id| {
                    let p = pages.page(id)?;
                    self.check_kind(&p, id, true)?;
                    Ok((p.occupied_bytes(), p.len()))
                };
                self.pick_sibling(sibling, &parent, pos, &cells)?
            }
            _ => None,
        };
        let (to, k, separator) = match shift {
            Some(chosen) => chosen,
            None => {
                let Some(k) = split_cut(n, |j| cells.get(j).map(|c| c.bytes()), total, cap, edge)? else {
                    return Ok(None);
                };
                let separator = self.separator(cells.get(k - 1)?.key(), cells.get(k)?.key());
                let room = parent.gap_bytes() >= page::entry_bytes(separator.len(), &Payload::Child(0));
                if !room || !self.count_fits(k) || !self.count_fits(n - k) || !self.count_fits(parent.len() + 1) {
                    return Ok(None);
                }
                (Destination::NewPage, k, separator)
            }
        };
        let right = !matches!(to, Destination::Sibling { right: false, .. });
        let (moved_range, rest_range) = if right { (k..n, 0..k) } else { (0..k, k..n) };
        let (mut moved, mut rest) = (Scratch::new(pb), Scratch::new(pb));
        cells.build(&mut moved, moved_range)?;
        cells.build(&mut rest, rest_range)?;
        Ok(Some(Move { to, sep_index: if right { pos } else { pos - 1 }, separator, moved, rest }))
    }

    /// THE shift decision of both insert paths: a sibling under the same parent that can take
    /// enough of the leaf's cells (`cells`, the new one among them) for both to fit with the
    /// slack to spare ([`shift_fits`], cut by [`shift_cut`]), and whose separator fits the
    /// parent (in place, or the parent rebuilt): where it is, the cut (the first cell of the
    /// right-hand page) and the separator. `sibling(id)` gives a leaf's occupied bytes and
    /// entry count: the sibling is never decoded (a leaf has no holes, so its capacity less its
    /// gap is what it holds).
    pub(super) fn pick_sibling<'c>(
        &self,
        sibling: impl Fn(u64) -> Result<(usize, usize)>,
        parent: &PageRef<'_>,
        pos: usize,
        cells: &(impl LeafCells<'c> + ?Sized),
    ) -> Result<Option<(Destination, usize, Vec<u8>)>> {
        let cap = page::capacity(self.inner.page_bytes);
        let (n, total) = (cells.len(), cells.bytes());
        for right in [true, false] {
            let sibling_pos = match right {
                true if pos < parent.len() => pos + 1,
                false if pos > 0 => pos - 1,
                _ => continue,
            };
            let id = parent.child_at_position(sibling_pos)?;
            let (used, len) = sibling(id)?;
            if !shift_fits(total, used, cap) {
                continue;
            }
            let size = |j| cells.get(j).map(|c| c.bytes());
            let Some(k) = shift_cut(n, size, total, used, cap, right)? else { continue };
            let moved = if right { n - k } else { k };
            if !self.count_fits(n - moved) || !self.count_fits(len + moved) {
                continue;
            }
            let separator = self.separator(cells.get(k - 1)?.key(), cells.get(k)?.key());
            if self.separator_fits(parent, pos.min(sibling_pos), &separator)? {
                return Ok(Some((Destination::Sibling { id, right }, k, separator)));
            }
        }
        Ok(None)
    }

    /// Whether internal entry `index` of `parent` can take `key` as its separator: in place,
    /// or in the page rebuilt (its holes reclaimed).
    pub(super) fn separator_fits(&self, parent: &PageRef<'_>, index: usize, key: &[u8]) -> Result<bool> {
        if page::separator_fits_in_place(parent, index, key)? {
            return Ok(true);
        }
        let bytes =
            parent.used_bytes()? - parent.entry_bytes(index)? + page::entry_bytes(key.len(), &Payload::Child(0));
        Ok(page::fits(bytes, self.inner.page_bytes))
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

#[cfg(test)]
mod tests {
    use crate::btree::{BTree, TreeOptions};
    use crate::{Store, StoreOptions};

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
