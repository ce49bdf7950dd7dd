//! Edit scripts: a node's new version as the writes and moves that made it from its committed
//! version, recorded while the node is edited (a B+ tree insert into a leaf: the cell written,
//! the slots after it moved up, the new slot and the header written). A commit logs a node's
//! script as it stands instead of searching the node and its base for what differs: the
//! delta encoder was 88 % of the commit's instructions in statement-sized commits
//! (docs/LOG.md, "Edit scripts").
//!
//! Encoding (a PUT of payload mode 4, store format 8):
//! ```text
//! varint op count, then the ops, applied in order to a copy of the base:
//!   write: varint (at << 1), varint length, the bytes
//!   move:  varint (to << 1 | 1), varint from, varint length (a memmove within the node)
//! ```
//! Every op lies within the node's length, which is the base's: a script is logged only for
//! a node whose length did not change.

use super::crc_update::Changed;
use super::delta::{get_varint, put_varint};
use std::ops::Range;

/// The ops recorded for one node since its committed version, until they would take more
/// than `limit` bytes (the node's length over 2: past that a delta or the whole node is
/// smaller, and the script is dropped).
pub(crate) struct Script {
    ops: Vec<u8>,
    count: u64,
    limit: usize,
    dropped: bool,
    /// The ranges the ops wrote: the node's CRC is updated from them (`crc_update.rs`).
    changed: Changed,
}

impl Script {
    /// An empty script for a node of `node_len` bytes, its ops in `buffer` (cleared).
    pub fn new(node_len: usize, mut buffer: Vec<u8>) -> Script {
        buffer.clear();
        Script { ops: buffer, count: 0, limit: node_len / 2, dropped: false, changed: Changed::default() }
    }

    /// The op buffer, for another script.
    pub fn into_ops(self) -> Vec<u8> {
        self.ops
    }

    /// Whether the script makes `new` from `base` (a check of the recording, in debug builds).
    pub fn replays(&self, base: &[u8], new: &[u8]) -> bool {
        let mut enc = Vec::new();
        self.encode(&mut enc);
        let mut out = vec![0u8; new.len()];
        apply(base, &enc, &mut out).is_ok() && out == new
    }

    /// Whether every change since the committed version is recorded.
    pub fn is_whole(&self) -> bool {
        !self.dropped
    }

    /// The ranges of the node the ops wrote: outside them it is its base.
    pub fn changed(&self) -> &Changed {
        &self.changed
    }

    /// Ends the recording: the node is changed some way the script does not hold.
    fn drop_ops(&mut self) {
        self.dropped = true;
        self.ops = Vec::new();
    }

    fn fits(&mut self, more: usize) -> bool {
        if !self.dropped && self.ops.len() + more > self.limit {
            self.drop_ops();
        }
        !self.dropped
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        if self.fits(bytes.len() + 6) {
            put_varint(&mut self.ops, (at as u64) << 1);
            put_varint(&mut self.ops, bytes.len() as u64);
            self.ops.extend_from_slice(bytes);
            self.count += 1;
            self.changed.add(at, at + bytes.len());
        }
    }

    fn moved(&mut self, from: usize, to: usize, len: usize) {
        if self.fits(9) {
            put_varint(&mut self.ops, (to as u64) << 1 | 1);
            put_varint(&mut self.ops, from as u64);
            put_varint(&mut self.ops, len as u64);
            self.count += 1;
            self.changed.add(to, to + len);
        }
    }

    /// Appends the encoded script to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.is_whole());
        put_varint(out, self.count);
        out.extend_from_slice(&self.ops);
    }
}

/// Bytes a node's page is edited through: plain bytes, or an [`Edit`] that records each
/// change in the node's script. An editor writes only through these calls.
pub trait PageBytes {
    fn bytes(&self) -> &[u8];
    /// Runs `f` on bytes `at..at + len`, then counts them as written.
    fn write_with<R>(&mut self, at: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R;
    /// Moves bytes `src` to `to` (`copy_within`).
    fn move_bytes(&mut self, src: Range<usize>, to: usize);
}

impl PageBytes for [u8] {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self
    }

    #[inline]
    fn write_with<R>(&mut self, at: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self[at..at + len])
    }

    #[inline]
    fn move_bytes(&mut self, src: Range<usize>, to: usize) {
        self.copy_within(src, to);
    }
}

/// A node's bytes being edited in place, each change recorded in its script (when it has
/// one: a node new in this commit, or changed outside a script since its commit, has none).
pub struct Edit<'a> {
    bytes: &'a mut [u8],
    script: Option<&'a mut Script>,
}

impl<'a> Edit<'a> {
    pub(crate) fn new(bytes: &'a mut [u8], script: Option<&'a mut Script>) -> Edit<'a> {
        Edit { bytes, script }
    }

    /// The edit of the first `len` bytes only (a page in a larger block), or `None` when the
    /// block is shorter.
    pub fn prefix(&mut self, len: usize) -> Option<Edit<'_>> {
        let bytes = self.bytes.get_mut(..len)?;
        Some(Edit { bytes, script: self.script.as_deref_mut() })
    }

    /// Whether the node had a script and it was dropped (grown past its limit, or ended by
    /// `unrecorded`): its owner lets it go.
    pub(crate) fn script_dropped(&self) -> bool {
        self.script.as_ref().is_some_and(|s| !s.is_whole())
    }

    /// The bytes, for a change the script will not record (a page rebuilt whole): the node
    /// is logged by what differs from its committed version instead.
    pub fn unrecorded(&mut self) -> &mut [u8] {
        if let Some(s) = self.script.as_deref_mut() {
            s.drop_ops();
        }
        self.bytes
    }
}

