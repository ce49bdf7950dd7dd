//! Regression tests from fuzzing (`fuzz/`, target `open_dir`): store files that are damaged
//! but carry valid checksums (a bug that wrote them, or a deliberate edit) must make the open
//! `Corrupt`, naming the file: never a panic, and never an allocation a length field sizes.

use super::tests::TempDir;
use super::*;
use crate::error::Error;
use std::path::Path;

fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

fn file_with_prefix(dir: &Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap()
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
        let at = 36 + 12 * id.handle() as usize + 4;
        let packed = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let longer = (packed & !0xFF_FFFF) | 5000;
        b[at..at + 4].copy_from_slice(&longer.to_le_bytes());
    });
    assert_corrupt_open(dir.path(), "checkpoint-");
}
