//! Types and constants of the C ABI. Numbers never change and are never reused.

use std::ffi::c_void;

pub use super::status::*;

/// Durability: `fdatasync` the log at every commit.
pub const PCORE_DURABILITY_STRICT: u64 = 0;
/// Durability: no sync at commit; survives a process crash, not a power loss.
pub const PCORE_DURABILITY_EVENTUAL: u64 = 1;
/// Durability: group commit, the log synced at most every `balanced_interval_ms` (by the
/// commit that finds the interval passed, or by a background thread: none in a forked child,
/// see `pcore_store_open`, nor where the system refuses the process a new thread; without it
/// the last commits before a pause are synced by the next commit or the close).
pub const PCORE_DURABILITY_BALANCED: u64 = 2;

/// Open flag: never change a file; no lock is taken.
pub const PCORE_OPEN_READ_ONLY: u64 = 1;
/// Open flag: no files at all; `dir` must be NULL. Not with `PCORE_OPEN_READ_ONLY`
/// (`PCORE_INVALID_ARGUMENT`: such a store could never hold anything).
pub const PCORE_OPEN_IN_MEMORY: u64 = 2;
/// Open flag: fail with `PCORE_NOT_FOUND` when the directory holds no store.
pub const PCORE_OPEN_NO_CREATE: u64 = 4;
/// Open flag: check every read of a committed node against the checksum its commit
/// recorded, and every change of one before its bytes are copied into the next version; a
/// mismatch answers `PCORE_CORRUPT` naming the node and the file offset, and a refused change
/// changes nothing. A node the open found in the checkpoint, unchanged since, is checked
/// with the checksum of its group of 8 neighbouring handles, which the checkpoint keeps
/// instead of one per node: one damaged node makes the group's other members answer
/// `PCORE_CORRUPT` too, until each is rewritten.
pub const PCORE_OPEN_VERIFY_CHECKSUMS: u64 = 8;

/// Growth: the node moves to a larger block and keeps its id.
pub const PCORE_GROWTH_STABLE_ID: u64 = 0;
/// Growth: the node moves and gets a new id; the old id is freed.
pub const PCORE_GROWTH_NEW_ID: u64 = 1;

/// Growth rule (the default): a node that outgrows its block moves to the smallest size class
/// that holds its new length.
pub const PCORE_GROWTH_RULE_FIT: u64 = 0;
/// Growth rule: a node that outgrows its block moves to the smallest size class of at least
/// twice its new length (the seed's rule: fewer moves, up to 4x the length on disk).
pub const PCORE_GROWTH_RULE_DOUBLE: u64 = 1;

/// Why XTree frees or retires a node (`pcore_node_free`, `pcore_node_retire`): counted per
/// reason in `PcoreStoreStats`. Reason unknown.
pub const PCORE_REASON_UNKNOWN: u8 = 0;
/// A node replaced by the two halves of its split.
pub const PCORE_REASON_SPLIT_REPLACE: u8 = 1;
/// A node merged into its sibling, or deleted.
pub const PCORE_REASON_MERGE_DELETE: u8 = 2;
/// A node evicted from a cache.
pub const PCORE_REASON_EVICT: u8 = 3;
/// A node of an aborted operation, rolled back.
pub const PCORE_REASON_ABORT_ROLLBACK: u8 = 4;
/// A node's old copy after it moved to a larger block.
pub const PCORE_REASON_REALLOCATION: u8 = 5;
/// A node of a destroyed tree.
pub const PCORE_REASON_TREE_DESTROY: u8 = 6;
/// The number of reasons: `PCORE_REASON_*` are 0 .. PCORE_REASON_COUNT - 1; any other value is
/// `PCORE_INVALID_ARGUMENT`.
pub const PCORE_REASON_COUNT: usize = 7;

/// Longest root name, in bytes.
pub const PCORE_ROOT_NAME_MAX_BYTES: usize = 255;
/// Longest root metadata, in bytes.
pub const PCORE_ROOT_META_MAX_BYTES: usize = 4096;

