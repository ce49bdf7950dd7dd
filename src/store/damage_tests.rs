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

/// Rewrites the checkpoint with `edit` applied to its entries, checksums recomputed.
fn edit_checkpoint(dir: &Path, edit: impl FnOnce(&mut [super::table::Slot])) {
    let meta = super::meta::Meta::load(dir).unwrap();
    let classes = crate::alloc::SizeClasses::new(meta.min_class_bytes, meta.max_class_bytes).unwrap();
    super::checkpoint::rewrite_for_test(dir, meta.generation, &classes, edit);
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
    edit_checkpoint(dir.path(), |slots| slots[id.handle() as usize].len = 5000);
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
    let mut bytes = super::wal::cut_to_frames(&log);
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
    edit_checkpoint(dir.path(), |slots| slots[id.handle() as usize].tag = 0);
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
