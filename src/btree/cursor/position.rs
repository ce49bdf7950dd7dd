//! Where a cursor is, and the moves and reads it makes from its copy of the leaf.

use super::*;
use crate::btree::page::Value;
use crate::btree::tree::PageReader;
use spans::{Layout, Span};

/// Where a cursor is: everything but its tree.
pub(super) struct Position {
    pub(super) version: u64,
    pub(super) lower: Bound<Vec<u8>>,
    pub(super) upper: Bound<Vec<u8>>,
    /// (page id, position): for internal pages the child position (0 = leftmost), for the
    /// leaf the entry index. Empty when the cursor is past either end.
    pub(super) stack: Vec<(u64, usize)>,
    /// A copy of the leaf under the cursor: moving within it reads no page. Valid while the
    /// tree's version is the cursor's (every use checks it).
    pub(super) leaf: Option<(u64, Vec<u8>)>,
    /// The copy's layout, read when it was taken (see `spans`).
    layout: Layout,
}

/// What a cursor call could do from its copy of the leaf, without the tree's lock.
pub(super) enum FromCopy<T> {
    Done(T),
    /// It needs a page or a value node that only the tree's lock keeps consistent.
    NeedsLock,
}

impl Position {
    pub(super) fn new(version: u64, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Position {
        Position { version, lower, upper, stack: Vec::new(), leaf: None, layout: Layout::default() }
    }

    pub(super) fn check(&self, tree: &BTree) -> Result<()> {
        if tree.version() != self.version {
            return Err(Error::StaleCursor("the tree changed since this cursor was positioned".into()));
        }
        Ok(())
    }

    pub(super) fn below_lower(&self, tree: &BTree, key: &[u8]) -> bool {
        below(tree, &self.lower, key)
    }

    pub(super) fn above_upper(&self, tree: &BTree, key: &[u8]) -> bool {
        above(tree, &self.upper, key)
    }

    #[inline]
    pub(super) fn within_bounds(&self, tree: &BTree, key: &[u8]) -> bool {
        // An unbounded scan, the common one, compares nothing (and makes no call per entry).
        if matches!((&self.lower, &self.upper), (Bound::Unbounded, Bound::Unbounded)) {
            return true;
        }
        key_within(tree, &self.lower, &self.upper, key)
    }

    /// Makes the cursor's copy hold leaf `id`'s `bytes`, reusing the old copy's buffer.
    fn keep_copy(&mut self, id: u64, bytes: &[u8]) {
        let mut buf = self.leaf.take().map(|(_, b)| b).unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.set_copy(id, buf);
    }

    /// Makes the cursor's copy hold leaf `id`'s `bytes`.
    pub(super) fn set_copy(&mut self, id: u64, bytes: Vec<u8>) {
        self.layout = Layout::of(&bytes, id);
        self.leaf = Some((id, bytes));
    }

    pub(super) fn drop_copy(&mut self) {
        self.leaf = None;
        self.layout = Layout::default();
    }

    /// The cursor's copy of leaf `id`, if it holds one.
    #[inline]
    pub(super) fn copy_of(&self, id: u64) -> Result<Option<PageRef<'_>>> {
        match &self.leaf {
            Some((cached, bytes)) if *cached == id => PageRef::parse(bytes, id).map(Some),
            _ => Ok(None),
        }
    }

