//! A tree read through a snapshot: gets, cursors, `len` and `verify` answer the snapshot's
//! commit while the writer inserts, removes and commits, and its cursors never go stale.

use super::{BTree, Cursor, Duplicates, TreeOptions};
use crate::error::Error;
use crate::store::{Durability, Store, StoreOptions};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = round.to_le_bytes().to_vec();
    v.resize(8 + (i % 40) as usize, i as u8);
    v
}

fn store() -> Store {
    Store::in_memory(&StoreOptions { durability: Durability::Strict, ..StoreOptions::default() }).unwrap()
}

/// Keys 0..n in round `round`, committed.
fn fill(t: &BTree, s: &Store, n: u64, round: u64) {
    for i in 0..n {
        t.insert(&key(i), &value(i, round)).unwrap();
    }
    s.commit().unwrap();
}

#[test]
fn gets_and_cursors_on_a_snapshot_answer_its_commit() {
    let s = store();
    let opts = TreeOptions { duplicates: Duplicates::Overwrite, ..TreeOptions::default() };
    let t = BTree::open(&s, b"t", &opts).unwrap();
    fill(&t, &s, 3000, 0);
    let snap = s.snapshot().unwrap();
    let old = t.at(&snap).unwrap();
    let mut cur = Cursor::new(&old);
    cur.first().unwrap();
    for round in 1..=5u64 {
        // The writer overwrites, removes a third and adds keys, each round committed.
        for i in 0..3000 {
            if i % 3 == round % 3 {
                t.remove(&key(i)).unwrap();
            } else {
                t.insert(&key(i), &value(i, round)).unwrap();
            }
        }
        t.insert(&key(10_000 + round), b"new").unwrap();
        s.commit().unwrap();
        // The snapshot's cursor walks on through round 0, never stale.
        for _ in 0..400 {
            let (k, v) = cur.current().unwrap().expect("within the tree");
            let i = u64::from_be_bytes(k.try_into().unwrap());
            assert_eq!(v, value(i, 0));
            cur.move_next().unwrap();
        }
    }
    assert_eq!(old.len(), 3000);
    for i in (0..3000).step_by(7) {
        assert_eq!(old.get(&key(i)).unwrap(), Some(value(i, 0)));
    }
    assert_eq!(old.get(&key(10_001)).unwrap(), None);
    old.verify().unwrap();
    let all = old.range(Bound::Unbounded, Bound::Unbounded).unwrap();
    assert_eq!(all.len(), 3000);
    assert!(all.iter().all(|(k, v)| *v == value(u64::from_be_bytes(k[..].try_into().unwrap()), 0)));
    assert!(matches!(old.insert(b"k", b"v"), Err(Error::ReadOnly)));
    assert!(matches!(old.remove(&key(1)), Err(Error::ReadOnly)));
    // The live tree has moved on.
    assert_eq!(t.get(&key(1)).unwrap(), Some(value(1, 5)));
    assert_eq!(t.get(&key(2)).unwrap(), None);
}

#[test]
fn a_tree_made_after_the_snapshot_is_not_found_in_it() {
    let s = store();
    let snap = s.snapshot().unwrap();
    let t = BTree::open(&s, b"later", &TreeOptions::default()).unwrap();
    t.insert(b"a", b"1").unwrap();
    s.commit().unwrap();
    assert!(matches!(t.at(&snap), Err(Error::NotFound(_))));
    let now = s.snapshot().unwrap();
    assert_eq!(t.at(&now).unwrap().get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn scans_on_snapshots_on_threads_each_see_one_whole_commit() {
    let s = store();
    let t =
        BTree::open(&s, b"t", &TreeOptions { duplicates: Duplicates::Overwrite, ..TreeOptions::default() }).unwrap();
    fill(&t, &s, 2000, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, t, stop) = (s.clone(), t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut scans = 0;
                while !stop.load(Ordering::Relaxed) || scans == 0 {
                    let snap = s.snapshot().unwrap();
                    let view = t.at(&snap).unwrap();
                    let mut round = None;
                    let mut n = 0;
                    view.scan(Bound::Unbounded, Bound::Unbounded, |_, v| {
                        let r = u64::from_le_bytes(v[..8].try_into().unwrap());
                        assert_eq!(*round.get_or_insert(r), r, "one scan, one commit");
                        n += 1;
                        true
                    })
                    .unwrap();
                    assert_eq!(n, 2000);
                    scans += 1;
                }
                scans
            })
        })
        .collect();
    for round in 1..=40 {
        fill(&t, &s, 2000, round);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}
