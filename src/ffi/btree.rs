//! `pcore_tree_*` and `pcore_cursor_*`: the B+ tree's C ABI. Same conventions as the store's:
//! checked handles, statuses, outputs written only on success, no panic crosses.

use super::guard::{self, bytes, copy_out, non_null, out_buffer, write_optional, write_out};
use super::registry::{HandleType, Registry};
use super::sized::{init_sized, narrow, read_sized, SizedOut};
use super::store::store_of;
use super::types::*;
use crate::btree::{BTree, Comparator, Duplicates, TreeOptions, ROOT_PREFIX};
use crate::error::{Error, Result};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A tree handle: the tree, and whether this handle is still open, which the cursors opened
/// through it check (a tree shared by several handles outlives each of them).
#[derive(Clone)]
struct TreeHandle {
    tree: BTree,
    open: Arc<AtomicBool>,
}

static TREES: Registry<TreeHandle> = Registry::new(HandleType::Tree);

pub(crate) fn tree_token(handle: *const PcoreTree) -> Result<usize> {
    if handle.is_null() {
        return Err(Error::BadHandle("the tree handle is NULL".into()));
    }
    Ok(handle as usize)
}

pub(crate) fn tree_of(handle: *const PcoreTree) -> Result<BTree> {
    with_tree(handle, |t| Ok(t.clone()))
}

/// Calls `f` with the tree a handle names, borrowed (see `Registry::with`): for the short,
/// frequent calls (insert, get, remove).
pub(crate) fn with_tree<R>(handle: *const PcoreTree, f: impl FnOnce(&BTree) -> Result<R>) -> Result<R> {
    TREES.with(tree_token(handle)?, |h| f(&h.tree))
}

fn default_tree_options() -> PcoreTreeOptions {
    PcoreTreeOptions {
        struct_size: std::mem::size_of::<PcoreTreeOptions>() as u64,
        page_bytes: 4096,
        duplicates: PCORE_DUP_UNIQUE,
        flags: 0,
        compare: None,
        compare_ctx: std::ptr::null_mut(),
        max_entries_per_page: 0,
    }
}

/// The host's comparator and context, callable from any thread (the host promises it).
struct HostOrder {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize) -> i32,
    ctx: *mut c_void,
}
// SAFETY: PcoreCompareFn's documented contract: callable from any thread that uses the tree.
unsafe impl Send for HostOrder {}
// SAFETY: as above.
unsafe impl Sync for HostOrder {}

impl HostOrder {
    fn compare(&self, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        // SAFETY: the host's function, called with valid slices; its contract forbids unwinding.
        let r = unsafe { (self.f)(self.ctx, a.as_ptr(), a.len(), b.as_ptr(), b.len()) };
        r.cmp(&0)
    }
}

fn comparator(o: &PcoreTreeOptions) -> Option<Comparator> {
    let host = HostOrder { f: o.compare?, ctx: o.compare_ctx };
    Some(Arc::new(move |a: &[u8], b: &[u8]| host.compare(a, b)))
}

/// Fills the first `size` bytes of `opt` with the defaults (4 KiB pages, unique keys,
/// bytewise order) and sets `struct_size` to what it wrote: `size` is
/// `sizeof(PcoreTreeOptions)` as the caller's header has it (see
/// `pcore_store_options_init_sized`). This header maps `pcore_tree_options_init(opt)` to this
/// call.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` when `opt` is NULL or `size` is not a
/// multiple of 8 of at least 8, `PCORE_TOO_LARGE` for a size over `PTRDIFF_MAX`.
///
/// # Safety
/// `opt` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_options_init_sized(opt: *mut PcoreTreeOptions, size: usize) -> i32 {
    guard::call(|| {
        non_null(opt, "opt")?;
        // SAFETY: checked non-null; `size` writable bytes by contract.
        unsafe { init_sized(opt, size, default_tree_options()) }
    })
}

