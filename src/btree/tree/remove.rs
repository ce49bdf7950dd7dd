//! Removes: in place where the leaf keeps enough, else through the rebalancing (`rebalance`).

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
        let store = self.store()?;
        let mut path = st.hint.lend();
        // Whether the key was removed, and the leaf if in place (the leaf hint then holds).
        let removed = store.with_editor(|editor| {
            let (leaf_id, index, in_place) = {
                let pages = PageReader { nodes: &editor.reader(), page_bytes: self.inner.page_bytes };
                let (leaf_id, found, leaf) = self.descend_for_write(&pages, st, skey, &mut path)?;
                let Ok(index) = found else { return Ok(None) };
                (leaf_id, index, self.stays_in_place(&pages, &path, &leaf, index)?)
            };
            if let Some(overflow) = in_place {
                self.remove_in_place(editor, leaf_id, index, overflow)?;
                st.entries -= 1;
                self.save_anchor(editor, st)?;
                return Ok(Some(Some(leaf_id)));
            }
            let mut plan = Plan::new(self, editor);
            let leaf_bytes = plan.copy_page(leaf_id)?;
            let leaf = PageRef::parse(&leaf_bytes, leaf_id)?;
            let mut cells = self.page_cells(&leaf, leaf_id, true)?;
            if let Value::Overflow(old, _) = leaf.leaf_value(index)? {
                plan.free_later(old, KIND_OVERFLOW);
            }
            cells.remove(index);
            if let Err(e) = self.rebalance(&mut plan, st, &path, Lost { id: leaf_id, leaf: true, leftmost: 0 }, &cells)
            {
                return plan.abort(e);
            }
            plan.apply(st)?;
            st.entries -= 1;
            self.save_anchor(editor, st)?;
            Ok(Some(None))
        });
        st.hint.give_back(path, removed.as_ref().ok().copied().flatten().flatten());
        let Some(in_place) = removed? else { return Ok(false) };
        self.bump_version();
        if in_place.is_some() {
            st.hint.hold_at(self.version());
        }
        Ok(true)
    }

    /// Whether entry `index` of `leaf` (the page the descent along `path` ended at) can be
    /// removed where the leaf lies: `None` when the leaf then needs rebalancing
    /// ([`BTree::leaf_rebalances`]), else `Some` of the entry's overflow value node, if any.
    fn stays_in_place(
        &self,
        pages: &PageReader<'_, '_>,
        path: &[(u64, usize)],
        leaf: &PageRef<'_>,
        index: usize,
    ) -> Result<Option<Option<u64>>> {
        let used = leaf.occupied_bytes().saturating_sub(leaf.entry_bytes(index)?);
        if self.leaf_rebalances(pages, path, used, leaf.len() - 1)? {
            return Ok(None);
        }
        Ok(Some(match leaf.leaf_value(index)? {
            Value::Overflow(id, _) => Some(id),
            Value::Inline(_) => None,
        }))
    }

    /// A remove's common case ([`BTree::stays_in_place`]): the entry is removed where the
    /// leaf lies, one in-place edit of one page, and its overflow value's node freed. An
    /// error leaves the tree as it was.
    fn remove_in_place(
        &self,
        editor: &mut NodeEditor<'_>,
        leaf_id: u64,
        index: usize,
        overflow: Option<u64>,
    ) -> Result<()> {
        // Checked before the edit, as `Plan::free_later`: an id from a damaged leaf must not
        // free another tree's node or a host's.
        if let Some(id) = overflow {
            check_node_kind(editor, id, KIND_OVERFLOW)?;
        }
        let pb = self.inner.page_bytes;
        update_page(editor, pb, leaf_id, |p| page::remove_in_place(p, leaf_id, index))?;
        if let Some(id) = overflow {
            editor.free(NodeId::from_raw(id))?;
        }
        Ok(())
    }
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