/// The ABI version this header describes: major << 16 | minor. 1.1 added the B+ tree
/// (`pcore_tree_*`, `pcore_cursor_*`), 1.2 `pcore_node_read_copy` and
/// `PCORE_OPEN_VERIFY_CHECKSUMS`. 2.0 made every struct follow one layout (a `uint64_t
/// struct_size` first, then 8-byte fields only), gave `PcoreNodeInfo`, `PcoreAllocResult` and
/// `PcoreClassStats` a struct_size, moved the all-classes total out of `PcoreStoreStats`
/// (`pcore_store_class_stats` with `PCORE_CLASS_TOTAL`), made booleans `uint64_t` 0 or 1,
/// gave `pages_per_level` `PCORE_TREE_DEPTH_MAX` slots, and counts frees and retires by
/// reason (an unknown reason is refused). 2.1 added `pcore_cursor_next_get`,
/// `pcore_cursor_next_batch`, read snapshots (`pcore_snapshot_*`), `pcore_root_next`,
/// `pcore_tree_next` and `PcoreStoreOptions::growth_rule` (`PCORE_GROWTH_RULE_*`). 2.2 added
/// `pcore_store_backup`, `pcore_store_compact` and the footprint fields of `PcoreStoreStats`,
/// 2.3 `PcoreStoreOptions::idle_checkpoint_ms`, 2.4 `pcore_store_options_init_sized` and
/// `pcore_tree_options_init_sized`, which the header's `*_options_init` names map to (the
/// unsized entry points write the struct of the 2.1 to 2.3 headers, never more), and
/// `PcoreStoreStats::given_back_bytes`. The
/// library's SONAME is `libpcore.so.<major>`.
pub const PCORE_ABI_VERSION: u32 = 0x0002_0004;

/// Tree duplicates mode: inserting an existing key is `PCORE_DUPLICATE_KEY`.
pub const PCORE_DUP_UNIQUE: u64 = 0;
/// Tree duplicates mode: inserting an existing key replaces its value.
pub const PCORE_DUP_OVERWRITE: u64 = 1;
/// Tree duplicates mode: one entry per (key, value) pair, ordered by key then value. A pair
/// lives in its page (its value is part of its key), so values are at most a sixteenth of
/// the page size (256 bytes at 4 KiB pages), where the other modes put a large value in a node
/// of its own (up to the store's largest size class).
pub const PCORE_DUP_MULTI: u64 = 2;

/// Tree open flag: fail with `PCORE_NOT_FOUND` when the store holds no tree of that name.
pub const PCORE_TREE_NO_CREATE: u64 = 1;

/// The deepest a tree grows (levels, root to leaves): an insert that would make it deeper
/// is `PCORE_LIMIT`. `PcoreTreeStats::pages_per_level` has this many slots.
pub const PCORE_TREE_DEPTH_MAX: usize = 32;
const _: () = assert!(PCORE_TREE_DEPTH_MAX == crate::btree::DEPTH_MAX);

/// `pcore_store_class_stats`'s class index for the sums over all classes.
pub const PCORE_CLASS_TOTAL: u32 = u32::MAX;

/// A cursor bound: none.
pub const PCORE_BOUND_UNBOUNDED: u32 = 0;
/// A cursor bound that includes its key.
pub const PCORE_BOUND_INCLUDED: u32 = 1;
/// A cursor bound that excludes its key.
pub const PCORE_BOUND_EXCLUDED: u32 = 2;

/// An open B+ tree. Opaque: never dereference.
pub struct PcoreTree {
    _private: [u8; 0],
}

/// A cursor over a tree. Opaque: never dereference.
pub struct PcoreCursor {
    _private: [u8; 0],
}

/// A read snapshot: one commit of a store, readable until the snapshot ends. Opaque: never
/// dereference.
pub struct PcoreSnapshot {
    _private: [u8; 0],
}

