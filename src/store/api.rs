//! `Store`: the public node-store API, its locks, and the commit and checkpoint protocols.
//!
//! Locking: one writer mutex serializes every mutation, commit and checkpoint; the state
//! lock is taken exclusively only for the short in-memory part of a mutation. Reads take the
//! state lock shared, so they go on during a commit's log write and sync and during a
//! checkpoint's flush and file writes.

use super::checkpoint;
use super::compact::{Budget, Moved};
use super::core::{Core, Source};
use super::footprint;
use super::meta::Meta;
use super::node_id::NodeId;
use super::readers::{ReaderSlot, ReaderTable};
use super::recovery;
use super::reserve::{self, Reserve};
use super::script::Edit;
use super::wal::{LogWriter, Salt};
use crate::alloc::{ClassStats, GrowthRule, Space};
use crate::error::{Error, Result};
use crate::limits::*;
use crate::os::DirLock;
use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// When a commit is on disk. XTree's names, in XTree's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` of the log at every commit: a commit that returned survives power loss.
    Strict,
    /// No sync at commit: survives a crash of the process, not of the machine.
    Eventual,
    /// Group commit: the log is synced at most every `balanced_interval_ms`, by the commit
    /// that finds the interval passed or by a background thread. In a process forked from
    /// one that had opened a store there is no background thread (see `in_forked_child`):
    /// the commits and the close sync the log.
    Balanced,
}

/// What publish does when the bytes outgrow the node's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowthPolicy {
    /// The node moves to a larger block and keeps its id: parents never need patching.
    StableId,
    /// The node moves and gets a new id; the old id is freed (the seed's protocol).
    NewId,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub durability: Durability,
    pub balanced_interval_ms: u32,
    pub growth_policy: GrowthPolicy,
    /// Which class a node moves to when it outgrows its block; default `GrowthRule::Fit`.
    pub growth_rule: GrowthRule,
    /// Size classes, used when the store is created; an existing store keeps its own.
    pub min_class_bytes: u32,
    pub max_class_bytes: u32,
    pub inline_payload_max_bytes: u32,
    pub checkpoint_log_bytes: u64,
    pub read_only: bool,
    /// Create the store when the directory holds none.
    pub create: bool,
    /// Check every read of a committed node against the checksum its commit recorded
    /// (`Corrupt` on a mismatch). Costs a CRC32C of the node per read.
    pub verify_checksums: bool,
    /// After a log sync, the meta file records how much of the log is synced, at most this
    /// often (one more `fdatasync`, of the meta file). Recovery refuses a log cut or damaged
    /// below the recorded length; commits synced since the last record are not covered.
    /// A commit that frees a block holding the only copy of a version (one too large to log)
    /// is recorded at its sync whatever the time, as that block is then reused (see
    /// `record_synced_log`). 0: after every sync; `u32::MAX`: never (tests of torn tails).
    pub meta_refresh_ms: u32,
    /// Once no commit came for this long, a background thread checkpoints a store whose
    /// files hold more than 1.4 times its live bytes, cuts the class files' free tails and
    /// gives the log's kept space back, as a close would (a burst of statement-sized commits
    /// leaves its log at 3.5 times the live bytes until then). A host call that comes
    /// meanwhile waits for it, as for a checkpoint at a commit. Not for stores under 1 MiB
    /// live, nor while a snapshot is open, a read-only process has the store open or changes
    /// wait for a commit (it rests once they end). 0: at the thread's first look after each
    /// commit (it looks every millisecond then); `u32::MAX`: never.
    pub idle_checkpoint_ms: u32,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            durability: Durability::Balanced,
            balanced_interval_ms: DEFAULT_BALANCED_INTERVAL_MS,
            growth_policy: GrowthPolicy::StableId,
            growth_rule: GrowthRule::Fit,
            min_class_bytes: DEFAULT_MIN_CLASS_BYTES,
            max_class_bytes: DEFAULT_MAX_CLASS_BYTES,
            inline_payload_max_bytes: DEFAULT_INLINE_PAYLOAD_MAX_BYTES,
            checkpoint_log_bytes: DEFAULT_CHECKPOINT_LOG_BYTES,
            read_only: false,
            create: true,
            verify_checksums: false,
            meta_refresh_ms: DEFAULT_META_REFRESH_MS,
            idle_checkpoint_ms: DEFAULT_IDLE_CHECKPOINT_MS,
        }
    }
}

/// What a node is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub len: usize,
    pub capacity: usize,
    pub kind: u8,
    /// A committed version exists (LIVE); false while only RESERVED ("staged").
    pub committed: bool,
    /// Changed since the last commit.
    pub dirty: bool,
}

/// A named root: a node id and the host's metadata bytes (XTree keeps an MBR there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub id: u64,
    pub meta: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub epoch: u64,
    pub live_nodes: u64,
    pub reserved_nodes: u64,
    pub reallocations: u64,
    pub log_bytes: u64,
    pub checkpoint_epoch: u64,
    pub open_files: u64,
    /// Bytes of the class files on disk (whole segments).
    pub data_file_bytes: u64,
    /// Bytes of blocks freed by commits that are not yet durable: still allocated (a crash
    /// could bring back their nodes), reusable once the log is synced.
    pub pending_free_bytes: u64,
    /// Read snapshots open in this process, and the oldest one's epoch (0 when none).
    pub snapshots_open: u64,
    pub oldest_snapshot_epoch: u64,
    /// Read-only opens alive on this store (other than this one), as the reader table shows
    /// them, and the oldest commit one of them reads.
    pub reader_processes: u64,
    pub oldest_reader_epoch: Option<u64>,
    /// Of `pending_free_bytes`, the bytes held only because a snapshot or a reader process
    /// can still read them (their commits are durable).
    pub pinned_bytes: u64,
    /// Node versions kept for open snapshots.
    pub snapshot_versions: u64,
    /// Bytes of checkpointed node versions replaced by commits logged as deltas against
    /// them: still allocated (recovery rebuilds the new versions from them), reusable after
    /// the next checkpoint.
    pub held_base_bytes: u64,
    /// Checkpoints this open took, the time they took in all, and of that the time spent
    /// flushing the class files (the rest writes the table's pieces and switches the meta).
    pub checkpoints: u64,
    pub checkpoint_seconds: f64,
    pub checkpoint_flush_seconds: f64,
    /// Bytes of the checkpoint pieces that hold the table on disk (docs/LOG.md).
    pub checkpoint_bytes: u64,
    pub handles: u64,
    pub classes: Vec<ClassStats>,
    pub total: ClassStats,
    /// Bytes of all the store's files (a store in memory: its class segments). The footprint
    /// ratio is this over `live_bytes`; the rest is held by `free_bytes`, `pending_free_bytes`
    /// (of which `pinned_bytes` by readers), `held_base_bytes`, the checkpoint, the log file
    /// (its frames, `log_bytes`, and the space a checkpoint keeps to write over), the meta.
    pub directory_bytes: u64,
    /// Blocks of the nodes' current versions (committed or not).
    pub live_bytes: u64,
    /// Free blocks in the class files, with the never-used end of each last segment: reused
    /// first, moved away from and cut at a file's tail (see `Store::compact`). Not those of
    /// `given_back_bytes`.
    pub free_bytes: u64,
    /// Free blocks whose pages a store at rest gave back to the file system: they take no
    /// disk space (they are not in `directory_bytes`) and are allocated again when reused.
    pub given_back_bytes: u64,
}

impl StoreStats {
    /// `directory_bytes / live_bytes`: how much bigger than its data the store is on disk
    /// (0 for a store with no node).
    pub fn footprint_ratio(&self) -> f64 {
        if self.live_bytes == 0 {
            0.0
        } else {
            self.directory_bytes as f64 / self.live_bytes as f64
        }
    }
}

/// The writer's side: log, meta, lock, sync bookkeeping. Guarded by the writer mutex.
struct WriterSide {
    dir: Option<PathBuf>,
    log: Option<LogWriter>,
    meta: Option<Meta>,
    _lock: Option<DirLock>,
    written_epoch: u64,
    last_sync: Instant,
    /// When the last commit (or the open) returned, and the epoch the background thread's
    /// rest step last looked at (`Store::rest_if_idle`): it looks once per commit, and once
    /// after an open or an abort (`NOT_RESTED`), which may leave a store past the trigger
    /// without a commit (a reopen that replayed commits allocates the holes again; an abort
    /// frees what uncommitted work grew the files by: outsider13).
    last_commit: Instant,
    rested_epoch: u64,
    /// After a rest step that failed (a full disk, an I/O error: nothing in doubt, the error
    /// kept for `checkpoint()`), when it may look again without a commit (outsider12 N2).
    rest_retry_at: Option<Instant>,
    /// Commits a drained store waits between checkpoints for its footprint
    /// (`footprint::next_drained_interval`).
    drained_interval: u64,
    /// When the meta last recorded the log's synced length.
    meta_refreshed: Instant,
    /// A commit written since then freed the only copy of a version (`PreparedCommit::
    /// frees_sole_copies`): the next sync records the log's length whatever the time.
    sole_copies_freed: bool,
    /// Why the store is poisoned (the flag itself is `Shared::poisoned`).
    poisoned: Option<String>,
    last_checkpoint_error: Option<String>,
    /// The last commit's frame buffer, reused by the next (see `FrameBuilder::with_buffer`).
    frame_buffer: Vec<u8>,
    /// The checkpoint pieces that make the table on disk, and the buffer the next one is
    /// written through.
    chain: checkpoint::Chain,
    checkpoint_buffer: Vec<u8>,
    /// Checkpoints taken, their time, and of it the time flushing class files.
    checkpoint_time: (u64, Duration, Duration),
    /// The store's reader table: the writer looks at it, a read-only open owns a record in
    /// it (`reader_slot`). Both go at close, with the other files.
    readers: Option<Arc<ReaderTable>>,
    reader_slot: Option<ReaderSlot>,
    /// Bytes of the store's files other than the class files and the log (checkpoint
    /// pieces, meta, reader table, reserve), as of the last checkpoint: see `footprint`.
    other_files: u64,
    /// Room kept for a full disk (`reserve.rs`): a writer on disk only.
    reserve: Option<Reserve>,
}

/// An object that caches store state (a B+ tree caches its root, height and count) and must
/// reload it when uncommitted changes are thrown away by [`Store::abort`].
pub trait AbortHook: Send + Sync {
    /// Holds the object's own lock for the abort: the store rolls back, then `reload` runs,
    /// while no operation of the object can see the store half rolled back.
    fn begin_abort(&self) -> Box<dyn AbortGuard + '_>;
}

/// See [`AbortHook`].
pub trait AbortGuard {
    /// Reloads the cached state from the store as the last commit left it.
    fn reload(&mut self, store: &Store) -> Result<AfterAbort>;
}

/// What became of an [`AbortHook`]'s object in the abort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAbort {
    /// It holds the last commit's state again.
    Reloaded,
    /// The last commit did not have it (made since): it is gone, and the store's attachment
    /// of this name, when it is this object, is removed so a later open makes it anew.
    Gone { attachment: Vec<u8> },
}

/// A block's address in memory and its capacity.
pub type AddrRange = (usize, usize);

/// How an open takes part in the store's reader table (see `readers`).
struct ReaderParts {
    /// The writer's view of the table, to find the oldest reader.
    table: Option<Arc<ReaderTable>>,
    /// A read-only open's own record.
    slot: Option<ReaderSlot>,
    /// The oldest commit a reader process read at open (u64::MAX: none).
    floor: u64,
}

impl ReaderParts {
    fn none() -> ReaderParts {
        ReaderParts { table: None, slot: None, floor: u64::MAX }
    }
}

