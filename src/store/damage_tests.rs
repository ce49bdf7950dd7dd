//! Regression tests from fuzzing (`fuzz/`, target `open_dir`): store files that are damaged
//! but carry valid checksums (a bug that wrote them, or a deliberate edit) must make the open
//! `Corrupt`, naming the file: never a panic, and never an allocation a length field sizes.

use super::tests::{file_with_prefix, TempDir};
use super::*;
use crate::error::Error;
use std::path::Path;

fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// A store closed cleanly (so its table is in a checkpoint) holding one node of `len` bytes.
fn closed_store(dir: &Path, len: usize) -> NodeId {
    let s = Store::open(dir, &StoreOptions::default()).unwrap();
    let (id, _, _) = s.allocate(len, 3).unwrap();
    s.publish(id, &vec![7u8; len]).unwrap();
    s.commit().unwrap();
    s.close().unwrap();
    id
}

/// Rewrites the checkpoint with `edit` applied to its body, checksums recomputed.
fn edit_checkpoint(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = file_with_prefix(dir, "checkpoint-");
    let mut b = std::fs::read(&path).unwrap();
    edit(&mut b);
    let body = crc(&b[36..]);
    b[28..32].copy_from_slice(&body.to_le_bytes());
    let header = crc(&b[..32]);
    b[32..36].copy_from_slice(&header.to_le_bytes());
    std::fs::write(&path, b).unwrap();
}

fn assert_corrupt_open(dir: &Path, file: &str) {
    for read_only in [true, false] {
        let opts = StoreOptions { read_only, create: false, ..StoreOptions::default() };
        match Store::open(dir, &opts) {
            Err(Error::Corrupt { file: f, .. }) => assert!(f.starts_with(file), "{f}"),
            Err(e) => panic!("read_only {read_only}: {e}"),
            Ok(s) => {
                let read: Vec<_> = s.live_ids().unwrap().iter().map(|&id| s.read(id).map(|b| b.len())).collect();
                panic!("read_only {read_only}: opened a damaged store; reads {read:?}")
            }
        }
    }
}

#[test]
fn a_checkpoint_entry_longer_than_its_block_is_corrupt() {
    let dir = TempDir::new("ckpt-len");
    let id = closed_store(dir.path(), 100); // a 128-byte block
    edit_checkpoint(dir.path(), |b| {
        let at = 36 + super::checkpoint::ENTRY_BYTES * id.handle() as usize + 4; // len | class | live
        let packed = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let longer = (packed & !0xFF_FFFF) | 5000;
        b[at..at + 4].copy_from_slice(&longer.to_le_bytes());
    });
    assert_corrupt_open(dir.path(), "checkpoint-");
}

/// A store whose commits are only in its log (a crash before any checkpoint), with `frame`
/// appended to the log as its next commit.
fn store_with_logged_frame(dir: &Path, frame: impl FnOnce(u64) -> Vec<u8>) {
    let s = Store::open(dir, &StoreOptions::default()).unwrap();
    let (id, _, _) = s.allocate(10, 1).unwrap();
    s.publish(id, b"committed").unwrap();
    let epoch = s.commit().unwrap();
    s.simulate_crash();
    let log = file_with_prefix(dir, "wal-");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend(frame(epoch + 1));
    std::fs::write(&log, bytes).unwrap();
}

fn put(handle: u64, tag: u16) -> super::wal::PutOp {
    super::wal::PutOp {
        handle,
        tag,
        kind: 1,
        class: 0,
        block: 5,
        len: 0,
        payload_crc: crc(b""),
        payload: super::wal::Payload::Unlogged,
    }
}

#[test]
fn a_logged_handle_far_beyond_the_table_is_corrupt_not_a_huge_allocation() {
    let dir = TempDir::new("log-handle");
    store_with_logged_frame(dir.path(), |epoch| {
        let mut f = super::wal::FrameBuilder::default();
        f.put(&put(1 << 40, 1), Some(b""));
        f.finish(epoch, 0, super::wal::Salt::new(super::meta::FORMAT_VERSION, 1))
    });
    // Before the fix the table grew to 2^40 slots (16 TiB): the allocation aborted the process.
    assert_corrupt_open(dir.path(), "wal-");
    // A gap a writer can leave (handles allocated and freed before a commit) still opens.
    let dir = TempDir::new("log-handle-gap");
    store_with_logged_frame(dir.path(), |epoch| {
        let mut f = super::wal::FrameBuilder::default();
        f.put(&put(1000, 1), Some(b""));
        f.finish(epoch, 0, super::wal::Salt::new(super::meta::FORMAT_VERSION, 1))
    });
    let s = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(s.read(NodeId::from_parts(1000, 1)).unwrap(), b"");
    s.verify().unwrap();
}

#[test]
fn live_nodes_with_tag_zero_are_corrupt() {
    // In the log...
    let dir = TempDir::new("log-tag0");
    store_with_logged_frame(dir.path(), |epoch| {
        let mut f = super::wal::FrameBuilder::default();
        f.put(&put(2, 0), Some(b""));
        f.finish(epoch, 0, super::wal::Salt::new(super::meta::FORMAT_VERSION, 1))
    });
    assert_corrupt_open(dir.path(), "wal-");
    // ...and in a checkpoint (ids with tag 0 are never issued; NodeId::from_parts asserts).
    let dir = TempDir::new("ckpt-tag0");
    let id = closed_store(dir.path(), 10);
    edit_checkpoint(dir.path(), |b| {
        let at = 36 + super::checkpoint::ENTRY_BYTES * id.handle() as usize + 12; // the tag
        b[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
    });
    assert_corrupt_open(dir.path(), "checkpoint-");
}

#[test]
fn meta_counters_beyond_any_store_are_corrupt() {
    // Epoch u64::MAX made `checkpoint_epoch + 1` overflow (a panic with overflow checks, a
    // wrapped epoch without); generation and sequence are incremented by every checkpoint.
    for field in [16usize, 24, 32] {
        let dir = TempDir::new("meta-counter");
        closed_store(dir.path(), 10);
        let path = dir.path().join(super::meta::META_FILE);
        let mut b = std::fs::read(&path).unwrap();
        for slot in [0usize, 4096] {
            if b.len() >= slot + 52 {
                b[slot + field..slot + field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
                let c = crc(&b[slot..slot + 48]);
                b[slot + 48..slot + 52].copy_from_slice(&c.to_le_bytes());
            }
        }
        std::fs::write(&path, b).unwrap();
        assert_corrupt_open(dir.path(), "meta");
    }
}
