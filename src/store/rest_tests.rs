//! A store at rest (no commit for `idle_checkpoint_ms`) is checkpointed by its background
//! thread when its files hold more than the footprint trigger: a burst of statement-sized
//! commits leaves the log at 3.5 times the live bytes, which only a checkpoint empties.

use super::tests::{reopen, TempDir};
use super::*;
use crate::btree::{BTree, TreeOptions};
use crate::Error;
use std::time::{Duration, Instant};

fn resting(idle_ms: u32) -> StoreOptions {
    StoreOptions { durability: Durability::Strict, idle_checkpoint_ms: idle_ms, ..StoreOptions::default() }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Inserts rows `from..to`, a commit every 500, as a SQL engine commits per statement.
fn statements(s: &Store, t: &BTree, rows: std::ops::Range<u64>) {
    for i in rows {
        t.insert(&key(i), &i.to_le_bytes()).unwrap();
        if (i + 1) % 500 == 0 {
            s.commit().unwrap();
        }
    }
    s.commit().unwrap();
}

/// True once the store rested after statements: the checkpoint holds its last commit, the
/// log is empty and its kept space given back (a commit's own checkpoint keeps it: ~3x), and
/// the free blocks' pages are given back (~1.9x without), within issue 18's 1.5x of the live
/// bytes (~5x without the rest step).
fn rested(st: &StoreStats) -> bool {
    checkpointed(st) && st.footprint_ratio() <= 1.5
}

fn checkpointed(st: &StoreStats) -> bool {
    st.log_bytes == 0 && st.checkpoint_epoch == st.epoch
}

/// Waits (30 s at most: a loaded machine) until `done`.
fn wait_for(s: &Store, done: fn(&StoreStats) -> bool) -> StoreStats {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let st = s.stats().unwrap();
        if done(&st) || Instant::now() > until {
            return st;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_for_rest(s: &Store) -> StoreStats {
    wait_for(s, rested)
}

#[test]
fn a_store_at_rest_is_checkpointed_and_gives_its_log_back() {
    let dir = TempDir::new("rest");
    let s = reopen(dir.path(), &resting(100));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    statements(&s, &t, 0..60_000);
    // A loaded machine may pause between two commits longer than the idle time already: the
    // figures during the load are not compared. What is left at rest past the live bytes is
    // the last commits' copies, strewn through the class files (1.9x here), whose pages the
    // rest step gives back too.
    let first = wait_for_rest(&s);
    assert!(rested(&first), "{first:?}");
    // A read-only open (`pcore stat`'s) sees the holes as given back too (outsider13 H1: it
    // counted them as free blocks taking space).
    {
        let ro =
            Store::open(dir.path(), &StoreOptions { read_only: true, create: false, ..resting(u32::MAX) }).unwrap();
        let seen = ro.stats().unwrap();
        assert_eq!(seen.given_back_bytes, first.given_back_bytes, "{seen:?}");
        assert!(seen.footprint_ratio() <= 1.5, "{seen:?}");
        ro.close().unwrap();
    }
    // The store goes on: more statements, and it rests again.
    statements(&s, &t, 60_000..70_000);
    let again = wait_for_rest(&s);
    assert!(rested(&again) && again.epoch > first.epoch, "{again:?}");
    assert_eq!(t.len(), 70_000);
    drop(t);
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &resting(u32::MAX));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    assert_eq!(t.len(), 70_000);
    for i in (0..70_000).step_by(97) {
        assert_eq!(t.get(&key(i)).unwrap(), Some(i.to_le_bytes().to_vec()), "row {i}");
    }
}

/// An open snapshot reads blocks a checkpoint would let go: the store waits for it to close.
#[test]
fn a_store_at_rest_waits_for_its_snapshots() {
    let dir = TempDir::new("rest-snapshot");
    let s = reopen(dir.path(), &resting(1));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    let snapshot = s.snapshot().unwrap();
    statements(&s, &t, 0..50_000);
    let busy = s.stats().unwrap();
    assert!(busy.footprint_ratio() > 1.5, "{busy:?}");
    std::thread::sleep(Duration::from_millis(200));
    let waiting = s.stats().unwrap();
    assert!(waiting.log_bytes > 0 && waiting.checkpoints == busy.checkpoints, "{waiting:?}");
    drop(snapshot);
    // The rest step looks once per commit: this one finds the snapshot gone.
    t.insert(b"one more", b"row").unwrap();
    s.commit().unwrap();
    // The snapshot held every version of the load: the class files stay large, strewn.
    let st = wait_for(&s, checkpointed);
    assert!(checkpointed(&st), "{st:?}");
}

/// Changes waiting for a commit (a long transaction, a bulk load) keep the store from resting:
/// a checkpoint would flush their pages under the state lock while the host waits (review11:
/// a 17 ms insert in a transaction of a million). It rests once they are committed.
#[test]
fn a_store_with_changes_waiting_for_a_commit_rests_after_it() {
    let dir = TempDir::new("rest-uncommitted");
    let s = reopen(dir.path(), &resting(200));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    statements(&s, &t, 0..60_000);
    wait_for_rest(&s);
    // A commit, and at once changes that wait for the next: without them the store would
    // rest 200 ms later.
    t.insert(b"one more", b"row").unwrap();
    s.commit().unwrap();
    for i in 0..2_000u64 {
        assert!(t.remove(&key(i * 3)).unwrap());
        t.insert(&key(100_000 + i), &i.to_le_bytes()).unwrap();
    }
    let before = s.stats().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let waiting = s.stats().unwrap();
    assert_eq!(waiting.checkpoints, before.checkpoints, "rested with changes pending: {waiting:?}");
    s.commit().unwrap();
    let st = wait_for_rest(&s);
    assert!(rested(&st), "{st:?}");
    drop(t);
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &resting(u32::MAX));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    assert_eq!(t.len(), 60_001);
    assert_eq!(t.get(&key(100_000)).unwrap(), Some(0u64.to_le_bytes().to_vec()));
    assert_eq!(t.get(&key(3)).unwrap(), None);
}

/// Nodes of `len` bytes, `count` of them, a commit per 1,000; then about `freed_percent` of
/// them freed at random, a commit per 1,000. Returns the nodes kept, with their fill byte.
fn nodes_then_random_frees(s: &Store, len: usize, count: u64, freed_percent: u64) -> Vec<(NodeId, u8)> {
    let mut kept = Vec::new();
    let ids: Vec<NodeId> = (0..count)
        .map(|i| {
            let id = s.allocate(len, 1).unwrap().0;
            s.publish(id, &vec![i as u8; len]).unwrap();
            if (i + 1) % 1000 == 0 {
                s.commit().unwrap();
            }
            id
        })
        .collect();
    s.commit().unwrap();
    for (i, id) in ids.into_iter().enumerate() {
        if u64::from_le_bytes(key(i as u64)[..8].try_into().unwrap()) % 100 < freed_percent {
            s.free(id).unwrap();
        } else {
            kept.push((id, i as u8));
        }
        if (i + 1) % 1000 == 0 {
            s.commit().unwrap();
        }
    }
    s.commit().unwrap();
    kept
}

fn assert_nodes(s: &Store, kept: &[(NodeId, u8)], len: usize) {
    for &(id, fill) in kept {
        assert_eq!(s.read(id).unwrap(), vec![fill; len], "node {id}");
    }
    s.verify().unwrap();
}

/// Random frees of small nodes leave free blocks that share their pages with live ones, which
/// no punch gives back (2.2x at rest before): at rest the store moves nodes toward the fronts
/// of the class files, recorded by a checkpoint, not a commit (the epoch stays), then cuts and
/// punches what that freed. A crash and a reopen find every node.
#[test]
fn a_store_whose_free_blocks_share_pages_moves_its_nodes_at_rest() {
    let dir = TempDir::new("rest-relocate");
    let s = reopen(dir.path(), &resting(20));
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    let epoch = s.stats().unwrap().epoch;
    let st = wait_for(&s, |st| checkpointed(st) && st.footprint_ratio() <= 1.5);
    assert!(checkpointed(&st) && st.footprint_ratio() <= 1.5, "{st:?}");
    assert_eq!(st.epoch, epoch, "the rest step made no commit");
    assert_nodes(&s, &kept, 100);
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &resting(u32::MAX));
    assert_nodes(&s, &kept, 100);
}

