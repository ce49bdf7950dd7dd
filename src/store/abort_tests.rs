//! `Store::abort`: every kind of uncommitted change thrown away, the store exactly as its last
//! commit left it, in memory, on disk after a reopen, and after a commit that failed.

use super::tests::{reopen, strict, TempDir};
use super::*;
use crate::btree::{BTree, Cursor, Duplicates, TreeOptions};
use crate::error::Error;
use std::ops::Bound;

fn node(s: &Store, len: usize, fill: u8) -> NodeId {
    let id = s.allocate(len, 1).unwrap().0;
    s.publish(id, &vec![fill; len]).unwrap()
}

/// A store with committed nodes, roots and a retirement, then one change of every kind.
/// Returns the committed nodes and the ids made since.
fn committed_then_changed(s: &Store) -> (Vec<(NodeId, Vec<u8>)>, Vec<NodeId>) {
    let a = node(s, 100, 1);
    let b = node(s, 100, 2);
    let c = node(s, 3000, 3);
    let d = node(s, 50, 4);
    s.set_root(b"main", a.raw(), b"committed").unwrap();
    s.commit().unwrap();
    let committed = vec![(a, vec![1; 100]), (b, vec![2; 100]), (c, vec![3; 3000]), (d, vec![4; 50])];
    let fresh = node(s, 70, 9); // allocated and published
    let reserved = s.allocate(10, 1).unwrap().0; // allocated only
    let gone = node(s, 10, 8);
    s.free(gone).unwrap(); // allocated and freed again
    s.publish(a, &[5; 60]).unwrap(); // a new version in a shadow
    s.publish(b, &[6; 9000]).unwrap(); // grown into a larger class
    s.update(d, |buf| {
        buf[..3].copy_from_slice(b"new");
        3
    })
    .unwrap(); // edited in place
    s.free(c).unwrap();
    s.retire(d, 1).unwrap(); // due at the next commit, were it not withdrawn
    s.set_root(b"main", fresh.raw(), b"changed").unwrap();
    s.set_root(b"other", fresh.raw(), b"").unwrap();
    (committed, vec![fresh, reserved])
}

fn assert_committed_state(s: &Store, committed: &[(NodeId, Vec<u8>)], made_since: &[NodeId]) {
    for (id, bytes) in committed {
        assert_eq!(&s.read(*id).unwrap(), bytes, "node {id}");
        assert!(!s.info(*id).unwrap().dirty, "node {id} is clean");
    }
    for id in made_since {
        assert!(matches!(s.read(*id), Err(Error::NotFound(_))), "{id} outlived the abort");
    }
    assert_eq!(s.get_root(b"main").unwrap(), Some(Root { id: committed[0].0.raw(), meta: b"committed".to_vec() }));
    assert_eq!(s.get_root(b"other").unwrap(), None);
    assert_eq!(s.root_names().unwrap(), vec![b"main".to_vec()]);
    let stats = s.stats().unwrap();
    assert_eq!((stats.live_nodes, stats.reserved_nodes), (committed.len() as u64, 0));
    s.verify().unwrap();
}

#[test]
fn abort_undoes_every_kind_of_change() {
    let dir = TempDir::new("abort");
    let s = reopen(dir.path(), &strict());
    let (committed, made_since) = committed_then_changed(&s);
    let epoch = s.stats().unwrap().epoch;
    s.abort().unwrap();
    assert_committed_state(&s, &committed, &made_since);
    // The withdrawn retirement does not free its node at the next commit.
    assert_eq!(s.commit().unwrap(), epoch + 1);
    assert_committed_state(&s, &committed, &made_since);
    // The store goes on: new changes commit, and a reopen finds exactly them.
    let later = node(&s, 20, 7);
    s.commit().unwrap();
    s.close().unwrap();
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.read(later).unwrap(), vec![7; 20]);
    for (id, bytes) in &committed {
        assert_eq!(&s.read(*id).unwrap(), bytes);
    }
    // Aborting with nothing to undo changes nothing.
    s.abort().unwrap();
    assert_eq!(s.read(later).unwrap(), vec![7; 20]);
}