/// The size of `PcoreTreeOptions` in the headers of ABI 2.0 to 2.3, whose programs call the
/// unsized init: it must never write more, whatever fields are added.
const TREE_OPTIONS_2_3_BYTES: usize = 56;

/// The entry point that programs built against ABI 2.0 to 2.3 call (this header maps the name
/// to `pcore_tree_options_init_sized`): fills their 56-byte struct with the defaults and sets
/// `struct_size` to 56.
///
/// Returns `PCORE_OK`, or `PCORE_INVALID_ARGUMENT` when `opt` is NULL.
///
/// # Safety
/// `opt` is NULL or points to 56 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_options_init(opt: *mut PcoreTreeOptions) -> i32 {
    guard::call(|| {
        non_null(opt, "opt")?;
        // SAFETY: checked non-null; 56 writable bytes by contract.
        unsafe { init_sized(opt, TREE_OPTIONS_2_3_BYTES, default_tree_options()) }
    })
}

/// A tree's name, refused before anything copies it when no anchor could hold it.
///
/// # Safety
/// As [`bytes`].
unsafe fn tree_name<'a>(name: *const c_char, name_len: usize) -> Result<&'a [u8]> {
    // First what no buffer can have (`TooLarge`, as for every length), then the limit.
    // SAFETY: per the caller's contract; nothing is read here.
    let name = unsafe { bytes(name.cast::<u8>(), name_len, "name")? };
    if ROOT_PREFIX.len() + name.len() > crate::limits::ROOT_NAME_MAX_BYTES {
        return Err(Error::InvalidArgument(format!("a tree name of {name_len} bytes is too long")));
    }
    Ok(name)
}

/// Opens the tree named by `name_len` bytes at `name` in `store`, creating it unless
/// `PCORE_TREE_NO_CREATE` (a created tree is durable at the store's next commit). One store
/// holds many trees. An existing tree must be opened with the page size and duplicates mode it
/// was created with, and with a comparator exactly when it was created with one. Every open of
/// one tree shares it; each handle is released with `pcore_tree_close`. Tree changes are made
/// durable by `pcore_store_commit`.
///
/// Returns `PCORE_OK`; `PCORE_INVALID_ARGUMENT` (NULL `out`, bad or mismatched options, a
/// name longer than 249 bytes: `PCORE_ROOT_NAME_MAX_BYTES` less the 6-byte prefix `btree:` of
/// the root that anchors a tree),
/// `PCORE_NOT_FOUND` (no such tree and `PCORE_TREE_NO_CREATE`), `PCORE_CORRUPT`,
/// `PCORE_READ_ONLY` (creating in a read-only store), `PCORE_NO_SPACE` (creating on a full
/// disk), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `name` has `name_len` readable bytes; `opt` is NULL or points to `opt->struct_size`
/// readable bytes; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_open(
    store: *mut PcoreStore,
    name: *const c_char,
    name_len: usize,
    opt: *const PcoreTreeOptions,
    out: *mut *mut PcoreTree,
) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        non_null(out, "out")?;
        // SAFETY: per this function's contract.
        let name = unsafe { tree_name(name, name_len)? };
        // SAFETY: per this function's contract.
        let o = unsafe { read_sized(opt, default_tree_options())? };
        let duplicates = match o.duplicates {
            PCORE_DUP_UNIQUE => Duplicates::Unique,
            PCORE_DUP_OVERWRITE => Duplicates::Overwrite,
            PCORE_DUP_MULTI => Duplicates::Multi,
            other => return Err(Error::InvalidArgument(format!("duplicates mode {other}"))),
        };
        if o.flags & !PCORE_TREE_NO_CREATE != 0 {
            return Err(Error::InvalidArgument(format!("unknown tree flags {:#x}", o.flags)));
        }
        if o.flags & PCORE_TREE_NO_CREATE != 0 {
            let mut anchor = ROOT_PREFIX.to_vec();
            anchor.extend_from_slice(name);
            if s.get_root(&anchor)?.is_none() {
                return Err(Error::NotFound(format!("no tree named {:?}", String::from_utf8_lossy(name))));
            }
        }
        let options = TreeOptions {
            page_bytes: narrow(o.page_bytes, "page_bytes")?,
            duplicates,
            comparator: comparator(&o),
            max_entries_per_page: match o.max_entries_per_page {
                0 => None,
                n => Some(narrow(n, "max_entries_per_page")?),
            },
        };
        let tree = BTree::open(&s, name, &options)?;
        let token = TREES.insert(TreeHandle { tree, open: Arc::new(AtomicBool::new(true)) })?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, token as *mut PcoreTree) };
        Ok(())
    })
}

