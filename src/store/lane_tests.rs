//! The allocation lane (`lane.rs`): every count, byte and id stays as if each allocate and
//! free had taken the state lock, through commits, aborts, snapshots, reopens and threads.

use super::tests::{reopen, strict, TempDir};
use super::*;
use crate::error::Error;

fn memory() -> Store {
    Store::in_memory(&StoreOptions::default()).unwrap()
}

/// Reserved and live node counts, and the bytes of the blocks the allocator has out.
fn counts(s: &Store) -> (u64, u64, u64) {
    let st = s.stats().unwrap();
    (st.reserved_nodes, st.live_nodes, st.total.live_bytes)
}

#[test]
fn allocate_free_commit_and_abort_keep_every_count_exact() {
    let s = memory();
    assert_eq!(counts(&s), (0, 0, 0));
    let ids: Vec<NodeId> = (0..100).map(|_| s.allocate(64, 1).unwrap().0).collect();
    assert_eq!(counts(&s), (100, 0, 100 * 64), "the lane's stock is not counted");
    s.verify().unwrap();
    for id in &ids[..40] {
        s.free(*id).unwrap();
    }
    assert_eq!(counts(&s), (60, 0, 60 * 64));
    s.verify().unwrap();
    for id in &ids[..40] {
        assert!(matches!(s.read(*id), Err(Error::NotFound(_))), "a freed id reads as not found");
        assert!(s.free(*id).is_err(), "freed twice");
    }
    assert_eq!(s.read(ids[50]).unwrap(), Vec::<u8>::new(), "allocated, not yet published");
    assert_eq!(s.info(ids[50]).unwrap().kind, 1);
    s.commit().unwrap();
    assert_eq!(counts(&s), (0, 60, 60 * 64));
    // Made and undone: the nodes since the commit go, the committed ones stay.
    let since: Vec<NodeId> = (0..30).map(|_| s.allocate(64, 2).unwrap().0).collect();
    s.free(since[0]).unwrap();
    s.free(ids[45]).unwrap(); // a committed node: freed at the next commit
    assert_eq!(counts(&s), (29, 60, 89 * 64));
    s.abort().unwrap();
    assert_eq!(counts(&s), (0, 60, 60 * 64));
    assert!(since.iter().all(|id| s.read(*id).is_err()), "aborted ids are stale");
    assert_eq!(s.live_ids().unwrap(), ids[40..].to_vec());
    s.verify().unwrap();
}

#[test]
fn ids_never_repeat_and_a_stale_id_is_refused() {
    let s = memory();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let (id, _, capacity) = s.allocate(100, 3).unwrap();
        assert_eq!(capacity, 128);
        assert!(seen.insert(id), "{id} issued twice");
        s.free(id).unwrap();
        assert!(matches!(s.free(id), Err(Error::DoubleFree(_) | Error::NotFound(_))));
        assert!(matches!(s.publish(id, b"x"), Err(Error::NotFound(_))));
    }
    let live = s.allocate(64, 1).unwrap().0;
    let stale = NodeId::from_parts(live.handle(), next_tag_after(live.tag()));
    assert!(matches!(s.free(stale), Err(Error::NotFound(_))));
    assert!(matches!(s.allocate(64, 0), Err(Error::InvalidArgument(_))), "kind 0");
    assert!(matches!(s.allocate(1 << 30, 1), Err(Error::TooLarge(_))));
    assert_eq!(counts(&s), (1, 0, 64));
}

fn next_tag_after(tag: u16) -> u16 {
    super::node_id::next_tag(tag)
}

#[test]
fn a_node_handed_out_is_seen_by_every_other_call() {
    let s = memory();
    let id = s.allocate(64, 7).unwrap().0;
    s.publish(id, b"hello").unwrap();
    assert_eq!(s.read(id).unwrap(), b"hello");
    s.free(id).unwrap(); // through the lock: the publish brought the node into the table
    assert_eq!(counts(&s), (0, 0, 0));
    let id = s.allocate(64, 7).unwrap().0;
    let snap = s.snapshot().unwrap();
    assert!(snap.store().read(id).is_err(), "not committed");
    s.commit().unwrap();
    assert!(snap.store().read(id).is_err(), "the snapshot reads the commit before");
    assert_eq!(s.read(id).unwrap(), Vec::<u8>::new());
}