#[test]
fn abort_after_a_commit_that_failed_for_a_full_disk() {
    for durability in [Durability::Strict, Durability::Balanced, Durability::Eventual] {
        let dir = TempDir::new("abort-full");
        let opts = StoreOptions { durability, ..StoreOptions::default() };
        let s = reopen(dir.path(), &opts);
        let (committed, _) = committed_then_changed(&s);
        // More than the log holds written ahead of its frames (zeros a small commit wrote):
        // this frame must grow the file.
        for i in 0..10 {
            node(&s, 8000, 20 + i);
        }
        let used: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        crate::os::simulate_disk_limit(dir.path(), Some(used));
        // The pending changes' log frame finds no room: the commit fails, nothing committed.
        let failed = s.commit().expect_err("a commit on a full disk");
        assert!(matches!(failed, Error::NoSpace(_)), "{durability:?}: {failed}");
        s.abort().unwrap_or_else(|e| panic!("{durability:?}: abort after a failed commit: {e}"));
        crate::os::simulate_disk_limit(dir.path(), None);
        for (id, bytes) in &committed {
            assert_eq!(&s.read(*id).unwrap(), bytes);
        }
        s.verify().unwrap();
        // A retirement committed before the failed commit is still due after the abort.
        let retired = committed[1].0;
        s.retire(retired, s.stats().unwrap().epoch + 2).unwrap();
        s.commit().unwrap();
        crate::os::simulate_disk_limit(dir.path(), Some(0));
        assert!(s.commit().is_err(), "{durability:?}: the retirement's commit on a full disk");
        crate::os::simulate_disk_limit(dir.path(), None);
        s.abort().unwrap();
        s.commit().unwrap();
        assert!(matches!(s.read(retired), Err(Error::NotFound(_))), "{durability:?}: the retired node is freed");
        let committed: Vec<_> = committed.into_iter().filter(|(id, _)| *id != retired).collect();
        s.close().unwrap();
        let s = reopen(dir.path(), &opts);
        for (id, bytes) in &committed {
            assert_eq!(&s.read(*id).unwrap(), bytes);
        }
        s.verify().unwrap();
    }
}

fn entries(t: &BTree) -> Vec<(Vec<u8>, Vec<u8>)> {
    t.range(Bound::Unbounded, Bound::Unbounded).unwrap()
}

#[test]
fn trees_open_on_the_store_reload_their_committed_state() {
    let dir = TempDir::new("abort-trees");
    let s = reopen(dir.path(), &strict());
    let small = TreeOptions { page_bytes: 512, ..TreeOptions::default() };
    let multi = TreeOptions { page_bytes: 512, duplicates: Duplicates::Multi, ..TreeOptions::default() };
    let t = BTree::open(&s, b"t", &small).unwrap();
    for i in 0..2000u32 {
        t.insert(format!("k{i:05}").as_bytes(), &[i as u8; 20]).unwrap();
    }
    s.commit().unwrap();
    let before = entries(&t);
    let mut cursor = Cursor::new(&t);
    cursor.first().unwrap();
    // Changes that split, merge and grow the tree, and a tree created since the commit.
    for i in 0..2000u32 {
        if i % 3 == 0 {
            t.remove(format!("k{i:05}").as_bytes()).unwrap();
        } else {
            t.insert(format!("n{i:05}").as_bytes(), &[1; 100]).unwrap();
        }
    }
    let m = BTree::open(&s, b"m", &multi).unwrap();
    m.insert(b"a", b"1").unwrap();
    m.insert(b"a", b"2").unwrap();
    let live_before_abort = s.stats().unwrap().live_nodes;
    s.abort().unwrap();
    assert_eq!(entries(&t), before);
    assert_eq!(t.len(), 2000);
    t.verify().unwrap();
    // A tree created since the commit is gone, as if dropped: nothing of it is left to commit.
    assert!(m.is_dropped());
    assert!(matches!(m.insert(b"b", b"3"), Err(Error::BadHandle(_))));
    assert!(matches!(m.get(b"a"), Err(Error::BadHandle(_))));
    assert_eq!(crate::btree::list_trees(&s).unwrap().len(), 1, "only t is left");
    assert!(matches!(cursor.move_next(), Err(Error::StaleCursor(_))), "cursors on the tree go stale");
    assert_eq!(s.stats().unwrap().live_nodes, live_before_abort);
    s.verify().unwrap();
    // An open makes it anew; both trees carry on, and what they do then is what commits.
    let m = BTree::open(&s, b"m", &multi).unwrap();
    assert!(entries(&m).is_empty());
    t.insert(b"after", b"x").unwrap();
    m.insert(b"b", b"3").unwrap();
    s.commit().unwrap();
    s.close().unwrap();
    let s = reopen(dir.path(), &strict());
    let t = BTree::open(&s, b"t", &small).unwrap();
    assert_eq!(t.len(), 2001);
    assert_eq!(t.get(b"after").unwrap(), Some(b"x".to_vec()));
    assert_eq!(entries(&BTree::open(&s, b"m", &multi).unwrap()), vec![(b"b".to_vec(), b"3".to_vec())]);
}