/// A key order: negative, zero or positive as `a` sorts before, with or after `b`. Must be a
/// total order, must not throw or longjmp, and may be called from any thread that uses the
/// tree. It runs while the tree and its store are locked: it must not call pcore. `ctx` is
/// the options' `compare_ctx`.
pub type PcoreCompareFn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> i32>;

/// Options for `pcore_tree_open`. Fill with `pcore_tree_options_init`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PcoreTreeOptions {
    pub struct_size: u64,
    /// A power of two from 512 to 65536; default 4096. Fixed when the tree is created.
    pub page_bytes: u64,
    /// `PCORE_DUP_*`; default UNIQUE. Fixed when the tree is created.
    pub duplicates: u64,
    /// `PCORE_TREE_*` flags.
    pub flags: u64,
    /// NULL: bytewise order (memcmp, shorter first on a common prefix).
    pub compare: PcoreCompareFn,
    pub compare_ctx: *mut c_void,
    /// Optional ceiling on entries per page (0: none). Bytes decide every split; the ceiling
    /// only caps how many entries a page this handle writes may hold.
    pub max_entries_per_page: u64,
}

/// Bytes owned by pcore, valid until the call documented with the function that returned them.
/// A (pointer, length) pair, fixed for good: it has no struct_size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PcoreBytes {
    pub data: *const u8,
    pub len: usize,
}

/// A tree's health in a few numbers. Set `struct_size` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PcoreTreeStats {
    pub struct_size: u64,
    /// Levels, root to leaves: 1 for a tree that is one leaf.
    pub height: u64,
    pub entries: u64,
    pub leaf_pages: u64,
    /// All pages, leaves included.
    pub pages: u64,
    pub keys_per_leaf_min: u64,
    pub keys_per_leaf_max: u64,
    pub keys_per_leaf_avg: f64,
    /// Bytes the leaves' entries use over the leaves' capacity.
    pub leaf_fill: f64,
    /// All pages' bytes over the entries.
    pub bytes_per_entry: f64,
    /// Values stored in their own node.
    pub overflow_values: u64,
    pub page_bytes: u64,
    /// Pages per level, root first; levels past `height` are 0.
    pub pages_per_level: [u64; PCORE_TREE_DEPTH_MAX],
}

/// An open store. Opaque: never dereference; a closed handle is refused, not a crash.
pub struct PcoreStore {
    _private: [u8; 0],
}

/// Options for `pcore_store_open`. Fill with `pcore_store_options_init`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PcoreStoreOptions {
    pub struct_size: u64,
    /// `PCORE_OPEN_*` flags.
    pub flags: u64,
    /// `PCORE_DURABILITY_*`; default BALANCED.
    pub durability: u64,
    /// BALANCED: sync at most this often; default 10.
    pub balanced_interval_ms: u64,
    /// `PCORE_GROWTH_*`; default STABLE_ID.
    pub growth_policy: u64,
    /// Smallest size class, used when the store is created; 0 = 64.
    pub min_class_bytes: u64,
    /// Largest size class, used when the store is created; 0 = 262144.
    pub max_class_bytes: u64,
    /// Node payloads up to this size are written into the log at commit; 0 = 8192.
    pub inline_payload_max_bytes: u64,
    /// A checkpoint is taken when the log passes this size; 0 = 64 MiB.
    pub checkpoint_log_bytes: u64,
    /// `PCORE_GROWTH_RULE_*`; default FIT (ABI 2.1; an older caller's struct ends before it
    /// and gets the default).
    pub growth_rule: u64,
    /// Once no commit came for this many milliseconds, a background thread checkpoints a
    /// store whose files hold more than 1.4 times its live bytes (1 MiB live at least), cuts
    /// the class files' free tails and gives the log's kept space back, as a close would;
    /// moves nodes toward the fronts of the class files when no `pcore_node_read` pointer
    /// may still be in use (none taken since the commit before the last: a checkpoint records
    /// the moves, no commit is made and the epoch stays); and
    /// gives the disk space of the free blocks' whole pages back to the file system (holes
    /// punched: the files keep their lengths, `du` shows the difference; a block there is
    /// allocated again before it is reused, `PCORE_NO_SPACE` on a full disk; a writable open
    /// allocates every hole again only when it has commits to replay). A
    /// call that comes meanwhile waits for it, as for a checkpoint at a commit. Not while a
    /// snapshot is open, a read-only process has the store open or changes wait for a commit
    /// (it rests once they end). 0 = 1000 (the default; also what an older caller, whose
    /// struct ends before this field, gets); `PCORE_IDLE_CHECKPOINT_NEVER` (or 2^32 - 1):
    /// never; other values from 2^32 up are `PCORE_INVALID_ARGUMENT` (ABI 2.3).
    pub idle_checkpoint_ms: u64,
}

