//! Target `open_dir`. Input: a list of records, each `[kind][fields]`:
//!
//! ```text
//! 0 meta:        u16 length, bytes                     -> meta
//! 1 log:         u8 generation, u16 length, bytes      -> wal-<g>.log
//! 2 checkpoint:  u8 generation, u16 length, bytes      -> checkpoint-<g>.ckpt
//! 3 class file:  u8 class, u32 file length, u32 offset, u16 length, bytes
//!                -> class-<c>-<bytes>.seg, sparse, set to the length, bytes written at offset
//! ```
//! Lengths are cut to the bytes left. A kind byte with bit 4 set asks for the file's
//! checksums to be recomputed before it is written (CRC32C guards every header, body and
//! logged payload; without this the fuzzer would rarely get past them). Class files follow the default classes (64 B to
//! 256 KiB); file lengths are capped at 4 MiB. The directory is written afresh (on tmpfs
//! when there is one), opened read-only, then writable, then read-only again.

use pcore::btree::{BTree, Cursor, Duplicates, TreeOptions, ROOT_PREFIX};
use pcore::{Error, Store, StoreOptions};
use std::path::{Path, PathBuf};

pub const KIND_META: u8 = 0;
pub const KIND_LOG: u8 = 1;
pub const KIND_CHECKPOINT: u8 = 2;
pub const KIND_CLASS: u8 = 3;
const CLASS_FILE_MAX: u64 = 4 << 20;

struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([self.u8()?, self.u8()?, self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = (self.u16()? as usize).min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        Some(b)
    }
}

/// One file of a store directory, as the input describes it.
pub enum Record<'a> {
    Meta(&'a [u8]),
    Log(u8, &'a [u8]),
    Checkpoint(u8, &'a [u8]),
    Class {
        class: u8,
        file_len: u32,
        offset: u32,
        bytes: &'a [u8],
    },
    /// The next record's file gets its checksums recomputed.
    FixChecksums,
}

pub const FIX_CHECKSUMS: u8 = 0x10;

fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// Recomputes the checksums of a meta file's two slots.
pub fn fix_meta(b: &mut [u8]) {
    for at in [0usize, 4096] {
        if b.len() >= at + 52 {
            let c = crc(&b[at..at + 48]);
            b[at + 48..at + 52].copy_from_slice(&c.to_le_bytes());
        }
    }
}

/// Recomputes a checkpoint's checksums: a format 5 piece's header and chunks (lengths cut
/// to what is there), or a format 2-4 whole checkpoint's header and body.
pub fn fix_checkpoint(b: &mut [u8]) {
    if b.len() >= 64 && b[..8] == *b"PCORECK5" {
        let h = crc(&b[..60]);
        b[60..64].copy_from_slice(&h.to_le_bytes());
        let mut pos = 64;
        while b.len() >= pos + 8 {
            let len = (u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize).min(b.len() - pos - 8);
            b[pos..pos + 4].copy_from_slice(&(len as u32).to_le_bytes());
            let c = crc(&b[pos + 8..pos + 8 + len]);
            b[pos + 4..pos + 8].copy_from_slice(&c.to_le_bytes());
            pos += 8 + len;
        }
        return;
    }
    if b.len() >= 36 {
        let body = crc(&b[36..]);
        b[28..32].copy_from_slice(&body.to_le_bytes());
        let header = crc(&b[..32]);
        b[32..36].copy_from_slice(&header.to_le_bytes());
    }
}

/// Walks a log's frames (body lengths cut to what is there), fixing every frame's magic and
/// checksums and every inline payload's checksum.
pub fn fix_log(b: &mut [u8]) {
    let mut pos = 0;
    while b.len() >= pos + 24 {
        b[pos..pos + 4].copy_from_slice(b"PCWF");
        let len = (u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize).min(b.len() - pos - 24);
        b[pos + 4..pos + 8].copy_from_slice(&(len as u32).to_le_bytes());
        let body = pos + 24..pos + 24 + len;
        fix_ops(&mut b[body.clone()]);
        let c = crc(&b[body.clone()]);
        b[pos + 16..pos + 20].copy_from_slice(&c.to_le_bytes());
        let h = crc(&b[pos..pos + 20]);
        b[pos + 20..pos + 24].copy_from_slice(&h.to_le_bytes());
        pos = body.end;
    }
}

fn fix_ops(body: &mut [u8]) {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            1 if body.len() >= i + 29 => {
                let len = u32::from_le_bytes(body[i + 17..i + 21].try_into().unwrap()) as usize;
                let inline = body[i + 25];
                i += 29;
                if inline == 1 && body.len() >= i + len {
                    let c = crc(&body[i..i + len]);
                    body[i - 8..i - 4].copy_from_slice(&c.to_le_bytes());
                    i += len;
                }
            }
            2 => i += 11,
            3 if body.len() > i + 1 => {
                let n = body[i + 1] as usize;
                let at = i + 2 + n + 8;
                if body.len() < at + 2 {
                    return;
                }
                i = at + 2 + u16::from_le_bytes([body[at], body[at + 1]]) as usize;
            }
            _ => return,
        }
    }
}

