//! `pcore_store_*`, `pcore_node_*` and `pcore_root_*`: the node store's C ABI.
//!
//! Conventions: the handle first, then inputs, then outputs; every buffer is followed by its
//! length; outputs are written only on success (except `pcore_node_read`, which also clears
//! its output on failure, as XTree's `read_node` expects). Every call is thread-safe: one
//! writer at a time, reads from any thread.

use super::guard::{self, bytes, c_path, copy_out, non_null, out_buffer, write_optional, write_out};
use super::handle_cache::HandleCache;
use super::registry::{HandleType, Registry};
use super::sized::{init_sized, narrow, read_sized, SizedOut};
use super::types::*;
use crate::error::{Error, Result};
use crate::store::{Durability, GrowthPolicy, GrowthRule, NodeId, Source, Store, StoreOptions};
use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static STORES: Registry<StoreHandle> = Registry::new(HandleType::Store);

/// What a store handle names: the store, and its per-reason counts (kept here so a free does
/// not look them up).
#[derive(Clone)]
pub(crate) struct StoreHandle {
    store: Store,
    reasons: Arc<ReasonCounts>,
}

impl std::ops::Deref for StoreHandle {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

thread_local! {
    /// The store handles this thread used last (see `HandleCache`).
    static RECENT_STORES: RefCell<HandleCache<StoreHandle>> = const { RefCell::new(HandleCache::new()) };
}

pub(crate) fn store_of(handle: *const PcoreStore) -> Result<Store> {
    if handle.is_null() {
        return Err(Error::BadHandle("the store handle is NULL".into()));
    }
    STORES.get(handle as usize).map(|h| h.store)
}

/// Runs an export's body (as `guard::call`) with the store `handle` names, found through this
/// thread's handle cache: the hot calls (allocate, publish, read, free) take no lock and touch
/// no reference count to find their store. The status is made inside the thread-local access,
/// which then returns an i32 (see `guard::call_status`).
#[inline]
fn with_store(handle: *const PcoreStore, f: impl FnOnce(&StoreHandle) -> Result<()>) -> i32 {
    guard::call_status(|| {
        if handle.is_null() {
            return guard::status(Err(null_store()));
        }
        RECENT_STORES.with(|cache| in_store(cache, handle as usize, f))
    })
}

/// `with_store`'s lookup and body, apart from the thread-local access: that access, left this
/// small, is inlined into the export, which then finds the thread's cache with a direct call
/// rather than through the key's function pointer.
#[inline(never)]
fn in_store(
    cache: &RefCell<HandleCache<StoreHandle>>,
    token: usize,
    f: impl FnOnce(&StoreHandle) -> Result<()>,
) -> i32 {
    match cache.try_borrow_mut() {
        Ok(mut cache) => guard::status(cache.with(&STORES, token, f)),
        // A lookup inside a lookup (none today: pcore calls no host code that may call
        // pcore while a store call runs) goes to the registry.
        Err(_) => guard::status(STORES.get(token).and_then(|s| f(&s))),
    }
}

#[cold]
#[inline(never)]
fn null_store() -> Error {
    Error::BadHandle("the store handle is NULL".into())
}

fn default_options() -> PcoreStoreOptions {
    let d = StoreOptions::default();
    PcoreStoreOptions {
        struct_size: std::mem::size_of::<PcoreStoreOptions>() as u64,
        flags: 0,
        durability: PCORE_DURABILITY_BALANCED,
        balanced_interval_ms: d.balanced_interval_ms.into(),
        growth_policy: PCORE_GROWTH_STABLE_ID,
        min_class_bytes: d.min_class_bytes.into(),
        max_class_bytes: d.max_class_bytes.into(),
        inline_payload_max_bytes: d.inline_payload_max_bytes.into(),
        checkpoint_log_bytes: d.checkpoint_log_bytes,
        growth_rule: PCORE_GROWTH_RULE_FIT,
        idle_checkpoint_ms: d.idle_checkpoint_ms.into(),
    }
}

fn to_store_options(o: &PcoreStoreOptions) -> Result<StoreOptions> {
    let known = PCORE_OPEN_READ_ONLY | PCORE_OPEN_IN_MEMORY | PCORE_OPEN_NO_CREATE | PCORE_OPEN_VERIFY_CHECKSUMS;
    if o.flags & !known != 0 {
        return Err(Error::InvalidArgument(format!("unknown open flags {:#x}", o.flags & !known)));
    }
    let d = StoreOptions::default();
    let or = |v: u64, dflt: u32, name: &str| if v == 0 { Ok(dflt) } else { narrow::<u32>(v, name) };
    Ok(StoreOptions {
        durability: match o.durability {
            PCORE_DURABILITY_STRICT => Durability::Strict,
            PCORE_DURABILITY_EVENTUAL => Durability::Eventual,
            PCORE_DURABILITY_BALANCED => Durability::Balanced,
            other => return Err(Error::InvalidArgument(format!("durability {other}"))),
        },
        growth_policy: match o.growth_policy {
            PCORE_GROWTH_STABLE_ID => GrowthPolicy::StableId,
            PCORE_GROWTH_NEW_ID => GrowthPolicy::NewId,
            other => return Err(Error::InvalidArgument(format!("growth policy {other}"))),
        },
        growth_rule: match o.growth_rule {
            PCORE_GROWTH_RULE_FIT => GrowthRule::Fit,
            PCORE_GROWTH_RULE_DOUBLE => GrowthRule::Double,
            other => return Err(Error::InvalidArgument(format!("growth rule {other}"))),
        },
        balanced_interval_ms: or(o.balanced_interval_ms, d.balanced_interval_ms, "balanced_interval_ms")?,
        min_class_bytes: or(o.min_class_bytes, d.min_class_bytes, "min_class_bytes")?,
        max_class_bytes: or(o.max_class_bytes, d.max_class_bytes, "max_class_bytes")?,
        inline_payload_max_bytes: or(
            o.inline_payload_max_bytes,
            d.inline_payload_max_bytes,
            "inline_payload_max_bytes",
        )?,
        checkpoint_log_bytes: if o.checkpoint_log_bytes == 0 { d.checkpoint_log_bytes } else { o.checkpoint_log_bytes },
        read_only: o.flags & PCORE_OPEN_READ_ONLY != 0,
        create: o.flags & PCORE_OPEN_NO_CREATE == 0,
        verify_checksums: o.flags & PCORE_OPEN_VERIFY_CHECKSUMS != 0,
        meta_refresh_ms: d.meta_refresh_ms,
        idle_checkpoint_ms: match o.idle_checkpoint_ms {
            PCORE_IDLE_CHECKPOINT_NEVER => u32::MAX,
            ms => or(ms, d.idle_checkpoint_ms, "idle_checkpoint_ms")?,
        },
    })
}

/// Fills the first `size` bytes of `opt` with the defaults (BALANCED durability, stable ids,
/// growth to the smallest class that fits, classes 64 B to 256 KiB) and sets `struct_size` to
/// what it wrote: `size` is `sizeof(PcoreStoreOptions)` as the caller's header has it, so a
/// library newer than that header never writes past the caller's struct. This header maps
/// `pcore_store_options_init(opt)` to this call.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` when `opt` is NULL or `size` is not a
/// multiple of 8 of at least 8, `PCORE_TOO_LARGE` for a size over `PTRDIFF_MAX`.
///
/// # Safety
/// `opt` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_options_init_sized(opt: *mut PcoreStoreOptions, size: usize) -> i32 {
    guard::call(|| {
        non_null(opt, "opt")?;
        // SAFETY: non-null (checked); `size` writable bytes by contract.
        unsafe { init_sized(opt, size, default_options()) }
    })
}