/// A read-only open's record in the reader table, pinning everything until its epoch is
/// known; the table is made if the store has none yet (a store written by an older version,
/// or one whose writer is just creating it), as LMDB's readers make its lock file. `None`
/// where the table cannot be written (a read-only file system, another user's store): no
/// writer can be changing such a store, or, if one can, the open is unprotected.
fn register_reader(dir: &Path) -> Result<Option<ReaderSlot>> {
    if !dir.join(super::meta::META_FILE).exists() {
        return Ok(None); // no store here: the open says so, and no file is left behind
    }
    match ReaderTable::open(dir, true) {
        Ok(table) => table.claim().map(Some),
        Err(Error::Io { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A read-only open's recovery, which a writer in another process may overtake: its
/// checkpoint replaces the files the open is reading. A failure while the meta file changed
/// under it is that, not damage: read again from the new meta, `Busy` after
/// `READ_ONLY_OPEN_ATTEMPTS` tries. Each attempt pins everything in `slot` until it has read
/// the log, then the commit it reads.
fn open_beside_a_writer(dir: &Path, options: &StoreOptions, slot: Option<&ReaderSlot>) -> Result<recovery::Opened> {
    let mut pin = |epoch| slot.iter().for_each(|s| s.set_epoch(epoch));
    for attempt in 0.. {
        let before = writer_marks(dir);
        pin(0);
        let opened = recovery::open_dir_reading(dir, options, &mut pin);
        let (overtaken, damaged_only) = match &opened {
            Err(_) => (writer_marks(dir) != before, false),
            // A checkpoint during the open may have renamed the log it read and written the
            // next generation's frames over it (the log's space is reused): what it read could
            // end before commits acknowledged before the open began. The new generation's
            // checkpoint holds them: start again.
            Ok(o) if generation(dir) != Some(o.meta.generation) => (true, false),
            // A version rebuilt over a base the writer reused meanwhile reads as damaged
            // (outsider15 F1: a damaged node was handed to the host with `PCORE_OK`).
            Ok(o) => (o.damaged > 0 && writer_marks(dir) != before, true),
        };
        // Damage found at every try is the store's: the open goes on, verified reads and
        // `pcore check` name it, as without a writer.
        if !overtaken || (damaged_only && attempt + 1 == READ_ONLY_OPEN_ATTEMPTS) {
            return opened;
        }
        if attempt + 1 == READ_ONLY_OPEN_ATTEMPTS {
            let why = match opened {
                Err(e) => e.to_string(),
                Ok(_) => "a newer checkpoint".into(),
            };
            return Err(Error::Busy(format!(
                "a writer's commits and checkpoints overtook the read-only open {READ_ONLY_OPEN_ATTEMPTS} times \
                 (the last: {why}); try again"
            )));
        }
        // Room for a writer's burst of checkpoints to pass, growing to a few milliseconds.
        std::thread::sleep(Duration::from_micros(100 << attempt.min(5)));
    }
    unreachable!("the loop returns")
}

/// What a writer changes as it goes: the meta file's bytes, and each log's length and
/// modification time. A read-only open reads the log with one `read` while a writer may
/// append to it: the read can miss a frame being written and see the next one whole, which
/// looks like lost commits (`wal::read_log`). A failure while these changed is that race, and
/// the open starts again (an outside-process reader saw it about once in ten opens on a
/// loaded machine, in `SnapshotTest.ReaderProcessesSeeWholeCommitsBesideAWriterProcess`).
fn writer_marks(dir: &Path) -> WriterMarks {
    let meta = std::fs::read(dir.join(super::meta::META_FILE)).ok();
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .map(|e| {
            let m = e.metadata().ok();
            (e.file_name(), m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok()))
        })
        .collect();
    logs.sort();
    (meta, logs)
}

/// The meta file's bytes, and each log's name, length and modification time.
type WriterMarks = (Option<Vec<u8>>, Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>);

/// The generation the meta file names now (None: unreadable, as while a writer replaces it).
fn generation(dir: &Path) -> Option<u64> {
    Meta::load(dir).ok().map(|m| m.generation)
}

/// How often a read-only open tries before it answers `Busy` because a writer's checkpoints
/// kept overtaking it.
const READ_ONLY_OPEN_ATTEMPTS: u32 = 40;

/// Objects that live as long as the store and are shared by everyone who opens them by name
/// (the open B+ trees: two instances of one tree would each cache its root).
type Attachments = Mutex<std::collections::HashMap<Vec<u8>, Arc<dyn std::any::Any + Send + Sync>>>;

struct Shared {
    attachments: Attachments,
    /// Read snapshots open in this process: epoch -> how many. Changed under the state lock
    /// held shared (so never while a commit applies or blocks are released, which hold it
    /// exclusively); `pin_floor` mirrors its smallest key for the release check.
    pins: Mutex<BTreeMap<u64, usize>>,
    /// The oldest open snapshot's epoch; u64::MAX when none.
    pin_floor: AtomicU64,
    /// The oldest commit a reader process reads, as last looked up (capped at the commit
    /// written before the look): u64::MAX when none.
    reader_floor: AtomicU64,
    abort_hooks: Mutex<Vec<Weak<dyn AbortHook>>>,
    /// The newest epoch known to be on disk: blocks freed up to it may be reused.
    durable_epoch: AtomicU64,
    /// 1 + the newest epoch at which `read_addr` handed out a pointer into a block (0: none
    /// since the open): the rest step moves nodes only once every such pointer has expired.
    pointer_epoch: AtomicU64,
    /// Set after a failure that leaves the on-disk state unsure (see `WriterSide::poisoned`).
    poisoned: AtomicBool,
    /// The store's background thread poisoned it (a log sync, a rest checkpoint) and no host
    /// call has answered `Poisoned` since: the close must, or the host never learns that
    /// commits it was told of may be lost (outsider12 R1, R3).
    poison_unreported: AtomicBool,
    /// The `thread_token` of the thread closing the store (0: none): other threads' changes
    /// are refused meanwhile.
    closing_by: AtomicU64,
    /// Why, once `poisoned` is set: every call but close answers it.
    poisoned_why: Mutex<String>,
    writer: Mutex<WriterSide>,
    state: RwLock<Core>,
    closed: AtomicBool,
    options: StoreOptions,
    in_memory: bool,
    flusher_stop: Arc<FlusherStop>,
    /// What the open's recovery did (set once, at open).
    recovery_note: Option<String>,
}

/// A node store. Internally synchronized: one writer at a time (others wait), reads from any
/// thread at any time. Cloning is cheap and shares the store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    /// Set for a snapshot's view of the store: reads answer that commit, writes `ReadOnly`.
    at: Option<Arc<Pin>>,
}

/// A snapshot's hold on its commit: while it lives, the blocks of that commit's versions are
/// not reused (see `Shared::reuse_limit`).
struct Pin {
    shared: Arc<Shared>,
    epoch: u64,
    roots: Arc<super::core::Roots>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.shared.pins.lock();
        if let Some(n) = pins.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.epoch);
            }
        }
        self.shared.publish_pin_floor(&pins);
    }
}

/// A read snapshot: a consistent view of one commit that stays valid, whatever the writer
/// commits meanwhile, until it is dropped. Reads through [`Snapshot::store`] answer the bytes
/// and roots of that commit; every write through it is refused (`ReadOnly`). While it lives,
/// blocks of that commit's versions are not reused: a snapshot held for long holds space.
#[derive(Clone)]
pub struct Snapshot {
    view: Store,
    epoch: u64,
}

impl Snapshot {
    /// The epoch of the commit the snapshot reads.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The store as of the snapshot's commit: its reads (`read`, `with_node`, `with_reader`,
    /// `get_root`, `root_names`, `info`) answer that commit; its writes answer `ReadOnly`.
    pub fn store(&self) -> &Store {
        &self.view
    }
}

/// Reads nodes under one hold of the store's shared lock (see `Store::with_reader`).
pub struct NodeReader<'a> {
    core: &'a Core,
    /// A snapshot's epoch: nodes as that commit left them.
    at: Option<u64>,
}

impl<'a> NodeReader<'a> {
    /// The node's current bytes (a snapshot's: as of its commit), or `NotFound`.
    #[inline(always)]
    pub fn node(&self, id: NodeId) -> Result<&'a [u8]> {
        let (loc, len) = self.core.read_loc_in(id, self.at)?;
        Ok(self.core.space.read(loc, len))
    }
}

/// Reads nodes and edits them in place under one hold of the store's exclusive lock (see
/// `Store::with_editor`): a tree insert descends and edits its leaf without taking the lock
/// twice.
pub struct NodeEditor<'a> {
    core: &'a mut Core,
}

impl NodeEditor<'_> {
    /// A reader of the nodes' current bytes.
    pub fn reader(&self) -> NodeReader<'_> {
        NodeReader { core: self.core, at: None }
    }

    /// As [`Store::try_update`].
    pub fn try_update<R>(&mut self, id: NodeId, f: impl FnOnce(&mut [u8]) -> Result<(usize, R)>) -> Result<R> {
        let c = &mut *self.core;
        let loc = c.write_loc(id)?;
        let capacity = c.space.capacity(loc.class) as usize;
        let (len, r) = f(c.space.read_mut(loc, capacity))?;
        c.finish_in_place(id, loc, len)?;
        Ok(r)
    }

    /// As `try_update`, with each change made through the `Edit` recorded, so that the
    /// commit logs the node's edits as they were made rather than searching for what differs
    /// (see `script`).
    pub fn update_recorded<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Edit<'_>) -> Result<(usize, R)>) -> Result<R> {
        self.core.update_recorded(id, f)
    }

    /// Whether `update_recorded` would record an edit of the node now (see `Core::records`).
    pub fn records(&self, id: NodeId) -> bool {
        self.core.records(id)
    }

    /// As [`Store::set_root`].
    pub fn set_root(&mut self, name: &[u8], id: u64, meta: &[u8]) -> Result<()> {
        self.core.set_root(name, id, meta)
    }

    /// As [`Store::allocate`]; returns the id only.
    pub fn allocate(&mut self, min_len: usize, kind: u8) -> Result<NodeId> {
        Ok(self.core.allocate(min_len, kind)?.0)
    }

    /// Makes the node writable now (a shadow of its committed block, contents copied), so
    /// that a later `publish` or `try_update` of it cannot fail for lack of space: a caller
    /// writing several nodes all-or-nothing takes every shadow first.
    pub fn prepare_write(&mut self, id: NodeId) -> Result<()> {
        self.core.prepare_write(id)
    }

    /// As [`Store::publish`], for bytes that fit the node's block (no growth).
    pub fn publish(&mut self, id: NodeId, data: &[u8]) -> Result<()> {
        self.core.publish(id, Source::Bytes(data)).map(drop)
    }

    /// As [`Store::free`].
    pub fn free(&mut self, id: NodeId) -> Result<()> {
        self.core.free(id)
    }

    /// As [`Store::info`].
    pub fn info(&self, id: NodeId) -> Result<NodeInfo> {
        self.core.info(id)
    }
}

/// A reference to a store that does not keep it alive (objects attached to a store hold
/// one, so store and attachment do not keep each other alive).
#[derive(Clone)]
pub struct WeakStore {
    shared: Weak<Shared>,
}

impl WeakStore {
    /// True when `store` (or a snapshot's view of it) is this store.
    pub fn is(&self, store: &Store) -> bool {
        std::ptr::eq(self.shared.as_ptr(), Arc::as_ptr(&store.shared))
    }

    /// The store, or `Closed` once it has been dropped.
    pub fn upgrade(&self) -> Result<Store> {
        self.shared.upgrade().map(|shared| Store { shared, at: None }).ok_or(Error::Closed)
    }
}

impl Store {
    pub fn downgrade(&self) -> WeakStore {
        WeakStore { shared: Arc::downgrade(&self.shared) }
    }

