//! Every fixed limit of pcore, with the reason for it. Relations are asserted at compile time.

/// Smallest size class: a node id, a few fields and a header fit; smaller wastes bitmap bits.
pub const CLASS_BYTES_MIN: u32 = 64;
/// Largest configurable size class: checkpoint entries store lengths in 24 bits.
pub const CLASS_BYTES_MAX: u32 = 8 << 20;
/// Default size classes: 64 B to 256 KiB, doubling (13 classes).
pub const DEFAULT_MIN_CLASS_BYTES: u32 = 64;
pub const DEFAULT_MAX_CLASS_BYTES: u32 = 256 << 10;
/// At most this many classes (5 bits in an object-table entry).
pub const CLASS_COUNT_MAX: usize = 32;

/// A segment (the unit a class file grows by and is mapped in) is at least this large, so that
/// small classes do not create thousands of mappings, and holds at least
/// `SEGMENT_BLOCKS_MIN` blocks, so that large classes still amortize a grow.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const SEGMENT_BLOCKS_MIN: u64 = 8;

/// Handles are 48 bits; the all-ones id (`u64::MAX`) is the invalid id, so the top handle is
/// never issued. Handle 0 is never issued either: raw id 0 means "no node".
pub const HANDLE_MAX: u64 = (1 << 48) - 2;
/// At recovery a log record may name a handle beyond the object table it extends (the writer
/// allocated and freed uncommitted nodes in between); further than this is `Corrupt`, so a
/// damaged handle cannot size the table's allocation (16 bytes a slot: 256 MiB here). A
/// writer leaves a larger gap only by allocating and freeing 16 Mi uncommitted nodes at the
/// table's end between two commits.
pub const LOG_HANDLE_GAP_MAX: u64 = 1 << 24;
/// Epochs, generations and meta sequences count commits and checkpoints: a stored value at or
/// above this is damage (no store gets near it), and keeps every `+ 1` on them from overflowing.
pub const COUNTER_MAX: u64 = 1 << 62;
/// Block indexes within one class file are stored in 32 bits.
pub const BLOCKS_PER_CLASS_MAX: u64 = u32::MAX as u64;

/// Root names and metadata are small: they live in every checkpoint and in the log.
pub const ROOT_NAME_MAX_BYTES: usize = 255;
pub const ROOT_META_MAX_BYTES: usize = 4096;
/// Roots per store: a store holds a few trees, not a namespace.
pub const ROOT_COUNT_MAX: usize = 65536;

/// Nodes up to this size have their payload written into the log at commit; larger nodes
/// have their block flushed before the commit record instead (one sync either way).
pub const DEFAULT_INLINE_PAYLOAD_MAX_BYTES: u32 = 8192;
/// A checkpoint is taken when the log passes this size, or the object table's size if larger,
/// so checkpoint cost stays proportional to the log written.
pub const DEFAULT_CHECKPOINT_LOG_BYTES: u64 = 64 << 20;
/// BALANCED durability syncs at most this often by default.
pub const DEFAULT_BALANCED_INTERVAL_MS: u32 = 10;
/// A store whose last commit is this old (and whose files hold more than the footprint
/// trigger) is checkpointed by its background thread, as a close would leave it.
pub const DEFAULT_IDLE_CHECKPOINT_MS: u32 = 1000;
/// The meta file records the log's synced length at most this often (one extra `fdatasync`
/// a second at most): a log cut below the record is refused, not taken for a torn tail.
pub const DEFAULT_META_REFRESH_MS: u32 = 1000;

const _: () = assert!(CLASS_BYTES_MIN.is_power_of_two());
const _: () = assert!(DEFAULT_MAX_CLASS_BYTES <= CLASS_BYTES_MAX);
const _: () = assert!(CLASS_BYTES_MAX < (1 << 24));
const _: () = assert!(CLASS_COUNT_MAX <= 32);
const _: () = assert!(ROOT_NAME_MAX_BYTES <= u8::MAX as usize);
const _: () = assert!(ROOT_META_MAX_BYTES <= u16::MAX as usize);
