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
//!
//! The module's parts: `position` (where a cursor is, and what it can do from its copy of
//! the leaf without the lock), `held` (the moves made under the lock).

mod held;
mod position;
mod spans;
#[cfg(test)]
pub(crate) mod tests;

use held::Held;
use position::{descend_edge_in, user_entry};
use position::{FromCopy, Position};

use super::page::{PageRef, Value};
use super::tree::{split_composite, BTree, Duplicates, State};
use crate::error::{Error, Result};
use std::ops::Bound;

pub struct Cursor {
    tree: BTree,
    at: Position,
    /// The entry `current_entry` or `next_entry` handed out last, when it could not be handed
    /// out where it lies (a value in its own node): (key, value).
    spill: (Vec<u8>, Vec<u8>),
}

/// Where an entry handed out in place lies.
enum Placed {
    Copy(spans::Span),
    Spill,
}

impl Cursor {
    /// An unpositioned cursor; `current` is `None` until a seek.
    pub fn new(tree: &BTree) -> Cursor {
        Cursor {
            tree: tree.clone(),
            at: Position::new(tree.version(), Bound::Unbounded, Bound::Unbounded),
            spill: (Vec::new(), Vec::new()),
        }
    }

    /// Limits the cursor to keys between the bounds: `first` and `last` go to the first and
    /// last entry inside them, and `current` is `None` outside them.
    pub fn set_bounds(&mut self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Result<()> {
        // A bound longer than any key the tree takes is refused before it is copied: its
        // length may be a host's mistake too large to allocate.
        for b in [lower, upper] {
            if let Bound::Included(k) | Bound::Excluded(k) = b {
                self.tree.check_key(k)?;
            }
        }
        self.at.lower = lower.map(<[u8]>::to_vec);
        self.at.upper = upper.map(<[u8]>::to_vec);
        Ok(())
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

    /// Positions on the first entry whose key is >= `key` (past the end if none). A key longer
    /// than the tree takes is `InvalidArgument`, as for `get` and `set_bounds`; the cursor
    /// does not move.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.tree.check_key(key)?;
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

    #[inline]
    pub fn move_next(&mut self) -> Result<()> {
        if self.tree.version() == self.at.version && self.at.next_quick() {
            return Ok(());
        }
        self.move_next_general()
    }

    #[inline(never)]
    fn move_next_general(&mut self) -> Result<()> {
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

    /// The entry under the cursor as (key, value), or `None` past either end or outside the
    /// bounds, in place: the slices lie in the cursor (its copy of the leaf, or a copy of an
    /// entry whose value is in its own node), unchanged until the cursor's next call. What
    /// `current_with` does, without a copy for the caller to make.
    #[inline]
    pub fn current_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if let Some(span) = self.at.current_span_quick(&self.tree) {
            return Ok(Some(self.at.entry(span)));
        }
        self.current_entry_general()
    }

    #[inline(never)]
    fn current_entry_general(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let placed = match self.at.current_span(&self.tree)? {
            FromCopy::Done(span) => span.map(Placed::Copy),
            FromCopy::NeedsLock => {
                let st = self.tree.read_state()?;
                placed_under(&mut Held { tree: &self.tree, st: &st, at: &mut self.at }, &mut self.spill)?
            }
        };
        Ok(placed.map(|p| self.placed(p)))
    }

    /// Moves to the next entry and returns it as `current_entry` does: `move_next` then
    /// `current_entry` in one call, as LMDB's `MDB_NEXT`.
    #[inline]
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if let Some(span) = self.at.next_span_quick(&self.tree) {
            return Ok(Some(self.at.entry(span)));
        }
        self.next_entry_general()
    }

    #[inline(never)]
    fn next_entry_general(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let placed = match self.at.next_span(&self.tree)? {
            FromCopy::Done(span) => span.map(Placed::Copy),
            FromCopy::NeedsLock => {
                // The move and the read under one hold: they see one version of the tree.
                let st = self.tree.read_state()?;
                let mut h = Held { tree: &self.tree, st: &st, at: &mut self.at };
                h.move_next()?;
                placed_under(&mut h, &mut self.spill)?
            }
        };
        Ok(placed.map(|p| self.placed(p)))
    }

    #[inline]
    fn placed(&self, p: Placed) -> (&[u8], &[u8]) {
        match p {
            Placed::Copy(span) => self.at.entry(span),
            Placed::Spill => (&self.spill.0, &self.spill.1),
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

/// Where the entry under a held cursor lies: in the copy of its leaf (read now if needed), or,
/// with its value in its own node, copied into `spill`.
fn placed_under(h: &mut Held<'_>, spill: &mut (Vec<u8>, Vec<u8>)) -> Result<Option<Placed>> {
    // Copies the leaf first (a positioning call leaves that to the first read): an inline
    // entry is then handed out where it lies, as every next one in the leaf is.
    h.copy_current_leaf()?;
    if let FromCopy::Done(span) = h.at.current_span(h.tree)? {
        return Ok(span.map(Placed::Copy));
    }
    let taken = h.current_with(|k, v| {
        spill.0.clear();
        spill.0.extend_from_slice(k);
        spill.1.clear();
        spill.1.extend_from_slice(v);
    })?;
    Ok(taken.map(|()| Placed::Spill))
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