/// `PcoreStoreOptions::idle_checkpoint_ms`: no checkpoint at rest.
pub const PCORE_IDLE_CHECKPOINT_NEVER: u64 = u64::MAX;

/// A new node: its id, its zero-filled block (writable until published or freed), and the
/// block's size. Set `struct_size` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PcoreAllocResult {
    pub struct_size: u64,
    pub id: u64,
    pub writable: *mut c_void,
    pub capacity: usize,
}

/// A node's bytes: valid until the node is next written or freed, the store closed, or the
/// second commit after they were read has returned (see `pcore_node_read`).
/// A (pointer, length) pair, fixed for good: it has no struct_size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PcoreNodeBytes {
    pub data: *const c_void,
    pub len: usize,
}

/// What a node is now. Set `struct_size` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PcoreNodeInfo {
    pub struct_size: u64,
    pub id: u64,
    /// Bytes published.
    pub len: u64,
    /// Size of its block.
    pub capacity: u64,
    /// The host's kind, 1..255.
    pub kind: u64,
    /// 1 when a committed version exists (LIVE); 0 while only RESERVED ("staged").
    pub committed: u64,
    /// 1 when changed since the last commit.
    pub dirty: u64,
}

/// Allocator statistics of one size class, or of all of them (`PCORE_CLASS_TOTAL`), in
/// XTree's names. Set `struct_size` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PcoreClassStats {
    pub struct_size: u64,
    /// Block size of the class; 0 in the total.
    pub class_bytes: u64,
    pub live_bytes: u64,
    /// Free blocks below the high-water marks, times the block size.
    pub dead_bytes: u64,
    pub total_segments: u64,
    /// Segments holding at least one live block.
    pub active_segments: u64,
    pub allocs_from_bump: u64,
    pub allocs_from_bitmap: u64,
    pub frees_to_bitmap: u64,
    pub total_allocations: u64,
    pub total_frees: u64,
    /// dead / (live + dead); 0 when both are 0. In the total, from the sums.
    pub fragmentation: f64,
    /// allocs_from_bitmap / total_frees; 0 before any free. In the total, from the sums.
    pub reuse_rate: f64,
}

