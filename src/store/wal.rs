//! The write-ahead log: one frame per commit, appended and (by durability mode) synced.
//!
//! Frame layout, little-endian (store format 4; format 3's PUTs have modes 0 and 1 only, and
//! format 2's frames also lack the synced length and their header is 24 bytes):
//! ```text
//! 0   u32 magic "PCWF"
//! 4   u32 body length
//! 8   u64 epoch (each frame's epoch is the previous one's + 1)
//! 16  u64 synced length: how much of this log was known to be on disk when the frame was
//!     written (every byte before it had been fdatasync'ed)
//! 24  u32 CRC32C of the body
//! 28  u32 CRC32C of bytes 0..28; from format 5, of the log's generation (u64) then bytes 0..28
//! 32  body: operations, each starting with a one-byte code
//!     PUT  1: u64 handle, u16 tag, u8 kind, u8 class, u32 block, u32 len, u32 payload CRC,
//!             u8 mode: 0 not logged (the block was synced before the frame), 1 whole (then
//!             `len` payload bytes), 2 delta (then the ranges that differ from the node's
//!             committed version: see `delta`, and docs/LOG.md for what recovery needs),
//!             3 sparse (the ranges that differ from `len` zero bytes: a new page's free
//!             space is not logged), 4 script (format 8: the writes and moves that made it
//!             from its committed version, recorded as it was edited: see `script`)
//!     FREE 2: u64 handle, u16 tag
//!     ROOT 3: u8 name length, name, u64 node id, u16 meta length, meta
//!     ROOT_REMOVE 4: u8 name length, name (the root is gone: a dropped B+ tree's anchor)
//! ```
//! A frame is committed when all of it is on disk. At recovery, frames are read in order up to
//! the first that is incomplete or damaged. What follows is a torn tail, cut off, when it was
//! never synced: after a power cut, pages of an unsynced append can reach the disk in any
//! order, so a damaged frame may well have intact ones after it. It is corruption, reported
//! and never skipped, when a later intact frame records the log as synced past it (or the
//! meta file does: see `recovery`).
//!
//! From format 5 a log's space is reused (docs/LOG.md): at a checkpoint the old log becomes
//! the new generation's and frames are written over it from offset 0, so a STRICT commit
//! overwrites allocated blocks and its `fdatasync` has no file size to commit. Each header's
//! CRC is salted with the generation, so the previous generation's frames past the end never
//! parse: they read as a torn tail, never as a commit, and never as damage.

use super::codec::{crc, Reader, Writer};
use crate::alloc::Loc;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::path::Path;

const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"PCWF");
pub(crate) const FRAME_HEADER_BYTES: usize = 32;
/// Format 2's header: no synced length.
const FRAME_HEADER_BYTES_V2: usize = 24;
/// The first store format whose frames record the synced length.
pub(crate) const SYNCED_FRAMES_FORMAT: u32 = 3;
/// The first store format whose frame headers are salted with the log's generation (and
/// whose log files are reused from one generation to the next).
pub(crate) const SALTED_FRAMES_FORMAT: u32 = 5;

/// What a log's frame headers are bound to: its generation from format 5, nothing before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Salt(Option<u64>);

impl Salt {
    pub fn new(store_format: u32, generation: u64) -> Salt {
        Salt((store_format >= SALTED_FRAMES_FORMAT).then_some(generation))
    }

    fn header_crc(self, header: &[u8]) -> u32 {
        match self.0 {
            Some(g) => crc32c::crc32c_append(crc(&g.to_le_bytes()), header),
            None => crc(header),
        }
    }
}

const OP_PUT: u8 = 1;
const MODE_UNLOGGED: u8 = 0;
const MODE_WHOLE: u8 = 1;
const MODE_DELTA: u8 = 2;
const MODE_SPARSE: u8 = 3;
const MODE_SCRIPT: u8 = 4;
/// The zero bytes a sparse payload is encoded against: larger payloads are logged whole.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
/// A PUT's fixed fields: code, handle, tag, kind, class, block, len, payload CRC, mode.
const PUT_HEADER_BYTES: usize = 1 + 8 + 2 + 1 + 1 + 4 + 4 + 4 + 1;
/// Where a PUT header's payload CRC lies (op, handle, tag, kind, class, block, length first).
const PUT_CRC_AT: usize = 1 + 8 + 2 + 1 + 1 + 4 + 4;
const OP_FREE: u8 = 2;
const OP_ROOT: u8 = 3;
const OP_ROOT_REMOVE: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PutOp {
    pub handle: u64,
    pub tag: u16,
    pub kind: u8,
    pub class: u8,
    pub block: u32,
    pub len: u32,
    pub payload_crc: u32,
    pub payload: Payload,
}

/// What a PUT logs of the node's bytes; offsets are within the frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Nothing: the block was synced before the frame.
    Unlogged,
    /// The whole payload, at this offset.
    Whole { at: usize },
    /// A delta against the node's committed version (`delta::apply`), `len` bytes at `at`.
    Delta { at: usize, len: usize },
    /// A delta against the payload's length of zero bytes, `len` bytes at `at`.
    Sparse { at: usize, len: usize },
    /// An edit script of the node's committed version (`script::apply`), `len` bytes at `at`.
    Script { at: usize, len: usize },
}

/// The zero bytes a sparse payload of `len` bytes is rebuilt from, if it may be one.
pub(crate) fn zeros(len: usize) -> Option<&'static [u8]> {
    ZEROS.get(..len)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Put(PutOp),
    Free { handle: u64, tag: u16 },
    Root { name: Vec<u8>, id: u64, meta: Vec<u8> },
    RootRemove { name: Vec<u8> },
}

/// Builds one commit's frame: the body is written after room left for the header. A node's
/// payload is either copied in (`put`) or only referred to (`put_in_place`): it stays where it
/// lies and the append writes it from there (a large commit's pages are never copied).
pub(crate) struct FrameBuilder {
    body: Writer,
    /// Payloads left where they lie: (their offset in the frame, where they are, bytes).
    in_place: Vec<(usize, Loc, usize)>,
    pub ops: usize,
    /// Where the last PUT's header starts in the body.
    last_put: usize,
}

/// A finished frame: its bytes, with the payloads left in place still to be spliced in at
/// their offsets (see [`FrameParts::pieces`]), and its header still to be completed there.
pub(crate) struct FrameParts {
    bytes: Vec<u8>,
    in_place: Vec<(usize, Loc, usize)>,
    epoch: u64,
}

/// The largest frame buffer a writer keeps for the next commit: a rare huge commit's buffer is
/// given back rather than held for the store's lifetime.
pub(crate) const FRAME_BUFFER_KEPT_MAX_BYTES: usize = 64 << 20;