/// The size of `PcoreStoreOptions` in the headers of ABI 2.1 and 2.2, which called the
/// unsized init: the struct it fills for a program built against them.
const STORE_OPTIONS_2_2_BYTES: usize = std::mem::offset_of!(PcoreStoreOptions, idle_checkpoint_ms);

/// The entry point that programs built against ABI 2.0 to 2.3 call (this header maps the name
/// to `pcore_store_options_init_sized`): fills the struct of the 2.1 and 2.2 headers, 80
/// bytes, with the defaults, and sets `struct_size` to 80. Until 2.4 it wrote the library's
/// whole struct, past the end of an older caller's (a 2.0 caller's struct is 72 bytes: build
/// such programs again).
///
/// Returns `PCORE_OK`, or `PCORE_INVALID_ARGUMENT` when `opt` is NULL.
///
/// # Safety
/// `opt` is NULL or points to 80 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_options_init(opt: *mut PcoreStoreOptions) -> i32 {
    guard::call(|| {
        non_null(opt, "opt")?;
        // SAFETY: non-null (checked); 80 writable bytes by contract.
        unsafe { init_sized(opt, STORE_OPTIONS_2_2_BYTES, default_options()) }
    })
}

/// Opens (or creates) the store in directory `dir`, or an in-memory store when `opt->flags`
/// has `PCORE_OPEN_IN_MEMORY` (then `dir` must be NULL). `opt` may be NULL for the defaults.
/// A writer locks the directory; a read-only open (`PCORE_OPEN_READ_ONLY`) takes no lock,
/// recovers into memory, and never changes a file.
///
/// On success `*out` receives the handle, which the caller releases with
/// `pcore_store_close`. Returns `PCORE_OK`; `PCORE_INVALID_ARGUMENT` (NULL `out`, bad
/// options), `PCORE_BUSY` (another writer has the directory; for a read-only open, 127
/// read-only opens of the directory, in any processes, are alive: its reader table is
/// full; or a writer's checkpoints overtook the open at each of its 40 tries, about 0.1 s:
/// a writer that checkpoints at nearly every commit on a fast disk; try again),
/// `PCORE_NOT_FOUND` (no store and `PCORE_OPEN_NO_CREATE` or read-only),
/// `PCORE_CORRUPT` (a damaged file, named in the message), `PCORE_VERSION_MISMATCH`,
/// `PCORE_NO_SPACE`, `PCORE_IO_ERROR`, `PCORE_POISONED` (a sync of the checkpoint that
/// recovery takes failed: nothing is lost, the log still holds every commit; open again).
///
/// Damaged bytes in one node's block do not fail the open, even when a commit the open
/// replays changed that node: its version is rebuilt over them and kept with the checksum its
/// commit logged, so the command `pcore check` and reads with `PCORE_OPEN_VERIFY_CHECKSUMS`
/// name it, and the other nodes read as committed.
///
/// Handles belong to the process that opened them; use none across `fork` (as with LMDB).
/// In a child, every call through a store, tree or cursor handle its parent opened answers
/// `PCORE_BAD_HANDLE` (the message says it was inherited through fork) and changes nothing,
/// `pcore_store_close` too: the parent keeps its lock and files. The child may open the store
/// itself; it gets `PCORE_BUSY` while the parent holds it. A store opened in a process forked
/// from one that had opened any store (closed since or not: its threads may have left state
/// in the table below) starts no background thread (BALANCED then syncs at the commits that
/// find the interval passed, and at close; a store at rest is not checkpointed; the same holds,
/// with no error, where the system refuses the process a new thread), and the child should use each
/// store from one thread at a time: pcore's locks park waiting threads in a process-wide
/// table that `fork` copied while the parent's threads may have been in it, so contended
/// threads in a child could hang there.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated path; `opt` is NULL or points to `opt->struct_size`
/// readable bytes; `out` points to writable memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_open(
    dir: *const c_char,
    opt: *const PcoreStoreOptions,
    out: *mut *mut PcoreStore,
) -> i32 {
    guard::call(|| {
        non_null(out, "out")?;
        // SAFETY: per this function's contract.
        let o = unsafe { read_sized(opt, default_options())? };
        let options = to_store_options(&o)?;
        let store = if o.flags & PCORE_OPEN_IN_MEMORY != 0 {
            if !dir.is_null() {
                return Err(Error::InvalidArgument("dir must be NULL with PCORE_OPEN_IN_MEMORY".into()));
            }
            Store::in_memory(&options)?
        } else {
            // SAFETY: per this function's contract.
            let path = unsafe { c_path(dir, "dir")? };
            Store::open(path, &options)?
        };
        let reasons = reason_counts(&store)?;
        let token = STORES.insert(StoreHandle { store, reasons })?;
        // SAFETY: `out` checked non-null; writable by contract.
        unsafe { write_out(out, token as *mut PcoreStore) };
        Ok(())
    })
}

