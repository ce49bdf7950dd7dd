//! Opening a store: create it, or recover it.
//!
//! Recovery: newest valid meta slot -> its checkpoint -> replay the committed log frames after
//! it (a torn tail is cut) -> lay the logged payloads of live nodes over their blocks ->
//! rebuild the allocator from the table. The cost is O(table + log), never a scan of the data
//! files. A writer then checkpoints, so the replayed log is not replayed again.

use super::api::StoreOptions;
use super::checkpoint;
use super::core::Core;
use super::meta::{Meta, META_FILE};
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
    if !dir.join(META_FILE).exists() && (!writable || !options.create) {
        return Err(Error::NotFound(format!("no pcore store in {}", dir.display())));
    }
    if writable {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
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
    // Checked again under the lock: another writer may have created it meanwhile.
    let meta = if dir.join(META_FILE).exists() { Meta::load(dir)? } else { create(dir, options)? };
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
    let contents = wal::read_log(&log_path, &log_file, checkpoint_epoch + 1)?;
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
    Ok(Opened { core, log, meta, lock, needs_checkpoint: writable && !contents.frames.is_empty(), note })
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

/// A new store: an empty log, then the meta file naming it, then the directory entries synced.
fn create(dir: &Path, options: &StoreOptions) -> Result<Meta> {
    SizeClasses::new(options.min_class_bytes, options.max_class_bytes)?;
    let meta = Meta {
        sequence: 1,
        generation: 1,
        has_checkpoint: false,
        checkpoint_epoch: 0,
        min_class_bytes: options.min_class_bytes,
        max_class_bytes: options.max_class_bytes,
    };
    LogWriter::open(&dir.join(log_name(1)), 0)?.sync()?;
    meta.store(dir)?;
    crate::os::sync_dir(dir).map_err(|e| Error::io(format!("sync {}", dir.display()), e))?;
    Ok(meta)
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
