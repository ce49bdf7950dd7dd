//! The C ABI of cursors: ordered scans both ways within bounds, an entry at a time, moved and
//! read in one call, or many in a batch. Cursors live in a lock-free slot table (`Slots`):
//! a scan makes a call per entry, and each call's fixed cost is most of its cost.

use super::btree::tree_and_open_flag;
use super::guard::{self, bytes, non_null, out_buffer, write_out};
use super::registry::HandleType;
use super::slots::Slots;
use super::types::*;
use crate::btree::Cursor;
use crate::error::{Error, Result};
use crate::store::Store;
use std::ffi::c_void;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cursor and what it needs of its tree handle and store.
struct CursorState {
    cursor: Cursor,
    /// The `open` flag of the tree handle the cursor was opened through.
    tree_open: Arc<AtomicBool>,
    /// The tree's store (a snapshot's view of it, for a cursor on a snapshot): asked at each
    /// call whether it is still open, since a move inside the leaf the cursor holds reads no
    /// page of it.
    store: Store,
}

/// Cursors take no lock per call (see `Slots`): an ordered scan makes a call per entry.
static CURSORS: Slots<CursorState> = Slots::new(HandleType::Cursor);

/// Calls `f` with the cursor a handle names, held for the call (see `Slots::take`: another
/// thread's call meanwhile gets `Busy`). A cursor whose tree handle is closed is refused: it
/// must not outlive the handle it was opened through.
#[inline]
fn with_cursor<R>(handle: *const PcoreCursor, f: impl FnOnce(&mut CursorState) -> Result<R>) -> Result<R> {
    if handle.is_null() {
        return Err(Error::BadHandle("the cursor handle is NULL".into()));
    }
    CURSORS.with(handle as usize, |state| {
        if !state.tree_open.load(Ordering::Acquire) || !state.store.is_open() {
            return Err(tree_closed(handle, state));
        }
        match f(state) {
            // The tree handle closed during the call: its close made the cursor stale, but
            // the tree did not change (outsider11 G9).
            Err(Error::StaleCursor(_)) if !state.tree_open.load(Ordering::Acquire) || !state.store.is_open() => {
                Err(tree_closed(handle, state))
            }
            result => result,
        }
    })
}

#[cold]
#[inline(never)]
fn tree_closed(handle: *const PcoreCursor, state: &CursorState) -> Error {
    let what = if state.store.is_open() { "the tree handle it was opened through" } else { "its store" };
    Error::BadHandle(format!("cursor {:#x}: {what} is closed", handle as usize))
}

/// Opens a cursor on `tree`, unpositioned: call `pcore_cursor_first`, `_last` or `_seek`.
/// Release it with `pcore_cursor_close`. After any change to the tree the cursor answers
/// `PCORE_STALE_CURSOR` until positioned again. Once `tree` (this handle) or its store is
/// closed, every call on the cursor but its close answers `PCORE_BAD_HANDLE`. A cursor
/// serves one call at a time: a call (close included) made while another thread's call on
/// the same cursor is in progress answers `PCORE_BUSY` and changes nothing.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL `out`), `PCORE_BAD_HANDLE` (a NULL,
/// closed or foreign `tree`, or one whose store is closed: the tree cannot be read any more).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_open(tree: *mut PcoreTree, out: *mut *mut PcoreCursor) -> i32 {
    // SAFETY: `out` is writable, by this function's contract.
    guard::call(|| unsafe { cursor_open_at(tree, None, out) })
}

/// Opens a cursor on the tree a handle names, or on that tree as `snapshot` sees it.
///
/// # Safety
/// `out` is writable.
pub(crate) unsafe fn cursor_open_at(
    tree: *mut PcoreTree,
    snapshot: Option<&crate::store::Snapshot>,
    out: *mut *mut PcoreCursor,
) -> Result<()> {
    let (t, tree_open) = tree_and_open_flag(tree)?;
    non_null(out, "out")?;
    t.store()?.check_open()?;
    drop(t.read_state()?); // a dropped tree is BadHandle, as for every other call
    let t = match snapshot {
        Some(snap) => t.at(snap)?,
        None => t,
    };
    let state = CursorState { cursor: Cursor::new(&t), tree_open, store: t.store()? };
    let token = CURSORS.insert(state)?;
    // SAFETY: checked non-null; writable by contract.
    unsafe { write_out(out, token as *mut PcoreCursor) };
    Ok(())
}