/// Releases a tree handle (the tree stays in the store). Every call on a cursor opened through
/// this handle answers `PCORE_BAD_HANDLE` afterwards (repositioning too), except
/// `pcore_cursor_close`, which releases it; cursors opened through another handle of the same
/// tree answer `PCORE_STALE_CURSOR` until positioned again. A second close returns
/// `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_tree_close(tree: *mut PcoreTree) -> i32 {
    guard::call(|| {
        if tree.is_null() {
            return Err(Error::BadHandle("the tree handle is NULL".into()));
        }
        let handle = TREES.remove(tree as usize)?;
        handle.open.store(false, Ordering::Release);
        handle.tree.invalidate_cursors();
        Ok(())
    })
}

/// Drops the tree named by `name_len` bytes at `name` from `store`: frees every page of it
/// and every node holding one of its large values, and removes its anchor, as one change of
/// the store's uncommitted state, durable at the next `pcore_store_commit` (a store closed
/// before that still holds the tree). Everything is checked before anything is freed: a drop
/// that fails changes nothing. Open handles of the tree stay valid handles, but every call on
/// them except `pcore_tree_close` and `pcore_tree_len` (which answers 0) returns
/// `PCORE_BAD_HANDLE`, and their cursors `PCORE_STALE_CURSOR` then `PCORE_BAD_HANDLE`; a
/// later `pcore_tree_open` of the name creates a new, empty tree. A `pcore_store_abort` before
/// the next commit brings the tree back, not those handles: a new `pcore_tree_open` finds it.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no such tree), `PCORE_CORRUPT` (a page of the tree
/// is damaged: nothing was freed), `PCORE_INVALID_ARGUMENT` (a name over 249 bytes, as for
/// `pcore_tree_open`; NULL with a length), `PCORE_READ_ONLY`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `name` has `name_len` readable bytes (or is NULL with `name_len` 0).
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_drop(store: *mut PcoreStore, name: *const c_char, name_len: usize) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        // SAFETY: per this function's contract.
        let name = unsafe { tree_name(name, name_len)? };
        crate::btree::drop_tree(&s, name)
    })
}

/// The longest key a tree with `page_bytes` pages takes (742 for 4096): every page then holds
/// at least four entries. Into `*out`.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (page size not a power of two in 512..65536,
/// NULL `out`).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_max_key_bytes(page_bytes: u32, out: *mut usize) -> i32 {
    guard::call(|| {
        non_null(out, "out")?;
        if !page_bytes.is_power_of_two() || !(512..=65536).contains(&page_bytes) {
            return Err(Error::InvalidArgument(format!("page size {page_bytes}")));
        }
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, crate::btree::max_key_bytes(page_bytes)) };
        Ok(())
    })
}

/// Inserts `key` with `value` as the tree's duplicates mode says. On failure the tree is
/// unchanged.
///
/// Returns `PCORE_OK`; `PCORE_DUPLICATE_KEY` (unique tree, or the same pair in a multi tree),
/// `PCORE_INVALID_ARGUMENT` (key over the limit, NULL with a length), `PCORE_TOO_LARGE`
/// (value over the limit: the store's largest size class, in a multi tree a sixteenth of the
/// page size), `PCORE_NO_SPACE`, `PCORE_READ_ONLY`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
///
/// # Safety
/// `key` and `value` point to their lengths' readable bytes (or are NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_insert(
    tree: *mut PcoreTree,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> i32 {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let (k, v) =
            unsafe { (bytes(key.cast::<u8>(), key_len, "key")?, bytes(value.cast::<u8>(), value_len, "value")?) };
        with_tree(tree, |t| t.insert(k, v))
    })
}