/// A pointer `read_addr` handed out stays good until the second commit after it: until then
/// the rest step moves no node (the node it points to may be one), and once two commits have
/// passed it does.
#[test]
fn a_store_at_rest_moves_no_node_while_a_read_pointer_may_be_in_use() {
    let dir = TempDir::new("rest-pointer");
    let s = reopen(dir.path(), &resting(20));
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    let (last, fill) = *kept.last().unwrap(); // near a class file's tail: a node that would move
    let (addr, len) = s.read_addr(last).unwrap();
    let st = wait_for(&s, checkpointed);
    assert!(checkpointed(&st), "{st:?}");
    std::thread::sleep(Duration::from_millis(100)); // the rest step's work after its checkpoint
    let rested = s.stats().unwrap();
    assert!(rested.footprint_ratio() > 1.5, "nodes moved under a pointer: {rested:?}");
    // The node is where the pointer points (asking again takes a pointer at the same epoch).
    assert_eq!(s.read_addr(last).unwrap(), (addr, len));
    assert_eq!(s.read(last).unwrap(), vec![fill; 100]);
    for round in 0..2u64 {
        s.set_root(b"round", round, b"").unwrap();
        s.commit().unwrap();
    }
    let st = wait_for(&s, |st| checkpointed(st) && st.footprint_ratio() <= 1.5);
    assert!(st.footprint_ratio() <= 1.5, "{st:?}");
    assert_nodes(&s, &kept, 100);
}

