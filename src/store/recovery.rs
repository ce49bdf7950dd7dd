//! Opening a store: create it, or recover it.
//!
//! Recovery: newest valid meta slot -> its checkpoint -> replay the committed log frames after
//! it (a torn tail is cut), in order, writing each logged version into its block (whole, or
//! rebuilt from the version before it: docs/LOG.md) -> rebuild the allocator from the table. The cost is O(table + log), never a scan of the data
//! files. A writer then checkpoints, so the replayed log is not replayed again.

use super::api::StoreOptions;
use super::checkpoint;
use super::codec::crc;
use super::core::Core;
use super::meta::{Meta, MetaSlot, META_CREATING_FILE, META_FILE};
use super::seal::{self, Seals};
use super::table::{ObjectTable, Origin, Slot, State};
use super::wal::{self, LogWriter, Op, Payload, PutOp};
use crate::alloc::{Backing, Holes, Loc, SizeClasses, Space};
use crate::error::{Error, Result};
use crate::os::{DirLock, LockError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub(crate) struct Opened {
    pub core: Core,
    pub log: Option<LogWriter>,
    pub meta: Meta,
    pub lock: Option<DirLock>,
    pub needs_checkpoint: bool,
    /// What recovery did beyond reading: replayed frames, a torn tail cut.
    pub note: Option<String>,
    /// The checkpoint pieces the table was read from (empty: a whole checkpoint, or none).
    pub chain: checkpoint::Chain,
    /// Blocks freed by commits (epoch, block) that a reader process of an older commit may
    /// still read: the checkpoint's waiting frees and those of the log's frames after it.
    /// `None` when the checkpoint is of a format that does not record them.
    pub frees: Option<Vec<(u64, Loc)>>,
    /// Versions the replay rebuilt over a base that did not match: damaged nodes, or (in a
    /// read-only open beside a writer) a base the writer reused meanwhile.
    pub damaged: u64,
}

/// The first format whose checkpoints are chains of pieces.
const CHAIN_FORMAT: u32 = 5;

pub(crate) fn log_name(generation: u64) -> String {
    format!("wal-{generation}.log")
}

/// Removes the log of a generation the meta file no longer names, and the checkpoint pieces
/// of generations `pieces` that its chain no longer needs (best effort: a leftover file is
/// only wasted space, removed again at the next open).
pub(crate) fn remove_generation(dir: &Path, generation: u64, pieces: std::ops::Range<u64>) {
    let _ = std::fs::remove_file(dir.join(log_name(generation)));
    for g in pieces {
        let _ = std::fs::remove_file(dir.join(checkpoint::file_name(g)));
    }
}

pub(crate) fn new_memory_core(options: &StoreOptions) -> Result<Core> {
    let classes = SizeClasses::new(options.min_class_bytes, options.max_class_bytes)?;
    let mut space = Space::open(classes, &Backing::Memory, Holes::Fill)?;
    space.rebuild(&vec![Vec::new(); space.classes().count()])?;
    Ok(Core::new(space, ObjectTable::new(), BTreeMap::new(), (0, 0), options.growth_policy))
}

/// The state a closed store keeps: no node, no class, no file or mapping. Every call checks
/// the closed flag under the state lock before it looks (`Store::read_state`, `mutate`), so
/// nothing reads or allocates in it; it costs nothing to make, unlike an empty store's.
pub(crate) fn closed_core() -> Core {
    Core::new(Space::none(), ObjectTable::new(), BTreeMap::new(), (0, 0), super::GrowthPolicy::StableId)
}

pub(crate) fn open_dir(dir: &Path, options: &StoreOptions) -> Result<Opened> {
    open_dir_reading(dir, options, &mut |_| {})
}

/// [`open_dir`], telling `read_to` the epoch the open recovers to once the log is read and
/// the groups it touches verified, before the replay: a read-only open registers that epoch
/// in the reader table then (see `readers`), so the writer keeps what that commit reads
/// while the replay, the long part of an open beside a busy writer, goes on.
pub(crate) fn open_dir_reading(dir: &Path, options: &StoreOptions, read_to: &mut dyn FnMut(u64)) -> Result<Opened> {
    let writable = !options.read_only;
    let may_create = writable && options.create;
    if may_create {
        create_dir_durably(dir)?;
    } else if !dir.is_dir() {
        return Err(Error::NotFound(format!("no pcore store in {}: no such directory", dir.display())));
    }
    let lock = if writable {
        match DirLock::acquire(dir) {
            Ok(l) => Some(l),
            Err(LockError::Held) => {
                return Err(Error::Busy(format!("{} is open for writing elsewhere", dir.display())))
            }
            Err(LockError::Io(e)) => return Err(Error::io(format!("lock {}", dir.display()), e)),
        }
    } else {
        None
    };
    // Looked at under the lock: another writer may have been creating the store meanwhile.
    let meta = match survey(dir)? {
        Found::Store(slots) => Meta::newest(&slots)?,
        Found::Nothing { debris } if may_create => create(dir, options, &debris)?,
        Found::Nothing { .. } => return Err(Error::NotFound(format!("no pcore store in {}", dir.display()))),
        Found::FilesWithoutMeta(files) => {
            return Err(Error::corrupt(
                META_FILE,
                0,
                format!(
                    "missing: {} holds store files ({}) but no written meta file, which names the \
                     checkpoint and log to recover from; nothing was changed (restore the meta file, or move the \
                     files away to start a new store)",
                    dir.display(),
                    files.join(", ")
                ),
            ))
        }
    };
    let classes = SizeClasses::new(meta.min_class_bytes, meta.max_class_bytes).map_err(|e| {
        Error::corrupt(META_FILE, 40, format!("size classes recorded in the meta file are invalid: {e}"))
    })?;
    let (mut snapshot_slots, roots, checkpoint_epoch, chain, mut seals, frees) = if meta.has_checkpoint {
        let snap = if meta.format >= CHAIN_FORMAT {
            checkpoint::read(dir, meta.generation, &classes)?
        } else {
            checkpoint::whole::read(dir, meta.generation, &classes)?
        };
        if snap.epoch != meta.checkpoint_epoch {
            return Err(Error::corrupt(
                checkpoint::file_name(meta.generation),
                8,
                format!("epoch {} but the meta file says {}", snap.epoch, meta.checkpoint_epoch),
            ));
        }
        (snap.slots, snap.roots, snap.epoch, snap.chain, snap.seals, snap.frees)
    } else {
        let empty = (vec![Slot::EMPTY], BTreeMap::new(), meta.checkpoint_epoch, checkpoint::Chain::default());
        (empty.0, empty.1, empty.2, empty.3, Seals::default(), Some(Vec::new()))
    };
    let log_file = log_name(meta.generation);
    let log_path = dir.join(&log_file);
    if !log_path.exists() {
        return Err(Error::corrupt(&log_file, 0, "the log file the meta file names is missing"));
    }
    let contents = wal::read_log(&log_path, &log_file, checkpoint_epoch + 1, meta.format, meta.generation)?;
    if contents.valid_bytes < meta.log_synced_bytes {
        // Below this the log was durable: what is missing or damaged there is not a commit cut
        // short by a crash but lost commits, whose blocks later commits may have reused.
        return Err(Error::corrupt(
            &log_file,
            contents.valid_bytes,
            format!(
                "the log's commits end at offset {} (the file has {} bytes), but the meta file records {} \
                 bytes of it as synced: the log was cut or damaged below what was durable",
                contents.valid_bytes,
                std::fs::metadata(&log_path).map_or(0, |m| m.len()),
                meta.log_synced_bytes
            ),
        ));
    }
    let backing = if writable { Backing::Shared(dir.to_path_buf()) } else { Backing::Private(dir.to_path_buf()) };
    // Replay writes the blocks the log names through the mapping: their holes are filled
    // first. With nothing to replay every write comes through an allocation, which fills a
    // marked block's pages itself.
    let holes = if contents.frames.is_empty() { Holes::Mark } else { Holes::Fill };
    let space = Space::open(classes, &backing, holes)?;
    let suspect = verify_touched_groups(&mut snapshot_slots, &mut seals, &space, &contents.frames);
    read_to(contents.frames.last().map_or(checkpoint_epoch, |f| f.epoch));
    #[cfg(test)]
    BEFORE_REPLAY.with(|h| h.borrow_mut().as_mut().map(|f| f()));
    let mut replay = Replay::new(snapshot_slots, roots, space, &contents.frames, &log_file);
    replay.seals = seals;
    let mut epoch = checkpoint_epoch;
    for (fi, frame) in contents.frames.iter().enumerate() {
        for op in &frame.ops {
            replay.apply(op, fi, frame)?;
        }
        epoch = frame.epoch;
    }
    let Replay { slots, roots, mut space, freed, seals, freed_blocks, damaged_versions, .. } = replay;
    let frees = frees.map(|mut f| {
        f.extend(freed_blocks);
        f
    });
    space.rebuild(&blocks_in_use(&slots, space.classes())?)?;
    let mut table = ObjectTable::new();
    table.slots = slots;
    table.seals = seals;
    let mut core = Core::new(space, table, roots, (epoch, checkpoint_epoch), options.growth_policy);
    core.hold_checkpointed = true;
    core.note_changed(&freed);
    core.note_changed(&suspect);
    let salt = wal::Salt::new(meta.format, meta.generation);
    let log = if writable {
        Some(LogWriter::open(&log_path, contents.valid_bytes, contents.torn_bytes, salt)?)
    } else {
        None
    };
    if writable {
        remove_stray_files(dir, meta.generation, chain.first_generation(meta.generation));
    }
    let note = recovery_note(&log_file, &contents, epoch, damaged_versions);
    // A store of an older format moves to this one at once: its log's frames are the old kind.
    let needs_checkpoint = writable && (!contents.frames.is_empty() || meta.format < super::meta::FORMAT_VERSION);
    Ok(Opened { core, log, meta, lock, needs_checkpoint, note, chain, frees, damaged: damaged_versions })
}

#[cfg(test)]
thread_local! {
    /// Called by an open on this thread once it has read the log, before it replays it.
    pub(crate) static BEFORE_REPLAY: std::cell::RefCell<Option<Box<dyn FnMut()>>> = std::cell::RefCell::new(None);
}

fn op_handle(op: &Op) -> Option<u64> {
    match op {
        Op::Put(p) => Some(p.handle),
        Op::Free { handle, .. } => Some(*handle),
        _ => None,
    }
}

/// Verifies, before replay, each group of the checkpoint's table that the log changes: its
/// checkpointed versions are all still in their blocks (a commit holds those it replaces
/// until the next checkpoint), so the CRCs of the versions replay replaces, a delta's base
/// among them, become known, and the next checkpoint can make the group's check again from
/// known CRCs. A group that fails leaves its members suspect (`seal.rs`): returned, for the
/// next checkpoint to write.
fn verify_touched_groups(slots: &mut [Slot], seals: &mut Seals, space: &Space, frames: &[wal::Frame]) -> Vec<u64> {
    let mut suspect = Vec::new();
    for h in frames.iter().flat_map(|f| &f.ops).filter_map(op_handle) {
        if !seals.group_unverified(h) {
            continue;
        }
        let v = seal::verify(seals, h, |m| {
            let s = slots.get(m as usize).filter(|s| s.state == State::Live)?;
            if !seals.is_unknown(m) {
                return Some(s.crc);
            }
            // A block past the file's end fails the check: its group becomes suspect.
            Some(if space.covers(s.loc()) { crc(space.read(s.loc(), s.len as usize)) } else { !s.crc })
        });
        if v.ok {
            for &(m, c) in &v.members[..v.count] {
                slots[m as usize].crc = c;
            }
        } else {
            suspect.extend(Seals::members(h).filter(|&m| seals.is_unknown(m)));
        }
        seals.verified(h, v.ok);
    }
    suspect
}

/// Says what recovery found in the log: commits replayed since the checkpoint, a torn tail
/// (a commit cut short), which a writable open cuts off, and versions rebuilt over damaged
/// bytes. An earlier generation's frames after the end (reused log space) are not a commit
/// and go unmentioned.
fn recovery_note(log_file: &str, contents: &wal::LogContents, epoch: u64, damaged: u64) -> Option<String> {
    let torn = contents.torn_bytes;
    if contents.frames.is_empty() && torn == 0 {
        return None;
    }
    let mut note = format!("recovered to epoch {epoch}: {} commits replayed from {log_file}", contents.frames.len());
    if torn > 0 {
        note += &format!("; {torn} bytes of an incomplete commit at offset {} dropped", contents.valid_bytes);
    }
    if damaged > 0 {
        note += &format!(
            "; {damaged} node version(s) rebuilt over damaged bytes do not match their checksums \
             (`pcore check` names the nodes)"
        );
    }
    Some(note)
}

/// Creates `dir` and any missing parents, each made durable by a sync of the directory that
/// holds it: a new store's directory must survive a power cut as its files do.
fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io(format!("create {}", dir.display()), e))
        }
        _ => {}
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::os::sync_dir(parent).map_err(|e| Error::io(format!("sync {}", parent.display()), e))
}