/// Looks `key` up: copies up to `value_cap` bytes of its value (a multi tree: its first value)
/// into `value_buf`, and `*out_value_len` (if not NULL) receives the value's full length.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no such key), `PCORE_INVALID_ARGUMENT`,
/// `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
///
/// # Safety
/// `key` has `key_len` readable bytes; `value_buf` has `value_cap` writable bytes (or is NULL
/// with `value_cap` 0) outside the store's own nodes (the value is copied straight from its
/// page); `out_value_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_get(
    tree: *mut PcoreTree,
    key: *const c_void,
    key_len: usize,
    value_buf: *mut c_void,
    value_cap: usize,
    out_value_len: *mut usize,
) -> i32 {
    // SAFETY: the pointers as this function's contract says.
    guard::call(|| with_tree(tree, |t| unsafe { tree_get_in(t, key, key_len, value_buf, value_cap, out_value_len) }))
}

/// `pcore_tree_get` on a tree or a snapshot's view of it.
///
/// # Safety
/// As `pcore_tree_get`'s.
pub(crate) unsafe fn tree_get_in(
    t: &BTree,
    key: *const c_void,
    key_len: usize,
    value_buf: *mut c_void,
    value_cap: usize,
    out_value_len: *mut usize,
) -> Result<()> {
    out_buffer(value_buf, value_cap, "value_buf")?;
    // SAFETY: per this function's contract.
    let k = unsafe { bytes(key.cast::<u8>(), key_len, "key")? };
    // SAFETY: `value_buf` has `value_cap` writable bytes by contract; n <= value_cap.
    let copied = t.get_with(k, |v| unsafe { copy_out(v, value_buf, value_cap, out_value_len) })?;
    copied.ok_or_else(|| Error::NotFound("no such key".into()))
}

/// Removes `key` (a multi tree: all its values, whole or not at all, under one hold of the
/// tree: a disk too full for the page copies the removes need is `PCORE_NO_SPACE` before
/// anything is removed). `*out_removed` (if not NULL) is 1 when something was removed, 0 when
/// the key was absent (not an error): a boolean, as everywhere in this ABI, is a `uint64_t` 0
/// or 1.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT`, `PCORE_READ_ONLY`, `PCORE_NO_SPACE`,
/// `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
///
/// # Safety
/// `key` has `key_len` readable bytes; `out_removed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_remove(
    tree: *mut PcoreTree,
    key: *const c_void,
    key_len: usize,
    out_removed: *mut u64,
) -> i32 {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let k = unsafe { bytes(key.cast::<u8>(), key_len, "key")? };
        let removed = with_tree(tree, |t| t.remove(k))?;
        // SAFETY: NULL or writable, by this function's contract.
        unsafe { write_optional(out_removed, removed.into()) };
        Ok(())
    })
}

/// Removes the pair (`key`, `value`): in a multi tree that one pair; otherwise `key` only if
/// its value equals `value` (compared and removed under one hold of the tree, so no other
/// writer's change comes between). `*out_removed` as for `pcore_tree_remove`.
///
/// # Safety
/// `key` and `value` point to their lengths' readable bytes; `out_removed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_remove_pair(
    tree: *mut PcoreTree,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
    out_removed: *mut u64,
) -> i32 {
    guard::call(|| {
        let t = tree_of(tree)?;
        // SAFETY: per this function's contract.
        let (k, v) =
            unsafe { (bytes(key.cast::<u8>(), key_len, "key")?, bytes(value.cast::<u8>(), value_len, "value")?) };
        let removed = t.remove_pair(k, v)?;
        // SAFETY: NULL or writable, by this function's contract.
        unsafe { write_optional(out_removed, removed.into()) };
        Ok(())
    })
}

