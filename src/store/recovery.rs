//! Opening a store: create it, or recover it.
//!
//! Recovery: newest valid meta slot -> its checkpoint -> replay the committed log frames after
//! it (a torn tail is cut) -> lay the logged payloads of live nodes over their blocks ->
//! rebuild the allocator from the table. The cost is O(table + log), never a scan of the data
//! files. A writer then checkpoints, so the replayed log is not replayed again.

use super::api::StoreOptions;
use super::checkpoint;
use super::core::Core;
use super::meta::{Meta, MetaSlot, META_CREATING_FILE, META_FILE};
use super::table::{ObjectTable, Slot, State};
use super::wal::{self, LogWriter, Op};
use crate::alloc::{Backing, SizeClasses, Space};
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
}

pub(crate) fn log_name(generation: u64) -> String {
    format!("wal-{generation}.log")
}

/// Removes the files of a generation the meta file no longer names (best effort: a leftover
/// file is only wasted space, removed again at the next open).
pub(crate) fn remove_generation(dir: &Path, generation: u64) {
    let _ = std::fs::remove_file(dir.join(log_name(generation)));
    let _ = std::fs::remove_file(dir.join(checkpoint::file_name(generation)));
}

pub(crate) fn new_memory_core(options: &StoreOptions) -> Result<Core> {
    let classes = SizeClasses::new(options.min_class_bytes, options.max_class_bytes)?;
    let mut space = Space::open(classes, &Backing::Memory)?;
    space.rebuild(&vec![Vec::new(); space.classes().count()])?;
    Ok(Core::new(space, ObjectTable::new(), BTreeMap::new(), 0, options.growth_policy))
}

pub(crate) fn open_dir(dir: &Path, options: &StoreOptions) -> Result<Opened> {
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
    let (mut snapshot_slots, mut roots, checkpoint_epoch) = if meta.has_checkpoint {
        let snap = checkpoint::read(dir, meta.generation, &classes)?;
        if snap.epoch != meta.checkpoint_epoch {
            return Err(Error::corrupt(
                checkpoint::file_name(meta.generation),
                8,
                format!("epoch {} but the meta file says {}", snap.epoch, meta.checkpoint_epoch),
            ));
        }
        (snap.slots, snap.roots, snap.epoch)
    } else {
        (vec![Slot::EMPTY], BTreeMap::new(), meta.checkpoint_epoch)
    };
    let log_file = log_name(meta.generation);
    let log_path = dir.join(&log_file);
    if !log_path.exists() {
        return Err(Error::corrupt(&log_file, 0, "the log file the meta file names is missing"));
    }
    let contents = wal::read_log(&log_path, &log_file, checkpoint_epoch + 1, meta.format)?;
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
    let mut epoch = checkpoint_epoch;
    let mut latest_payload: HashMap<u64, (usize, usize, usize)> = HashMap::new();
    for (fi, frame) in contents.frames.iter().enumerate() {
        for op in &frame.ops {
            apply_op(op, &mut snapshot_slots, &mut roots, &mut latest_payload, fi, &classes, &log_file, frame.body_at)?;
        }
        epoch = frame.epoch;
    }
    let backing = if writable { Backing::Shared(dir.to_path_buf()) } else { Backing::Private(dir.to_path_buf()) };
    let mut space = Space::open(classes, &backing)?;
    cover_logged_blocks(&mut space, &snapshot_slots, &latest_payload)?;
    space.rebuild(&blocks_in_use(&snapshot_slots, space.classes())?)?;
    for (&handle, &(fi, at, len)) in &latest_payload {
        let slot = snapshot_slots[handle as usize];
        space.write(slot.loc(), &contents.frames[fi].body[at..at + len]);
    }
    let mut table = ObjectTable::new();
    table.slots = snapshot_slots;
    table.rebuild_free_list();
    let core = Core::new(space, table, roots, epoch, options.growth_policy);
    let log = if writable { Some(LogWriter::open(&log_path, contents.valid_bytes)?) } else { None };
    if writable {
        remove_stray_files(dir, meta.generation);
    }
    let note = recovery_note(&log_file, &contents, std::fs::metadata(&log_path).map_or(0, |m| m.len()), epoch);
    // A store of an older format moves to this one at once: its log's frames are the old kind.
    let needs_checkpoint = writable && (!contents.frames.is_empty() || meta.format < super::meta::FORMAT_VERSION);
    Ok(Opened { core, log, meta, lock, needs_checkpoint, note })
}