impl PageBytes for Edit<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.bytes
    }

    #[inline]
    fn write_with<R>(&mut self, at: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let written = &mut self.bytes[at..at + len];
        let r = f(written);
        if let Some(s) = self.script.as_deref_mut() {
            s.write(at, written);
        }
        r
    }

    #[inline]
    fn move_bytes(&mut self, src: Range<usize>, to: usize) {
        if src.is_empty() {
            return;
        }
        if let Some(s) = self.script.as_deref_mut() {
            s.moved(src.start, to, src.len());
        }
        self.bytes.copy_within(src, to);
    }
}

/// One op of a script, read back.
enum Op<'e> {
    Write { at: usize, bytes: &'e [u8] },
    Move { from: usize, to: usize, len: usize },
}

/// Reads the script at the start of `enc` for a node of `len` bytes, op by op, each checked
/// to lie within the node; returns the bytes the script takes.
fn read_ops<'e>(enc: &'e [u8], len: usize, mut each: impl FnMut(Op<'e>)) -> Result<usize, String> {
    let mut pos = 0;
    let cut = || "edit script cut short".to_string();
    let count = get_varint(enc, &mut pos).ok_or_else(cut)?;
    let within = |start: u64, n: u64, what: &str| {
        if start.checked_add(n).is_some_and(|end| end <= len as u64) {
            Ok(())
        } else {
            Err(format!("edit script {what} {start}+{n} past the node's {len} bytes"))
        }
    };
    for _ in 0..count {
        let head = get_varint(enc, &mut pos).ok_or_else(cut)?;
        let at = head >> 1;
        if head & 1 == 0 {
            let n = get_varint(enc, &mut pos).ok_or_else(cut)?;
            within(at, n, "write")?;
            let bytes = enc.get(pos..pos + n as usize).ok_or_else(cut)?;
            pos += n as usize;
            each(Op::Write { at: at as usize, bytes });
        } else {
            let from = get_varint(enc, &mut pos).ok_or_else(cut)?;
            let n = get_varint(enc, &mut pos).ok_or_else(cut)?;
            within(at, n, "move")?;
            within(from, n, "move")?;
            each(Op::Move { from: from as usize, to: at as usize, len: n as usize });
        }
    }
    Ok(pos)
}

/// Bytes the script at the start of `enc` takes, its ops checked against `len`.
pub(crate) fn encoded_len(enc: &[u8], len: usize) -> Result<usize, String> {
    read_ops(enc, len, |_| ())
}

/// Writes into `out` (the node's length) the base with the script's ops applied.
pub(crate) fn apply(base: &[u8], enc: &[u8], out: &mut [u8]) -> Result<(), String> {
    if base.len() != out.len() {
        return Err(format!("an edit script of a {}-byte node over a {}-byte base", out.len(), base.len()));
    }
    out.copy_from_slice(base);
    read_ops(enc, out.len(), |op| match op {
        Op::Write { at, bytes } => out[at..at + bytes.len()].copy_from_slice(bytes),
        Op::Move { from, to, len } => out.copy_within(from..from + len, to),
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(base: &[u8], enc: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; base.len()];
        assert_eq!(encoded_len(enc, base.len()), Ok(enc.len()));
        apply(base, enc, &mut out).unwrap();
        out
    }

    #[test]
    fn recorded_writes_and_moves_replay_to_the_edited_node() {
        let base: Vec<u8> = (0..200u8).collect();
        let mut node = base.clone();
        let mut script = Script::new(node.len(), Vec::new());
        let mut e = Edit::new(&mut node, Some(&mut script));
        e.write_with(150, 4, |b| b.copy_from_slice(b"cell"));
        e.move_bytes(16..40, 18);
        e.write_with(16, 2, |b| b.copy_from_slice(&[7, 7]));
        e.move_bytes(30..30, 10); // empty: nothing recorded
        e.write_with(2, 6, |h| h.fill(9));
        let mut enc = Vec::new();
        script.encode(&mut enc);
        assert_eq!(replay(&base, &enc), node);
        assert_eq!(enc[0], 4, "four ops: the empty move is not one");
    }

    #[test]
    fn a_script_past_half_the_node_is_dropped_for_good() {
        let base = vec![0u8; 64];
        let mut node = base.clone();
        let mut script = Script::new(node.len(), Vec::new());
        let mut e = Edit::new(&mut node, Some(&mut script));
        e.write_with(0, 20, |b| b.fill(1));
        assert!(e.script.as_ref().unwrap().is_whole());
        e.write_with(20, 20, |b| b.fill(2));
        e.write_with(40, 1, |b| b.fill(3));
        assert!(!script.is_whole());
        assert_eq!(node[40], 3, "the edit itself still happens");
    }

    #[test]
    fn ops_outside_the_node_or_cut_short_are_refused() {
        let base = vec![0u8; 32];
        let mut out = vec![0u8; 32];
        let mut enc = Vec::new();
        put_varint(&mut enc, 1);
        put_varint(&mut enc, 30 << 1);
        put_varint(&mut enc, 4);
        enc.extend_from_slice(b"abcd");
        assert!(apply(&base, &enc, &mut out).unwrap_err().contains("past the node"));
        let mut moved = Vec::new();
        put_varint(&mut moved, 1);
        put_varint(&mut moved, 2 << 1 | 1);
        put_varint(&mut moved, 20);
        put_varint(&mut moved, 16);
        assert!(encoded_len(&moved, 32).unwrap_err().contains("move 20+16"));
        assert!(encoded_len(&enc[..5], 64).unwrap_err().contains("cut short"));
        assert!(apply(&base, &enc, &mut [0u8; 40]).is_err(), "a base of another length");
    }
}
