//! Cursors: a root-to-leaf stack of positions, moving both ways. A cursor belongs to the
//! tree version it was positioned on; after any change to the tree it answers `StaleCursor`
//! until it is positioned again (`seek`, `first`, `last`).
//!
//! Every cursor call holds the tree's state lock shared, from its version check to its last
//! page read. Writers hold that lock exclusively while they change pages and bump the version,
//! so a call sees one whole version of the tree: the one it was positioned on, or none
//! (`StaleCursor`). Without it a writer could change a page between the check and the read,
//! and the cursor would return entries out of order or report damage that is not there.
//!
//! The one exception keeps ordered scans cheap: moving within the leaf the cursor holds a
//! copy of, and reading an inline entry from that copy, need only the version check. The
//! copy was taken under the lock at the cursor's version, and a writer that is changing the
//! tree has not bumped the version yet, so such a call answers as if it came before that
//! change.

use super::page::{PageRef, Payload, Value};
use super::tree::{split_composite, BTree, Duplicates, PageReader, State};
use crate::error::{Error, Result};
use std::ops::Bound;

pub struct Cursor {
    tree: BTree,
    at: Position,
}

/// Where a cursor is: everything but its tree.
struct Position {
    version: u64,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// (page id, position): for internal pages the child position (0 = leftmost), for the
    /// leaf the entry index. Empty when the cursor is past either end.
    stack: Vec<(u64, usize)>,
    /// A copy of the leaf under the cursor: moving within it reads no page. Valid while the
    /// tree's version is the cursor's (every use checks it).
    leaf: Option<(u64, Vec<u8>)>,
}

/// What a cursor call could do from its copy of the leaf, without the tree's lock.
enum FromCopy<T> {
    Done(T),
    /// It needs a page or a value node that only the tree's lock keeps consistent.
    NeedsLock,
}

impl Position {
    fn new(version: u64, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Position {
        Position { version, lower, upper, stack: Vec::new(), leaf: None }
    }

    fn check(&self, tree: &BTree) -> Result<()> {
        if tree.version() != self.version {
            return Err(Error::StaleCursor("the tree changed since this cursor was positioned".into()));
        }
        Ok(())
    }

    fn below_lower(&self, tree: &BTree, key: &[u8]) -> bool {
        match &self.lower {
            Bound::Unbounded => false,
            Bound::Included(l) => tree.cmp_keys(key, l) == std::cmp::Ordering::Less,
            Bound::Excluded(l) => tree.cmp_keys(key, l) != std::cmp::Ordering::Greater,
        }
    }

    fn above_upper(&self, tree: &BTree, key: &[u8]) -> bool {
        match &self.upper {
            Bound::Unbounded => false,
            Bound::Included(u) => tree.cmp_keys(key, u) == std::cmp::Ordering::Greater,
            Bound::Excluded(u) => tree.cmp_keys(key, u) != std::cmp::Ordering::Less,
        }
    }

    fn within_bounds(&self, tree: &BTree, key: &[u8]) -> bool {
        !self.below_lower(tree, key) && !self.above_upper(tree, key)
    }

    /// Makes the cursor's copy hold leaf `id`'s `bytes`, reusing the old copy's buffer.
    fn keep_copy(&mut self, id: u64, bytes: &[u8]) {
        let mut buf = self.leaf.take().map(|(_, b)| b).unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.leaf = Some((id, buf));
    }

    /// The cursor's copy of leaf `id`, if it holds one.
    fn copy_of(&self, id: u64) -> Result<Option<PageRef<'_>>> {
        match &self.leaf {
            Some((cached, bytes)) if *cached == id => PageRef::parse(bytes, id).map(Some),
            _ => Ok(None),
        }
    }

