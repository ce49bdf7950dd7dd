//! `BTree`: a B+ tree whose pages are store nodes, and whose every size decision comes from
//! the bytes entries really use ([`page::entry_bytes`]).
//!
//! Writers hold the tree's lock exclusively and change pages through a [`Plan`] (or, on the
//! insert's in-place paths, in the same order): every new page is allocated and every changed
//! page given its copy-on-write shadow before any page is written, so an operation that fails
//! leaves the tree exactly as it was. Changes are
//! durable with the store's next commit. Readers hold the lock shared.

mod dropping;
mod overflow;

pub use dropping::drop_tree;

use super::page::{self, prefix_word, Cell, Entry, PageRef, Payload, Value, TYPE_INTERNAL, TYPE_LEAF};
use super::split::{internal_split_point, leaf_split_point, shortest_separator, Edge};
use crate::error::{Error, Result};
use crate::store::{AbortGuard, AbortHook, NodeEditor, NodeId, Store, WeakStore};
use parking_lot::RwLock;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

/// A key order: must be a total order (`verify` detects one that is not).
pub type Comparator = Arc<dyn Fn(&[u8], &[u8]) -> Ordering + Send + Sync>;

/// What inserting an existing key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// `DuplicateKey` error; the tree is unchanged. (The numbers are stored in anchors.)
    Unique = 0,
    /// The new value replaces the old one (Kizuna's non-unique index).
    Overwrite = 1,
    /// One entry per (key, value) pair, ordered by key then value bytes: a true non-unique
    /// index. Values are limited to [`max_inline_value_bytes`].
    Multi = 2,
}

#[derive(Clone)]
pub struct TreeOptions {
    /// A power of two from 512 to 65536.
    pub page_bytes: u32,
    pub duplicates: Duplicates,
    /// `None`: bytewise order, shorter first on a common prefix.
    pub comparator: Option<Comparator>,
    /// An optional ceiling on entries per page (Kizuna's BTREE_MAX_KEYS kept as a safety
    /// net). Bytes decide every split; the ceiling only caps how many entries fit. Not stored
    /// with the tree: it applies to the pages this handle writes.
    pub max_entries_per_page: Option<u32>,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions { page_bytes: 4096, duplicates: Duplicates::Unique, comparator: None, max_entries_per_page: None }
    }
}

pub const PAGE_BYTES_MIN: u32 = 512;
pub const PAGE_BYTES_MAX: u32 = 65536;
/// The deepest a tree grows (the C ABI's `PCORE_TREE_DEPTH_MAX`); a corrupt child pointer
/// that forms a cycle must not loop forever.
pub const DEPTH_MAX: usize = 32;
/// Store node kinds of the tree's nodes (hosts use kinds below 0x40).
pub const KIND_LEAF: u8 = 0x41;
pub const KIND_INTERNAL: u8 = 0x42;
pub const KIND_OVERFLOW: u8 = 0x43;
/// The named root under which a tree's anchor lives: this prefix, then the tree's name.
pub const ROOT_PREFIX: &[u8] = b"btree:";

/// Values up to this many bytes live in the leaf; larger ones in their own store node.
pub fn max_inline_value_bytes(page_bytes: u32) -> usize {
    page_bytes as usize / 16
}

/// The longest key a tree with this page size takes. Any entry (leaf or internal, in any
/// duplicates mode) then needs at most a quarter of a page, so every page holds at least
/// four entries and a split always finds two halves that fit. The largest is a Multi
/// tree's separator: a 10-byte slot, a 2-byte length, the key with its own 2-byte length and
/// the largest inline value, and the child's 8-byte id. 4 KiB pages: 742 bytes.
pub fn max_key_bytes(page_bytes: u32) -> usize {
    page::capacity(page_bytes as usize) / 4 - 22 - max_inline_value_bytes(page_bytes)
}

/// Largest value: its length is stored in 32 bits, and it lives in one store node.
pub const VALUE_BYTES_MAX: usize = u32::MAX as usize;

/// The tree's root, height and entry count: its lock also orders every reader against the
/// writer (writers hold it exclusively while they change pages; see `cursor`).
pub(crate) struct State {
    pub root: u64,
    pub height: u32,
    pub entries: u64,
    /// The tree was dropped (`drop_tree`): its pages are freed, every call on it fails.
    pub dropped: bool,
}

struct Inner {
    store: WeakStore,
    anchor: Vec<u8>,
    page_bytes: usize,
    duplicates: Duplicates,
    custom_order: Option<Comparator>,
    max_entries: usize,
    state: RwLock<State>,
    /// Changes with every modification (under the state lock); cursors check it.
    version: AtomicU64,
}

/// A B+ tree in a store. Cloning is cheap and shares the tree.
#[derive(Clone)]
pub struct BTree {
    inner: Arc<Inner>,
}

/// Bytewise order, shorter first on a common prefix (`<[u8]>::cmp`). Keys that differ in
/// their first eight bytes (most, in a search; separators are often shorter) are told apart
/// by one integer comparison instead of a call to memcmp. Zero-padding a short key keeps the
/// order: where the padded prefixes differ, the first difference is a real byte, or a pad
/// below a real non-zero byte of a longer key, which the slice order also puts first.
#[inline]
pub(crate) fn bytewise(a: &[u8], b: &[u8]) -> Ordering {
    let (x, y) = (prefix_word(a), prefix_word(b));
    if x != y {
        return x.cmp(&y);
    }
    a.cmp(b)
}

/// A stored key searched for. In a bytewise tree (no comparator, not Multi) its first eight
/// bytes are read once, and most probes are told apart from a page's keys by one integer
/// comparison; other trees compare through [`BTree::cmp_stored`].
pub(crate) struct Probe<'k> {
    key: &'k [u8],
    word: u64,
    /// The tree whose order to use; `None` for bytewise order.
    tree: Option<&'k BTree>,
}

impl Probe<'_> {
    /// Where the probe is in a page (`Ok(i)`: entry i's key equals it; `Err(i)`: it would go
    /// at i). A bytewise probe reads each key's word from its cell without slicing the key.
    #[inline(always)]
    pub(crate) fn find_in(&self, page: &PageRef<'_>) -> Result<std::result::Result<usize, usize>> {
        match self.tree {
            None => page.search_bytewise(self.word, self.key),
            Some(tree) => page.search(|k| tree.cmp_stored(k, self.key)),
        }
    }

    /// The child of an internal page the probe belongs to, as [`PageRef::child_for`].
    #[inline(always)]
    pub(crate) fn child_in(&self, page: &PageRef<'_>) -> Result<(Option<usize>, u64)> {
        match self.tree {
            None => page.child_for_bytewise(self.word, self.key),
            Some(tree) => page.child_for(|k| tree.cmp_stored(k, self.key)),
        }
    }
}

/// Anchor metadata, kept as the named root's meta bytes (the root's id is the root page):
/// u32 magic "PCBT", u8 version, u8 duplicates, u8 custom order, u8 log2(page bytes),
/// u32 height, u32 0, u64 entries.
const ANCHOR_MAGIC: &[u8; 4] = b"PCBT";
/// The tree format: 2 since internal slots record their separators' prefix words (format 1
/// trees, without them, are refused: dump them with the pcore that wrote them and load them).
const ANCHOR_VERSION: u8 = 2;
const ANCHOR_BYTES: usize = 24;

fn encode_anchor(page_bytes: usize, dup: Duplicates, custom: bool, st: &State) -> [u8; ANCHOR_BYTES] {
    let mut m = [0u8; ANCHOR_BYTES];
    m[..4].copy_from_slice(ANCHOR_MAGIC);
    m[4..8].copy_from_slice(&[ANCHOR_VERSION, dup as u8, custom as u8, page_bytes.trailing_zeros() as u8]);
    m[8..12].copy_from_slice(&st.height.to_le_bytes());
    m[16..24].copy_from_slice(&st.entries.to_le_bytes());
    m
}

/// What a tree's anchor records: enough to open it without knowing how it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDescription {
    pub name: Vec<u8>,
    pub root_page: u64,
    pub page_bytes: u32,
    pub duplicates: Duplicates,
    /// Created with a comparator: only a handle that supplies it can order the keys.
    pub custom_order: bool,
    pub height: u32,
    pub entries: u64,
}