#[test]
fn a_reopened_store_holds_only_its_nodes_and_old_ids_stay_stale() {
    let dir = TempDir::new("lane-reopen");
    let s = reopen(dir.path(), &strict());
    let kept: Vec<NodeId> = (0..50u8)
        .map(|i| {
            let id = s.allocate(64, 1).unwrap().0;
            s.publish(id, &[i; 60]).unwrap();
            id
        })
        .collect();
    let dropped: Vec<NodeId> = (0..300).map(|_| s.allocate(64, 1).unwrap().0).collect();
    for id in &dropped {
        s.free(*id).unwrap();
    }
    let unfreed_before_close = s.allocate(200, 1).unwrap().0; // reserved: dropped by the close
    s.commit().unwrap();
    // Stock again for the close to give back.
    let more = s.allocate(64, 1).unwrap().0;
    s.free(more).unwrap();
    s.close().unwrap();
    let s = reopen(dir.path(), &strict());
    assert_eq!(counts(&s), (0, 51, 50 * 64 + 256), "the committed nodes' blocks, no more");
    s.verify().unwrap();
    for (i, id) in kept.iter().enumerate() {
        assert_eq!(s.read(*id).unwrap(), vec![i as u8; 60]);
    }
    assert_eq!(s.read(unfreed_before_close).unwrap(), Vec::<u8>::new());
    for id in dropped.iter().chain([&more]) {
        assert!(s.read(*id).is_err(), "{id} stays stale after the reopen");
    }
    let fresh: Vec<NodeId> = (0..400).map(|_| s.allocate(64, 1).unwrap().0).collect();
    assert!(fresh.iter().all(|id| !dropped.contains(id) && *id != more), "no old id is issued again");
}

#[test]
fn threads_allocating_and_freeing_at_once_keep_the_counts() {
    let s = memory();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..3000u32 {
                    let id = s.allocate(64 + usize::from(t) * 40, t + 1).unwrap().0;
                    mine.push(id);
                    if i % 3 == 2 {
                        let gone = mine.swap_remove((i as usize * 7) % mine.len());
                        s.free(gone).unwrap();
                    }
                    if i % 500 == 1 {
                        s.read(mine[0]).unwrap(); // a locked call between the lane's
                    }
                }
                mine
            })
        })
        .collect();
    let mine: Vec<Vec<NodeId>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = mine.iter().map(Vec::len).sum();
    assert_eq!(s.stats().unwrap().reserved_nodes, total as u64);
    s.verify().unwrap();
    for (t, ids) in mine.iter().enumerate() {
        for id in ids {
            assert_eq!(s.info(*id).unwrap().kind, t as u8 + 1);
        }
    }
    s.commit().unwrap();
    assert_eq!(s.stats().unwrap().live_nodes, total as u64);
}

#[test]
fn the_allocator_counts_the_host_calls_not_the_lane_batches() {
    let s = memory();
    // Handle 0 marks an empty entry of the lane's set: never a node.
    for raw in [0, u64::MAX, 1 << 16] {
        assert!(matches!(s.free(NodeId::from_raw(raw)), Err(Error::NotFound(_))), "{raw:#x}");
    }
    let ids: Vec<NodeId> = (0..5).map(|_| s.allocate(200, 1).unwrap().0).collect();
    let t = s.stats().unwrap().total;
    assert_eq!((t.allocs_from_bump, t.allocs_from_bitmap, t.total_allocations, t.total_frees), (5, 0, 5, 0));
    s.free(ids[4]).unwrap();
    s.free(ids[3]).unwrap();
    let again = s.allocate(200, 1).unwrap().0;
    let t = s.stats().unwrap().total;
    assert_eq!((t.allocs_from_bump, t.allocs_from_bitmap, t.total_frees), (5, 1, 2), "a freed block reused");
    assert_eq!(t.live_bytes, 4 * 256);
    s.free(again).unwrap();
    let t = s.stats().unwrap().total;
    assert_eq!((t.total_allocations, t.total_frees, t.live_bytes), (6, 3, 3 * 256));
    s.verify().unwrap();
}

#[test]
fn blocks_the_lane_took_and_never_handed_out_leave_no_hole() {
    let s = memory();
    let ids: Vec<NodeId> = (0..5).map(|_| s.allocate(200, 1).unwrap().0).collect();
    let t = s.stats().unwrap().total;
    assert_eq!((t.live_bytes, t.dead_bytes), (5 * 256, 0), "the batch's rest went back to the bump area");
    s.free(ids[2]).unwrap();
    let t = s.stats().unwrap().total;
    assert_eq!(t.dead_bytes, 256, "a freed node's block is a hole, as without the lane");
    let reused = s.allocate(200, 1).unwrap().1;
    s.free(s.allocate(200, 1).unwrap().0).unwrap();
    let t = s.stats().unwrap().total;
    assert_eq!((t.live_bytes, t.dead_bytes, t.allocs_from_bump, t.allocs_from_bitmap), (5 * 256, 256, 6, 1));
    assert_ne!(reused, 0);
    s.verify().unwrap();
}

#[test]
fn large_nodes_bypass_the_lane_and_keep_the_same_contract() {
    let s = memory();
    let small = s.allocate(100, 1).unwrap().0;
    let large: Vec<NodeId> = (0..10).map(|i| s.allocate(257 + i * 300, 2).unwrap().0).collect();
    assert_eq!(counts(&s).0, 11);
    for id in &large {
        s.free(*id).unwrap();
        assert!(matches!(s.free(*id), Err(Error::DoubleFree(_))));
    }
    s.free(small).unwrap(); // still the lane's: its free did not fold it in
    assert!(matches!(s.free(small), Err(Error::DoubleFree(_))));
    assert_eq!(counts(&s), (0, 0, 0));
    let t = s.stats().unwrap().total;
    assert_eq!((t.total_allocations, t.total_frees), (11, 11));
    s.verify().unwrap();
}