/// A writable reopen allocates the holes again, and an abort leaves the files as its
/// uncommitted work grew them: neither is a commit, and the store stayed past the trigger
/// until one came (outsider13: 6.63x and 11.34x). The rest step now looks once after an open
/// and after an abort.
#[test]
fn a_store_rests_after_a_reopen_and_after_an_abort_without_a_commit() {
    let dir = TempDir::new("rest-reopen");
    let s = reopen(dir.path(), &resting(20));
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    s.read_addr(kept[0].0).unwrap(); // a pointer: this process moves no node at rest
    wait_for(&s, checkpointed);
    s.simulate_crash(); // no close
    drop(s);
    let s = reopen(dir.path(), &resting(20));
    let opened = s.stats().unwrap();
    assert!(opened.footprint_ratio() > 1.5, "{opened:?}");
    let st = wait_for(&s, |st| st.footprint_ratio() <= 1.5);
    assert!(st.footprint_ratio() <= 1.5, "after the reopen: {st:?}");
    assert_eq!(st.epoch, opened.epoch, "no commit made");
    let epoch = st.epoch;
    // Uncommitted nodes grow the files; the abort frees them.
    for _ in 0..20_000 {
        let id = s.allocate(3000, 1).unwrap().0;
        s.publish(id, &[9; 3000]).unwrap();
    }
    s.abort().unwrap();
    assert!(s.stats().unwrap().footprint_ratio() > 1.5, "the files grew");
    // Cut, not only punched: the files the abort emptied end where their nodes do.
    let st = wait_for(&s, |st| st.footprint_ratio() <= 1.5 && st.total.total_segments < 10);
    assert!(st.footprint_ratio() <= 1.5 && st.total.total_segments < 10, "after the abort: {st:?}");
    assert_eq!(st.epoch, epoch, "no commit made");
    assert_nodes(&s, &kept, 100);
}