fn decode_anchor(name: &[u8], root_page: u64, m: &[u8]) -> Result<TreeDescription> {
    let bad = |what: &str| Error::corrupt(format!("B+ tree {:?} anchor", String::from_utf8_lossy(name)), 0, what);
    if m.len() != ANCHOR_BYTES || &m[..4] != ANCHOR_MAGIC {
        return Err(bad("not a B+ tree anchor"));
    }
    if m[4] != ANCHOR_VERSION {
        return Err(Error::VersionMismatch(format!(
            "B+ tree {:?} has format {}; this pcore reads format {ANCHOR_VERSION} (dump the tree with the pcore that wrote it, then load it with this one)",
            String::from_utf8_lossy(name),
            m[4]
        )));
    }
    let duplicates = match m[5] {
        0 => Duplicates::Unique,
        1 => Duplicates::Overwrite,
        2 => Duplicates::Multi,
        _ => return Err(bad("unknown duplicates mode")),
    };
    let page_bytes = 1u64 << m[7].min(63);
    if !(u64::from(PAGE_BYTES_MIN)..=u64::from(PAGE_BYTES_MAX)).contains(&page_bytes) {
        return Err(bad("page size out of range"));
    }
    let height = u32::from_le_bytes(m[8..12].try_into().expect("4 bytes"));
    if height == 0 || height as usize > DEPTH_MAX {
        return Err(bad("height out of range"));
    }
    Ok(TreeDescription {
        name: name.to_vec(),
        root_page,
        page_bytes: page_bytes as u32,
        duplicates,
        custom_order: m[6] != 0,
        height,
        entries: u64::from_le_bytes(m[16..24].try_into().expect("8 bytes")),
    })
}

/// Every tree in `store` as its anchor describes it (as last set, committed or not), in name
/// order.
pub fn list_trees(store: &Store) -> Result<Vec<TreeDescription>> {
    let mut out = Vec::new();
    for anchor in store.root_names()?.into_iter().filter(|n| n.starts_with(ROOT_PREFIX)) {
        if let Some(root) = store.get_root(&anchor)? {
            out.push(decode_anchor(&anchor[ROOT_PREFIX.len()..], root.id, &root.meta)?);
        }
    }
    Ok(out)
}

/// The tree's state as the store has it: from its anchor root, checked against the options
/// it is opened with, or, when the store has no such tree, a new empty root leaf (uncommitted).
fn state_in_store(store: &Store, anchor: &[u8], pb: usize, duplicates: Duplicates, custom: bool) -> Result<State> {
    let name = &anchor[ROOT_PREFIX.len()..];
    match store.get_root(anchor)? {
        Some(root) => {
            let d = decode_anchor(name, root.id, &root.meta)?;
            if d.page_bytes != pb as u32 || d.duplicates != duplicates || d.custom_order != custom {
                return Err(Error::InvalidArgument(format!(
                    "tree {:?} was created with {}-byte pages, {:?} duplicates, custom order {}",
                    String::from_utf8_lossy(name),
                    d.page_bytes,
                    d.duplicates,
                    d.custom_order
                )));
            }
            Ok(State { root: root.id, height: d.height, entries: d.entries, dropped: false })
        }
        None => {
            let (id, _, _) = store.allocate(pb, KIND_LEAF)?;
            let mut image = vec![0u8; pb];
            page::build(&mut image, TYPE_LEAF, 0, &[]);
            store.publish(id, &image)?;
            let st = State { root: id.raw(), height: 1, entries: 0, dropped: false };
            store.set_root(anchor, id.raw(), &encode_anchor(pb, duplicates, custom, &st))?;
            Ok(st)
        }
    }
}

/// A tree's part in [`Store::abort`]: its state lock is held while the store rolls back,
/// then its root, height and count are read again from its committed anchor (a tree created
/// since the commit gets a new empty root) and its cursors go stale.
impl AbortHook for Inner {
    fn begin_abort(&self) -> Box<dyn AbortGuard + '_> {
        Box::new(Reload { inner: self, state: self.state.write() })
    }
}

struct Reload<'a> {
    inner: &'a Inner,
    state: parking_lot::RwLockWriteGuard<'a, State>,
}

impl AbortGuard for Reload<'_> {
    fn reload(&mut self, store: &Store) -> Result<()> {
        let i = self.inner;
        // A dropped instance stays dropped (its handles answer `BadHandle`): it left the
        // store's attachments, and an abort that brings the tree back must not make a second
        // live instance of it beside the one a later open makes.
        if !self.state.dropped {
            *self.state = state_in_store(store, &i.anchor, i.page_bytes, i.duplicates, i.custom_order.is_some())?;
        }
        i.version.fetch_add(1, AtomicOrdering::AcqRel);
        Ok(())
    }
}

impl BTree {
    /// Opens an existing tree with the page size and duplicates mode it was created with.
    /// `NotFound` when there is no such tree; `InvalidArgument` when it was created with a
    /// comparator (which only its host can supply).
    pub fn open_existing(store: &Store, name: &[u8]) -> Result<BTree> {
        let Some(d) = list_trees(store)?.into_iter().find(|d| d.name == name) else {
            return Err(Error::NotFound(format!("no B+ tree named {:?}", String::from_utf8_lossy(name))));
        };
        if d.custom_order {
            return Err(Error::InvalidArgument(format!(
                "tree {:?} orders its keys with its host's comparator",
                String::from_utf8_lossy(name)
            )));
        }
        let options = TreeOptions { page_bytes: d.page_bytes, duplicates: d.duplicates, ..TreeOptions::default() };
        BTree::open(store, name, &options)
    }

    /// Opens the tree `name` in `store`, creating it (an empty leaf as root) when the store
    /// holds none; a created tree is durable at the store's next commit. An existing tree
    /// keeps its page size and duplicates mode; `options` must name the same ones and supply a
    /// comparator exactly when the tree was created with one.
    pub fn open(store: &Store, name: &[u8], options: &TreeOptions) -> Result<BTree> {
        let mut anchor = ROOT_PREFIX.to_vec();
        anchor.extend_from_slice(name);
        // One instance per tree and store: every handle shares its lock and cached root.
        let inner = store.attachment(&anchor, || {
            let inner = Arc::new(Self::load(store, &anchor, options)?);
            store.on_abort(Arc::downgrade(&inner) as std::sync::Weak<dyn AbortHook>);
            Ok(inner)
        })?;
        let custom = options.comparator.is_some();
        if inner.page_bytes != options.page_bytes as usize
            || inner.duplicates != options.duplicates
            || inner.custom_order.is_some() != custom
        {
            return Err(Error::InvalidArgument(format!(
                "tree {:?} is open with {}-byte pages, {:?} duplicates, custom order {}",
                String::from_utf8_lossy(name),
                inner.page_bytes,
                inner.duplicates,
                inner.custom_order.is_some()
            )));
        }
        Ok(BTree { inner })
    }