    /// Opens the store in `dir`, creating it (and the directory) if `options.create` and it
    /// holds none. A writer takes the directory's lock (`Busy` if another writer has it);
    /// `read_only` takes none and never changes a file.
    pub fn open(dir: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let dir = dir.as_ref();
        // A reader registers before it reads anything (see `readers`' module comment).
        let reader_slot = if options.read_only { register_reader(dir)? } else { None };
        let mut opened = if options.read_only {
            open_beside_a_writer(dir, options, reader_slot.as_ref())?
        } else {
            recovery::open_dir(dir, options)?
        };
        let readers = match &reader_slot {
            Some(slot) => {
                slot.set_epoch(opened.core.epoch);
                ReaderParts { table: None, slot: reader_slot, floor: u64::MAX }
            }
            None if options.read_only => ReaderParts::none(),
            None => {
                let table = ReaderTable::open(dir, true)?;
                let oldest = table.oldest_reader()?;
                let epoch = opened.core.epoch;
                match (oldest, opened.frees.take()) {
                    // A reader of the opened epoch itself may read blocks nodes moved from at
                    // rest (listed as freed by the next commit, `Core::waiting_frees`).
                    (Some(oldest), Some(frees)) if frees.iter().any(|&(e, _)| e > oldest) => {
                        opened.core.hold_freed_after(oldest, frees)?
                    }
                    // A store of a format that does not record its waiting frees.
                    (Some(oldest), None) if oldest < epoch => opened.core.hold_for_old_readers(epoch)?,
                    _ => {}
                }
                let floor = oldest.map_or(opened.core.epoch, |o| o.min(opened.core.epoch));
                ReaderParts { table: Some(table), slot: None, floor }
            }
        };
        let writer = WriterSide {
            written_epoch: opened.core.epoch,
            dir: Some(dir.to_path_buf()),
            log: opened.log,
            meta: Some(opened.meta),
            _lock: opened.lock,
            last_sync: Instant::now(),
            last_commit: Instant::now(),
            rested_epoch: NOT_RESTED,
            rest_retry_at: None,
            drained_interval: footprint::DRAINED_COMMITS_MIN,
            meta_refreshed: Instant::now(),
            sole_copies_freed: false,
            poisoned: None,
            last_checkpoint_error: None,
            frame_buffer: Vec::new(),
            chain: opened.chain,
            checkpoint_buffer: Vec::new(),
            checkpoint_time: Default::default(),
            readers: None,
            reader_slot: None,
            other_files: 0,
            reserve: None,
        };
        let store = Store::from_parts(writer, opened.core, options.clone(), false, opened.note, readers);
        if !options.read_only {
            let mut w = store.shared.writer.lock();
            w.reserve = Some(Reserve::open(dir));
            if !opened.needs_checkpoint {
                store.shared.take_reserve(&mut w);
            }
        }
        if opened.needs_checkpoint {
            // Not optional: recovery's allocator holds only what the replayed table names, so
            // the checkpointed versions the log replaced (the bases its deltas are rebuilt
            // from) are free in it; until a checkpoint makes them unneeded, a new node could
            // overwrite one and the next replay would fail. On a full disk the checkpoint has
            // the reserve; without room the open is refused, changing nothing.
            store.checkpoint()?;
        } else if !options.read_only {
            let mut w = store.shared.writer.lock();
            store.shared.give_back_tail(&w, |s| s.truncate_free_tails(0))?;
            store.shared.measure_other_files(&mut w);
        }
        Ok(store)
    }

    /// A store with no files: everything lives in anonymous memory and ends with the store.
    pub fn in_memory(options: &StoreOptions) -> Result<Store> {
        if options.read_only {
            // Nothing could ever be written to it; taking writes would break the read-only
            // promise, so the pair is refused.
            return Err(Error::InvalidArgument("a store in memory cannot be read-only".into()));
        }
        let core = recovery::new_memory_core(options)?;
        let writer = WriterSide {
            dir: None,
            log: None,
            meta: None,
            _lock: None,
            written_epoch: 0,
            last_sync: Instant::now(),
            last_commit: Instant::now(),
            rested_epoch: 0,
            rest_retry_at: None,
            drained_interval: footprint::DRAINED_COMMITS_MIN,
            meta_refreshed: Instant::now(),
            sole_copies_freed: false,
            poisoned: None,
            last_checkpoint_error: None,
            frame_buffer: Vec::new(),
            chain: checkpoint::Chain::default(),
            checkpoint_buffer: Vec::new(),
            checkpoint_time: Default::default(),
            readers: None,
            reader_slot: None,
            other_files: 0,
            reserve: None,
        };
        let options = StoreOptions { read_only: false, ..options.clone() };
        Ok(Store::from_parts(writer, core, options, true, None, ReaderParts::none()))
    }

    fn from_parts(
        writer: WriterSide,
        mut core: Core,
        options: StoreOptions,
        in_memory: bool,
        recovery_note: Option<String>,
        readers: ReaderParts,
    ) -> Store {
        let mut writer = writer;
        writer.readers = readers.table;
        writer.reader_slot = readers.slot;
        core.verify_reads = options.verify_checksums;
        core.growth_rule = options.growth_rule;
        let writes_files = !in_memory && !options.read_only;
        let balanced = options.durability == Durability::Balanced && writes_files;
        let rests = options.idle_checkpoint_ms != u32::MAX && writes_files;
        let durable_epoch = AtomicU64::new(core.epoch);
        let shared = Arc::new(Shared {
            attachments: Mutex::new(std::collections::HashMap::new()),
            pins: Mutex::new(BTreeMap::new()),
            pin_floor: AtomicU64::new(u64::MAX),
            reader_floor: AtomicU64::new(readers.floor),
            pointer_epoch: AtomicU64::new(0),
            abort_hooks: Mutex::new(Vec::new()),
            durable_epoch,
            poisoned: AtomicBool::new(false),
            poison_unreported: AtomicBool::new(false),
            closing_by: AtomicU64::new(0),
            poisoned_why: Mutex::new(String::new()),
            writer: Mutex::new(writer),
            state: RwLock::new(core),
            closed: AtomicBool::new(false),
            options,
            in_memory,
            flusher_stop: Arc::new(FlusherStop::default()),
            recovery_note,
        });
        // Asked at every open, so the first open of the process records it (see the function).
        let forked = in_forked_child();
        if (balanced || rests) && !forked {
            spawn_background(Arc::downgrade(&shared), shared.flusher_stop.clone(), balanced, rests);
        }
        Store { shared, at: None }
    }