/// Closes the store: uncommitted work is dropped, the committed state is checkpointed, the
/// directory lock released. The handle is invalid afterwards; closing it again, or using it,
/// returns `PCORE_BAD_HANDLE` (never a crash). Pointers from reads become invalid. From the
/// moment a close begins, other threads' calls that would change the store answer
/// `PCORE_BAD_HANDLE`: their changes could never be committed.
///
/// Returns `PCORE_OK`, `PCORE_BAD_HANDLE`, `PCORE_POISONED` (a sync of the close's own
/// compaction or checkpoint failed, or one the store's background thread made since the
/// last call, which no call has reported yet: what the last commits wrote may or may not be
/// on disk, and a reopen tells; the store is closed all the same), or an I/O status if the final
/// checkpoint failed before anything was in doubt (the store is closed all the same; its
/// log still holds every commit). In a forked child,
/// closing a handle of the parent's answers `PCORE_BAD_HANDLE` and does nothing: no
/// checkpoint, no unlock (see `pcore_store_open`); the child's copy is released when it exits.
#[no_mangle]
pub extern "C" fn pcore_store_close(store: *mut PcoreStore) -> i32 {
    guard::call(|| {
        if store.is_null() {
            return Err(Error::BadHandle("the store handle is NULL".into()));
        }
        let s = STORES.remove(store as usize)?;
        // Entries other threads remember go stale with the removal; this thread's goes now.
        RECENT_STORES.with(|cache| cache.try_borrow_mut().map(|mut c| c.forget(store as usize)).ok());
        s.close()
    })
}