    fn load(store: &Store, anchor: &[u8], options: &TreeOptions) -> Result<Inner> {
        let pb = options.page_bytes;
        if !pb.is_power_of_two() || !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&pb) {
            return Err(Error::InvalidArgument(format!("page size {pb}: a power of two from 512 to 65536")));
        }
        let custom = options.comparator.is_some();
        let state = state_in_store(store, anchor, pb as usize, options.duplicates, custom)?;
        Ok(Inner {
            store: store.downgrade(),
            anchor: anchor.to_vec(),
            page_bytes: pb as usize,
            duplicates: options.duplicates,
            custom_order: options.comparator.clone(),
            max_entries: options.max_entries_per_page.map_or(usize::MAX, |n| (n as usize).max(4)),
            state: RwLock::new(state),
            version: AtomicU64::new(0),
        })
    }

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

    fn bump_version(&self) {
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

    fn check_live(&self, st: &State) -> Result<()> {
        if st.dropped {
            return Err(Error::BadHandle(format!(
                "B+ tree {:?} was dropped",
                String::from_utf8_lossy(&self.inner.anchor[ROOT_PREFIX.len()..])
            )));
        }
        Ok(())
    }

    pub(crate) fn save_anchor_locked(&self, st: &State) -> Result<()> {
        self.store()?.set_root(&self.inner.anchor, st.root, &self.anchor_meta(st))
    }

    /// Whether `n` entries are within the optional per-page ceiling.
    pub(crate) fn count_fits(&self, n: usize) -> bool {
        n <= self.inner.max_entries
    }

    /// THE fit test of this tree: the bytes (one accounting function) and the optional ceiling.
    fn page_fits(&self, entries: &[Entry<'_>]) -> bool {
        self.count_fits(entries.len()) && page::fits(entries.iter().map(Entry::bytes).sum(), self.inner.page_bytes)
    }

    /// [`BTree::page_fits`] for entries of these sizes.
    fn sizes_fit(&self, sizes: &[usize]) -> bool {
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

    /// Compares two user keys in the tree's order.
    pub(crate) fn cmp_keys(&self, a: &[u8], b: &[u8]) -> Ordering {
        match &self.inner.custom_order {
            Some(c) => c(a, b),
            None => bytewise(a, b),
        }
    }

    /// A stored key to search for, with what makes comparing against it cheap.
    #[inline]
    pub(crate) fn probe<'k>(&'k self, skey: &'k [u8]) -> Probe<'k> {
        let bytewise = self.inner.custom_order.is_none() && self.inner.duplicates != Duplicates::Multi;
        Probe { key: skey, word: prefix_word(skey), tree: (!bytewise).then_some(self) }
    }

    /// Compares two stored keys (in Multi mode, key-then-value composites).
    pub(crate) fn cmp_stored(&self, a: &[u8], b: &[u8]) -> Ordering {
        if self.inner.duplicates != Duplicates::Multi {
            return self.cmp_keys(a, b);
        }
        let (ka, va) = split_composite(a);
        let (kb, vb) = split_composite(b);
        self.cmp_keys(ka, kb).then_with(|| va.cmp(vb))
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
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

    fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = match self.inner.duplicates {
            Duplicates::Multi => max_inline_value_bytes(self.inner.page_bytes as u32),
            _ => VALUE_BYTES_MAX,
        };
        if value.len() > max {
            return Err(Error::TooLarge(format!("value of {} bytes; at most {max} in this tree", value.len())));
        }
        Ok(())
    }

    /// The stored key of a user (key, value): the key itself, or in Multi mode the composite.
    pub(crate) fn stored_key<'k>(&self, key: &'k [u8], value: &[u8]) -> Cow<'k, [u8]> {
        match self.inner.duplicates {
            Duplicates::Multi => Cow::Owned(composite(key, value)),
            _ => Cow::Borrowed(key),
        }
    }

    /// Reads a page through a closure (shared lock on the store, no copy).
    pub(crate) fn with_page<R>(&self, id: u64, f: impl FnOnce(PageRef<'_>) -> Result<R>) -> Result<R> {
        let pb = self.inner.page_bytes;
        self.store()?
            .with_node(NodeId::from_raw(id), |bytes| parse_page(bytes, id, pb).and_then(f))
            .map_err(|e| missing_page(id, e))?
    }

    /// Reads pages under one hold of the store's lock: `f` gets a page reader.
    pub(crate) fn with_pages<R>(&self, f: impl FnOnce(&PageReader<'_, '_>) -> Result<R>) -> Result<R> {
        self.store()?.with_reader(|nodes| f(&PageReader { nodes, page_bytes: self.inner.page_bytes }))
    }

    /// A copy of a page, its layout checked.
    pub(crate) fn read_page(&self, id: u64) -> Result<Vec<u8>> {
        let bytes = self.store()?.read(NodeId::from_raw(id)).map_err(|e| missing_page(id, e))?;
        parse_page(&bytes, id, self.inner.page_bytes)?;
        Ok(bytes)
    }

    /// The entries of a page about to be rewritten. Pages this tree writes always hold entries
    /// of at most a quarter page (the split arithmetic relies on it) that fit the page
    /// together; a damaged page whose cells overlap or claim more is `Corrupt` here, before
    /// anything is written (page::build would refuse it).
    pub(crate) fn page_entries<'p>(&self, p: &PageRef<'p>, id: u64, leaf: bool) -> Result<Vec<Entry<'p>>> {
        self.check_kind(p, id, leaf)?;
        let entries = p.entries()?;
        self.check_sizes(id, entries.iter().map(Entry::bytes))?;
        Ok(entries)
    }

    /// A leaf's cells, checked as [`BTree::page_entries`] checks entries.
    pub(crate) fn page_cells<'p>(&self, p: &PageRef<'p>, id: u64) -> Result<Vec<Cell<'p>>> {
        self.check_kind(p, id, true)?;
        let cells = p.cells()?;
        self.check_sizes(id, cells.iter().map(Cell::bytes))?;
        Ok(cells)
    }

    fn check_kind(&self, p: &PageRef<'_>, id: u64, leaf: bool) -> Result<()> {
        if p.is_leaf() != leaf {
            return Err(Error::corrupt(
                format!("B+ tree page {id:#x}"),
                0,
                format!("a {} page where a {} belongs", kind_name(p.is_leaf()), kind_name(leaf)),
            ));
        }
        Ok(())
    }

    /// Entries of at most a quarter page that fit the page together.
    fn check_sizes(&self, id: u64, sizes: impl Iterator<Item = usize>) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let bad = |what: String| Error::corrupt(format!("B+ tree page {id:#x}"), 0, what);
        let mut total = 0;
        for bytes in sizes {
            if bytes > cap / 4 {
                return Err(bad(format!("an entry of {bytes} bytes; at most {} fit a page", cap / 4)));
            }
            total += bytes;
        }
        if total > cap {
            return Err(bad(format!("entries of {total} bytes in a page that holds {cap}")));
        }
        Ok(())
    }

    /// Descends to a stored key's leaf through a page reader the caller holds: fills `path`
    /// (each internal page with the child position taken: 0 = leftmost, j + 1 = the child of
    /// separator j) and returns the leaf, where the key is in it (`Ok(i)`) or would go
    /// (`Err(i)`), and the leaf's entry count.
    fn descend_in(&self, pages: &PageReader<'_, '_>, st: &State, skey: &[u8], path: &mut Path) -> Result<Descent> {
        let probe = self.probe(skey);
        let (id, leaf) = self.walk_to_leaf(pages, st, &probe, |page, pos| path.push((page, pos)))?;
        let found = probe.find_in(&leaf)?;
        Ok((id, found, leaf.len()))
    }

    /// Walks from the root to the leaf where `probe` belongs, through the caller's page
    /// reader: `visit(page, position)` at each internal page with the child position taken
    /// (0 = leftmost, j + 1 = the child of separator j). Returns the leaf's id and page.
    pub(crate) fn walk_to_leaf<'a>(
        &self,
        pages: &PageReader<'_, 'a>,
        st: &State,
        probe: &Probe<'_>,
        mut visit: impl FnMut(u64, usize),
    ) -> Result<(u64, PageRef<'a>)> {
        let mut id = st.root;
        for _ in 1..st.height {
            let p = pages.page(id)?;
            if p.is_leaf() {
                return Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a leaf above the leaf level"));
            }
            let (slot, child) = probe.child_in(&p)?;
            visit(id, slot.map_or(0, |s| s + 1));
            id = child;
        }
        let leaf = pages.page(id)?;
        if !leaf.is_leaf() {
            return Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "an internal page at the leaf level"));
        }
        Ok((id, leaf))
    }

    /// The value of `key` (Unique and Overwrite trees; in a Multi tree, the first value).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Calls `f` with the value of `key`, as `get` finds it, without copying it first: an
    /// inline value is read where its page lies, under the tree's and the store's shared
    /// locks. Do not call the tree or its store from inside `f`.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        if self.inner.duplicates == Duplicates::Multi {
            return Ok(self.get_all(key)?.first().map(|v| f(v)));
        }
        self.check_key(key)?;
        let st = self.read_state()?;
        let probe = self.probe(key);
        let mut f = Some(f);
        let found = self.with_pages(|pages| {
            let (_, p) = self.walk_to_leaf(pages, &st, &probe, |_, _| {})?;
            let Ok(i) = probe.find_in(&p)? else { return Ok(None) };
            match p.leaf_value(i)? {
                Value::Inline(v) => Ok(Some(Ok(f.take().map(|f| f(v))))),
                Value::Overflow(id, len) => Ok(Some(Err((id, len)))),
            }
        })?;
        match found {
            None => Ok(None),
            Some(Ok(r)) => Ok(r),
            Some(Err((id, len))) => {
                let v = self.read_overflow(id, len)?;
                Ok(f.take().map(|f| f(&v)))
            }
        }
    }

    pub(crate) fn read_overflow(&self, id: u64, len: u32) -> Result<Vec<u8>> {
        let v = self
            .store()?
            .read(NodeId::from_raw(id))
            .map_err(|_| Error::corrupt(format!("B+ tree value node {id:#x}"), 0, "missing"))?;
        if v.len() != len as usize {
            return Err(Error::corrupt(
                format!("B+ tree value node {id:#x}"),
                0,
                format!("{} bytes, the leaf says {len}", v.len()),
            ));
        }
        Ok(v)
    }

    /// Every value of `key`, in value order (one at most unless the tree is Multi).
    pub fn get_all(&self, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.inner.duplicates != Duplicates::Multi {
            return Ok(self.get(key)?.into_iter().collect());
        }
        self.check_key(key)?;
        let mut out = Vec::new();
        // One hold of the tree's state for the whole walk: a writer cannot make it stale.
        self.scan_from(key, |k, v| {
            let same = self.cmp_keys(k, key) == Ordering::Equal;
            if same {
                out.push(v.to_vec());
            }
            same
        })?;
        Ok(out)
    }

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
        self.store()?.with_editor(|editor| {
            let pages = PageReader { nodes: &editor.reader(), page_bytes: self.inner.page_bytes };
            let mut path = Path::default();
            let (leaf_id, found, leaf_len) = self.descend_in(&pages, &st, &skey, &mut path)?;
            if found.is_ok() && self.inner.duplicates != Duplicates::Overwrite {
                return Err(Error::DuplicateKey(format!("key of {} bytes is already in the tree", key.len())));
            }
            if let (Err(i), true) = (found, inline) {
                let e = Entry { key: &skey, payload: Payload::Leaf(Value::Inline(svalue)) };
                if (self.count_fits(leaf_len + 1) && self.try_insert_in_place(editor, leaf_id, i, &e)?)
                    || self.overflow_in_place(editor, &path, leaf_id, i, &e)?
                {
                    st.entries += 1;
                    return self.save_anchor(editor, &st);
                }
            }
            self.insert_rewriting(editor, &mut st, &path, leaf_id, found, &skey, svalue)
        })?;
        self.bump_version();
        Ok(())
    }

    /// The insert's general path: the leaf's cells with the new one, written as one page, or
    /// shifted into a sibling, or split (the separator going up the path).
    #[allow(clippy::too_many_arguments)]
    fn insert_rewriting(
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
        let mut cells = self.page_cells(&leaf, leaf_id)?;
        let replaced = match found {
            Ok(i) => Some(leaf.entry(i)?.payload),
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
                if let Some(Payload::Leaf(Value::Overflow(old, _))) = replaced {
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
    fn try_insert_in_place(
        &self,
        editor: &mut NodeEditor<'_>,
        leaf_id: u64,
        index: usize,
        e: &Entry<'_>,
    ) -> Result<bool> {
        update_page(editor, self.inner.page_bytes, leaf_id, |p| page::insert_in_place(p, leaf_id, index, e))
    }

    fn edge(&self, plan: &Plan<'_, '_>, path: &[(u64, usize)], index: usize, n: usize) -> Edge {
        edge_at(path, index, n, |id| plan.page_len(id).ok())
    }

    /// Writes a leaf's new cells: one page if they fit, else a split whose separator goes
    /// up the path (splitting internal pages as needed, growing a new root at the top).
    fn write_leaf(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &mut State,
        path: &[(u64, usize)],
        leaf_id: u64,
        cells: &[Cell<'_>],
        edge: Edge,
    ) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let sizes: Vec<usize> = cells.iter().map(Cell::bytes).collect();
        if self.sizes_fit(&sizes) {
            plan.write_cells(leaf_id, cells);
            return Ok(());
        }
        if edge == Edge::Middle {
            if let Some(&(parent_id, pos)) = path.last() {
                if self.shift_into_sibling(plan, parent_id, pos, leaf_id, cells)? {
                    return Ok(());
                }
            }
        }
        let k = leaf_split_point(&sizes, cap, edge);
        let right_id = plan.alloc_page(KIND_LEAF)?;
        plan.write_cells(leaf_id, &cells[..k]);
        plan.write_cells(right_id, &cells[k..]);
        let separator = self.separator(cells[k - 1].key(), cells[k].key());
        self.insert_separator(plan, st, path, separator, right_id, edge)
    }

    /// Instead of splitting an overfull leaf, evens it out with a sibling under the same parent
    /// that has room: no new page, and pages stay fuller on random inserts (B*-tree style).
    /// Returns false, planning nothing, when neither sibling has room or the new separator
    /// would not fit the parent.
    fn shift_into_sibling(
        &self,
        plan: &mut Plan<'_, '_>,
        parent_id: u64,
        pos: usize,
        leaf_id: u64,
        cells: &[Cell<'_>],
    ) -> Result<bool> {
        let cap = page::capacity(self.inner.page_bytes);
        let parent_bytes = plan.copy_page(parent_id)?;
        let parent = PageRef::parse(&parent_bytes, parent_id)?;
        let mut candidates = Vec::with_capacity(2);
        if pos < parent.len() {
            candidates.push(pos + 1);
        }
        if pos > 0 {
            candidates.push(pos - 1);
        }
        // Two halves that fit are guaranteed only with the largest entry's worth of slack.
        let slack = |largest: usize| overflow::shift_slack(cap).max(largest);
        let shift_limit = 2 * cap - slack(cells.iter().map(Cell::bytes).max().unwrap_or(0));
        let cells_total: usize = cells.iter().map(Cell::bytes).sum();
        let mut parent_entries = Vec::new();
        for sibling_pos in candidates {
            let sibling_id = if sibling_pos == 0 { parent.leftmost_child() } else { parent.child(sibling_pos - 1)? };
            let sibling_bytes = plan.copy_page(sibling_id)?;
            let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
            // The bytes outside the sibling's free gap bound what it holds: a sibling that
            // cannot take enough is passed over without decoding it.
            if cells_total + (cap - sibling.gap_bytes()).min(cap) > shift_limit {
                continue;
            }
            let this_is_left = sibling_pos > pos;
            let mut combined: Vec<Cell<'_>> = Vec::with_capacity(cells.len() + sibling.len());
            if this_is_left {
                combined.extend_from_slice(cells);
                combined.extend(self.page_cells(&sibling, sibling_id)?);
            } else {
                combined.extend(self.page_cells(&sibling, sibling_id)?);
                combined.extend_from_slice(cells);
            }
            let sizes: Vec<usize> = combined.iter().map(Cell::bytes).collect();
            if sizes.iter().sum::<usize>() > 2 * cap - slack(sizes.iter().copied().max().unwrap_or(0)) {
                continue;
            }
            let k = leaf_split_point(&sizes, cap, Edge::Middle);
            let separator = self.separator(combined[k - 1].key(), combined[k].key());
            let (left_id, right_id) = if this_is_left { (leaf_id, sibling_id) } else { (sibling_id, leaf_id) };
            let sep_index = pos.min(sibling_pos);
            if !self.count_fits(k) || !self.count_fits(combined.len() - k) {
                continue;
            }
            // The parent's separator changes: in place on a copy when it has room (the
            // common case), else the parent is rebuilt.
            let mut parent_image = Scratch::copy_of(&parent_bytes);
            if !page::replace_separator_in_place(&mut parent_image, parent_id, sep_index, &separator)? {
                if parent_entries.is_empty() {
                    parent_entries = self.page_entries(&parent, parent_id, false)?;
                }
                let mut rebuilt = parent_entries.clone();
                rebuilt[sep_index] = Entry { key: &separator, payload: Payload::Child(right_id) };
                if !self.page_fits(&rebuilt) {
                    continue;
                }
                page::build(&mut parent_image, TYPE_INTERNAL, parent.leftmost_child(), &rebuilt);
            }
            plan.write_cells(left_id, &combined[..k]);
            plan.write_cells(right_id, &combined[k..]);
            plan.put(parent_id, parent_image);
            return Ok(true);
        }
        Ok(false)
    }

    /// The separator between two adjacent stored keys: shortened when the order is bytewise.
    fn separator(&self, left: &[u8], right: &[u8]) -> Vec<u8> {
        if self.inner.custom_order.is_none() && self.inner.duplicates != Duplicates::Multi {
            shortest_separator(left, right).to_vec()
        } else {
            right.to_vec()
        }
    }

    /// Adds (separator, child) right after the path's child position in each parent, from the
    /// bottom up, splitting full internal pages.
    fn insert_separator(
        &self,
        plan: &mut Plan<'_, '_>,
        st: &mut State,
        path: &[(u64, usize)],
        separator: Vec<u8>,
        child: u64,
        edge: Edge,
    ) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let mut carry = Some((separator, child));
        for &(page_id, pos) in path.iter().rev() {
            let Some((sep, child)) = carry.take() else { break };
            let new_entry = Entry { key: &sep, payload: Payload::Child(child) };
            let mut image = plan.copy_page(page_id)?;
            let count = PageRef::parse(&image, page_id)?.len();
            // The common case: the separator fits the page's free gap, one small edit.
            if self.count_fits(count + 1) && page::insert_in_place(&mut image, page_id, pos, &new_entry)? {
                plan.put(page_id, image);
                continue;
            }
            let bytes = image;
            let p = PageRef::parse(&bytes, page_id)?;
            let mut entries = self.page_entries(&p, page_id, false)?;
            entries.insert(pos, new_entry);
            let sizes: Vec<usize> = entries.iter().map(Entry::bytes).collect();
            if self.page_fits(&entries) {
                plan.write(page_id, TYPE_INTERNAL, p.leftmost_child(), &entries);
                continue;
            }
            let m = internal_split_point(&sizes, cap, edge);
            let right_id = plan.alloc_page(KIND_INTERNAL)?;
            let Payload::Child(right_leftmost) = entries[m].payload else {
                unreachable!("internal entries hold children")
            };
            plan.write(page_id, TYPE_INTERNAL, p.leftmost_child(), &entries[..m]);
            plan.write(right_id, TYPE_INTERNAL, right_leftmost, &entries[m + 1..]);
            carry = Some((entries[m].key.to_vec(), right_id));
        }
        if let Some((sep, child)) = carry {
            if st.height as usize >= DEPTH_MAX {
                return Err(Error::Limit(format!("the tree would be deeper than {DEPTH_MAX} levels")));
            }
            let new_root = plan.alloc_page(KIND_INTERNAL)?;
            plan.write(new_root, TYPE_INTERNAL, st.root, &[Entry { key: &sep, payload: Payload::Child(child) }]);
            plan.new_root = Some(new_root);
        }
        Ok(())
    }

    /// Removes `key` (Unique and Overwrite trees); in a Multi tree every value of `key`.
    /// Returns whether anything was removed.
    pub fn remove(&self, key: &[u8]) -> Result<bool> {
        if self.inner.duplicates == Duplicates::Multi {
            let values = self.get_all(key)?;
            for v in &values {
                self.remove_pair(key, v)?;
            }
            return Ok(!values.is_empty());
        }
        self.remove_stored(key)
    }

    /// Removes one (key, value) pair of a Multi tree; in other trees, `key` if its value is
    /// `value`.
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
                if self.get(key)?.as_deref() != Some(value) {
                    return Ok(false);
                }
                self.remove_stored(key)
            }
        }
    }

    fn remove_stored(&self, skey: &[u8]) -> Result<bool> {
        let mut st = self.write_state()?;
        let removed = self.store()?.with_editor(|editor| {
            let pages = PageReader { nodes: &editor.reader(), page_bytes: self.inner.page_bytes };
            let mut path = Path::default();
            let (leaf_id, found, _) = self.descend_in(&pages, &st, skey, &mut path)?;
            let Ok(index) = found else { return Ok(false) };
            let mut plan = Plan::new(self, editor);
            let leaf_bytes = plan.copy_page(leaf_id)?;
            let leaf = PageRef::parse(&leaf_bytes, leaf_id)?;
            let mut entries = self.page_entries(&leaf, leaf_id, true)?;
            if let Payload::Leaf(Value::Overflow(old, _)) = entries[index].payload {
                plan.free_later(old, KIND_OVERFLOW);
            }
            entries.remove(index);
            if let Err(e) = self.rebalance_after_remove(&mut plan, &path, leaf_id, TYPE_LEAF, 0, &entries) {
                return plan.abort(e);
            }
            plan.apply(&mut st)?;
            st.entries -= 1;
            self.save_anchor(editor, &st)?;
            Ok(true)
        })?;
        if removed {
            self.bump_version();
        }
        Ok(removed)
    }

    /// Writes a page that lost an entry; below a third full, merges it with a sibling when
    /// both fit one page, or (leaves) evens the two out. A parent that loses a separator is
    /// treated the same way, up to the root, which collapses when it has a single child.
    #[allow(clippy::too_many_arguments)]
    fn rebalance_after_remove(
        &self,
        plan: &mut Plan<'_, '_>,
        path: &[(u64, usize)],
        id: u64,
        ty: u8,
        leftmost: u64,
        entries: &[Entry<'_>],
    ) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let used: usize = entries.iter().map(Entry::bytes).sum();
        let Some((&(parent_id, pos), above)) = path.split_last() else {
            // The root: an internal root with no separator hands over to its only child.
            if ty == TYPE_INTERNAL && entries.is_empty() {
                plan.free_later(id, KIND_INTERNAL);
                plan.new_root = Some(leftmost);
                plan.root_shrinks = true;
            } else {
                plan.write(id, ty, leftmost, entries);
            }
            return Ok(());
        };
        if used >= cap / 3 {
            plan.write(id, ty, leftmost, entries);
            return Ok(());
        }
        let parent_bytes = plan.copy_page(parent_id)?;
        let parent = PageRef::parse(&parent_bytes, parent_id)?;
        let mut parent_entries = self.page_entries(&parent, parent_id, false)?;
        // The pair (left, right) and the index of the separator between them in the parent.
        let child_at = |p: usize| -> Result<u64> {
            if p == 0 {
                Ok(parent.leftmost_child())
            } else {
                match parent.entry(p - 1)?.payload {
                    Payload::Child(c) => Ok(c),
                    Payload::Leaf(_) => {
                        Err(Error::corrupt(format!("B+ tree page {parent_id:#x}"), 0, "leaf cell in an internal page"))
                    }
                }
            }
        };
        let (sep_index, sibling_pos, this_is_left) = if pos == 0 { (0, 1, true) } else { (pos - 1, pos - 1, false) };
        if sibling_pos > parent.len() {
            plan.write(id, ty, leftmost, entries); // an only child: nothing to pair with
            return Ok(());
        }
        let sibling_id = child_at(sibling_pos)?;
        let sibling_bytes = plan.copy_page(sibling_id)?;
        let sibling = PageRef::parse(&sibling_bytes, sibling_id)?;
        if sibling.is_leaf() != (ty == TYPE_LEAF) {
            return Err(Error::corrupt(format!("B+ tree page {sibling_id:#x}"), 0, "siblings on different levels"));
        }
        let sibling_entries = self.page_entries(&sibling, sibling_id, ty == TYPE_LEAF)?;
        let (left_id, right_id) = if this_is_left { (id, sibling_id) } else { (sibling_id, id) };
        let (left_entries, left_leftmost, right_entries, right_leftmost) = if this_is_left {
            (entries.to_vec(), leftmost, sibling_entries, sibling.leftmost_child())
        } else {
            (sibling_entries, sibling.leftmost_child(), entries.to_vec(), leftmost)
        };
        let separator = parent.key(sep_index)?;
        let mut combined = left_entries;
        if ty == TYPE_INTERNAL {
            // The parent's separator comes down between the two, pointing at right's leftmost.
            combined.push(Entry { key: separator, payload: Payload::Child(right_leftmost) });
        }
        combined.extend(right_entries);
        let sizes: Vec<usize> = combined.iter().map(Entry::bytes).collect();
        if self.page_fits(&combined) {
            plan.write(left_id, ty, left_leftmost, &combined);
            plan.free_later(right_id, if ty == TYPE_LEAF { KIND_LEAF } else { KIND_INTERNAL });
            parent_entries.remove(sep_index);
            return self.rebalance_after_remove(
                plan,
                above,
                parent_id,
                TYPE_INTERNAL,
                parent.leftmost_child(),
                &parent_entries,
            );
        }
        if ty == TYPE_INTERNAL {
            plan.write(id, ty, leftmost, entries); // too full to merge: leave it underfull
            return Ok(());
        }
        // Two leaves that do not fit one page: even them out by bytes, if the new separator
        // fits the parent (a longer one might not; the pages are then left as they are).
        let k = leaf_split_point(&sizes, cap, Edge::Middle);
        let new_sep = self.separator(combined[k - 1].key, combined[k].key);
        parent_entries[sep_index] = Entry { key: &new_sep, payload: Payload::Child(right_id) };
        if !self.page_fits(&parent_entries) || !self.count_fits(k) || !self.count_fits(combined.len() - k) {
            plan.write(id, ty, leftmost, entries);
            return Ok(());
        }
        plan.write(left_id, TYPE_LEAF, 0, &combined[..k]);
        plan.write(right_id, TYPE_LEAF, 0, &combined[k..]);
        plan.write(parent_id, TYPE_INTERNAL, parent.leftmost_child(), &parent_entries);
        Ok(())
    }

    /// Records the root, height and entry count in the tree's named root.
    fn save_anchor(&self, editor: &mut NodeEditor<'_>, st: &State) -> Result<()> {
        editor.set_root(&self.inner.anchor, st.root, &self.anchor_meta(st))
    }

    fn anchor_meta(&self, st: &State) -> [u8; ANCHOR_BYTES] {
        encode_anchor(self.inner.page_bytes, self.inner.duplicates, self.inner.custom_order.is_some(), st)
    }
}

