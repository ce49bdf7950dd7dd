//! A cursor's moves under the tree's lock: descents, steps across leaves, seeks.

use super::*;

/// A cursor's position and its tree, during one call that holds the tree's state shared.
pub(super) struct Held<'c> {
    pub(super) tree: &'c BTree,
    pub(super) st: &'c State,
    pub(super) at: &'c mut Position,
}

impl Held<'_> {
    fn below_lower(&self, key: &[u8]) -> bool {
        self.at.below_lower(self.tree, key)
    }

    fn above_upper(&self, key: &[u8]) -> bool {
        self.at.above_upper(self.tree, key)
    }

    /// The key under the cursor, bounds or not.
    fn raw_key(&mut self) -> Result<Option<Vec<u8>>> {
        self.entry_with(|_, k, _| k.to_vec())
    }

    fn check(&self) -> Result<()> {
        self.at.check(self.tree)
    }

    fn child_at(&self, page: u64, pos: usize) -> Result<u64> {
        self.tree.with_page(page, |p| p.child_at_position(pos))
    }

    /// Descends from `page` (at depth `stack.len()`) to a leaf, always taking the first (or
    /// last) child, under one hold of the store's lock; see [`descend_edge_in`].
    fn descend_edge(&mut self, page: u64, last: bool) -> Result<()> {
        let (tree, height) = (self.tree, self.st.height as usize);
        let at = &mut *self.at;
        tree.with_pages(|pages| descend_edge_in(pages, at, page, last, height, false))
    }

    pub(super) fn first(&mut self) -> Result<()> {
        match self.at.lower.clone() {
            Bound::Unbounded => {
                self.reset();
                self.descend_edge(self.st.root, false)
            }
            Bound::Included(l) | Bound::Excluded(l) => {
                self.seek(&l)?;
                while self.raw_key()?.is_some_and(|k| self.below_lower(&k)) {
                    self.move_next()?;
                }
                Ok(())
            }
        }
    }

    pub(super) fn last(&mut self) -> Result<()> {
        let upper = self.at.upper.clone();
        let at_end = |c: &mut Self| -> Result<()> {
            c.reset();
            c.descend_edge(c.st.root, true)
        };
        match upper {
            Bound::Unbounded => at_end(self),
            Bound::Included(u) | Bound::Excluded(u) => {
                self.seek(&u)?;
                // Past every pair equal to an included bound (a Multi tree has several).
                while self.raw_key()?.is_some_and(|k| !self.above_upper(&k)) {
                    self.move_next()?;
                }
                if self.at.stack.is_empty() {
                    at_end(self)?;
                }
                while self.raw_key()?.is_some_and(|k| self.above_upper(&k)) {
                    self.move_prev()?;
                }
                Ok(())
            }
        }
    }

    fn reset(&mut self) {
        self.at.version = self.tree.version();
        self.at.stack.clear();
        self.at.drop_copy();
    }

    /// Makes the cursor's copy hold leaf `id`, reading it unless it already does.
    fn copy_leaf(&mut self, id: u64) -> Result<()> {
        if self.at.leaf.as_ref().is_none_or(|(cached, _)| *cached != id) {
            let bytes = self.tree.read_page(id)?;
            self.at.set_copy(id, bytes);
        }
        Ok(())
    }

    /// Makes the cursor's copy hold the leaf under the cursor, if it is positioned.
    pub(super) fn copy_current_leaf(&mut self) -> Result<()> {
        self.check()?;
        match self.at.stack.last() {
            Some(&(leaf, _)) => self.copy_leaf(leaf),
            None => Ok(()),
        }
    }

    /// The leaf `id`, from the cursor's copy or read (and kept) now.
    fn leaf_page(&mut self, id: u64) -> Result<PageRef<'_>> {
        self.copy_leaf(id)?;
        self.at.copied(id)
    }

    pub(super) fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.reset();
        // A Multi tree's composite with an empty value sorts before every value of the key.
        let skey = self.tree.stored_key(key, &[]);
        let probe = self.tree.probe(&skey);
        let stack = &mut self.at.stack;
        let (page, index, len) = self.tree.with_pages(|pages| {
            let (page, leaf) = self.tree.walk_to_leaf(pages, self.st, &probe, |id, pos, _| stack.push((id, pos)))?;
            let i = match probe.find_in(&leaf)? {
                Ok(i) | Err(i) => i,
            };
            Ok((page, i, leaf.len()))
        })?;
        self.at.stack.push((page, index));
        if index >= len {
            self.at.stack.last_mut().expect("just pushed").1 = len.saturating_sub(1);
            if len == 0 {
                self.at.stack.clear();
                return Ok(());
            }
            return self.step_forward();
        }
        Ok(())
    }

    /// `f` of the entry under the cursor, or `None` outside the bounds.
    pub(super) fn current_with<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Result<Option<R>> {
        let tree = self.tree;
        Ok(self.entry_with(|at, k, v| at.within_bounds(tree, k).then(|| f(k, v)))?.flatten())
    }

    /// `f` of the cursor's position and the entry under it, bounds or not, handed where it
    /// lies in the cursor's copy of its leaf (read now if needed, so the next calls within that
    /// leaf need no lock); a value in its own node is read for the call.
    fn entry_with<R>(&mut self, f: impl FnOnce(&Position, &[u8], &[u8]) -> R) -> Result<Option<R>> {
        self.check()?;
        let Some(&(leaf, index)) = self.at.stack.last() else { return Ok(None) };
        self.copy_leaf(leaf)?;
        let (tree, at) = (self.tree, &*self.at);
        let page = at.copied(leaf)?;
        if !page.is_leaf() {
            return Err(Error::corrupt(format!("B+ tree page {leaf:#x}"), 0, "an internal page where a leaf was"));
        }
        let (key, value) = page.leaf_entry(index)?;
        let own_node;
        let value = match value {
            Value::Inline(v) => v,
            Value::Overflow(id, len) => {
                own_node = tree.read_overflow(id, len)?;
                &own_node
            }
        };
        let (k, v) = user_entry(tree, key, value);
        Ok(Some(f(at, k, v)))
    }

    pub(super) fn move_next(&mut self) -> Result<()> {
        self.check()?;
        if self.at.stack.is_empty() {
            return Ok(());
        }
        self.step_forward()
    }

    fn step_forward(&mut self) -> Result<()> {
        let (leaf, index) = *self.at.stack.last().expect("positioned");
        if index + 1 < self.leaf_page(leaf)?.len() {
            self.at.stack.last_mut().expect("positioned").1 += 1;
            return Ok(());
        }
        self.at.stack.pop();
        // Up to the first ancestor with a child to the right, and down its leftmost edge,
        // under one hold of the store's lock: a scan pays this once per leaf.
        let (tree, height) = (self.tree, self.st.height as usize);
        let at = &mut *self.at;
        tree.with_pages(|pages| {
            while let Some(&(page, pos)) = at.stack.last() {
                let p = pages.page(page)?;
                if pos < p.len() {
                    at.stack.last_mut().expect("non-empty").1 = pos + 1;
                    let child = p.child_at_position(pos + 1)?;
                    return descend_edge_in(pages, at, child, false, height, true);
                }
                at.stack.pop();
            }
            Ok(())
        })
    }

    pub(super) fn move_prev(&mut self) -> Result<()> {
        self.check()?;
        let Some(&(_, index)) = self.at.stack.last() else { return Ok(()) };
        if index > 0 {
            self.at.stack.last_mut().expect("positioned").1 -= 1;
            return Ok(());
        }
        self.at.stack.pop();
        while let Some(&(page, pos)) = self.at.stack.last() {
            if pos > 0 {
                self.at.stack.last_mut().expect("non-empty").1 = pos - 1;
                let child = self.child_at(page, pos - 1)?;
                return self.descend_edge(child, true);
            }
            self.at.stack.pop();
        }
        Ok(())
    }
}

impl Held<'_> {
    /// Calls `f` for each entry from the current one until it returns false or the entries end.
    pub(super) fn for_each(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        while let Some(go_on) = self.current_with(&mut f)? {
            if !go_on {
                break;
            }
            self.move_next()?;
        }
        Ok(())
    }
}