pub fn parse(data: &[u8]) -> Vec<Record<'_>> {
    let mut input = Input { data };
    let mut out = Vec::new();
    while let Some(kind) = input.u8() {
        if kind & FIX_CHECKSUMS != 0 {
            out.push(Record::FixChecksums);
        }
        let r = match kind % 4 {
            KIND_META => input.bytes().map(Record::Meta),
            KIND_LOG => input.u8().and_then(|g| Some(Record::Log(g, input.bytes()?))),
            KIND_CHECKPOINT => input.u8().and_then(|g| Some(Record::Checkpoint(g, input.bytes()?))),
            _ => (|| {
                Some(Record::Class {
                    class: input.u8()?,
                    file_len: input.u32()?,
                    offset: input.u32()?,
                    bytes: input.bytes()?,
                })
            })(),
        };
        match r {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

pub fn encode(records: &[Record<'_>]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut fix = 0u8;
    let bytes = |v: &mut Vec<u8>, b: &[u8]| {
        let n = b.len().min(u16::MAX as usize);
        v.extend_from_slice(&(n as u16).to_le_bytes());
        v.extend_from_slice(&b[..n]);
    };
    for r in records {
        if matches!(r, Record::FixChecksums) {
            fix = FIX_CHECKSUMS;
            continue;
        }
        let f = std::mem::take(&mut fix);
        match r {
            Record::FixChecksums => unreachable!(),
            Record::Meta(b) => {
                v.push(KIND_META | f);
                bytes(&mut v, b);
            }
            Record::Log(g, b) => {
                v.extend_from_slice(&[KIND_LOG | f, *g]);
                bytes(&mut v, b);
            }
            Record::Checkpoint(g, b) => {
                v.extend_from_slice(&[KIND_CHECKPOINT | f, *g]);
                bytes(&mut v, b);
            }
            Record::Class { class, file_len, offset, bytes: b } => {
                v.extend_from_slice(&[KIND_CLASS | f, *class]);
                v.extend_from_slice(&file_len.to_le_bytes());
                v.extend_from_slice(&offset.to_le_bytes());
                bytes(&mut v, b);
            }
        }
    }
    v
}

pub fn class_file_name(class: u8) -> String {
    let c = class % 13;
    format!("class-{c:02}-{}.seg", 64u32 << c)
}

/// Writes the records as files of `dir` (emptied first).
pub fn write_dir(dir: &Path, records: &[Record<'_>]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the fuzz directory");
    use std::os::unix::fs::FileExt;
    let mut fix = false;
    for r in records {
        let fixing = std::mem::take(&mut fix);
        let fixed = |b: &[u8], f: fn(&mut [u8])| {
            let mut b = b.to_vec();
            if fixing {
                f(&mut b);
            }
            b
        };
        match r {
            Record::FixChecksums => fix = true,
            Record::Meta(b) => std::fs::write(dir.join("meta"), fixed(b, fix_meta)).unwrap(),
            Record::Log(g, b) => std::fs::write(dir.join(format!("wal-{}.log", g % 4)), fixed(b, fix_log)).unwrap(),
            Record::Checkpoint(g, b) => {
                std::fs::write(dir.join(format!("checkpoint-{}.ckpt", g % 4)), fixed(b, fix_checkpoint)).unwrap()
            }
            Record::Class { class, file_len, offset, bytes } => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(dir.join(class_file_name(*class)))
                    .unwrap();
                let len = u64::from(*file_len) % (CLASS_FILE_MAX + 1);
                f.set_len(len).unwrap();
                let at = u64::from(*offset) % (len + 1);
                let n = bytes.len().min((len - at) as usize);
                f.write_all_at(&bytes[..n], at).unwrap();
            }
        }
    }
}

/// A directory of this process's own, on tmpfs when there is one (no real syncs).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    base.join(format!("pcore-fuzz-{tag}-{}", std::process::id()))
}

fn check_status<T>(what: &str, r: &pcore::Result<T>) {
    if let Err(e) = r {
        assert!(!matches!(e, Error::Internal(_)), "{what}: Internal from damaged files: {e}");
    }
}

/// Reads everything an opened store holds: every live node, every root, every tree.
pub fn read_everything(store: &Store) {
    let ids = store.live_ids().expect("live ids of an open store");
    for id in &ids {
        let info = store.info(*id).expect("info of a live node");
        let bytes = store.read(*id).expect("read a live node");
        assert_eq!(bytes.len(), info.len);
        assert!(info.len <= info.capacity);
    }
    for name in [&b"main"[..], b""] {
        check_status("get_root", &store.get_root(name));
    }
    // Trees by their anchors: the demo's and the tests' names; every mode is tried, since the
    // anchor records which one the tree was created with.
    for name in [&b"t"[..], b"model", b"idx"] {
        let mut anchor = ROOT_PREFIX.to_vec();
        anchor.extend_from_slice(name);
        if !matches!(store.get_root(&anchor), Ok(Some(_))) {
            continue;
        }
        for page_bytes in [512u32, 1024, 4096] {
            for duplicates in [Duplicates::Unique, Duplicates::Overwrite, Duplicates::Multi] {
                let opts = TreeOptions { page_bytes, duplicates, ..Default::default() };
                let Ok(tree) = BTree::open(store, name, &opts) else { continue };
                let mut c = Cursor::new(&tree);
                if c.first().is_ok() {
                    for _ in 0..10_000 {
                        if !matches!(c.current(), Ok(Some(_))) || c.move_next().is_err() {
                            break;
                        }
                    }
                }
                check_status("get", &tree.get(b"key00070"));
                check_status("tree verify", &tree.verify());
                check_status("tree stats", &tree.stats());
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let records = parse(data);
    let dir = scratch_dir("dir");
    write_dir(&dir, &records);
    run_dir(&dir);
}

/// Opens `dir` read-only, then writable (and changes something), then read-only again.
pub fn run_dir(dir: &Path) {
    let ro = StoreOptions { read_only: true, create: false, ..StoreOptions::default() };
    if let Ok(store) = Store::open(dir, &ro) {
        read_everything(&store);
        check_status("verify (read-only)", &store.verify());
        store.close().expect("close a read-only store");
    }
    let rw = StoreOptions { create: false, durability: pcore::Durability::Eventual, ..StoreOptions::default() };
    let opened = Store::open(dir, &rw);
    if let Err(e) = &opened {
        assert!(!matches!(e, Error::Internal(_)), "open: {e}");
        return;
    }
    let store = opened.unwrap();
    read_everything(&store);
    store.verify().expect("a store that opened verifies");
    // A change on top of whatever was recovered, committed and reopened.
    let (id, _, _) = store.allocate(100, 9).expect("allocate");
    store.publish(id, b"written after recovery").expect("publish");
    store.set_root(b"main", id.raw(), b"meta").expect("set root");
    store.commit().expect("commit");
    store.verify().expect("verify after a commit");
    store.close().expect("close");
    let store = Store::open(dir, &ro).expect("reopen what we just closed");
    assert_eq!(store.read(id).expect("the node written after recovery"), b"written after recovery");
    read_everything(&store);
    store.close().expect("close");
}
