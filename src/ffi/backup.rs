//! `pcore_store_backup`: a consistent, compacted copy of a store's last commit, taken while
//! the store goes on being used.

use super::guard::{self, c_path};
use super::store::store_of;
use super::types::PcoreStore;
use std::ffi::c_char;

/// Backup flag: replace a store already at the destination. The swap is one `rename`
/// exchange, so the destination never goes missing; `PCORE_BUSY` while a writer has it open.
/// Only a store is replaced (a directory with a store's `meta` file), never the store being
/// backed up nor a directory holding it.
pub const PCORE_BACKUP_REPLACE: u32 = 1;
const _: () = assert!(PCORE_BACKUP_REPLACE == crate::store::BACKUP_REPLACE);

/// Copies the store's last commit to a new store in `dest_dir`, while this store goes on
/// being read and written (the copy reads a snapshot of that commit; the writer waits at most
/// for one chunk of a few thousand nodes at a time). The copy keeps every node id, kind and
/// root, is compacted (its blocks laid out densely: no free block in it but the tail of each
/// class file's last segment), opens like any store, and passes `pcore check`. Every node's
/// bytes are checked against their checksum on the way: a damaged block fails the backup
/// (`PCORE_CORRUPT` naming it) instead of being copied under a fresh checksum. Works on a
/// writable, a read-only (the commit it reads) and an in-memory store.
///
/// The copy's epoch is the store's at the commit copied, so epochs a host keeps go on meaning
/// what they meant. The copy is built in `.pcore-backup-<pid>-<n>` beside `dest_dir` and
/// renamed to it only once whole and synced: if the process dies meanwhile, `dest_dir` is as
/// it was, and a later backup into the same parent directory removes the leftover (once its
/// process is gone). Threads may back up at once; to one new `dest_dir`, one wins and the
/// others answer `PCORE_INVALID_ARGUMENT`. `dest_dir`'s parent must exist; `dest_dir` must not
/// exist or be an empty directory (not a symbolic link), unless `flags` has
/// `PCORE_BACKUP_REPLACE`. `flags`: 0 or `PCORE_BACKUP_REPLACE`.
///
/// Returns `PCORE_OK`, `PCORE_INVALID_ARGUMENT` (NULL or empty `dest_dir`, unknown flags, a
/// destination that is not empty without the flag, or not a store with it, a missing parent
/// directory), `PCORE_BUSY` (a writer has the store to replace open), `PCORE_CORRUPT`,
/// `PCORE_NO_SPACE`, `PCORE_IO_ERROR`, `PCORE_BAD_HANDLE` (also a closed store). On an error
/// nothing is left at `dest_dir` that was not there before.
///
/// # Safety
/// `dest_dir` is NULL or a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn pcore_store_backup(store: *mut PcoreStore, dest_dir: *const c_char, flags: u32) -> i32 {
    guard::call(|| {
        let s = store_of(store)?;
        // SAFETY: NULL or NUL-terminated by the contract above.
        let dest = unsafe { c_path(dest_dir, "dest_dir")? };
        s.backup(&dest, flags).map(drop)
    })
}