/// Releases a cursor; a second close returns `PCORE_BAD_HANDLE`, a close while another
/// thread's call on the cursor is in progress `PCORE_BUSY` (the cursor stays open).
#[no_mangle]
pub extern "C" fn pcore_cursor_close(cursor: *mut PcoreCursor) -> i32 {
    guard::call(|| {
        if cursor.is_null() {
            return Err(Error::BadHandle("the cursor handle is NULL".into()));
        }
        CURSORS.remove(cursor as usize).map(|_| ())
    })
}

fn bound<'a>(kind: u32, key: &'a [u8], name: &str) -> Result<Bound<&'a [u8]>> {
    match kind {
        PCORE_BOUND_UNBOUNDED => Ok(Bound::Unbounded),
        PCORE_BOUND_INCLUDED => Ok(Bound::Included(key)),
        PCORE_BOUND_EXCLUDED => Ok(Bound::Excluded(key)),
        other => Err(Error::InvalidArgument(format!("{name} bound kind {other}"))),
    }
}

/// Limits the cursor to keys between a lower and an upper bound (`PCORE_BOUND_*`; the key
/// is ignored for UNBOUNDED). Takes effect at the next `first`, `last` or move.
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (an unknown bound kind, a bound key longer
/// than the tree's longest key, NULL with a nonzero length), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `lower` and `upper` point to their lengths' readable bytes (or are NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_set_bounds(
    cursor: *mut PcoreCursor,
    lower: *const c_void,
    lower_len: usize,
    lower_kind: u32,
    upper: *const c_void,
    upper_len: usize,
    upper_kind: u32,
) -> i32 {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let (l, u) =
            unsafe { (bytes(lower.cast::<u8>(), lower_len, "lower")?, bytes(upper.cast::<u8>(), upper_len, "upper")?) };
        let (lb, ub) = (bound(lower_kind, l, "lower")?, bound(upper_kind, u, "upper")?);
        with_cursor(cursor, |c| c.cursor.set_bounds(lb, ub))
    })
}

fn cursor_op(cursor: *mut PcoreCursor, f: impl FnOnce(&mut Cursor) -> Result<()>) -> i32 {
    guard::call(|| with_cursor(cursor, |c| f(&mut c.cursor)))
}

/// Moves to the first entry within the bounds.
/// Returns `PCORE_OK`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
#[no_mangle]
pub extern "C" fn pcore_cursor_first(cursor: *mut PcoreCursor) -> i32 {
    cursor_op(cursor, Cursor::first)
}

/// Moves to the last entry within the bounds.
/// Returns `PCORE_OK`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
#[no_mangle]
pub extern "C" fn pcore_cursor_last(cursor: *mut PcoreCursor) -> i32 {
    cursor_op(cursor, Cursor::last)
}

/// Moves to the first entry whose key is >= `key`.
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (a key longer than the tree takes, as
/// `pcore_tree_get` says; the cursor does not move), `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
///
/// # Safety
/// `key` has `key_len` readable bytes (or is NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_seek(cursor: *mut PcoreCursor, key: *const c_void, key_len: usize) -> i32 {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let k = unsafe { bytes(key.cast::<u8>(), key_len, "key")? };
        with_cursor(cursor, |c| c.cursor.seek(k))
    })
}

/// Moves to the next entry (past the end: `pcore_cursor_get` then answers NOT_FOUND).
/// Returns `PCORE_OK`, `PCORE_STALE_CURSOR`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
#[no_mangle]
pub extern "C" fn pcore_cursor_next(cursor: *mut PcoreCursor) -> i32 {
    cursor_op(cursor, Cursor::move_next)
}

/// Moves to the previous entry.
/// Returns `PCORE_OK`, `PCORE_STALE_CURSOR`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT`.
#[no_mangle]
pub extern "C" fn pcore_cursor_prev(cursor: *mut PcoreCursor) -> i32 {
    cursor_op(cursor, Cursor::move_prev)
}