    /// `current_with` from the copy of the leaf: an inline entry, handed to `f` where it lies
    /// in the copy (an ordered scan copies nothing but what its caller keeps).
    fn current_from_copy<R>(&self, tree: &BTree, f: impl FnOnce(&[u8], &[u8]) -> R) -> Result<FromCopy<Option<R>>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(None)) };
        let Some(page) = self.copy_of(leaf)? else { return Ok(FromCopy::NeedsLock) };
        // A value in its own node needs the lock.
        let (key, Value::Inline(v)) = page.leaf_entry(index)? else { return Ok(FromCopy::NeedsLock) };
        let (key, value) = user_entry(tree, key, v);
        Ok(FromCopy::Done(self.within_bounds(tree, key).then(|| f(key, value))))
    }

    /// `move_next` within the copy of the leaf.
    fn next_within_copy(&mut self, tree: &BTree) -> Result<FromCopy<()>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(())) };
        let len = match self.copy_of(leaf)? {
            Some(page) => page.len(),
            None => return Ok(FromCopy::NeedsLock),
        };
        if index + 1 >= len {
            return Ok(FromCopy::NeedsLock);
        }
        self.stack.last_mut().expect("positioned").1 += 1;
        Ok(FromCopy::Done(()))
    }

    /// `move_next` then `current_with`, within the copy of the leaf: one version check and one
    /// parse of the copy for both. Moves only when it answers `Done`.
    fn next_from_copy<R>(&mut self, tree: &BTree, f: impl FnOnce(&[u8], &[u8]) -> R) -> Result<FromCopy<Option<R>>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(None)) };
        let Some(page) = self.copy_of(leaf)? else { return Ok(FromCopy::NeedsLock) };
        if index + 1 >= page.len() {
            return Ok(FromCopy::NeedsLock);
        }
        let (key, Value::Inline(v)) = page.leaf_entry(index + 1)? else { return Ok(FromCopy::NeedsLock) };
        let (key, value) = user_entry(tree, key, v);
        let r = self.within_bounds(tree, key).then(|| f(key, value));
        self.stack.last_mut().expect("positioned").1 += 1;
        Ok(FromCopy::Done(r))
    }

    /// Hands `f` the inline entries of the copy of the leaf from the cursor's, moving past each
    /// one `f` takes, and stops before the leaf's last entry (moving past it needs the lock), at
    /// an entry outside the bounds or in its own node, or where `f` declines. Returns how many
    /// `f` took.
    fn take_from_copy(&mut self, tree: &BTree, f: &mut impl FnMut(&[u8], &[u8]) -> bool) -> Result<usize> {
        self.check(tree)?;
        let Some(&(leaf, start)) = self.stack.last() else { return Ok(0) };
        let Some(page) = self.copy_of(leaf)? else { return Ok(0) };
        // Decided once per leaf, not per entry: whether keys are composites to split, and
        // whether there are bounds to check (an unbounded scan, the common one, has none).
        let multi = tree.duplicates() == Duplicates::Multi;
        let bounded = !matches!((&self.lower, &self.upper), (Bound::Unbounded, Bound::Unbounded));
        let mut index = start;
        while index + 1 < page.len() {
            let (key, Value::Inline(v)) = page.leaf_entry(index)? else { break };
            let (key, value) = if multi { split_composite(key) } else { (key, v) };
            if (bounded && !self.within_bounds(tree, key)) || !f(key, value) {
                break;
            }
            index += 1;
        }
        self.stack.last_mut().expect("positioned").1 = index;
        Ok(index - start)
    }

    /// `move_prev` within the leaf (no page needed).
    fn prev_within_leaf(&mut self, tree: &BTree) -> Result<FromCopy<()>> {
        self.check(tree)?;
        match self.stack.last_mut() {
            None => Ok(FromCopy::Done(())),
            Some((_, index)) if *index > 0 => {
                *index -= 1;
                Ok(FromCopy::Done(()))
            }
            Some(_) => Ok(FromCopy::NeedsLock),
        }
    }
}