/// Loads `count` pairs, sorted by key (multi trees: by key then value) without duplicates,
/// into this empty tree: pages are built directly and full. `keys[i]` and `values[i]` describe
/// pair i. On failure (not empty, not sorted, a key over the limit) the tree is unchanged.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT`, `PCORE_TOO_LARGE` (a key or value over the
/// limit, or a `count` no array can hold, refused before either array is read),
/// `PCORE_NO_SPACE`, `PCORE_READ_ONLY`, `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `keys` and `values` point to `count` readable `PcoreBytes` each (or are NULL with `count`
/// 0), each describing readable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_bulk_load(
    tree: *mut PcoreTree,
    keys: *const PcoreBytes,
    values: *const PcoreBytes,
    count: usize,
) -> i32 {
    guard::call(|| {
        let t = tree_of(tree)?;
        // No array can hold more entries (outsider11 G15: a count of SIZE_MAX was read past
        // the caller's array), as no buffer is longer than `isize::MAX` bytes.
        if count > isize::MAX as usize / std::mem::size_of::<PcoreBytes>() {
            return Err(Error::TooLarge(format!("{count} entries: no array holds that many")));
        }
        if count > 0 {
            non_null(keys, "keys")?;
            non_null(values, "values")?;
        }
        t.bulk_load_indexed(count, |i| {
            // SAFETY: `keys` and `values` hold `count` readable entries by contract (i < count),
            // and each entry describes readable bytes that stay unchanged during the call.
            unsafe {
                let (k, v) = (*keys.add(i), *values.add(i));
                Ok((bytes(k.data, k.len, "key")?, bytes(v.data, v.len, "value")?))
            }
        })
    })
}

/// The number of entries (pairs, in a multi tree) into `*out`.
///
/// Returns `PCORE_OK` (0 for a tree dropped, or created since the last commit and aborted),
/// `PCORE_INVALID_ARGUMENT` (NULL `out`), `PCORE_BAD_HANDLE`, `PCORE_POISONED`.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_len(tree: *mut PcoreTree, out: *mut u64) -> i32 {
    guard::call(|| {
        let t = tree_of(tree)?;
        non_null(out, "out")?;
        // Closed or poisoned, as every other call answers (outsider11 G5).
        t.store()?.check_open()?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, t.len()) };
        Ok(())
    })
}

/// Tree statistics (reads every page). Set `out->struct_size = sizeof(PcoreTreeStats)`.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL `out`, bad `struct_size`),
/// `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
///
/// # Safety
/// `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_stats(tree: *mut PcoreTree, out: *mut PcoreTreeStats) -> i32 {
    guard::call(|| {
        let t = tree_of(tree)?;
        // SAFETY: per this function's contract.
        let out = unsafe { SizedOut::new(out, "out")? };
        let s = t.stats()?;
        // A tree is never deeper than DEPTH_MAX (refused at open, never grown past): every
        // level has its slot.
        let mut levels = [0u64; PCORE_TREE_DEPTH_MAX];
        for (slot, n) in levels.iter_mut().zip(&s.pages_per_level) {
            *slot = *n;
        }
        out.write(PcoreTreeStats {
            struct_size: 0,
            height: s.height.into(),
            entries: s.entries,
            leaf_pages: s.leaf_pages,
            pages: s.pages_per_level.iter().sum(),
            keys_per_leaf_min: s.keys_per_leaf_min,
            keys_per_leaf_max: s.keys_per_leaf_max,
            keys_per_leaf_avg: s.keys_per_leaf_avg,
            leaf_fill: s.leaf_fill,
            bytes_per_entry: s.bytes_per_entry,
            overflow_values: s.overflow_values,
            page_bytes: s.page_bytes.into(),
            pages_per_level: levels,
        });
        Ok(())
    })
}

/// Checks every page of the tree: layout, order (a comparator that is not a total order is
/// found here), separators, leaf depth, entry count, value nodes.
///
/// Returns `PCORE_OK`, `PCORE_CORRUPT` (naming the page), `PCORE_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn pcore_tree_verify(tree: *mut PcoreTree) -> i32 {
    guard::call(|| tree_of(tree)?.verify())
}