/// Runs `f` on page `id` where it lies (its shadow taken first if it has none).
fn update_page<R>(
    editor: &mut NodeEditor<'_>,
    page_bytes: usize,
    id: u64,
    f: impl FnOnce(&mut [u8]) -> Result<R>,
) -> Result<R> {
    editor.try_update(NodeId::from_raw(id), |buf| match buf.get_mut(..page_bytes) {
        Some(page) => Ok((page_bytes, f(page)?)),
        None => Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a block smaller than a page")),
    })
}

/// Whether an insert at `index` of a page with `n` entries (after the insert) is at the
/// tree's right or left edge: the last entry of the rightmost page, or the first of the
/// leftmost. `page_len` gives a path page's entry count (`None`: unreadable, not an edge).
fn edge_at(path: &[(u64, usize)], index: usize, n: usize, page_len: impl Fn(u64) -> Option<usize>) -> Edge {
    let rightmost = path.iter().all(|&(id, pos)| page_len(id) == Some(pos));
    let leftmost = path.iter().all(|&(_, pos)| pos == 0);
    if index + 1 == n && rightmost {
        Edge::Right
    } else if index == 0 && leftmost {
        Edge::Left
    } else {
        Edge::Middle
    }
}

/// A page a child pointer names but the store does not have: the tree is damaged. Other
/// errors (a closed store) pass through.
pub(crate) fn missing_page(id: u64, e: Error) -> Error {
    match e {
        Error::NotFound(_) => {
            Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a child pointer names a node that does not exist")
        }
        other => other,
    }
}