/// Descends from `page` (at depth `at.stack.len()`) to a leaf, always taking the first (or
/// last) child, and with `copy` keeps a copy of the leaf (in the buffer of the copy it
/// replaces): a scan moving on reads it next. (Positioning calls leave the copy to the first
/// read, which then also finds out whether the store is still open.) Leaves must sit exactly
/// at the tree's height: a damaged child pointer (one that points back up, or to a page of
/// the wrong level) is `Corrupt`, never a loop.
fn descend_edge_in(
    pages: &PageReader<'_, '_>,
    at: &mut Position,
    mut page: u64,
    last: bool,
    height: usize,
    copy: bool,
) -> Result<()> {
    loop {
        let p = pages.page(page)?;
        let (is_leaf, len) = (p.is_leaf(), p.len());
        if is_leaf != (at.stack.len() + 1 == height) {
            let depth = at.stack.len();
            at.stack.clear();
            return Err(Error::corrupt(
                format!("B+ tree page {page:#x}"),
                0,
                format!(
                    "a {} page at depth {depth} of a tree of height {height}",
                    if is_leaf { "leaf" } else { "internal" }
                ),
            ));
        }
        if is_leaf {
            if len == 0 {
                at.stack.clear(); // only an empty root leaf
            } else {
                at.stack.push((page, if last { len - 1 } else { 0 }));
                if copy {
                    at.keep_copy(page, p.as_bytes());
                }
            }
            return Ok(());
        }
        let pos = if last { len } else { 0 };
        at.stack.push((page, pos));
        page = p.child_at_position(pos)?;
        if at.stack.len() > 64 {
            return Err(Error::corrupt(format!("B+ tree page {page:#x}"), 0, "the tree is deeper than any valid tree"));
        }
    }
}

/// A stored entry as the user sees it: a Multi tree's composite key split into key and value.
fn user_entry<'a>(tree: &BTree, key: &'a [u8], value: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    if tree.duplicates() == Duplicates::Multi {
        return split_composite(key);
    }
    (key, value)
}

impl Cursor {
    /// An unpositioned cursor; `current` is `None` until a seek.
    pub fn new(tree: &BTree) -> Cursor {
        Cursor { tree: tree.clone(), at: Position::new(tree.version(), Bound::Unbounded, Bound::Unbounded) }
    }

    /// Limits the cursor to keys between the bounds: `first` and `last` go to the first and
    /// last entry inside them, and `current` is `None` outside them.
    pub fn set_bounds(&mut self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) {
        self.at.lower = lower.map(<[u8]>::to_vec);
        self.at.upper = upper.map(<[u8]>::to_vec);
    }

    /// Runs one cursor call with the tree's state held shared (see the module's comment).
    fn held<R>(&mut self, f: impl FnOnce(&mut Held<'_>) -> Result<R>) -> Result<R> {
        let st = self.tree.read_state()?;
        f(&mut Held { tree: &self.tree, st: &st, at: &mut self.at })
    }

    /// The first entry within the bounds.
    pub fn first(&mut self) -> Result<()> {
        self.held(|h| h.first())
    }

    /// The last entry within the bounds.
    pub fn last(&mut self) -> Result<()> {
        self.held(|h| h.last())
    }

    /// Positions on the first entry whose key is >= `key` (past the end if none).
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.held(|h| h.seek(key))
    }

    /// The entry under the cursor as (key, value), or `None` past either end or outside the
    /// bounds.
    pub fn current(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.current_with(|k, v| (k.to_vec(), v.to_vec()))
    }

    /// `f` of the entry under the cursor (key, value), or `None` past either end or outside
    /// the bounds. Within the leaf the cursor holds a copy of, the entry is not copied first.
    pub fn current_with<R>(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> R) -> Result<Option<R>> {
        match self.at.current_from_copy(&self.tree, &mut f)? {
            FromCopy::Done(r) => Ok(r),
            FromCopy::NeedsLock => self.held(|h| h.current_with(f)),
        }
    }

    pub fn move_next(&mut self) -> Result<()> {
        match self.at.next_within_copy(&self.tree)? {
            FromCopy::Done(()) => Ok(()),
            FromCopy::NeedsLock => self.held(|h| h.move_next()),
        }
    }

    /// Moves to the next entry and hands it to `f`: `move_next` then `current_with` in one
    /// call (`None` past the end or outside the bounds), as LMDB's `MDB_NEXT`.
    pub fn next_with<R>(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> R) -> Result<Option<R>> {
        match self.at.next_from_copy(&self.tree, &mut f)? {
            FromCopy::Done(r) => Ok(r),
            FromCopy::NeedsLock => self.held(|h| {
                h.move_next()?;
                h.current_with(f)
            }),
        }
    }