/// Allocates a node of at least `min_len` bytes (the smallest size class that holds them)
/// with host-chosen `kind` (1..255, kept exactly). The block is zero-filled; the host may
/// write into `out->writable` and then publish (its length is 0 until then, so a reader
/// copies nothing half-written). `out->writable` is for that first version only: after the
/// node's first publish, write a new version through `pcore_node_write_ptr`. The node is
/// RESERVED ("staged") until the next commit.
///
/// Set `out->struct_size = sizeof(PcoreAllocResult)` before the call.
///
/// Returns `PCORE_OK`; `PCORE_INVALID_ARGUMENT` (kind 0, NULL `out`, bad `struct_size`),
/// `PCORE_TOO_LARGE` (above the largest class), `PCORE_READ_ONLY`, `PCORE_NO_SPACE`,
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_allocate(
    store: *mut PcoreStore,
    min_len: usize,
    kind: u8,
    out: *mut PcoreAllocResult,
) -> i32 {
    with_store(store, |s| {
        // SAFETY: per this function's contract. Checked before allocating: a failed call allocates nothing.
        let out = unsafe { SizedOut::new(out, "out")? };
        let (id, addr, capacity) = s.allocate(min_len, kind)?;
        out.write_with(|| PcoreAllocResult { struct_size: 0, id: id.raw(), writable: addr as *mut c_void, capacity });
        Ok(())
    })
}

/// Replaces node `id`'s bytes with `len` bytes from `data`, which may point into the node's
/// own block. A committed node is never written in place (copy-on-write). When `len`
/// exceeds the node's capacity the node moves to the smallest class that holds `len`
/// (`PCORE_GROWTH_RULE_FIT`, the default) or of at least 2 × `len` (`PCORE_GROWTH_RULE_DOUBLE`);
/// under `PCORE_GROWTH_STABLE_ID` it keeps its id, under `PCORE_GROWTH_NEW_ID` it gets a new
/// one and `id` is freed. `*out_id` (if `out_id` is not NULL) receives the id to use from now on.
/// Repeatable, before and after commits. On failure the node is unchanged.
///
/// Returns `PCORE_OK`; `PCORE_NOT_FOUND` (unknown, freed, stale id), `PCORE_TOO_LARGE`,
/// `PCORE_INVALID_ARGUMENT` (NULL `data` with `len` > 0), `PCORE_READ_ONLY`,
/// `PCORE_NO_SPACE`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `data` points to `len` readable bytes (or is NULL with `len` 0); `out_id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_publish(
    store: *mut PcoreStore,
    id: u64,
    data: *const c_void,
    len: usize,
    out_id: *mut u64,
) -> i32 {
    with_store(store, |s| {
        let id = NodeId::from_raw(id);
        let src = data as usize;
        // A source inside the node's draft or its block is read from there, overlap
        // allowed; one hold of the store's lock finds them and publishes.
        let inside = |range: Option<(usize, usize)>| {
            let (start, capacity) = range?;
            (!data.is_null() && src >= start && src < start + capacity).then_some(src - start)
        };
        let new_id = s.publish_with(id, |block, draft| match (inside(draft), inside(block)) {
            (Some(offset), _) => Ok(Source::Draft { offset, len }),
            (None, Some(offset)) => Ok(Source::OwnBlock { offset, len }),
            // SAFETY: `data` holds `len` readable bytes by contract; checked for NULL inside.
            (None, None) => Ok(Source::Bytes(unsafe { bytes(data.cast::<u8>(), len, "data")? })),
        })?;
        // SAFETY: NULL or writable, by this function's contract.
        unsafe { write_optional(out_id, new_id.raw()) };
        Ok(())
    })
}

/// Begins an in-place mutation (XTree's `get_mapped_address`): `*out_ptr` receives a
/// writable pointer to a private copy of the node's current bytes (its draft; the committed
/// block is never written), `*out_capacity` its size. End it with
/// `pcore_node_publish_in_place` (or `pcore_node_publish` from inside the draft): only then
/// do the written bytes become the node's version. Until then every read, copy, commit and
/// snapshot sees the version before, so a thread copying the node never gets half-written
/// bytes. Calling again before publishing returns the same draft. The pointer is valid until
/// the node is next published or freed, the store aborts or closes; a publish of other
/// bytes, a free or an abort drops what was written in it. (A node allocated and not yet
/// published has no version to protect: its draft is its own block.)
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT` (NULL outputs),
/// `PCORE_READ_ONLY`, `PCORE_NO_SPACE`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out_ptr` and `out_capacity` are writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_write_ptr(
    store: *mut PcoreStore,
    id: u64,
    out_ptr: *mut *mut c_void,
    out_capacity: *mut usize,
) -> i32 {
    with_store(store, |s| {
        non_null(out_ptr, "out_ptr")?;
        non_null(out_capacity, "out_capacity")?;
        let (addr, capacity) = s.write_ptr(NodeId::from_raw(id))?;
        // SAFETY: both checked non-null; writable by contract.
        unsafe {
            write_out(out_ptr, addr as *mut c_void);
            write_out(out_capacity, capacity);
        }
        Ok(())
    })
}

