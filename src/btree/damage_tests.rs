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

/// Every single-byte change of a leaf or an internal page, under every kind of tree call:
/// each call answers as if the page were whole, or `Corrupt`; never another error (a damaged
/// length once answered `TooLarge`, as if the caller's value were too long), never a panic.
#[test]
fn every_byte_of_a_damaged_page_answers_ok_or_corrupt() {
    let mut odd = Vec::new();
    for page in ["leaf", "root"] {
        for at in 0..512 {
            for change in [0x01u8, 0x80, 0xFF, 0x7F, 0x40, 0x10] {
                let (store, tree, leaf) = tree_with_value_nodes();
                let root = store.get_root(&[ROOT_PREFIX, b"t"].concat()).unwrap().unwrap().id;
                let page_id = if page == "leaf" { leaf } else { NodeId::from_raw(root) };
                let mut bytes = store.read(page_id).unwrap();
                if at >= bytes.len() {
                    continue;
                }
                bytes[at] ^= change;
                store.publish(page_id, &bytes).unwrap();
                let calls: [(&str, crate::Result<()>); 6] = [
                    ("get", tree.get(&key(3)).map(drop)),
                    ("get large", tree.get(&[&key(0)[..], b"L"].concat()).map(drop)),
                    ("insert", tree.insert(&key(1000 + at), &[7u8; 30])),
                    ("remove", tree.remove(&key(5)).map(drop)),
                    ("scan", tree.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded).map(drop)),
                    ("verify", tree.verify()),
                ];
                for (what, r) in calls {
                    if let Err(e) = r {
                        if !matches!(e, Error::Corrupt { .. }) {
                            odd.push(format!("{page} byte {at} ^ {change:#x}, {what}: {e}"));
                        }
                    }
                }
            }
        }
    }
    assert!(odd.is_empty(), "{} calls answered neither OK nor CORRUPT, e.g. {:?}", odd.len(), &odd[..odd.len().min(8)]);
}

/// Random damage (one to four bytes) to a leaf or the root, then one call of each kind:
/// `Corrupt` or a whole answer, never another error. Found: a remove freeing a value node
/// through a damaged reference answered `NotFound` (and had written pages before it failed).
#[test]
fn random_damage_to_a_page_answers_ok_or_corrupt() {
    let mut odd = std::collections::BTreeMap::new();
    let mut rng = crate::test_rng::TestRng::new(0x1234_5678_9abc_def1);
    for _ in 0..3000 {
        let (store, tree, leaf) = tree_with_value_nodes();
        let root = store.get_root(&[ROOT_PREFIX, b"t"].concat()).unwrap().unwrap().id;
        let page_id = if rng.below(2) == 0 { leaf } else { NodeId::from_raw(root) };
        let mut bytes = store.read(page_id).unwrap();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        store.publish(page_id, &bytes).unwrap();
        let k = key(rng.below(70) as usize);
        let value = vec![7u8; rng.below(200) as usize];
        let mut backwards = Cursor::new(&tree);
        let calls: [(&str, crate::Result<()>); 6] = [
            ("get", tree.get(&k).map(drop)),
            ("insert", tree.insert(&[&k[..], b"n"].concat(), &value)),
            ("remove", tree.remove(&k).map(drop)),
            ("scan", tree.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded).map(drop)),
            ("scan backwards", backwards.last().and_then(|_| walk(&mut backwards, Cursor::move_prev))),
            ("verify", tree.verify()),
        ];
        for (what, r) in calls {
            if let Err(e) = r.map_err(|e| (std::mem::discriminant(&e), e)) {
                if !matches!(e.1, Error::Corrupt { .. }) {
                    odd.entry(format!("{what}: {:?}", e.0)).or_insert(e.1.to_string());
                }
            }
        }
    }
    assert!(odd.is_empty(), "{odd:#?}");
}

fn walk(c: &mut Cursor, step: fn(&mut Cursor) -> crate::Result<()>) -> crate::Result<()> {
    while c.current()?.is_some() {
        step(c)?;
    }
    Ok(())
}

/// `tree_and_leaf`, with values in their own nodes spread over the leaves.
fn tree_with_value_nodes() -> (Store, BTree, NodeId) {
    let (store, tree, leaf) = tree_and_leaf();
    for i in (0..60).step_by(6) {
        tree.insert(&[&key(i)[..], b"L"].concat(), &vec![i as u8; 40 + i]).unwrap();
    }
    (store, tree, leaf)
}