/// The entry under the cursor: `*out_key` and `*out_value` point to bytes owned by the
/// cursor, valid until its next call or its close.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (past either end or outside the bounds),
/// `PCORE_STALE_CURSOR`, `PCORE_INVALID_ARGUMENT`, `PCORE_BAD_HANDLE`, `PCORE_BUSY`,
/// `PCORE_CORRUPT`.
///
/// # Safety
/// `out_key` and `out_value` are writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_get(
    cursor: *mut PcoreCursor,
    out_key: *mut PcoreBytes,
    out_value: *mut PcoreBytes,
) -> i32 {
    // SAFETY: both outputs are writable, by this function's contract.
    guard::call(|| unsafe {
        hand_out_entry(
            cursor,
            out_key,
            out_value,
            "the cursor is past the end or outside its bounds",
            Cursor::current_entry,
        )
    })
}

/// Reads an entry through `read` (which moves the cursor, or not) and hands it out where it
/// lies in the cursor: no copy is made, and the cursor keeps the bytes until its next call.
///
/// # Safety
/// `out_key` and `out_value` are writable.
#[inline]
unsafe fn hand_out_entry(
    cursor: *mut PcoreCursor,
    out_key: *mut PcoreBytes,
    out_value: *mut PcoreBytes,
    none: &str,
    read: impl for<'c> FnOnce(&'c mut Cursor) -> Result<Option<(&'c [u8], &'c [u8])>>,
) -> Result<()> {
    with_cursor(cursor, |state| {
        non_null(out_key, "out_key")?;
        non_null(out_value, "out_value")?;
        let Some((k, v)) = read(&mut state.cursor)? else { return Err(not_found(none)) };
        // SAFETY: both checked non-null; writable by contract. The bytes lie in the cursor,
        // unchanged until its next call (`Cursor::current_entry`), and the cursor lives in its
        // slot until its close.
        unsafe {
            write_out(out_key, PcoreBytes { data: k.as_ptr(), len: k.len() });
            write_out(out_value, PcoreBytes { data: v.as_ptr(), len: v.len() });
        }
        Ok(())
    })
}

#[cold]
#[inline(never)]
fn not_found(what: &str) -> Error {
    Error::NotFound(what.into())
}

/// Moves to the next entry and reads it: `pcore_cursor_next` then `pcore_cursor_get` in one
/// call, as LMDB's `mdb_cursor_get(MDB_NEXT)`. An ordered scan: `pcore_cursor_first`,
/// `pcore_cursor_get` for the first entry, then this until it answers `PCORE_NOT_FOUND`.
/// `*out_key` and `*out_value` point to bytes owned by the cursor, valid until its next call
/// or its close.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (moved past the end or outside the bounds; the
/// outputs are not written), `PCORE_STALE_CURSOR`, `PCORE_INVALID_ARGUMENT` (a NULL output:
/// the cursor does not move), `PCORE_BAD_HANDLE`, `PCORE_BUSY`, `PCORE_CORRUPT`.
///
/// # Safety
/// `out_key` and `out_value` are writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_next_get(
    cursor: *mut PcoreCursor,
    out_key: *mut PcoreBytes,
    out_value: *mut PcoreBytes,
) -> i32 {
    // SAFETY: both outputs are writable, by this function's contract.
    guard::call(|| unsafe {
        hand_out_entry(
            cursor,
            out_key,
            out_value,
            "the cursor moved past the end or outside its bounds",
            Cursor::next_entry,
        )
    })
}

/// The bytes of a batch record of a key and value of these lengths, padding included.
fn batch_record_bytes(key_len: usize, value_len: usize) -> usize {
    (PCORE_BATCH_HEADER_BYTES + key_len + value_len).next_multiple_of(PCORE_BATCH_RECORD_ALIGN)
}

