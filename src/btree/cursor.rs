//! Cursors: a root-to-leaf stack of positions, moving both ways. A cursor belongs to the
//! tree version it was positioned on; after any change to the tree it answers `StaleCursor`
//! until it is positioned again (`seek`, `first`, `last`).

use super::page::{PageRef, Payload, Value};
use super::tree::{split_composite, BTree, Duplicates};
use crate::error::{Error, Result};
use std::ops::Bound;

pub struct Cursor {
    tree: BTree,
    version: u64,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// (page id, position): for internal pages the child position (0 = leftmost), for the
    /// leaf the entry index. Empty when the cursor is past either end.
    stack: Vec<(u64, usize)>,
    /// A copy of the leaf under the cursor: moving within it takes no lock. Valid while the
    /// tree's version is the cursor's (every use checks it).
    leaf: Option<(u64, Vec<u8>)>,
}

impl Cursor {
    /// An unpositioned cursor; `current` is `None` until a seek.
    pub fn new(tree: &BTree) -> Cursor {
        Cursor {
            tree: tree.clone(),
            version: tree.version(),
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            stack: Vec::new(),
            leaf: None,
        }
    }

    /// Limits the cursor to keys between the bounds: `first` and `last` go to the first and
    /// last entry inside them, and `current` is `None` outside them.
    pub fn set_bounds(&mut self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) {
        self.lower = lower.map(<[u8]>::to_vec);
        self.upper = upper.map(<[u8]>::to_vec);
    }

    fn below_lower(&self, key: &[u8]) -> bool {
        match &self.lower {
            Bound::Unbounded => false,
            Bound::Included(l) => self.tree.cmp_keys(key, l) == std::cmp::Ordering::Less,
            Bound::Excluded(l) => self.tree.cmp_keys(key, l) != std::cmp::Ordering::Greater,
        }
    }

    fn above_upper(&self, key: &[u8]) -> bool {
        match &self.upper {
            Bound::Unbounded => false,
            Bound::Included(u) => self.tree.cmp_keys(key, u) == std::cmp::Ordering::Greater,
            Bound::Excluded(u) => self.tree.cmp_keys(key, u) != std::cmp::Ordering::Less,
        }
    }

