//! Removes and the rebalancing after them.

use super::*;

impl BTree {
    /// Removes `key` (Unique and Overwrite trees); in a Multi tree every value of `key`.
    /// Returns whether anything was removed.
    pub fn remove(&self, key: &[u8]) -> Result<bool> {
        if self.inner.duplicates == Duplicates::Multi {
            return self.remove_every_value(key);
        }
        self.remove_stored(key)
    }

    /// Removes one (key, value) pair of a Multi tree; in other trees, `key` if its value is
    /// `value` (compared and removed under one hold of the tree: no writer comes between).
    pub fn remove_pair(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        match self.inner.duplicates {
            Duplicates::Multi => {
                self.check_key(key)?;
                if value.len() > max_inline_value_bytes(self.inner.page_bytes as u32) {
                    return Ok(false);
                }
                self.remove_stored(&composite(key, value))
            }
            _ => {
                self.check_key(key)?;
                let mut st = self.write_state()?;
                if self.get_held(&st, key, |v| v == value)? != Some(true) {
                    return Ok(false);
                }
                self.remove_stored_held(&mut st, key)
            }
        }
    }

    /// A Multi tree's remove of every value of `key`, whole or not at all, under one hold of
    /// the tree: the values are found, the blocks the removes may need are made sure of
    /// (`NoSpace` here, before anything changed, rather than halfway), then each is removed.
    fn remove_every_value(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        let mut st = self.write_state()?;
        let mut values: Vec<Vec<u8>> = Vec::new();
        self.scan_from_held(&st, key, |k, v| {
            let same = self.cmp_keys(k, key) == Ordering::Equal;
            if same {
                values.push(v.to_vec());
            }
            same
        })?;
        if values.is_empty() {
            return Ok(false);
        }
        let no_value = Payload::Leaf(Value::Inline(&[]));
        let stored_bytes: usize = values.iter().map(|v| page::entry_bytes(composite(key, v).len(), &no_value)).sum();
        let pages = pages_removes_may_write(stored_bytes, self.inner.page_bytes, st.height);
        self.store()?.reserve(self.inner.page_bytes, pages)?;
        for v in &values {
            self.remove_stored_held(&mut st, &composite(key, v))?;
        }
        Ok(true)
    }

    pub(super) fn remove_stored(&self, skey: &[u8]) -> Result<bool> {
        let mut st = self.write_state()?;
        self.remove_stored_held(&mut st, skey)
    }

    /// `remove_stored` under a hold of the tree's state the caller already has.
    fn remove_stored_held(&self, st: &mut State, skey: &[u8]) -> Result<bool> {
        let removed = self.store()?.with_editor(|editor| {
            let pages = PageReader { nodes: &editor.reader(), page_bytes: self.inner.page_bytes };
            let mut path = Path::default();
            let (leaf_id, found, _) = self.descend_in(&pages, st, skey, &mut path)?;
            let Ok(index) = found else { return Ok(false) };
            if self.remove_in_place(editor, &path, leaf_id, index)? {
                st.entries -= 1;
                self.save_anchor(editor, st)?;
                return Ok(true);
            }
            let mut plan = Plan::new(self, editor);
            let leaf_bytes = plan.copy_page(leaf_id)?;
            let leaf = PageRef::parse(&leaf_bytes, leaf_id)?;
            let mut cells = self.page_cells(&leaf, leaf_id, true)?;
            if let Value::Overflow(old, _) = leaf.leaf_value(index)? {
                plan.free_later(old, KIND_OVERFLOW);
            }
            cells.remove(index);
            if let Err(e) = self.rebalance_leaf(&mut plan, st, &path, leaf_id, &cells) {
                return plan.abort(e);
            }
            plan.apply(st)?;
            st.entries -= 1;
            self.save_anchor(editor, st)?;
            Ok(true)
        })?;
        if removed {
            self.bump_version();
        }
        Ok(removed)
    }

