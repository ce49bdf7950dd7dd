//! Read snapshots and reader processes: a snapshot answers the bytes and roots of its commit
//! however many commits follow, and the blocks it reads are not reused until it ends; a
//! read-only open (another process's, here another open's) pins its commit through the
//! reader table, a writer that reopens holds what an older reader still reads, and a reader
//! that goes away stops pinning.

use super::tests::{reopen, strict, TempDir};
use super::*;
use crate::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Node `i`'s bytes in round `round`: each round rewrites every node.
pub(super) fn content(i: usize, round: u64) -> Vec<u8> {
    let len = 40 + (i * 37 + round as usize * 13) % 900;
    (0..len).map(|b| (round as usize * 7 + i * 3 + b) as u8).collect()
}

/// `n` committed nodes in round 0, named by root "r0".
pub(super) fn nodes(s: &Store, n: usize) -> Vec<NodeId> {
    let ids: Vec<NodeId> = (0..n).map(|_| s.allocate(64, 1).unwrap().0).collect();
    for (i, &id) in ids.iter().enumerate() {
        s.publish(id, &content(i, 0)).unwrap();
    }
    s.set_root(b"round", ids[0].raw(), &0u64.to_le_bytes()).unwrap();
    s.commit().unwrap();
    ids
}

/// Rewrites every node for `round`, frees and replaces every tenth, and commits.
pub(super) fn rewrite(s: &Store, ids: &mut [NodeId], round: u64) {
    for (i, id) in ids.iter_mut().enumerate() {
        if i % 10 == (round % 10) as usize {
            s.free(*id).unwrap();
            *id = s.allocate(64, 1).unwrap().0;
        }
        s.publish(*id, &content(i, round)).unwrap();
    }
    s.set_root(b"round", ids[0].raw(), &round.to_le_bytes()).unwrap();
    s.commit().unwrap();
}

pub(super) fn assert_round(view: &Store, ids: &[NodeId], round: u64) {
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(view.read(id).unwrap(), content(i, round), "node {i} as of round {round}");
    }
    let root = view.get_root(b"round").unwrap().unwrap();
    assert_eq!(root.meta, round.to_le_bytes());
}

#[test]
fn a_snapshot_reads_its_commit_whatever_the_writer_commits_after() {
    let dir = TempDir::new("snap-commit");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 200);
    let snap = s.snapshot().unwrap();
    let at_snapshot = ids.clone();
    let epoch = snap.epoch();
    for round in 1..=30 {
        rewrite(&s, &mut ids, round);
        // Uncommitted changes are not seen either.
        s.publish(ids[1], b"uncommitted").unwrap();
        assert_round(snap.store(), &at_snapshot, 0);
    }
    assert_eq!(snap.epoch(), epoch);
    for &id in ids.iter().filter(|id| !at_snapshot.contains(id)) {
        assert!(matches!(snap.store().read(id), Err(Error::NotFound(_))), "born after the snapshot");
    }
    assert!(matches!(snap.store().publish(ids[0], b"x"), Err(Error::ReadOnly)));
    assert!(matches!(snap.store().commit(), Err(Error::ReadOnly)));
    let info = snap.store().info(at_snapshot[0]).unwrap();
    assert!(info.committed && !info.dirty && info.len == content(0, 0).len());
    s.abort().unwrap();
    assert_round(&s, &ids, 30);
    // A later snapshot sees the later commit; the old one still its own.
    let later = s.snapshot().unwrap();
    assert_round(later.store(), &ids, 30);
    assert_round(snap.store(), &at_snapshot, 0);
    s.verify().unwrap();
}

#[test]
fn blocks_a_snapshot_reads_are_reused_only_after_it_ends() {
    let s = Store::in_memory(&strict()).unwrap();
    let mut ids = nodes(&s, 100);
    let snap = s.snapshot().unwrap();
    rewrite(&s, &mut ids, 1);
    rewrite(&s, &mut ids, 2);
    let held = s.stats().unwrap();
    assert_eq!(held.snapshots_open, 1);
    assert!(held.pinned_bytes > 0, "the versions of the snapshot's commit are held");
    assert!(held.snapshot_versions >= 100);
    let size_with_snapshot = held.data_file_bytes;
    drop(snap);
    rewrite(&s, &mut ids, 3);
    let after = s.stats().unwrap();
    assert_eq!((after.snapshots_open, after.pinned_bytes, after.snapshot_versions), (0, 0, 0));
    assert_eq!(after.pending_free_bytes, 0);
    // With nothing pinned, rewrites reuse the blocks freed before: the space stops growing.
    for round in 4..20 {
        rewrite(&s, &mut ids, round);
    }
    assert_eq!(s.stats().unwrap().data_file_bytes, size_with_snapshot);
    s.verify().unwrap();
}