/// What a store directory holds, as far as opening it is concerned.
enum Found {
    /// A meta file with at least one slot ever written: a store (valid or damaged), and its
    /// slots as read.
    Store([MetaSlot; 2]),
    /// No store: an empty directory, or the debris of a creation that never finished (files
    /// that held no commit: an unwritten meta, an empty first log), which creation replaces.
    Nothing { debris: Vec<String> },
    /// Store files but no meta: never initialised over, never changed.
    FilesWithoutMeta(Vec<String>),
}

/// Files of ours in a store directory (a legacy `LOCK` file and the host's own files are not).
fn is_store_file(name: &str) -> bool {
    name == META_FILE
        || name == META_CREATING_FILE
        || (name.starts_with("wal-") && name.contains(".log"))
        || (name.starts_with("checkpoint-") && name.contains(".ckpt"))
        || (name.starts_with("class-") && name.contains(".seg"))
}

/// Bytes of the store's files in `dir`: all of them, the checkpoints, the logs.
pub(crate) fn store_file_bytes(dir: &Path) -> (u64, u64, u64) {
    let (mut all, mut checkpoints, mut logs) = (0, 0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata().map_or(0, |m| class_file_bytes_on_disk(&name, &m));
        if is_store_file(&name) || name == super::readers::READERS_FILE || name == super::reserve::RESERVE_FILE {
            all += len;
        }
        checkpoints += if name.starts_with("checkpoint-") { len } else { 0 };
        logs += if name.starts_with("wal-") { len } else { 0 };
    }
    (all, checkpoints, logs)
}