    /// A remove's common case: the leaf needs no rebalancing ([`BTree::leaf_rebalances`]), so
    /// its entry is removed where the leaf lies, one in-place edit of one page, and an
    /// overflow value's node freed. Returns false, nothing changed, when the leaf needs
    /// rebalancing; an error leaves the tree as it was.
    fn remove_in_place(
        &self,
        editor: &mut NodeEditor<'_>,
        path: &[(u64, usize)],
        leaf_id: u64,
        index: usize,
    ) -> Result<bool> {
        let pb = self.inner.page_bytes;
        let overflow = {
            let pages = PageReader { nodes: &editor.reader(), page_bytes: pb };
            let leaf = pages.page(leaf_id)?;
            self.check_kind(&leaf, leaf_id, true)?;
            let cell_bytes = leaf.leaf_cell_bytes(index)?;
            let used = leaf.occupied_bytes().saturating_sub(cell_bytes);
            if self.leaf_rebalances(&pages, path, used, leaf.len() - 1)? {
                return Ok(false);
            }
            match leaf.leaf_value(index)? {
                Value::Overflow(id, _) => Some(id),
                Value::Inline(_) => None,
            }
        };
        // Checked before the edit, as `Plan::free_later`: an id from a damaged leaf must not
        // free another tree's node or a host's.
        if let Some(id) = overflow {
            check_node_kind(editor, id, KIND_OVERFLOW)?;
        }
        update_page(editor, pb, leaf_id, |p| page::remove_in_place(p, leaf_id, index))?;
        if let Some(id) = overflow {
            editor.free(NodeId::from_raw(id))?;
        }
        Ok(true)
    }

