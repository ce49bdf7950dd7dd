//! The write-ahead log: one frame per commit, appended and (by durability mode) synced.
//!
//! Frame layout, little-endian:
//! ```text
//! 0   u32 magic "PCWF"
//! 4   u32 body length
//! 8   u64 epoch (each frame's epoch is the previous one's + 1)
//! 16  u32 CRC32C of the body
//! 20  u32 CRC32C of bytes 0..20
//! 24  body: operations, each starting with a one-byte code
//!     PUT  1: u64 handle, u16 tag, u8 kind, u8 class, u32 block, u32 len, u32 payload CRC,
//!             u8 inline, then `len` payload bytes when inline = 1
//!     FREE 2: u64 handle, u16 tag
//!     ROOT 3: u8 name length, name, u64 node id, u16 meta length, meta
//!     ROOT_REMOVE 4: u8 name length, name (the root is gone: a dropped B+ tree's anchor)
//! ```
//! A frame is committed when all of it is on disk. At recovery, frames are read in order up to
//! the first that is incomplete or whose checksum fails at the end of the file (a torn tail,
//! cut off); a bad frame followed by more data is corruption, reported, never skipped.

use super::codec::{crc, Reader, Writer};
use crate::alloc::Loc;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::path::Path;

const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"PCWF");
pub(crate) const FRAME_HEADER_BYTES: usize = 24;

const OP_PUT: u8 = 1;
/// A PUT's fixed fields: code, handle, tag, kind, class, block, len, payload CRC, inline flag.
const PUT_HEADER_BYTES: usize = 1 + 8 + 2 + 1 + 1 + 4 + 4 + 4 + 1;
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
    /// Offset of the inline payload within the frame body, when the payload is logged.
    pub payload_at: Option<usize>,
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
}

/// A finished frame: its bytes, with the payloads left in place still to be spliced in at
/// their offsets (see [`FrameParts::pieces`]), and its header still to be completed there.
pub(crate) struct FrameParts {
    bytes: Vec<u8>,
    in_place: Vec<(usize, Loc, usize)>,
    epoch: u64,
}

impl FrameParts {
    /// The frame as pieces to write in order; `read` gives a payload's bytes where they lie.
    /// The header's body CRC is computed here, over the pieces themselves.
    pub fn pieces<'a>(&'a mut self, read: impl Fn(Loc, usize) -> &'a [u8]) -> Vec<&'a [u8]> {
        let mut body_crc = 0u32;
        let mut from = FRAME_HEADER_BYTES;
        for &(at, loc, len) in &self.in_place {
            body_crc = crc32c::crc32c_append(body_crc, &self.bytes[from..at]);
            body_crc = crc32c::crc32c_append(body_crc, read(loc, len));
            from = at;
        }
        body_crc = crc32c::crc32c_append(body_crc, &self.bytes[from..]);
        let body_len = self.bytes.len() - FRAME_HEADER_BYTES + self.in_place.iter().map(|p| p.2).sum::<usize>();
        write_frame_header(&mut self.bytes, body_len, self.epoch, body_crc);
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

fn write_frame_header(frame: &mut [u8], body_len: usize, epoch: u64, body_crc: u32) {
    let mut h = Writer::default();
    h.u32(FRAME_MAGIC);
    h.u32(u32::try_from(body_len).expect("a commit frame under 4 GiB"));
    h.u64(epoch);
    h.u32(body_crc);
    let hc = crc(&h.buf);
    h.u32(hc);
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&h.buf);
}

impl Default for FrameBuilder {
    fn default() -> FrameBuilder {
        FrameBuilder::with_capacity(0)
    }
}

impl FrameBuilder {
    /// A builder whose buffer holds `body_bytes` of operations without growing.
    pub fn with_capacity(body_bytes: usize) -> FrameBuilder {
        let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body_bytes);
        buf.resize(FRAME_HEADER_BYTES, 0);
        FrameBuilder { body: Writer { buf }, in_place: Vec::new(), ops: 0 }
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
        self.put_header(p, payload.is_some());
        if let Some(bytes) = payload {
            debug_assert_eq!(bytes.len(), p.len as usize);
            self.body.bytes(bytes);
        }
    }

    /// A PUT whose logged payload (`p.len` bytes) stays at `loc` until the frame is written.
    pub fn put_in_place(&mut self, p: &PutOp, loc: Loc) {
        self.put_header(p, true);
        self.in_place.push((self.body.buf.len(), loc, p.len as usize));
    }