/// A descent's end: the leaf, the key's position in it (`Ok` found, `Err` where it would
/// go), and its entry count.
type Descent = (u64, std::result::Result<usize, usize>, usize);

/// The internal pages of a descent, root first, each with the child position taken. A
/// tree is at most DEPTH_MAX deep (checked when it is opened), so the path lives on the
/// stack: an insert allocates nothing for it.
pub(crate) struct Path {
    items: [(u64, usize); DEPTH_MAX],
    len: usize,
}

impl Default for Path {
    fn default() -> Path {
        Path { items: [(0, 0); DEPTH_MAX], len: 0 }
    }
}

impl Path {
    fn push(&mut self, item: (u64, usize)) {
        // A height over DEPTH_MAX is refused when the tree is opened and never grown to.
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for Path {
    type Target = [(u64, usize)];
    fn deref(&self) -> &[(u64, usize)] {
        &self.items[..self.len]
    }
}

/// Pages read under one hold of the store's shared lock.
pub(crate) struct PageReader<'r, 'a> {
    nodes: &'r crate::store::NodeReader<'a>,
    page_bytes: usize,
}

impl<'a> PageReader<'_, 'a> {
    #[inline(always)]
    pub(crate) fn page(&self, id: u64) -> Result<PageRef<'a>> {
        parse_page(self.nodes.node(NodeId::from_raw(id)).map_err(|e| missing_page(id, e))?, id, self.page_bytes)
    }
}