impl FrameParts {
    /// The frame's buffer, for the next frame (`FrameBuilder::with_buffer`); empty when it is
    /// larger than a writer keeps.
    pub fn into_buffer(self) -> Vec<u8> {
        if self.bytes.capacity() > FRAME_BUFFER_KEPT_MAX_BYTES {
            return Vec::new();
        }
        self.bytes
    }

    /// The frame as pieces to write in order; `read` gives a payload's bytes where they lie.
    /// The header's body CRC is computed here, over the pieces themselves; `synced` is how
    /// much of the log is on disk (`LogWriter::synced`).
    pub fn pieces<'a>(&'a mut self, synced: u64, salt: Salt, read: impl Fn(Loc, usize) -> &'a [u8]) -> Vec<&'a [u8]> {
        let mut body_crc = 0u32;
        let mut from = FRAME_HEADER_BYTES;
        for &(at, loc, len) in &self.in_place {
            body_crc = crc32c::crc32c_append(body_crc, &self.bytes[from..at]);
            body_crc = crc32c::crc32c_append(body_crc, read(loc, len));
            from = at;
        }
        body_crc = crc32c::crc32c_append(body_crc, &self.bytes[from..]);
        let body_len = self.bytes.len() - FRAME_HEADER_BYTES + self.in_place.iter().map(|p| p.2).sum::<usize>();
        write_frame_header(&mut self.bytes, body_len, self.epoch, synced, body_crc, salt);
        let mut out = Vec::with_capacity(2 * self.in_place.len() + 1);
        let mut from = 0;
        for &(at, loc, len) in &self.in_place {
            out.push(&self.bytes[from..at]);
            out.push(read(loc, len));
            from = at;
        }
        out.push(&self.bytes[from..]);
        out
    }
}

fn write_frame_header(frame: &mut [u8], body_len: usize, epoch: u64, synced: u64, body_crc: u32, salt: Salt) {
    let h = &mut frame[..FRAME_HEADER_BYTES];
    h[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&u32::try_from(body_len).expect("a commit frame under 4 GiB").to_le_bytes());
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&synced.to_le_bytes());
    h[24..28].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = salt.header_crc(&h[..28]);
    h[28..32].copy_from_slice(&header_crc.to_le_bytes());
}

impl Default for FrameBuilder {
    fn default() -> FrameBuilder {
        FrameBuilder::with_capacity(0)
    }
}

impl FrameBuilder {
    /// A builder whose buffer holds `body_bytes` of operations without growing.
    pub fn with_capacity(body_bytes: usize) -> FrameBuilder {
        FrameBuilder::with_buffer(Vec::new(), body_bytes)
    }

    /// As `with_capacity`, in `buffer` (an earlier frame's, from `FrameParts::into_buffer`):
    /// a writer reuses one buffer for every commit rather than taking ~12 MB from malloc for
    /// each commit of 100,000 small nodes and handing it back.
    pub fn with_buffer(mut buffer: Vec<u8>, body_bytes: usize) -> FrameBuilder {
        buffer.clear();
        buffer.reserve(FRAME_HEADER_BYTES + body_bytes);
        buffer.resize(FRAME_HEADER_BYTES, 0);
        FrameBuilder { body: Writer { buf: buffer }, in_place: Vec::new(), ops: 0, last_put: 0 }
    }

    /// Bytes a PUT takes in the body, its payload included when logged.
    pub fn put_bytes(payload: usize) -> usize {
        PUT_HEADER_BYTES + payload
    }

    /// Bytes a ROOT takes in the body.
    pub fn root_bytes(name: usize, meta: usize) -> usize {
        1 + 1 + name + 8 + 2 + meta
    }

    /// Bytes a ROOT_REMOVE takes in the body.
    pub fn root_remove_bytes(name: usize) -> usize {
        1 + 1 + name
    }

    pub fn put(&mut self, p: &PutOp, payload: Option<&[u8]>) {
        self.put_header(p, if payload.is_some() { MODE_WHOLE } else { MODE_UNLOGGED });
        if let Some(bytes) = payload {
            debug_assert_eq!(bytes.len(), p.len as usize);
            self.body.bytes(bytes);
        }
    }

    /// A PUT whose logged payload (`p.len` bytes) stays at `loc` until the frame is written.
    pub fn put_in_place(&mut self, p: &PutOp, loc: Loc) {
        self.put_header(p, MODE_WHOLE);
        self.in_place.push((self.body.buf.len(), loc, p.len as usize));
    }

    /// A PUT logged as the delta from `base` (the node's committed version) to `new`; false,
    /// and nothing added, when the delta would not be smaller than `new`.
    pub fn put_delta(&mut self, p: &PutOp, base: &[u8], new: &[u8]) -> bool {
        self.put_encoded(p, MODE_DELTA, base, new)
    }

    /// A PUT logged as the edit script that made it from its committed version.
    pub fn put_script(&mut self, p: &PutOp, script: &super::script::Script) {
        self.put_header(p, MODE_SCRIPT);
        script.encode(&mut self.body.buf);
    }

    /// A PUT logged as the bytes where `new` differs from zeros; false, and nothing added,
    /// when that would not be smaller than `new`.
    pub fn put_sparse(&mut self, p: &PutOp, new: &[u8]) -> bool {
        zeros(new.len()).is_some_and(|z| self.put_encoded(p, MODE_SPARSE, z, new))
    }

    fn put_encoded(&mut self, p: &PutOp, mode: u8, base: &[u8], new: &[u8]) -> bool {
        debug_assert_eq!(new.len(), p.len as usize);
        let start = self.body.buf.len();
        self.put_header(p, mode);
        let encode = if mode == MODE_SPARSE { super::delta::encode_sparse } else { super::delta::encode };
        if encode(base, new, &mut self.body.buf) {
            return true;
        }
        self.body.buf.truncate(start);
        self.ops -= 1;
        false
    }

    /// The logged payload of the last PUT (a delta's encoding, say).
    pub fn last_put_payload(&self) -> &[u8] {
        &self.body.buf[self.last_put + PUT_HEADER_BYTES..]
    }