/// A store whose rest step moves nodes, and a reader process that opens while it does (just
/// before the meta names the checkpoint recording the moves): the writer, the reader (which
/// reads the last checkpoint, naming the blocks the nodes moved from) and the nodes kept.
fn rest_with_a_reader_opening(dir: &TempDir) -> (Store, Store, Vec<(NodeId, u8)>) {
    let s = reopen(dir.path(), &resting(u32::MAX));
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    s.checkpoint().unwrap();
    let reader: std::rc::Rc<std::cell::RefCell<Option<Store>>> = Default::default();
    let slot = reader.clone();
    let path = dir.path().to_path_buf();
    super::api::CHECKPOINT_HOOK.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |step| {
            if step == super::api::CheckpointStep::BeforeMetaSwitch && slot.borrow().is_none() {
                let ro = StoreOptions { read_only: true, create: false, verify_checksums: true, ..resting(u32::MAX) };
                *slot.borrow_mut() = Some(Store::open(&path, &ro).unwrap());
            }
        }))
    });
    let before = s.stats().unwrap();
    s.rest_now();
    super::api::CHECKPOINT_HOOK.with(|h| *h.borrow_mut() = None);
    let after = s.stats().unwrap();
    let r = reader.borrow_mut().take();
    let r = r.unwrap_or_else(|| panic!("the rest step checkpointed: {before:?} {after:?}"));
    assert_eq!(after.epoch, before.epoch);
    (s, r, kept)
}

/// New nodes take the free blocks, a commit every thousand; then every node the reader reads
/// must be as it was.
fn allocate_then_check_the_reader(s: &Store, r: &Store, kept: &[(NodeId, u8)]) {
    for i in 0..60_000u64 {
        let id = s.allocate(100, 1).unwrap().0;
        s.publish(id, &[0xA5; 100]).unwrap();
        if (i + 1) % 1000 == 0 {
            s.commit().unwrap();
        }
    }
    s.commit().unwrap();
    let bad = kept.iter().filter(|&&(id, fill)| r.read(id).ok() != Some(vec![fill; 100])).count();
    assert_eq!(bad, 0, "nodes the reader process reads wrong, of {}", kept.len());
}

/// A reader process that opens while the rest step moves nodes reads the last checkpoint,
/// which names the blocks the nodes moved from: those must stay its until it leaves, not be
/// handed out again once the checkpoint naming the new places is on disk (review12).
#[test]
fn a_reader_that_opens_during_a_rest_keeps_the_blocks_nodes_moved_from() {
    let dir = TempDir::new("rest-reader-race");
    let (s, r, kept) = rest_with_a_reader_opening(&dir);
    allocate_then_check_the_reader(&s, &r, &kept);
}

/// The same, with the writer killed after the rest, before its next checkpoint: the reopened
/// writer opens the checkpoint recording the moves, at the epoch the reader reads, where the
/// blocks the nodes moved from are free. It must hold them for the reader too (review12).
#[test]
fn a_reader_that_opens_during_a_rest_keeps_the_moved_from_blocks_across_a_writer_crash() {
    let dir = TempDir::new("rest-reader-race-crash");
    let (s, r, kept) = rest_with_a_reader_opening(&dir);
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &resting(u32::MAX));
    allocate_then_check_the_reader(&s, &r, &kept);
}

