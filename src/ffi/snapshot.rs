//! `pcore_snapshot_*`: read snapshots through the C ABI. A snapshot is a handle of its own;
//! the read calls that take one answer the bytes, roots and tree entries of its commit.

use super::btree::{tree_get_in, tree_token, with_tree};
use super::cursor::cursor_open_at;
use super::guard::{self, non_null, write_out};
use super::registry::{HandleType, Registry};
use super::store::{node_read_copy_in, node_read_in, root_get_in, store_of};
use super::types::*;
use crate::btree::BTree;
use crate::error::{Error, Result};
use crate::store::Snapshot;
use parking_lot::Mutex;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// A snapshot handle: the snapshot, and the trees as it sees them, made once per tree handle
/// (`BTree::at` reads and decodes the tree's anchor: per lookup it cost as much as the lookup).
#[derive(Clone)]
struct SnapshotHandle {
    snap: Snapshot,
    views: Arc<Mutex<Vec<(usize, BTree)>>>,
}

/// Tree views a snapshot handle keeps; the oldest goes when another is needed.
const VIEWS_KEPT: usize = 16;

impl std::ops::Deref for SnapshotHandle {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

impl SnapshotHandle {
    /// The tree a (live) tree handle names, as this snapshot sees it.
    fn view_of(&self, tree: *const PcoreTree) -> Result<BTree> {
        let token = tree_token(tree)?;
        // Checked every call: a closed tree handle is refused even when its view is kept.
        with_tree(tree, |_| Ok(()))?;
        let mut views = self.views.lock();
        if let Some((_, view)) = views.iter().find(|(t, _)| *t == token) {
            return Ok(view.clone());
        }
        let view = with_tree(tree, |t| t.at(&self.snap))?;
        if views.len() == VIEWS_KEPT {
            views.remove(0);
        }
        views.push((token, view.clone()));
        Ok(view)
    }
}

static SNAPSHOTS: Registry<SnapshotHandle> = Registry::new(HandleType::Snapshot);

fn snapshot_token(handle: *const PcoreSnapshot) -> Result<usize> {
    if handle.is_null() {
        return Err(Error::BadHandle("the snapshot handle is NULL".into()));
    }
    Ok(handle as usize)
}

fn snapshot_of(handle: *const PcoreSnapshot) -> Result<SnapshotHandle> {
    SNAPSHOTS.get(snapshot_token(handle)?)
}

/// Begins a read snapshot of `store`'s last commit: every read that takes it answers that
/// commit's bytes, roots and tree entries, however many commits the writer makes meanwhile,
/// and cursors opened on it never go stale. Cheap (no copy); any number may be open, on any
/// threads, and a snapshot may be used from any thread. Uncommitted changes are not seen.
/// On a store opened `PCORE_OPEN_READ_ONLY` (beside a writer in another process, say), the
/// commit that open reads.
///
/// While a snapshot is open, no block freed by a commit after its own is reused, nor cut from
/// the class files (as in LMDB, whose long read transactions grow its file): a snapshot held
/// for long beside a busy writer holds all the space the writer frees meanwhile, without bound
/// (`pcore_store_stats`: `pinned_bytes`). A read-only open in another process does the same
/// for its whole life. End it with `pcore_snapshot_end`.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL `out`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_begin(store: *mut PcoreStore, out: *mut *mut PcoreSnapshot) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        non_null(out, "out")?;
        let handle = SnapshotHandle { snap: s.snapshot()?, views: Arc::new(Mutex::new(Vec::new())) };
        let token = SNAPSHOTS.insert(handle)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, token as *mut PcoreSnapshot) };
        Ok(())
    })
}

/// Ends a snapshot: pointers `pcore_snapshot_node_read` handed out through it are invalid
/// from here on, and its blocks may be reused (once no other snapshot, and no cursor opened
/// on it, still reads them: a cursor keeps its snapshot's commit until it is closed). A
/// second end answers `PCORE_BAD_HANDLE`. A snapshot outlives its store's close as a handle:
/// its reads then answer `PCORE_BAD_HANDLE`, but its end (and `pcore_snapshot_epoch`) still
/// answers `PCORE_OK`, so a host may end its snapshots after closing the store.
#[no_mangle]
pub extern "C" fn pcore_snapshot_end(snapshot: *mut PcoreSnapshot) -> i32 {
    guard::call(|| SNAPSHOTS.remove(snapshot_token(snapshot)?).map(drop))
}

