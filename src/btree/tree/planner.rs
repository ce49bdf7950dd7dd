//! THE planner: every decision of how a full page or a page that lost an entry changes, from
//! cell sizes alone, one rule per decision. Two executors carry its plans out through a
//! [`Plan`]: the copy executor (whole new page images: `insert.rs`, `rebalance.rs`) and the
//! in-place executor (edits where the pages lie: `overflow.rs`, the remove's fast path), which
//! takes a plan only when it can carry it out whole, and leaves it to the copy executor
//! otherwise. Neither decides anything of its own.
//!
//! - A leaf whose cells no longer fit one page ([`BTree::overflow_plan`]): shifted into a
//!   sibling (B*-tree style), or split (append-aware at the tree's edges).
//! - A page that lost an entry and its sibling ([`BTree::pair_plan`]): merged, evened out, or
//!   left as they are; whether a leaf is rebalanced at all is [`BTree::leaf_rebalances`]'s.

use super::*;
use crate::btree::page::LeafCells;
use crate::btree::split::{shift_cut, shift_fits};

/// What the planner decides for a leaf whose cells (a new one among them) no longer fit.
pub(super) enum Overflow {
    /// Cells go to the sibling `id` under the same parent: the cells from `cut` on when it is
    /// the leaf's right sibling (to its front), the cells before `cut` when the left (to its
    /// end). `separator` replaces the parent's between the two.
    Shift { id: u64, right: bool, cut: usize, separator: Vec<u8> },
    /// The cells from `cut` on go to a new page right of the leaf; `separator` goes up to the
    /// parent, pointing at it.
    Split { cut: usize, separator: Vec<u8> },
}

/// What the planner decides for a page that lost an entry and its sibling.
pub(super) enum PairPlan {
    /// Both stay as they are (the page written with what it has left).
    Keep,
    /// Into the left page; the right is freed and its separator leaves the parent.
    Merge,
    /// Shared out at `cut`: a leaf's cells `..cut` stay left; in internal pages the cell at
    /// `cut` goes up, its child the right page's leftmost. `separator` replaces the parent's,
    /// in the parent as it is, or in the parent split in two (`split_parent`).
    EvenOut { cut: usize, separator: Vec<u8>, split_parent: bool },
}

