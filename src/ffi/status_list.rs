// The C ABI's statuses: the only place their numbers, names and meanings are written. Numbers
// never change and are never reused; a new status takes the next number. Expanded twice: by
// `ffi::status` into the `PCORE_*` constants and `Status`, and by build.rs into the constants
// cbindgen puts in include/pcore.h (cbindgen does not expand macros).
pcore_statuses! {
    /// Success.
    PCORE_OK = 0 => Ok,
    /// A null pointer, a zero kind, an option out of range, a bad name length, a `struct_size`
    /// too small or not a multiple of 8.
    PCORE_INVALID_ARGUMENT = 1 => InvalidArgument,
    /// An unknown, freed or stale node id; an unknown root name; no store in the directory.
    PCORE_NOT_FOUND = 2 => NotFound,
    /// A length above the largest size class, or above a node's capacity for in-place publish.
    PCORE_TOO_LARGE = 3 => TooLarge,
    /// A write on a store opened read-only.
    PCORE_READ_ONLY = 4 => ReadOnly,
    /// The directory is locked by another writer.
    PCORE_BUSY = 5 => Busy,
    /// A damaged meta, log, checkpoint or data file; the message names the file and offset.
    PCORE_CORRUPT = 6 => Corrupt,
    /// The disk is full; nothing was changed.
    PCORE_NO_SPACE = 7 => NoSpace,
    /// Any other I/O failure.
    PCORE_IO_ERROR = 8 => IoError,
    /// Freeing a node id that is already freed.
    PCORE_DOUBLE_FREE = 9 => DoubleFree,
    /// A null, closed or foreign handle.
    PCORE_BAD_HANDLE = 10 => BadHandle,
    /// A bug inside pcore was caught at the boundary; the message says where.
    PCORE_PANIC = 11 => Panic,
    /// An internal invariant did not hold (reported by verify).
    PCORE_INTERNAL = 12 => Internal,
    /// An I/O failure (this call's or an earlier one's) left what is on disk unsure: the store
    /// takes no more calls; close and reopen it, and the reopen finds what is durable.
    PCORE_POISONED = 13 => Poisoned,
    /// The store's format, or a struct's version, is not supported by this library.
    PCORE_VERSION_MISMATCH = 14 => VersionMismatch,
    /// A fixed limit was reached (node handles, roots, tree depth).
    PCORE_LIMIT = 15 => Limit,
    /// The key is already in a tree that does not take duplicates; the tree is unchanged.
    PCORE_DUPLICATE_KEY = 16 => DuplicateKey,
    /// A cursor used after its tree changed: position it again.
    PCORE_STALE_CURSOR = 17 => StaleCursor,
}