/// Ends an in-place mutation: the node's bytes are now the first `len` bytes of its block.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_TOO_LARGE` (`len` above the capacity),
/// `PCORE_READ_ONLY`, `PCORE_NO_SPACE`, `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_node_publish_in_place(store: *mut PcoreStore, id: u64, len: usize) -> i32 {
    with_store(store, |s| s.publish_in_place(NodeId::from_raw(id), len))
}

/// The latest published bytes of node `id` (the writer sees its own uncommitted nodes).
/// `out->data` stays valid until the node is next written or freed, the store closed, or the
/// second commit after this call has returned (every commit may move a few clean nodes toward
/// the front of their class file to give space back; a moved node's old block outlives the
/// move by one commit): a thread that reads while another may write the node, or commit twice,
/// copies with `pcore_node_read_copy`.
/// On any failure `*out` (if `out` is not NULL) is set to `{NULL, 0}`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (unknown, freed, stale id),
/// `PCORE_INVALID_ARGUMENT` (NULL `out`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `PcoreNodeBytes`.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_read(store: *mut PcoreStore, id: u64, out: *mut PcoreNodeBytes) -> i32 {
    // SAFETY: NULL or writable, by this function's contract.
    unsafe { write_optional(out, PcoreNodeBytes { data: std::ptr::null(), len: 0 }) };
    // SAFETY: `out` is NULL or writable, by this function's contract.
    with_store(store, |s| unsafe { node_read_in(s, id, out) })
}

/// `pcore_node_read` on a store or a snapshot's view of it.
///
/// # Safety
/// `out` is NULL or writable.
pub(crate) unsafe fn node_read_in(s: &Store, id: u64, out: *mut PcoreNodeBytes) -> Result<()> {
    non_null(out, "out")?;
    let (addr, len) = s.read_addr(NodeId::from_raw(id))?;
    // SAFETY: checked non-null; writable by contract.
    unsafe { write_out(out, PcoreNodeBytes { data: addr as *const c_void, len }) };
    Ok(())
}

/// Copies node `id`'s latest published bytes into `buf`: the first `cap` of them, while
/// `*out_len` receives the node's full length (when it is above `cap`, call again with a
/// buffer that large; the node may have changed meanwhile). The copy is taken under the
/// store's read lock, so it is exactly one published version even while another thread
/// publishes, grows or frees the node. A thread that reads while another may write the same
/// node needs this: `pcore_node_read`'s pointer is valid only until the node is next
/// written, which such a reader cannot know.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (unknown, freed, stale id), `PCORE_INVALID_ARGUMENT`
/// (NULL `out_len`, NULL `buf` with `cap` > 0), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `buf` has `cap` writable bytes (or is NULL with `cap` 0); `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_read_copy(
    store: *mut PcoreStore,
    id: u64,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: `buf` and `out_len` as this function's contract says.
    with_store(store, |s| unsafe { node_read_copy_in(s, id, buf, cap, out_len) })
}

/// `pcore_node_read_copy` on a store or a snapshot's view of it.
///
/// # Safety
/// `buf` has `cap` writable bytes (or is NULL with `cap` 0); `out_len` is writable.
pub(crate) unsafe fn node_read_copy_in(
    s: &Store,
    id: u64,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    non_null(out_len, "out_len")?;
    out_buffer(buf, cap, "buf")?;
    // Copied under the store's read lock: a writer cannot change the bytes meanwhile.
    s.with_node(NodeId::from_raw(id), |bytes| {
        // SAFETY: `buf` has `cap` writable bytes by contract and is the host's memory, so
        // it cannot overlap the store's mapped block; `out_len` checked non-null.
        unsafe { copy_out(bytes, buf, cap, out_len) }
    })
}

/// What node `id` is now: length, capacity, kind, whether it is committed and dirty. Set
/// `out->struct_size = sizeof(PcoreNodeInfo)` before the call.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT` (NULL `out`, bad
/// `struct_size`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_node_info(store: *mut PcoreStore, id: u64, out: *mut PcoreNodeInfo) -> i32 {
    with_store(store, |s| {
        // SAFETY: per this function's contract.
        let out = unsafe { SizedOut::new(out, "out")? };
        let i = s.info(NodeId::from_raw(id))?;
        out.write(PcoreNodeInfo {
            struct_size: 0,
            id: i.id.raw(),
            len: i.len as u64,
            capacity: i.capacity as u64,
            kind: i.kind.into(),
            committed: i.committed.into(),
            dirty: i.dirty.into(),
        });
        Ok(())
    })
}

