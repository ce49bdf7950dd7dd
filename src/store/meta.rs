//! The meta file: two slots, the newer valid one wins, so a torn meta write loses nothing.
//!
//! Slot layout (each slot starts a 4 KiB page so one torn sector cannot hit both):
//! ```text
//! 0   u64 magic "PCOREMTA"
//! 8   u32 format version
//! 12  u32 flags (bit 0: a checkpoint file exists for this generation)
//! 16  u64 slot sequence (higher wins)
//! 24  u64 generation: the files are checkpoint-<g>.ckpt and wal-<g>.log
//! 32  u64 checkpoint epoch: the log's first frame has this epoch + 1
//! 40  u32 smallest size class, 44 u32 largest size class
//! 48  u64 bytes of the log known to be synced (format 3; format 2 slots end here)
//! 56  u32 CRC32C of bytes 0..56
//! ```
//!
//! The synced length is recorded at every checkpoint (0: the new log is empty) and, after a
//! log sync, at most once a `meta_refresh_ms`: recovery refuses a log whose commits end below
//! it, which is a log cut or damaged below what was durable, not a torn tail.

use super::codec::{crc, Reader, Writer};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) const META_FILE: &str = "meta";
const MAGIC: u64 = u64::from_le_bytes(*b"PCOREMTA");
/// 2: checkpoint entries carry each node's payload checksum. 3: the meta records how much of
/// the log is known to be synced, and so does each log frame. 4: log records may be deltas
/// against a node's committed version (docs/LOG.md); the meta slot is format 3's. 5: log
/// frame headers are salted with the generation and log files are reused (wal.rs), and
/// checkpoints are chains of pieces, each holding what changed since the one before and a
/// slice of the table (`checkpoint`); the meta slot is format 4's. Format 2 to 4 stores (one
/// whole checkpoint file, unsalted frames) are read (format 2 as if nothing were recorded),
/// and a writer checkpoints one at once, into a chain and a format 5 log. 6: checkpoint
/// pieces carry one check per group of 8 handles instead of a CRC per node (`seal.rs`) and
/// code runs of predictable entries in a byte; log and meta slot are format 5's. A format 5
/// store is read as it is, and a writer checkpoints it at once into a format 6 chain (a
/// sweep of the whole table). 7: the newest piece also lists the waiting frees, blocks freed
/// by commits that a reader process of an older commit may still read, so a writer opening
/// under such a reader holds those alone rather than every block; log and meta slot are
/// format 5's. A format 6 store is read as it is, and a writer checkpoints it at once.
/// 8: a log PUT may carry an edit script (payload mode 4, `script.rs`); everything else is
/// format 7's. A format 7 store is read as it is, and a writer checkpoints it at once, so
/// no script is written into a log a format 7 reader could open.
pub(crate) const FORMAT_VERSION: u32 = 8;
/// The first format whose meta slot records the synced log length.
const SYNCED_META_FORMAT: u32 = 3;
const FORMAT_VERSION_OLDEST: u32 = 2;
const SLOT_BYTES: u64 = 4096;
const SLOT_USED_BYTES: usize = 60;
const SLOT_USED_BYTES_V2: usize = 52;
/// Where a new store's meta is written before it is renamed to `META_FILE`: the rename is the
/// moment the store exists.
pub(crate) const META_CREATING_FILE: &str = "meta.creating";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub sequence: u64,
    pub generation: u64,
    pub has_checkpoint: bool,
    pub checkpoint_epoch: u64,
    pub min_class_bytes: u32,
    pub max_class_bytes: u32,
    /// Bytes of the generation's log known to be synced: recovery must find commits up to here.
    pub log_synced_bytes: u64,
    /// The format of the store as this meta was found (what its log's frames look like); a
    /// meta is always written in `FORMAT_VERSION`.
    pub format: u32,
}