    /// THE rebalance rule of a leaf that lost an entry, left with `used` bytes in `n` entries
    /// (`path`: its descent): below the merge threshold it is rebalanced (merged with its
    /// sibling, or evened out with it), except at the tree's left or right edge, where it
    /// waits until it fits one page with its sibling: sequential removes empty the edge leaf
    /// entry by entry, and evening it out would only move cells there to be removed next (as an
    /// insert at the right edge splits leaving full pages). At most two leaves wait so.
    /// Both remove paths ask this: the in-place remove edits its leaf only when it says no.
    fn leaf_rebalances(
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
            return Ok(true); // an only child: rebalance_leaf leaves it as it is
        }
        let sibling_id = parent.child_at_position(sibling_pos)?;
        let sibling = pages.page(sibling_id)?;
        self.check_kind(&sibling, sibling_id, true)?;
        Ok(page::fits(used + sibling.occupied_bytes(), self.inner.page_bytes) && self.count_fits(n + sibling.len()))
    }

    /// Writes a leaf that lost an entry, as [`BTree::rebalance_internal`] does an internal page,
    /// moving cells as they lie (no entry is decoded and encoded again): when
    /// [`BTree::leaf_rebalances`] says so it merges with a sibling when both fit one page, or
    /// evens the two out, the parent's separator replaced in place when it has room.
    fn rebalance_leaf(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        path: &[(u64, usize)],
        id: u64,
        cells: &[Cell<'_>],
    ) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let used: usize = cells.iter().map(Cell::bytes).sum();
        let Some((&(parent_id, pos), above)) = path.split_last() else {
            plan.write_cells(id, cells); // the root leaf: any fill will do
            return Ok(());
        };
        let rebalances = {
            let nodes = plan.editor.reader();
            self.leaf_rebalances(
                &PageReader { nodes: &nodes, page_bytes: self.inner.page_bytes },
                path,
                used,
                cells.len(),
            )?
        };
        if !rebalances {
            plan.write_cells(id, cells);
            return Ok(());
        }
        let parent_bytes = plan.copy_page(parent_id)?;
        let parent = PageRef::parse(&parent_bytes, parent_id)?;
        self.check_kind(&parent, parent_id, false)?;
        // The pair (left, right) and the index of the separator between them in the parent.
        let (sep_index, sibling_pos, this_is_left) = if pos == 0 { (0, 1, true) } else { (pos - 1, pos - 1, false) };
        if sibling_pos > parent.len() {
            plan.write_cells(id, cells); // an only child: nothing to pair with
            return Ok(());
        }
        let sibling_id = parent.child_at_position(sibling_pos)?;
        let sibling_bytes = plan.copy_page(sibling_id)?;
        let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
        let sibling_cells = self.page_cells(&sibling, sibling_id, true)?;
        let (left_id, right_id) = if this_is_left { (id, sibling_id) } else { (sibling_id, id) };
        let combined = match this_is_left {
            true => [cells, &sibling_cells[..]].concat(),
            false => [&sibling_cells[..], cells].concat(),
        };
        if self.cells_fit(&combined) {
            plan.write_cells(left_id, &combined);
            plan.free_later(right_id, KIND_LEAF);
            return self.remove_separator(plan, st, above, parent_id, &parent_bytes, sep_index);
        }
        // Two leaves that do not fit one page: even them out by bytes, if the new separator
        // fits the parent (a longer one might not; the pages are then left as they are).
        let sizes: Vec<usize> = combined.iter().map(Cell::bytes).collect();
        let k = leaf_split_point(&sizes, cap, Edge::Middle);
        let new_sep = self.separator(combined[k - 1].key(), combined[k].key());
        let counts_fit = self.count_fits(k) && self.count_fits(combined.len() - k);
        if !counts_fit || !self.separator_fits(&parent, sep_index, &new_sep)? {
            plan.write_cells(id, cells);
            return Ok(());
        }
        self.plan_separator(plan, parent_id, sep_index, new_sep)?;
        plan.write_cells(left_id, &combined[..k]);
        plan.write_cells(right_id, &combined[k..]);
        Ok(())
    }

    /// Writes an internal page that lost a separator (its children merged); below the merge
    /// threshold it merges with a sibling when both fit one page (the parent's separator comes
    /// down between them), and the parent is treated the same way, up to the root, which
    /// collapses when it has a single child. An internal page too full to merge evens out with
    /// its sibling ([`BTree::even_out_internal`]) or is left underfull: leaves, which hold the
    /// entries, are kept above the threshold (`rebalance_leaf`).
    pub(super) fn rebalance_internal(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        path: &[(u64, usize)],
        id: u64,
        leftmost: u64,
        cells: &[Cell<'_>],
    ) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let used: usize = cells.iter().map(Cell::bytes).sum();
        let Some((&(parent_id, pos), above)) = path.split_last() else {
            // The root: with no separator left it hands over to its only child.
            if cells.is_empty() {
                plan.free_later(id, KIND_INTERNAL);
                plan.new_root = Some(leftmost);
                plan.root_shrinks = true;
            } else {
                plan.write_internal(id, leftmost, cells);
            }
            return Ok(());
        };
        if !below_merge_threshold(used, cap) {
            plan.write_internal(id, leftmost, cells);
            return Ok(());
        }
        let parent_bytes = plan.copy_page(parent_id)?;
        let parent = PageRef::parse(&parent_bytes, parent_id)?;
        let parent_cells = self.page_cells(&parent, parent_id, false)?;
        // The pair (left, right) and the index of the separator between them in the parent.
        let (sep_index, sibling_pos, this_is_left) = if pos == 0 { (0, 1, true) } else { (pos - 1, pos - 1, false) };
        if sibling_pos > parent.len() {
            plan.write_internal(id, leftmost, cells); // an only child: nothing to pair with
            return Ok(());
        }
        let sibling_id = parent.child_at_position(sibling_pos)?;
        let sibling_bytes = plan.copy_page(sibling_id)?;
        let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
        let sibling_cells = self.page_cells(&sibling, sibling_id, false)?;
        let (left_id, right_id) = if this_is_left { (id, sibling_id) } else { (sibling_id, id) };
        let (left_cells, left_leftmost, right_cells, right_leftmost) = if this_is_left {
            (cells, leftmost, &sibling_cells[..], sibling.leftmost_child())
        } else {
            (&sibling_cells[..], sibling.leftmost_child(), cells, leftmost)
        };
        // The parent's separator comes down between the two, pointing at right's leftmost.
        let mut buf = Vec::new();
        let down = Cell::separator(parent.key(sep_index)?, right_leftmost, &mut buf);
        let combined = [left_cells, &[down], right_cells].concat();
        if !self.cells_fit(&combined) {
            let pair = Pair { left_id, left_leftmost, right_id, sep_index };
            let parent_at = (above, parent_id, parent.leftmost_child());
            // A page left with no separator evens out whatever it takes (see the function).
            let must = cells.is_empty();
            if !self.even_out_internal(plan, st, parent_at, &parent_cells, pair, &combined, must)? {
                plan.write_internal(id, leftmost, cells); // see the function's comment
            }
            return Ok(());
        }
        plan.write_internal(left_id, left_leftmost, &combined);
        plan.free_later(right_id, KIND_INTERNAL);
        self.remove_separator(plan, st, above, parent_id, &parent_bytes, sep_index)
    }

    /// Takes separator `index` (and the child right of it, merged into its left neighbour) out
    /// of internal page `id` (`bytes`, its image): in place on a copy when the page keeps
    /// enough (at or above the merge threshold, or the root keeping a separator), the common
    /// case, else through [`BTree::rebalance_internal`], which decides by the same threshold.
    fn remove_separator(
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
        self.rebalance_internal(plan, st, path, id, p.leftmost_child(), &cells)
    }

    /// Two internal siblings too full to merge share their separators out evenly by bytes, a
    /// separator rotating through the parent (`parent_at`: the path above it, its id and its
    /// leftmost child; `parent_cells`, its cells). Cuts are tried from the most even outwards,
    /// for one whose separator fits the parent. When none does, the pages are left as they are
    /// (returns false, nothing planned: an underfull internal page with a separator is sound),
    /// unless one of them would be left with no separator (`must`): its only child would then
    /// have no sibling to pair with, a leaf could empty, and scans end at an empty leaf. Then
    /// the most even cut is taken and the parent, too full for the longer separator, splits as
    /// an insert splits it.
    #[allow(clippy::too_many_arguments)]
    fn even_out_internal(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        parent_at: (&[(u64, usize)], u64, u64),
        parent_cells: &[Cell<'_>],
        pair: Pair,
        combined: &[Cell<'_>],
        must: bool,
    ) -> Result<bool> {
        let (above, parent_id, parent_leftmost) = parent_at;
        let cap = page::capacity(self.inner.page_bytes);
        let sizes: Vec<usize> = combined.iter().map(Cell::bytes).collect();
        let total: usize = sizes.iter().sum();
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        let mut left = 0;
        for (m, size) in sizes.iter().enumerate() {
            let right = total - left - size;
            if m > 0 && m + 1 < sizes.len() && left <= cap && right <= cap {
                cuts.push((left.abs_diff(right), m));
            }
            left += size;
        }
        cuts.sort_unstable();
        let halves_fit = |m: usize| self.cells_fit(&combined[..m]) && self.cells_fit(&combined[m + 1..]);
        // The parent's bytes with cut m's separator in place of the old one.
        let parent_bytes: usize = parent_cells.iter().map(Cell::bytes).sum();
        let old_sep = parent_cells[pair.sep_index].bytes();
        let parent_fits = |m: usize| {
            let new_sep = page::entry_bytes(combined[m].key().len(), &Payload::Child(pair.right_id));
            self.fits(parent_cells.len(), parent_bytes - old_sep + new_sep)
        };
        let chosen = match cuts.iter().map(|&(_, m)| m).find(|&m| halves_fit(m) && parent_fits(m)) {
            None if must => cuts.iter().map(|&(_, m)| m).find(|&m| halves_fit(m)),
            found => found,
        };
        let Some(m) = chosen else { return Ok(false) };
        plan.write_internal(pair.left_id, pair.left_leftmost, &combined[..m]);
        plan.write_internal(pair.right_id, combined[m].child(), &combined[m + 1..]);
        let mut buf = Vec::new();
        let mut parent_cells = parent_cells.to_vec();
        parent_cells[pair.sep_index] = Cell::separator(combined[m].key(), pair.right_id, &mut buf);
        let carry = self.write_or_split_internal(plan, parent_id, parent_leftmost, &parent_cells, Edge::Middle)?;
        if let Some((separator, child)) = carry {
            self.insert_separator(plan, st, above, separator, child, Edge::Middle)?;
        }
        Ok(true)
    }
}

/// Two neighbouring internal pages and the index of their separator in the parent.
#[derive(Clone, Copy)]
struct Pair {
    left_id: u64,
    left_leftmost: u64,
    right_id: u64,
    sep_index: usize,
}

/// A bound on the new blocks (copy-on-write shadows) removing entries of `stored_bytes` in
/// all, side by side in key order, can take: their leaves (at most one per quarter page of
/// them, the fill below which a leaf is merged, plus the two at the ends), a sibling of each,
/// the internal pages above them (at most one per leaf, and the path to the root), and the
/// pages an even-out's split of a parent adds (one per level, and a new root).
fn pages_removes_may_write(stored_bytes: usize, page_bytes: usize, height: u32) -> usize {
    let leaves = 4 * stored_bytes / page_bytes + 2;
    3 * leaves + 2 * height as usize + 3
}
