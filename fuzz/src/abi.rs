//! Target `c_abi`: random sequences of C ABI calls (`pcore_*`), including closed, forged and
//! mistyped handles, stale and forged node ids, NULL pointers and oversize lengths, checked
//! against a model: every status and every byte read must be what the model predicts.
//!
//! Stores are in memory, or (when an input asks for it) a file store in a scratch directory on
//! tmpfs that can be closed and reopened (the model keeps what was committed) and opened
//! read-only beside the writer. Every handle is closed at the end of an input.

use arbitrary::Arbitrary;
use pcore::ffi::btree::*;
use pcore::ffi::cursor::*;
use pcore::ffi::store::*;
use pcore::ffi::types::*;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CString};
use std::ptr::{null, null_mut};

const MAX_CLASS: usize = 256 << 10;

/// A static buffer for large payloads and values: byte i is `i * 31 + i / 251` (not periodic
/// in any block size).
fn big() -> &'static [u8] {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| (0..MAX_CLASS + 40_000).map(|i| (i * 31 + i / 251) as u8).collect())
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct StoreRef(pub u8);
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct TreeRef(pub u8);
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct CursorRef(pub u8);
/// A node id: one the model knows (live, freed or stale), or a forged one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct NodeRef(pub u8);

/// Bytes passed as a (pointer, length) pair.
#[derive(Arbitrary, Debug, Clone)]
pub enum Data {
    Bytes(Vec<u8>),
    /// `len` bytes of the big buffer (above the largest class when len is large).
    Big(u32),
    /// NULL with this length (0 is a valid empty buffer).
    Null(u8),
    /// A real pointer with a length above isize::MAX: refused before anything is read.
    HugeLen,
}

impl Data {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Data::Bytes(b) => Some(b),
            Data::Big(n) => Some(&big()[..(*n as usize) % big().len()]),
            Data::Null(0) => Some(&[]),
            _ => None,
        }
    }
    fn ptr_len(&self) -> (*const u8, usize) {
        match self {
            Data::Null(n) => (null(), *n as usize),
            Data::HugeLen => (big().as_ptr(), usize::MAX),
            _ => {
                let b = self.bytes().expect("bytes");
                (b.as_ptr(), b.len())
            }
        }
    }
    /// The status the argument check gives, if it fails.
    fn arg_error(&self) -> Option<i32> {
        match self {
            Data::Null(n) if *n > 0 => Some(PCORE_INVALID_ARGUMENT),
            Data::HugeLen => Some(PCORE_TOO_LARGE),
            _ => None,
        }
    }
}