/// One of the meta file's two slots, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaSlot {
    pub offset: u64,
    pub valid: Option<Meta>,
    /// Written, but its checksum or magic fails: a torn write or damage.
    pub damaged: bool,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(self.has_checkpoint as u32);
        w.u64(self.sequence);
        w.u64(self.generation);
        w.u64(self.checkpoint_epoch);
        w.u32(self.min_class_bytes);
        w.u32(self.max_class_bytes);
        w.u64(self.log_synced_bytes);
        let c = crc(&w.buf);
        w.u32(c);
        debug_assert_eq!(w.buf.len(), SLOT_USED_BYTES);
        w.buf
    }

    /// `Ok(None)` for a slot that was never written or whose checksum fails (torn).
    fn decode(bytes: &[u8], offset: u64) -> Result<Option<Meta>> {
        let crc_matches =
            |end: usize| bytes.len() >= end + 4 && crc(&bytes[..end]).to_le_bytes() == bytes[end..end + 4];
        let mut r = Reader::new(META_FILE, offset, bytes);
        if bytes.len() < 12 || r.u64()? != MAGIC {
            return Ok(None);
        }
        let version = r.u32()?;
        let checked_bytes = match version {
            SYNCED_META_FORMAT..=FORMAT_VERSION => SLOT_USED_BYTES - 4,
            FORMAT_VERSION_OLDEST => SLOT_USED_BYTES_V2 - 4,
            // Another format's slot: its checksum may lie elsewhere, so try where ours lie.
            _ if crc_matches(SLOT_USED_BYTES - 4) || crc_matches(SLOT_USED_BYTES_V2 - 4) => {
                return Err(Error::VersionMismatch(format!(
                    "store format {version}; this build reads {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION}: convert the \
                     store with `pcore dump` under a build that reads it, then `pcore load` under this one"
                )))
            }
            _ => return Ok(None),
        };
        if !crc_matches(checked_bytes) {
            return Ok(None);
        }
        let flags = r.u32()?;
        let meta = Meta {
            has_checkpoint: flags & 1 != 0,
            sequence: r.u64()?,
            generation: r.u64()?,
            checkpoint_epoch: r.u64()?,
            min_class_bytes: r.u32()?,
            max_class_bytes: r.u32()?,
            log_synced_bytes: if version >= SYNCED_META_FORMAT { r.u64()? } else { 0 },
            format: version,
        };
        let max = crate::limits::COUNTER_MAX;
        if meta.sequence >= max
            || meta.generation >= max
            || meta.checkpoint_epoch >= max
            || meta.log_synced_bytes >= max
        {
            return Err(Error::corrupt(
                META_FILE,
                offset + 16,
                format!(
                    "sequence {}, generation {}, epoch {}: beyond any store's",
                    meta.sequence, meta.generation, meta.checkpoint_epoch
                ),
            ));
        }
        Ok(Some(meta))
    }

    /// Reads both slots and returns the newer valid one; `Corrupt` if neither is valid.
    pub fn load(dir: &Path) -> Result<Meta> {
        Meta::newest(&Meta::load_slots(dir)?)
    }

    /// The newer valid of two slots as read; `Corrupt` if neither is valid.
    pub fn newest(slots: &[MetaSlot; 2]) -> Result<Meta> {
        match (slots[0].valid, slots[1].valid) {
            (Some(a), Some(b)) => Ok(if a.sequence >= b.sequence { a } else { b }),
            (Some(a), None) | (None, Some(a)) => Ok(a),
            (None, None) => Err(Error::corrupt(META_FILE, 0, "neither meta slot is valid")),
        }
    }

    /// Both slots as found: valid, never written, or damaged.
    pub fn load_slots(dir: &Path) -> Result<[MetaSlot; 2]> {
        let path = dir.join(META_FILE);
        let data = std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let slot = |i: u64| -> Result<MetaSlot> {
            let start = (i * SLOT_BYTES) as usize;
            let bytes = data.get(start..).map(|s| &s[..s.len().min(SLOT_USED_BYTES)]).unwrap_or(&[]);
            let valid = Meta::decode(bytes, i * SLOT_BYTES)?;
            let written = bytes.iter().any(|&b| b != 0);
            Ok(MetaSlot { offset: i * SLOT_BYTES, valid, damaged: written && valid.is_none() })
        };
        Ok([slot(0)?, slot(1)?])
    }

    /// Writes this meta into the slot its sequence selects and syncs it. The other slot keeps
    /// the previous meta, which stays valid if this write is torn. (The store itself uses
    /// [`Meta::store_unless_unwritable`], which tells a slot never written from one in doubt.)
    #[cfg(test)]
    pub fn store(&self, dir: &Path) -> Result<()> {
        self.write_slot(&dir.join(META_FILE), false)
    }

    /// Writes a new store's first meta to `META_CREATING_FILE`, synced; the creator renames it.
    pub fn store_creating(&self, dir: &Path) -> Result<()> {
        self.write_slot(&dir.join(META_CREATING_FILE), true)
    }

    /// [`Meta::store`] for a record the store may go on without: `Ok(Some(why))` when the
    /// slot could not be opened or written (never synced: the other slot keeps the last
    /// record, and a torn write of this one fails its CRC). `Err` only when the write went
    /// out and its sync failed: the system may have dropped the page, so what the slot holds
    /// on disk is unknown, and the caller stops the store as after any failed sync.
    pub fn store_unless_unwritable(&self, dir: &Path) -> Result<Option<std::io::Error>> {
        let path = dir.join(META_FILE);
        #[cfg(test)]
        if let Some(errno) = UNWRITABLE.with(|u| u.get()) {
            return Ok(Some(std::io::Error::from_raw_os_error(errno)));
        }
        let file = match self.write_unsynced(&path, false) {
            Ok(file) => file,
            Err(why) => return Ok(Some(why)),
        };
        Self::sync_slot(&file, &path)?;
        Ok(None)
    }

    fn write_slot(&self, path: &Path, fresh: bool) -> Result<()> {
        let file = self.write_unsynced(path, fresh).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Self::sync_slot(&file, path)
    }

    fn write_unsynced(&self, path: &Path, fresh: bool) -> std::io::Result<File> {
        if fresh {
            crate::os::reserve(path, 2 * SLOT_BYTES)?;
        }
        let file: File = OpenOptions::new().write(true).create(true).truncate(fresh).open(path)?;
        let offset = (self.sequence % 2) * SLOT_BYTES;
        file.write_all_at(&self.encode(), offset)?;
        Ok(file)
    }

    fn sync_slot(file: &File, path: &Path) -> Result<()> {
        crate::os::simulated_sync_failure(path)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(format!("sync {}", path.display()), e))
    }
}