    /// Sets the payload CRC in the last PUT's header (worked out from its encoded delta).
    pub fn set_last_put_crc(&mut self, crc: u32) {
        let at = self.last_put + PUT_CRC_AT;
        self.body.buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    fn put_header(&mut self, p: &PutOp, mode: u8) {
        let w = &mut self.body;
        let start = w.buf.len();
        self.last_put = start;
        w.u8(OP_PUT);
        w.u64(p.handle);
        w.u16(p.tag);
        w.u8(p.kind);
        w.u8(p.class);
        w.u32(p.block);
        w.u32(p.len);
        w.u32(p.payload_crc);
        w.u8(mode);
        debug_assert_eq!(w.buf.len() - start, PUT_HEADER_BYTES);
        self.ops += 1;
    }

    pub fn free(&mut self, handle: u64, tag: u16) {
        self.body.u8(OP_FREE);
        self.body.u64(handle);
        self.body.u16(tag);
        self.ops += 1;
    }

    pub fn root(&mut self, name: &[u8], id: u64, meta: &[u8]) {
        let w = &mut self.body;
        let start = w.buf.len();
        w.u8(OP_ROOT);
        w.u8(name.len() as u8);
        w.bytes(name);
        w.u64(id);
        w.u16(meta.len() as u16);
        w.bytes(meta);
        debug_assert_eq!(w.buf.len() - start, FrameBuilder::root_bytes(name.len(), meta.len()));
        self.ops += 1;
    }

    pub fn root_remove(&mut self, name: &[u8]) {
        self.body.u8(OP_ROOT_REMOVE);
        self.body.u8(name.len() as u8);
        self.body.bytes(name);
        self.ops += 1;
    }

    /// The complete frame, every payload copied in: header then body.
    #[cfg(test)]
    pub fn finish(self, epoch: u64, synced: u64, salt: Salt) -> Vec<u8> {
        assert!(self.in_place.is_empty(), "a frame with payloads in place is finished by finish_parts");
        let mut frame = self.body.buf;
        let (body_crc, body_len) = (crc(&frame[FRAME_HEADER_BYTES..]), frame.len() - FRAME_HEADER_BYTES);
        write_frame_header(&mut frame, body_len, epoch, synced, body_crc, salt);
        frame
    }

    /// The frame, its payloads left in place; `FrameParts::pieces` completes its header.
    pub fn finish_parts(self, epoch: u64) -> FrameParts {
        FrameParts { bytes: self.body.buf, in_place: self.in_place, epoch }
    }
}

/// One frame read back: its epoch, operations, and body (for inline payloads).
pub(crate) struct Frame {
    pub epoch: u64,
    pub body_at: u64,
    pub body: Vec<u8>,
    pub ops: Vec<Op>,
}

/// The frames of a log file that are committed, and where the valid part ends.
pub(crate) struct LogContents {
    pub frames: Vec<Frame>,
    pub valid_bytes: u64,
    /// Bytes after `valid_bytes` that this generation wrote (a commit cut short): a writer
    /// cuts them off. The rest of a longer file is an earlier generation's frames, reused
    /// space a writer overwrites.
    pub torn_bytes: u64,
}

/// Reads every committed frame of generation `generation`'s log, written by a store of
/// `store_format`. `first_epoch` is the epoch the first frame must carry.
pub(crate) fn read_log(
    path: &Path,
    name: &str,
    first_epoch: u64,
    store_format: u32,
    generation: u64,
) -> Result<LogContents> {
    let data = std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let format = Format { store_format, salt: Salt::new(store_format, generation) };
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let mut expected_epoch = first_epoch;
    while let Some(h) = FrameHeader::parse(&data, pos, format) {
        let body_at = pos + h.bytes;
        let Some(body) = data.get(body_at..body_at + h.body_len) else { break };
        if crc(body) != h.body_crc {
            break;
        }
        if h.epoch != expected_epoch {
            return Err(Error::corrupt(
                name,
                pos as u64 + 8,
                format!("frame epoch {}, expected {expected_epoch}", h.epoch),
            ));
        }
        let ops = decode_ops(name, body_at as u64, body)?;
        frames.push(Frame { epoch: h.epoch, body_at: body_at as u64, body: body.to_vec(), ops });
        expected_epoch += 1;
        pos = body_at + h.body_len;
    }
    let mut torn_bytes = 0;
    if pos < data.len() && !data[pos..].iter().all(|&b| b == 0) {
        let mut later_frames = false;
        for_each_magic(&data, pos + 1, |p| {
            let Some(h) = FrameHeader::parse(&data, p, format) else { return Ok(()) };
            let synced = h.synced_or_any(format);
            if synced > pos as u64 {
                return Err(Error::corrupt(
                    name,
                    pos as u64,
                    format!(
                        "commit frame damaged or cut short, but a later frame records the log as synced to offset \
                         {synced}: committed data was lost, not a torn append"
                    ),
                ));
            }
            later_frames = true;
            Ok(())
        })?;
        // Unsalted, anything after the frames was written by this generation; salted, what
        // is not a frame header of this generation is an earlier one's frames (or a header
        // cut short, which nothing after it depends on).
        let this_generation = later_frames || FrameHeader::parse(&data, pos, format).is_some();
        if format.salt.0.is_none() || this_generation {
            torn_bytes = (data.len() - pos) as u64;
        }
    }
    Ok(LogContents { frames, valid_bytes: pos as u64, torn_bytes })
}

/// Calls `visit` with each offset at or after `from` where `data` holds a frame's magic, in
/// order (the places a frame header may start), until it fails. Eight bytes are looked at a
/// time for the magic's first byte, so the scan past the last frame (a reused log keeps up to
/// 64 MiB of an earlier generation's frames) costs a fraction of a header parse at every
/// offset: a read-only open of a store with 19 MiB of such a log took 21 ms, now 13.5
/// (`examples/log_scan_open`).
fn for_each_magic(data: &[u8], from: usize, mut visit: impl FnMut(usize) -> Result<()>) -> Result<()> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let magic = FRAME_MAGIC.to_le_bytes();
    let first = ONES * u64::from(magic[0]);
    let mut at = from.min(data.len());
    while at < data.len() {
        let mut bytes = [!magic[0]; 8];
        let chunk = &data[at..(at + 8).min(data.len())];
        bytes[..chunk.len()].copy_from_slice(chunk);
        let x = u64::from_le_bytes(bytes) ^ first;
        // Bit 8i + 7 is set for every byte i of x that is zero (and perhaps for a byte above
        // one that is: each candidate is checked whole).
        let mut hits = x.wrapping_sub(ONES) & !x & HIGHS;
        while hits != 0 {
            let p = at + (hits.trailing_zeros() / 8) as usize;
            hits &= hits - 1;
            if data.get(p..p + 4) == Some(&magic[..]) {
                visit(p)?;
            }
        }
        at += 8;
    }
    Ok(())
}

/// How a log's frames are laid out and bound.
#[derive(Clone, Copy)]
struct Format {
    store_format: u32,
    salt: Salt,
}

/// A frame header, checked (magic and checksum).
struct FrameHeader {
    bytes: usize,
    body_len: usize,
    epoch: u64,
    /// How much of the log was on disk when the frame was written (0 in format 2).
    synced: u64,
    body_crc: u32,
}

