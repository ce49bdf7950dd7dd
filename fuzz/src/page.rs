//! Target `page_decode`. Input: `[selector][probe length][probe][page bytes...]`.
//!
//! selector bit 7 clear: decode only (`pcore::btree::decode_page`). Set: build a small tree in
//! an in-memory store (duplicates mode from bits 0..1, page 512 or 1024 from bit 2), replace
//! one of its pages (bits 3..6 pick which) with the page bytes, then run every tree operation
//! on it. Every error must be a status, `Corrupt` for damage; a panic is a bug.

use pcore::btree::{self, BTree, Cursor, Duplicates, TreeOptions, KIND_INTERNAL, KIND_LEAF, ROOT_PREFIX};
use pcore::{Error, NodeId, Store, StoreOptions};
use std::ops::Bound;

pub const SELECTOR_PLANT: u8 = 0x80;

/// Splits an input into (selector, probe, page).
pub fn parse(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (&probe_len, rest) = rest.split_first()?;
    let probe_len = (probe_len as usize % 64).min(rest.len());
    Some((selector, &rest[..probe_len], &rest[probe_len..]))
}

pub fn encode(selector: u8, probe: &[u8], page: &[u8]) -> Vec<u8> {
    assert!(probe.len() < 64);
    let mut v = vec![selector, probe.len() as u8];
    v.extend_from_slice(probe);
    v.extend_from_slice(page);
    v
}

pub fn key(i: usize) -> Vec<u8> {
    format!("key{:05}", i * 7).into_bytes()
}

pub fn value(i: usize) -> Vec<u8> {
    // Every fifth value is larger than an inline value of a 512-byte page: an overflow node.
    vec![b'a' + (i % 26) as u8; if i.is_multiple_of(5) { 40 } else { 1 + i % 9 }]
}

pub const KEYS: usize = 60;

fn duplicates(selector: u8) -> Duplicates {
    match selector & 3 {
        0 | 3 => Duplicates::Unique,
        1 => Duplicates::Overwrite,
        _ => Duplicates::Multi,
    }
}

pub fn page_bytes(selector: u8) -> u32 {
    if selector & 4 == 0 {
        512
    } else {
        1024
    }
}

/// A committed tree of `KEYS` entries in an in-memory store.
pub fn build_tree(selector: u8) -> (Store, BTree) {
    let store = Store::in_memory(&StoreOptions::default()).expect("in-memory store");
    let opts = TreeOptions { page_bytes: page_bytes(selector), duplicates: duplicates(selector), ..Default::default() };
    let tree = BTree::open(&store, b"t", &opts).expect("open tree");
    for i in 0..KEYS {
        let v = if duplicates(selector) == Duplicates::Multi { vec![b'v'; 1 + i % 3] } else { value(i) };
        tree.insert(&key(i), &v).expect("insert");
    }
    store.commit().expect("commit");
    (store, tree)
}

/// The tree's pages, root first, in handle order after it.
pub fn pages(store: &Store) -> Vec<NodeId> {
    let mut anchor = ROOT_PREFIX.to_vec();
    anchor.extend_from_slice(b"t");
    let root = NodeId::from_raw(store.get_root(&anchor).unwrap().expect("anchor").id);
    let mut out = vec![root];
    for id in store.live_ids().unwrap() {
        let kind = store.info(id).unwrap().kind;
        if id != root && (kind == KIND_LEAF || kind == KIND_INTERNAL) {
            out.push(id);
        }
    }
    out
}

fn no_panic_status<T>(r: &pcore::Result<T>) {
    // Statuses are fine (Corrupt, NotFound, InvalidArgument, TooLarge...); Internal would be a
    // broken invariant the damage should have been reported as Corrupt instead.
    if let Err(e) = r {
        assert!(!matches!(e, Error::Internal(_)), "Internal from a damaged page: {e}");
    }
}

pub fn run(data: &[u8]) {
    let Some((selector, probe, page)) = parse(data) else { return };
    if selector & SELECTOR_PLANT == 0 {
        match btree::decode_page(page, 7, probe) {
            Ok(n) => assert!(n <= page.len() / 2),
            Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "{e}"),
        }
        return;
    }
    let (store, tree) = build_tree(selector);
    let pages = pages(&store);
    let victim = pages[(selector as usize >> 3 & 0xF) % pages.len()];
    store.publish(victim, page).expect("publish the damaged page");

    for i in (0..KEYS).step_by(3) {
        no_panic_status(&tree.get(&key(i)));
    }
    no_panic_status(&tree.get(probe));
    no_panic_status(&tree.get_all(probe));
    let mut c = Cursor::new(&tree);
    if c.first().is_ok() {
        for _ in 0..3 * KEYS {
            if !matches!(c.current(), Ok(Some(_))) || c.move_next().is_err() {
                break;
            }
        }
    }
    if c.last().is_ok() {
        for _ in 0..3 * KEYS {
            if !matches!(c.current(), Ok(Some(_))) || c.move_prev().is_err() {
                break;
            }
        }
    }
    no_panic_status(&c.seek(probe));
    no_panic_status(&tree.range(Bound::Included(&key(10)[..]), Bound::Excluded(&key(40)[..])));
    no_panic_status(&tree.verify());
    no_panic_status(&tree.stats());
    // Writes: each must either succeed or leave an error status; never panic.
    no_panic_status(&tree.insert(probe, b"x"));
    no_panic_status(&tree.insert(&key(KEYS + 1), &[7u8; 100]));
    for i in (1..KEYS).step_by(4) {
        no_panic_status(&tree.remove(&key(i)));
    }
    no_panic_status(&tree.remove_pair(&key(2), &value(2)));
    no_panic_status(&tree.insert(&key(5), &value(5)));
    no_panic_status(&tree.verify());
    no_panic_status(&store.commit());
    no_panic_status(&store.verify());
}