#[test]
fn snapshots_on_many_threads_each_see_one_whole_commit() {
    let s = Store::in_memory(&strict()).unwrap();
    let mut ids = nodes(&s, 64);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checked = 0;
                while !stop.load(Ordering::Relaxed) || checked == 0 {
                    let snap = s.snapshot().unwrap();
                    let root = snap.store().get_root(b"round").unwrap().unwrap();
                    let round = u64::from_le_bytes(root.meta.try_into().unwrap());
                    // The ids of the snapshot's round come from its own root's node.
                    let first = snap.store().read(NodeId::from_raw(root.id)).unwrap();
                    assert_eq!(first, content(0, round));
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    // The writer rewrites every node a hundred times; readers check whole rounds meanwhile.
    let round_ids = Arc::new(parking_lot::Mutex::new(Vec::new()));
    for round in 1..=100 {
        rewrite(&s, &mut ids, round);
        round_ids.lock().push(ids.clone());
        let snap = s.snapshot().unwrap();
        if round % 10 == 0 {
            std::thread::yield_now();
        }
        assert_round(snap.store(), &ids, round);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    s.verify().unwrap();
}

#[test]
fn a_read_only_open_beside_the_writer_reads_its_commit_and_pins_it() {
    let dir = TempDir::new("snap-reader");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 150);
    rewrite(&s, &mut ids, 1);
    // Checkpointed first: the reader then replays no log into private copies of the class
    // files' pages, it reads the pages the writer writes.
    s.checkpoint().unwrap();
    let ro = StoreOptions { read_only: true, verify_checksums: true, ..strict() };
    let reader = Store::open(dir.path(), &ro).unwrap();
    let seen = ids.clone();
    for round in 2..=25 {
        rewrite(&s, &mut ids, round);
        assert_round(&reader, &seen, 1);
        let snap = reader.snapshot().unwrap();
        assert_round(snap.store(), &seen, 1);
    }
    let stats = s.stats().unwrap();
    assert_eq!(stats.reader_processes, 1);
    assert!(stats.pinned_bytes > 0);
    reader.close().unwrap();
    drop(reader);
    rewrite(&s, &mut ids, 26);
    let stats = s.stats().unwrap();
    assert_eq!((stats.reader_processes, stats.pinned_bytes), (0, 0), "a closed reader pins nothing");
    s.verify().unwrap();
}

#[test]
fn a_writer_reopened_under_an_older_reader_does_not_reuse_what_it_reads() {
    let dir = TempDir::new("snap-rewriter");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 120);
    // Checkpointed first: the reader then replays no log into private copies of the class
    // files' pages, it reads the pages the writer writes.
    s.checkpoint().unwrap();
    let ro = StoreOptions { read_only: true, verify_checksums: true, ..strict() };
    let reader = Store::open(dir.path(), &ro).unwrap();
    let seen = ids.clone();
    // The writer frees what the reader reads, then goes away with its list of pinned blocks.
    for round in 1..=5 {
        rewrite(&s, &mut ids, round);
    }
    s.close().unwrap();
    drop(s);
    let s = reopen(dir.path(), &strict());
    // What is held for the reader shows as pinned at once (it was counted nowhere).
    let st = s.stats().unwrap();
    assert!(st.pinned_bytes > 0 && st.pending_free_bytes >= st.pinned_bytes, "{st:?}");
    for round in 6..=20 {
        rewrite(&s, &mut ids, round);
        assert_round(&reader, &seen, 0);
    }
    s.verify().unwrap();
    drop(reader);
    // Once the reader is gone, the held blocks come back at the next commit.
    let before = s.stats().unwrap().total.dead_bytes;
    rewrite(&s, &mut ids, 21);
    assert!(s.stats().unwrap().total.dead_bytes > before, "held blocks are free again");
    assert_eq!(s.stats().unwrap().pinned_bytes, 0, "nothing pinned once the reader is gone");
    s.verify().unwrap();
    assert_round(&s, &ids, 21);
}

/// EVENTUAL syncs the log now and then so that blocks freed by unsynced commits can be
/// reused; a sync cannot release blocks a snapshot still pins, so those must not trigger
/// one. (They did: with a snapshot held, every commit past 1 MiB of pinned frees synced.)
#[test]
fn eventual_commits_do_not_sync_for_blocks_a_snapshot_pins() {
    let dir = TempDir::new("snap-eventual-sync");
    let s =
        Store::open(dir.path(), &StoreOptions { durability: Durability::Eventual, ..StoreOptions::default() }).unwrap();
    let mut ids = nodes(&s, 200);
    let snap = s.snapshot().unwrap();
    // One sync may release what was freed up to the snapshot's commit; after it, the frees
    // wait for the snapshot, and syncing for them is useless.
    let mut syncs = 0;
    let mut durable = s.durable_epoch();
    for round in 1..=40 {
        rewrite(&s, &mut ids, round);
        if s.durable_epoch() != durable {
            syncs += 1;
            durable = s.durable_epoch();
        }
    }
    let held = s.stats().unwrap().pending_free_bytes;
    assert!(held > 2 << 20, "the test must hold more than the sync threshold: {held} bytes");
    assert!(syncs <= 1, "{syncs} of 40 commits synced the log for blocks only the snapshot holds");
    drop(snap);
    // Once the snapshot is gone the frees are worth a sync again.
    for round in 41..=60 {
        rewrite(&s, &mut ids, round);
    }
    assert!(s.durable_epoch() > durable, "EVENTUAL never synced to recycle freed blocks");
}