/// A rest step that fails with nothing in doubt (here its checkpoint stops before the meta
/// switch, as on a full disk) looks again later without a commit, and gives the space back
/// then (outsider12 N2: it waited for the host's next commit).
#[test]
fn a_failed_rest_is_tried_again_without_a_commit() {
    let dir = TempDir::new("rest-retry");
    let s = reopen(dir.path(), &resting(u32::MAX));
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    statements(&s, &t, 0..100_000);
    let before = s.stats().unwrap();
    assert!(before.footprint_ratio() > 1.5, "{before:?}");
    super::api::CHECKPOINT_CRASH.with(|c| c.set(true));
    s.rest_now();
    super::api::CHECKPOINT_CRASH.with(|c| c.set(false));
    assert!(s.stats().unwrap().footprint_ratio() > 1.5, "the failed rest gave space back");
    s.rest_now();
    let after = s.stats().unwrap();
    assert!(after.footprint_ratio() <= 1.5, "not tried again: {after:?}");
    assert_eq!(after.epoch, before.epoch, "no commit made");
}

/// The rest step's checkpoint fails (no poison): the nodes are at their new places in memory,
/// the last checkpoint on disk names the old ones. Commits that edit (deltas), free and leave
/// moved nodes, then a crash: the reopen finds every committed byte (review12).
#[test]
fn a_rest_whose_checkpoint_fails_loses_nothing_at_a_crash_after_commits() {
    let dir = TempDir::new("rest-failed-checkpoint");
    let s = reopen(dir.path(), &resting(u32::MAX));
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    s.checkpoint().unwrap();
    let before = s.stats().unwrap();
    super::api::CHECKPOINT_CRASH.with(|c| c.set(true));
    s.rest_now();
    super::api::CHECKPOINT_CRASH.with(|c| c.set(false));
    assert!(!s.poisoned_quietly());
    let after = s.stats().unwrap();
    assert_eq!(after.epoch, before.epoch);
    let mut want: std::collections::BTreeMap<NodeId, Vec<u8>> =
        kept.iter().map(|&(id, fill)| (id, vec![fill; 100])).collect();
    // The nodes near the tails moved: edit a byte of some, free others.
    for (n, &(id, _)) in kept.iter().rev().take(3000).enumerate() {
        if n % 3 == 0 {
            s.free(id).unwrap();
            want.remove(&id);
        } else if n % 3 == 1 {
            s.update(id, |b| {
                b[5] ^= 0xFF;
                100
            })
            .unwrap();
            want.get_mut(&id).unwrap()[5] ^= 0xFF;
        }
        if n % 500 == 499 {
            s.commit().unwrap();
        }
    }
    s.commit().unwrap();
    for (id, bytes) in &want {
        assert_eq!(&s.read(*id).unwrap(), bytes, "node {id} before the crash");
    }
    s.verify().unwrap();
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &resting(u32::MAX));
    for (id, bytes) in &want {
        assert_eq!(&s.read(*id).unwrap(), bytes, "node {id} after the crash");
    }
    s.verify().unwrap();
    // And once more after a checkpoint that succeeds and a second rest.
    s.checkpoint().unwrap();
    s.rest_now();
    s.verify().unwrap();
}