    /// Open and not poisoned: every call but close asks. After a failure that left the disk
    /// unsure, reads answer `Poisoned` too: what memory holds may include a commit that is not
    /// on disk, and a reopen tells.
    #[inline]
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else if self.shared.poisoned.load(Ordering::Acquire) {
            Err(self.poisoned_error())
        } else {
            Ok(())
        }
    }

    #[cold]
    #[inline(never)]
    fn poisoned_error(&self) -> Error {
        // Only host calls come here: the background thread looks at `WriterSide::poisoned`.
        self.shared.poison_unreported.store(false, Ordering::Release);
        Error::Poisoned(self.shared.poisoned_why.lock().clone())
    }

    /// Open, writable and not poisoned. Every mutation asks, so the answer "yes" is a few
    /// loads inlined into the caller; the refusals are worked out apart.
    #[inline]
    fn check_writable(&self) -> Result<()> {
        let refused = self.shared.closed.load(Ordering::Acquire)
            || self.shared.options.read_only
            || self.at.is_some()
            || self.shared.poisoned.load(Ordering::Acquire)
            || self.closing_elsewhere();
        if refused {
            return Err(self.not_writable());
        }
        Ok(())
    }

    /// Another thread is closing the store: its changes from now on would be committed by the
    /// close's compaction, which drops uncommitted work first (outsider12 R2: thousands of
    /// inserts made during a close, never committed, were in the store at the reopen).
    #[inline]
    fn closing_elsewhere(&self) -> bool {
        let by = self.shared.closing_by.load(Ordering::Acquire);
        by != 0 && by != thread_token()
    }

    /// Why `check_writable` refused.
    #[cold]
    #[inline(never)]
    fn not_writable(&self) -> Error {
        if self.shared.closed.load(Ordering::Acquire) || self.closing_elsewhere() {
            return Error::Closed;
        }
        if self.shared.options.read_only || self.at.is_some() {
            return Error::ReadOnly;
        }
        self.poisoned_error()
    }

    /// Locks the writer side (log, meta) for a commit or checkpoint.
    fn writer(&self) -> Result<parking_lot::MutexGuard<'_, WriterSide>> {
        self.check_writable()?;
        let w = self.shared.writer.lock();
        self.check_writable()?;
        Ok(w)
    }

    /// Runs a mutation under the state lock alone. A commit keeps mutations out between
    /// building its frame and applying it by holding the lock upgradable meanwhile.
    #[inline]
    pub(super) fn mutate<T>(&self, f: impl FnOnce(&mut Core) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let mut state = self.shared.state.write();
        // Again under the lock: a close that began meanwhile (`closing_by`) has dropped the
        // uncommitted work, and a change made now would be committed by its compaction.
        self.check_open()?;
        if self.closing_elsewhere() {
            return Err(Error::Closed);
        }
        // Blocks freed by a commit that BALANCED's background sync has since made durable, or
        // that the last snapshot to read them has since let go of. (The queues are looked at
        // first: most mutations between commits find them empty.)
        if state.frees_queued() {
            let limit = self.shared.reuse_limit();
            if state.frees_releasable(limit) {
                state.release_frees(limit)?;
            }
        }
        f(&mut state)
    }

    pub(super) fn read_state<T>(&self, f: impl FnOnce(&Core) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let state = self.shared.state.read();
        // Again under the lock: a close that began after the first look has swapped the state
        // for an empty one by now, in which every node is missing (and a tree would call its
        // pages damaged).
        self.check_open()?;
        f(&state)
    }

    /// The epoch this view reads: a snapshot's, or `None` for the latest state.
    fn view_epoch(&self) -> Option<u64> {
        self.at.as_ref().map(|p| p.epoch)
    }

    /// Begins a read snapshot of the last commit (see [`Snapshot`]). Cheap: no copy, a count
    /// under a lock; many may be open at once, on any threads. On a snapshot's view, a new
    /// snapshot of the same commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.check_open()?;
        if let Some(pin) = &self.at {
            let view = Store { shared: self.shared.clone(), at: Some(pin.clone()) };
            return Ok(Snapshot { view, epoch: pin.epoch });
        }
        // Under the state lock, shared: no commit applies and no block is released while the
        // pin goes in, so every version of this epoch is still where the table says.
        let state = self.shared.state.read();
        self.check_open()?; // under the lock: see `read_state`
        let epoch = state.epoch;
        let mut pins = self.shared.pins.lock();
        *pins.entry(epoch).or_insert(0) += 1;
        self.shared.publish_pin_floor(&pins);
        drop(pins);
        let pin = Pin { shared: self.shared.clone(), epoch, roots: state.committed_roots.clone() };
        drop(state);
        Ok(Snapshot { view: Store { shared: self.shared.clone(), at: Some(Arc::new(pin)) }, epoch })
    }

    /// The newest commit known to be on disk (synced, or in a checkpoint): what a power cut
    /// now would keep at the least. STRICT: the last commit; BALANCED: the one the group
    /// commit last synced; EVENTUAL: the last one a sync happened to cover.
    pub fn durable_epoch(&self) -> u64 {
        self.shared.durable_epoch.load(Ordering::Acquire)
    }

    /// False once the store is closed.
    pub fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the store is poisoned, without answering `Poisoned` (tests).
    #[cfg(test)]
    pub(crate) fn poisoned_quietly(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    pub fn is_read_only(&self) -> bool {
        self.shared.options.read_only
    }

    /// See `Shared::give_back_log_space`.
    pub(super) fn give_back_log_space(&self) -> Result<()> {
        self.shared.give_back_log_space()
    }

    /// The directory the store lives in (`None` for a store in memory).
    pub fn dir(&self) -> Option<PathBuf> {
        self.shared.writer.lock().dir.clone()
    }

    /// A zero-filled block of the smallest class holding `min_len`, RESERVED until committed.
    /// Returns the id, the block's address (for the C ABI) and its capacity.
    #[inline]
    pub fn allocate(&self, min_len: usize, kind: u8) -> Result<(NodeId, usize, usize)> {
        self.mutate(|c| {
            let (id, loc) = c.allocate(min_len, kind)?;
            Ok((id, c.space.addr(loc), c.space.capacity(loc.class) as usize))
        })
    }

    /// Replaces the node's bytes. Grows the node when they outgrow its block; returns the id
    /// to use from now on (the same one unless the growth policy is `NewId`).
    pub fn publish(&self, id: NodeId, data: &[u8]) -> Result<NodeId> {
        self.publish_from(id, Source::Bytes(data))
    }

    pub fn publish_from(&self, id: NodeId, src: Source<'_>) -> Result<NodeId> {
        self.mutate(|c| c.publish(id, src))
    }

    /// Makes sure `count` blocks of the class that holds `min_len` bytes can be allocated
    /// without growing a class file (`NoSpace` now, when the disk cannot hold them): an
    /// operation that must not fail halfway calls this first. Changes nothing else.
    pub fn reserve(&self, min_len: usize, count: usize) -> Result<()> {
        self.mutate(|c| c.reserve(min_len, count))
    }

    /// As `publish_from`, with the source chosen by `source` under the same hold of the lock,
    /// from the address and capacity of the node's current block and of its draft (`None`
    /// when the id is unknown, or the node has no draft): the C ABI recognizes there a
    /// source inside the node's own bytes.
    pub fn publish_with<'a>(
        &self,
        id: NodeId,
        source: impl FnOnce(Option<AddrRange>, Option<AddrRange>) -> Result<Source<'a>>,
    ) -> Result<NodeId> {
        self.mutate(|c| {
            let range = |loc: crate::alloc::Loc| (c.space.addr(loc), c.space.capacity(loc.class) as usize);
            let block = c.table.resolve(id).ok().map(|h| range(c.table.slots[h as usize].loc()));
            let src = source(block, c.draft_of(id).map(range))?;
            c.publish(id, src)
        })
    }

    /// Address and capacity of a block to write the node's next version into, outside any
    /// lock (see `Core::draft_loc`): readers go on reading the current version until
    /// `publish_in_place` (or a publish from inside the block).
    pub fn write_ptr(&self, id: NodeId) -> Result<(usize, usize)> {
        self.mutate(|c| {
            let loc = c.draft_loc(id)?;
            Ok((c.space.addr(loc), c.space.capacity(loc.class) as usize))
        })
    }

    /// Safe counterpart of `write_ptr` + `publish_in_place`: `f` edits the node's bytes in
    /// place (its whole block; a shadow copy if the node is committed) and returns the new
    /// length. Do not call the store from inside `f`.
    pub fn update(&self, id: NodeId, f: impl FnOnce(&mut [u8]) -> usize) -> Result<()> {
        self.try_update(id, |buf| Ok((f(buf), ())))
    }

    /// Like `update`; `f` returns the new length and a result, or fails. A failing `f` must
    /// not have written anything (callers check before they write).
    pub fn try_update<R>(&self, id: NodeId, f: impl FnOnce(&mut [u8]) -> Result<(usize, R)>) -> Result<R> {
        self.mutate(|core| NodeEditor { core }.try_update(id, f))
    }

    /// Calls `f` with an editor that reads any number of nodes and edits them in place, all
    /// under one hold of the store's exclusive lock. Do not call the store from inside `f`.
    pub fn with_editor<R>(&self, f: impl FnOnce(&mut NodeEditor<'_>) -> Result<R>) -> Result<R> {
        self.mutate(|core| f(&mut NodeEditor { core }))
    }

    pub fn publish_in_place(&self, id: NodeId, len: usize) -> Result<()> {
        self.mutate(|c| c.publish_in_place(id, len))
    }

    /// Address of the node's current bytes, and their length (for the C ABI).
    /// On a snapshot's view, the address stays valid until the snapshot ends; otherwise until
    /// the node is next written or freed, or the second commit after this call has returned
    /// (relocation may move a clean node: see `compact.rs`).
    pub fn read_addr(&self, id: NodeId) -> Result<(usize, usize)> {
        self.read_state(|c| {
            let view = self.view_epoch();
            let (loc, len) = c.read_loc_in(id, view)?;
            if view.is_none() {
                // Under the state lock: the rest step, which takes it exclusively, sees it.
                // Read first so that readers of one epoch do not all write the shared word.
                let p = &self.shared.pointer_epoch;
                if p.load(Ordering::Relaxed) <= c.epoch {
                    p.fetch_max(c.epoch + 1, Ordering::Relaxed);
                }
            }
            Ok((c.space.addr(loc), len))
        })
    }

    /// Calls `f` with the node's current bytes. Do not call the store from inside `f`.
    pub fn with_node<R>(&self, id: NodeId, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.read_state(|c| {
            let (loc, len) = c.read_loc_in(id, self.view_epoch())?;
            Ok(f(c.space.read(loc, len)))
        })
    }

    /// Calls `f` with a reader that resolves any number of nodes under one shared lock (a
    /// tree descent reads a page per level). Do not call the store from inside `f`.
    pub fn with_reader<R>(&self, f: impl FnOnce(&NodeReader<'_>) -> Result<R>) -> Result<R> {
        self.read_state(|core| f(&NodeReader { core, at: self.view_epoch() }))
    }

    pub fn read(&self, id: NodeId) -> Result<Vec<u8>> {
        self.with_node(id, <[u8]>::to_vec)
    }

    /// On a snapshot's view: the version that commit left (committed, clean).
    pub fn info(&self, id: NodeId) -> Result<NodeInfo> {
        self.read_state(|c| match self.view_epoch() {
            None => c.info(id),
            Some(epoch) => {
                let v = c.version_at(id, epoch)?;
                let capacity = c.space.capacity(v.loc.class) as usize;
                Ok(NodeInfo { id, len: v.len as usize, capacity, kind: v.kind, committed: true, dirty: false })
            }
        })
    }

    /// Frees a node: a RESERVED one at once, a LIVE one by the next commit (logged, so a crash
    /// cannot bring it back). The id reads as not found from now on.
    pub fn free(&self, id: NodeId) -> Result<()> {
        self.mutate(|c| c.free(id))
    }

    /// As `free`; `then` runs after the free succeeds, under the same hold of the store's
    /// lock (which orders it with every other mutation of the store).
    #[inline]
    pub fn free_then(&self, id: NodeId, then: impl FnOnce()) -> Result<()> {
        self.mutate(|c| c.free(id).map(|()| then()))
    }

    /// Frees the node at the first commit whose epoch is at least `epoch`; until then it stays
    /// readable for readers on older versions.
    pub fn retire(&self, id: NodeId, epoch: u64) -> Result<()> {
        self.mutate(|c| c.retire(id, epoch))
    }

    /// As `retire`, with `then` as in `free_then`.
    pub fn retire_then(&self, id: NodeId, epoch: u64, then: impl FnOnce()) -> Result<()> {
        self.mutate(|c| c.retire(id, epoch).map(|()| then()))
    }

    /// Sets a named root (durable at the next commit).
    pub fn set_root(&self, name: &[u8], id: u64, meta: &[u8]) -> Result<()> {
        self.mutate(|c| c.set_root(name, id, meta))
    }

    /// The named root as last set, committed or not; `None` when there is none.
    /// On a snapshot's view: as of its commit.
    pub fn get_root(&self, name: &[u8]) -> Result<Option<Root>> {
        super::core::check_root_name(name)?;
        if let Some(pin) = &self.at {
            self.check_open()?;
            return Ok(pin.roots.get(name).map(|(id, meta)| Root { id: *id, meta: meta.clone() }));
        }
        self.read_state(|c| Ok(c.root(name).map(|(id, meta)| Root { id, meta: meta.to_vec() })))
    }

    /// The names of all roots as last set, in byte order (a snapshot's: as of its commit).
    pub fn root_names(&self) -> Result<Vec<Vec<u8>>> {
        if let Some(pin) = &self.at {
            self.check_open()?;
            return Ok(pin.roots.keys().cloned().collect());
        }
        self.read_state(|c| Ok(c.root_names().cloned().collect()))
    }

    /// Makes everything published so far durable (as the durability mode promises) and
    /// atomic: after a crash, all of it is there or none of it. Returns the new epoch; every
    /// commit advances it, even one with nothing to write (so retire epochs come due).
    pub fn commit(&self) -> Result<u64> {
        self.commit_relocating(Budget::COMMIT).map(|(epoch, _)| epoch)
    }

    /// `commit`, carrying relocations of nodes toward the front of the class files, within
    /// `budget` (see `compact.rs`).
    pub(super) fn commit_relocating(&self, budget: Budget) -> Result<(u64, Moved)> {
        let mut w = self.writer()?;
        let opts = &self.shared.options;
        if self.shared.in_memory {
            let mut c = self.shared.state.write();
            let moved = c.relocate(budget);
            let buffer = std::mem::take(&mut w.frame_buffer);
            let prepared = c.prepare_commit(0, usize::MAX, buffer);
            let epoch = prepared.epoch;
            w.frame_buffer = prepared.frame.into_buffer();
            c.apply_commit(epoch, self.shared.has_snapshots());
            c.history.prune(self.shared.oldest_snapshot());
            // As durable, and as checkpointed, as a store in memory gets.
            self.shared.durable_epoch.store(epoch, Ordering::Release);
            c.checkpointed(epoch, self.shared.reuse_limit(), false)?;
            return Ok((epoch, moved));
        }
        let mut c = self.shared.state.write();
        let moved = c.relocate(budget);
        let buffer = std::mem::take(&mut w.frame_buffer);
        // A bulk of new nodes is synced in its blocks rather than logged, where the commit
        // syncs anyway: with STRICT only (the other modes promise no sync at each commit).
        let bulk_min = if opts.durability == Durability::Strict { BULK_UNLOGGED_MIN_BYTES } else { usize::MAX };
        let mut prepared = c.prepare_commit(opts.inline_payload_max_bytes as usize, bulk_min, buffer);
        // Readers go on while the frame is written and synced; mutations wait.
        let c = RwLockWriteGuard::downgrade_to_upgradable(c);
        if let Err(e) = c.space.sync_blocks(&prepared.unlogged) {
            // Not retried (see `ClassFile::flush_dirty`): a later commit's sync of these blocks
            // could succeed without writing them, and its frame would name lost payloads.
            return Err(self.shared.poison(&mut w, format!("syncing the commit's unlogged payloads failed: {e}")));
        }
        // A class file created for this commit must still exist after a power cut: its
        // directory entry is synced before the frame. Its size need not be: recovery extends a
        // file whose growth was lost when the log holds what was written there (and a payload
        // that is not logged was synced, size and all, by `flush_block` above).
        if let Err(e) = c.space.sync_growth(w.dir.as_deref().expect("a file store has a directory"), false) {
            return Err(self.shared.poison(&mut w, format!("syncing a new class file's directory entry failed: {e}")));
        }
        let log = w.log.as_mut().expect("a writable file store has a log");
        let frame = prepared.frame.pieces(log.synced(), log.salt(), |loc, len| c.space.read(loc, len));
        let synced = self.shared.write_frame(&mut w, &frame)?;
        drop(frame);
        w.frame_buffer = prepared.frame.into_buffer();
        w.written_epoch = prepared.epoch;
        w.last_commit = Instant::now();
        w.sole_copies_freed |= prepared.frees_sole_copies;
        let pending = c.pending_free_bytes;
        let sync_now = match opts.durability {
            Durability::Strict => true,
            Durability::Balanced => {
                w.last_sync.elapsed() >= Duration::from_millis(u64::from(opts.balanced_interval_ms))
            }
            // Blocks freed by unsynced commits cannot be reused; sync now and then to recycle
            // them. Not while a snapshot or reader process holds the floor at or below the
            // durable epoch: that sync would release nothing, and it would come at every commit.
            Durability::Eventual => pending > EVENTUAL_SYNC_FOR_FREED_BYTES && self.shared.sync_would_release(),
        };
        if synced {
            self.shared.log_synced(&mut w)?;
        } else if sync_now {
            self.shared.sync_log(&mut w)?;
        }
        // After the frame is written (see `readers`): a reader process that registers later
        // reads this commit, in which the blocks it frees are free already.
        let oldest_reader = self.shared.look_at_readers(&w, prepared.epoch);
        // A reader process keeps the tails from being cut: no checkpoint for them then.
        let no_reader_process = matches!(oldest_reader, Ok(None));
        let mut c = RwLockUpgradableReadGuard::upgrade(c);
        c.apply_commit(prepared.epoch, self.shared.has_snapshots());
        c.history.prune(self.shared.oldest_snapshot());
        if let Ok(oldest) = oldest_reader {
            c.end_hold_once_readers_passed(oldest)?;
        }
        c.release_frees(self.shared.reuse_limit())?;
        let table_bytes = c.table.handle_count() * 12;
        let mut estimate = self.shared.commit_footprint(&w, &c);
        let reserve_wanted = reserve::bytes_for(estimate.class_files);
        drop(c);
        // The reserve grows with the store (a store that never checkpoints, EVENTUAL's bulk
        // load, would otherwise keep the one it was created with, too small for its first
        // checkpoint), by doublings: a commit takes it, never spends it.
        if w.reserve.as_ref().is_some_and(|r| r.held() * 2 <= reserve_wanted) {
            self.shared.take_reserve(&mut w);
        }
        if estimate.over_limit() {
            // Space past what the last segments ever handed out goes back first: no
            // checkpoint needed (a small store's last segment is mostly that).
            // The commit is durable already: a failed cut is reported as a checkpoint's is.
            if let Err(e) = self.shared.give_back_tail(&w, Space::cut_untouched_tails) {
                w.last_checkpoint_error = Some(e.to_string());
            }
            estimate = self.shared.commit_footprint(&w, &self.shared.state.read());
        }
        let log_len = w.log.as_ref().map_or(0, LogWriter::len);
        // A snapshot pins what a checkpoint would give back: only the log's size calls for one.
        // EVENTUAL promises nothing on disk before a sync: its footprint is kept at the
        // checkpoints that make its commits durable, never by a checkpoint inside a commit
        // (a bulk load's one commit would write its pages twice: see `footprint`).
        let drained =
            (estimate.over_limit() && no_reader_process && moved.nodes == 0 && !moved.budget_hit).then(|| {
                footprint::Drained {
                    commits_since_checkpoint: prepared.epoch.saturating_sub(w.meta.map_or(0, |m| m.checkpoint_epoch)),
                    commits_min: w.drained_interval,
                    past_cut_lines: self.shared.state.read().bytes_past_cut_lines(),
                }
            });
        let for_footprint = (opts.durability != Durability::Eventual && !self.shared.has_snapshots())
            .then(|| estimate.wants_checkpoint(log_len, drained))
            .flatten();
        if log_len > opts.checkpoint_log_bytes.max(table_bytes) || for_footprint.is_some() {
            // The commit is durable whatever happens here; a failed checkpoint is retried at
            // the next commit and reported by `checkpoint()`.
            let files = || self.shared.state.read().space.file_bytes();
            let drained = match for_footprint {
                Some(footprint::Due::Drained { expected }) => Some((expected, files())),
                _ => None,
            };
            let result = self.shared.checkpoint_locked(&mut w);
            if let Err(poisoned @ Error::Poisoned(_)) = result {
                // Said now, not at the host's next call (outsider11 G13): the commit is
                // durable in the synced log, which a reopen replays.
                return Err(poisoned);
            }
            w.last_checkpoint_error = result.err().map(|e| e.to_string());
            if let Some((expected, before)) = drained {
                let given = before.saturating_sub(files());
                w.drained_interval = footprint::next_drained_interval(w.drained_interval, expected, given);
            }
        }
        Ok((prepared.epoch, moved))
    }

    /// Throws away every change since the last commit (or since the open): nodes allocated
    /// since are freed and their ids stale; published, grown and in-place versions give way
    /// to the committed ones; frees, retirements and root changes are withdrawn; B+ trees open
    /// on the store reload their committed state and their cursors go stale; a tree created
    /// since is gone, as if dropped (its handles answer `BadHandle`; an open makes it anew).
    /// Pointers into blocks written since (`write_ptr`, an allocation's block) are dangling
    /// afterwards. Nothing is written to disk. Works after a
    /// commit that failed (a full disk, say) as after any other change; not on a poisoned
    /// store, whose state on disk is unsure.
    pub fn abort(&self) -> Result<()> {
        let mut w = self.writer()?;
        w.rested_epoch = NOT_RESTED;
        // Locked before the objects' own locks, in the order `drop_tree` takes them: nobody
        // opens an object that the abort may find gone until it is detached.
        let mut attachments = self.shared.attachments.lock();
        let hooks: Vec<Arc<dyn AbortHook>> = {
            let mut registered = self.shared.abort_hooks.lock();
            registered.retain(|h| h.strong_count() > 0);
            registered.iter().filter_map(Weak::upgrade).collect()
        };
        let mut guards: Vec<Box<dyn AbortGuard + '_>> = hooks.iter().map(|h| h.begin_abort()).collect();
        self.mutate(|c| c.abort())?;
        for (g, hook) in guards.iter_mut().zip(&hooks) {
            if let AfterAbort::Gone { attachment } = g.reload(self)? {
                let same =
                    attachments.get(&attachment).is_some_and(|a| std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(hook)));
                if same {
                    attachments.remove(&attachment);
                }
            }
        }
        Ok(())
    }

    /// Registers an object to reload its cached state on [`Store::abort`], for as long as it
    /// lives.
    pub fn on_abort(&self, hook: Weak<dyn AbortHook>) {
        let mut hooks = self.shared.abort_hooks.lock();
        hooks.retain(|h| h.strong_count() > 0); // trees dropped and reopened: bounded
        hooks.push(hook);
    }

    /// Writes the committed state to a new checkpoint and starts a new, empty log.
    pub fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer()?;
        if self.shared.in_memory {
            return Ok(());
        }
        self.shared.checkpoint_locked(&mut w)
    }

    /// The background thread's rest step: once no commit came for `idle`, a store whose
    /// files hold more than the footprint trigger is checkpointed, its class files' free
    /// tails cut and its log's kept space given back, as a close would leave it. Never waits
    /// for a host call (the writer busy: not at rest). What keeps it from resting now may end
    /// (an open snapshot, a registered reader process, changes waiting for a commit: a
    /// checkpoint would flush a transaction in progress), so it looks again at the next tick;
    /// once rested, or found within the trigger, it waits for the next commit.
    fn rest_if_idle(&self, idle: Duration) {
        let Some(mut w) = self.shared.writer.try_lock() else { return };
        let closed = self.shared.closed.load(Ordering::Acquire);
        if w.rested_epoch == w.written_epoch || w.last_commit.elapsed() < idle || w.poisoned.is_some() || closed {
            return;
        }
        if w.rest_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let readers_alive = w.readers.as_ref().is_some_and(|t| !matches!(t.oldest_reader(), Ok(None)));
        if readers_alive || self.shared.has_snapshots() {
            return;
        }
        let (over, in_progress) = {
            let c = self.shared.state.read();
            (self.shared.footprint(&w, &c).over_limit(), c.has_uncommitted())
        };
        if in_progress {
            return;
        }
        w.rested_epoch = w.written_epoch;
        if !over {
            return;
        }
        // A commit's own checkpoint may have left only the log's kept space to give back.
        let checkpointed =
            if self.shared.checkpoint_current(&w) { Ok(()) } else { self.shared.checkpoint_locked(&mut w) };
        let rested = checkpointed
            .and_then(|()| match w.log.as_mut() {
                Some(log) => log.give_back_unused(),
                None => Ok(()),
            })
            .and_then(|()| self.shared.relocate_at_rest(&mut w))
            // The checkpoint cut the free tails; one current already (after an open or an
            // abort: nothing was committed) did not, and the log is empty all the same.
            .and_then(|()| self.shared.give_back_tail(&w, |s| s.truncate_free_tails(0)).map(drop))
            .and_then(|()| self.shared.punch_free_pages(&w));
        match rested {
            Ok(()) => {
                w.rest_retry_at = None;
                self.shared.measure_other_files(&mut w)
            }
            // Reported as a commit's checkpoint failure is (`checkpoint()` tells it), and tried
            // again after a while: the disk may have room by then. A failed sync poisons the
            // store instead, and a poisoned store never rests.
            Err(e) => {
                w.last_checkpoint_error = Some(e.to_string());
                w.rested_epoch = NOT_RESTED;
                let wait = (idle * REST_RETRY_IDLE_PERIODS).min(Duration::from_secs(3600));
                w.rest_retry_at = Some(Instant::now() + wait);
            }
        }
    }

    /// The background thread's rest step, run now on the calling thread (tests: its
    /// checkpoint hooks are this thread's).
    #[cfg(test)]
    pub(crate) fn rest_now(&self) {
        self.rest_if_idle(Duration::ZERO);
    }

    /// Syncs the log if a commit is not yet on disk (BALANCED's background thread).
    fn sync_if_behind(&self) {
        let mut w = self.shared.writer.lock();
        let behind = w.written_epoch > self.shared.durable_epoch.load(Ordering::Acquire);
        if w.poisoned.is_none() && behind && !self.shared.closed.load(Ordering::Acquire) {
            let _ = self.shared.sync_log(&mut w);
        }
    }

    /// Closes the store: uncommitted work is dropped, the committed state is checkpointed
    /// (unless the last checkpoint holds it already: closing an unchanged store writes
    /// nothing), the directory lock released. Every later call answers `Closed`; a second close is a no-op
    /// error (`Closed`).
    ///
    /// A writer whose class files hold much more than its nodes need first moves nodes from
    /// the files' tails forward (at most [`CLOSE_COMPACT_BYTES`](super::CLOSE_COMPACT_BYTES),
    /// in commits of their own, uncommitted work dropped first as the close drops it), so the
    /// checkpoint leaves the tails free and they are cut: see `Store::compact`.
    pub fn close(&self) -> Result<()> {
        // A store poisoned before is closed without a word about it, when the host was told;
        // poisoned by the background thread and never said, the close says it.
        let poisoned_before = self.shared.poisoned.load(Ordering::Acquire);
        // From now on other threads' changes are refused (`closing_elsewhere`); the first
        // close wins.
        if self.at.is_none() {
            let _ = self.shared.closing_by.compare_exchange(0, thread_token(), Ordering::AcqRel, Ordering::Acquire);
        }
        let compacted =
            if self.is_open() && self.at.is_none() && !poisoned_before { self.compact_at_close() } else { Ok(()) };
        let closed = self.shared.close();
        // Looked at once the store is closed (its background thread does nothing more): a
        // log sync that failed in the background during the compaction counts too (review12).
        let unreported = self.at.is_none()
            && self.shared.poisoned.load(Ordering::Acquire)
            && self.shared.poison_unreported.swap(false, Ordering::AcqRel);
        // A compaction that failed otherwise changed nothing on disk, and the close's own
        // checkpoint reports what goes wrong then; one that poisoned the store left the disk
        // unsure, and the close of a poisoned store takes no checkpoint to say so (an outside
        // tester's close answered OK after its last log sync failed, and a reopen lost the
        // commits since the last checkpoint).
        match compacted {
            Err(e @ Error::Poisoned(_)) => closed.and(Err(e)),
            _ if unreported => closed.and(Err(self.poisoned_error())),
            _ => closed,
        }
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let w = self.shared.writer.lock();
        let pins = self.shared.pins.lock().clone();
        let table = w.readers.as_ref().or(w.reader_slot.as_ref().map(ReaderSlot::table));
        let readers = table.map(|t| t.live_readers()).unwrap_or_default();
        let (dir_bytes, checkpoint_bytes, dir_log_bytes) =
            w.dir.as_deref().map_or((0, 0, 0), recovery::store_file_bytes);
        self.read_state(|c| {
            let classes = c.space.stats();
            let mut total = ClassStats::default();
            classes.iter().for_each(|s| total.accumulate(s));
            let file_store = !self.shared.in_memory;
            Ok(StoreStats {
                epoch: c.epoch,
                live_nodes: c.live_nodes,
                reserved_nodes: c.reserved_nodes,
                reallocations: c.reallocations,
                log_bytes: w.log.as_ref().map_or(dir_log_bytes, LogWriter::len),
                checkpoint_epoch: w.meta.map_or(0, |m| m.checkpoint_epoch),
                open_files: c.space.open_files() as u64
                    + u64::from(w.log.is_some())
                    + u64::from(w._lock.is_some() && file_store)
                    + u64::from(table.is_some()),
                data_file_bytes: c.space.file_bytes(),
                // Blocks held for reader processes older than this writer's open count as
                // pinned frees: the reader still reads them, and they are reusable once it ends.
                pending_free_bytes: c.pending_free_bytes + c.held_for_readers_bytes,
                snapshots_open: pins.values().map(|&n| n as u64).sum(),
                oldest_snapshot_epoch: pins.keys().next().copied().unwrap_or(0),
                reader_processes: readers.len() as u64,
                oldest_reader_epoch: readers.iter().map(|&(_, e)| e).min(),
                pinned_bytes: c.pending_bytes_between(self.shared.reuse_limit(), self.durable_epoch())
                    + c.held_for_readers_bytes,
                snapshot_versions: c.history.len() as u64,
                held_base_bytes: c.held_base_bytes,
                checkpoints: w.checkpoint_time.0,
                checkpoint_seconds: w.checkpoint_time.1.as_secs_f64(),
                checkpoint_flush_seconds: w.checkpoint_time.2.as_secs_f64(),
                handles: c.table.handle_count(),
                directory_bytes: if file_store { dir_bytes } else { c.space.segment_bytes_total() },
                live_bytes: c.live_block_bytes(),
                free_bytes: c.space.segment_bytes_total().saturating_sub(total.live_bytes + c.space.punched_bytes()),
                given_back_bytes: c.space.punched_bytes(),
                checkpoint_bytes,
                classes,
                total,
            })
        })
    }

    /// The size classes' block sizes.
    pub fn class_bytes(&self) -> Vec<u32> {
        let c = self.shared.state.read();
        (0..c.space.classes().count() as u8).map(|i| c.space.classes().bytes(i)).collect()
    }

    /// Checks the allocator against the object table: every referenced block allocated once,
    /// nothing allocated that nothing references.
    pub fn verify(&self) -> Result<()> {
        self.read_state(|c| c.verify())
    }

    /// Checks every committed node's bytes against the checksum its commit recorded. Returns
    /// the mismatches found (`Corrupt`, each naming the node, its class file and offset), at
    /// most `limit` of them.
    pub fn check_checksums(&self, limit: usize) -> Result<Vec<Error>> {
        self.read_state(|c| Ok(c.check_all(limit)))
    }

    /// The object attached to this store under `name`, made by `make` on first use. Every
    /// caller gets the same instance for the store's lifetime.
    pub fn attachment<T: std::any::Any + Send + Sync>(
        &self,
        name: &[u8],
        make: impl FnOnce() -> Result<Arc<T>>,
    ) -> Result<Arc<T>> {
        self.check_open()?;
        let mut map = self.shared.attachments.lock();
        if let Some(existing) = map.get(name) {
            return existing.clone().downcast::<T>().map_err(|_| {
                Error::InvalidArgument(format!("{:?} is attached as another type", String::from_utf8_lossy(name)))
            });
        }
        let made = make()?;
        map.insert(name.to_vec(), made.clone());
        Ok(made)
    }

    /// Runs `f` on the attachment `name` (`None` when there is none) with the attachments
    /// locked, so nobody attaches or finds it meanwhile; when `f` succeeds the attachment is
    /// removed (a later `attachment` makes a new one).
    pub fn detach_with<T: std::any::Any + Send + Sync, R>(
        &self,
        name: &[u8],
        f: impl FnOnce(Option<Arc<T>>) -> Result<R>,
    ) -> Result<R> {
        self.check_open()?;
        let mut map = self.shared.attachments.lock();
        let existing = match map.get(name) {
            Some(a) => Some(a.clone().downcast::<T>().map_err(|_| {
                Error::InvalidArgument(format!("{:?} is attached as another type", String::from_utf8_lossy(name)))
            })?),
            None => None,
        };
        let r = f(existing)?;
        map.remove(name);
        Ok(r)
    }

    /// Frees every node of `ids` and removes the root `name`, as one change of the
    /// uncommitted state (durable at the next commit): when anything is wrong (no such root,
    /// a node not freeable, one listed twice) nothing changes.
    pub fn free_all_and_remove_root(&self, ids: &[NodeId], name: &[u8]) -> Result<()> {
        super::core::check_root_name(name)?;
        self.mutate(|c| {
            if c.root(name).is_none() {
                return Err(Error::NotFound(format!("no root named {:?}", String::from_utf8_lossy(name))));
            }
            c.free_all(ids)?;
            c.remove_root(name);
            Ok(())
        })
    }

    /// Ids of all committed nodes, in handle order (RESERVED nodes are not listed).
    pub fn live_ids(&self) -> Result<Vec<NodeId>> {
        self.read_state(|c| {
            Ok(c.table
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == super::table::State::Live)
                .map(|(h, _)| c.table.id_of(h as u64))
                .collect())
        })
    }

    /// Stops using the store the way a killed process does: no checkpoint, no sync; the
    /// lock and files are released. For crash tests.
    #[doc(hidden)]
    pub fn simulate_crash(&self) {
        let mut w = self.shared.writer.lock();
        self.shared.closed.store(true, Ordering::Release);
        self.shared.flusher_stop.stop();
        w.log = None;
        w._lock = None;
        w.readers = None;
        w.reader_slot = None;
    }

    /// True when space given back now could be cut from the files: a writable store with
    /// no snapshot open here and no reader process registered (see `compact.rs`).
    pub(super) fn can_give_back(&self) -> bool {
        if self.shared.options.read_only || self.at.is_some() || self.shared.has_snapshots() {
            return false;
        }
        let w = self.shared.writer.lock();
        !w.readers.as_ref().is_some_and(|t| !matches!(t.oldest_reader(), Ok(None)))
    }

    /// Bytes of the store's files (for a store in memory, of its class segments), and of its
    /// checkpoint and log files.
    pub(super) fn file_bytes(&self) -> (u64, u64, u64) {
        let w = self.shared.writer.lock();
        match &w.dir {
            Some(dir) => recovery::store_file_bytes(dir),
            None => (self.shared.state.read().space.segment_bytes_total(), 0, 0),
        }
    }

    /// A store in memory has no checkpoint: its free segment tails are cut here, unless a
    /// snapshot is open.
    pub(super) fn give_back_in_memory(&self) -> Result<()> {
        if self.shared.has_snapshots() {
            return Ok(());
        }
        self.shared.state.write().space.truncate_free_tails(0).map(drop)
    }

    pub(super) fn is_in_memory(&self) -> bool {
        self.shared.in_memory
    }

    /// What the open's recovery did, when it did more than read a checkpoint: how many
    /// commits it replayed from the log, and any incomplete commit it dropped (with the log's
    /// offset). `None` after a clean close.
    pub fn recovery_note(&self) -> Option<String> {
        self.shared.recovery_note.clone()
    }

    /// The message of the last automatic checkpoint that failed, if the latest one did.
    pub fn last_checkpoint_error(&self) -> Option<String> {
        self.shared.writer.lock().last_checkpoint_error.clone()
    }
}