/// A file's length, but for a class file the bytes it takes on disk when fewer: the free
/// pages a store at rest punched take none (`Space::punch_free_pages`).
fn class_file_bytes_on_disk(name: &str, m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if name.starts_with("class-") {
        m.len().min(m.blocks() * 512)
    } else {
        m.len()
    }
}

fn survey(dir: &Path) -> Result<Found> {
    let io = |e| Error::io(format!("list {}", dir.display()), e);
    let mut ours = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name().to_string_lossy().into_owned();
        if is_store_file(&name) {
            ours.push(name);
        }
    }
    ours.sort();
    if ours.iter().any(|n| n == META_FILE) {
        let slots = Meta::load_slots(dir)?;
        if slots.iter().any(|s| s.valid.is_some() || s.damaged) {
            return Ok(Found::Store(slots));
        }
    }
    let first_log = log_name(1);
    let is_debris = |name: &String| {
        name == META_FILE
            || name == META_CREATING_FILE
            || (*name == first_log && std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == 0))
    };
    if ours.iter().all(is_debris) {
        Ok(Found::Nothing { debris: ours })
    } else {
        Ok(Found::FilesWithoutMeta(ours.into_iter().filter(|n| !is_debris(n)).collect()))
    }
}

/// A new store, created so that a crash at any step leaves either no store (only debris,
/// which the next open replaces) or a whole one: the empty first log is written and synced,
/// the meta written under a temporary name and synced, the directory synced, and only then
/// the meta renamed into place (and the directory synced again).
fn create(dir: &Path, options: &StoreOptions, debris: &[String]) -> Result<Meta> {
    SizeClasses::new(options.min_class_bytes, options.max_class_bytes)?;
    for name in debris {
        std::fs::remove_file(dir.join(name))
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| Error::io(format!("remove {name}, left by an interrupted creation"), e))?;
    }
    let meta = Meta {
        sequence: 1,
        generation: 1,
        has_checkpoint: false,
        checkpoint_epoch: 0,
        min_class_bytes: options.min_class_bytes,
        max_class_bytes: options.max_class_bytes,
        log_synced_bytes: 0,
        format: super::meta::FORMAT_VERSION,
    };
    let sync_dir = || crate::os::sync_dir(dir).map_err(|e| Error::io(format!("sync {}", dir.display()), e));
    crash_point(1)?;
    LogWriter::open(&dir.join(log_name(1)), 0, 0, wal::Salt::new(meta.format, 1))?.sync()?;
    crash_point(2)?;
    meta.store_creating(dir)?;
    crash_point(3)?;
    sync_dir()?;
    crash_point(4)?;
    std::fs::rename(dir.join(META_CREATING_FILE), dir.join(META_FILE))
        .map_err(|e| Error::io(format!("rename {META_CREATING_FILE} to {META_FILE}"), e))?;
    crash_point(5)?;
    sync_dir()?;
    Ok(meta)
}

