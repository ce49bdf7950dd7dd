//! Regression tests from fuzzing (`fuzz/`, target `page_decode`): damaged pages planted in a
//! live tree must make its operations `Corrupt`, never panic.

use super::page::{self, PageRef, TYPE_LEAF};
use super::{BTree, Cursor, TreeOptions, KIND_LEAF, ROOT_PREFIX};
use crate::error::Error;
use crate::store::{NodeId, Store, StoreOptions};

fn key(i: usize) -> Vec<u8> {
    format!("key{:05}", i * 7).into_bytes()
}

/// A committed tree of 60 keys in 512-byte pages (height 2), and one of its leaves.
fn tree_and_leaf() -> (Store, BTree, NodeId) {
    let store = Store::in_memory(&StoreOptions::default()).unwrap();
    let tree = BTree::open(&store, b"t", &TreeOptions { page_bytes: 512, ..TreeOptions::default() }).unwrap();
    for i in 0..60 {
        tree.insert(&key(i), b"v").unwrap();
    }
    store.commit().unwrap();
    let root = store.get_root(&[ROOT_PREFIX, b"t"].concat()).unwrap().unwrap().id;
    let leaf = store
        .live_ids()
        .unwrap()
        .into_iter()
        .find(|&id| id.raw() != root && store.info(id).unwrap().kind == KIND_LEAF)
        .unwrap();
    (store, tree, leaf)
}

fn assert_corrupt<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{what}: {r:?}");
}

/// Found by the fuzzer: a leaf whose slots all point at one cell decodes to more entries than
/// the page holds; removing from it handed them to the page writer, which asserted.
#[test]
fn a_leaf_whose_cells_overlap_is_corrupt_for_writes_not_a_panic() {
    let (store, tree, leaf) = tree_and_leaf();
    let mut bytes = store.read(leaf).unwrap();
    let p = PageRef::parse(&bytes, leaf.raw()).unwrap();
    let first_key = p.key(0).unwrap().to_vec();
    let count = p.len();
    // Every slot repeats the first slot, and the slot array grows to fill the free gap.
    let cells = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let slots = (cells - page::HEADER_BYTES) / 2;
    assert!(slots > count);
    let first_slot = [bytes[16], bytes[17]];
    for i in 0..slots {
        bytes[16 + 2 * i..18 + 2 * i].copy_from_slice(&first_slot);
    }
    bytes[2..4].copy_from_slice(&(slots as u16).to_le_bytes());
    assert_eq!(bytes[0], TYPE_LEAF);
    store.publish(leaf, &bytes).unwrap();
    // Reads see a damaged but decodable page; writes must refuse it.
    let _ = tree.get(&first_key).unwrap();
    assert_corrupt(tree.remove(&first_key), "remove");
    assert_corrupt(tree.insert(&[&first_key[..], b"x"].concat(), &[1u8; 100]), "insert");
    assert_corrupt(tree.verify(), "verify");
    assert_eq!(store.read(leaf).unwrap(), bytes, "a refused write changes nothing");
}

#[test]
fn a_child_pointer_to_a_node_of_another_size_is_corrupt() {
    let (store, tree, leaf) = tree_and_leaf();
    let bytes = store.read(leaf).unwrap();
    let first_key = PageRef::parse(&bytes, leaf.raw()).unwrap().key(0).unwrap().to_vec();
    // The same page, 64 bytes shorter: decodable, but not a page of this tree.
    store.publish(leaf, &bytes[..448]).unwrap();
    assert_corrupt(tree.get(&first_key), "get");
    assert_corrupt(tree.insert(&[&first_key[..], b"x"].concat(), b"v"), "insert");
    assert_corrupt(tree.remove(&first_key), "remove");
    let mut c = Cursor::new(&tree);
    let walked = c.first().and_then(|_| loop {
        match c.current()? {
            Some(_) => c.move_next()?,
            None => break Ok(()),
        }
    });
    assert_corrupt(walked, "scan");
}