fn kind_name(leaf: bool) -> &'static str {
    if leaf {
        "leaf"
    } else {
        "internal"
    }
}

/// Parses a page of a tree whose pages have `page_bytes`: a node of any other length (a
/// damaged child pointer naming some other node) is `Corrupt`.
#[inline(always)]
fn parse_page(bytes: &[u8], id: u64, page_bytes: usize) -> Result<PageRef<'_>> {
    if bytes.len() != page_bytes {
        return Err(wrong_page_length(bytes.len(), id, page_bytes));
    }
    PageRef::parse(bytes, id)
}

#[cold]
#[inline(never)]
fn wrong_page_length(len: usize, id: u64, page_bytes: usize) -> Error {
    Error::corrupt(format!("B+ tree page {id:#x}"), 0, format!("{len} bytes; the tree's pages have {page_bytes}"))
}

/// Multi mode's stored key: u16 key length, key, value. Ordered by key, then value.
fn composite(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(2 + key.len() + value.len());
    c.extend_from_slice(&(key.len() as u16).to_le_bytes());
    c.extend_from_slice(key);
    c.extend_from_slice(value);
    c
}

/// Splits a composite back into (key, value); a malformed one reads as all key.
pub(crate) fn split_composite(c: &[u8]) -> (&[u8], &[u8]) {
    if c.len() < 2 {
        return (c, &[]);
    }
    let n = u16::from_le_bytes([c[0], c[1]]) as usize;
    if 2 + n > c.len() {
        return (c, &[]);
    }
    (&c[2..2 + n], &c[2 + n..])
}

/// A page-sized buffer from this thread's small pool: the slow paths copy and build whole
/// pages, and a fresh zeroed allocation for each was a good part of their cost. The bytes
/// past what a page builder writes are stale, which no reader looks at.
pub(crate) struct Scratch(Vec<u8>);

thread_local! {
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps for reuse: a split or shift at the top of a deep tree uses a few.
const SCRATCH_POOL_MAX: usize = 16;

impl Scratch {
    fn new(len: usize) -> Scratch {
        let mut v = SCRATCH_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        v.resize(len, 0);
        Scratch(v)
    }

    fn copy_of(bytes: &[u8]) -> Scratch {
        let mut s = Scratch::new(bytes.len());
        s.0.copy_from_slice(bytes);
        s
    }
}

impl std::ops::Deref for Scratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // A thread being torn down has no pool left to return to: the buffer is just freed.
        let _ = SCRATCH_POOL.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < SCRATCH_POOL_MAX {
                pool.push(v);
            }
        });
    }
}

/// The page changes of one operation, applied all together or not at all, under the one
/// hold of the store's lock the operation runs in (`editor`).
pub(crate) struct Plan<'t, 'c> {
    tree: &'t BTree,
    editor: &'t mut NodeEditor<'c>,
    allocated: Vec<u64>,
    writes: Vec<(u64, Scratch)>,
    /// Nodes to free, with the kind each must have.
    frees: Vec<(u64, u8)>,
    new_root: Option<u64>,
    root_shrinks: bool,
}

impl<'t, 'c> Plan<'t, 'c> {
    fn new(tree: &'t BTree, editor: &'t mut NodeEditor<'c>) -> Plan<'t, 'c> {
        Plan {
            tree,
            editor,
            allocated: Vec::new(),
            writes: Vec::new(),
            frees: Vec::new(),
            new_root: None,
            root_shrinks: false,
        }
    }