#[cfg(test)]
thread_local! {
    /// Tests stop a creation on this thread before its step N, as a crash there would.
    pub(crate) static CREATION_CRASH_AT: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Steps of `create`, numbered so a test can stop it before each.
#[cfg(test)]
pub(crate) const CREATION_STEPS: u32 = 5;

fn crash_point(_step: u32) -> Result<()> {
    #[cfg(test)]
    if CREATION_CRASH_AT.with(|c| c.get()) == Some(_step) {
        return Err(Error::io(format!("creation stopped before step {_step}"), std::io::Error::other("test")));
    }
    Ok(())
}

/// The state a log replay builds, frame by frame, operation by operation.
struct Replay<'a> {
    slots: Vec<Slot>,
    roots: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    space: Space,
    log_file: &'a str,
    /// For each block that a payload too large to log lands in, the last frame that puts
    /// one there: replay must not write an older logged version over it.
    unlogged_at: HashMap<Loc, usize>,
    /// Logged versions kept in memory instead of their block, which a later unlogged payload
    /// owns (see `unlogged_at`): by handle, until the handle's next operation.
    parked: HashMap<u64, Vec<u8>>,
    /// A delta's rebuilt bytes, reused.
    scratch: Vec<u8>,
    /// Handles the log frees: the next checkpoint writes them (its puts are `Logged`).
    freed: Vec<u64>,
    /// The table's group checks: a replayed version's CRC is known.
    seals: Seals,
    /// Versions rebuilt over a damaged base: their bytes do not match their logged CRC.
    damaged_versions: u64,
    /// Blocks the log's commits freed (a node's old block when it moved, a freed node's),
    /// with the epoch of the commit that freed each.
    freed_blocks: Vec<(u64, Loc)>,
}