/// A tree key: mostly from a small set (so keys repeat), sometimes arbitrary or oversize.
#[derive(Arbitrary, Debug, Clone)]
pub enum Key {
    Small(u8),
    Raw(Vec<u8>),
    /// max_key_bytes + n (n = 0 fits exactly).
    Long(u8),
    Null(u8),
    HugeLen,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Value {
    Small(u8),
    Raw(Vec<u8>),
    /// An overflow value: `len` bytes of the big buffer.
    Big(u32),
    Null(u8),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Bound {
    Unbounded,
    Included(Key),
    Excluded(Key),
    BadKind,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum InPlaceEnd {
    /// publish_in_place with the written length minus `cut` (capacity + 1 when `over`).
    InPlace {
        cut: u8,
        over: bool,
    },
    /// publish from inside the node's own block.
    FromOwn {
        offset: u16,
        len: u16,
    },
    Abandon,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    OpenMemory { new_id_growth: bool },
    OpenFile,
    Reopen,
    ReadOnlySnapshot,
    OpenBad(u8),
    Close(StoreRef),
    Allocate { store: StoreRef, min_len: u32, kind: u8, null_out: bool, big: bool },
    Publish { store: StoreRef, node: NodeRef, data: Data, null_out_id: bool },
    WriteInPlace { store: StoreRef, node: NodeRef, data: Vec<u8>, end: InPlaceEnd },
    Read { store: StoreRef, node: NodeRef, null_out: bool },
    Info { store: StoreRef, node: NodeRef, null_out: bool },
    Free { store: StoreRef, node: NodeRef },
    Retire { store: StoreRef, node: NodeRef, ahead: u8 },
    SetRoot { store: StoreRef, name: u8, id: NodeRef, meta: Data },
    GetRoot { store: StoreRef, name: u8, meta_cap: u16, null_buf: bool, null_id: bool },
    Commit(StoreRef),
    Checkpoint(StoreRef),
    Stats { store: StoreRef, struct_size: u8 },
    ClassStats { store: StoreRef, class: u8 },
    Verify(StoreRef),
    TreeOpen { store: StoreRef, name: u8, page: u8, dup: u8, custom: bool, flags: u8, max_entries: u8, null_opt: bool },
    TreeClose(TreeRef),
    TreeInsert { tree: TreeRef, key: Key, value: Value },
    TreeGet { tree: TreeRef, key: Key, cap: u16, null_buf: bool },
    TreeRemove { tree: TreeRef, key: Key, null_out: bool },
    TreeRemovePair { tree: TreeRef, key: Key, value: Value },
    TreeLen(TreeRef),
    TreeVerify(TreeRef),
    TreeStats { tree: TreeRef, struct_size: u8 },
    TreeBulkLoad { tree: TreeRef, n: u8, unsorted: bool, big_value: bool },
    CursorOpen(TreeRef),
    CursorClose(CursorRef),
    CursorBounds { cursor: CursorRef, lower: Bound, upper: Bound },
    CursorFirst(CursorRef),
    CursorLast(CursorRef),
    CursorSeek { cursor: CursorRef, key: Key },
    CursorNext(CursorRef),
    CursorPrev(CursorRef),
    CursorGet { cursor: CursorRef, null_out: bool },
}

// ---------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Reserved,
    Live,
}

#[derive(Debug, Clone)]
struct Node {
    bytes: Vec<u8>,
    kind: u8,
    capacity: usize,
    state: NodeState,
    dirty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dup {
    Unique,
    Overwrite,
    Multi,
}

#[derive(Debug, Clone)]
struct TreeModel {
    page_bytes: u32,
    dup: Dup,
    custom: bool,
    /// Sorted by the tree's order (key, then value bytes in a Multi tree).
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bumped by every change and every tree handle closed: cursors check it.
    version: u64,
}

impl TreeModel {
    fn cmp_keys(&self, a: &[u8], b: &[u8]) -> Ordering {
        if self.custom {
            b.cmp(a)
        } else {
            a.cmp(b)
        }
    }
    fn cmp_entries(&self, a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> Ordering {
        let c = self.cmp_keys(a.0, b.0);
        if self.dup == Dup::Multi {
            c.then_with(|| a.1.cmp(b.1))
        } else {
            c
        }
    }
    fn max_key(&self) -> usize {
        max_key(self.page_bytes)
    }
    fn max_value(&self) -> usize {
        if self.dup == Dup::Multi {
            self.page_bytes as usize / 16
        } else {
            usize::MAX
        }
    }
    fn find_key(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }
    /// First entry whose key is >= `key` in the tree's order.
    fn lower_bound(&self, key: &[u8]) -> usize {
        self.entries.iter().position(|(k, _)| self.cmp_keys(k, key) != Ordering::Less).unwrap_or(self.entries.len())
    }
}

/// The longest key, as the header tells a host (`pcore_tree_max_key_bytes`).
fn max_key(page_bytes: u32) -> usize {
    let mut max = 0usize;
    // SAFETY: `max` is writable.
    let rc = unsafe { pcore_tree_max_key_bytes(page_bytes, &mut max) };
    assert_eq!(rc, PCORE_OK, "max key bytes of {page_bytes}-byte pages");
    max
}

/// What a store holds: its current state and its committed state (for a reopen).
#[derive(Debug, Clone, Default)]
struct StoreModel {
    nodes: HashMap<u64, Node>,
    /// Ids freed and not known to be reused: freeing them again is DOUBLE_FREE.
    freed: HashSet<u64>,
    /// Every id the store ever handed out (for picking ids to pass).
    known: Vec<u64>,
    /// Live nodes freed since the last commit.
    freeing: HashSet<u64>,
    retired: Vec<(u64, u64)>,
    roots: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    trees: HashMap<Vec<u8>, TreeModel>,
    epoch: u64,
    committed_nodes: HashMap<u64, Node>,
    committed_roots: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    committed_trees: HashMap<Vec<u8>, TreeModel>,
    /// Tree pages take node handles the model does not see: a freed id's handle may have been
    /// reused by a page, so freeing it again may be NOT_FOUND rather than DOUBLE_FREE.
    trees_used: bool,
    new_id_growth: bool,
}

impl StoreModel {
    fn learn(&mut self, id: u64) {
        let handle = id >> 16;
        self.freed.retain(|f| f >> 16 != handle);
        self.known.push(id);
    }

    fn free(&mut self, id: u64) {
        let n = self.nodes.remove(&id).expect("visible");
        if n.state == NodeState::Live {
            self.freeing.insert(id);
        }
        self.freed.insert(id);
    }

    fn commit(&mut self) -> u64 {
        let epoch = self.epoch + 1;
        let due: Vec<u64> = self.retired.iter().filter(|(e, _)| *e <= epoch).map(|&(_, id)| id).collect();
        self.retired.retain(|(e, _)| *e > epoch);
        for id in due {
            if self.nodes.contains_key(&id) {
                self.free(id);
            }
        }
        for n in self.nodes.values_mut() {
            n.state = NodeState::Live;
            n.dirty = false;
        }
        self.freeing.clear();
        self.committed_nodes = self.nodes.clone();
        self.committed_roots = self.roots.clone();
        self.committed_trees = self.trees.clone();
        self.epoch = epoch;
        epoch
    }

    /// The state after a close and reopen: what was committed.
    fn reopened(&self) -> StoreModel {
        let mut m = StoreModel {
            nodes: self.committed_nodes.clone(),
            freed: self.freed.clone(),
            known: self.known.clone(),
            roots: self.committed_roots.clone(),
            trees: self.committed_trees.clone(),
            epoch: self.epoch,
            committed_nodes: self.committed_nodes.clone(),
            committed_roots: self.committed_roots.clone(),
            committed_trees: self.committed_trees.clone(),
            trees_used: self.trees_used,
            new_id_growth: self.new_id_growth,
            ..StoreModel::default()
        };
        for t in m.trees.values_mut() {
            t.version = 0;
        }
        // Nodes never committed are gone, their ids freed; frees never committed are undone.
        for id in self.nodes.keys().chain(&self.freeing) {
            if !m.nodes.contains_key(id) {
                m.freed.insert(*id);
            }
        }
        for id in m.nodes.keys() {
            m.freed.remove(id);
        }
        m
    }
}

struct StoreSlot {
    token: *mut PcoreStore,
    open: bool,
    file: bool,
    /// Which open this is: trees and cursors belong to one session.
    session: u64,
    model: StoreModel,
}

struct TreeSlot {
    token: *mut PcoreTree,
    open: bool,
    store: usize,
    session: u64,
    name: Vec<u8>,
}

#[derive(Clone)]
struct CursorSlot {
    token: *mut PcoreCursor,
    open: bool,
    store: usize,
    session: u64,
    tree: Vec<u8>,
    version: u64,
    pos: Option<usize>,
    lower: std::ops::Bound<Vec<u8>>,
    upper: std::ops::Bound<Vec<u8>>,
}

pub struct Harness {
    stores: Vec<StoreSlot>,
    trees: Vec<TreeSlot>,
    cursors: Vec<CursorSlot>,
    sessions: u64,
    dir: std::path::PathBuf,
    step: usize,
}

fn name_of(sel: u8) -> Vec<u8> {
    match sel % 6 {
        0 => Vec::new(),
        1 => b"main".to_vec(),
        2 => b"r1".to_vec(),
        3 => b"r2".to_vec(),
        4 => vec![b'n'; 255],
        _ => vec![b'n'; 256],
    }
}

fn tree_name(sel: u8) -> Vec<u8> {
    match sel % 4 {
        0 => b"a".to_vec(),
        1 => b"b".to_vec(),
        2 => Vec::new(),
        _ => b"c".to_vec(),
    }
}

unsafe extern "C" fn reverse(_ctx: *mut c_void, a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> i32 {
    // SAFETY: pcore passes valid slices.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, a_len), std::slice::from_raw_parts(b, b_len)) };
    match b.cmp(a) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// A key's bytes for a tree of `page_bytes` pages, and its (pointer, length).
struct KeyArg {
    bytes: Option<Vec<u8>>,
    ptr: *const u8,
    len: usize,
    arg_error: Option<i32>,
}

fn key_arg(key: &Key, page_bytes: u32) -> KeyArg {
    let make = |v: Vec<u8>| KeyArg {
        ptr: if v.is_empty() { null() } else { v.as_ptr() },
        len: v.len(),
        bytes: Some(v),
        arg_error: None,
    };
    match key {
        Key::Small(b) => make(format!("k{:02}", b % 40).into_bytes()),
        Key::Raw(v) => make(v.clone()),
        Key::Long(n) => make(vec![b'L'; max_key(page_bytes) + (*n as usize % 3)]),
        Key::Null(0) => KeyArg { bytes: Some(Vec::new()), ptr: null(), len: 0, arg_error: None },
        Key::Null(n) => KeyArg { bytes: None, ptr: null(), len: *n as usize, arg_error: Some(PCORE_INVALID_ARGUMENT) },
        Key::HugeLen => KeyArg { bytes: None, ptr: big().as_ptr(), len: usize::MAX, arg_error: Some(PCORE_TOO_LARGE) },
    }
}

fn value_arg(v: &Value) -> KeyArg {
    let make = |v: Vec<u8>| KeyArg { ptr: v.as_ptr(), len: v.len(), bytes: Some(v), arg_error: None };
    match v {
        Value::Small(b) => make(vec![*b; *b as usize % 9]),
        Value::Raw(v) => make(v.clone()),
        Value::Big(n) => make(big()[..(*n as usize) % (MAX_CLASS + 2000)].to_vec()),
        Value::Null(0) => KeyArg { bytes: Some(Vec::new()), ptr: null(), len: 0, arg_error: None },
        Value::Null(n) => {
            KeyArg { bytes: None, ptr: null(), len: *n as usize, arg_error: Some(PCORE_INVALID_ARGUMENT) }
        }
    }
}

/// (key, value) pointers for a C call; the KeyArg keeps the bytes alive.
fn ptr(k: &KeyArg) -> *const c_void {
    match &k.bytes {
        Some(b) if !b.is_empty() => b.as_ptr().cast(),
        _ => k.ptr.cast(),
    }
}

#[track_caller]
/// A versioned output struct of the ABI, zeroed, with its leading struct_size set.
fn sized<T>() -> T {
    let mut v = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: the ABI's versioned structs hold only integers, floats and pointers (all valid
    // when zero), and start with a u64 struct_size.
    unsafe {
        v.as_mut_ptr().cast::<u64>().write(std::mem::size_of::<T>() as u64);
        v.assume_init()
    }
}

fn check(step: usize, what: &str, got: i32, want: &[i32]) {
    if !want.contains(&got) {
        // SAFETY: pcore's per-thread message, read at once.
        let msg = unsafe { std::ffi::CStr::from_ptr(pcore::ffi::version::pcore_last_error_message()) };
        panic!("step {step}: {what}: status {got} ({msg:?}), model expects one of {want:?}");
    }
}

/// A call through a closed or forged handle: the library checks its arguments' pointers and
/// lengths before it looks the handle up, so an argument error comes first.
fn check_dead(step: usize, what: &str, rc: i32, arg_error: Option<i32>) {
    check(step, what, rc, &[arg_error.unwrap_or(PCORE_BAD_HANDLE)]);
}

fn class_capacity(len: usize) -> usize {
    len.max(64).next_power_of_two()
}

fn growth_capacity(len: usize) -> usize {
    class_capacity(len.saturating_mul(2)).min(MAX_CLASS)
}

enum Resolved {
    Slot(usize),
    Bad,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = crate::dir::scratch_dir("abi");
        let _ = std::fs::remove_dir_all(&dir);
        Harness { stores: Vec::new(), trees: Vec::new(), cursors: Vec::new(), sessions: 0, dir, step: 0 }
    }

    fn forged<T>(&self, sel: u8) -> *mut T {
        let real = self.stores.first().map(|s| s.token as usize);
        let tree = self.trees.first().map(|t| t.token as usize);
        let v = match sel % 5 {
            0 => 0,
            1 => 0x1234_5678,
            // The store type and a generation, at an index no registry reaches.
            2 => (real.unwrap_or(0x5C << 56) & !0xFFFF_FFFF) | 0xFFFF_FFF0,
            3 => tree.unwrap_or(0x5D << 56 | 1),
            _ => usize::MAX,
        };
        v as *mut T
    }

    fn store_ref(&self, r: StoreRef) -> (*mut PcoreStore, Resolved) {
        let i = r.0 as usize;
        if i < self.stores.len() + 3 && i < self.stores.len() {
            let s = &self.stores[i];
            (s.token, if s.open { Resolved::Slot(i) } else { Resolved::Bad })
        } else {
            (self.forged(r.0), Resolved::Bad)
        }
    }

    fn tree_ref(&self, r: TreeRef) -> (*mut PcoreTree, Option<usize>) {
        let i = r.0 as usize;
        if i < self.trees.len() {
            (self.trees[i].token, self.trees[i].open.then_some(i))
        } else {
            let v = match r.0 % 4 {
                0 => 0,
                1 => self.stores.first().map_or(3, |s| s.token as usize),
                2 => self.trees.first().map_or(5, |t| (t.token as usize & !0xFFFF_FFFF) | 0xFFFF_FFF1),
                _ => 0xFFFF_0000_0000_0001,
            };
            (v as *mut PcoreTree, None)
        }
    }

    fn cursor_ref(&self, r: CursorRef) -> (*mut PcoreCursor, Option<usize>) {
        let i = r.0 as usize;
        if i < self.cursors.len() {
            (self.cursors[i].token, self.cursors[i].open.then_some(i))
        } else {
            let v = match r.0 % 3 {
                0 => 0,
                1 => self.trees.first().map_or(9, |t| t.token as usize),
                _ => self.cursors.first().map_or(11, |c| (c.token as usize & !0xFFFF_FFFF) | 0xFFFF_FFF2),
            };
            (v as *mut PcoreCursor, None)
        }
    }

    /// An id to pass: a known one (live, freed or stale), or a forged one that no store issues.
    fn node_id(&self, store: Option<usize>, r: NodeRef) -> u64 {
        let known = store.map(|s| &self.stores[s].model.known);
        match known {
            Some(k) if !k.is_empty() && r.0 < 200 => k[r.0 as usize % k.len()],
            _ => match r.0 % 4 {
                0 => 0,
                1 => u64::MAX,
                2 => (1u64 << 40) << 16 | 1,
                _ => 5 << 16, // tag 0: never issued
            },
        }
    }

    fn store_alive(&self, store: usize, session: u64) -> bool {
        let s = &self.stores[store];
        s.open && s.session == session
    }

    fn open_options(flags: u64, growth: u64) -> PcoreStoreOptions {
        let mut o = std::mem::MaybeUninit::<PcoreStoreOptions>::uninit();
        // SAFETY: a writable PcoreStoreOptions.
        assert_eq!(
            unsafe { pcore_store_options_init_sized(o.as_mut_ptr(), std::mem::size_of::<PcoreStoreOptions>()) },
            PCORE_OK
        );
        // SAFETY: initialized by the call above.
        let mut o = unsafe { o.assume_init() };
        o.flags = flags;
        o.growth_policy = growth;
        o.durability = PCORE_DURABILITY_EVENTUAL;
        o
    }

    fn open_file(&mut self, flags: u64) -> (i32, *mut PcoreStore) {
        let o = Self::open_options(flags, PCORE_GROWTH_STABLE_ID);
        let path = CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
        let mut out = null_mut();
        // SAFETY: valid path, options and output.
        let rc = unsafe { pcore_store_open(path.as_ptr(), &o, &mut out) };
        (rc, out)
    }

    fn new_slot(&mut self, token: *mut PcoreStore, file: bool, model: StoreModel) {
        self.sessions += 1;
        self.stores.push(StoreSlot { token, open: true, file, session: self.sessions, model });
    }

    fn file_slot(&self) -> Option<usize> {
        self.stores.iter().rposition(|s| s.file && s.open)
    }

    pub fn run(&mut self, ops: &[Op]) {
        for op in ops {
            self.step += 1;
            self.apply(op);
        }
    }

    fn apply(&mut self, op: &Op) {
        let step = self.step;
        match op {
            Op::OpenMemory { new_id_growth } => {
                if self.stores.len() >= 6 {
                    return;
                }
                let growth = if *new_id_growth { PCORE_GROWTH_NEW_ID } else { PCORE_GROWTH_STABLE_ID };
                let o = Self::open_options(PCORE_OPEN_IN_MEMORY, growth);
                let mut out = null_mut();
                // SAFETY: valid options and output; dir NULL as in-memory requires.
                let rc = unsafe { pcore_store_open(null(), &o, &mut out) };
                check(step, "open in memory", rc, &[PCORE_OK]);
                let model = StoreModel { new_id_growth: *new_id_growth, ..StoreModel::default() };
                self.new_slot(out, false, model);
            }
            Op::OpenFile => {
                if self.stores.len() >= 6 {
                    return;
                }
                let busy = self.file_slot().is_some();
                let existed = self.stores.iter().any(|s| s.file);
                let (rc, out) = self.open_file(0);
                check(step, "open file store", rc, &[if busy { PCORE_BUSY } else { PCORE_OK }]);
                if rc == PCORE_OK {
                    let model = match self.stores.iter().rposition(|s| s.file) {
                        Some(i) if existed => self.stores[i].model.reopened(),
                        _ => StoreModel::default(),
                    };
                    self.new_slot(out, true, model);
                }
            }
            Op::Reopen => {
                let Some(i) = self.file_slot() else { return };
                check(step, "close before reopen", pcore_store_close(self.stores[i].token), &[PCORE_OK]);
                self.stores[i].open = false;
                let (rc, out) = self.open_file(0);
                check(step, "reopen", rc, &[PCORE_OK]);
                let model = self.stores[i].model.reopened();
                self.new_slot(out, true, model);
                self.compare_store(self.stores.len() - 1);
            }
            Op::ReadOnlySnapshot => {
                let Some(i) = self.file_slot() else { return };
                let (rc, out) = self.open_file(PCORE_OPEN_READ_ONLY);
                check(step, "open read-only beside the writer", rc, &[PCORE_OK]);
                let model = self.stores[i].model.reopened();
                self.new_slot(out, true, model);
                let ro = self.stores.len() - 1;
                self.compare_store(ro);
                // A read-only store refuses every change, and changes nothing.
                let mut a = sized::<PcoreAllocResult>();
                // SAFETY: valid output.
                let rc = unsafe { pcore_node_allocate(out, 10, 1, &mut a) };
                check(step, "allocate read-only", rc, &[PCORE_READ_ONLY]);
                // SAFETY: NULL output allowed.
                check(step, "commit read-only", unsafe { pcore_store_commit(out, null_mut()) }, &[PCORE_READ_ONLY]);
                check(step, "close read-only", pcore_store_close(out), &[PCORE_OK]);
                self.stores[ro].open = false;
                self.stores[ro].file = false;
            }
            Op::OpenBad(which) => {
                let mut o = Self::open_options(PCORE_OPEN_IN_MEMORY, 0);
                let mut out = null_mut();
                let path = CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
                let empty = CString::new("").unwrap();
                // SAFETY: every pointer is valid or NULL as the case tests.
                let (rc, want) = unsafe {
                    match which % 8 {
                        0 => (pcore_store_open(null(), &o, null_mut()), PCORE_INVALID_ARGUMENT),
                        1 => (pcore_store_open(path.as_ptr(), &o, &mut out), PCORE_INVALID_ARGUMENT),
                        2 => {
                            o.flags = 0x40;
                            (pcore_store_open(null(), &o, &mut out), PCORE_INVALID_ARGUMENT)
                        }
                        3 => {
                            o.durability = 9;
                            (pcore_store_open(null(), &o, &mut out), PCORE_INVALID_ARGUMENT)
                        }
                        4 => {
                            o.struct_size = 6;
                            (pcore_store_open(null(), &o, &mut out), PCORE_INVALID_ARGUMENT)
                        }
                        5 => {
                            o.min_class_bytes = 100;
                            (pcore_store_open(null(), &o, &mut out), PCORE_INVALID_ARGUMENT)
                        }
                        6 => {
                            o.flags = 0;
                            (pcore_store_open(empty.as_ptr(), &o, &mut out), PCORE_INVALID_ARGUMENT)
                        }
                        _ => {
                            o.flags = PCORE_OPEN_READ_ONLY;
                            let missing = CString::new(format!("{}-missing", self.dir.display())).unwrap();
                            (pcore_store_open(missing.as_ptr(), &o, &mut out), PCORE_NOT_FOUND)
                        }
                    }
                };
                check(step, "bad open", rc, &[want]);
            }
            Op::Close(r) => {
                let (h, res) = self.store_ref(*r);
                let rc = pcore_store_close(h);
                match res {
                    Resolved::Slot(i) => {
                        check(step, "close", rc, &[PCORE_OK]);
                        self.stores[i].open = false;
                    }
                    Resolved::Bad => check(step, "close bad handle", rc, &[PCORE_BAD_HANDLE]),
                }
            }
            Op::Allocate { store, min_len, kind, null_out, big } => {
                let (h, res) = self.store_ref(*store);
                let min_len = if *big { *min_len as usize % (MAX_CLASS + 1000) } else { *min_len as usize % 600 };
                let mut out = sized::<PcoreAllocResult>();
                let out_ptr = if *null_out { null_mut() } else { &mut out as *mut PcoreAllocResult };
                // SAFETY: NULL or a writable output.
                let rc = unsafe { pcore_node_allocate(h, min_len, *kind, out_ptr) };
                let Resolved::Slot(i) = res else { return check(step, "allocate", rc, &[PCORE_BAD_HANDLE]) };
                let want = if *null_out || *kind == 0 {
                    PCORE_INVALID_ARGUMENT
                } else if min_len > MAX_CLASS {
                    PCORE_TOO_LARGE
                } else {
                    PCORE_OK
                };
                check(step, "allocate", rc, &[want]);
                if rc != PCORE_OK {
                    return;
                }
                let a = out;
                let capacity = class_capacity(min_len);
                assert_eq!(a.capacity, capacity, "step {step}: capacity");
                // SAFETY: the block is `capacity` writable bytes until published or freed.
                let block = unsafe { std::slice::from_raw_parts(a.writable as *const u8, a.capacity) };
                assert!(block.iter().all(|&b| b == 0), "step {step}: a new block is not zero-filled");
                let m = &mut self.stores[i].model;
                assert!(!m.nodes.contains_key(&a.id), "step {step}: id {:#x} handed out twice", a.id);
                m.learn(a.id);
                m.nodes.insert(
                    a.id,
                    Node { bytes: Vec::new(), kind: *kind, capacity, state: NodeState::Reserved, dirty: true },
                );
            }
            Op::Publish { store, node, data, null_out_id } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let (p, len) = data.ptr_len();
                let null_out_id = *null_out_id && !si.is_some_and(|i| self.stores[i].model.new_id_growth);
                let mut out_id = 0u64;
                let out_ptr = if null_out_id { null_mut() } else { &mut out_id as *mut u64 };
                // SAFETY: `p` has `len` readable bytes, or is NULL / has a huge length as the
                // case tests (refused before any read).
                let rc = unsafe { pcore_node_publish(h, id, p.cast(), len, out_ptr) };
                let Some(i) = si else { return check(step, "publish", rc, &[PCORE_BAD_HANDLE]) };
                if let Some(e) = data.arg_error() {
                    return check(step, "publish bad data", rc, &[e]);
                }
                let bytes = data.bytes().expect("valid data").to_vec();
                let m = &mut self.stores[i].model;
                let Some(n) = m.nodes.get(&id).cloned() else {
                    return check(step, "publish unknown id", rc, &[PCORE_NOT_FOUND]);
                };
                if bytes.len() > MAX_CLASS {
                    return check(step, "publish too large", rc, &[PCORE_TOO_LARGE]);
                }
                check(step, "publish", rc, &[PCORE_OK]);
                if bytes.len() <= n.capacity {
                    assert!(null_out_id || out_id == id, "step {step}: publish changed the id");
                    let n = m.nodes.get_mut(&id).unwrap();
                    n.bytes = bytes;
                    n.dirty = true;
                } else if !m.new_id_growth {
                    assert!(null_out_id || out_id == id, "step {step}: stable-id growth changed the id");
                    let n = m.nodes.get_mut(&id).unwrap();
                    n.capacity = growth_capacity(bytes.len());
                    n.bytes = bytes;
                    n.dirty = true;
                } else {
                    assert_ne!(out_id, id, "step {step}: new-id growth kept the id");
                    m.free(id);
                    assert!(!m.nodes.contains_key(&out_id), "step {step}: new id already in use");
                    m.learn(out_id);
                    let node = Node {
                        capacity: growth_capacity(bytes.len()),
                        bytes,
                        kind: n.kind,
                        state: NodeState::Reserved,
                        dirty: true,
                    };
                    m.nodes.insert(out_id, node);
                }
            }
            Op::WriteInPlace { store, node, data, end } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let mut p: *mut c_void = null_mut();
                let mut cap = 0usize;
                // SAFETY: valid outputs.
                let rc = unsafe { pcore_node_write_ptr(h, id, &mut p, &mut cap) };
                let Some(i) = si else { return check(step, "write_ptr", rc, &[PCORE_BAD_HANDLE]) };
                let Some(old) = self.stores[i].model.nodes.get(&id).cloned() else {
                    return check(step, "write_ptr unknown id", rc, &[PCORE_NOT_FOUND]);
                };
                check(step, "write_ptr", rc, &[PCORE_OK]);
                assert_eq!(cap, old.capacity, "step {step}: write_ptr capacity");
                // SAFETY: `cap` writable bytes at `p` until the node is next published or freed.
                let block = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, cap) };
                assert_eq!(&block[..old.bytes.len()], &old.bytes[..], "step {step}: write_ptr shows other bytes");
                let n = data.len().min(cap);
                block[..n].copy_from_slice(&data[..n]);
                let written = &data[..n];
                // What reads show when the mutation is not published: the old length over the
                // block as the host left it.
                let mut overlay = old.bytes.clone();
                let k = overlay.len().min(n);
                overlay[..k].copy_from_slice(&written[..k]);
                let m = &mut self.stores[i].model;
                let node = m.nodes.get_mut(&id).unwrap();
                node.dirty = true;
                node.bytes = overlay;
                match end {
                    InPlaceEnd::InPlace { cut, over } => {
                        let len = if *over { cap + 1 + *cut as usize } else { n.saturating_sub(*cut as usize) };
                        let rc = pcore_node_publish_in_place(h, id, len);
                        if *over {
                            check(step, "publish_in_place over capacity", rc, &[PCORE_TOO_LARGE]);
                        } else {
                            check(step, "publish_in_place", rc, &[PCORE_OK]);
                            node.bytes = written[..len].to_vec();
                        }
                    }
                    InPlaceEnd::FromOwn { offset, len } => {
                        let (offset, len) = (*offset as usize % cap, *len as usize % (cap + 8));
                        let mut out_id = 0u64;
                        // SAFETY: the source lies inside the node's own block (pcore copies
                        // with overlap allowed and checks the range against the block).
                        let rc =
                            unsafe { pcore_node_publish(h, id, (p as *const u8).add(offset).cast(), len, &mut out_id) };
                        if offset + len > cap {
                            check(step, "publish from own block, past its end", rc, &[PCORE_INVALID_ARGUMENT]);
                        } else if offset + len <= n {
                            check(step, "publish from own block", rc, &[PCORE_OK]);
                            assert_eq!(out_id, id, "step {step}");
                            node.bytes = written[offset..offset + len].to_vec();
                        } else {
                            // Bytes past what this step wrote: whatever the block held. Publish
                            // them and learn them by reading.
                            check(step, "publish from own block (tail)", rc, &[PCORE_OK]);
                            let mut b = PcoreNodeBytes { data: null(), len: 0 };
                            // SAFETY: valid output.
                            check(step, "read", unsafe { pcore_node_read(h, id, &mut b) }, &[PCORE_OK]);
                            // SAFETY: pcore's bytes, valid until the node is next written.
                            let got = unsafe { std::slice::from_raw_parts(b.data as *const u8, b.len) };
                            assert_eq!(got.len(), len, "step {step}");
                            assert_eq!(&got[..n.saturating_sub(offset)], &written[offset.min(n)..], "step {step}");
                            node.bytes = got.to_vec();
                        }
                    }
                    InPlaceEnd::Abandon => {}
                }
            }
            Op::Read { store, node, null_out } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let mut b = PcoreNodeBytes { data: std::ptr::dangling(), len: 99 };
                let out = if *null_out { null_mut() } else { &mut b as *mut PcoreNodeBytes };
                // SAFETY: NULL or a writable output.
                let rc = unsafe { pcore_node_read(h, id, out) };
                let Some(i) = si else {
                    check(step, "read", rc, &[PCORE_BAD_HANDLE]);
                    return assert!(
                        *null_out || (b.data.is_null() && b.len == 0),
                        "step {step}: read left its output set"
                    );
                };
                if *null_out {
                    return check(step, "read NULL out", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                match self.stores[i].model.nodes.get(&id) {
                    None => {
                        check(step, "read unknown", rc, &[PCORE_NOT_FOUND]);
                        assert!(b.data.is_null() && b.len == 0, "step {step}: read left its output set");
                    }
                    Some(n) => {
                        check(step, "read", rc, &[PCORE_OK]);
                        // SAFETY: pcore's bytes, valid until the node is next written.
                        let got = unsafe { std::slice::from_raw_parts(b.data as *const u8, b.len) };
                        assert_eq!(got, &n.bytes[..], "step {step}: read {id:#x}");
                    }
                }
            }
            Op::Info { store, node, null_out } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let mut info = sized::<PcoreNodeInfo>();
                let out = if *null_out { null_mut() } else { &mut info as *mut PcoreNodeInfo };
                // SAFETY: NULL or a writable output.
                let rc = unsafe { pcore_node_info(h, id, out) };
                let Some(i) = si else { return check(step, "info", rc, &[PCORE_BAD_HANDLE]) };
                if *null_out {
                    return check(step, "info NULL out", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                match self.stores[i].model.nodes.get(&id) {
                    None => check(step, "info unknown", rc, &[PCORE_NOT_FOUND]),
                    Some(n) => {
                        check(step, "info", rc, &[PCORE_OK]);
                        let want = (
                            id,
                            n.bytes.len() as u64,
                            n.capacity as u64,
                            u64::from(n.kind),
                            u64::from(n.state == NodeState::Live),
                            u64::from(n.dirty),
                        );
                        let got = (info.id, info.len, info.capacity, info.kind, info.committed, info.dirty);
                        assert_eq!(got, want, "step {step}: info (id, len, capacity, kind, committed, dirty)");
                    }
                }
            }
            Op::Free { store, node } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let rc = pcore_node_free(h, id, 0);
                let Some(i) = si else { return check(step, "free", rc, &[PCORE_BAD_HANDLE]) };
                let m = &mut self.stores[i].model;
                if m.nodes.contains_key(&id) {
                    check(step, "free", rc, &[PCORE_OK]);
                    m.free(id);
                } else if m.freed.contains(&id) {
                    let want: &[i32] =
                        if m.trees_used { &[PCORE_DOUBLE_FREE, PCORE_NOT_FOUND] } else { &[PCORE_DOUBLE_FREE] };
                    check(step, "free again", rc, want);
                } else {
                    check(step, "free unknown", rc, &[PCORE_NOT_FOUND]);
                }
            }
            Op::Retire { store, node, ahead } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let id = self.node_id(si, *node);
                let epoch = si.map_or(0, |i| self.stores[i].model.epoch) + u64::from(*ahead % 4);
                let rc = pcore_node_retire(h, id, epoch, 0);
                let Some(i) = si else { return check(step, "retire", rc, &[PCORE_BAD_HANDLE]) };
                let m = &mut self.stores[i].model;
                if m.nodes.contains_key(&id) {
                    check(step, "retire", rc, &[PCORE_OK]);
                    m.retired.push((epoch, id));
                } else {
                    check(step, "retire unknown", rc, &[PCORE_NOT_FOUND]);
                }
            }
            Op::SetRoot { store, name, id, meta } => {
                let (h, res) = self.store_ref(*store);
                let si = match res {
                    Resolved::Slot(i) => Some(i),
                    Resolved::Bad => None,
                };
                let name = name_of(*name);
                let id = self.node_id(si, *id);
                let (mp, ml) = meta.ptr_len();
                // SAFETY: `name` is readable; `mp` as the Data case says.
                let rc = unsafe { pcore_root_set(h, name.as_ptr().cast(), name.len(), id, mp.cast(), ml) };
                let Some(i) = si else { return check(step, "set_root", rc, &[PCORE_BAD_HANDLE]) };
                if let Some(e) = meta.arg_error() {
                    return check(step, "set_root bad meta", rc, &[e]);
                }
                let meta = meta.bytes().unwrap();
                if name.len() > 255 || meta.len() > 4096 {
                    return check(step, "set_root too long", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "set_root", rc, &[PCORE_OK]);
                self.stores[i].model.roots.insert(name, (id, meta.to_vec()));
            }
            Op::GetRoot { store, name, meta_cap, null_buf, null_id } => {
                let (h, res) = self.store_ref(*store);
                let name = name_of(*name);
                let cap = *meta_cap as usize % 5000;
                let mut buf = vec![0xEEu8; cap];
                let mut out_id = 0u64;
                let mut out_len = usize::MAX;
                let bp = if *null_buf { null_mut() } else { buf.as_mut_ptr() };
                let ip = if *null_id { null_mut() } else { &mut out_id as *mut u64 };
                // SAFETY: `bp` has `cap` writable bytes or is NULL as the case tests.
                let rc =
                    unsafe { pcore_root_get(h, name.as_ptr().cast(), name.len(), ip, bp.cast(), cap, &mut out_len) };
                let Resolved::Slot(i) = res else { return check(step, "get_root", rc, &[PCORE_BAD_HANDLE]) };
                if *null_id || (*null_buf && cap > 0) || name.len() > 255 {
                    return check(step, "get_root bad args", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                match self.stores[i].model.roots.get(&name) {
                    None => check(step, "get_root missing", rc, &[PCORE_NOT_FOUND]),
                    Some((id, meta)) => {
                        check(step, "get_root", rc, &[PCORE_OK]);
                        assert_eq!((out_id, out_len), (*id, meta.len()), "step {step}: root id and meta length");
                        let n = meta.len().min(cap);
                        assert_eq!(&buf[..n], &meta[..n], "step {step}: root meta");
                        assert!(buf[n..].iter().all(|&b| b == 0xEE), "step {step}: wrote past the meta");
                    }
                }
            }
            Op::Commit(r) => {
                let (h, res) = self.store_ref(*r);
                let mut epoch = 0;
                // SAFETY: valid output.
                let rc = unsafe { pcore_store_commit(h, &mut epoch) };
                let Resolved::Slot(i) = res else { return check(step, "commit", rc, &[PCORE_BAD_HANDLE]) };
                check(step, "commit", rc, &[PCORE_OK]);
                let want = self.stores[i].model.commit();
                assert_eq!(epoch, want, "step {step}: commit epoch");
            }
            Op::Checkpoint(r) => {
                let (h, res) = self.store_ref(*r);
                let rc = pcore_store_checkpoint(h);
                let want = if matches!(res, Resolved::Slot(_)) { PCORE_OK } else { PCORE_BAD_HANDLE };
                check(step, "checkpoint", rc, &[want]);
            }
            Op::Stats { store, struct_size } => {
                let (h, res) = self.store_ref(*store);
                let mut st = PcoreStoreStats {
                    struct_size: match struct_size % 5 {
                        0 => 4,
                        1 => 16,
                        2 => 20,
                        _ => std::mem::size_of::<PcoreStoreStats>() as u64,
                    },
                    ..Default::default()
                };
                // SAFETY: `st` has struct_size writable bytes.
                let rc = unsafe { pcore_store_stats(h, &mut st) };
                let Resolved::Slot(i) = res else { return check(step, "stats", rc, &[PCORE_BAD_HANDLE]) };
                if st.struct_size < 16 || !st.struct_size.is_multiple_of(8) {
                    return check(step, "stats struct_size", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "stats", rc, &[PCORE_OK]);
                let m = &self.stores[i].model;
                if st.struct_size >= 24 {
                    assert_eq!(st.epoch, m.epoch, "step {step}: stats epoch");
                }
                if st.struct_size as usize == std::mem::size_of::<PcoreStoreStats>() && !m.trees_used {
                    let live = m.nodes.values().filter(|n| n.state == NodeState::Live).count() + m.freeing.len();
                    let reserved = m.nodes.values().filter(|n| n.state == NodeState::Reserved).count();
                    assert_eq!(
                        (st.live_nodes, st.reserved_nodes),
                        (live as u64, reserved as u64),
                        "step {step}: node counts"
                    );
                }
            }
            Op::ClassStats { store, class } => {
                let (h, res) = self.store_ref(*store);
                let mut cs = sized::<PcoreClassStats>();
                let class = u32::from(*class % 16);
                // SAFETY: valid output.
                let rc = unsafe { pcore_store_class_stats(h, class, &mut cs) };
                let want = match res {
                    Resolved::Bad => PCORE_BAD_HANDLE,
                    Resolved::Slot(_) if class >= 13 => PCORE_INVALID_ARGUMENT,
                    Resolved::Slot(_) => PCORE_OK,
                };
                check(step, "class stats", rc, &[want]);
                if rc == PCORE_OK {
                    assert_eq!(cs.class_bytes, 64 << class, "step {step}");
                }
            }
            Op::Verify(r) => {
                let (h, res) = self.store_ref(*r);
                let rc = pcore_store_verify(h);
                let want = if matches!(res, Resolved::Slot(_)) { PCORE_OK } else { PCORE_BAD_HANDLE };
                check(step, "verify", rc, &[want]);
            }
            Op::TreeOpen { store, name, page, dup, custom, flags, max_entries, null_opt } => {
                self.tree_open(*store, *name, *page, *dup, *custom, *flags, *max_entries, *null_opt);
            }
            Op::TreeClose(t) => {
                let (h, slot) = self.tree_ref(*t);
                let rc = pcore_tree_close(h);
                let Some(ti) = slot else { return check(step, "tree close", rc, &[PCORE_BAD_HANDLE]) };
                check(step, "tree close", rc, &[PCORE_OK]);
                self.trees[ti].open = false;
                if let Some(tm) = self.tree_model(ti) {
                    tm.version += 1;
                }
            }
            _ => self.apply_tree_op(op),
        }
    }

    /// The model of the tree a tree handle names, when its store session is still open.
    fn tree_model(&mut self, ti: usize) -> Option<&mut TreeModel> {
        let (s, session) = (self.trees[ti].store, self.trees[ti].session);
        if !self.store_alive(s, session) {
            return None;
        }
        let name = self.trees[ti].name.clone();
        self.stores[s].model.trees.get_mut(&name)
    }

    #[allow(clippy::too_many_arguments)]
    fn tree_open(
        &mut self,
        store: StoreRef,
        name: u8,
        page: u8,
        dup: u8,
        custom: bool,
        flags: u8,
        max_entries: u8,
        null_opt: bool,
    ) {
        let step = self.step;
        if self.trees.len() >= 12 {
            return;
        }
        let (h, res) = self.store_ref(store);
        let name = tree_name(name);
        let page_bytes: u32 = match page % 6 {
            0 | 1 => 512,
            2 => 1024,
            3 => 4096,
            4 => 1000,
            _ => 256,
        };
        let dup_raw = match dup % 7 {
            0 | 1 => PCORE_DUP_UNIQUE,
            2 | 3 => PCORE_DUP_OVERWRITE,
            4 | 5 => PCORE_DUP_MULTI,
            _ => 3,
        };
        let flags = match flags % 8 {
            0 => PCORE_TREE_NO_CREATE,
            1 => 2,
            _ => 0,
        };
        let mut o = std::mem::MaybeUninit::<PcoreTreeOptions>::uninit();
        // SAFETY: writable options.
        assert_eq!(
            unsafe { pcore_tree_options_init_sized(o.as_mut_ptr(), std::mem::size_of::<PcoreTreeOptions>()) },
            PCORE_OK
        );
        // SAFETY: initialized above.
        let mut o = unsafe { o.assume_init() };
        o.page_bytes = u64::from(page_bytes);
        o.duplicates = dup_raw;
        o.flags = flags;
        o.compare = if custom { Some(reverse) } else { None };
        o.max_entries_per_page = if max_entries.is_multiple_of(3) { u64::from(max_entries % 8) } else { 0 };
        let (page_bytes, dup_raw, custom, flags) =
            if null_opt { (4096, PCORE_DUP_UNIQUE, false, 0) } else { (page_bytes, dup_raw, custom, flags) };
        let mut out = null_mut();
        // SAFETY: valid name, options (or NULL) and output.
        let rc = unsafe {
            pcore_tree_open(h, name.as_ptr().cast::<c_char>(), name.len(), if null_opt { null() } else { &o }, &mut out)
        };
        let Resolved::Slot(si) = res else { return check(step, "tree open", rc, &[PCORE_BAD_HANDLE]) };
        let dup = match dup_raw {
            PCORE_DUP_UNIQUE => Dup::Unique,
            PCORE_DUP_OVERWRITE => Dup::Overwrite,
            PCORE_DUP_MULTI => Dup::Multi,
            _ => return check(step, "tree open bad duplicates", rc, &[PCORE_INVALID_ARGUMENT]),
        };
        if flags & !PCORE_TREE_NO_CREATE != 0 {
            return check(step, "tree open bad flags", rc, &[PCORE_INVALID_ARGUMENT]);
        }
        let m = &mut self.stores[si].model;
        match m.trees.get(&name) {
            None if flags & PCORE_TREE_NO_CREATE != 0 => check(step, "tree open missing", rc, &[PCORE_NOT_FOUND]),
            None if !page_bytes.is_power_of_two() || page_bytes < 512 => {
                check(step, "tree open bad page size", rc, &[PCORE_INVALID_ARGUMENT])
            }
            None => {
                check(step, "tree create", rc, &[PCORE_OK]);
                m.trees_used = true;
                m.trees.insert(name.clone(), TreeModel { page_bytes, dup, custom, entries: Vec::new(), version: 0 });
            }
            Some(t) if t.page_bytes != page_bytes || t.dup != dup || t.custom != custom => {
                check(step, "tree open with other options", rc, &[PCORE_INVALID_ARGUMENT])
            }
            Some(_) => check(step, "tree open", rc, &[PCORE_OK]),
        }
        if rc == PCORE_OK {
            let session = self.stores[si].session;
            self.trees.push(TreeSlot { token: out, open: true, store: si, session, name });
        }
    }

    fn apply_tree_op(&mut self, op: &Op) {
        let step = self.step;
        match op {
            Op::TreeInsert { tree, key, value } => {
                let (h, slot) = self.tree_ref(*tree);
                let pb = slot.and_then(|ti| self.tree_model(ti).map(|t| t.page_bytes)).unwrap_or(512);
                let (k, v) = (key_arg(key, pb), value_arg(value));
                // SAFETY: pointers with their lengths, or NULL / huge as the case tests.
                let rc = unsafe { pcore_tree_insert(h, ptr(&k), k.len, ptr(&v), v.len) };
                let Some(ti) = slot else { return check_dead(step, "insert", rc, k.arg_error.or(v.arg_error)) };
                if let Some(e) = k.arg_error.or(v.arg_error) {
                    return check(step, "insert bad args", rc, &[e]);
                }
                let (key, value) = (k.bytes.unwrap(), v.bytes.unwrap());
                let Some(t) = self.tree_model(ti) else {
                    return check(
                        step,
                        "insert, store closed",
                        rc,
                        &[PCORE_BAD_HANDLE, PCORE_INVALID_ARGUMENT, PCORE_TOO_LARGE],
                    );
                };
                if key.len() > t.max_key() {
                    return check(step, "insert long key", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                if value.len() > t.max_value() {
                    return check(step, "insert long value", rc, &[PCORE_TOO_LARGE]);
                }
                let existing = match t.dup {
                    Dup::Multi => t.entries.iter().position(|(k, v)| *k == key && *v == value),
                    _ => t.find_key(&key),
                };
                if existing.is_some() && t.dup != Dup::Overwrite {
                    return check(step, "insert duplicate", rc, &[PCORE_DUPLICATE_KEY]);
                }
                if value.len() > MAX_CLASS {
                    return check(step, "insert value above the largest class", rc, &[PCORE_TOO_LARGE]);
                }
                check(step, "insert", rc, &[PCORE_OK]);
                match existing {
                    Some(i) => t.entries[i].1 = value,
                    None => {
                        let at = t
                            .entries
                            .iter()
                            .position(|(k, v)| t.cmp_entries((k, v), (&key, &value)) == Ordering::Greater)
                            .unwrap_or(t.entries.len());
                        t.entries.insert(at, (key, value));
                    }
                }
                t.version += 1;
            }
            Op::TreeGet { tree, key, cap, null_buf } => {
                let (h, slot) = self.tree_ref(*tree);
                let pb = slot.and_then(|ti| self.tree_model(ti).map(|t| t.page_bytes)).unwrap_or(512);
                let k = key_arg(key, pb);
                let cap = *cap as usize % 400;
                let mut buf = vec![0xEEu8; cap];
                let mut out_len = usize::MAX;
                let bp = if *null_buf { null_mut() } else { buf.as_mut_ptr() };
                // SAFETY: as the case says.
                let rc = unsafe { pcore_tree_get(h, ptr(&k), k.len, bp.cast(), cap, &mut out_len) };
                let Some(ti) = slot else { return check(step, "get", rc, &[PCORE_BAD_HANDLE]) };
                if *null_buf && cap > 0 {
                    return check(step, "get NULL buffer", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                if let Some(e) = k.arg_error {
                    return check(step, "get bad key", rc, &[e]);
                }
                let key = k.bytes.unwrap();
                let Some(t) = self.tree_model(ti) else {
                    return check(step, "get, store closed", rc, &[PCORE_BAD_HANDLE, PCORE_INVALID_ARGUMENT]);
                };
                if key.len() > t.max_key() {
                    return check(step, "get long key", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                match t.find_key(&key) {
                    None => check(step, "get missing", rc, &[PCORE_NOT_FOUND]),
                    Some(i) => {
                        check(step, "get", rc, &[PCORE_OK]);
                        let v = &t.entries[i].1;
                        assert_eq!(out_len, v.len(), "step {step}: value length");
                        let n = v.len().min(cap);
                        assert_eq!(&buf[..n], &v[..n], "step {step}: value");
                    }
                }
            }
            Op::TreeRemove { tree, key, null_out } => {
                let (h, slot) = self.tree_ref(*tree);
                let pb = slot.and_then(|ti| self.tree_model(ti).map(|t| t.page_bytes)).unwrap_or(512);
                let k = key_arg(key, pb);
                let mut removed = u64::MAX;
                let out = if *null_out { null_mut() } else { &mut removed as *mut u64 };
                // SAFETY: as the case says.
                let rc = unsafe { pcore_tree_remove(h, ptr(&k), k.len, out) };
                let Some(ti) = slot else { return check_dead(step, "remove", rc, k.arg_error) };
                if let Some(e) = k.arg_error {
                    return check(step, "remove bad key", rc, &[e]);
                }
                let key = k.bytes.unwrap();
                let Some(t) = self.tree_model(ti) else {
                    return check(step, "remove, store closed", rc, &[PCORE_BAD_HANDLE, PCORE_INVALID_ARGUMENT]);
                };
                if t.dup == Dup::Multi && key.len() > t.max_key() {
                    return check(step, "remove long key", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "remove", rc, &[PCORE_OK]);
                let before = t.entries.len();
                t.entries.retain(|(k, _)| *k != key);
                let n = before - t.entries.len();
                t.version += n as u64;
                if !*null_out {
                    assert_eq!(removed, u64::from(n > 0), "step {step}: removed");
                }
            }
            Op::TreeRemovePair { tree, key, value } => {
                let (h, slot) = self.tree_ref(*tree);
                let pb = slot.and_then(|ti| self.tree_model(ti).map(|t| t.page_bytes)).unwrap_or(512);
                let (k, v) = (key_arg(key, pb), value_arg(value));
                let mut removed = u64::MAX;
                // SAFETY: as the case says.
                let rc = unsafe { pcore_tree_remove_pair(h, ptr(&k), k.len, ptr(&v), v.len, &mut removed) };
                // The handle is looked up first here.
                let Some(ti) = slot else { return check(step, "remove_pair", rc, &[PCORE_BAD_HANDLE]) };
                if let Some(e) = k.arg_error.or(v.arg_error) {
                    return check(step, "remove_pair bad args", rc, &[e]);
                }
                let (key, value) = (k.bytes.unwrap(), v.bytes.unwrap());
                let Some(t) = self.tree_model(ti) else {
                    return check(
                        step,
                        "remove_pair, store closed",
                        rc,
                        &[PCORE_BAD_HANDLE, PCORE_INVALID_ARGUMENT, PCORE_OK],
                    );
                };
                if key.len() > t.max_key() {
                    return check(step, "remove_pair long key", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "remove_pair", rc, &[PCORE_OK]);
                let at = t.entries.iter().position(|(k, v)| *k == key && *v == value);
                assert_eq!(removed, u64::from(at.is_some()), "step {step}: removed");
                if let Some(i) = at {
                    t.entries.remove(i);
                    t.version += 1;
                }
            }
            Op::TreeLen(tr) => {
                let (h, slot) = self.tree_ref(*tr);
                let mut n = u64::MAX;
                // SAFETY: valid output.
                let rc = unsafe { pcore_tree_len(h, &mut n) };
                let Some(ti) = slot else { return check(step, "len", rc, &[PCORE_BAD_HANDLE]) };
                let Some(t) = self.tree_model(ti) else {
                    return check(step, "len, store closed", rc, &[PCORE_BAD_HANDLE]);
                };
                check(step, "len", rc, &[PCORE_OK]);
                assert_eq!(n, t.entries.len() as u64, "step {step}: len");
            }
            Op::TreeVerify(tr) => {
                let (h, slot) = self.tree_ref(*tr);
                let rc = pcore_tree_verify(h);
                let want = match slot {
                    Some(ti) if self.tree_model(ti).is_some() => PCORE_OK,
                    _ => PCORE_BAD_HANDLE,
                };
                check(step, "tree verify", rc, &[want]);
            }
            Op::TreeStats { tree, struct_size } => {
                let (h, slot) = self.tree_ref(*tree);
                let size = match struct_size % 4 {
                    0 => 4,
                    1 => 12,
                    _ => std::mem::size_of::<PcoreTreeStats>() as u64,
                };
                let mut st = PcoreTreeStats { struct_size: size, ..Default::default() };
                // SAFETY: struct_size writable bytes.
                let rc = unsafe { pcore_tree_stats(h, &mut st) };
                let Some(ti) = slot else { return check(step, "tree stats", rc, &[PCORE_BAD_HANDLE]) };
                let Some(t) = self.tree_model(ti) else {
                    return check(step, "tree stats, store closed", rc, &[PCORE_BAD_HANDLE]);
                };
                if size < 16 || size % 8 != 0 {
                    return check(step, "tree stats struct_size", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "tree stats", rc, &[PCORE_OK]);
                assert_eq!(
                    (st.entries, st.page_bytes),
                    (t.entries.len() as u64, u64::from(t.page_bytes)),
                    "step {step}: tree stats"
                );
            }
            Op::TreeBulkLoad { tree, n, unsorted, big_value } => {
                let (h, slot) = self.tree_ref(*tree);
                let Some(ti) = slot else {
                    // SAFETY: NULL arrays with count 0.
                    let rc = unsafe { pcore_tree_bulk_load(h, null(), null(), 0) };
                    return check(step, "bulk load", rc, &[PCORE_BAD_HANDLE]);
                };
                let Some((custom, dup, pb)) = self.tree_model(ti).map(|t| (t.custom, t.dup, t.page_bytes)) else {
                    // SAFETY: NULL arrays with count 0.
                    let rc = unsafe { pcore_tree_bulk_load(h, null(), null(), 0) };
                    return check(step, "bulk load, store closed", rc, &[PCORE_BAD_HANDLE]);
                };
                let count = *n as usize % 300;
                let mut keys: Vec<Vec<u8>> = (0..count).map(|i| format!("b{:04}", i).into_bytes()).collect();
                if custom {
                    keys.reverse();
                }
                if *unsorted && count >= 2 {
                    keys.swap(0, count - 1);
                }
                let values: Vec<Vec<u8>> = (0..count)
                    .map(|i| {
                        if *big_value && i == count / 2 {
                            big()[..pb as usize].to_vec()
                        } else {
                            vec![i as u8; i % 5]
                        }
                    })
                    .collect();
                let kb: Vec<PcoreBytes> = keys.iter().map(|k| PcoreBytes { data: k.as_ptr(), len: k.len() }).collect();
                let vb: Vec<PcoreBytes> =
                    values.iter().map(|v| PcoreBytes { data: v.as_ptr(), len: v.len() }).collect();
                // SAFETY: `count` descriptors each, of live buffers.
                let rc = unsafe { pcore_tree_bulk_load(h, kb.as_ptr(), vb.as_ptr(), count) };
                let t = self.tree_model(ti).unwrap();
                let too_large = *big_value && count > 0 && dup == Dup::Multi;
                if too_large && *unsorted && count >= 2 {
                    // Pairs are checked in order: whichever problem comes first is reported.
                    return check(
                        step,
                        "bulk load, unsorted and too large",
                        rc,
                        &[PCORE_TOO_LARGE, PCORE_INVALID_ARGUMENT],
                    );
                }
                if too_large {
                    return check(step, "bulk load, value too large for multi", rc, &[PCORE_TOO_LARGE]);
                }
                if *unsorted && count >= 2 {
                    return check(step, "bulk load unsorted", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                if !t.entries.is_empty() {
                    return check(step, "bulk load into a tree with entries", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "bulk load", rc, &[PCORE_OK]);
                t.entries = keys.into_iter().zip(values).collect();
                t.version += 1;
            }
            Op::CursorOpen(tr) => {
                if self.cursors.len() >= 12 {
                    return;
                }
                let (h, slot) = self.tree_ref(*tr);
                let mut out = null_mut();
                // SAFETY: valid output.
                let rc = unsafe { pcore_cursor_open(h, &mut out) };
                let Some(ti) = slot else { return check(step, "cursor open", rc, &[PCORE_BAD_HANDLE]) };
                // A tree whose store is closed cannot be read any more.
                let Some(version) = self.tree_model(ti).map(|t| t.version) else {
                    return check(step, "cursor open, store closed", rc, &[PCORE_BAD_HANDLE]);
                };
                check(step, "cursor open", rc, &[PCORE_OK]);
                let tr = &self.trees[ti];
                self.cursors.push(CursorSlot {
                    token: out,
                    open: true,
                    store: tr.store,
                    session: tr.session,
                    tree: tr.name.clone(),
                    version,
                    pos: None,
                    lower: std::ops::Bound::Unbounded,
                    upper: std::ops::Bound::Unbounded,
                });
            }
            Op::CursorClose(c) => {
                let (h, slot) = self.cursor_ref(*c);
                let rc = pcore_cursor_close(h);
                match slot {
                    Some(ci) => {
                        check(step, "cursor close", rc, &[PCORE_OK]);
                        self.cursors[ci].open = false;
                    }
                    None => check(step, "cursor close", rc, &[PCORE_BAD_HANDLE]),
                }
            }
            _ => self.apply_cursor_op(op),
        }
    }

    fn cursor_tree(&self, ci: usize) -> Option<&TreeModel> {
        let c = &self.cursors[ci];
        if !self.store_alive(c.store, c.session) {
            return None;
        }
        self.stores[c.store].model.trees.get(&c.tree)
    }

    fn apply_cursor_op(&mut self, op: &Op) {
        let step = self.step;
        let cref = match op {
            Op::CursorBounds { cursor, .. } | Op::CursorSeek { cursor, .. } | Op::CursorGet { cursor, .. } => *cursor,
            Op::CursorFirst(c) | Op::CursorLast(c) | Op::CursorNext(c) | Op::CursorPrev(c) => *c,
            _ => unreachable!("every op is handled"),
        };
        let (h, slot) = self.cursor_ref(cref);
        let pb = slot.and_then(|ci| self.cursor_tree(ci).map(|t| t.page_bytes)).unwrap_or(512);
        match op {
            Op::CursorBounds { lower, upper, .. } => {
                let arg = |b: &Bound| -> (u32, KeyArg) {
                    match b {
                        Bound::Unbounded => (PCORE_BOUND_UNBOUNDED, key_arg(&Key::Null(0), pb)),
                        Bound::Included(k) => (PCORE_BOUND_INCLUDED, key_arg(k, pb)),
                        Bound::Excluded(k) => (PCORE_BOUND_EXCLUDED, key_arg(k, pb)),
                        Bound::BadKind => (7, key_arg(&Key::Null(0), pb)),
                    }
                };
                let ((lk, l), (uk, u)) = (arg(lower), arg(upper));
                // SAFETY: as the case says.
                let rc = unsafe { pcore_cursor_set_bounds(h, ptr(&l), l.len, lk, ptr(&u), u.len, uk) };
                let bad_kind = (lk == 7 || uk == 7).then_some(PCORE_INVALID_ARGUMENT);
                let Some(ci) = slot else {
                    return check_dead(step, "set bounds", rc, l.arg_error.or(u.arg_error).or(bad_kind));
                };
                if let Some(e) = l.arg_error.or(u.arg_error) {
                    return check(step, "set bounds bad key", rc, &[e]);
                }
                if lk == 7 || uk == 7 {
                    return check(step, "set bounds bad kind", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                check(step, "set bounds", rc, &[PCORE_OK]);
                let to = |kind: u32, k: KeyArg| match kind {
                    PCORE_BOUND_INCLUDED => std::ops::Bound::Included(k.bytes.unwrap()),
                    PCORE_BOUND_EXCLUDED => std::ops::Bound::Excluded(k.bytes.unwrap()),
                    _ => std::ops::Bound::Unbounded,
                };
                let c = &mut self.cursors[ci];
                c.lower = to(lk, l);
                c.upper = to(uk, u);
            }
            Op::CursorFirst(_) | Op::CursorLast(_) | Op::CursorSeek { .. } => {
                let key = match op {
                    Op::CursorSeek { key, .. } => Some(key_arg(key, pb)),
                    _ => None,
                };
                let rc = match (op, &key) {
                    (Op::CursorFirst(_), _) => pcore_cursor_first(h),
                    (Op::CursorLast(_), _) => pcore_cursor_last(h),
                    // SAFETY: as the case says.
                    (_, Some(k)) => unsafe { pcore_cursor_seek(h, ptr(k), k.len) },
                    _ => unreachable!(),
                };
                let what = format!("cursor {op:?}");
                if let Some(e) = key.as_ref().and_then(|k| k.arg_error) {
                    return check(step, &what, rc, &[e]);
                }
                let Some(ci) = slot else { return check(step, &what, rc, &[PCORE_BAD_HANDLE]) };
                let Some(t) = self.cursor_tree(ci) else { return check(step, &what, rc, &[PCORE_BAD_HANDLE]) };
                check(step, &what, rc, &[PCORE_OK]);
                let c = &self.cursors[ci];
                let below = |k: &[u8]| match &c.lower {
                    std::ops::Bound::Unbounded => false,
                    std::ops::Bound::Included(l) => t.cmp_keys(k, l) == Ordering::Less,
                    std::ops::Bound::Excluded(l) => t.cmp_keys(k, l) != Ordering::Greater,
                };
                let above = |k: &[u8]| match &c.upper {
                    std::ops::Bound::Unbounded => false,
                    std::ops::Bound::Included(u) => t.cmp_keys(k, u) == Ordering::Greater,
                    std::ops::Bound::Excluded(u) => t.cmp_keys(k, u) != Ordering::Less,
                };
                let pos = match op {
                    Op::CursorFirst(_) => t.entries.iter().position(|(k, _)| !below(k)),
                    Op::CursorLast(_) => t.entries.iter().rposition(|(k, _)| !above(k)),
                    _ => Some(t.lower_bound(key.as_ref().unwrap().bytes.as_ref().unwrap()))
                        .filter(|&i| i < t.entries.len()),
                };
                let version = t.version;
                let c = &mut self.cursors[ci];
                c.pos = pos;
                c.version = version;
            }
            Op::CursorNext(_) | Op::CursorPrev(_) => {
                let next = matches!(op, Op::CursorNext(_));
                let rc = if next { pcore_cursor_next(h) } else { pcore_cursor_prev(h) };
                let Some(ci) = slot else { return check(step, "cursor move", rc, &[PCORE_BAD_HANDLE]) };
                let Some(t) = self.cursor_tree(ci) else {
                    // The store is closed: a move within the cursor's copy of its leaf still
                    // succeeds; anything that needs a page is BAD_HANDLE. Unknown from here on.
                    check(step, "cursor move, store closed", rc, &[PCORE_OK, PCORE_BAD_HANDLE, PCORE_STALE_CURSOR]);
                    self.cursors[ci].pos = None;
                    return;
                };
                let c = &self.cursors[ci];
                if c.version != t.version {
                    return check(step, "cursor move, stale", rc, &[PCORE_STALE_CURSOR]);
                }
                check(step, "cursor move", rc, &[PCORE_OK]);
                let len = t.entries.len();
                let c = &mut self.cursors[ci];
                c.pos = match c.pos {
                    None => None,
                    Some(p) if next => Some(p + 1).filter(|&p| p < len),
                    Some(p) => p.checked_sub(1),
                };
            }
            Op::CursorGet { null_out, .. } => {
                let mut k = PcoreBytes { data: null(), len: 0 };
                let mut v = PcoreBytes { data: null(), len: 0 };
                let kp = if *null_out { null_mut() } else { &mut k as *mut PcoreBytes };
                // SAFETY: NULL or writable outputs.
                let rc = unsafe { pcore_cursor_get(h, kp, &mut v) };
                let Some(ci) = slot else { return check(step, "cursor get", rc, &[PCORE_BAD_HANDLE]) };
                if *null_out {
                    return check(step, "cursor get NULL out", rc, &[PCORE_INVALID_ARGUMENT]);
                }
                let Some(t) = self.cursor_tree(ci) else {
                    return check(
                        step,
                        "cursor get, store closed",
                        rc,
                        &[PCORE_BAD_HANDLE, PCORE_NOT_FOUND, PCORE_STALE_CURSOR],
                    );
                };
                let c = &self.cursors[ci];
                if c.version != t.version {
                    return check(step, "cursor get, stale", rc, &[PCORE_STALE_CURSOR]);
                }
                let inside = |key: &[u8]| {
                    let below = match &c.lower {
                        std::ops::Bound::Unbounded => false,
                        std::ops::Bound::Included(l) => t.cmp_keys(key, l) == Ordering::Less,
                        std::ops::Bound::Excluded(l) => t.cmp_keys(key, l) != Ordering::Greater,
                    };
                    let above = match &c.upper {
                        std::ops::Bound::Unbounded => false,
                        std::ops::Bound::Included(u) => t.cmp_keys(key, u) == Ordering::Greater,
                        std::ops::Bound::Excluded(u) => t.cmp_keys(key, u) != Ordering::Less,
                    };
                    !below && !above
                };
                match c.pos.map(|p| &t.entries[p]).filter(|(k, _)| inside(k)) {
                    None => check(step, "cursor get, off the end", rc, &[PCORE_NOT_FOUND]),
                    Some((key, value)) => {
                        check(step, "cursor get", rc, &[PCORE_OK]);
                        // SAFETY: the cursor's buffers, valid until its next call.
                        let (gk, gv) = unsafe {
                            (std::slice::from_raw_parts(k.data, k.len), std::slice::from_raw_parts(v.data, v.len))
                        };
                        assert_eq!((gk, gv), (&key[..], &value[..]), "step {step}: cursor entry");
                    }
                }
            }
            _ => unreachable!(),
        }
    }

    /// Every node, root and tree of store `i` as its model says (after a reopen).
    fn compare_store(&mut self, i: usize) {
        let step = self.step;
        let h = self.stores[i].token;
        let m = self.stores[i].model.clone();
        for id in &m.known {
            let mut b = PcoreNodeBytes { data: null(), len: 0 };
            // SAFETY: valid output.
            let rc = unsafe { pcore_node_read(h, *id, &mut b) };
            match m.nodes.get(id) {
                Some(n) => {
                    check(step, "read after reopen", rc, &[PCORE_OK]);
                    // SAFETY: pcore's bytes.
                    let got = unsafe { std::slice::from_raw_parts(b.data as *const u8, b.len) };
                    assert_eq!(got, &n.bytes[..], "step {step}: node {id:#x} after reopen");
                }
                None => check(step, "read a gone node after reopen", rc, &[PCORE_NOT_FOUND]),
            }
        }
        for (name, (id, meta)) in &m.roots {
            let mut got_id = 0;
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // SAFETY: valid buffers.
            let rc = unsafe {
                pcore_root_get(
                    h,
                    name.as_ptr().cast(),
                    name.len(),
                    &mut got_id,
                    buf.as_mut_ptr().cast(),
                    4096,
                    &mut len,
                )
            };
            check(step, "root after reopen", rc, &[PCORE_OK]);
            assert_eq!((got_id, &buf[..len]), (*id, &meta[..]), "step {step}: root after reopen");
        }
        for (name, t) in &m.trees {
            let mut o = std::mem::MaybeUninit::<PcoreTreeOptions>::uninit();
            // SAFETY: writable.
            unsafe { pcore_tree_options_init_sized(o.as_mut_ptr(), std::mem::size_of::<PcoreTreeOptions>()) };
            // SAFETY: initialized.
            let mut o = unsafe { o.assume_init() };
            o.page_bytes = u64::from(t.page_bytes);
            o.duplicates = match t.dup {
                Dup::Unique => PCORE_DUP_UNIQUE,
                Dup::Overwrite => PCORE_DUP_OVERWRITE,
                Dup::Multi => PCORE_DUP_MULTI,
            };
            o.compare = if t.custom { Some(reverse) } else { None };
            o.flags = PCORE_TREE_NO_CREATE;
            let mut th = null_mut();
            // SAFETY: valid arguments.
            let rc = unsafe { pcore_tree_open(h, name.as_ptr().cast(), name.len(), &o, &mut th) };
            check(step, "tree open after reopen", rc, &[PCORE_OK]);
            let mut c = null_mut();
            // SAFETY: valid output.
            check(step, "cursor", unsafe { pcore_cursor_open(th, &mut c) }, &[PCORE_OK]);
            check(step, "first", pcore_cursor_first(c), &[PCORE_OK]);
            let mut got = Vec::new();
            loop {
                let (mut k, mut v) = (PcoreBytes { data: null(), len: 0 }, PcoreBytes { data: null(), len: 0 });
                // SAFETY: valid outputs.
                let rc = unsafe { pcore_cursor_get(c, &mut k, &mut v) };
                if rc == PCORE_NOT_FOUND {
                    break;
                }
                check(step, "cursor get after reopen", rc, &[PCORE_OK]);
                // SAFETY: the cursor's buffers.
                got.push(unsafe {
                    (
                        std::slice::from_raw_parts(k.data, k.len).to_vec(),
                        std::slice::from_raw_parts(v.data, v.len).to_vec(),
                    )
                });
                check(step, "next", pcore_cursor_next(c), &[PCORE_OK]);
            }
            assert_eq!(got, t.entries, "step {step}: tree {name:?} after reopen");
            check(step, "tree verify after reopen", pcore_tree_verify(th), &[PCORE_OK]);
            pcore_cursor_close(c);
            pcore_tree_close(th);
        }
        check(step, "verify after reopen", pcore_store_verify(h), &[PCORE_OK]);
    }

    /// Closes every handle still open (handles live in process-wide registries).
    pub fn finish(&mut self) {
        for c in &self.cursors {
            if c.open {
                check(self.step, "final cursor close", pcore_cursor_close(c.token), &[PCORE_OK]);
            }
        }
        for t in &self.trees {
            if t.open {
                check(self.step, "final tree close", pcore_tree_close(t.token), &[PCORE_OK]);
            }
        }
        for i in 0..self.stores.len() {
            if self.stores[i].open {
                check(self.step, "final close", pcore_store_close(self.stores[i].token), &[PCORE_OK]);
                self.stores[i].open = false;
                if self.stores[i].file {
                    // The file store once more: what was committed is what reopens.
                    let (rc, out) = self.open_file(PCORE_OPEN_READ_ONLY);
                    check(self.step, "final read-only reopen", rc, &[PCORE_OK]);
                    let model = self.stores[i].model.reopened();
                    self.new_slot(out, false, model);
                    let last = self.stores.len() - 1;
                    self.compare_store(last);
                    check(self.step, "close", pcore_store_close(out), &[PCORE_OK]);
                    self.stores[last].open = false;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

pub fn run(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(ops) = u.arbitrary::<Vec<Op>>() else { return };
    let mut h = Harness::new();
    h.run(&ops[..ops.len().min(400)]);
    h.finish();
}