/// `pcore_node_free` and `pcore_node_retire` calls by reason since the store was opened. Kept
/// with the store (an attachment), so every handle of one store counts into the same figures.
#[derive(Default)]
struct ReasonCounts {
    frees: [AtomicU64; PCORE_REASON_COUNT],
    retires: [AtomicU64; PCORE_REASON_COUNT],
}

/// The attachment's name: tree anchors start with "btree:", so it cannot collide.
const REASON_COUNTS: &[u8] = b"ffi:reason-counts";

fn reason_counts(s: &Store) -> Result<Arc<ReasonCounts>> {
    s.attachment(REASON_COUNTS, || Ok(Arc::new(ReasonCounts::default())))
}

fn reason_index(reason: u8) -> Result<usize> {
    let i = usize::from(reason);
    if i < PCORE_REASON_COUNT {
        Ok(i)
    } else {
        Err(Error::InvalidArgument(format!("reason {reason}: not one of PCORE_REASON_*")))
    }
}

/// Counts one more free or retire. Called only under the store's state lock (`free_then`,
/// `retire_then`), which orders every update of a store's counts, so a load and a store count
/// exactly, without an atomic read-modify-write per free.
fn count(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn counts_of(counts: &[AtomicU64; PCORE_REASON_COUNT]) -> [u64; PCORE_REASON_COUNT] {
    std::array::from_fn(|i| counts[i].load(Ordering::Relaxed))
}

/// Frees node `id`: a RESERVED node at once, a committed one at the next commit (logged, so
/// a crash never brings it back over a reused block). The id reads as not found from now on.
/// `reason` is one of `PCORE_REASON_*`: `PcoreStoreStats::frees_by_reason` counts the frees
/// by reason.
///
/// Returns `PCORE_OK`, `PCORE_DOUBLE_FREE` (already freed), `PCORE_NOT_FOUND`,
/// `PCORE_INVALID_ARGUMENT` (an unknown reason; nothing freed), `PCORE_READ_ONLY`,
/// `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_node_free(store: *mut PcoreStore, id: u64, reason: u8) -> i32 {
    with_store(store, |s| {
        let reason = reason_index(reason)?;
        s.free_then(NodeId::from_raw(id), || count(&s.reasons.frees[reason]))
    })
}

/// Frees node `id` at the first commit whose epoch is at least `epoch`; until then it stays
/// readable. A retired node not yet freed when the store closes stays in the store. `reason`
/// is one of `PCORE_REASON_*`: `PcoreStoreStats::retires_by_reason` counts the retires by
/// reason.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND`, `PCORE_INVALID_ARGUMENT` (an unknown reason; nothing
/// retired), `PCORE_READ_ONLY`, `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_node_retire(store: *mut PcoreStore, id: u64, epoch: u64, reason: u8) -> i32 {
    with_store(store, |s| {
        let reason = reason_index(reason)?;
        s.retire_then(NodeId::from_raw(id), epoch, || count(&s.reasons.retires[reason]))
    })
}

/// Sets the root named by `name_len` bytes at `name` (not NUL-terminated; length 0 is the
/// store's default root) to node id `id` (not checked: any value, 0 for none) with
/// `meta_len` bytes of host metadata. Durable at the next commit.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (name over `PCORE_ROOT_NAME_MAX_BYTES`, meta
/// over `PCORE_ROOT_META_MAX_BYTES`, NULL with a length), `PCORE_LIMIT`, `PCORE_READ_ONLY`,
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `name` and `meta` point to their lengths' readable bytes (or are NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn pcore_root_set(
    store: *mut PcoreStore,
    name: *const c_char,
    name_len: usize,
    id: u64,
    meta: *const c_void,
    meta_len: usize,
) -> i32 {
    with_store(store, |s| {
        // SAFETY: per this function's contract.
        let (name, meta) =
            unsafe { (bytes(name.cast::<u8>(), name_len, "name")?, bytes(meta.cast::<u8>(), meta_len, "meta")?) };
        s.set_root(name, id, meta)
    })
}

/// Reads the root named by `name_len` bytes at `name`: `*out_id` receives its node id; up to
/// `meta_cap` bytes of its metadata are copied to `meta_buf`, and `*out_meta_len` (if not
/// NULL) receives the metadata's full length. Sees the latest `pcore_root_set`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no such root), `PCORE_INVALID_ARGUMENT`,
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `name` has `name_len` readable bytes; `out_id` is writable; `meta_buf` has `meta_cap`
/// writable bytes (or is NULL with `meta_cap` 0); `out_meta_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_root_get(
    store: *mut PcoreStore,
    name: *const c_char,
    name_len: usize,
    out_id: *mut u64,
    meta_buf: *mut c_void,
    meta_cap: usize,
    out_meta_len: *mut usize,
) -> i32 {
    with_store(store, |s| {
        // SAFETY: the pointers as this function's contract says.
        unsafe { root_get_in(s, name, name_len, out_id, meta_buf, meta_cap, out_meta_len) }
    })
}

