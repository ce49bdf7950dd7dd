//! A store's files as `pcore stat` and `pcore check` see them, read without opening the
//! store: both meta slots, the checkpoint, and the log with any torn tail it ends in.

use super::checkpoint;
use super::meta::{Meta, META_FILE};
use super::recovery::log_name;
use super::wal;
use crate::alloc::SizeClasses;
use crate::error::{Error, Result};
use std::path::Path;

/// One of the meta file's two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSlotState {
    /// Never written (a new store has used one slot only).
    Unused,
    Valid {
        sequence: u64,
        generation: u64,
        checkpoint_epoch: u64,
    },
    /// Written, but its checksum fails: a torn write or damage. The other slot is used.
    Damaged,
}

#[derive(Debug, Clone)]
pub struct CheckpointReport {
    /// The newest piece's file (the only file of a format 2 to 4 checkpoint).
    pub file: String,
    /// Of every piece.
    pub bytes: u64,
    /// Files that hold the table (docs/LOG.md): the newest and the earlier pieces it needs.
    pub pieces: u64,
    pub epoch: u64,
    /// Object table slots (node handles) it holds, handle 0 included.
    pub slots: u64,
    pub live_nodes: u64,
    pub roots: u64,
}

#[derive(Debug, Clone)]
pub struct LogReport {
    pub file: String,
    pub bytes: u64,
    /// Where the last whole, valid frame ends.
    pub valid_bytes: u64,
    /// Bytes after them that this generation wrote: a commit cut short. The rest of a longer
    /// file is an earlier generation's frames, space the log reuses (docs/LOG.md).
    pub torn_bytes: u64,
    pub frames: u64,
    /// The epoch of the last frame, or the checkpoint's when the log holds none.
    pub last_epoch: u64,
}

impl LogReport {
    /// Bytes after the last whole frame: a commit cut short (by a crash, or by the
    /// file being truncated). A writer's next open cuts them off.
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_bytes
    }
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub meta_slots: [(u64, MetaSlotState); 2],
    pub generation: u64,
    pub min_class_bytes: u32,
    pub max_class_bytes: u32,
    pub checkpoint: Option<CheckpointReport>,
    pub log: LogReport,
}

/// Reads and checks the meta file, the checkpoint and the log of the store in `dir`; changes
/// nothing. `NotFound` when `dir` holds no store; `Corrupt` (file and offset) for damage that
/// an open would refuse too. Damage an open survives (a damaged meta slot, a torn log tail)
/// is reported in the result.
pub fn inspect_files(dir: &Path) -> Result<FileReport> {
    if !dir.join(META_FILE).exists() {
        return Err(Error::NotFound(format!("no pcore store in {}", dir.display())));
    }
    let slots = Meta::load_slots(dir)?;
    let meta = Meta::load(dir)?;
    let classes = SizeClasses::new(meta.min_class_bytes, meta.max_class_bytes).map_err(|e| {
        Error::corrupt(META_FILE, 40, format!("size classes recorded in the meta file are invalid: {e}"))
    })?;
    let checkpoint = if meta.has_checkpoint {
        let file = checkpoint::file_name(meta.generation);
        let (snap, bytes) = if meta.format >= 5 {
            let snap = checkpoint::read(dir, meta.generation, &classes)?;
            let bytes = snap.chain.bytes();
            (snap, bytes)
        } else {
            (checkpoint::whole::read(dir, meta.generation, &classes)?, file_len(dir, &file)?)
        };
        Some(CheckpointReport {
            pieces: snap.chain.pieces.len().max(1) as u64,
            bytes,
            file,
            epoch: snap.epoch,
            slots: snap.slots.len() as u64,
            live_nodes: snap.slots.iter().filter(|s| s.state == super::table::State::Live).count() as u64,
            roots: snap.roots.len() as u64,
        })
    } else {
        None
    };
    let file = log_name(meta.generation);
    let contents = wal::read_log(&dir.join(&file), &file, meta.checkpoint_epoch + 1, meta.format, meta.generation)?;
    let bytes = file_len(dir, &file)?;
    let log = LogReport {
        valid_bytes: contents.valid_bytes,
        torn_bytes: contents.torn_bytes,
        frames: contents.frames.len() as u64,
        last_epoch: contents.frames.last().map_or(meta.checkpoint_epoch, |f| f.epoch),
        bytes,
        file,
    };
    let state = |s: &super::meta::MetaSlot| match s.valid {
        Some(m) => MetaSlotState::Valid {
            sequence: m.sequence,
            generation: m.generation,
            checkpoint_epoch: m.checkpoint_epoch,
        },
        None if s.damaged => MetaSlotState::Damaged,
        None => MetaSlotState::Unused,
    };
    Ok(FileReport {
        meta_slots: [(slots[0].offset, state(&slots[0])), (slots[1].offset, state(&slots[1]))],
        generation: meta.generation,
        min_class_bytes: meta.min_class_bytes,
        max_class_bytes: meta.max_class_bytes,
        checkpoint,
        log,
    })
}

fn file_len(dir: &Path, name: &str) -> Result<u64> {
    std::fs::metadata(dir.join(name)).map(|m| m.len()).map_err(|e| Error::io(format!("stat {name}"), e))
}