    /// The entry under the cursor, bounds or not.
    fn raw_key(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.entry_unbounded()?.map(|(k, _)| k))
    }

    fn check(&self) -> Result<()> {
        if self.tree.version() != self.version {
            return Err(Error::StaleCursor("the tree changed since this cursor was positioned".into()));
        }
        Ok(())
    }

    fn child_at(&self, page: u64, pos: usize) -> Result<u64> {
        self.tree.with_page(page, |p| {
            if pos == 0 {
                return Ok(p.leftmost_child());
            }
            match p.entry(pos - 1)?.payload {
                Payload::Child(c) => Ok(c),
                Payload::Leaf(_) => {
                    Err(Error::corrupt(format!("B+ tree page {page:#x}"), 0, "leaf cell in an internal page"))
                }
            }
        })
    }

    fn page_len(&self, page: u64) -> Result<usize> {
        self.tree.with_page(page, |p| Ok(p.len()))
    }

    /// Descends from `page` (at depth `stack.len()`) to a leaf, always taking the first (or
    /// last) child. Leaves must sit exactly at the tree's height: a damaged child pointer
    /// (one that points back up, or to a page of the wrong level) is `Corrupt`, never a loop.
    fn descend_edge(&mut self, mut page: u64, last: bool) -> Result<()> {
        let height = self.tree.read_state().height as usize;
        loop {
            let (is_leaf, len) = self.tree.with_page(page, |p| Ok((p.is_leaf(), p.len())))?;
            if is_leaf != (self.stack.len() + 1 == height) {
                self.stack.clear();
                return Err(Error::corrupt(
                    format!("B+ tree page {page:#x}"),
                    0,
                    format!(
                        "a {} page at depth {} of a tree of height {height}",
                        if is_leaf { "leaf" } else { "internal" },
                        self.stack.len()
                    ),
                ));
            }
            if is_leaf {
                if len == 0 {
                    self.stack.clear(); // only an empty root leaf
                } else {
                    self.stack.push((page, if last { len - 1 } else { 0 }));
                }
                return Ok(());
            }
            let pos = if last { len } else { 0 };
            self.stack.push((page, pos));
            page = self.child_at(page, pos)?;
            if self.stack.len() > 64 {
                return Err(Error::corrupt(
                    format!("B+ tree page {page:#x}"),
                    0,
                    "the tree is deeper than any valid tree",
                ));
            }
        }
    }

    /// The first entry within the bounds.
    pub fn first(&mut self) -> Result<()> {
        match self.lower.clone() {
            Bound::Unbounded => {
                self.reset();
                let root = self.tree.read_state().root;
                self.descend_edge(root, false)
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

    /// The last entry within the bounds.
    pub fn last(&mut self) -> Result<()> {
        let upper = self.upper.clone();
        let at_end = |c: &mut Cursor| -> Result<()> {
            c.reset();
            let root = c.tree.read_state().root;
            c.descend_edge(root, true)
        };
        match upper {
            Bound::Unbounded => at_end(self),
            Bound::Included(u) | Bound::Excluded(u) => {
                self.seek(&u)?;
                // Past every pair equal to an included bound (a Multi tree has several).
                while self.raw_key()?.is_some_and(|k| !self.above_upper(&k)) {
                    self.move_next()?;
                }
                if self.stack.is_empty() {
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
        self.version = self.tree.version();
        self.stack.clear();
        self.leaf = None;
    }

    /// The leaf `id`, from the cursor's copy or read (and kept) now.
    fn leaf_page(&mut self, id: u64) -> Result<PageRef<'_>> {
        if self.leaf.as_ref().is_none_or(|(cached, _)| *cached != id) {
            let bytes = self.tree.read_page(id)?;
            self.leaf = Some((id, bytes));
        }
        let (_, bytes) = self.leaf.as_ref().expect("filled above");
        PageRef::parse(bytes, id)
    }

    /// Positions on the first entry whose key is >= `key` (past the end if none).
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.reset();
        let skey = match self.tree.duplicates() {
            Duplicates::Multi => {
                let mut c = (key.len() as u16).to_le_bytes().to_vec();
                c.extend_from_slice(key);
                c
            }
            _ => key.to_vec(),
        };
        let (root, height) = {
            let st = self.tree.read_state();
            (st.root, st.height)
        };
        let mut page = root;
        for _ in 1..height {
            let (pos, child) = self.tree.with_page(page, |p| {
                let (slot, child) = p.child_for(&skey, |a, b| self.tree.cmp_stored(a, b))?;
                Ok((slot.map_or(0, |s| s + 1), child))
            })?;
            self.stack.push((page, pos));
            page = child;
        }
        let (index, len) = self.tree.with_page(page, |p| {
            if !p.is_leaf() {
                return Err(Error::corrupt(format!("B+ tree page {page:#x}"), 0, "an internal page at the leaf level"));
            }
            let i = match p.search(&skey, |a, b| self.tree.cmp_stored(a, b))? {
                Ok(i) | Err(i) => i,
            };
            Ok((i, p.len()))
        })?;
        self.stack.push((page, index));
        if index >= len {
            self.stack.last_mut().expect("just pushed").1 = len.saturating_sub(1);
            if len == 0 {
                self.stack.clear();
                return Ok(());
            }
            return self.step_forward();
        }
        Ok(())
    }

    /// The entry under the cursor as (key, value), or `None` past either end or outside the
    /// bounds.
    pub fn current(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.entry_unbounded()?.filter(|(k, _)| !self.below_lower(k) && !self.above_upper(k)))
    }

    fn entry_unbounded(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.check()?;
        let Some(&(leaf, index)) = self.stack.last() else { return Ok(None) };
        let (key, value) = self.tree.with_page(leaf, |p| {
            let e = p.entry(index)?;
            let v = match e.payload {
                Payload::Leaf(Value::Inline(v)) => Ok(v.to_vec()),
                Payload::Leaf(Value::Overflow(id, len)) => Err((id, len)),
                Payload::Child(_) => {
                    return Err(Error::corrupt(format!("B+ tree page {leaf:#x}"), 0, "child cell in a leaf"))
                }
            };
            Ok((e.key.to_vec(), v))
        })?;
        let value = match value {
            Ok(v) => v,
            Err((id, len)) => self.tree.read_overflow(id, len)?,
        };
        if self.tree.duplicates() == Duplicates::Multi {
            let (k, v) = split_composite(&key);
            return Ok(Some((k.to_vec(), v.to_vec())));
        }
        Ok(Some((key, value)))
    }

    pub fn move_next(&mut self) -> Result<()> {
        self.check()?;
        if self.stack.is_empty() {
            return Ok(());
        }
        self.step_forward()
    }

    fn step_forward(&mut self) -> Result<()> {
        let (leaf, index) = *self.stack.last().expect("positioned");
        if index + 1 < self.leaf_page(leaf)?.len() {
            self.stack.last_mut().expect("positioned").1 += 1;
            return Ok(());
        }
        self.stack.pop();
        while let Some(&(page, pos)) = self.stack.last() {
            if pos < self.page_len(page)? {
                self.stack.last_mut().expect("non-empty").1 = pos + 1;
                let child = self.child_at(page, pos + 1)?;
                return self.descend_edge(child, false);
            }
            self.stack.pop();
        }
        Ok(())
    }

    pub fn move_prev(&mut self) -> Result<()> {
        self.check()?;
        let Some(&(_, index)) = self.stack.last() else { return Ok(()) };
        if index > 0 {
            self.stack.last_mut().expect("positioned").1 -= 1;
            return Ok(());
        }
        self.stack.pop();
        while let Some(&(page, pos)) = self.stack.last() {
            if pos > 0 {
                self.stack.last_mut().expect("non-empty").1 = pos - 1;
                let child = self.child_at(page, pos - 1)?;
                return self.descend_edge(child, true);
            }
            self.stack.pop();
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

    /// Calls `f` for each entry between the bounds until it returns false.
    pub fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut cur = Cursor::new(self);
        cur.set_bounds(lower, upper);
        cur.first()?;
        while let Some((k, v)) = cur.current()? {
            if !f(&k, &v) {
                break;
            }
            cur.move_next()?;
        }
        Ok(())
    }
}