impl Shared {
    /// Blocks freed by commits up to this epoch may be reused: the commit is durable (a crash
    /// cannot bring back the version before it), no snapshot here reads an older commit, and
    /// no reader process did when the reader table was last looked at.
    fn reuse_limit(&self) -> u64 {
        let durable = self.durable_epoch.load(Ordering::Acquire);
        durable.min(self.pin_floor.load(Ordering::Acquire)).min(self.reader_floor.load(Ordering::Acquire))
    }

    /// True when a log sync now could let blocks be reused: the oldest snapshot and reader
    /// process both read a commit past the durable one.
    fn sync_would_release(&self) -> bool {
        let floor = self.pin_floor.load(Ordering::Acquire).min(self.reader_floor.load(Ordering::Acquire));
        floor > self.durable_epoch.load(Ordering::Acquire)
    }

    /// Mirrors the oldest pinned epoch into `pin_floor` (the caller holds `pins`).
    fn publish_pin_floor(&self, pins: &BTreeMap<u64, usize>) {
        self.pin_floor.store(pins.keys().next().copied().unwrap_or(u64::MAX), Ordering::Release);
    }

    fn has_snapshots(&self) -> bool {
        self.pin_floor.load(Ordering::Acquire) != u64::MAX
    }

    fn oldest_snapshot(&self) -> Option<u64> {
        Some(self.pin_floor.load(Ordering::Acquire)).filter(|&e| e != u64::MAX)
    }