impl<'a> Replay<'a> {
    fn new(
        slots: Vec<Slot>,
        roots: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
        space: Space,
        frames: &[wal::Frame],
        log_file: &'a str,
    ) -> Replay<'a> {
        let mut unlogged_at = HashMap::new();
        for (fi, frame) in frames.iter().enumerate() {
            for op in &frame.ops {
                if let Op::Put(p @ PutOp { payload: Payload::Unlogged, .. }) = op {
                    unlogged_at.insert(Loc { class: p.class, block: p.block }, fi);
                }
            }
        }
        Replay {
            slots,
            roots,
            space,
            log_file,
            unlogged_at,
            parked: HashMap::new(),
            scratch: Vec::new(),
            freed: Vec::new(),
            seals: Seals::default(),
            freed_blocks: Vec::new(),
            damaged_versions: 0,
        }
    }

    fn apply(&mut self, op: &Op, frame_index: usize, frame: &wal::Frame) -> Result<()> {
        let log_file = self.log_file;
        let bad = |what: String| Error::corrupt(log_file, frame.body_at, what);
        if let Some(h) = op_handle(op) {
            // Known from here on, the put's CRC; or free. (A base damaged in its block, suspect
            // or not, shows as a rebuilt version that misses its logged CRC: see
            // `rebuild_from_base`.)
            self.seals.settle(h);
        }
        match op {
            Op::Put(p) => {
                self.check_put(p).map_err(bad)?;
                let before = self.slots[p.handle as usize];
                self.write_version(p, before, frame_index, frame)?;
                let moved = (before.class, before.block) != (p.class, p.block);
                if before.state == State::Live && moved {
                    self.freed_blocks.push((frame.epoch, before.loc()));
                }
                let origin = if p.payload == Payload::Unlogged { Origin::Synced } else { Origin::Logged };
                self.slots[p.handle as usize] = Slot {
                    block: p.block,
                    len: p.len,
                    crc: p.payload_crc,
                    tag: p.tag,
                    kind: p.kind,
                    class: p.class,
                    state: State::Live,
                    dirty: false,
                    freeing: false,
                    origin,
                };
            }
            Op::Free { handle, tag } => {
                let slot = self.slots.get_mut(*handle as usize).filter(|s| s.state == State::Live && s.tag == *tag);
                let Some(slot) = slot else {
                    return Err(bad(format!("free of handle {handle} tag {tag}, which is not live")));
                };
                slot.state = State::Free;
                self.freed_blocks.push((frame.epoch, slot.loc()));
                self.parked.remove(handle);
                self.freed.push(*handle);
            }
            Op::Root { name, id, meta } => {
                self.roots.insert(name.clone(), (*id, meta.clone()));
            }
            Op::RootRemove { name } => {
                self.roots.remove(name);
            }
        }
        Ok(())
    }

    /// Checks a PUT's fields, and grows the table to its handle.
    fn check_put(&mut self, p: &PutOp) -> std::result::Result<(), String> {
        let classes = self.space.classes();
        if p.handle == 0 || p.handle > crate::limits::HANDLE_MAX || p.kind == 0 {
            return Err(format!("put of handle {} kind {}", p.handle, p.kind));
        }
        if p.class as usize >= classes.count() || p.len > classes.bytes(p.class) {
            return Err(format!("put of {} bytes in class {}", p.len, p.class));
        }
        if p.tag == 0 {
            return Err(format!("put of handle {} with tag 0, which no id has", p.handle));
        }
        if self.slots.len() <= p.handle as usize {
            // The table grows to the handle: a damaged handle must not size the allocation.
            if p.handle - self.slots.len() as u64 >= crate::limits::LOG_HANDLE_GAP_MAX {
                return Err(format!("put of handle {} far beyond the table's {} handles", p.handle, self.slots.len()));
            }
            self.slots.resize(p.handle as usize + 1, Slot::EMPTY);
        }
        Ok(())
    }

    /// Writes the version a PUT logs into its block (or parks it), rebuilding a delta from
    /// the handle's version `before`.
    fn write_version(&mut self, p: &PutOp, before: Slot, frame_index: usize, frame: &wal::Frame) -> Result<()> {
        let body = frame.body.as_slice();
        // Where in the log a payload starting at `at` of the body lies, for the errors.
        let log_offset = |at: usize| frame.body_at + at as u64;
        let mut bytes = std::mem::take(&mut self.scratch);
        match p.payload {
            Payload::Unlogged => {
                self.parked.remove(&p.handle);
                self.scratch = bytes;
                return Ok(());
            }
            Payload::Whole { at } => {
                bytes.clear();
                bytes.extend_from_slice(&body[at..at + p.len as usize]);
            }
            Payload::Delta { at, len } => {
                let delta = &body[at..at + len];
                self.rebuild_from_base(p, before, (delta, log_offset(at)), super::delta::apply, &mut bytes)?
            }
            Payload::Script { at, len } => {
                let script = &body[at..at + len];
                self.rebuild_from_base(p, before, (script, log_offset(at)), super::script::apply, &mut bytes)?
            }
            Payload::Sparse { at, len } => {
                let zeros = wal::zeros(p.len as usize).expect("checked when the frame was read");
                bytes.clear();
                bytes.resize(p.len as usize, 0);
                super::delta::apply(zeros, &body[at..at + len], &mut bytes)
                    .map_err(|m| Error::corrupt(self.log_file, log_offset(at), format!("handle {}: {m}", p.handle)))?;
                if crc(&bytes) != p.payload_crc {
                    return Err(Error::corrupt(
                        self.log_file,
                        log_offset(at),
                        format!(
                            "handle {}: the version rebuilt from a sparse payload does not match its checksum",
                            p.handle
                        ),
                    ));
                }
            }
        }
        let loc = Loc { class: p.class, block: p.block };
        if self.unlogged_at.get(&loc).is_some_and(|&fi| fi > frame_index) {
            self.parked.insert(p.handle, bytes);
            return Ok(());
        }
        self.parked.remove(&p.handle);
        self.space.cover(loc)?;
        self.space.write(loc, &bytes);
        self.scratch = bytes;
        Ok(())
    }

    /// The version a delta or script PUT logs: its base (the handle's version before it,
    /// checked against its checksum) with the delta laid over it (or the script applied to
    /// it), checked against the PUT's checksum. `delta` comes with its offset in the log.
    fn rebuild_from_base(
        &mut self,
        p: &PutOp,
        before: Slot,
        (delta, log_offset): (&[u8], u64),
        apply: ApplyFn,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let bad = |what: String| Error::corrupt(self.log_file, log_offset, what);
        if before.state != State::Live || before.tag != p.tag {
            return Err(bad(format!("a delta of handle {} tag {}, which is not live", p.handle, p.tag)));
        }
        let base = match self.parked.get(&p.handle) {
            Some(b) => b.as_slice(),
            None if self.space.covers(before.loc()) => self.space.read(before.loc(), before.len as usize),
            None => {
                let (file, offset) = self.space.file_position(before.loc());
                return Err(Error::corrupt(
                    file,
                    offset,
                    format!("handle {}: the base of a logged delta lies past the file's end", p.handle),
                ));
            }
        };
        out.clear();
        out.resize(p.len as usize, 0);
        apply(base, delta, out).map_err(|m| bad(format!("handle {}: {m}", p.handle)))?;
        // A base damaged in its block (its CRC, when known, says so) gives a version that does
        // not match the logged CRC. That node is damaged, not the store: its version is kept
        // with the logged CRC, so `pcore check` and verified reads name it, and the open goes
        // on (it used to refuse the whole store, every acknowledged commit with it).
        if crc(out) != p.payload_crc {
            self.damaged_versions += 1;
        }
        Ok(())
    }
}