/// Writes one batch record at the start of `out` (at least `batch_record_bytes` long).
#[inline]
fn write_batch_record(out: &mut [u8], key: &[u8], value: &[u8]) {
    let end = PCORE_BATCH_HEADER_BYTES + key.len() + value.len();
    let record = &mut out[..end.next_multiple_of(PCORE_BATCH_RECORD_ALIGN)];
    // The last word first (a record is at least one): its padding stays zero, and the header,
    // key or value write over the rest of it. One store instead of a fill of 0 to 7 bytes.
    let last = record.len() - PCORE_BATCH_RECORD_ALIGN;
    record[last..].copy_from_slice(&[0; PCORE_BATCH_RECORD_ALIGN]);
    // Lengths are at most u32::MAX: keys by the page size, values by `VALUE_BYTES_MAX`.
    record[..4].copy_from_slice(&(key.len() as u32).to_ne_bytes());
    record[4..8].copy_from_slice(&(value.len() as u32).to_ne_bytes());
    let (k, v) = record[PCORE_BATCH_HEADER_BYTES..end].split_at_mut(key.len());
    crate::btree::page::copy_short(k, key);
    crate::btree::page::copy_short(v, value);
}

/// Reads many entries in one call: from the entry under the cursor on, in order, as many as
/// `buf` holds, and moves the cursor past them (to the first entry not read, or past the end).
/// An ordered scan: `pcore_cursor_first`, then this until it answers `PCORE_NOT_FOUND`.
///
/// Layout: records back to back from `buf`'s start, each starting a multiple of
/// `PCORE_BATCH_RECORD_ALIGN` (8) bytes after it: `uint32_t key_len`, `uint32_t value_len`
/// (the host's byte order; `PCORE_BATCH_HEADER_BYTES` in all), the key's bytes, the value's
/// bytes, then zero bytes up to the next multiple of 8. A record of a k-byte key and a v-byte
/// value takes `(8 + k + v)` rounded up to 8 bytes. With `buf` 8-byte aligned, each header can
/// be read in place. `*out_count` receives the number of records, `*out_used` the bytes they
/// take (a multiple of 8, at most `buf_len`). The bytes are copies: they stay valid whatever
/// the cursor or the tree does next.
///
/// Returns `PCORE_OK` (at least one record), `PCORE_NOT_FOUND` (the cursor is past the end or
/// outside its bounds), `PCORE_TOO_LARGE` (the first entry's record is larger than `buf_len`:
/// nothing is read and the cursor does not move; `pcore_cursor_get` gives its lengths),
/// `PCORE_INVALID_ARGUMENT` (a NULL output, or a NULL `buf` with a non-zero `buf_len`: the
/// cursor does not move), `PCORE_STALE_CURSOR`, `PCORE_BAD_HANDLE`, `PCORE_CORRUPT` (the
/// cursor must then be positioned again). The outputs are written only on `PCORE_OK`; `buf`
/// is untouched on every other status but `PCORE_CORRUPT`.
///
/// # Safety
/// `buf` has `buf_len` writable bytes (or is NULL with `buf_len` 0) outside the store's own
/// nodes; `out_count` and `out_used` are writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_cursor_next_batch(
    cursor: *mut PcoreCursor,
    buf: *mut c_void,
    buf_len: usize,
    out_count: *mut usize,
    out_used: *mut usize,
) -> i32 {
    guard::call(|| {
        with_cursor(cursor, |state| {
            out_buffer(buf, buf_len, "buf")?;
            non_null(out_count, "out_count")?;
            non_null(out_used, "out_used")?;
            let out: &mut [u8] = match buf_len {
                0 => &mut [],
                // SAFETY: `buf` is non-null (checked) and has `buf_len` writable bytes that no
                // Rust reference aliases (outside the store's nodes), by contract.
                _ => unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buf_len) },
            };
            let (mut used, mut first_too_large) = (0usize, false);
            let count = state.cursor.take_while(|k, v| {
                let bytes = batch_record_bytes(k.len(), v.len());
                if bytes > out.len() - used {
                    first_too_large = used == 0;
                    return false;
                }
                write_batch_record(&mut out[used..], k, v);
                used += bytes;
                true
            })?;
            if count == 0 {
                return Err(match first_too_large {
                    true => Error::TooLarge(format!("the next entry needs more than the {buf_len}-byte buffer")),
                    false => Error::NotFound("the cursor is past the end or outside its bounds".into()),
                });
            }
            // SAFETY: both checked non-null; writable by contract.
            unsafe {
                write_out(out_count, count);
                write_out(out_used, used);
            }
            Ok(())
        })
    })
}