impl BTree {
    /// THE planner of a full leaf: its cells (`cells`, the new one among them) go to a sibling
    /// under the same parent that can take enough of them ([`BTree::pick_sibling`]; only away
    /// from the tree's edges, `edge`), else the leaf splits ([`split_cut`]: at the right edge
    /// the leaf stays full, at the left the new page does, elsewhere the halves are even).
    /// `parent` is the leaf's parent and the leaf's position in it (`None` for a root leaf);
    /// `sibling(id)` a leaf's occupied bytes and entry count. `None` when no cut fits.
    pub(super) fn overflow_plan<'c>(
        &self,
        sibling: impl Fn(u64) -> Result<(usize, usize)>,
        parent: Option<(&PageRef<'_>, usize)>,
        cells: &(impl LeafCells<'c> + ?Sized),
        edge: Edge,
    ) -> Result<Option<Overflow>> {
        if let (Edge::Middle, Some((parent, pos))) = (edge, parent) {
            if let Some(shift) = self.pick_sibling(sibling, parent, pos, cells)? {
                return Ok(Some(shift));
            }
        }
        let (n, total) = (cells.len(), cells.bytes());
        let cap = page::capacity(self.inner.page_bytes);
        let Some(cut) = split_cut(n, |j| cells.get(j).map(|c| c.bytes()), total, cap, edge)? else { return Ok(None) };
        let separator = self.separator(cells.get(cut - 1)?.key(), cells.get(cut)?.key());
        Ok(Some(Overflow::Split { cut, separator }))
    }

    /// THE shift decision: a sibling under the same parent that can take enough of the leaf's
    /// cells (`cells`, the new one among them) for both to fit with the slack to spare
    /// ([`shift_fits`], cut by [`shift_cut`]), and whose separator fits the parent (in place,
    /// or the parent rebuilt). `sibling(id)` gives a leaf's occupied bytes and entry count: the
    /// sibling is never decoded (a leaf has no holes, so its capacity less its gap is what it
    /// holds).
    fn pick_sibling<'c>(
        &self,
        sibling: impl Fn(u64) -> Result<(usize, usize)>,
        parent: &PageRef<'_>,
        pos: usize,
        cells: &(impl LeafCells<'c> + ?Sized),
    ) -> Result<Option<Overflow>> {
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
            let Some(cut) = shift_cut(n, size, total, used, cap, right)? else { continue };
            let moved = if right { n - cut } else { cut };
            if !self.count_fits(n - moved) || !self.count_fits(len + moved) {
                continue;
            }
            let separator = self.separator(cells.get(cut - 1)?.key(), cells.get(cut)?.key());
            if self.separator_fits(parent, pos.min(sibling_pos), &separator)? {
                return Ok(Some(Overflow::Shift { id, right, cut, separator }));
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

    /// THE rebalance rule of a leaf that lost an entry, left with `used` bytes in `n` entries
    /// (`path`: its descent): below the merge threshold it is rebalanced (merged with its
    /// sibling, or evened out with it), except at the tree's left or right edge, where it
    /// waits until it fits one page with its sibling: sequential removes empty the edge leaf
    /// entry by entry, and evening it out would only move cells there to be removed next (as an
    /// insert at the right edge splits leaving full pages). At most two leaves wait so.
    /// Both remove paths ask this: the in-place remove edits its leaf only when it says no.
    pub(super) fn leaf_rebalances(
        &self,
        pages: &PageReader<'_, '_>,
        path: &[(u64, usize)],
        used: usize,
        n: usize,
    ) -> Result<bool> {
        let Some(&(parent_id, pos)) = path.last() else { return Ok(false) }; // the root leaf
        if !below_merge_threshold(used, page::capacity(self.inner.page_bytes)) {
            return Ok(false);
        }
        if !path.iter().all(|&(_, p)| p == 0) {
            for &(id, p) in path {
                if pages.page(id)?.len() != p {
                    return Ok(true); // neither edge
                }
            }
        }
        let parent = pages.page(parent_id)?;
        self.check_kind(&parent, parent_id, false)?;
        let sibling_pos = if pos == 0 { 1 } else { pos - 1 };
        if sibling_pos > parent.len() {
            return Ok(true); // an only child: `rebalance` leaves it as it is
        }
        let sibling_id = parent.child_at_position(sibling_pos)?;
        let sibling = pages.page(sibling_id)?;
        self.check_kind(&sibling, sibling_id, true)?;
        Ok(page::fits(used + sibling.occupied_bytes(), self.inner.page_bytes) && self.count_fits(n + sibling.len()))
    }

    /// THE planner of a page that lost an entry and its sibling, `combined` their cells in
    /// order (between internal pages, the parent's separator `sep_index` brought down between
    /// them), by one rule per decision: a merge when they fit one page; else an even-out at the
    /// most even cut ([`even_cuts`]) whose two pages fit and whose separator fits the parent
    /// ([`BTree::separator_fits`], as a shift's); else they stay as they are (underfull pages
    /// are sound, and a leaf merges once it fits its sibling), unless the page must not
    /// (`must`): then the most even cut, the parent split for its longer separator.
    pub(super) fn pair_plan(
        &self,
        parent: &PageRef<'_>,
        sep_index: usize,
        combined: &[Cell<'_>],
        leaf: bool,
        must: bool,
    ) -> Result<PairPlan> {
        if self.cells_fit(combined) {
            return Ok(PairPlan::Merge);
        }
        let sizes: Vec<usize> = combined.iter().map(Cell::bytes).collect();
        let mut fallback = None;
        for cut in even_cuts(&sizes, page::capacity(self.inner.page_bytes), !leaf) {
            // The cut fits both pages by bytes ([`even_cuts`]); the count ceiling is left.
            let right_from = if leaf { cut } else { cut + 1 };
            if !self.count_fits(cut) || !self.count_fits(combined.len() - right_from) {
                continue;
            }
            let separator = match leaf {
                true => self.separator(combined[cut - 1].key(), combined[cut].key()),
                false => combined[cut].key().to_vec(),
            };
            if self.separator_fits(parent, sep_index, &separator)? {
                return Ok(PairPlan::EvenOut { cut, separator, split_parent: false });
            }
            fallback.get_or_insert((cut, separator));
        }
        Ok(match fallback {
            Some((cut, separator)) if must => PairPlan::EvenOut { cut, separator, split_parent: true },
            _ => PairPlan::Keep,
        })
    }
}