/// outsider11 G6/G7: a tree created and aborted (its handle closed or not) was given a new
/// empty root by the abort, and the next commit, or a close that compacts, made it durable.
#[test]
fn a_tree_created_and_aborted_is_not_made_durable_by_the_next_commit_or_a_compacting_close() {
    let dir = TempDir::new("abort-created-tree");
    let s = reopen(dir.path(), &strict());
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    for i in 0..20_000u32 {
        t.insert(&i.to_be_bytes(), &[3; 200]).unwrap();
    }
    s.commit().unwrap();
    for i in 0..19_000u32 {
        t.remove(&i.to_be_bytes()).unwrap();
    }
    s.commit().unwrap(); // most pages free: the close compacts
    {
        let closed = BTree::open(&s, b"closed", &TreeOptions::default()).unwrap();
        closed.insert(b"k", b"v").unwrap();
    }
    s.abort().unwrap();
    s.set_root(b"host", 0, b"other change").unwrap();
    s.commit().unwrap();
    let _open = BTree::open(&s, b"open", &TreeOptions::default()).unwrap();
    s.abort().unwrap();
    let _again = BTree::open(&s, b"again", &TreeOptions::default()).unwrap();
    s.close().unwrap(); // drops uncommitted work, then compacts (commits)
    let s = reopen(dir.path(), &strict());
    let names: Vec<_> = crate::btree::list_trees(&s).unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, vec![b"t".to_vec()]);
    assert_eq!(s.get_root(b"host").unwrap().map(|r| r.meta), Some(b"other change".to_vec()));
    s.verify().unwrap();
}

#[test]
fn a_drop_is_undone_and_the_tree_opens_again_with_its_entries() {
    let s = Store::in_memory(&StoreOptions::default()).unwrap();
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    for i in 0..500u32 {
        t.insert(&i.to_be_bytes(), &[7; 300]).unwrap();
    }
    s.commit().unwrap();
    crate::btree::drop_tree(&s, b"t").unwrap();
    assert!(t.is_dropped());
    s.abort().unwrap();
    // The dropped handle stays closed; the tree itself is back, whole.
    assert!(t.is_dropped());
    let again = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    assert_eq!(again.len(), 500);
    again.verify().unwrap();
    assert_eq!(again.get(&7u32.to_be_bytes()).unwrap(), Some(vec![7; 300]));
    s.verify().unwrap();
}

/// A close drops uncommitted work, then compacts in commits of its own: another thread's
/// inserts made meanwhile answered OK and were committed by those rounds (outsider12 R2:
/// thousands of never-committed keys in the reopened store). Now they answer `Closed` once
/// the close has begun, and the reopened store holds exactly the committed rows.
#[test]
fn inserts_racing_a_compacting_close_are_refused_not_committed() {
    for round in 0..3u32 {
        let dir = TempDir::new("close-race");
        let s = reopen(dir.path(), &strict());
        let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
        for i in 0..40_000u32 {
            t.insert(&i.to_be_bytes(), &[5; 100]).unwrap();
        }
        s.commit().unwrap();
        for i in 0..36_000u32 {
            t.remove(&i.to_be_bytes()).unwrap();
        }
        s.commit().unwrap(); // most pages free: the close compacts
        let inserter = {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut done = 0u32;
                while t.insert(&(1_000_000 + done).to_be_bytes(), b"never committed").is_ok() {
                    done += 1;
                }
                done
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.close().unwrap();
        let attempted = inserter.join().unwrap();
        drop(t);
        let s = reopen(dir.path(), &strict());
        let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
        assert_eq!(t.len(), 4_000, "round {round}: {attempted} inserts raced the close");
        s.verify().unwrap();
    }
}
