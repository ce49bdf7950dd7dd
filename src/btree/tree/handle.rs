//! The tree handle: its shared state, lock and version, and the checks every call makes.

use super::*;

/// The tree's root, height and entry count: its lock also orders every reader against the
/// writer (writers hold it exclusively while they change pages; see `cursor`).
pub(crate) struct State {
    pub root: u64,
    pub height: u32,
    pub entries: u64,
    /// The tree was dropped (`drop_tree`), or created since the last commit and thrown away
    /// by an abort: every call on it fails.
    pub dropped: bool,
    /// Where the last write edited a leaf in place (writers only; see `hint.rs`).
    pub hint: LeafHint,
}

pub(super) struct Inner {
    pub(super) store: WeakStore,
    pub(super) anchor: Vec<u8>,
    pub(super) page_bytes: usize,
    pub(super) duplicates: Duplicates,
    pub(super) custom_order: Option<Comparator>,
    pub(super) max_entries: usize,
    pub(super) state: RwLock<State>,
    /// Changes with every modification (under the state lock); cursors check it.
    pub(super) version: AtomicU64,
}

/// A B+ tree in a store. Cloning is cheap and shares the tree.
#[derive(Clone)]
pub struct BTree {
    pub(super) inner: Arc<Inner>,
    /// Set for the tree as a snapshot sees it (see [`BTree::at`]).
    pub(super) view: Option<Arc<View>>,
}

/// A tree as of a snapshot's commit: the snapshot's view of the store, and the tree's root,
/// height and count then. Nothing changes it, so its lock is never held exclusively and its
/// cursors never go stale.
pub(super) struct View {
    store: Store,
    state: RwLock<State>,
}

impl BTree {
    pub fn page_bytes(&self) -> usize {
        self.inner.page_bytes
    }

    pub fn duplicates(&self) -> Duplicates {
        self.inner.duplicates
    }

    pub fn len(&self) -> u64 {
        self.state_lock().read().entries
    }

    /// The tree as `snapshot` sees it: gets, cursors, `len`, `stats` and `verify` read the
    /// snapshot's commit, whatever the writer does meanwhile, and its cursors never go stale;
    /// writes through it answer `ReadOnly`. `NotFound` when the tree did not exist at that
    /// commit.
    pub fn at(&self, snapshot: &Snapshot) -> Result<BTree> {
        let store = snapshot.store().clone();
        if !self.inner.store.is(&store) {
            return Err(Error::BadHandle("the snapshot is of another store than the tree".into()));
        }
        let root = store.get_root(&self.inner.anchor)?.ok_or_else(|| {
            Error::NotFound(format!(
                "B+ tree {:?} did not exist at epoch {}",
                String::from_utf8_lossy(self.name()),
                snapshot.epoch()
            ))
        })?;
        let d = decode_anchor(self.name(), root.id, &root.meta)?;
        let state =
            State { root: root.id, height: d.height, entries: d.entries, dropped: false, hint: LeafHint::default() };
        Ok(BTree { inner: self.inner.clone(), view: Some(Arc::new(View { store, state: RwLock::new(state) })) })
    }

    /// The tree's name (its anchor without the prefix).
    pub(super) fn name(&self) -> &[u8] {
        &self.inner.anchor[ROOT_PREFIX.len()..]
    }

    /// The lock of the state this handle reads: the tree's own, or its snapshot view's.
    fn state_lock(&self) -> &RwLock<State> {
        match &self.view {
            Some(v) => &v.state,
            None => &self.inner.state,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot's tree never changes: its version is a constant, so its cursors stay valid.
    pub(crate) fn version(&self) -> u64 {
        match self.view {
            Some(_) => 0,
            None => self.inner.version.load(AtomicOrdering::Acquire),
        }
    }

    pub(super) fn bump_version(&self) {
        self.inner.version.fetch_add(1, AtomicOrdering::AcqRel);
    }

    pub(crate) fn bump_version_locked(&self) {
        self.bump_version();
    }

    /// Makes every cursor on this tree stale (a handle to it was closed).
    pub fn invalidate_cursors(&self) {
        let _st = self.inner.state.write();
        self.bump_version();
    }

    /// The state, exclusively; `BadHandle` once the tree was dropped.
    pub(crate) fn write_state(&self) -> Result<parking_lot::RwLockWriteGuard<'_, State>> {
        if self.view.is_some() {
            return Err(Error::ReadOnly);
        }
        let st = self.inner.state.write();
        self.check_live(&st)?;
        Ok(st)
    }

    pub(super) fn check_live(&self, st: &State) -> Result<()> {
        if st.dropped {
            return Err(Error::BadHandle(format!(
                "B+ tree {:?} is gone (dropped, or created after the last commit and aborted): open it again",
                String::from_utf8_lossy(&self.inner.anchor[ROOT_PREFIX.len()..])
            )));
        }
        Ok(())
    }

    /// Whether `n` entries are within the optional per-page ceiling.
    pub(crate) fn count_fits(&self, n: usize) -> bool {
        n <= self.inner.max_entries
    }

    /// THE fit test of this tree: `n` entries of `bytes` in all (one accounting function) fit
    /// a page and the optional ceiling.
    pub(super) fn fits(&self, n: usize, bytes: usize) -> bool {
        self.count_fits(n) && page::fits(bytes, self.inner.page_bytes)
    }

    /// [`BTree::fits`] for these cells.
    pub(super) fn cells_fit(&self, cells: &[Cell<'_>]) -> bool {
        self.fits(cells.len(), cells.iter().map(Cell::bytes).sum())
    }

    pub(crate) fn check_entry(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)
    }

    /// The state, shared: held across a scan so no writer changes the tree meanwhile.
    pub(crate) fn read_state(&self) -> Result<parking_lot::RwLockReadGuard<'_, State>> {
        let st = self.state_lock().read();
        self.check_live(&st)?;
        Ok(st)
    }

    /// The tree's store; `Closed` once the store is gone.
    /// For a snapshot's tree, the snapshot's view of the store.
    pub fn store(&self) -> Result<Store> {
        match &self.view {
            Some(v) => Ok(v.store.clone()),
            None => self.inner.store.upgrade(),
        }
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = max_key_bytes(self.inner.page_bytes as u32);
        if key.len() > max {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes; with {}-byte pages at most {max}",
                key.len(),
                self.inner.page_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = match self.inner.duplicates {
            Duplicates::Multi => max_inline_value_bytes(self.inner.page_bytes as u32),
            _ => VALUE_BYTES_MAX,
        };
        if value.len() > max {
            return Err(Error::TooLarge(format!("value of {} bytes; at most {max} in this tree", value.len())));
        }
        Ok(())
    }
}