    /// Hands `f` the entries from the one under the cursor on, in order, while `f` takes them
    /// (answers true), moving past each one taken: the cursor ends on the first entry not
    /// taken, or past the end. `f` may be offered an entry it declined again, so declining
    /// must change nothing. Returns how many were taken (0: `f` declined the first, or the
    /// cursor is past the end or outside its bounds).
    pub fn take_while(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<usize> {
        let mut taken = 0;
        loop {
            taken += self.at.take_from_copy(&self.tree, &mut f)?;
            // The leaf's last entry, one in its own node, or the end: the general path.
            match self.current_with(&mut f)? {
                Some(true) => {
                    taken += 1;
                    self.move_next()?;
                }
                Some(false) | None => return Ok(taken),
            }
        }
    }

    pub fn move_prev(&mut self) -> Result<()> {
        match self.at.prev_within_leaf(&self.tree)? {
            FromCopy::Done(()) => Ok(()),
            FromCopy::NeedsLock => self.held(|h| h.move_prev()),
        }
    }
}

/// A cursor's position and its tree, during one call that holds the tree's state shared.
struct Held<'c> {
    tree: &'c BTree,
    st: &'c State,
    at: &'c mut Position,
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

    fn first(&mut self) -> Result<()> {
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

    fn last(&mut self) -> Result<()> {
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
        self.at.leaf = None;
    }

    /// Makes the cursor's copy hold leaf `id`, reading it unless it already does.
    fn copy_leaf(&mut self, id: u64) -> Result<()> {
        if self.at.leaf.as_ref().is_none_or(|(cached, _)| *cached != id) {
            let bytes = self.tree.read_page(id)?;
            self.at.leaf = Some((id, bytes));
        }
        Ok(())
    }

    /// The leaf `id`, from the cursor's copy or read (and kept) now.
    fn leaf_page(&mut self, id: u64) -> Result<PageRef<'_>> {
        self.copy_leaf(id)?;
        Ok(self.at.copy_of(id)?.expect("copied above"))
    }

    fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.reset();
        // A Multi tree's composite with an empty value sorts before every value of the key.
        let skey = self.tree.stored_key(key, &[]);
        let probe = self.tree.probe(&skey);
        let stack = &mut self.at.stack;
        let (page, index, len) = self.tree.with_pages(|pages| {
            let (page, leaf) = self.tree.walk_to_leaf(pages, self.st, &probe, |id, pos| stack.push((id, pos)))?;
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
    fn current_with<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Result<Option<R>> {
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
        let e = at.copy_of(leaf)?.expect("copied above").entry(index)?;
        let own_node;
        let value = match e.payload {
            Payload::Leaf(Value::Inline(v)) => v,
            Payload::Leaf(Value::Overflow(id, len)) => {
                own_node = tree.read_overflow(id, len)?;
                &own_node
            }
            Payload::Child(_) => {
                return Err(Error::corrupt(format!("B+ tree page {leaf:#x}"), 0, "child cell in a leaf"))
            }
        };
        let (k, v) = user_entry(tree, e.key, value);
        Ok(Some(f(at, k, v)))
    }

    fn move_next(&mut self) -> Result<()> {
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

    fn move_prev(&mut self) -> Result<()> {
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

impl BTree {
    /// Entries with keys between the bounds, in order, as (key, value). In a Multi tree one
    /// pair per value.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan(lower, upper, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` for each entry between the bounds until it returns false. The scan holds the
    /// tree's state shared throughout, so it sees one version of the tree and writers wait for
    /// it: `f` must not call this tree.
    pub fn scan(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>, f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.held_walk(lower, upper, |h| {
            h.first()?;
            h.for_each(f)
        })
    }

    /// Like `scan`, from the first entry whose stored key is >= `key`, unbounded.
    pub(crate) fn scan_from(&self, key: &[u8], f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let st = self.read_state()?;
        self.scan_from_held(&st, key, f)
    }

    /// `scan_from` under a hold of the tree's state the caller already has: a writer that
    /// looks, then changes, under one hold.
    pub(crate) fn scan_from_held(&self, st: &State, key: &[u8], f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut at = Position::new(self.version(), Bound::Unbounded, Bound::Unbounded);
        let mut h = Held { tree: self, st, at: &mut at };
        h.seek(key)?;
        h.for_each(f)
    }

    /// Runs `f` on a new position within the bounds, the tree's state held shared throughout.
    fn held_walk<R>(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        f: impl FnOnce(&mut Held<'_>) -> Result<R>,
    ) -> Result<R> {
        let st = self.read_state()?;
        let mut at = Position::new(self.version(), lower.map(<[u8]>::to_vec), upper.map(<[u8]>::to_vec));
        f(&mut Held { tree: self, st: &st, at: &mut at })
    }
}

impl Held<'_> {
    /// Calls `f` for each entry from the current one until it returns false or the entries end.
    fn for_each(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        while let Some(go_on) = self.current_with(&mut f)? {
            if !go_on {
                break;
            }
            self.move_next()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::TreeOptions;
    use crate::store::{Store, StoreOptions};
    use crate::Error;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Key k's value: the key repeated 1 to 6 times (above 32 bytes it lives in its own node).
    fn value_of(key: &[u8], step: u64) -> Vec<u8> {
        key.repeat(1 + (step % 6) as usize)
    }

    /// Positions `cur` past `last` (or at `start` when nothing was read yet).
    fn reposition(cur: &mut Cursor, start: &[u8], last: Option<&Vec<u8>>) {
        match last {
            Some(l) => cur.set_bounds(Bound::Excluded(l), Bound::Unbounded),
            None => cur.set_bounds(Bound::Included(start), Bound::Unbounded),
        }
        cur.first().expect("positioning is never stale and never reads a damaged page");
    }

    /// A bounded forward scan of up to 200 entries: strictly ordered, every value whole,
    /// continuing past the last key after `StaleCursor`.
    fn scan_while_changing(cur: &mut Cursor, start: &[u8]) {
        let mut last: Option<Vec<u8>> = None;
        reposition(cur, start, None);
        for _ in 0..200 {
            let (k, v) = match cur.current() {
                Ok(Some(entry)) => entry,
                Ok(None) => return,
                Err(Error::StaleCursor(_)) => {
                    reposition(cur, start, last.as_ref());
                    continue;
                }
                Err(e) => panic!("current: {e}"),
            };
            assert!(last.as_ref().is_none_or(|l| *l < k), "{k:?} after {last:?}");
            assert!(!v.is_empty() && v.chunks(k.len()).all(|c| c == k), "a torn value for {k:?}");
            last = Some(k);
            match cur.move_next() {
                Ok(()) => {}
                Err(Error::StaleCursor(_)) => reposition(cur, start, last.as_ref()),
                Err(e) => panic!("move_next: {e}"),
            }
        }
    }

    /// Writer steps of the race below; Miri (which checks the same run for data races) runs
    /// some thousand times slower.
    const RACE_STEPS: u64 = if cfg!(miri) { 300 } else { 30_000 };
    const RACE_MIN_ROUNDS: u32 = if cfg!(miri) { 2 } else { 20 };

    /// Readers racing a writer see whole versions of the tree: scans stay strictly ordered,
    /// positioning never answers `StaleCursor`, and a Multi tree's `get_all` (a walk inside one
    /// call) never does either. Before cursor calls held the tree's lock, a writer could change
    /// a page between a cursor's version check and its read.
    #[test]
    fn readers_racing_a_writer_see_whole_versions() {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        let small = |duplicates| TreeOptions { page_bytes: 512, duplicates, ..TreeOptions::default() };
        let kv = BTree::open(&store, b"kv", &small(Duplicates::Overwrite)).unwrap();
        let multi = BTree::open(&store, b"multi", &small(Duplicates::Multi)).unwrap();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (1..=2u64)
                .map(|seed| {
                    let (kv, multi, done) = (&kv, &multi, &done);
                    s.spawn(move || {
                        let mut x = crate::test_rng::TestRng::new(seed);
                        let mut cur = Cursor::new(kv);
                        let mut rounds = 0;
                        while rounds < RACE_MIN_ROUNDS || !done.load(Ordering::Acquire) {
                            rounds += 1;
                            scan_while_changing(&mut cur, &(x.next() % 2000).to_be_bytes());
                            let values = multi.get_all(&(x.next() % 200).to_be_bytes()).expect("get_all");
                            assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
                        }
                    })
                })
                .collect();
            let mut x = crate::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
            for step in 0..RACE_STEPS {
                let r = x.next();
                let key = (r % 2000).to_be_bytes();
                let small_key = (r % 200).to_be_bytes();
                let result = match r >> 61 {
                    0..=3 => kv.insert(&key, &value_of(&key, step)),
                    4..=5 => kv.remove(&key).map(|_| ()),
                    6 => multi.insert(&small_key, &(r % 8).to_be_bytes()).or_else(|e| match e {
                        Error::DuplicateKey(_) => Ok(()),
                        e => Err(e),
                    }),
                    _ => multi.remove_pair(&small_key, &(r % 8).to_be_bytes()).map(|_| ()),
                };
                result.unwrap();
            }
            done.store(true, Ordering::Release);
            for r in readers {
                r.join().unwrap();
            }
        });
        kv.verify().unwrap();
        multi.verify().unwrap();
    }

    /// Every entry of `tree` within the bounds, read three ways: current + move_next,
    /// next_with, and take_while in batches of at most `batch` entries.
    fn three_scans(
        tree: &BTree,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        batch: usize,
    ) -> [Vec<(Vec<u8>, Vec<u8>)>; 3] {
        let mut out: [Vec<(Vec<u8>, Vec<u8>)>; 3] = Default::default();
        let mut c = Cursor::new(tree);
        c.set_bounds(lower, upper);
        c.first().unwrap();
        while let Some(e) = c.current().unwrap() {
            out[0].push(e);
            c.move_next().unwrap();
        }
        c.first().unwrap();
        if let Some(e) = c.current().unwrap() {
            out[1].push(e);
            while let Some(e) = c.next_with(|k, v| (k.to_vec(), v.to_vec())).unwrap() {
                out[1].push(e);
            }
        }
        c.first().unwrap();
        loop {
            let mut room = batch;
            let taken = c
                .take_while(|k, v| {
                    if room == 0 {
                        return false;
                    }
                    room -= 1;
                    out[2].push((k.to_vec(), v.to_vec()));
                    true
                })
                .unwrap();
            assert_eq!(taken, batch - room);
            if taken == 0 {
                break;
            }
        }
        out
    }

    // Checks the scan logic over thousands of entries, no unsafe code of its own: under Miri
    // (scripts/test.sh runs it on this module) it would take most of an hour.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn combined_and_batch_reads_see_what_a_stepped_scan_sees() {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        for dup in [Duplicates::Unique, Duplicates::Multi] {
            let name = format!("{dup:?}");
            let opts = TreeOptions { page_bytes: 512, duplicates: dup, ..TreeOptions::default() };
            let tree = BTree::open(&store, name.as_bytes(), &opts).unwrap();
            for i in 0..1500u64 {
                let key = format!("{:05}", i / 2).into_bytes();
                // Some values live in their own node (Multi trees keep values inline).
                let value =
                    if dup == Duplicates::Unique && i % 7 == 0 { vec![i as u8; 100] } else { i.to_le_bytes().to_vec() };
                match tree.insert(&key, &value) {
                    Ok(()) | Err(Error::DuplicateKey(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let all = tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
            for (lower, upper) in [
                (Bound::Unbounded, Bound::Unbounded),
                (Bound::Included(&b"00100"[..]), Bound::Excluded(&b"00500"[..])),
                (Bound::Excluded(&b"00700"[..]), Bound::Included(&b"00700x"[..])),
            ] {
                let want = tree.range(lower, upper).unwrap();
                for batch in [1, 3, 64, 10_000] {
                    let got = three_scans(&tree, lower, upper, batch);
                    for (way, scan) in got.iter().enumerate() {
                        assert_eq!(scan, &want, "{name}: way {way}, batch {batch}, {lower:?}..{upper:?}");
                    }
                }
            }
            assert!(all.len() >= 750);
            // A change makes the cursor stale for both calls.
            let mut c = Cursor::new(&tree);
            c.first().unwrap();
            tree.insert(b"zzz", b"v").unwrap();
            assert!(matches!(c.next_with(|_, _| ()), Err(Error::StaleCursor(_))));
            assert!(matches!(c.take_while(|_, _| true), Err(Error::StaleCursor(_))));
        }
    }
}