#[cfg(test)]
thread_local! {
    /// Makes the meta file unwritable to `store_unless_unwritable`, failing with this errno
    /// (tests: a process out of file descriptors, a full disk).
    pub(crate) static UNWRITABLE: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pcore-meta-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn meta(sequence: u64) -> Meta {
        Meta {
            sequence,
            generation: sequence * 10,
            has_checkpoint: true,
            checkpoint_epoch: 5,
            min_class_bytes: 64,
            max_class_bytes: 4096,
            log_synced_bytes: sequence * 100,
            format: FORMAT_VERSION,
        }
    }

    #[test]
    fn newer_slot_wins_and_a_torn_newer_slot_falls_back() {
        let dir = temp_dir("slots");
        meta(1).store(&dir).unwrap();
        meta(2).store(&dir).unwrap();
        assert_eq!(Meta::load(&dir).unwrap(), meta(2));
        let path = dir.join(META_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1; // slot 0 holds sequence 2: a torn write of it
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Meta::load(&dir).unwrap(), meta(1));
        bytes[4096] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Meta::load(&dir), Err(Error::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_format_2_slot_is_read_with_nothing_recorded_as_synced() {
        let dir = temp_dir("v2");
        let m = meta(3);
        let mut bytes = m.encode();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes.truncate(48);
        let c = crc(&bytes);
        bytes.extend_from_slice(&c.to_le_bytes());
        let mut file = vec![0u8; 2 * SLOT_BYTES as usize];
        file[SLOT_BYTES as usize..][..bytes.len()].copy_from_slice(&bytes);
        std::fs::write(dir.join(META_FILE), &file).unwrap();
        assert_eq!(Meta::load(&dir).unwrap(), Meta { log_synced_bytes: 0, format: 2, ..m });
        // A format this build does not know, with a valid checksum, is a version mismatch.
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        let c = crc(&bytes[..48]);
        bytes[48..52].copy_from_slice(&c.to_le_bytes());
        file[SLOT_BYTES as usize..][..bytes.len()].copy_from_slice(&bytes);
        std::fs::write(dir.join(META_FILE), &file).unwrap();
        assert!(matches!(Meta::load(&dir), Err(Error::VersionMismatch(m)) if m.contains("pcore dump")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_format_3_slot_is_read_with_its_synced_length() {
        let dir = temp_dir("v3");
        let m = meta(3);
        let mut bytes = m.encode();
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        let c = crc(&bytes[..SLOT_USED_BYTES - 4]);
        bytes[SLOT_USED_BYTES - 4..SLOT_USED_BYTES].copy_from_slice(&c.to_le_bytes());
        let mut file = vec![0u8; 2 * SLOT_BYTES as usize];
        file[..bytes.len()].copy_from_slice(&bytes);
        std::fs::write(dir.join(META_FILE), &file).unwrap();
        assert_eq!(Meta::load(&dir).unwrap(), Meta { format: 3, ..m });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