impl FrameHeader {
    fn parse(data: &[u8], pos: usize, format: Format) -> Option<FrameHeader> {
        let with_synced = format.store_format >= SYNCED_FRAMES_FORMAT;
        let bytes = if with_synced { FRAME_HEADER_BYTES } else { FRAME_HEADER_BYTES_V2 };
        let h = data.get(pos..pos.checked_add(bytes)?)?;
        let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let wide = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        if word(0) != FRAME_MAGIC || format.salt.header_crc(&h[..bytes - 4]) != word(bytes - 4) {
            return None;
        }
        let synced = if with_synced { wide(16) } else { 0 };
        Some(FrameHeader { bytes, body_len: word(4) as usize, epoch: wide(8), synced, body_crc: word(bytes - 8) })
    }

    /// How far the log was synced when this frame was written; in format 2, where frames do
    /// not say, any intact frame counts as past any damage (a torn append cannot leave one).
    fn synced_or_any(&self, format: Format) -> u64 {
        if format.store_format >= SYNCED_FRAMES_FORMAT {
            self.synced
        } else {
            u64::MAX
        }
    }
}

fn decode_ops(name: &str, body_at: u64, body: &[u8]) -> Result<Vec<Op>> {
    let mut r = Reader::new(name, body_at, body);
    let mut ops = Vec::new();
    while r.remaining() > 0 {
        let code = r.u8()?;
        let op = match code {
            OP_PUT => {
                let (handle, tag, kind, class, block, len, payload_crc, mode) =
                    (r.u64()?, r.u16()?, r.u8()?, r.u8()?, r.u32()?, r.u32()?, r.u32()?, r.u8()?);
                let at = (r.offset() - body_at) as usize;
                let payload = match mode {
                    MODE_UNLOGGED => Payload::Unlogged,
                    MODE_WHOLE => {
                        let payload = r.take(len as usize)?;
                        if crc(payload) != payload_crc {
                            return Err(r.corrupt("logged node payload checksum mismatch"));
                        }
                        Payload::Whole { at }
                    }
                    MODE_DELTA | MODE_SPARSE => {
                        let n = super::delta::encoded_len(&body[at..], len as usize).map_err(|m| r.corrupt(m))?;
                        r.take(n)?;
                        if mode == MODE_DELTA {
                            Payload::Delta { at, len: n }
                        } else if zeros(len as usize).is_some() {
                            Payload::Sparse { at, len: n }
                        } else {
                            return Err(r.corrupt(format!("a sparse payload of {len} bytes")));
                        }
                    }
                    MODE_SCRIPT => {
                        let n = super::script::encoded_len(&body[at..], len as usize).map_err(|m| r.corrupt(m))?;
                        r.take(n)?;
                        Payload::Script { at, len: n }
                    }
                    _ => return Err(r.corrupt(format!("bad payload mode {mode}"))),
                };
                Op::Put(PutOp { handle, tag, kind, class, block, len, payload_crc, payload })
            }
            OP_FREE => Op::Free { handle: r.u64()?, tag: r.u16()? },
            OP_ROOT => {
                let name_len = r.u8()? as usize;
                let root_name = r.take(name_len)?.to_vec();
                let id = r.u64()?;
                let meta_len = r.u16()? as usize;
                Op::Root { name: root_name, id, meta: r.take(meta_len)?.to_vec() }
            }
            OP_ROOT_REMOVE => {
                let name_len = r.u8()? as usize;
                Op::RootRemove { name: r.take(name_len)?.to_vec() }
            }
            other => return Err(Error::corrupt(name, r.offset() - 1, format!("unknown log operation {other}"))),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// The log file a writer appends to (from format 5: writes over, from offset 0, the space an
/// earlier generation's log held, then appends).
pub(crate) struct LogWriter {
    file: File,
    path: std::path::PathBuf,
    name: String,
    /// Where the next frame goes: the end of this generation's frames.
    len: u64,
    /// The file's length, at least `len`: past `len`, an earlier generation's frames.
    file_len: u64,
    /// Bytes known to be on disk: synced by this writer (or found synced at open).
    synced: u64,
    salt: Salt,
    /// How long the file may grow with zeros ahead of small frames (see `zeros_ahead`).
    grow_limit: u64,
}

/// A frame this small that would extend the log writes zeros after it (at most
/// [`ZEROS_AHEAD_BYTES`], never past the writer's grow limit), so the small commits after it
/// write over blocks the file already has. Appending costs more than overwriting: on ext4 an
/// append's `fdatasync` also commits the file's new size (1.45× an overwrite), which SQLite
/// avoids by writing over its WAL. A larger frame is not a small change: its own write costs
/// more than the size's commit saved, and zeros ahead of it would double its log bytes.
const SMALL_FRAME_MAX_BYTES: usize = 4096;
/// Zeros written ahead of a small frame that extends the log: about 500 one-node commits.
const ZEROS_AHEAD_BYTES: u64 = 64 << 10;

impl LogWriter {
    /// Opens for writing after `valid_bytes`. A torn tail beyond them (`torn_bytes`, or
    /// anything at all beyond them in a log whose frames are not salted) is cut off; an
    /// earlier generation's frames are kept, to be written over.
    pub fn open(path: &Path, valid_bytes: u64, torn_bytes: u64, salt: Salt) -> Result<LogWriter> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let file = file.map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut file_len = file.metadata().map_err(|e| Error::io(format!("stat {name}"), e))?.len();
        let mut synced = 0;
        let cut = if salt.0.is_some() { torn_bytes > 0 } else { file_len != valid_bytes };
        if cut || file_len < valid_bytes {
            file.set_len(valid_bytes).map_err(|e| Error::io(format!("cut the torn tail of {name}"), e))?;
            file.sync_data().map_err(|e| Error::io(format!("sync {name}"), e))?;
            synced = valid_bytes;
            file_len = valid_bytes;
        }
        Ok(LogWriter { file, path: path.to_path_buf(), name, len: valid_bytes, file_len, synced, salt, grow_limit: 0 })
    }

    /// Lets small frames grow the file with zeros ahead of them up to `limit` bytes (the
    /// space the store keeps for its log: see `Shared::log_space_kept`); 0, the default,
    /// never.
    pub fn set_grow_limit(&mut self, limit: u64) {
        self.grow_limit = limit;
    }

    /// Makes this (an old generation's log, no longer named by the meta file) the log at
    /// `path`, empty, for frames bound to `salt`: the file is renamed over `path` and written
    /// over from offset 0. A file longer than `keep_max` bytes is cut to that, so one huge
    /// commit does not hold its log's size for the store's lifetime. An error means the
    /// rename failed and nothing changed. The caller syncs the
    /// directory before the first frame: after a power cut, the frames must be found under
    /// the new name.
    pub fn reuse_as(&mut self, path: &Path, salt: Salt, keep_max: u64) -> Result<()> {
        std::fs::rename(&self.path, path).map_err(|e| Error::io(format!("rename {} for reuse", self.name), e))?;
        self.path = path.to_path_buf();
        self.name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (self.len, self.synced, self.salt) = (0, 0, salt);
        // Past the rename this is the log: a failure from here on must not make the caller
        // fall back to the fresh file, whose name the rename took. A cut that fails costs
        // only space.
        if self.file_len > keep_max {
            let cut = crate::os::simulated_cut_failure(&self.path).and_then(|()| self.file.set_len(keep_max));
            if cut.is_ok() {
                self.file_len = keep_max;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The file's length: the frames and the space kept past them for reuse.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Cuts the file back to its frames: the space kept for reuse goes back to the file
    /// system (at a close, and after a compaction).
    pub fn give_back_unused(&mut self) -> Result<()> {
        if self.file_len > self.len {
            self.file.set_len(self.len).map_err(|e| Error::io(format!("cut {}", self.name), e))?;
            self.file_len = self.len;
        }
        Ok(())
    }

    /// Bytes known to be on disk, for the next frame's header.
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// What the next frame's header is bound to.
    pub fn salt(&self) -> Salt {
        self.salt
    }

    /// Writes a frame after the last. On failure the file is cut back to where it was, so the log never
    /// holds a partial frame in front of later ones; if even that fails, the error says so
    /// and the caller must stop using the store. A small frame that extends the file writes
    /// zeros after itself (`zeros_ahead`); when they do not fit, the frame is written alone.
    pub fn append(&mut self, frame: &[&[u8]]) -> std::result::Result<(), (Error, bool)> {
        let len: usize = frame.iter().map(|p| p.len()).sum();
        let ahead = self.zeros_ahead(len);
        if ahead > 0 {
            let mut with_zeros = frame.to_vec();
            with_zeros.push(&ZEROS[..ahead]);
            match self.write_at_end(&with_zeros, len) {
                Ok(()) => return Ok(()),
                Err(e) => self.cut_back().map_err(|_| (e, false))?,
            }
        }
        if let Err(e) = self.write_at_end(frame, len) {
            let cut_back = self.cut_back().is_ok();
            return Err((e, cut_back));
        }
        Ok(())
    }

    /// `append` and `sync` in one system call (`RWF_DSYNC`), where that does what both would:
    /// every frame before is on disk already (a range's sync writes back that range only, an
    /// `fdatasync` every dirty page of the file) and the frame goes over space the file holds
    /// (no size to make durable, no zeros ahead, no block to allocate: a full disk cannot
    /// fail it). `Ok(false)`: not taken, nothing written; `append` and `sync` then. An error
    /// may have left any part of the frame on disk or not, as a failed sync does: the caller
    /// must stop.
    pub fn append_synced(&mut self, frame: &[&[u8]]) -> Result<bool> {
        let len: usize = frame.iter().map(|p| p.len()).sum();
        let overwrite = self.len + len as u64 <= self.file_len;
        // A test's full disk and failing syncs are met by `append` and `sync`, as every other
        // write meets them.
        let simulated_failure =
            crate::os::reserve(&self.path, 0).is_err() || crate::os::simulated_sync_failure(&self.path).is_err();
        if self.synced != self.len || !overwrite || simulated_failure {
            return Ok(false);
        }
        match crate::os::write_all_vectored_at_synced(&self.file, frame, self.len) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.len += len as u64;
                self.synced = self.len;
                Ok(true)
            }
            Err(e) => Err(Error::io(format!("append to and sync {}", self.name), e)),
        }
    }

    /// Zero bytes to write after a frame of `frame_len` bytes at the end: some when the frame
    /// is small and extends the file, and the grow limit leaves room.
    fn zeros_ahead(&self, frame_len: usize) -> usize {
        let end = self.len + frame_len as u64;
        if frame_len > SMALL_FRAME_MAX_BYTES || end <= self.file_len || end >= self.grow_limit {
            return 0;
        }
        (self.grow_limit - end).min(ZEROS_AHEAD_BYTES) as usize
    }

    /// Writes `pieces` at the end of the frames; the first `frame_len` bytes are the frame.
    fn write_at_end(&mut self, pieces: &[&[u8]], frame_len: usize) -> Result<()> {
        let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        crate::os::reserve(&self.path, (self.len + total).saturating_sub(self.file_len))
            .and_then(|_| crate::os::write_all_vectored_at(&self.file, pieces, self.len))
            .map_err(|e| Error::io(format!("append to {}", self.name), e))?;
        self.file_len = self.file_len.max(self.len + total);
        self.len += frame_len as u64;
        Ok(())
    }

    /// Cuts the file back to the end of the frames after a failed write.
    fn cut_back(&mut self) -> std::io::Result<()> {
        crate::os::simulated_cut_failure(&self.path)?;
        self.file.set_len(self.len)?;
        self.file_len = self.len;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        crate::os::simulated_sync_failure(&self.path)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(format!("sync {}", self.name), e))?;
        self.synced = self.len;
        Ok(())
    }
}

/// The offsets where a log's frames end, following each header's body length from offset 0
/// while a header is there: what tests that cut or extend a log by hand take as its end (the
/// file may go on past it, with space kept or zeros written ahead).
#[cfg(test)]
pub(crate) fn frame_ends(log: &[u8]) -> Vec<u64> {
    let mut ends = Vec::new();
    let mut pos = 0usize;
    while pos + FRAME_HEADER_BYTES <= log.len() && log[pos..pos + 4] == FRAME_MAGIC.to_le_bytes() {
        let len = u32::from_le_bytes(log[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if pos + FRAME_HEADER_BYTES + len > log.len() {
            break;
        }
        pos += FRAME_HEADER_BYTES + len;
        ends.push(pos as u64);
    }
    ends
}

/// The log file at `path` cut to its frames' end (`frame_ends`), as a close leaves it.
#[cfg(test)]
pub(crate) fn cut_to_frames(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(frame_ends(&bytes).last().map_or(0, |&e| e as usize));
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The magic's offsets, found eight bytes at a time, are exactly those a look at every
    /// offset finds: at any alignment, overlapping the end, after any start.
    #[test]
    fn the_magic_is_found_at_every_offset_that_holds_it() {
        let mut rng = crate::test_rng::TestRng::new(17);
        for round in 0..200 {
            let len = (rng.next() % 300) as usize;
            // Few distinct bytes, so the magic's first byte and near misses are common.
            let mut data: Vec<u8> = (0..len).map(|_| b"PCWFx\0"[(rng.next() % 6) as usize]).collect();
            for _ in 0..(rng.next() % 4) {
                if len >= 4 {
                    let at = (rng.next() as usize) % (len - 3);
                    data[at..at + 4].copy_from_slice(b"PCWF");
                }
            }
            let from = if len == 0 { 0 } else { (rng.next() as usize) % (len + 1) };
            let naive: Vec<usize> = (from..len.saturating_sub(3)).filter(|&p| &data[p..p + 4] == b"PCWF").collect();
            let mut found = Vec::new();
            for_each_magic(&data, from, |p| {
                found.push(p);
                Ok(())
            })
            .unwrap();
            assert_eq!(found, naive, "round {round}");
        }
    }

    /// The format and generation the tests' logs are written in.
    const F: u32 = SALTED_FRAMES_FORMAT;
    const G: u64 = 1;

    fn salt() -> Salt {
        Salt::new(F, G)
    }

    fn sample_frame(epoch: u64) -> Vec<u8> {
        let mut b = FrameBuilder::default();
        let payload = b"payload!";
        let p = PutOp {
            handle: 5,
            tag: 2,
            kind: 3,
            class: 0,
            block: 9,
            len: 8,
            payload_crc: crc(payload),
            payload: Payload::Unlogged,
        };
        b.put(&p, Some(payload));
        b.free(7, 1);
        b.root(b"main", 42, b"mbr");
        b.root_remove(b"btree:gone");
        b.finish(epoch, 0, salt())
    }

    /// A writer's next frame is built in the last one's buffer (no fresh allocation per commit)
    /// and comes out byte for byte as from a fresh builder; a buffer past the kept maximum is
    /// given back instead.
    #[test]
    fn a_frame_buffer_is_reused_and_the_frame_unchanged() {
        let build = |b: &mut FrameBuilder| {
            b.free(7, 1);
            b.root(b"main", 42, b"mbr");
        };
        let mut fresh = FrameBuilder::with_capacity(64);
        build(&mut fresh);
        let mut want = fresh.finish_parts(3);
        let want = want.pieces(0, salt(), |_, _| unreachable!()).concat();

        let mut first = FrameBuilder::with_capacity(1 << 16);
        first.free(1, 1);
        let buffer = first.finish_parts(2).into_buffer();
        let (address, capacity) = (buffer.as_ptr(), buffer.capacity());
        let mut reused = FrameBuilder::with_buffer(buffer, 64);
        build(&mut reused);
        let mut parts = reused.finish_parts(3);
        assert_eq!(parts.pieces(0, salt(), |_, _| unreachable!()).concat(), want);
        let buffer = parts.into_buffer();
        assert_eq!((buffer.as_ptr(), buffer.capacity()), (address, capacity), "the same allocation");

        let huge = FrameBuilder::with_capacity(FRAME_BUFFER_KEPT_MAX_BYTES + 1).finish_parts(4);
        assert_eq!(huge.into_buffer().capacity(), 0, "a huge commit's buffer is not kept");
    }

    /// Two frames, the second written after the first was synced (STRICT's pattern).
    fn synced_pair() -> (Vec<u8>, usize) {
        let mut log = sample_frame(1);
        let first_len = log.len();
        let mut b = FrameBuilder::default();
        b.free(7, 1);
        log.extend(b.finish(2, first_len as u64, salt()));
        (log, first_len)
    }

    fn temp_log(bytes: &[u8]) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pcore-wal-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("wal-1.log");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn frames_round_trip() {
        let mut log = sample_frame(1);
        log.extend(sample_frame(2));
        let c = read_log(&temp_log(&log), "wal", 1, F, G).unwrap();
        assert_eq!(c.frames.len(), 2);
        assert_eq!(c.valid_bytes, log.len() as u64);
        let f = &c.frames[1];
        assert_eq!(f.epoch, 2);
        assert_eq!(f.ops.len(), 4);
        match &f.ops[0] {
            Op::Put(PutOp { payload: Payload::Whole { at }, .. }) => assert_eq!(&f.body[*at..][..8], b"payload!"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.ops[2], Op::Root { name: b"main".to_vec(), id: 42, meta: b"mbr".to_vec() });
        assert_eq!(f.ops[3], Op::RootRemove { name: b"btree:gone".to_vec() });
    }

    #[test]
    fn a_frame_with_payloads_in_place_is_the_frame_with_them_copied() {
        // Many payloads of assorted sizes (more than one pwritev's worth of pieces), left in
        // place or copied: the same bytes, the same CRCs, and the log reads them back.
        let payloads: Vec<Vec<u8>> =
            (0..1500u32).map(|i| (0..(i * 7) % 300).map(|b| (b ^ i) as u8).collect()).collect();
        let (mut copied, mut in_place) = (FrameBuilder::default(), FrameBuilder::default());
        for (i, p) in payloads.iter().enumerate() {
            let op = PutOp {
                handle: i as u64 + 1,
                tag: 1,
                kind: 1,
                class: 0,
                block: i as u32,
                len: p.len() as u32,
                payload_crc: crc(p),
                payload: Payload::Unlogged,
            };
            copied.put(&op, Some(p));
            in_place.put_in_place(&op, Loc { class: 0, block: i as u32 });
            if i % 100 == 0 {
                copied.root(b"r", i as u64, b"m");
                in_place.root(b"r", i as u64, b"m");
            }
        }
        let expected = copied.finish(4, 0, salt());
        let mut parts = in_place.finish_parts(4);
        let pieces = parts.pieces(0, salt(), |loc, len| &payloads[loc.block as usize][..len]);
        assert_eq!(pieces.concat(), expected);
        let path = temp_log(&[]);
        let mut log = LogWriter::open(&path, 0, 0, salt()).unwrap();
        log.append(&pieces).map_err(|(e, _)| e).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let c = read_log(&path, "wal", 4, F, G).unwrap();
        assert_eq!(c.frames.len(), 1);
        assert_eq!(c.frames[0].ops.len(), payloads.len() + 15);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length() {
        let one = sample_frame(1);
        let two = sample_frame(2);
        for cut in 0..two.len() {
            let mut log = one.clone();
            log.extend_from_slice(&two[..cut]);
            let c = read_log(&temp_log(&log), "wal", 1, F, G).unwrap();
            assert_eq!(c.frames.len(), 1, "cut at {cut}");
            assert_eq!(c.valid_bytes, one.len() as u64);
        }
    }

    #[test]
    fn damage_before_a_frame_that_records_it_synced_is_corrupt_not_skipped() {
        let (log, first_len) = synced_pair();
        for at in [3usize, 10, 30, first_len - 1] {
            let mut bad = log.clone();
            bad[at] ^= 0x40;
            let r = read_log(&temp_log(&bad), "wal", 1, F, G);
            assert!(matches!(r, Err(Error::Corrupt { .. })), "flip at {at}: {:?}", r.map(|c| c.frames.len()));
        }
    }

    /// After a power cut, an append's pages reach the disk in any order: a first frame lost
    /// while a later one survived is a torn tail when nothing says the log was synced past it.
    #[test]
    fn damage_before_frames_that_were_never_synced_is_a_torn_tail() {
        let mut log = sample_frame(1);
        let first_len = log.len();
        log.extend(sample_frame(2)); // written with nothing synced (BALANCED, between syncs)
        for (at, valid) in [(3usize, 0usize), (30, 0), (first_len + 3, first_len), (first_len + 30, first_len)] {
            let mut bad = log.clone();
            bad[at] ^= 0x40;
            let c = read_log(&temp_log(&bad), "wal", 1, F, G).unwrap();
            assert_eq!(c.valid_bytes, valid as u64, "flip at {at}");
        }
        // A whole page of zeros where the first frame was: the same.
        let mut zeroed = log.clone();
        zeroed[..first_len].fill(0);
        assert_eq!(read_log(&temp_log(&zeroed), "wal", 1, F, G).unwrap().valid_bytes, 0);
    }

    #[test]
    fn format_2_frames_are_read_and_any_intact_frame_after_damage_is_corrupt() {
        // A format 2 frame: the header without the synced length.
        let v2 = |frame: Vec<u8>| {
            let mut h = frame[..16].to_vec();
            h.extend_from_slice(&frame[24..28]);
            let c = crc(&h);
            h.extend_from_slice(&c.to_le_bytes());
            [h, frame[FRAME_HEADER_BYTES..].to_vec()].concat()
        };
        let mut log = v2(sample_frame(1));
        let first_len = log.len();
        log.extend(v2(sample_frame(2)));
        let c = read_log(&temp_log(&log), "wal", 1, 2, G).unwrap();
        assert_eq!((c.frames.len(), c.valid_bytes), (2, log.len() as u64));
        let mut bad = log.clone();
        bad[first_len - 1] ^= 1;
        assert!(matches!(read_log(&temp_log(&bad), "wal", 1, 2, G), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn an_epoch_gap_is_corrupt() {
        let mut log = sample_frame(1);
        log.extend(sample_frame(3));
        assert!(matches!(read_log(&temp_log(&log), "wal", 1, F, G), Err(Error::Corrupt { .. })));
    }
    /// Frames of generation `g` (epochs `from..from + n`), each written after the one before
    /// was synced (STRICT), starting at log offset `at`.
    fn frames_of(g: u64, from: u64, n: u64, at: usize) -> Vec<u8> {
        let mut log = Vec::new();
        for e in from..from + n {
            let mut b = FrameBuilder::default();
            b.free(e, 1);
            b.root(b"main", e, &vec![(g as u8).wrapping_mul(37) ^ 0x5a; 20 + g as usize]);
            log.extend(b.finish(e, (at + log.len()) as u64, Salt::new(F, g)));
        }
        log
    }

    /// A reused log: generation 2's frames written from offset 0 over generation 1's.
    fn over(old: &[u8], new: &[u8]) -> Vec<u8> {
        let mut log = old.to_vec();
        log.resize(log.len().max(new.len()), 0);
        log[..new.len()].copy_from_slice(new);
        log
    }

    /// A checkpoint renamed generation 1's log to generation 2's and wrote frames over it: the
    /// old frames past the new ones' end read as nothing (no commit, no damage, no torn tail),
    /// even though every one of them is intact and records the log as synced far past it.
    #[test]
    fn stale_frames_of_the_previous_generation_after_the_end_are_not_commits() {
        let old = frames_of(1, 1, 40, 0);
        for n in [0u64, 1, 5, 39] {
            let new = frames_of(2, 41, n, 0);
            let log = over(&old, &new);
            let c = read_log(&temp_log(&log), "wal", 41, F, 2).unwrap();
            assert_eq!(c.frames.len() as u64, n, "{n} frames");
            assert_eq!((c.valid_bytes, c.torn_bytes), (new.len() as u64, 0), "{n} frames");
        }
        // Read as generation 1 (a meta that names it), the same bytes are generation 1's log
        // with damage where the new frames lie: refused, since later frames were synced.
        let log = over(&old, &frames_of(2, 41, 3, 0));
        assert!(matches!(read_log(&temp_log(&log), "wal", 1, F, 1), Err(Error::Corrupt { .. })));
    }

    /// A kill while generation 2's next frame was written over generation 1's: cut at every
    /// length, the frames before it are the log, the partial frame a torn tail (cut by a
    /// writer's open when its header made it), never a commit and never damage.
    #[test]
    fn a_torn_tail_over_old_frames_is_a_torn_tail_at_every_length() {
        let old = frames_of(1, 1, 30, 0);
        let before = frames_of(2, 31, 2, 0);
        let next = frames_of(2, 33, 1, before.len());
        for cut in 0..next.len() {
            let log = over(&old, &[before.clone(), next[..cut].to_vec()].concat());
            let c = read_log(&temp_log(&log), "wal", 31, F, 2).unwrap();
            assert_eq!((c.frames.len(), c.valid_bytes), (2, before.len() as u64), "cut at {cut}");
            assert_eq!(c.torn_bytes > 0, cut >= FRAME_HEADER_BYTES, "cut at {cut}: torn only with its header");
        }
        // Damage in a frame a later frame records as synced is still damage, over old frames too.
        let mut log = over(&old, &[before.clone(), next.clone()].concat());
        log[5] ^= 1;
        assert!(matches!(read_log(&temp_log(&log), "wal", 31, F, 2), Err(Error::Corrupt { .. })));
    }

    /// A writer's open keeps an earlier generation's frames (space to write over: a STRICT
    /// commit then changes no file size) and cuts a torn tail of its own generation (a later
    /// frame of it, left beyond a shorter new one, would read as the next commit).
    #[test]
    fn a_writer_keeps_old_frames_to_write_over_and_cuts_its_own_torn_tail() {
        let old = frames_of(1, 1, 30, 0);
        let path = temp_log(&old);
        let c = read_log(&path, "wal", 31, F, 2).unwrap();
        let mut w = LogWriter::open(&path, c.valid_bytes, c.torn_bytes, Salt::new(F, 2)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), old.len() as u64, "old frames kept");
        let new = frames_of(2, 31, 2, 0);
        w.append(&[&new]).map_err(|(e, _)| e).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), old.len() as u64, "written over, not appended");
        assert_eq!(read_log(&path, "wal", 31, F, 2).unwrap().frames.len(), 2);

        let torn = over(&old, &[new.clone(), frames_of(2, 33, 1, new.len())[..40].to_vec()].concat());
        let path = temp_log(&torn);
        let c = read_log(&path, "wal", 31, F, 2).unwrap();
        LogWriter::open(&path, c.valid_bytes, c.torn_bytes, Salt::new(F, 2)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), new.len() as u64, "the torn frame cut");
    }

    /// A frame is written and synced in one call only over space the file holds and after
    /// every earlier frame was synced; otherwise nothing is written and `append` + `sync`
    /// take it. The log reads the same either way.
    #[test]
    fn a_frame_is_synced_in_its_write_only_over_held_space_after_a_sync() {
        let path = temp_log(&[]);
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let mut w = LogWriter::open(&path, 0, 0, Salt::new(F, 2)).unwrap();
        w.set_grow_limit(1 << 20);
        let mut log = frames_of(2, 1, 1, 0);
        assert!(!w.append_synced(&[&log]).unwrap(), "not over held space: the file is empty");
        assert_eq!((w.len(), file_len()), (0, 0), "nothing written");
        w.append(&[&log]).map_err(|(e, _)| e).unwrap();
        let held = file_len();
        assert!(held > log.len() as u64, "zeros written ahead");

        let second = frames_of(2, 2, 1, log.len());
        assert!(!w.append_synced(&[&second]).unwrap(), "the first frame is not synced yet");
        assert_eq!(w.len(), log.len() as u64);
        w.sync().unwrap();
        assert!(w.append_synced(&[&second]).unwrap(), "over held space, after a sync");
        log.extend(second);
        assert_eq!((w.len(), w.synced(), file_len()), (log.len() as u64, log.len() as u64, held));
        let third = frames_of(2, 3, 1, log.len());
        assert!(w.append_synced(&[&third]).unwrap());
        log.extend(third);
        let c = read_log(&path, "wal", 1, F, 2).unwrap();
        assert_eq!((c.frames.len(), c.valid_bytes), (3, log.len() as u64));
        assert_eq!(std::fs::read(&path).unwrap()[..log.len()], log[..]);
    }

    /// A small frame that extends the log writes zeros ahead of itself, up to the grow limit,
    /// so the small frames after it write over the file's blocks instead of extending it; the
    /// log reads as its frames, and a writer opening it after a kill keeps the zeros. A frame
    /// over `SMALL_FRAME_MAX_BYTES`, or a writer with no grow limit, appends alone.
    #[test]
    fn small_frames_that_extend_the_log_write_zeros_ahead_up_to_the_grow_limit() {
        let path = temp_log(&[]);
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let mut log = Vec::new();
        let append = |w: &mut LogWriter, log: &mut Vec<u8>| {
            let epoch = 1 + read_log(&path, "wal", 1, F, 2).unwrap().frames.len() as u64;
            let frame = frames_of(2, epoch, 1, log.len());
            w.append(&[&frame]).map_err(|(e, _)| e).unwrap();
            log.extend(frame);
        };
        let mut w = LogWriter::open(&path, 0, 0, Salt::new(F, 2)).unwrap();
        append(&mut w, &mut log);
        assert_eq!(file_len(), log.len() as u64, "no grow limit: the frame alone");

        let limit = log.len() as u64 + ZEROS_AHEAD_BYTES + 1000;
        w.set_grow_limit(limit);
        append(&mut w, &mut log);
        let grown = log.len() as u64 + ZEROS_AHEAD_BYTES;
        assert_eq!(file_len(), grown, "zeros written ahead of the small frame");
        while (log.len() as u64) + 200 < grown {
            append(&mut w, &mut log);
            assert_eq!(file_len(), grown, "written over the zeros, not appended");
        }
        let c = read_log(&path, "wal", 1, F, 2).unwrap();
        assert_eq!((c.valid_bytes, c.torn_bytes), (log.len() as u64, 0), "the zeros are neither frames nor torn");
        assert_eq!(std::fs::read(&path).unwrap()[..log.len()], log[..]);

        let mut w = LogWriter::open(&path, c.valid_bytes, c.torn_bytes, Salt::new(F, 2)).unwrap();
        assert_eq!(file_len(), grown, "a writer's open keeps the zeros to write over");
        w.set_grow_limit(limit);
        while file_len() == grown {
            append(&mut w, &mut log);
        }
        assert_eq!(file_len(), limit, "zeros stop at the grow limit");
        assert_eq!(read_log(&path, "wal", 1, F, 2).unwrap().valid_bytes, log.len() as u64);

        let big = vec![7u8; SMALL_FRAME_MAX_BYTES + 1];
        let before = file_len();
        w.append(&[&big]).map_err(|(e, _)| e).unwrap();
        assert_eq!(file_len(), before.max(w.len()), "a large frame is written alone");
    }

    /// Zeros ahead of a frame are space the store may do without: on a disk with room for the
    /// frame but not for the zeros, the frame is written alone, not refused.
    #[test]
    fn a_frame_with_no_room_for_zeros_ahead_is_written_alone() {
        let path = temp_log(&[]);
        let dir = path.parent().unwrap().to_path_buf();
        let mut w = LogWriter::open(&path, 0, 0, Salt::new(F, 2)).unwrap();
        w.set_grow_limit(1 << 20);
        let frame = frames_of(2, 1, 1, 0);
        crate::os::simulate_disk_limit(&dir, Some(frame.len() as u64 + 100));
        let appended = w.append(&[&frame]).map_err(|(e, _)| e);
        crate::os::simulate_disk_limit(&dir, None);
        appended.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), frame.len() as u64);
        assert_eq!(read_log(&path, "wal", 1, F, 2).unwrap().frames.len(), 1);
    }

    /// The previous format's frames (unsalted) left in a reused log read as nothing either.
    #[test]
    fn unsalted_frames_of_format_4_are_not_frames_of_a_salted_log() {
        let mut old = Vec::new();
        for e in 1..10 {
            let mut b = FrameBuilder::default();
            b.free(e, 1);
            old.extend(b.finish(e, old.len() as u64, Salt::new(4, 1)));
        }
        assert_eq!(read_log(&temp_log(&old), "wal", 1, 4, 1).unwrap().frames.len(), 9);
        let c = read_log(&temp_log(&old), "wal", 10, F, 2).unwrap();
        assert_eq!((c.frames.len(), c.valid_bytes, c.torn_bytes), (0, 0, 0));
    }
}