    /// Brings `reader_floor` up to date and ends the hold for reader processes older than
    /// this writer's open if they are gone. Commits look at every turn; a checkpoint (and so
    /// a compaction) looks first too, or the first one after the last old reader left would
    /// find the blocks freed while it lived still held, nothing to move into and nothing to
    /// cut.
    fn end_passed_reader_hold(&self, w: &WriterSide) -> Result<()> {
        match self.look_at_readers(w, w.written_epoch) {
            Ok(oldest) if self.state.read().held_for_readers() => {
                self.state.write().end_hold_once_readers_passed(oldest)
            }
            _ => Ok(()),
        }
    }

    /// Looks up the oldest reader process in the reader table, once commit `written`'s frame
    /// is written, and sets `reader_floor` from it. A table that cannot be read counts as a
    /// reader of the oldest commit (nothing is released), and stays so until it can be.
    fn look_at_readers(&self, w: &WriterSide, written: u64) -> Result<Option<u64>> {
        let Some(table) = &w.readers else { return Ok(None) };
        // Mapped at the first commit: from then on a look is a few loads, not a `pread`.
        match table.map().and_then(|()| table.oldest_reader()) {
            Ok(oldest) => {
                self.reader_floor.store(oldest.map_or(written, |o| o.min(written)), Ordering::Release);
                Ok(oldest)
            }
            Err(e) => {
                self.reader_floor.store(0, Ordering::Release);
                Err(e)
            }
        }
    }

    fn checkpoint_locked(&self, w: &mut WriterSide) -> Result<()> {
        let result = match self.checkpoint_once(w) {
            // A failed checkpoint changed nothing: with the reserve given up, it may fit.
            Err(Error::NoSpace(_)) if w.reserve.as_mut().is_some_and(Reserve::release) => self.checkpoint_once(w),
            result => result,
        };
        if result.is_ok() {
            self.take_reserve(w);
        }
        result
    }

    /// Takes (again) the reserve the store's size calls for, when the disk has room. Best
    /// effort: a reserve that cannot be taken now is taken at a later checkpoint, and the
    /// checkpoint or open that asks for it has succeeded whatever happens here.
    fn take_reserve(&self, w: &mut WriterSide) {
        let Some(reserve) = w.reserve.as_mut() else { return };
        let store_bytes = self.state.read().space.file_bytes();
        let before = reserve.held();
        let _ = reserve.take(reserve::bytes_for(store_bytes));
        if reserve.held() != before {
            self.measure_other_files(w);
        }
    }