/// How a PUT's logged changes are laid over its base (`delta::apply`, `script::apply`).
type ApplyFn = fn(&[u8], &[u8], &mut [u8]) -> std::result::Result<(), String>;

/// The blocks of live nodes, per class; `Corrupt` if two nodes claim one block (found with
/// one bit per block, not a sort: open looks at every node).
fn blocks_in_use(slots: &[Slot], classes: &SizeClasses) -> Result<Vec<Vec<u32>>> {
    let mut used: Vec<Vec<u32>> = vec![Vec::new(); classes.count()];
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); classes.count()];
    for s in slots.iter().filter(|s| s.state == State::Live) {
        let (c, b) = (s.class as usize, s.block as usize);
        let bits = &mut seen[c];
        if bits.len() <= b / 64 {
            bits.resize((b / 64 + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (b % 64);
        if bits[b / 64] & bit != 0 {
            let bytes = classes.bytes(c as u8);
            return Err(Error::corrupt(
                format!("class-{c:02}-{bytes}.seg"),
                u64::from(s.block) * u64::from(bytes),
                format!("the object table gives block {} to two live nodes", s.block),
            ));
        }
        bits[b / 64] |= bit;
        used[c].push(s.block);
    }
    Ok(used)
}

/// Files of other generations (a checkpoint that crashed before its meta switch) and
/// temporaries: never needed again.
fn remove_stray_files(dir: &Path, generation: u64, first_piece: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut keep: Vec<String> = (first_piece..=generation).map(checkpoint::file_name).collect();
    keep.push(log_name(generation));
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("wal-") || name.starts_with("checkpoint-");
        if ours && !keep.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