/// Says what recovery found in the log: commits replayed since the checkpoint, and a torn
/// tail (a commit cut short), which a writable open cuts off.
fn recovery_note(log_file: &str, contents: &wal::LogContents, file_bytes: u64, epoch: u64) -> Option<String> {
    let torn = file_bytes.saturating_sub(contents.valid_bytes);
    if contents.frames.is_empty() && torn == 0 {
        return None;
    }
    let mut note = format!("recovered to epoch {epoch}: {} commits replayed from {log_file}", contents.frames.len());
    if torn > 0 {
        note += &format!("; {torn} bytes of an incomplete commit at offset {} dropped", contents.valid_bytes);
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
    LogWriter::open(&dir.join(log_name(1)), 0)?.sync()?;
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

#[allow(clippy::too_many_arguments)]
fn apply_op(
    op: &Op,
    slots: &mut Vec<Slot>,
    roots: &mut BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    latest_payload: &mut HashMap<u64, (usize, usize, usize)>,
    frame_index: usize,
    classes: &SizeClasses,
    log_file: &str,
    body_at: u64,
) -> Result<()> {
    let bad = |what: String| Error::corrupt(log_file, body_at, what);
    match op {
        Op::Put(p) => {
            if p.handle == 0 || p.handle > crate::limits::HANDLE_MAX || p.kind == 0 {
                return Err(bad(format!("put of handle {} kind {}", p.handle, p.kind)));
            }
            if p.class as usize >= classes.count() || p.len > classes.bytes(p.class) {
                return Err(bad(format!("put of {} bytes in class {}", p.len, p.class)));
            }
            if p.tag == 0 {
                return Err(bad(format!("put of handle {} with tag 0, which no id has", p.handle)));
            }
            if slots.len() <= p.handle as usize {
                // The table grows to the handle: a damaged handle must not size the allocation.
                if p.handle - slots.len() as u64 >= crate::limits::LOG_HANDLE_GAP_MAX {
                    return Err(bad(format!(
                        "put of handle {} far beyond the table's {} handles",
                        p.handle,
                        slots.len()
                    )));
                }
                slots.resize(p.handle as usize + 1, Slot::EMPTY);
            }
            slots[p.handle as usize] = Slot {
                block: p.block,
                len: p.len,
                crc: p.payload_crc,
                tag: p.tag,
                kind: p.kind,
                class: p.class,
                state: State::Live,
                dirty: false,
                freeing: false,
            };
            match p.payload_at {
                Some(at) => latest_payload.insert(p.handle, (frame_index, at, p.len as usize)),
                None => latest_payload.remove(&p.handle),
            };
        }
        Op::Free { handle, tag } => {
            let slot = slots.get_mut(*handle as usize).filter(|s| s.state == State::Live && s.tag == *tag);
            let Some(slot) = slot else {
                return Err(bad(format!("free of handle {handle} tag {tag}, which is not live")));
            };
            slot.state = State::Free;
            latest_payload.remove(handle);
        }
        Op::Root { name, id, meta } => {
            roots.insert(name.clone(), (*id, meta.clone()));
        }
        Op::RootRemove { name } => {
            roots.remove(name);
        }
    }
    Ok(())
}

/// Extends class files to hold the blocks of live nodes whose bytes the log holds: a commit
/// does not sync a class file's growth (that would write back every dirty page of the file),
/// so after a power cut the file may end before segments its logged nodes were written to.
/// A block beyond the end whose bytes are not in the log stays for `rebuild` to refuse.
fn cover_logged_blocks(space: &mut Space, slots: &[Slot], logged: &HashMap<u64, (usize, usize, usize)>) -> Result<()> {
    for (handle, s) in slots.iter().enumerate() {
        if s.state == State::Live && !space.covers(s.loc()) && logged.contains_key(&(handle as u64)) {
            space.cover(s.loc())?;
        }
    }
    Ok(())
}

/// The blocks of live nodes, per class; `Corrupt` if two nodes claim one block.
fn blocks_in_use(slots: &[Slot], classes: &SizeClasses) -> Result<Vec<Vec<u32>>> {
    let mut used: Vec<Vec<u32>> = vec![Vec::new(); classes.count()];
    for s in slots.iter().filter(|s| s.state == State::Live) {
        used[s.class as usize].push(s.block);
    }
    for (c, blocks) in used.iter_mut().enumerate() {
        blocks.sort_unstable();
        if let Some(w) = blocks.windows(2).find(|w| w[0] == w[1]) {
            let bytes = classes.bytes(c as u8);
            return Err(Error::corrupt(
                format!("class-{c:02}-{bytes}.seg"),
                u64::from(w[0]) * u64::from(bytes),
                format!("the object table gives block {} to two live nodes", w[0]),
            ));
        }
    }
    Ok(used)
}

/// Files of other generations (a checkpoint that crashed before its meta switch) and
/// temporaries: never needed again.
fn remove_stray_files(dir: &Path, generation: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let keep = [log_name(generation), checkpoint::file_name(generation)];
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("wal-") || name.starts_with("checkpoint-");
        if ours && !keep.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
