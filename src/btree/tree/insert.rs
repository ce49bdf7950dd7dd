//! Inserts: the in-place fast path, then the general path through a [`Plan`].

use super::*;

impl BTree {
    /// Inserts `key` with `value`, as the duplicates mode says. Keys over
    /// [`max_key_bytes`] are `InvalidArgument`, checked before anything changes.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_entry(key, value)?;
        let skey = self.stored_key(key, value);
        let svalue: &[u8] = if self.inner.duplicates == Duplicates::Multi { &[] } else { value };
        let mut st = self.write_state()?;
        // The whole insert runs under one hold of the store's lock: the descent, then either
        // the fast path (a new key with an inline value that fits the leaf's free gap: one
        // in-place edit of one page), or for such a key whose leaf is full a shift or split in
        // place, or a planned rewrite of the pages it changes.
        let inline = svalue.len() <= max_inline_value_bytes(self.inner.page_bytes as u32);
        let store = self.store()?;
        let mut path = st.hint.lend();
        // The leaf, when it was edited in place (the leaf hint then holds).
        let in_place = store.with_editor(|editor| {
            let pages = PageReader { nodes: &editor.reader(), page_bytes: self.inner.page_bytes };
            let (leaf_id, found, leaf) = self.descend_for_write(&pages, &st, &skey, &mut path)?;
            let leaf_len = leaf.len();
            if found.is_ok() && self.inner.duplicates != Duplicates::Overwrite {
                return Err(Error::DuplicateKey(format!("key of {} bytes is already in the tree", key.len())));
            }
            if let (Err(i), true) = (found, inline) {
                let e = Entry { key: &skey, payload: Payload::Leaf(Value::Inline(svalue)) };
                if self.count_fits(leaf_len + 1) && self.try_insert_in_place(editor, leaf_id, i, &e)? {
                    st.entries += 1;
                    self.save_anchor(editor, &st)?;
                    return Ok(Some(leaf_id));
                }
                if self.overflow_in_place(editor, &mut st, &path, leaf_id, i, &e)? {
                    st.entries += 1;
                    return self.save_anchor(editor, &st).map(|()| None);
                }
            }
            self.insert_rewriting(editor, &mut st, &path, leaf_id, found, &skey, svalue).map(|()| None)
        });
        st.hint.give_back(path, in_place.as_ref().ok().copied().flatten());
        let in_place = in_place?;
        self.bump_version();
        if in_place.is_some() {
            st.hint.hold_at(self.version());
        }
        Ok(())
    }

    /// The insert's general path: the leaf's cells with the new one, written as one page, or
    /// shifted into a sibling, or split (the separator going up the path).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_rewriting(
        &self,
        editor: &mut NodeEditor<'_>,
        st: &mut State,
        path: &[(u64, usize)],
        leaf_id: u64,
        found: std::result::Result<usize, usize>,
        skey: &[u8],
        svalue: &[u8],
    ) -> Result<()> {
        let mut plan = Plan::new(self, editor);
        let leaf_bytes = plan.copy_page(leaf_id)?;
        let leaf = PageRef::parse(&leaf_bytes, leaf_id)?;
        let mut cells = self.page_cells(&leaf, leaf_id, true)?;
        let replaced = match found {
            Ok(i) => Some(leaf.leaf_value(i)?),
            Err(_) => None,
        };
        let stored = match plan.store_value(svalue) {
            Ok(v) => v,
            Err(e) => return plan.abort(e),
        };
        let mut cell_buf = Vec::new();
        let new_cell = Cell::encode(&Entry { key: skey, payload: Payload::Leaf(stored) }, &mut cell_buf);
        let index = match found {
            Ok(i) => {
                if let Some(Value::Overflow(old, _)) = replaced {
                    plan.free_later(old, KIND_OVERFLOW);
                }
                cells[i] = new_cell;
                i
            }
            Err(i) => {
                cells.insert(i, new_cell);
                i
            }
        };
        let edge = self.edge(&plan, path, index, cells.len());
        if let Err(e) = self.write_leaf(&mut plan, st, path, leaf_id, &cells, edge) {
            return plan.abort(e);
        }
        plan.apply(st)?;
        if found.is_err() {
            st.entries += 1;
        }
        self.save_anchor(editor, st)
    }

    /// Fast path: the entry fits the leaf's free gap; one in-place edit of one page.
    pub(super) fn try_insert_in_place(
        &self,
        editor: &mut NodeEditor<'_>,
        leaf_id: u64,
        index: usize,
        e: &Entry<'_>,
    ) -> Result<bool> {
        update_page_recorded(editor, self.inner.page_bytes, leaf_id, |p| page::insert_in_place(p, leaf_id, index, e))
    }

    pub(super) fn edge(&self, plan: &Plan<'_, '_>, path: &[(u64, usize)], index: usize, n: usize) -> Edge {
        edge_at(path, index, n, |id| plan.page_len(id).ok())
    }

    /// Writes a leaf's new cells: one page if they fit, else as the planner decides
    /// ([`BTree::overflow_plan`]): shifted into a sibling, or split, the separator going up
    /// the path (splitting internal pages as needed, growing a new root at the top).
    pub(super) fn write_leaf(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &mut State,
        path: &[(u64, usize)],
        leaf_id: u64,
        cells: &[Cell<'_>],
        edge: Edge,
    ) -> Result<()> {
        if self.cells_fit(cells) {
            plan.write_cells(leaf_id, cells);
            return Ok(());
        }
        // The parent is read only for a shift, which the planner considers away from the edges.
        let parent_bytes = match (edge, path.last()) {
            (Edge::Middle, Some(&(parent_id, pos))) => Some((plan.copy_page(parent_id)?, parent_id, pos)),
            _ => None,
        };
        let parent = match &parent_bytes {
            Some((bytes, id, pos)) => {
                let p = PageRef::parse(bytes, *id)?;
                self.check_kind(&p, *id, false)?;
                Some((p, *pos))
            }
            None => None,
        };
        let sibling = |id| {
            plan.with_page(id, |p| {
                self.check_kind(&p, id, true)?;
                Ok((p.occupied_bytes(), p.len()))
            })?
        };
        let decided = self.overflow_plan(sibling, parent.as_ref().map(|(p, pos)| (p, *pos)), cells, edge)?;
        match decided {
            Some(Overflow::Shift { id, right, cut, separator }) => {
                let (parent_id, pos) =
                    *path.last().ok_or_else(|| Error::Internal("a shift planned for a root leaf".into()))?;
                self.shift_into_sibling(
                    plan,
                    parent_id,
                    if right { pos } else { pos - 1 },
                    leaf_id,
                    cells,
                    (id, right, cut),
                    separator,
                )
            }
            Some(Overflow::Split { cut, separator }) => {
                let right_id = plan.alloc_page(KIND_LEAF)?;
                plan.write_cells(leaf_id, &cells[..cut]);
                plan.write_cells(right_id, &cells[cut..]);
                self.insert_separator(plan, st, path, separator, right_id, edge)
            }
            None => Err(Error::Internal("entries of at most a quarter page found no split".into())),
        }
    }

    /// Carries a shift the planner decided out by copy: the leaf's `cells` from `cut` on go to
    /// the front of its right sibling `id` (`right`), or those before `cut` to the end of its
    /// left one; `separator` replaces the parent's entry `sep_index` between the two.
    #[allow(clippy::too_many_arguments)]
    fn shift_into_sibling(
        &self,
        plan: &mut Plan<'_, '_>,
        parent_id: u64,
        sep_index: usize,
        leaf_id: u64,
        cells: &[Cell<'_>],
        (sibling_id, right, k): (u64, bool, usize),
        separator: Vec<u8>,
    ) -> Result<()> {
        let sibling_bytes = plan.copy_page(sibling_id)?;
        let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
        let sibling_cells = self.page_cells(&sibling, sibling_id, true)?;
        let (left_id, right_id, left_cells, right_cells) = if right {
            (leaf_id, sibling_id, cells[..k].to_vec(), [&cells[k..], &sibling_cells[..]].concat())
        } else {
            (sibling_id, leaf_id, [&sibling_cells[..], &cells[..k]].concat(), cells[k..].to_vec())
        };
        self.plan_separator(plan, parent_id, sep_index, separator)?;
        plan.write_cells(left_id, &left_cells);
        plan.write_cells(right_id, &right_cells);
        Ok(())
    }

    /// Adds (separator, child) right after the path's child position in each parent, from the
    /// bottom up, splitting full internal pages.
    pub(super) fn insert_separator(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &State,
        path: &[(u64, usize)],
        separator: Vec<u8>,
        child: u64,
        edge: Edge,
    ) -> Result<()> {
        let mut carry = Some((separator, child));
        let mut buf = Vec::new();
        for &(page_id, pos) in path.iter().rev() {
            let Some((sep, child)) = carry.take() else { break };
            let bytes = plan.copy_page(page_id)?;
            let p = PageRef::parse(&bytes, page_id)?;
            self.check_kind(&p, page_id, false)?;
            // The common case: the separator fits the page's free gap, one small edit.
            let sep_bytes = page::entry_bytes(sep.len(), &Payload::Child(child));
            if self.count_fits(p.len() + 1) && p.gap_bytes() >= sep_bytes && pos <= p.len() {
                plan.edit(page_id, PageWrite::InsertSeparator { index: pos, key: sep, child });
                continue;
            }
            let mut cells = self.page_cells(&p, page_id, false)?;
            cells.insert(pos, Cell::separator(&sep, child, &mut buf));
            carry = self.write_or_split_internal(plan, page_id, p.leftmost_child(), &cells, edge)?;
        }
        self.grow_root(plan, st, carry)
    }

    /// Writes internal page `id` with `cells`: one page if they fit, else split in two (a new
    /// page on the right), returning the separator and the new page that go up to its parent.
    pub(super) fn write_or_split_internal(
        &self,
        plan: &mut Plan<'_, '_>,
        id: u64,
        leftmost: u64,
        cells: &[Cell<'_>],
        edge: Edge,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        if self.cells_fit(cells) {
            plan.write_internal(id, leftmost, cells);
            return Ok(None);
        }
        let sizes: Vec<usize> = cells.iter().map(Cell::bytes).collect();
        let m = internal_split_point(&sizes, page::capacity(self.inner.page_bytes), edge);
        let right_id = plan.alloc_page(KIND_INTERNAL)?;
        plan.write_internal(id, leftmost, &cells[..m]);
        plan.write_internal(right_id, cells[m].child(), &cells[m + 1..]);
        Ok(Some((cells[m].key().to_vec(), right_id)))
    }

    /// A new root above the old one when a split carried a separator past the top.
    pub(super) fn grow_root(&self, plan: &mut Plan<'_, '_>, st: &State, carry: Option<(Vec<u8>, u64)>) -> Result<()> {
        if let Some((sep, child)) = carry {
            if st.height as usize >= DEPTH_MAX {
                return Err(Error::Limit(format!("the tree would be deeper than {DEPTH_MAX} levels")));
            }
            let new_root = plan.alloc_page(KIND_INTERNAL)?;
            plan.write_internal(new_root, st.root, &[Cell::separator(&sep, child, &mut Vec::new())]);
            plan.new_root = Some(new_root);
        }
        Ok(())
    }
}