    /// The page as it is now, layout checked.
    fn with_page<R>(&self, id: u64, f: impl FnOnce(PageRef<'_>) -> R) -> Result<R> {
        let nodes = self.editor.reader();
        Ok(f(PageReader { nodes: &nodes, page_bytes: self.tree.inner.page_bytes }.page(id)?))
    }

    /// A copy of a page the operation reads and may rewrite, layout checked.
    fn copy_page(&self, id: u64) -> Result<Scratch> {
        self.with_page(id, |p| Scratch::copy_of(p.as_bytes()))
    }

    /// A page's entry count.
    fn page_len(&self, id: u64) -> Result<usize> {
        self.with_page(id, |p| p.len())
    }

    fn alloc_page(&mut self, kind: u8) -> Result<u64> {
        let id = self.editor.allocate(self.tree.inner.page_bytes, kind)?.raw();
        self.allocated.push(id);
        Ok(id)
    }

    /// A value as the leaf stores it: inline, or in a new store node.
    fn store_value<'v>(&mut self, value: &'v [u8]) -> Result<Value<'v>> {
        if value.len() <= max_inline_value_bytes(self.tree.inner.page_bytes as u32) {
            return Ok(Value::Inline(value));
        }
        let id = self.editor.allocate(value.len(), KIND_OVERFLOW)?;
        self.allocated.push(id.raw());
        self.editor.publish(id, value)?;
        Ok(Value::Overflow(id.raw(), value.len() as u32))
    }

    fn write(&mut self, id: u64, ty: u8, leftmost: u64, entries: &[Entry<'_>]) {
        let mut image = Scratch::new(self.tree.inner.page_bytes);
        page::build(&mut image, ty, leftmost, entries);
        self.put(id, image);
    }

    /// Plans a leaf's new image from cells.
    fn write_cells(&mut self, id: u64, cells: &[Cell<'_>]) {
        let mut image = Scratch::new(self.tree.inner.page_bytes);
        page::build_cells(&mut image, TYPE_LEAF, 0, cells);
        self.put(id, image);
    }

    /// Plans a page's whole new image (one edited in place on a copy, say).
    fn put(&mut self, id: u64, image: Scratch) {
        self.writes.retain(|(w, _)| *w != id);
        self.writes.push((id, image));
    }

    /// Frees the node when the plan is applied, once it is checked to be a live node of
    /// `kind`: an id read from a damaged page must not free another tree's page or a host's
    /// node, nor fail halfway through `apply`.
    fn free_later(&mut self, id: u64, kind: u8) {
        self.frees.push((id, kind));
    }

    /// Undoes the allocations and returns `e`: the tree is as it was.
    fn abort<T>(self, e: Error) -> Result<T> {
        for id in &self.allocated {
            let _ = self.editor.free(NodeId::from_raw(*id));
        }
        Err(e)
    }

    /// Takes every shadow first (the only step that can fail, for lack of space), then
    /// writes the pages, frees what the operation released, and moves the root.
    fn apply(self, st: &mut State) -> Result<()> {
        for &(id, kind) in &self.frees {
            let found = self.editor.info(NodeId::from_raw(id)).map(|info| info.kind);
            if found.as_ref().ok() != Some(&kind) {
                let what = match found {
                    Ok(k) => format!("node of kind {k}, not {kind}"),
                    Err(_) => "no live node".to_string(),
                };
                let e = Error::corrupt(
                    format!("B+ tree node {id:#x}"),
                    0,
                    format!("the tree refers to it, but it is a {what}"),
                );
                return self.abort(e);
            }
        }
        for (id, _) in &self.writes {
            if !self.allocated.contains(id) {
                if let Err(e) = self.editor.prepare_write(NodeId::from_raw(*id)) {
                    return self.abort(e);
                }
            }
        }
        for (id, image) in &self.writes {
            self.editor.publish(NodeId::from_raw(*id), image)?;
        }
        for &(id, _) in &self.frees {
            self.editor.free(NodeId::from_raw(id))?;
        }
        if let Some(root) = self.new_root {
            st.root = root;
            if self.root_shrinks {
                st.height -= 1;
            } else {
                st.height += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytewise_order_is_the_slice_order() {
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let a: Vec<u8> = (0..next() % 20).map(|_| (next() % 3) as u8 * 0x7F).collect();
            let mut b = a.clone();
            match next() % 3 {
                0 => b.truncate((next() % (a.len() as u64 + 1)) as usize),
                1 => b.push((next() % 256) as u8),
                _ if !b.is_empty() => {
                    let at = (next() % b.len() as u64) as usize;
                    b[at] = (next() % 256) as u8;
                }
                _ => {}
            }
            assert_eq!(bytewise(&a, &b), a.cmp(&b), "{a:?} {b:?}");
            assert_eq!(bytewise(&b, &a), b.cmp(&a), "{b:?} {a:?}");
        }
    }

    #[test]
    fn the_prefix_word_is_the_zero_padded_first_eight_bytes() {
        let mut rng = 0x0BAD_5EED_1234_5678u64;
        for len in 0..=12usize {
            for _ in 0..200 {
                let k: Vec<u8> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u8
                    })
                    .collect();
                let mut padded = [0u8; 8];
                let n = len.min(8);
                padded[..n].copy_from_slice(&k[..n]);
                assert_eq!(prefix_word(&k), u64::from_be_bytes(padded), "{k:?}");
            }
        }
    }
    use crate::store::StoreOptions;
    use std::collections::BTreeMap;
    use std::ops::Bound;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn mem_store() -> Store {
        Store::in_memory(&StoreOptions::default()).unwrap()
    }

    #[test]
    fn bulk_load_builds_full_pages_with_the_same_contents() {
        let store = mem_store();
        let t = BTree::open(&store, b"bulk", &TreeOptions::default()).unwrap();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            (0..50_000u32).map(|i| (format!("key{i:08}").into_bytes(), i.to_le_bytes().to_vec())).collect();
        let mut unsorted = pairs.clone();
        unsorted.swap(10, 20);
        assert!(matches!(t.bulk_load(unsorted), Err(Error::InvalidArgument(_))));
        assert!(t.is_empty(), "a refused load changes nothing");
        t.bulk_load(pairs.clone()).unwrap();
        t.verify().unwrap();
        let s = t.stats().unwrap();
        assert!(s.leaf_fill >= 0.97, "fill {}", s.leaf_fill);
        assert_eq!(t.range(Bound::Unbounded, Bound::Unbounded).unwrap(), pairs);
        assert!(matches!(t.bulk_load(pairs.clone()), Err(Error::InvalidArgument(_))), "only into an empty tree");
        t.insert(b"key00000100x", b"after").unwrap();
        t.remove(b"key00000200").unwrap();
        t.verify().unwrap();
        store.verify().unwrap();
    }

    #[test]
    fn the_entry_ceiling_caps_pages_but_bytes_still_decide() {
        let store = mem_store();
        let opts = TreeOptions { max_entries_per_page: Some(16), ..TreeOptions::default() };
        let t = BTree::open(&store, b"capped", &opts).unwrap();
        for i in 0..3000u32 {
            t.insert(&(i.wrapping_mul(2_654_435_761)).to_be_bytes(), b"v").unwrap();
        }
        let s = t.stats().unwrap();
        assert!(s.keys_per_leaf_max <= 16, "{}", s.keys_per_leaf_max);
        t.verify().unwrap();
        // Large entries: bytes split long before the ceiling.
        let big =
            BTree::open(&store, b"big", &TreeOptions { max_entries_per_page: Some(1000), ..TreeOptions::default() })
                .unwrap();
        for i in 0..200u32 {
            big.insert(&[&i.to_be_bytes()[..], &[0u8; 700]].concat(), b"v").unwrap();
        }
        assert!(big.stats().unwrap().keys_per_leaf_max <= 5);
        big.verify().unwrap();
    }

    #[test]
    fn a_tree_of_another_format_is_refused_by_name_and_version() {
        let store = mem_store();
        // A copy of a new tree's anchor under another name, as format 1 wrote it.
        BTree::open(&store, b"new", &TreeOptions::default()).unwrap();
        let root = store.get_root(b"btree:new").unwrap().unwrap();
        let mut meta = root.meta.clone();
        meta[4] = 1;
        store.set_root(b"btree:old", root.id, &meta).unwrap();
        assert!(matches!(list_trees(&store), Err(Error::VersionMismatch(_))));
        match BTree::open(&store, b"old", &TreeOptions::default()) {
            Err(Error::VersionMismatch(m)) => assert!(m.contains("\"old\" has format 1"), "{m}"),
            Err(e) => panic!("expected VersionMismatch, got {e}"),
            Ok(_) => panic!("expected VersionMismatch, got a tree"),
        }
    }

    #[test]
    fn two_opens_of_one_tree_share_one_instance() {
        let store = mem_store();
        let a = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
        let b = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
        a.insert(b"k", b"v").unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        let other = TreeOptions { page_bytes: 8192, ..TreeOptions::default() };
        assert!(matches!(BTree::open(&store, b"t", &other), Err(Error::InvalidArgument(_))));
        let c = BTree::open(&store, b"another", &TreeOptions::default()).unwrap();
        assert_eq!(c.get(b"k").unwrap(), None);
    }

    #[test]
    fn cursors_walk_both_ways_within_bounds_and_go_stale_after_a_change() {
        let store = mem_store();
        let t = BTree::open(&store, b"t", &TreeOptions { page_bytes: 512, ..TreeOptions::default() }).unwrap();
        for i in 0..2000u32 {
            t.insert(format!("{i:05}").as_bytes(), &i.to_le_bytes()).unwrap();
        }
        let mut c = super::super::Cursor::new(&t);
        c.set_bounds(Bound::Excluded(b"00100"), Bound::Included(b"01500"));
        c.first().unwrap();
        assert_eq!(c.current().unwrap().unwrap().0, b"00101");
        let mut n = 1;
        loop {
            c.move_next().unwrap();
            if c.current().unwrap().is_none() {
                break;
            }
            n += 1;
        }
        assert_eq!(n, 1400);
        c.last().unwrap();
        assert_eq!(c.current().unwrap().unwrap().0, b"01500");
        for _ in 0..1399 {
            c.move_prev().unwrap();
        }
        assert_eq!(c.current().unwrap().unwrap().0, b"00101");
        c.move_prev().unwrap();
        assert_eq!(c.current().unwrap(), None);
        t.insert(b"x", b"").unwrap();
        assert!(matches!(c.current(), Err(Error::StaleCursor(_))));
        c.first().unwrap();
        assert!(c.current().unwrap().is_some(), "repositioning revives it");
    }

    #[test]
    fn the_largest_entry_of_any_kind_takes_at_most_a_quarter_page() {
        for shift in 9..=16 {
            let pb = 1u32 << shift;
            let (k, v) = (max_key_bytes(pb), max_inline_value_bytes(pb));
            let (value, composite) = (vec![0u8; v], 2 + k + v);
            let largest = [
                page::entry_bytes(k, &Payload::Leaf(Value::Inline(&value))),
                page::entry_bytes(k, &Payload::Leaf(Value::Overflow(1, u32::MAX))),
                page::entry_bytes(composite, &Payload::Leaf(Value::Inline(&[]))),
                page::entry_bytes(k, &Payload::Child(u64::MAX)),
                page::entry_bytes(composite, &Payload::Child(u64::MAX)),
            ];
            let quarter = page::capacity(pb as usize) / 4;
            assert!(largest.iter().all(|&b| b <= quarter), "{pb}-byte pages: {largest:?} over {quarter}");
            // At most the byte of a length that small pages' keys write in one byte.
            assert!(largest[4] + 1 >= quarter, "{pb}-byte pages: the key limit could be higher");
        }
    }

    #[test]
    fn key_limit_is_checked_before_anything_changes() {
        let store = mem_store();
        let t = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
        assert_eq!(max_key_bytes(4096), 742);
        assert!(max_key_bytes(512) >= 64);
        t.insert(&[7u8; 255], b"v").unwrap();
        let before = t.stats().unwrap();
        assert!(matches!(t.insert(&[1u8; 743], b"v"), Err(Error::InvalidArgument(_))));
        assert_eq!(t.stats().unwrap(), before);
        assert!(matches!(t.insert(&[7u8; 255], b"w"), Err(Error::DuplicateKey(_))));
        assert_eq!(t.get(&[7u8; 255]).unwrap().as_deref(), Some(&b"v"[..]));
        t.insert(b"", b"empty key").unwrap();
        assert_eq!(t.get(b"").unwrap().as_deref(), Some(&b"empty key"[..]));
    }

    #[test]
    fn sequential_loads_fill_leaves_and_random_loads_stay_above_seventy_percent() {
        for sequential in [true, false] {
            let store = mem_store();
            let t = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
            let mut rng = Rng(99);
            let mut keys: Vec<u64> = (0..20_000).collect();
            if !sequential {
                for i in (1..keys.len()).rev() {
                    keys.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            for k in &keys {
                // Kizuna's 'key%06d' shape: 17 bytes with its record header.
                t.insert(format!("12345678key{k:06}").as_bytes(), &k.to_le_bytes()).unwrap();
            }
            t.verify().unwrap();
            let s = t.stats().unwrap();
            assert_eq!(s.entries, 20_000);
            if sequential {
                assert!(s.leaf_fill >= 0.95, "sequential fill {}", s.leaf_fill);
                assert!(s.keys_per_leaf_avg >= 132.0, "{} keys per leaf", s.keys_per_leaf_avg);
            } else {
                assert!(s.leaf_fill >= 0.70, "random fill {}", s.leaf_fill);
            }
        }
    }

    /// Random insert / remove / get / range / reopen against a BTreeMap model, every mode,
    /// three page sizes, key sizes from 0 to the maximum, `verify` after every batch.
    #[test]
    fn property_random_operations_match_a_model() {
        let seeds: Vec<u64> = match std::env::var("PCORE_BTREE_SEED") {
            Ok(s) => vec![s.parse().unwrap()],
            Err(_) => (1..=3).collect(),
        };
        for seed in seeds {
            for page_bytes in [512u32, 4096, 65536] {
                for dup in [Duplicates::Unique, Duplicates::Overwrite, Duplicates::Multi] {
                    run_model(seed, page_bytes, dup, None);
                }
            }
            run_model(seed, 4096, Duplicates::Overwrite, Some(6));
        }
    }

    fn run_model(seed: u64, page_bytes: u32, dup: Duplicates, ceiling: Option<u32>) {
        let dir = crate::store::tests::TempDir::new("btree-model");
        let sopts = StoreOptions { durability: crate::store::Durability::Eventual, ..StoreOptions::default() };
        let topts =
            TreeOptions { page_bytes, duplicates: dup, max_entries_per_page: ceiling, ..TreeOptions::default() };
        let mut store = Store::open(dir.path(), &sopts).unwrap();
        let mut tree = BTree::open(&store, b"model", &topts).unwrap();
        store.commit().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let max_key = max_key_bytes(page_bytes);
        let max_value =
            if dup == Duplicates::Multi { max_inline_value_bytes(page_bytes) } else { 3 * page_bytes as usize };
        // model: key -> values (sorted set for Multi, one value otherwise)
        let mut model: BTreeMap<Vec<u8>, std::collections::BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut committed = model.clone();
        let ctx = |step: usize| format!("seed {seed} page {page_bytes} {dup:?} step {step} (PCORE_BTREE_SEED={seed})");
        let ops = if page_bytes == 65536 { 1500 } else { 3000 };
        for step in 0..ops {
            // Small key alphabet so duplicates, removes of present keys and long common prefixes happen.
            let key_len = match rng.below(10) {
                0 => max_key,
                1 => rng.below(max_key as u64 + 1) as usize,
                _ => rng.below(12) as usize,
            };
            let key: Vec<u8> = (0..key_len)
                .map(|i| if i < key_len.saturating_sub(2) { b'a' } else { b'a' + rng.below(4) as u8 })
                .collect();
            let vlen = if rng.below(20) == 0 { rng.below(max_value as u64 + 1) } else { rng.below(12) } as usize;
            let value: Vec<u8> = (0..vlen).map(|_| rng.below(3) as u8).collect();
            match rng.below(100) {
                0..=54 => {
                    let r = tree.insert(&key, &value);
                    let entry = model.entry(key.clone()).or_default();
                    let expect_dup = match dup {
                        Duplicates::Unique => !entry.is_empty(),
                        Duplicates::Multi => entry.contains(&value),
                        Duplicates::Overwrite => false,
                    };
                    if expect_dup {
                        assert!(matches!(r, Err(Error::DuplicateKey(_))), "{}: {r:?}", ctx(step));
                    } else {
                        r.unwrap_or_else(|e| panic!("{}: insert: {e}", ctx(step)));
                        if dup != Duplicates::Multi {
                            entry.clear();
                        }
                        entry.insert(value.clone());
                    }
                    if entry.is_empty() {
                        model.remove(&key);
                    }
                }
                55..=79 => {
                    let removed = tree.remove(&key).unwrap_or_else(|e| panic!("{}: remove: {e}", ctx(step)));
                    assert_eq!(removed, model.remove(&key).is_some(), "{}", ctx(step));
                }
                80..=89 => {
                    let got = tree.get_all(&key).unwrap();
                    let want: Vec<Vec<u8>> = model.get(&key).map(|s| s.iter().cloned().collect()).unwrap_or_default();
                    assert_eq!(got, want, "{}", ctx(step));
                }
                90..=93 => {
                    let other: Vec<u8> = (0..rng.below(6)).map(|_| b'a' + rng.below(4) as u8).collect();
                    let (lo, hi) = if other < key { (other, key.clone()) } else { (key.clone(), other) };
                    let lower =
                        if rng.below(2) == 0 { Bound::Included(lo.as_slice()) } else { Bound::Excluded(lo.as_slice()) };
                    let upper =
                        if rng.below(2) == 0 { Bound::Included(hi.as_slice()) } else { Bound::Excluded(hi.as_slice()) };
                    let got = tree.range(lower, upper).unwrap();
                    let empty_range = lo == hi && !matches!((lower, upper), (Bound::Included(_), Bound::Included(_)));
                    let want: Vec<(Vec<u8>, Vec<u8>)> = if empty_range {
                        Vec::new() // BTreeMap::range panics on (Excluded(x), Excluded(x))
                    } else {
                        model
                            .range::<[u8], _>((lower, upper))
                            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                            .collect()
                    };
                    assert_eq!(got, want, "{}", ctx(step));
                }
                94..=97 => {
                    store.commit().unwrap();
                    committed = model.clone();
                }
                _ => {
                    // Reopen without committing, after a crash or a clean close (which
                    // checkpoints): back to the committed state either way.
                    if rng.below(2) == 0 {
                        store.simulate_crash();
                    } else {
                        store.close().unwrap();
                    }
                    store = crate::store::tests::reopen(dir.path(), &sopts);
                    tree = BTree::open(&store, b"model", &topts).unwrap();
                    model = committed.clone();
                }
            }
            if step % 100 == 0 {
                tree.verify().unwrap_or_else(|e| panic!("{}: verify: {e}", ctx(step)));
                if let Some(c) = ceiling {
                    assert!(tree.stats().unwrap().keys_per_leaf_max <= u64::from(c), "{}", ctx(step));
                }
                let all = tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    model.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone()))).collect();
                assert_eq!(all, want, "{}", ctx(step));
                store.verify().unwrap();
            }
        }
    }
}
