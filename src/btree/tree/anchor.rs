//! The anchor: a tree's named root, its codec, and opening a tree from it.

use super::*;

/// Anchor metadata, kept as the named root's meta bytes (the root's id is the root page):
/// u32 magic "PCBT", u8 version, u8 duplicates, u8 custom order, u8 log2(page bytes),
/// u32 height, u32 0, u64 entries.
pub(super) const ANCHOR_MAGIC: &[u8; 4] = b"PCBT";
/// The tree format: 2 since internal slots record their separators' prefix words (format 1
/// trees, without them, are refused: dump them with the pcore that wrote them and load them).
pub(super) const ANCHOR_VERSION: u8 = 2;
pub(super) const ANCHOR_BYTES: usize = 24;

pub(super) fn encode_anchor(page_bytes: usize, dup: Duplicates, custom: bool, st: &State) -> [u8; ANCHOR_BYTES] {
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

pub(super) fn decode_anchor(name: &[u8], root_page: u64, m: &[u8]) -> Result<TreeDescription> {
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

/// The store's named roots that are not a tree's anchor (the host's own), in name order.
pub fn list_named_roots(store: &Store) -> Result<Vec<(Vec<u8>, crate::store::Root)>> {
    let mut out = Vec::new();
    for name in store.root_names()?.into_iter().filter(|n| !n.starts_with(ROOT_PREFIX)) {
        if let Some(root) = store.get_root(&name)? {
            out.push((name, root));
        }
    }
    Ok(out)
}

/// The tree's state as the store has it: from its anchor root, checked against the options
/// it is opened with, or, when the store has no such tree, a new empty root leaf (uncommitted).
pub(super) fn state_in_store(
    store: &Store,
    anchor: &[u8],
    pb: usize,
    duplicates: Duplicates,
    custom: bool,
) -> Result<State> {
    match anchored_state(store, anchor, pb, duplicates, custom)? {
        Some(st) => Ok(st),
        None => {
            let (id, _, _) = store.allocate(pb, KIND_LEAF)?;
            let mut image = vec![0u8; pb];
            page::build(&mut image, TYPE_LEAF, 0, &[] as &[Cell<'_>]);
            store.publish(id, &image)?;
            let st = State { root: id.raw(), height: 1, entries: 0, dropped: false, hint: LeafHint::default() };
            store.set_root(anchor, id.raw(), &encode_anchor(pb, duplicates, custom, &st))?;
            Ok(st)
        }
    }
}

/// The tree's state from its anchor root, checked against the options it is opened with;
/// `None` when the store has no such tree.
fn anchored_state(
    store: &Store,
    anchor: &[u8],
    pb: usize,
    duplicates: Duplicates,
    custom: bool,
) -> Result<Option<State>> {
    let name = &anchor[ROOT_PREFIX.len()..];
    let Some(root) = store.get_root(anchor)? else {
        return Ok(None);
    };
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
    Ok(Some(State { root: root.id, height: d.height, entries: d.entries, dropped: false, hint: LeafHint::default() }))
}

/// A tree's part in [`Store::abort`]: its state lock is held while the store rolls back,
/// then its root, height and count are read again from its committed anchor and its cursors
/// go stale. A tree created since the commit is gone, as if dropped: giving it a new empty
/// root would be a change that outlives the abort, durable at the next commit.
impl AbortHook for Inner {
    fn begin_abort(&self) -> Box<dyn AbortGuard + '_> {
        Box::new(Reload { inner: self, state: self.state.write() })
    }
}

pub(super) struct Reload<'a> {
    inner: &'a Inner,
    state: parking_lot::RwLockWriteGuard<'a, State>,
}

impl AbortGuard for Reload<'_> {
    fn reload(&mut self, store: &Store) -> Result<AfterAbort> {
        let i = self.inner;
        i.version.fetch_add(1, AtomicOrdering::AcqRel);
        // A dropped instance stays dropped (its handles answer `BadHandle`): it left the
        // store's attachments, and an abort that brings the tree back must not make a second
        // live instance of it beside the one a later open makes.
        if self.state.dropped {
            return Ok(AfterAbort::Reloaded);
        }
        match anchored_state(store, &i.anchor, i.page_bytes, i.duplicates, i.custom_order.is_some())? {
            Some(st) => {
                *self.state = st;
                Ok(AfterAbort::Reloaded)
            }
            None => {
                self.state.dropped = true;
                self.state.root = 0;
                self.state.entries = 0;
                Ok(AfterAbort::Gone { attachment: i.anchor.clone() })
            }
        }
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
        Ok(BTree { inner, view: None })
    }

    pub(super) fn load(store: &Store, anchor: &[u8], options: &TreeOptions) -> Result<Inner> {
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

    pub(crate) fn save_anchor_locked(&self, st: &State) -> Result<()> {
        self.store()?.set_root(&self.inner.anchor, st.root, &self.anchor_meta(st))
    }

    /// Records the root, height and entry count in the tree's named root.
    pub(super) fn save_anchor(&self, editor: &mut NodeEditor<'_>, st: &State) -> Result<()> {
        editor.set_root(&self.inner.anchor, st.root, &self.anchor_meta(st))
    }

    pub(super) fn anchor_meta(&self, st: &State) -> [u8; ANCHOR_BYTES] {
        encode_anchor(self.inner.page_bytes, self.inner.duplicates, self.inner.custom_order.is_some(), st)
    }
}