/// The tree a handle names, and the flag that says whether that handle is still open (what a
/// cursor opened through it keeps).
pub(super) fn tree_and_open_flag(tree: *const PcoreTree) -> Result<(BTree, Arc<AtomicBool>)> {
    TREES.with(tree_token(tree)?, |h| Ok((h.tree.clone(), h.open.clone())))
}

#[cfg(test)]
mod abi_tests {
    use super::super::cursor::{pcore_cursor_close, pcore_cursor_open};
    use super::super::store::{
        pcore_store_close, pcore_store_commit, pcore_store_open, pcore_store_options_init_sized,
    };
    use super::*;
    use crate::error::Status;

    /// After a failed log sync every call but close answers `PCORE_POISONED`: the tree's
    /// length and a new cursor too (outsider11 G5: both answered OK).
    #[test]
    fn a_poisoned_store_s_tree_calls_answer_poisoned() {
        let dir = std::env::temp_dir().join(format!("pcore-ffi-poisoned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: zeroed options are a valid value for `pcore_store_options_init_sized` to fill.
        let mut opt: PcoreStoreOptions = unsafe { std::mem::zeroed() };
        // SAFETY: `opt` is writable.
        assert_eq!(unsafe { pcore_store_options_init_sized(&mut opt, std::mem::size_of::<PcoreStoreOptions>()) }, 0);
        opt.durability = PCORE_DURABILITY_STRICT;
        let (mut store, mut tree, mut cursor) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a NUL-terminated path, valid options, writable outputs; every handle is open
        // when used.
        unsafe {
            assert_eq!(pcore_store_open(path.as_ptr(), &opt, &mut store), 0);
            assert_eq!(pcore_tree_open(store, c"t".as_ptr(), 1, std::ptr::null(), &mut tree), 0);
            assert_eq!(pcore_tree_insert(tree, b"k".as_ptr().cast(), 1, b"v".as_ptr().cast(), 1), 0);
            crate::os::simulate_sync_failure(&dir, true);
            assert_eq!(pcore_store_commit(store, std::ptr::null_mut()), Status::Poisoned as i32);
            crate::os::simulate_sync_failure(&dir, false);
            let mut len = 7;
            assert_eq!(pcore_tree_len(tree, &mut len), Status::Poisoned as i32);
            assert_eq!(pcore_cursor_open(tree, &mut cursor), Status::Poisoned as i32);
            assert!(cursor.is_null());
            assert_eq!(pcore_tree_close(tree), 0);
            assert_eq!(pcore_store_close(store), 0);
            let _ = pcore_cursor_close(cursor);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A count no array can have is `PCORE_TOO_LARGE` before a pointer is read (outsider11
    /// G15: a count of SIZE_MAX with a one-entry array was read past it).
    #[test]
    fn a_bulk_load_of_more_entries_than_an_array_holds_is_too_large() {
        let dir = std::env::temp_dir().join(format!("pcore-ffi-bulk-count-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let (mut store, mut tree) = (std::ptr::null_mut(), std::ptr::null_mut());
        let one = PcoreBytes { data: b"k".as_ptr().cast(), len: 1 };
        // SAFETY: a NUL-terminated path, default options, writable outputs; the arrays hold
        // one entry, and the call must not read past it.
        unsafe {
            assert_eq!(pcore_store_open(path.as_ptr(), std::ptr::null(), &mut store), 0);
            assert_eq!(pcore_tree_open(store, c"t".as_ptr(), 1, std::ptr::null(), &mut tree), 0);
            assert_eq!(pcore_tree_bulk_load(tree, &one, &one, usize::MAX), Status::TooLarge as i32);
            assert_eq!(pcore_tree_bulk_load(tree, &one, &one, 1), 0);
            assert_eq!(pcore_tree_close(tree), 0);
            assert_eq!(pcore_store_close(store), 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