/// The epoch of the commit `snapshot` reads, into `*out_epoch` (after the store closed too,
/// until the snapshot ends).
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL `out_epoch`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out_epoch` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_epoch(snapshot: *mut PcoreSnapshot, out_epoch: *mut u64) -> i32 {
    guard::call(|| {
        let snap = snapshot_of(snapshot)?;
        non_null(out_epoch, "out_epoch")?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out_epoch, snap.epoch()) };
        Ok(())
    })
}

/// Node `id` as the snapshot's commit left it: `out->data` stays valid, and its bytes
/// unchanged, until the snapshot ends or the store closes, whatever the writer does. A node allocated after
/// that commit, or freed before it, is `PCORE_NOT_FOUND`. On any failure `*out` (if `out`
/// is not NULL) is set to `{NULL, 0}`. With `PCORE_OPEN_VERIFY_CHECKSUMS` the bytes are
/// checked against their commit's checksum (`PCORE_CORRUPT`); they cannot change after.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT` (NULL `out`),
/// `PCORE_CORRUPT`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `PcoreNodeBytes`.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_node_read(
    snapshot: *mut PcoreSnapshot,
    id: u64,
    out: *mut PcoreNodeBytes,
) -> i32 {
    // SAFETY: NULL or writable, by this function's contract.
    unsafe { super::guard::write_optional(out, PcoreNodeBytes { data: std::ptr::null(), len: 0 }) };
    // SAFETY: as above.
    guard::call(|| unsafe { node_read_in(snapshot_of(snapshot)?.store(), id, out) })
}

/// Copies node `id` as the snapshot's commit left it into `buf`: the first `cap` bytes, while
/// `*out_len` receives its full length (the same in every call on this snapshot).
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT` (NULL `out_len`, NULL
/// `buf` with `cap` > 0), `PCORE_CORRUPT`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `buf` has `cap` writable bytes (or is NULL with `cap` 0); `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_node_read_copy(
    snapshot: *mut PcoreSnapshot,
    id: u64,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: the pointers as this function's contract says.
    guard::call(|| unsafe { node_read_copy_in(snapshot_of(snapshot)?.store(), id, buf, cap, out_len) })
}

/// The named root as of the snapshot's commit: as `pcore_root_get`, which sees the latest
/// `pcore_root_set`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no such root then), `PCORE_INVALID_ARGUMENT`,
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `name` has `name_len` readable bytes; `out_id` is writable; `meta_buf` has `meta_cap`
/// writable bytes (or is NULL with `meta_cap` 0); `out_meta_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_root_get(
    snapshot: *mut PcoreSnapshot,
    name: *const c_char,
    name_len: usize,
    out_id: *mut u64,
    meta_buf: *mut c_void,
    meta_cap: usize,
    out_meta_len: *mut usize,
) -> i32 {
    guard::call(|| {
        let snap = snapshot_of(snapshot)?;
        // SAFETY: the pointers as this function's contract says.
        unsafe { root_get_in(snap.store(), name, name_len, out_id, meta_buf, meta_cap, out_meta_len) }
    })
}

/// `pcore_tree_get` as of the snapshot's commit. `tree` is a tree handle opened on the
/// snapshot's store; a tree that did not exist at that commit answers `PCORE_NOT_FOUND`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT`, `PCORE_BAD_HANDLE` (a
/// snapshot and tree of different stores too), `PCORE_CORRUPT`.
///
/// # Safety
/// As `pcore_tree_get`'s.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_tree_get(
    snapshot: *mut PcoreSnapshot,
    tree: *mut PcoreTree,
    key: *const c_void,
    key_len: usize,
    value_buf: *mut c_void,
    value_cap: usize,
    out_value_len: *mut usize,
) -> i32 {
    guard::call(|| {
        SNAPSHOTS.with(snapshot_token(snapshot)?, |h| {
            let view = h.view_of(tree)?;
            // SAFETY: the pointers as this function's contract says.
            unsafe { tree_get_in(&view, key, key_len, value_buf, value_cap, out_value_len) }
        })
    })
}

/// Opens a cursor on `tree` as of the snapshot's commit: every cursor call works on it, it
/// never answers `PCORE_STALE_CURSOR`, and it keeps the snapshot's commit readable until it
/// is closed (ending the snapshot first is allowed). Close it with `pcore_cursor_close`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (the tree did not exist at that commit),
/// `PCORE_INVALID_ARGUMENT` (NULL `out`), `PCORE_BAD_HANDLE` (a snapshot and tree of
/// different stores too).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_snapshot_cursor_open(
    snapshot: *mut PcoreSnapshot,
    tree: *mut PcoreTree,
    out: *mut *mut PcoreCursor,
) -> i32 {
    guard::call(|| {
        let snap = snapshot_of(snapshot)?;
        // SAFETY: `out` is writable, by this function's contract.
        unsafe { cursor_open_at(tree, Some(&snap), out) }
    })
}