    fn checkpoint_once(&self, w: &mut WriterSide) -> Result<()> {
        self.end_passed_reader_hold(w)?;
        let dir = w.dir.clone().expect("file store");
        let old = w.meta.expect("file store has meta");
        // Commits acknowledged but not yet synced (BALANCED, EVENTUAL) are synced first: a
        // checkpoint (the one at close, too) takes far longer than a log sync, and the group
        // commit's promise must not wait for it. Found by `pcore crash --power`: a close whose
        // checkpoint was cut lost commits acknowledged a second and more before the cut.
        if w.written_epoch > self.durable_epoch.load(Ordering::Acquire) {
            self.sync_log(w)?;
        }
        let generation = old.generation + 1;
        let started = Instant::now();
        // The new generation's log is created before the piece, so that the directory sync
        // after the piece's rename makes both names durable: one sync, not two. Until the meta
        // names the generation it is a stray, removed by the next writable open.
        let log_path = dir.join(recovery::log_name(generation));
        let salt = Salt::new(super::meta::FORMAT_VERSION, generation);
        let fresh = LogWriter::open(&log_path, 0, 0, salt)?;
        let (chain, epoch) = {
            // Mutations wait while the committed state is flushed and written; readers go on.
            let c = self.state.upgradable_read();
            at_checkpoint_step(CheckpointStep::BeforeFlush);
            if let Err(e) = c.space.flush_dirty().and_then(|()| c.space.sync_growth(&dir, true)) {
                // Not retried: the pages a failed sync dropped would not be written again.
                return Err(self.poison(w, format!("a checkpoint's sync of the class files failed: {e}")));
            }
            w.checkpoint_time.2 += started.elapsed();
            let changed = c.changed_handles();
            let frees = c.waiting_frees(self.reader_floor.load(Ordering::Acquire));
            let source = checkpoint::PieceSource {
                table: &c.table,
                roots: &c.committed_roots,
                epoch: c.epoch,
                changed: &changed,
                chain: &w.chain,
                frees: &frees,
            };
            (checkpoint::write(&dir, generation, &source, &mut w.checkpoint_buffer)?, c.epoch)
        };
        checkpoint_crash_point()?;
        at_checkpoint_step(CheckpointStep::BeforeMetaSwitch);
        let meta = Meta {
            sequence: old.sequence + 1,
            generation,
            has_checkpoint: true,
            checkpoint_epoch: epoch,
            log_synced_bytes: 0,
            format: super::meta::FORMAT_VERSION,
            ..old
        };
        match meta.store_unless_unwritable(&dir) {
            Ok(None) => {}
            // Nothing written (the meta could not be opened: no descriptor left, say, or a full
            // disk: `NoSpace` then, outsider15 F3): the store goes on in the old generation,
            // whose meta slot is untouched, and the new generation's files are strays the next
            // open removes (review11).
            Ok(Some(why)) => {
                return Err(Error::io("switching the meta to the checkpoint (no checkpoint taken): write meta", why));
            }
            // The slot may or may not hold the new meta now, and a crash would then open the
            // new generation without the commits this process would go on logging in the old.
            Err(e) => return Err(self.poison(w, format!("switching the meta to the checkpoint failed: {e}"))),
        }
        w.meta = Some(meta);
        w.log = Some(self.reuse_log(w, fresh, &log_path, salt)?);
        self.durable_epoch.store(epoch, Ordering::Release);
        w.written_epoch = epoch;
        w.last_sync = Instant::now();
        w.meta_refreshed = w.last_sync;
        w.sole_copies_freed = false;
        let unneeded = w.chain.first_generation(old.generation)..chain.first_generation(generation);
        w.chain = chain;
        recovery::remove_generation(&dir, old.generation, unneeded);
        w.checkpoint_time.0 += 1;
        w.checkpoint_time.1 += started.elapsed();
        let mut c = self.state.write();
        // A reader process that registered before the meta switch may read the generation
        // before it, which names the blocks nodes moved from at rest (looked at after the
        // switch: one that registers later reads this checkpoint).
        let moved_read = !c.moved_at_rest.is_empty() && !self.no_reader_process(w, &c);
        c.checkpointed(epoch, self.reuse_limit(), moved_read)?;
        drop(c);
        self.give_back_tail(w, |s| s.truncate_free_tails(0))?;
        self.measure_other_files(w);
        Ok(())
    }

    /// What the writer knows of the directory's size, and the live bytes (see `footprint`).
    fn footprint(&self, w: &WriterSide, c: &Core) -> footprint::Estimate {
        let mut estimate = self.commit_footprint(w, c);
        estimate.live = c.live_estimate();
        estimate
    }

    /// As `footprint`, for a commit's two questions only (`over_limit`, `wants_checkpoint`):
    /// the live bytes, a loop over the classes, are counted only for a directory that may be
    /// past the trigger (`Estimate::may_be_over`); 0 otherwise, which both answer as the
    /// true count would (no).
    fn commit_footprint(&self, w: &WriterSide, c: &Core) -> footprint::Estimate {
        let mut estimate = footprint::Estimate {
            class_files: c.space.file_bytes(),
            log_file: w.log.as_ref().map_or(0, LogWriter::file_len),
            other_files: w.other_files,
            live: 0,
        };
        if estimate.may_be_over() {
            estimate.live = c.live_estimate();
        }
        estimate
    }

    /// Measures the files a commit does not track (checkpoint pieces, meta, reader table),
    /// and lets the log grow ahead of small commits as far as the space it may keep: one
    /// rule, `log_space_kept`, for what a checkpoint keeps and what small commits make.
    fn measure_other_files(&self, w: &mut WriterSide) {
        let Some(dir) = &w.dir else { return };
        let (all, _, logs) = recovery::store_file_bytes(dir);
        let class_files = self.state.read().space.file_bytes();
        w.other_files = all.saturating_sub(class_files + logs);
        let kept = self.log_space_kept(w);
        if let Some(log) = w.log.as_mut() {
            log.set_grow_limit(kept);
        }
    }

    /// Cuts the free tails of the class files (or punches their free pages), when that is
    /// safe: right after a checkpoint (or a writer's open with an empty log) and with no
    /// reader process registered (see `compact.rs`). A reader table that cannot be read
    /// counts as a reader.
    /// Returns the bytes given back (0 when it was not safe).
    pub(super) fn give_back_tail(&self, w: &WriterSide, cut: impl FnOnce(&mut Space) -> Result<u64>) -> Result<u64> {
        if self.options.read_only {
            return Ok(0);
        }
        let mut c = self.state.write();
        if !self.no_reader_process(w, &c) {
            return Ok(0);
        }
        cut(&mut c.space)
    }

    /// No reader process is registered, nor are blocks held for one (which reads the blocks of
    /// an older checkpoint through its own mapping). A table that cannot be read counts as one.
    fn no_reader_process(&self, w: &WriterSide, c: &Core) -> bool {
        let readers_alive = w.readers.as_ref().is_some_and(|t| !matches!(t.oldest_reader(), Ok(None)));
        !readers_alive && !c.held_for_readers()
    }

    /// The new generation's log once the meta names it: the old log's file, renamed over the
    /// `fresh` empty one and written over from offset 0 (docs/LOG.md, "Reusing log space"), or
    /// `fresh` when the rename fails. A rename whose directory sync fails poisons the store:
    /// frames written under a name that may not survive a power cut would be lost.
    fn reuse_log(&self, w: &mut WriterSide, fresh: LogWriter, log_path: &Path, salt: Salt) -> Result<LogWriter> {
        let dir = w.dir.clone().expect("file store");
        let Some(mut old) = w.log.take() else { return Ok(fresh) };
        at_checkpoint_step(CheckpointStep::BeforeLogReuse);
        if old.reuse_as(log_path, salt, self.log_space_kept(w)).is_err() {
            return Ok(fresh);
        }
        drop(fresh);
        if let Err(e) = crate::os::sync_dir(&dir) {
            let e = Error::io("sync the store directory after reusing the log", e);
            return Err(self.poison(w, e.to_string()));
        }
        at_checkpoint_step(CheckpointStep::AfterLogReuse);
        Ok(old)
    }

    /// How much of an old log a checkpoint keeps to write over, and how far small commits
    /// grow the log with zeros ahead of them: enough for the commits until the next
    /// checkpoint, but never more than a quarter of the class files (at least 1 MiB), so a
    /// small store is not held at the size of its busiest moment.
    fn log_space_kept(&self, w: &WriterSide) -> u64 {
        let c = self.state.read();
        let class_files = c.space.file_bytes();
        let room = footprint::log_room(&self.footprint(w, &c));
        self.options.checkpoint_log_bytes.min((class_files / 4).max(LOG_SPACE_KEPT_MIN)).min(room)
    }

    /// Gives the log's space kept for reuse back (a closing or compacted store has no
    /// commit coming that would write over it).
    pub(super) fn give_back_log_space(&self) -> Result<()> {
        let mut w = self.writer.lock();
        match w.log.as_mut() {
            Some(log) => log.give_back_unused(),
            None => Ok(()),
        }
    }

    fn close(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        self.flusher_stop.stop();
        let result = if self.in_memory || self.options.read_only || w.poisoned.is_some() || self.checkpoint_current(&w)
        {
            Ok(())
        } else {
            self.checkpoint_locked(&mut w)
        };
        if let Some(log) = w.log.as_mut().filter(|_| result.is_ok() && !self.options.read_only) {
            let _ = log.give_back_unused(); // only space: a failure here loses nothing
        }
        w.log = None;
        w._lock = None;
        w.readers = None;
        w.reader_slot = None;
        drop(w);
        self.attachments.lock().clear();
        // A closed store keeps no memory, mapping or file: references to it may live on long
        // after the close (a C host thread's handle cache holds one until its next call).
        let old = std::mem::replace(&mut *self.state.write(), recovery::closed_core());
        drop(old);
        result
    }

    /// Moves nodes from the tails of the class files toward their fronts at rest, as a
    /// commit's relocation does but recorded by a checkpoint, not a commit: the host sees no
    /// new epoch (its retirements and the grace of its read pointers count its commits). Only
    /// when no pointer `read_addr` handed out can still be in use (every one taken at least
    /// two commits ago: see its contract), no snapshot is open and no reader process
    /// registered (both read an older state's blocks). The old blocks are held until the
    /// checkpoint that records the moves is on disk (a crash before it reopens the last one,
    /// which names them). At most `CLOSE_COMPACT_BYTES` a rest, a few MiB per hold of the
    /// state lock.
    fn relocate_at_rest(&self, w: &mut WriterSide) -> Result<()> {
        // Per hold of the state lock (a host read waits for one): 64 k table slots looked at,
        // 4 MiB moved; one pass over the table a rest.
        let per_lock = super::compact::Budget { scan: 1 << 16, bytes: 4 << 20, tight: true };
        let (mut moved_bytes, mut scanned) = (0, 0);
        while moved_bytes < super::CLOSE_COMPACT_BYTES && self.checkpoint_current(w) {
            let mut c = self.state.write();
            let pointer = self.pointer_epoch.load(Ordering::Relaxed);
            let pointers_expired = pointer == 0 || pointer - 1 + 2 <= c.epoch;
            let movable = pointers_expired && !self.has_snapshots() && self.no_reader_process(w, &c);
            if !movable || scanned >= c.table.handle_count() || !c.wants_relocation(true) {
                break;
            }
            let moved = c.relocate_at_rest(per_lock);
            moved_bytes += moved.bytes;
            // A pass that moved nothing counts as a whole scan, budget hit or not: a node
            // larger than the budget (classes go to 8 MiB) stops every pass before it moves
            // anything, and the rest step looked again forever with the writer held.
            if !moved.budget_hit || moved.bytes == 0 {
                scanned += per_lock.scan;
            }
        }
        if moved_bytes == 0 {
            return Ok(());
        }
        self.checkpoint_locked(w)
    }