    /// The copy of leaf `id`, which the caller has just made (`Held::copy_leaf`); an error,
    /// not a panic, if it is not there.
    pub(super) fn copied(&self, id: u64) -> Result<PageRef<'_>> {
        self.copy_of(id)?.ok_or_else(|| Error::Internal(format!("the cursor's copy of leaf {id:#x} is missing")))
    }

    /// Where entry `index` of leaf `leaf` lies in the copy; `None` when the copy is not of
    /// `leaf` or the entry cannot be handed out from it (past the leaf's end, a value in its
    /// own node, a damaged cell).
    #[inline]
    fn span(&self, tree: &BTree, leaf: u64, index: usize) -> Option<Span> {
        let (id, bytes) = self.leaf.as_ref().filter(|(id, _)| *id == leaf)?;
        match tree.duplicates() {
            Duplicates::Multi => spans::find(tree, bytes, *id, index),
            _ => self.layout.quick(bytes, index).or_else(|| spans::find(tree, bytes, *id, index)),
        }
    }

    /// The (key, value) a span of the copy gives.
    #[inline]
    pub(super) fn entry(&self, span: Span) -> (&[u8], &[u8]) {
        span.of(self.leaf.as_ref().map_or(&[][..], |(_, bytes)| bytes))
    }

    #[inline(always)]
    fn bounded(&self) -> bool {
        !matches!((&self.lower, &self.upper), (Bound::Unbounded, Bound::Unbounded))
    }

    /// Whether the entry a span gives lies within the bounds.
    #[inline(always)]
    fn span_within(&self, tree: &BTree, span: Span) -> bool {
        // An unbounded scan, the common one, compares nothing.
        !self.bounded() || self.within_bounds(tree, self.entry(span).0)
    }

    /// The entry under the cursor, from the copy of its leaf: its span, or `None` past either
    /// end or outside the bounds.
    #[inline]
    pub(super) fn current_span(&mut self, tree: &BTree) -> Result<FromCopy<Option<Span>>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(None)) };
        let Some(span) = self.span(tree, leaf, index) else { return Ok(FromCopy::NeedsLock) };
        Ok(FromCopy::Done(self.span_within(tree, span).then_some(span)))
    }

    /// The common step of a scan, with nothing to report: the next entry's span when the
    /// quick decoding hands it out from the copy (see `spans`; the cursor not stale) within the
    /// bounds, the cursor moved onto it. `None` for everything else, the cursor not moved: the
    /// caller takes the general path, which answers it (and makes the errors, off this path).
    #[inline(always)]
    pub(super) fn next_span_quick(&mut self, tree: &BTree) -> Option<Span> {
        self.quick_span(tree, 1)
    }

    /// `current_span`'s common case, as `next_span_quick`: the span of the entry under the
    /// cursor when it lies in the copy within the bounds, else `None`.
    #[inline(always)]
    pub(super) fn current_span_quick(&mut self, tree: &BTree) -> Option<Span> {
        self.quick_span(tree, 0)
    }

    /// The span of the entry `ahead` (0 or 1) of the cursor's when the quick paths can hand it
    /// out, the cursor moved onto it. Each field is read once: this is most of a scan's step.
    #[inline(always)]
    fn quick_span(&mut self, tree: &BTree, ahead: usize) -> Option<Span> {
        if tree.version() != self.version || tree.duplicates() == Duplicates::Multi {
            return None;
        }
        let Position { leaf: Some((id, bytes)), stack, layout, lower, upper, .. } = self else { return None };
        let (leaf, index) = stack.last_mut()?;
        if *leaf != *id {
            return None;
        }
        let span = layout.quick(bytes, *index + ahead)?;
        if !matches!((&*lower, &*upper), (Bound::Unbounded, Bound::Unbounded))
            && !key_within(tree, lower, upper, span.of(bytes).0)
        {
            return None;
        }
        *index += ahead;
        Some(span)
    }

    /// `move_next`'s common case, with nothing to read: true when the next entry is in the
    /// copy and the cursor moved onto it (the caller checked the version).
    #[inline(always)]
    pub(super) fn next_quick(&mut self) -> bool {
        let Some((id, _)) = &self.leaf else { return false };
        match self.stack.last_mut() {
            Some((leaf, index)) if *leaf == *id && *index + 1 < self.layout.len => {
                *index += 1;
                true
            }
            _ => false,
        }
    }

    /// `move_next` then `current_span`, within the copy of the leaf. Moves only when it
    /// answers `Done`.
    #[inline]
    pub(super) fn next_span(&mut self, tree: &BTree) -> Result<FromCopy<Option<Span>>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(None)) };
        // The leaf's last entry has no next one in the copy: moving on needs the lock.
        let Some(span) = self.span(tree, leaf, index + 1) else { return Ok(FromCopy::NeedsLock) };
        self.stack.last_mut().expect("positioned").1 += 1;
        Ok(FromCopy::Done(self.span_within(tree, span).then_some(span)))
    }

    /// `current_with` from the copy of the leaf: an inline entry, handed to `f` where it lies
    /// in the copy. Decodes the one entry (a batch reads each leaf's last entry this way, and
    /// finding the leaf's spans would decode them all once more).
    pub(super) fn current_from_copy<R>(
        &self,
        tree: &BTree,
        f: impl FnOnce(&[u8], &[u8]) -> R,
    ) -> Result<FromCopy<Option<R>>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(None)) };
        let Some(page) = self.copy_of(leaf)? else { return Ok(FromCopy::NeedsLock) };
        // A value in its own node needs the lock.
        let (key, Value::Inline(v)) = page.leaf_entry(index)? else { return Ok(FromCopy::NeedsLock) };
        let (key, value) = user_entry(tree, key, v);
        Ok(FromCopy::Done(self.within_bounds(tree, key).then(|| f(key, value))))
    }

    /// `move_next` within the copy of the leaf.
    pub(super) fn next_within_copy(&mut self, tree: &BTree) -> Result<FromCopy<()>> {
        self.check(tree)?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(FromCopy::Done(())) };
        let next = self.leaf.as_ref().is_some_and(|(id, _)| *id == leaf) && index + 1 < self.layout.len;
        if !next {
            return Ok(FromCopy::NeedsLock);
        }
        self.stack.last_mut().expect("positioned").1 += 1;
        Ok(FromCopy::Done(()))
    }

    /// `move_next` then `current_with`, within the copy of the leaf: one version check for
    /// both. Moves only when it answers `Done`.
    pub(super) fn next_from_copy<R>(
        &mut self,
        tree: &BTree,
        f: impl FnOnce(&[u8], &[u8]) -> R,
    ) -> Result<FromCopy<Option<R>>> {
        Ok(match self.next_span(tree)? {
            FromCopy::Done(span) => FromCopy::Done(span.map(|s| {
                let (k, v) = self.entry(s);
                f(k, v)
            })),
            FromCopy::NeedsLock => FromCopy::NeedsLock,
        })
    }

    /// Hands `f` the inline entries of the copy of the leaf from the cursor's, moving past each
    /// one `f` takes, and stops before the leaf's last entry (moving past it needs the lock), at
    /// an entry outside the bounds or in its own node, or where `f` declines. Returns how many
    /// `f` took.
    pub(super) fn take_from_copy(&mut self, tree: &BTree, f: &mut impl FnMut(&[u8], &[u8]) -> bool) -> Result<usize> {
        self.check(tree)?;
        let Some(&(leaf, start)) = self.stack.last() else { return Ok(0) };
        let Some(page) = self.copy_of(leaf)? else { return Ok(0) };
        // Decided once per leaf: whether keys are composites to split, and
        // whether there are bounds to check (an unbounded scan, the common one, has none).
        let multi = tree.duplicates() == Duplicates::Multi;
        let bounded = self.bounded();
        let mut index = start;
        let bytes = page.as_bytes();
        while index + 1 < page.len() {
            let (key, value) = match page.leaf_inline_quick(index) {
                Some((key_at, key_len, value_at, value_len)) if !multi => {
                    (&bytes[key_at..][..key_len], &bytes[value_at..][..value_len])
                }
                _ => {
                    let (key, Value::Inline(v)) = page.leaf_entry(index)? else { break };
                    if multi {
                        split_composite(key)
                    } else {
                        (key, v)
                    }
                }
            };
            if (bounded && !self.within_bounds(tree, key)) || !f(key, value) {
                break;
            }
            index += 1;
        }
        self.stack.last_mut().expect("positioned").1 = index;
        Ok(index - start)
    }

    /// `move_prev` within the leaf (no page needed).
    pub(super) fn prev_within_leaf(&mut self, tree: &BTree) -> Result<FromCopy<()>> {
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
pub(super) fn descend_edge_in(
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
pub(super) fn user_entry<'a>(tree: &BTree, key: &'a [u8], value: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    if tree.duplicates() == Duplicates::Multi {
        return split_composite(key);
    }
    (key, value)
}

/// Whether `key` lies below a lower bound.
fn below(tree: &BTree, lower: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match lower {
        Bound::Unbounded => false,
        Bound::Included(l) => tree.cmp_keys(key, l) == std::cmp::Ordering::Less,
        Bound::Excluded(l) => tree.cmp_keys(key, l) != std::cmp::Ordering::Greater,
    }
}

/// Whether `key` lies above an upper bound.
fn above(tree: &BTree, upper: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match upper {
        Bound::Unbounded => false,
        Bound::Included(u) => tree.cmp_keys(key, u) == std::cmp::Ordering::Greater,
        Bound::Excluded(u) => tree.cmp_keys(key, u) != std::cmp::Ordering::Less,
    }
}

/// Whether `key` lies between the bounds.
fn key_within(tree: &BTree, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    !below(tree, lower, key) && !above(tree, upper, key)
}
