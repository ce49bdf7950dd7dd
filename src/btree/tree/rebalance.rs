//! Rebalancing after a remove: a page that lost an entry (a leaf its key, an internal page a
//! separator when two of its children merged) is merged with a sibling or evened out with it.
//! The planner decides for both kinds of page (`planner.rs`: [`BTree::pair_plan`], by one rule
//! per decision), and one executor carries the decision out through the operation's [`Plan`]
//! ([`BTree::rebalance`]), moving cells as they lie: only a new separator is encoded.

use super::*;

/// A page that lost an entry: its id, its kind, and (an internal page's) leftmost child.
#[derive(Clone, Copy)]
pub(super) struct Lost {
    pub id: u64,
    pub leaf: bool,
    pub leftmost: u64,
}

impl BTree {
    /// THE executor of the rebalancing, for both kinds of page: writes `page` with `cells` (its
    /// entries after losing one), rebalanced with a sibling as [`BTree::pair_plan`] decides when
    /// the page needs it: a leaf as [`BTree::leaf_rebalances`] says, an internal page below the
    /// merge threshold. A merge takes a separator out of the parent, which is treated the same
    /// way, up to the root, which collapses when it has a single child.
    pub(super) fn rebalance(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        path: &[(u64, usize)],
        page: Lost,
        cells: &[Cell<'_>],
    ) -> Result<()> {
        let (id, leaf) = (page.id, page.leaf);
        let write = |plan: &mut Plan<'_, '_>, id: u64, leftmost: u64, cells: &[Cell<'_>]| match leaf {
            true => plan.write_cells(id, cells),
            false => plan.write_internal(id, leftmost, cells),
        };
        let Some((&(parent_id, pos), above)) = path.split_last() else {
            if !leaf && cells.is_empty() {
                // The root, with no separator left, hands over to its only child.
                plan.free_later(id, KIND_INTERNAL);
                plan.new_root = Some(page.leftmost);
                plan.root_shrinks = true;
            } else {
                write(plan, id, page.leftmost, cells); // the root: any fill will do
            }
            return Ok(());
        };
        let used: usize = cells.iter().map(Cell::bytes).sum();
        let rebalances = match leaf {
            true => {
                let nodes = plan.editor.reader();
                let pages = PageReader { nodes: &nodes, page_bytes: self.inner.page_bytes };
                self.leaf_rebalances(&pages, path, used, cells.len())?
            }
            false => below_merge_threshold(used, page::capacity(self.inner.page_bytes)),
        };
        if !rebalances {
            write(plan, id, page.leftmost, cells);
            return Ok(());
        }
        let parent_bytes = plan.copy_page(parent_id)?;
        let parent = PageRef::parse(&parent_bytes, parent_id)?;
        self.check_kind(&parent, parent_id, false)?;
        // The pair (left, right) and the index of the separator between them in the parent.
        let (sep_index, sibling_pos, this_is_left) = if pos == 0 { (0, 1, true) } else { (pos - 1, pos - 1, false) };
        if sibling_pos > parent.len() {
            write(plan, id, page.leftmost, cells); // an only child: nothing to pair with
            return Ok(());
        }
        let sibling_id = parent.child_at_position(sibling_pos)?;
        let sibling_bytes = plan.copy_page(sibling_id)?;
        let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
        let sibling_cells = self.page_cells(&sibling, sibling_id, leaf)?;
        let sibling_lost = Lost { id: sibling_id, leaf, leftmost: sibling.leftmost_child() };
        let (left, right, left_cells, right_cells) = match this_is_left {
            true => (page, sibling_lost, cells, &sibling_cells[..]),
            false => (sibling_lost, page, &sibling_cells[..], cells),
        };
        // Between internal pages the parent's separator comes down, pointing at right's
        // leftmost child.
        let mut buf = Vec::new();
        let down = match leaf {
            true => None,
            false => Some(Cell::separator(parent.key(sep_index)?, right.leftmost, &mut buf)),
        };
        let combined = [left_cells, down.as_slice(), right_cells].concat();
        // A page left with no separator must not stay so: its only child would have no sibling
        // to pair with, a leaf could empty, and scans end at an empty leaf.
        let must = !leaf && cells.is_empty();
        match self.pair_plan(&parent, sep_index, &combined, leaf, must)? {
            PairPlan::Keep => write(plan, id, page.leftmost, cells),
            PairPlan::Merge => {
                write(plan, left.id, left.leftmost, &combined);
                plan.free_later(right.id, if leaf { KIND_LEAF } else { KIND_INTERNAL });
                self.remove_separator(plan, st, above, parent_id, &parent_bytes, sep_index)?;
            }
            PairPlan::EvenOut { cut, separator, split_parent } => {
                let (right_from, right_leftmost) = if leaf { (cut, 0) } else { (cut + 1, combined[cut].child()) };
                write(plan, left.id, left.leftmost, &combined[..cut]);
                write(plan, right.id, right_leftmost, &combined[right_from..]);
                if !split_parent {
                    return self.plan_separator(plan, parent_id, sep_index, separator);
                }
                let mut parent_cells = self.page_cells(&parent, parent_id, false)?;
                let mut sep_buf = Vec::new();
                parent_cells[sep_index] = Cell::separator(&separator, right.id, &mut sep_buf);
                let leftmost = parent.leftmost_child();
                let carry = self.write_or_split_internal(plan, parent_id, leftmost, &parent_cells, Edge::Middle)?;
                if let Some((separator, child)) = carry {
                    self.insert_separator(plan, st, above, separator, child, Edge::Middle)?;
                }
            }
        }
        Ok(())
    }

    /// Takes separator `index` (and the child right of it, merged into its left neighbour) out
    /// of internal page `id` (`bytes`, its image): in place on a copy when the page keeps
    /// enough (at or above the merge threshold, or the root keeping a separator), the common
    /// case, else through [`BTree::rebalance`], which decides by the same threshold.
    pub(super) fn remove_separator(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        path: &[(u64, usize)],
        id: u64,
        bytes: &[u8],
        index: usize,
    ) -> Result<()> {
        let p = PageRef::parse(bytes, id)?;
        self.check_kind(&p, id, false)?;
        let used = p.used_bytes()?.saturating_sub(p.entry_bytes(index)?);
        let keeps = match path.is_empty() {
            true => p.len() > 1,
            false => !below_merge_threshold(used, page::capacity(self.inner.page_bytes)),
        };
        if keeps {
            plan.edit(id, PageWrite::Remove { index });
            return Ok(());
        }
        let mut cells = self.page_cells(&p, id, false)?;
        cells.remove(index);
        self.rebalance(plan, st, path, Lost { id, leaf: false, leftmost: p.leftmost_child() }, &cells)
    }
}