/// `pcore_root_get` on a store or a snapshot's view of it.
///
/// # Safety
/// As `pcore_root_get`'s.
pub(crate) unsafe fn root_get_in(
    s: &Store,
    name: *const c_char,
    name_len: usize,
    out_id: *mut u64,
    meta_buf: *mut c_void,
    meta_cap: usize,
    out_meta_len: *mut usize,
) -> Result<()> {
    non_null(out_id, "out_id")?;
    out_buffer(meta_buf, meta_cap, "meta_buf")?;
    // SAFETY: per this function's contract.
    let name = unsafe { bytes(name.cast::<u8>(), name_len, "name")? };
    let root = s
        .get_root(name)?
        .ok_or_else(|| Error::NotFound(format!("no root named {:?}", String::from_utf8_lossy(name))))?;
    // SAFETY: `out_id` checked non-null; `meta_buf` has `meta_cap` writable bytes and
    // `out_meta_len` is NULL or writable, by contract.
    unsafe {
        write_out(out_id, root.id);
        copy_out(&root.meta, meta_buf, meta_cap, out_meta_len);
    }
    Ok(())
}

/// Commits everything published, freed and set since the last commit, atomically: after a
/// crash all of it is there or none of it. Durable as the store's durability mode says.
/// `*out_epoch` (if not NULL) receives the new epoch; every commit advances it.
///
/// Returns `PCORE_OK`, `PCORE_READ_ONLY`, `PCORE_NO_SPACE` / `PCORE_IO_ERROR` (nothing
/// committed; the store stays usable), `PCORE_POISONED` (a sync of the log, of a large
/// payload or of the meta file failed, or one of the class files or the meta in a checkpoint
/// the commit started (a failure before those, of the checkpoint's own new files, leaves
/// nothing in doubt: the commit answers OK and `pcore_store_checkpoint` tells it), or a log
/// write that failed could not be undone: this commit may or may not be durable, and a reopen
/// tells which; every later call but close answers `PCORE_POISONED`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out_epoch` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_commit(store: *mut PcoreStore, out_epoch: *mut u64) -> i32 {
    guard::call(|| {
        let epoch = store_of(store)?.commit()?;
        // SAFETY: NULL or writable, by this function's contract.
        unsafe { write_optional(out_epoch, epoch) };
        Ok(())
    })
}

/// Throws away every change since the last commit (or the open): nodes allocated since are
/// freed and their ids stale (`PCORE_NOT_FOUND`); published, grown and in-place versions give
/// way to the committed ones; frees, retirements and root changes are withdrawn. Trees open on
/// the store stay usable and hold their committed entries again; their cursors answer
/// `PCORE_STALE_CURSOR`. A tree created since the last commit is gone, as if dropped: its
/// handles answer `PCORE_BAD_HANDLE`, and `pcore_tree_open` makes it anew. A tree dropped since
/// (`pcore_tree_drop`) is back in the store, but the handles that were open on it stay as the
/// drop left them (`PCORE_BAD_HANDLE`): open it again. Pointers obtained since
/// (`pcore_node_write_ptr`, an allocation's `writable`) must not be used afterwards. Nothing
/// is written to disk. After a commit that failed (`PCORE_NO_SPACE`, say), this returns the
/// store to its last commit.
///
/// Returns `PCORE_OK`, `PCORE_READ_ONLY`, `PCORE_POISONED` (the state on disk is unsure:
/// reopen), `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_store_abort(store: *mut PcoreStore) -> i32 {
    guard::call(|| store_of(store)?.abort())
}

/// Writes the committed state to a new checkpoint and starts an empty log (also done
/// automatically when the log grows, and at close).
///
/// Returns `PCORE_OK`, `PCORE_READ_ONLY`, `PCORE_NO_SPACE` / `PCORE_IO_ERROR` (no checkpoint
/// taken, nothing on disk in doubt; the store stays usable), `PCORE_POISONED` (a sync of the
/// class files or the meta failed, or one after the checkpoint could no longer be undone:
/// after a failed sync the system may have dropped the pages it did not write, so a second
/// try could not be trusted; reopen, which rebuilds them from the log), `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_store_checkpoint(store: *mut PcoreStore) -> i32 {
    guard::call(|| store_of(store)?.checkpoint())
}