    /// Gives back the disk space of the free blocks' whole pages (`Space::punch_free_pages`)
    /// once the last checkpoint holds every commit. Only then: recovery replays the log over
    /// the blocks as the checkpoint left them, and a frame that edits a block (a delta) over
    /// bytes a punch turned to zeros would rebuild garbage. Blocks freed since were free in
    /// that checkpoint too, and a block handed out later is allocated again first and written
    /// whole. The rule that decides when a tail may be cut decides this too (no reader
    /// process, which reads free blocks of an older checkpoint through its own mapping).
    ///
    /// A punch is a system call per run of free pages, made with the state locked (no block
    /// may be handed out meanwhile): at most `PUNCHES_PER_LOCK` of them at a time, so a host
    /// read that comes meanwhile waits for a few of them, not for the whole file.
    fn punch_free_pages(&self, w: &WriterSide) -> Result<()> {
        const PUNCHES_PER_LOCK: usize = 1024;
        // No commit comes meanwhile (the writer is held): the log stays empty throughout.
        while self.checkpoint_current(w) && self.give_back_tail(w, |s| s.punch_free_pages(PUNCHES_PER_LOCK))? > 0 {}
        Ok(())
    }

    /// True when the last checkpoint holds every commit (the log is empty): a checkpoint now
    /// would write the same table again.
    fn checkpoint_current(&self, w: &WriterSide) -> bool {
        let (Some(meta), Some(log)) = (w.meta, &w.log) else { return false };
        log.len() == 0 && meta.checkpoint_epoch == self.state.read().epoch
    }

    /// Stops the store after a failure that leaves what is on disk unsure (a failed sync, a
    /// log append that could not be undone). The call that met the failure answers the
    /// returned `Poisoned` too, not the I/O error: "nothing committed" would be a promise no
    /// one can keep (after a failed `fdatasync` the frame may be on disk or not; a reopen
    /// tells which).
    fn poison(&self, w: &mut WriterSide, why: String) -> Error {
        let why = format!("{why}; what the failing call wrote may or may not be on disk");
        if IN_BACKGROUND.with(std::cell::Cell::get) {
            self.poison_unreported.store(true, Ordering::Release);
        }
        w.poisoned = Some(why.clone());
        *self.poisoned_why.lock() = why.clone();
        self.poisoned.store(true, Ordering::Release);
        Error::Poisoned(why)
    }

    /// Writes a commit's frame after the log's last. True when it is synced too: a STRICT
    /// commit's, in the write's own system call where that does what a sync would
    /// (`LogWriter::append_synced`).
    fn write_frame(&self, w: &mut WriterSide, frame: &[&[u8]]) -> Result<bool> {
        let log = w.log.as_mut().expect("a writable file store has a log");
        let in_one_call =
            if self.options.durability == Durability::Strict { log.append_synced(frame) } else { Ok(false) };
        match in_one_call {
            Ok(true) => Ok(true),
            Err(e) => Err(self.poison(w, format!("writing and syncing the commit's frame failed: {e}"))),
            Ok(false) => match log.append(frame) {
                Ok(()) => Ok(false),
                Err((err, true)) => Err(err),
                Err((err, false)) => Err(self.poison(w, format!("a failed log append could not be cut back: {err}"))),
            },
        }
    }

    fn sync_log(&self, w: &mut WriterSide) -> Result<()> {
        let log = w.log.as_mut().expect("file store has a log");
        if let Err(e) = log.sync() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good sync can be trusted, so stop here (fail-stop, as PostgreSQL does).
            return Err(self.poison(w, format!("log sync failed: {e}")));
        }
        self.log_synced(w)
    }

    /// What follows a sync of the log: its commits are durable.
    fn log_synced(&self, w: &mut WriterSide) -> Result<()> {
        self.durable_epoch.store(w.written_epoch, Ordering::Release);
        // One clock read for both: a commit's sync is the moment either one records.
        w.last_sync = Instant::now();
        self.record_synced_log(w, w.last_sync)
    }

    /// Records in the meta file how much of the log is now synced, if the last record is
    /// older than `meta_refresh_ms`, or a commit since freed the only copy of a version.
    /// That block is reused from the next commit on, and then no commit before the one that
    /// freed it can be rebuilt: a log cut below that commit must be refused (`PCORE_CORRUPT`),
    /// not taken for a torn tail, and the record is what tells the two apart. Best effort
    /// when the slot cannot be written: the commits are durable already, and the other
    /// slot's record is lower and still true. A write whose sync failed stops the store
    /// (outsider11 G4), as every failed sync does.
    fn record_synced_log(&self, w: &mut WriterSide, now: Instant) -> Result<()> {
        let (Some(dir), Some(old), Some(log)) = (&w.dir, w.meta, &w.log) else { return Ok(()) };
        if old.format < super::meta::FORMAT_VERSION {
            return Ok(()); // the open's checkpoint moves the store to this format first
        }
        let never = self.options.meta_refresh_ms == u32::MAX;
        let due = (w.sole_copies_freed && !never)
            || now.saturating_duration_since(w.meta_refreshed)
                >= Duration::from_millis(u64::from(self.options.meta_refresh_ms));
        if !due || log.len() <= old.log_synced_bytes {
            return Ok(());
        }
        let meta = Meta { sequence: old.sequence + 1, log_synced_bytes: log.len(), ..old };
        match meta.store_unless_unwritable(dir) {
            Ok(None) => {
                w.meta = Some(meta);
                w.meta_refreshed = now;
                w.sole_copies_freed = false;
                Ok(())
            }
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(self.poison(w, format!("recording the synced log in the meta failed: {e}"))),
        }
    }
}

/// Moments of a checkpoint at which tests look at the files, as a kill there would leave them.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointStep {
    /// The new generation's empty log exists; the class files are about to be flushed.
    BeforeFlush,
    /// The piece is written and synced; the meta still names the old generation.
    BeforeMetaSwitch,
    /// The meta names the new generation, whose log is the empty file.
    BeforeLogReuse,
    /// The old log is the new generation's (renamed, directory synced), no frame written yet.
    AfterLogReuse,
}

/// What a test runs at each `CheckpointStep`.
#[cfg(test)]
pub(crate) type CheckpointHook = Box<dyn FnMut(CheckpointStep)>;

#[cfg(test)]
thread_local! {
    /// Called at each `CheckpointStep` of a checkpoint on this thread.
    pub(crate) static CHECKPOINT_HOOK: std::cell::RefCell<Option<CheckpointHook>> = std::cell::RefCell::new(None);
}

fn at_checkpoint_step(_step: CheckpointStep) {
    #[cfg(test)]
    CHECKPOINT_HOOK.with(|h| {
        if let Some(f) = h.borrow_mut().as_mut() {
            f(_step)
        }
    });
}

#[cfg(test)]
thread_local! {
    /// Tests stop checkpoints on this thread after the piece is written and before the meta
    /// names it, as a crash there would.
    pub(crate) static CHECKPOINT_CRASH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn checkpoint_crash_point() -> Result<()> {
    #[cfg(test)]
    if CHECKPOINT_CRASH.with(|c| c.get()) {
        return Err(Error::io("checkpoint stopped before the meta switch", std::io::Error::other("test")));
    }
    Ok(())
}

/// New nodes adding up to this many bytes in one STRICT commit are synced in their blocks
/// rather than logged (issue 17 item 3): one write of each page, as LMDB's, instead of the
/// log's and then the checkpoint's; below it, the extra sync of the class files costs more
/// than the log write it saves.
const BULK_UNLOGGED_MIN_BYTES: usize = 1 << 20;

/// In EVENTUAL mode, sync once this many freed bytes wait for a durable commit.
const EVENTUAL_SYNC_FOR_FREED_BYTES: u64 = 1 << 20;
/// The log space a checkpoint keeps for reuse however small the store (see `log_space_kept`).
const LOG_SPACE_KEPT_MIN: u64 = 1 << 20;

/// Tells the store's background thread (`spawn_background`) to stop. std's lock and condition variable, not
/// parking_lot's: parking_lot parks waiting threads in one table shared by every lock in the
/// process, which `fork` copies as it is, threads queued in it included (see
/// `in_forked_child`).
#[derive(Default)]
pub(super) struct FlusherStop {
    stopped: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    /// A background thread waits on `wake`: without one, a close makes no
    /// wake-up call (a `futex` syscall whether anyone waits or not).
    watched: AtomicBool,
}

impl FlusherStop {
    pub(super) fn stop(&self) {
        if !self.watched.load(Ordering::Acquire) {
            return;
        }
        *self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Waits up to `interval`; true once `stop` was called.
    fn wait(&self, interval: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let waited = self.wake.wait_timeout_while(stopped, interval, |stopped| !*stopped);
        let (stopped, _) = waited.unwrap_or_else(std::sync::PoisonError::into_inner);
        *stopped
    }
}

/// Starts the store's background thread: with `balanced` it syncs the log when a commit is
/// not yet on disk, every `balanced_interval_ms`; with `rests` it checkpoints a store at rest
/// (`Store::rest_if_idle`), looking a few times per `idle_checkpoint_ms`.
fn spawn_background(weak: Weak<Shared>, stop: Arc<FlusherStop>, balanced: bool, rests: bool) {
    let Some(options) = weak.upgrade().map(|s| s.options.clone()) else { return };
    let idle = Duration::from_millis(u64::from(options.idle_checkpoint_ms));
    let tick = if balanced {
        Duration::from_millis(u64::from(options.balanced_interval_ms.max(1)))
    } else {
        (idle / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
    };
    stop.watched.store(true, Ordering::Release);
    let watched = stop.clone();
    // The thread holds only a weak reference while it sleeps, so dropping the last `Store`
    // is never delayed by it.
    let spawned = std::thread::Builder::new().name("pcore-store".into()).spawn(move || loop {
        IN_BACKGROUND.with(|b| b.set(true));
        if stop.wait(tick) {
            return;
        }
        let Some(shared) = weak.upgrade() else { return };
        let store = Store { shared, at: None };
        if balanced {
            store.sync_if_behind();
        }
        if rests {
            store.rest_if_idle(idle);
        }
    });
    // Without the thread (the system out of threads), BALANCED commits sync by age and a
    // store at rest keeps its files until its next checkpoint: nothing is lost.
    if spawned.is_err() {
        watched.watched.store(false, Ordering::Release);
    }
}

/// Idle periods a failed rest step waits before it looks again (without a commit).
const REST_RETRY_IDLE_PERIODS: u32 = 16;

/// `WriterSide::rested_epoch` of a store whose rest step has yet to look at it.
const NOT_RESTED: u64 = u64::MAX;

/// A number of this thread's, never 0, unique in the process.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TOKEN.with(|t| *t)
}

thread_local! {
    /// Set on a store's background thread (`spawn_background`): a failure it meets is told
    /// to the host by its next call, the close included.
    static IN_BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True in a process forked from one that had opened a store. There a store starts no
/// background thread: a second thread would make the store's locks contended, and a
/// contended parking_lot lock or condition variable waits in the process-wide parking table,
/// which the fork copied while the parent's threads may have been queued in it or holding
/// one of its buckets (an outside tester's forked child hung or crashed in `close` about once
/// in a few hundred forks). BALANCED commits sync by age instead (see `Durability::Balanced`),
/// and a store at rest is not checkpointed.
fn in_forked_child() -> bool {
    static FIRST_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *FIRST_PID.get_or_init(std::process::id) != std::process::id()
}

impl Drop for Shared {
    /// A store dropped without `close` is closed here, best effort: its committed state is
    /// checkpointed (nothing committed depends on it: the log already holds it).
    fn drop(&mut self) {
        let _ = self.close();
    }
}
