//! `pcore_root_next` and `pcore_tree_next`: what a store holds, name by name, in byte order.
//! One name per call, after the one the caller passes: no list to allocate or free, and a
//! host can stop, or resume later, anywhere.

use super::guard::{self, bytes, copy_out, non_null, out_buffer};
use super::store::store_of;
use super::types::*;
use crate::btree::list_trees;
use crate::error::{Error, Result};
use std::ffi::{c_char, c_void};

/// The first of `names` (sorted) after `after` (`None`: the first of all), copied out.
///
/// # Safety
/// As the listing functions' contracts say for the pointers.
unsafe fn next_name(
    names: Vec<Vec<u8>>,
    after: *const c_char,
    after_len: usize,
    name_buf: *mut c_void,
    name_cap: usize,
    out_name_len: *mut usize,
) -> Result<()> {
    non_null(out_name_len, "out_name_len")?;
    out_buffer(name_buf, name_cap, "name_buf")?;
    let after = if after.is_null() {
        if after_len > 0 {
            return Err(Error::InvalidArgument(format!("after is NULL with after_len {after_len}")));
        }
        None
    } else {
        // SAFETY: `after` has `after_len` readable bytes by contract.
        Some(unsafe { bytes(after.cast::<u8>(), after_len, "after")? })
    };
    let next = names
        .into_iter()
        .find(|n| after.is_none_or(|a| n.as_slice() > a))
        .ok_or_else(|| Error::NotFound("no more names".into()))?;
    // SAFETY: `name_buf` has `name_cap` writable bytes; `out_name_len` checked non-null.
    unsafe { copy_out(&next, name_buf, name_cap, out_name_len) };
    Ok(())
}

/// The name of the store's first named root after `after` in byte order (`after` NULL with
/// `after_len` 0: its first root), the latest `pcore_root_set`s and removes included: the first `name_cap`
/// bytes into `name_buf`, its full length into `*out_name_len` (call again with a larger
/// buffer when it is above `name_cap`). List every root by passing back each name found,
/// until `PCORE_NOT_FOUND`. B+ trees keep their anchors among the roots, under names that
/// begin with "btree:"; `pcore_tree_next` lists the trees by their own names.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no root after `after`), `PCORE_INVALID_ARGUMENT`
/// (NULL `out_name_len`, NULL `name_buf` with `name_cap` > 0, NULL `after` with `after_len`
/// > 0), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// `after` is NULL or has `after_len` readable bytes; `name_buf` has `name_cap` writable
/// bytes (or is NULL with `name_cap` 0); `out_name_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn pcore_root_next(
    store: *mut PcoreStore,
    after: *const c_char,
    after_len: usize,
    name_buf: *mut c_void,
    name_cap: usize,
    out_name_len: *mut usize,
) -> i32 {
    guard::call(|| {
        let names = store_of(store)?.root_names()?;
        // SAFETY: the pointers as this function's contract says.
        unsafe { next_name(names, after, after_len, name_buf, name_cap, out_name_len) }
    })
}

/// The name of the store's first B+ tree after `after` in byte order (`after` NULL: its
/// first tree), as `pcore_tree_open` takes it; trees created or dropped since the last commit
/// included. Same buffers and loop as `pcore_root_next`.
///
/// Returns `PCORE_OK`, `PCORE_NOT_FOUND` (no tree after `after`), `PCORE_INVALID_ARGUMENT`,
/// `PCORE_CORRUPT` (a damaged tree anchor), `PCORE_BAD_HANDLE`.
///
/// # Safety
/// As `pcore_root_next`'s.
#[no_mangle]
pub unsafe extern "C" fn pcore_tree_next(
    store: *mut PcoreStore,
    after: *const c_char,
    after_len: usize,
    name_buf: *mut c_void,
    name_cap: usize,
    out_name_len: *mut usize,
) -> i32 {
    guard::call(|| {
        let names = list_trees(&store_of(store)?)?.into_iter().map(|d| d.name).collect();
        // SAFETY: the pointers as this function's contract says.
        unsafe { next_name(names, after, after_len, name_buf, name_cap, out_name_len) }
    })
}