/// A store that rested (its free pages punched) and was killed opens for writing on a disk
/// that others have filled since (review12: it answered `NoSpace`, since every writable open
/// allocated its holes again). With no log to replay the open marks the holes instead: a block
/// in one is allocated again when handed out, `NoSpace` while the disk is full (never a
/// `SIGBUS`), and once there is room the store goes on.
#[test]
fn a_rested_store_opens_on_a_disk_filled_since_and_fills_its_holes_when_used() {
    let dir = TempDir::new("rest-full-reopen");
    let s = reopen(dir.path(), &resting(u32::MAX));
    let mut kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    s.checkpoint().unwrap();
    s.rest_now();
    assert!(s.stats().unwrap().given_back_bytes > 0, "nothing punched");
    s.simulate_crash();
    drop(s);

    super::simulate_disk_limit(dir.path(), Some(0));
    let opened = Store::open(dir.path(), &resting(u32::MAX));
    let s = opened.unwrap_or_else(|e| {
        super::simulate_disk_limit(dir.path(), None);
        panic!("a rested store did not open on a full disk: {e}")
    });
    // The open cut the free tails (holes among them); what it kept is marked again.
    assert!(s.stats().unwrap().given_back_bytes > 0, "the holes not marked");
    assert_nodes(&s, &kept, 100);
    // Every free block is handed out in turn: those in holes cannot be allocated on disk.
    let mut refused = None;
    for i in 0..60_000u32 {
        match s.allocate(100, 1) {
            Ok((id, _, _)) => {
                s.publish(id, &[i as u8; 100]).unwrap();
                kept.push((id, i as u8));
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    super::simulate_disk_limit(dir.path(), None);
    assert!(matches!(refused, Some(Error::NoSpace(_))), "a block in a hole was handed out: {refused:?}");
    for i in 0..20_000u32 {
        let id = s.allocate(100, 1).unwrap().0;
        s.publish(id, &[(i % 251) as u8; 100]).unwrap();
        kept.push((id, (i % 251) as u8));
    }
    s.commit().unwrap();
    s.close().unwrap();
    let s = reopen(dir.path(), &resting(u32::MAX));
    assert_nodes(&s, &kept, 100);
}

/// The same on a real file system: needs `PCORE_FULL_DIR`, an empty directory on a small file
/// system of its own (tmpfs), which the test fills.
#[test]
#[ignore]
fn a_store_whose_holes_were_taken_by_others_still_opens() {
    let Ok(root) = std::env::var("PCORE_FULL_DIR") else { return };
    let dir = std::path::Path::new(&root).join("store");
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir, &resting(u32::MAX)).unwrap();
    let kept = nodes_then_random_frees(&s, 100, 60_000, 70);
    s.checkpoint().unwrap();
    s.rest_now();
    let st = s.stats().unwrap();
    eprintln!("given back {} of {}", st.given_back_bytes, st.data_file_bytes);
    assert!(st.given_back_bytes > 0, "{st:?}");
    s.simulate_crash();
    drop(s);
    // Others fill the disk.
    let filler = std::path::Path::new(&root).join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[1u8; 1 << 16]).is_ok() {}
    }
    let opened = Store::open(&dir, &resting(u32::MAX));
    let result = opened.map(|s| {
        assert_nodes(&s, &kept, 100);
        let allocated = (0..60_000).map(|_| s.allocate(100, 1).map(drop)).find(|r| r.is_err());
        (s, allocated)
    });
    let _ = std::fs::remove_file(&filler);
    let (_s, allocated) = result.unwrap();
    assert!(matches!(allocated, Some(Err(Error::NoSpace(_)))), "{allocated:?}");
}

/// A node whose block is larger than the rest step's byte budget per hold of the lock
/// (4 MiB; classes go to 8 MiB) is never moved, and the rest step must end all the same
/// rather than look again forever with the writer held (review12).
#[test]
fn a_rest_with_nodes_larger_than_its_budget_ends() {
    let dir = TempDir::new("rest-large-nodes");
    let opts = StoreOptions { max_class_bytes: 8 << 20, ..resting(u32::MAX) };
    let s = reopen(dir.path(), &opts);
    let ids: Vec<NodeId> = (0..16u8)
        .map(|i| {
            let id = s.allocate(5 << 20, 1).unwrap().0;
            s.publish(id, &vec![i; 5 << 20]).unwrap();
            id
        })
        .collect();
    s.commit().unwrap();
    for &id in &ids[..12] {
        s.free(id).unwrap();
    }
    s.commit().unwrap();
    s.checkpoint().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let store = s.clone();
    std::thread::spawn(move || {
        store.rest_now();
        let _ = done_tx.send(());
    });
    // Not a timing assertion: a minute is a hang, however loaded the machine.
    assert!(done_rx.recv_timeout(Duration::from_secs(60)).is_ok(), "the rest step never ended");
    for (i, &id) in ids.iter().enumerate().skip(12) {
        assert_eq!(s.read(id).unwrap(), vec![i as u8; 5 << 20]);
    }
}