/// Store statistics. Set `struct_size` before the call. The allocator's figures, per class
/// and summed over all classes, come from `pcore_store_class_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PcoreStoreStats {
    pub struct_size: u64,
    /// Size classes: `pcore_store_class_stats` takes 0 .. class_count - 1.
    pub class_count: u64,
    /// Last committed epoch.
    pub epoch: u64,
    /// Committed nodes.
    pub live_nodes: u64,
    /// Nodes allocated and never committed.
    pub reserved_nodes: u64,
    /// Publishes that moved a node to a larger class, since open.
    pub reallocations: u64,
    pub log_bytes: u64,
    pub checkpoint_epoch: u64,
    /// File descriptors the store holds.
    pub open_files: u64,
    /// Bytes of the class files on disk.
    pub data_file_bytes: u64,
    /// Bytes of blocks freed by commits not yet durable (BALANCED, EVENTUAL): counted in the
    /// total's `live_bytes` until the log is synced, then reusable.
    pub pending_free_bytes: u64,
    /// Successful `pcore_node_free` calls since open, by reason (index: `PCORE_REASON_*`).
    pub frees_by_reason: [u64; PCORE_REASON_COUNT],
    /// Successful `pcore_node_retire` calls since open, by reason.
    pub retires_by_reason: [u64; PCORE_REASON_COUNT],
    /// Read snapshots open in this process (`pcore_snapshot_begin`, cursors on them).
    pub snapshots_open: u64,
    /// The epoch the oldest of them reads (0 when none).
    pub oldest_snapshot_epoch: u64,
    /// Processes that have the store open `PCORE_OPEN_READ_ONLY` now (its reader table; a
    /// killed one stops counting at once).
    pub reader_processes: u64,
    /// Of `pending_free_bytes`, the bytes kept only because a snapshot or a reader process
    /// may still read them; reusable once those end.
    pub pinned_bytes: u64,
    /// Bytes of node versions replaced or freed since the last checkpoint that stay
    /// allocated until the next one: checkpointed versions (recovery reads them to check
    /// their group, and deltas may be logged against them) and versions synced in place at
    /// their commit that a delta was logged against.
    pub held_base_bytes: u64,
    /// Bytes of all the store's files (a store in memory: its class segments).
    pub directory_bytes: u64,
    /// Bytes of the blocks holding the nodes' current versions.
    pub live_bytes: u64,
    /// Bytes of free blocks in the class files (with each last segment's never-used end).
    pub free_bytes: u64,
    /// Bytes of the checkpoint files (the pieces of the table's chain).
    pub checkpoint_bytes: u64,
    /// `directory_bytes / live_bytes` (0 for a store with no node): the rest is
    /// `free_bytes`, `pending_free_bytes` (of which `pinned_bytes`), `held_base_bytes`,
    /// `checkpoint_bytes`, the log file (`log_bytes` of frames, plus the space a checkpoint
    /// keeps to write over: at most a quarter of the class files; none after a close or a
    /// compaction), and the meta and reader table (12 KiB).
    pub footprint_ratio: f64,
    /// Bytes of free blocks whose pages a store at rest gave back to the file system: not in
    /// `free_bytes` nor in `directory_bytes` (ABI 2.4).
    pub given_back_bytes: u64,
}

/// What `pcore_store_compact` did. Set `struct_size` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PcoreCompactReport {
    pub struct_size: u64,
    /// Nodes moved toward the front of their class files, and their blocks' bytes.
    pub moved_nodes: u64,
    pub moved_bytes: u64,
    /// Bytes of the store's files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Bytes of the blocks holding the nodes' current versions.
    pub live_bytes: u64,
    /// Bytes that could not be given back: blocks an open snapshot or a reader process still
    /// reads.
    pub pinned_bytes: u64,
    /// `bytes_after / live_bytes` (0 for a store with no node).
    pub ratio: f64,
}

impl From<&crate::alloc::ClassStats> for PcoreClassStats {
    fn from(s: &crate::alloc::ClassStats) -> PcoreClassStats {
        PcoreClassStats {
            struct_size: 0,
            class_bytes: s.class_bytes,
            live_bytes: s.live_bytes,
            dead_bytes: s.dead_bytes,
            total_segments: s.total_segments,
            active_segments: s.active_segments,
            allocs_from_bump: s.allocs_from_bump,
            allocs_from_bitmap: s.allocs_from_bitmap,
            frees_to_bitmap: s.frees_to_bitmap,
            total_allocations: s.total_allocations,
            total_frees: s.total_frees,
            fragmentation: s.fragmentation(),
            reuse_rate: s.reuse_rate(),
        }
    }
}

/// `pcore_cursor_next_batch`: the bytes before a record's key, its two `uint32_t` lengths.
pub const PCORE_BATCH_HEADER_BYTES: usize = 8;
/// `pcore_cursor_next_batch`: every record starts at a multiple of this many bytes from the
/// buffer's start (a record is padded up to it).
pub const PCORE_BATCH_RECORD_ALIGN: usize = 8;
