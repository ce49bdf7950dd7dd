//! The leaf hint: where the last write edited a leaf in place, so that the next write to the
//! same leaf (ascending removes, sorted inserts) skips the descent from the root.
//!
//! A hint is taken only after an in-place edit of one leaf (no page split, merged or
//! shifted, no separator changed), and it holds only while the tree's version is the one it
//! was taken at: every change of the tree bumps the version (every insert and remove, a bulk
//! load, an abort, a drop), so a hint never outlives the structure it describes, and the next
//! in-place write takes a new one. The leaf's contents are read again on every use; only its
//! place in the tree (its id and path) is remembered. A key goes to the hinted leaf only when
//! its place there is certain: it is one of the leaf's keys, or lies between its first and
//! last, or beyond an end of it at that edge of the tree. Otherwise the write descends from
//! the root. A bytewise key is ruled out before the leaf is read when its prefix word lies
//! outside the words of the separators around the path (a write elsewhere in the tree pays a
//! comparison or two for the hint).
//!
//! The path lives in one buffer a write borrows ([`LeafHint::lend`]) and gives back
//! ([`LeafHint::give_back`]): a write neither zeroes a path of its own nor copies one.

use super::*;

/// The leaf the last write edited in place and the path to it (see the module's comment).
#[derive(Default)]
pub(crate) struct LeafHint {
    /// The tree's version the hint holds at; `None`: no hint. Set only while `path` holds
    /// the path to `leaf`.
    version: Option<u64>,
    leaf: u64,
    /// The path buffer, out while a write has it.
    path: Option<Box<Path>>,
}

/// The path buffer a write borrowed from the hint: the hinted path while the hint holds.
pub(crate) struct HintPath(Box<Path>);

impl std::ops::Deref for HintPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl LeafHint {
    /// The path buffer, for a write's descent ([`BTree::descend_for_write`]).
    pub(super) fn lend(&mut self) -> HintPath {
        match self.path.take() {
            Some(path) => HintPath(path),
            None => {
                self.version = None; // no buffer, no path in it
                HintPath(Box::default())
            }
        }
    }

    /// Takes the buffer back after a write; `edited` is the leaf the write edited in place
    /// (its path the buffer's), which [`LeafHint::hold_at`] puts in force once the write has
    /// bumped the tree's version. Any other write leaves no hint.
    pub(super) fn give_back(&mut self, path: HintPath, edited: Option<u64>) {
        self.version = None;
        self.leaf = edited.unwrap_or(0);
        self.path = Some(path.0);
    }

    /// Puts the leaf the last write edited in place in force at `version`.
    pub(super) fn hold_at(&mut self, version: u64) {
        self.version = Some(version);
    }
}

impl BTree {
    /// A write's descent (inserts and removes): through the state's hint when it holds and
    /// the key's place is certainly its leaf, else from the root. Fills `path` and returns
    /// what [`BTree::descend_in`] does.
    pub(super) fn descend_for_write<'a>(
        &self,
        pages: &PageReader<'_, 'a>,
        st: &State,
        skey: &[u8],
        path: &mut HintPath,
    ) -> Result<Descent<'a>> {
        let probe = self.probe(skey);
        if let Some(descent) = self.descend_hinted(pages, st, &probe, path)? {
            return Ok(descent);
        }
        path.0.clear();
        self.descend_in(pages, st, &probe, &mut path.0)
    }

    /// The hinted leaf's descent, `None` when the hint does not hold for `probe`: `path` is
    /// the buffer lent by the hint, so it holds the hinted path whenever the hint holds.
    #[inline(always)]
    fn descend_hinted<'a>(
        &self,
        pages: &PageReader<'_, 'a>,
        st: &State,
        probe: &Probe<'_>,
        path: &HintPath,
    ) -> Result<Option<Descent<'a>>> {
        let hint = &st.hint;
        if hint.version != Some(self.inner.version.load(AtomicOrdering::Acquire))
            || probe.word_outside(path.word_bounds())
        {
            return Ok(None);
        }
        // A leaf that cannot be read is left to the descent, which reports it as it finds it.
        let Ok(leaf) = pages.page(hint.leaf) else { return Ok(None) };
        if !leaf.is_leaf() {
            return Ok(None);
        }
        let n = leaf.len();
        let (leftmost, rightmost) = (path.leftmost(), path.rightmost());
        let found = match n {
            0 if leftmost && rightmost => Err(0),
            0 => return Ok(None),
            _ => match probe.cmp_entry(&leaf, 0)? {
                Ordering::Equal => Ok(0),
                Ordering::Greater if leftmost => Err(0),
                Ordering::Greater => return Ok(None),
                Ordering::Less => match probe.cmp_entry(&leaf, n - 1)? {
                    Ordering::Equal => Ok(n - 1),
                    Ordering::Less if rightmost => Err(n),
                    Ordering::Less => return Ok(None),
                    Ordering::Greater => probe.find_in(&leaf)?,
                },
            },
        };
        Ok(Some((hint.leaf, found, leaf)))
    }
}
