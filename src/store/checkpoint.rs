//! Checkpoints: the committed object table and roots, written whole to a new file.
//!
//! Layout, little-endian:
//! ```text
//! 0   u64 magic "PCORECKP"
//! 8   u64 epoch
//! 16  u64 slot count (handle 0 included)
//! 24  u32 root count
//! 28  u32 CRC32C of the body
//! 32  u32 CRC32C of bytes 0..32
//! 36  body: slot count entries of 16 bytes:
//!         u32 block, u32 (len | class << 24 | live << 29), u32 CRC32C of the node's payload,
//!         u16 tag, u8 kind, u8 0
//!     then roots: u8 name length, name, u64 node id, u16 meta length, meta
//! ```
//! Written to a temporary name, synced, renamed, and the directory synced: a crash leaves the
//! previous checkpoint, still named by the meta file.

use super::codec::{crc, Reader, Writer};
use super::table::{ObjectTable, Origin, Slot, State};
use crate::alloc::SizeClasses;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const MAGIC: u64 = u64::from_le_bytes(*b"PCORECKP");
const HEADER_BYTES: usize = 36;
pub(crate) const ENTRY_BYTES: usize = 16;
const LIVE_BIT: u32 = 1 << 29;

pub(crate) fn file_name(generation: u64) -> String {
    format!("checkpoint-{generation}.ckpt")
}

/// What a checkpoint holds.
pub(crate) struct Snapshot {
    pub epoch: u64,
    pub slots: Vec<Slot>,
    pub roots: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
}

/// Encodes the committed view: LIVE nodes at their committed location, everything else free
/// (with its tag, so ids issued before stay stale after a reopen).
pub(crate) fn encode(table: &ObjectTable, roots: &BTreeMap<Vec<u8>, (u64, Vec<u8>)>, epoch: u64) -> Vec<u8> {
    let mut body = Writer { buf: Vec::with_capacity(table.slots.len() * ENTRY_BYTES) };
    for (h, slot) in table.slots.iter().enumerate() {
        match table.committed(h as u64) {
            Some(c) => {
                body.u32(c.loc.block);
                body.u32(c.len | u32::from(c.loc.class) << 24 | LIVE_BIT);
                body.u32(c.crc);
            }
            None => {
                body.u32(0);
                body.u32(0);
                body.u32(0);
            }
        }
        body.u16(slot.tag);
        body.u8(slot.kind);
        body.u8(0);
    }
    for (name, (id, meta)) in roots {
        body.u8(name.len() as u8);
        body.bytes(name);
        body.u64(*id);
        body.u16(meta.len() as u16);
        body.bytes(meta);
    }
    let mut out = Writer { buf: Vec::with_capacity(HEADER_BYTES + body.buf.len()) };
    out.u64(MAGIC);
    out.u64(epoch);
    out.u64(table.slots.len() as u64);
    out.u32(roots.len() as u32);
    out.u32(crc(&body.buf));
    let hc = crc(&out.buf);
    out.u32(hc);
    out.bytes(&body.buf);
    out.buf
}

pub(crate) fn write(dir: &Path, generation: u64, bytes: &[u8]) -> Result<()> {
    let name = file_name(generation);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |what: &str, e| Error::io(format!("{what} {name}"), e);
    crate::os::reserve(&tmp, bytes.len() as u64).map_err(|e| io("write", e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, dir.join(&name)).map_err(|e| io("rename", e))?;
    crate::os::sync_dir(dir).map_err(|e| io("sync the directory after", e))
}

pub(crate) fn read(dir: &Path, generation: u64, classes: &SizeClasses) -> Result<Snapshot> {
    let name = file_name(generation);
    let data = std::fs::read(dir.join(&name)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::corrupt(&name, 0, "the checkpoint the meta file names is missing"),
        _ => Error::io(format!("read {name}"), e),
    })?;
    if data.len() < HEADER_BYTES || crc(&data[..32]).to_le_bytes() != data[32..36] {
        return Err(Error::corrupt(&name, 0, "checkpoint header damaged"));
    }
    let mut h = Reader::new(&name, 0, &data[..32]);
    if h.u64()? != MAGIC {
        return Err(Error::corrupt(&name, 0, "not a checkpoint file"));
    }
    let (epoch, slot_count, root_count, body_crc) = (h.u64()?, h.u64()?, h.u32()?, h.u32()?);
    let body = &data[HEADER_BYTES..];
    if crc(body) != body_crc {
        return Err(Error::corrupt(&name, HEADER_BYTES as u64, "checkpoint body checksum mismatch"));
    }
    let mut r = Reader::new(&name, HEADER_BYTES as u64, body);
    if slot_count == 0 || slot_count.saturating_mul(ENTRY_BYTES as u64) > body.len() as u64 {
        return Err(r.corrupt(format!("slot count {slot_count} does not fit the file")));
    }
    let mut slots = Vec::with_capacity(slot_count as usize);
    for _ in 0..slot_count {
        let entry_at = r.offset();
        let (block, packed, crc, tag, kind, _) = (r.u32()?, r.u32()?, r.u32()?, r.u16()?, r.u8()?, r.u8()?);
        let live = packed & LIVE_BIT != 0;
        let class = ((packed >> 24) & 0x1F) as u8;
        let len = packed & 0xFF_FFFF;
        if live && (class as usize >= classes.count() || kind == 0 || tag == 0 || len > classes.bytes(class)) {
            return Err(Error::corrupt(
                &name,
                entry_at,
                format!("entry of {len} bytes with class {class}, kind {kind}, tag {tag}"),
            ));
        }
        let state = if live { State::Live } else { State::Free };
        slots.push(Slot {
            block,
            len,
            crc,
            tag,
            kind,
            class,
            state,
            dirty: false,
            freeing: false,
            origin: Origin::Checkpoint,
        });
    }
    let mut roots = BTreeMap::new();
    for _ in 0..root_count {
        let name_len = r.u8()? as usize;
        let root_name = r.take(name_len)?.to_vec();
        let id = r.u64()?;
        let meta_len = r.u16()? as usize;
        roots.insert(root_name, (id, r.take(meta_len)?.to_vec()));
    }
    if r.remaining() != 0 {
        return Err(r.corrupt("bytes after the last root"));
    }
    Ok(Snapshot { epoch, slots, roots })
}