    fn put_header(&mut self, p: &PutOp, inline: bool) {
        let w = &mut self.body;
        let start = w.buf.len();
        w.u8(OP_PUT);
        w.u64(p.handle);
        w.u16(p.tag);
        w.u8(p.kind);
        w.u8(p.class);
        w.u32(p.block);
        w.u32(p.len);
        w.u32(p.payload_crc);
        w.u8(inline as u8);
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
    pub fn finish(self, epoch: u64) -> Vec<u8> {
        assert!(self.in_place.is_empty(), "a frame with payloads in place is finished by finish_parts");
        let mut frame = self.body.buf;
        let (body_crc, body_len) = (crc(&frame[FRAME_HEADER_BYTES..]), frame.len() - FRAME_HEADER_BYTES);
        write_frame_header(&mut frame, body_len, epoch, body_crc);
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
}

/// Reads every committed frame. `first_epoch` is the epoch the first frame must carry.
pub(crate) fn read_log(path: &Path, name: &str, first_epoch: u64) -> Result<LogContents> {
    let data = std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let mut expected_epoch = first_epoch;
    while let Some(end) = frame_end(&data, pos) {
        let header = &data[pos..pos + FRAME_HEADER_BYTES];
        let mut r = Reader::new(name, pos as u64, header);
        let (_, body_len, epoch, body_crc) = (r.u32()?, r.u32()? as usize, r.u64()?, r.u32()?);
        let body = &data[pos + FRAME_HEADER_BYTES..end];
        debug_assert_eq!(body.len(), body_len);
        if crc(body) != body_crc {
            if end == data.len() || data[end..].iter().all(|&b| b == 0) {
                break; // torn tail: the last frame's body never fully reached the disk
            }
            return Err(Error::corrupt(
                name,
                pos as u64,
                "commit frame body checksum mismatch, with more frames after it",
            ));
        }
        if epoch != expected_epoch {
            return Err(Error::corrupt(
                name,
                pos as u64 + 8,
                format!("frame epoch {epoch}, expected {expected_epoch}"),
            ));
        }
        let body_at = (pos + FRAME_HEADER_BYTES) as u64;
        let ops = decode_ops(name, body_at, body)?;
        frames.push(Frame { epoch, body_at, body: body.to_vec(), ops });
        expected_epoch += 1;
        pos = end;
    }
    if pos < data.len() && !data[pos..].iter().all(|&b| b == 0) && complete_header_follows(&data, pos) {
        return Err(Error::corrupt(name, pos as u64, "commit frame header damaged, with more log after it"));
    }
    Ok(LogContents { frames, valid_bytes: pos as u64 })
}

/// The end of the frame starting at `pos`, if its header is intact and its body is all there.
fn frame_end(data: &[u8], pos: usize) -> Option<usize> {
    let header = data.get(pos..pos + FRAME_HEADER_BYTES)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != FRAME_MAGIC || crc(&header[..20]) != word(20) {
        return None;
    }
    let end = pos + FRAME_HEADER_BYTES + word(4) as usize;
    (end <= data.len()).then_some(end)
}

/// True when a damaged header at `pos` is followed by at least one intact frame header later,
/// which a torn append can never produce.
fn complete_header_follows(data: &[u8], pos: usize) -> bool {
    (pos + 1..data.len().saturating_sub(FRAME_HEADER_BYTES - 1)).any(|p| {
        let h = &data[p..p + FRAME_HEADER_BYTES];
        h[..4] == FRAME_MAGIC.to_le_bytes() && crc(&h[..20]).to_le_bytes() == h[20..24]
    })
}

fn decode_ops(name: &str, body_at: u64, body: &[u8]) -> Result<Vec<Op>> {
    let mut r = Reader::new(name, body_at, body);
    let mut ops = Vec::new();
    while r.remaining() > 0 {
        let code = r.u8()?;
        let op = match code {
            OP_PUT => {
                let (handle, tag, kind, class, block, len, payload_crc, inline) =
                    (r.u64()?, r.u16()?, r.u8()?, r.u8()?, r.u32()?, r.u32()?, r.u32()?, r.u8()?);
                let payload_at = match inline {
                    0 => None,
                    1 => {
                        let at = (r.offset() - body_at) as usize;
                        let payload = r.take(len as usize)?;
                        if crc(payload) != payload_crc {
                            return Err(r.corrupt("logged node payload checksum mismatch"));
                        }
                        Some(at)
                    }
                    _ => return Err(r.corrupt(format!("bad inline flag {inline}"))),
                };
                Op::Put(PutOp { handle, tag, kind, class, block, len, payload_crc, payload_at })
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

/// The log file a writer appends to.
pub(crate) struct LogWriter {
    file: File,
    path: std::path::PathBuf,
    name: String,
    len: u64,
}

impl LogWriter {
    /// Opens for appending after `valid_bytes`, cutting off a torn tail beyond them.
    pub fn open(path: &Path, valid_bytes: u64) -> Result<LogWriter> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let file = file.map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let on_disk = file.metadata().map_err(|e| Error::io(format!("stat {name}"), e))?.len();
        if on_disk != valid_bytes {
            file.set_len(valid_bytes).map_err(|e| Error::io(format!("cut the torn tail of {name}"), e))?;
            file.sync_data().map_err(|e| Error::io(format!("sync {name}"), e))?;
        }
        Ok(LogWriter { file, path: path.to_path_buf(), name, len: valid_bytes })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends a frame. On failure the file is cut back to where it was, so the log never
    /// holds a partial frame in front of later ones; if even that fails, the error says so
    /// and the caller must stop using the store.
    pub fn append(&mut self, frame: &[&[u8]]) -> std::result::Result<(), (Error, bool)> {
        let len: usize = frame.iter().map(|p| p.len()).sum();
        let written = crate::os::reserve(&self.path, len as u64)
            .and_then(|_| crate::os::write_all_vectored_at(&self.file, frame, self.len));
        match written {
            Ok(()) => {
                self.len += len as u64;
                Ok(())
            }
            Err(e) => {
                let err = Error::io(format!("append to {}", self.name), e);
                let cut_back = self.file.set_len(self.len).is_ok();
                Err((err, cut_back))
            }
        }
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(format!("sync {}", self.name), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            payload_at: None,
        };
        b.put(&p, Some(payload));
        b.free(7, 1);
        b.root(b"main", 42, b"mbr");
        b.root_remove(b"btree:gone");
        b.finish(epoch)
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
        let c = read_log(&temp_log(&log), "wal", 1).unwrap();
        assert_eq!(c.frames.len(), 2);
        assert_eq!(c.valid_bytes, log.len() as u64);
        let f = &c.frames[1];
        assert_eq!(f.epoch, 2);
        assert_eq!(f.ops.len(), 4);
        match &f.ops[0] {
            Op::Put(p) => assert_eq!(&f.body[p.payload_at.unwrap()..][..8], b"payload!"),
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
                payload_at: None,
            };
            copied.put(&op, Some(p));
            in_place.put_in_place(&op, Loc { class: 0, block: i as u32 });
            if i % 100 == 0 {
                copied.root(b"r", i as u64, b"m");
                in_place.root(b"r", i as u64, b"m");
            }
        }
        let expected = copied.finish(4);
        let mut parts = in_place.finish_parts(4);
        let pieces = parts.pieces(|loc, len| &payloads[loc.block as usize][..len]);
        assert_eq!(pieces.concat(), expected);
        let path = temp_log(&[]);
        let mut log = LogWriter::open(&path, 0).unwrap();
        log.append(&pieces).map_err(|(e, _)| e).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let c = read_log(&path, "wal", 4).unwrap();
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
            let c = read_log(&temp_log(&log), "wal", 1).unwrap();
            assert_eq!(c.frames.len(), 1, "cut at {cut}");
            assert_eq!(c.valid_bytes, one.len() as u64);
        }
    }

    #[test]
    fn damage_before_the_last_frame_is_corrupt_not_skipped() {
        let mut log = sample_frame(1);
        let first_len = log.len();
        log.extend(sample_frame(2));
        for at in [3usize, 10, 30, first_len - 1] {
            let mut bad = log.clone();
            bad[at] ^= 0x40;
            let r = read_log(&temp_log(&bad), "wal", 1);
            assert!(matches!(r, Err(Error::Corrupt { .. })), "flip at {at}: {:?}", r.map(|c| c.frames.len()));
        }
    }

    #[test]
    fn an_epoch_gap_is_corrupt() {
        let mut log = sample_frame(1);
        log.extend(sample_frame(3));
        assert!(matches!(read_log(&temp_log(&log), "wal", 1), Err(Error::Corrupt { .. })));
    }
}
