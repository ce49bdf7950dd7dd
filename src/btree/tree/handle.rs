//! The tree handle: its shared state, lock and version, and the checks every call makes.

use super::*;

/// The tree's root, height and entry count: its lock also orders every reader against the
/// writer (writers hold it exclusively while they change pages; see `cursor`).
pub(crate) struct State {
    pub root: u64,
    pub height: u32,
    pub entries: u64,
    /// The tree was dropped (`drop_tree`): its pages are freed, every call on it fails.
    pub dropped: bool,
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
}

impl BTree {
    pub fn page_bytes(&self) -> usize {
        self.inner.page_bytes
    }

    pub fn duplicates(&self) -> Duplicates {
        self.inner.duplicates
    }

    pub fn len(&self) -> u64 {
        self.inner.state.read().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn version(&self) -> u64 {
        self.inner.version.load(AtomicOrdering::Acquire)
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
        let st = self.inner.state.write();
        self.check_live(&st)?;
        Ok(st)
    }

    pub(super) fn check_live(&self, st: &State) -> Result<()> {
        if st.dropped {
            return Err(Error::BadHandle(format!(
                "B+ tree {:?} was dropped",
                String::from_utf8_lossy(&self.inner.anchor[ROOT_PREFIX.len()..])
            )));
        }
        Ok(())
    }

    /// Whether `n` entries are within the optional per-page ceiling.
    pub(crate) fn count_fits(&self, n: usize) -> bool {
        n <= self.inner.max_entries
    }

    /// THE fit test of this tree: the bytes (one accounting function) and the optional ceiling.
    pub(super) fn page_fits(&self, entries: &[Entry<'_>]) -> bool {
        self.count_fits(entries.len()) && page::fits(entries.iter().map(Entry::bytes).sum(), self.inner.page_bytes)
    }

    /// [`BTree::page_fits`] for entries of these sizes.
    pub(super) fn sizes_fit(&self, sizes: &[usize]) -> bool {
        self.count_fits(sizes.len()) && page::fits(sizes.iter().sum(), self.inner.page_bytes)
    }

    pub(crate) fn check_entry(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)
    }

    /// The state, shared: held across a scan so no writer changes the tree meanwhile.
    pub(crate) fn read_state(&self) -> Result<parking_lot::RwLockReadGuard<'_, State>> {
        let st = self.inner.state.read();
        self.check_live(&st)?;
        Ok(st)
    }

    /// The tree's store; `Closed` once the store is gone.
    pub fn store(&self) -> Result<Store> {
        self.inner.store.upgrade()
    }

    pub(super) fn check_key(&self, key: &[u8]) -> Result<()> {
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