/// Compacts the store online: moves nodes from the tails of the class files into free blocks
/// nearer their fronts, lets the old blocks go (a checkpoint) and cuts the free tails, until
/// the files hold little more than the nodes (about 1.1 times their blocks, whole 1 MiB
/// segments per size class). Readers, snapshots and the writer go on between its rounds.
/// Every commit does a little of this on its own, and a close does it when much is to gain:
/// this call is for doing it all now.
///
/// Each round is a commit: whatever was published before it is committed too, so call it
/// where you would call `pcore_store_commit`. A moved node keeps its id; a `pcore_node_read`
/// pointer to it stays good through the commit after the move. Blocks that an open snapshot
/// or a read-only process still reads are not given back (`out->pinned_bytes`), and no file
/// is cut while a read-only process has the store open. A process killed during compaction
/// leaves the store as its last durable commit, whole.
///
/// `flags` must be 0. `out` (NULL, or its `struct_size` set) receives what was done.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (flags, `struct_size`), `PCORE_READ_ONLY`,
/// `PCORE_NO_SPACE` / `PCORE_IO_ERROR` (the store stays usable and whole),
/// `PCORE_POISONED` (a sync of one of its commits or checkpoints failed: reopen),
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_compact(store: *mut PcoreStore, flags: u64, out: *mut PcoreCompactReport) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        if flags != 0 {
            return Err(Error::InvalidArgument(format!("compact flags {flags:#x}: none are defined")));
        }
        // SAFETY: per this function's contract.
        let out = if out.is_null() { None } else { Some(unsafe { SizedOut::new(out, "out")? }) };
        let r = s.compact(|_, _| {})?;
        if let Some(out) = out {
            out.write(PcoreCompactReport {
                struct_size: 0,
                moved_nodes: r.moved_nodes,
                moved_bytes: r.moved_bytes,
                bytes_before: r.bytes_before,
                bytes_after: r.bytes_after,
                live_bytes: r.live_bytes,
                pinned_bytes: r.pinned_bytes,
                ratio: r.ratio(),
            });
        }
        Ok(())
    })
}

/// Store statistics. The caller sets `out->struct_size = sizeof(PcoreStoreStats)`; fields
/// beyond it are not written. The allocator's figures come from `pcore_store_class_stats`.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL `out`, bad `struct_size`),
/// `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_stats(store: *mut PcoreStore, out: *mut PcoreStoreStats) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        // SAFETY: per this function's contract.
        let out = unsafe { SizedOut::new(out, "out")? };
        let st = s.stats()?;
        let reasons = reason_counts(&s)?;
        out.write(PcoreStoreStats {
            struct_size: 0,
            class_count: st.classes.len() as u64,
            epoch: st.epoch,
            live_nodes: st.live_nodes,
            reserved_nodes: st.reserved_nodes,
            reallocations: st.reallocations,
            log_bytes: st.log_bytes,
            checkpoint_epoch: st.checkpoint_epoch,
            open_files: st.open_files,
            data_file_bytes: st.data_file_bytes,
            pending_free_bytes: st.pending_free_bytes,
            frees_by_reason: counts_of(&reasons.frees),
            retires_by_reason: counts_of(&reasons.retires),
            snapshots_open: st.snapshots_open,
            oldest_snapshot_epoch: st.oldest_snapshot_epoch,
            reader_processes: st.reader_processes,
            pinned_bytes: st.pinned_bytes,
            held_base_bytes: st.held_base_bytes,
            directory_bytes: st.directory_bytes,
            live_bytes: st.live_bytes,
            free_bytes: st.free_bytes,
            checkpoint_bytes: st.checkpoint_bytes,
            footprint_ratio: st.footprint_ratio(),
            given_back_bytes: st.given_back_bytes,
        });
        Ok(())
    })
}

/// Allocator statistics of size class `class_index` (0 .. `class_count` - 1, smallest first),
/// or their sums over all classes for `PCORE_CLASS_TOTAL`. Set
/// `out->struct_size = sizeof(PcoreClassStats)` before the call.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (index out of range, NULL `out`, bad
/// `struct_size`), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_class_stats(
    store: *mut PcoreStore,
    class_index: u32,
    out: *mut PcoreClassStats,
) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        // SAFETY: per this function's contract.
        let out = unsafe { SizedOut::new(out, "out")? };
        let st = s.stats()?;
        let c = if class_index == PCORE_CLASS_TOTAL {
            &st.total
        } else {
            st.classes
                .get(class_index as usize)
                .ok_or_else(|| Error::InvalidArgument(format!("class index {class_index} of {}", st.classes.len())))?
        };
        out.write(PcoreClassStats::from(c));
        Ok(())
    })
}

/// Checks the allocator against the object table: every referenced block allocated exactly
/// once, nothing allocated that nothing references.
///
/// Returns `PCORE_OK`, `PCORE_INTERNAL` (with what is wrong), `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_store_verify(store: *mut PcoreStore) -> i32 {
    guard::call(|| store_of(store)?.verify())
}
