//! The edges of a store's life: creation cut short at every step, a directory that lost its
//! meta file or its checkpoint, a log cut below what was synced, and a lock that no file
//! deletion can break. Each case once lost data or wedged a store.

use super::meta::{META_CREATING_FILE, META_FILE};
use super::recovery::{CREATION_CRASH_AT, CREATION_STEPS};
use super::tests::{reopen, strict, TempDir};
use super::*;
use crate::error::Error;
use std::collections::BTreeMap;
use std::path::Path;

/// Every file of a directory and its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// A store with a checkpoint and commits after it in the log, left as a crash leaves it.
/// Returns its nodes.
fn store_with_history(dir: &Path) -> Vec<(NodeId, Vec<u8>)> {
    let mut nodes = Vec::new();
    let s = reopen(dir, &strict());
    for i in 0..3u8 {
        let id = s.allocate(100, 1).unwrap().0;
        s.publish(id, &[i; 100]).unwrap();
        nodes.push((id, vec![i; 100]));
        s.commit().unwrap();
    }
    s.close().unwrap();
    let s = reopen(dir, &strict());
    for i in 3..6u8 {
        let id = s.allocate(5000, 1).unwrap().0;
        s.publish(id, &[i; 5000]).unwrap();
        nodes.push((id, vec![i; 5000]));
        s.commit().unwrap();
    }
    s.simulate_crash();
    nodes
}

fn assert_holds(s: &Store, nodes: &[(NodeId, Vec<u8>)]) {
    for (id, bytes) in nodes {
        assert_eq!(&s.read(*id).unwrap(), bytes, "node {id}");
    }
}

#[test]
fn a_store_without_its_meta_is_refused_and_nothing_is_changed() {
    let dir = TempDir::new("no-meta");
    let nodes = store_with_history(dir.path());
    let meta = std::fs::read(dir.path().join(META_FILE)).unwrap();
    std::fs::remove_file(dir.path().join(META_FILE)).unwrap();
    let before = files(dir.path());
    let writable_no_create = StoreOptions { create: false, ..strict() };
    let read_only = StoreOptions { read_only: true, ..strict() };
    for opts in [strict(), writable_no_create, read_only] {
        match Store::open(dir.path(), &opts) {
            Err(Error::Corrupt { file, what, .. }) => {
                assert_eq!(file, META_FILE);
                assert!(what.contains("missing") && what.contains("wal-"), "{what}");
            }
            other => panic!("an open without the meta answered {:?}", other.map(|_| "a store")),
        }
        assert_eq!(files(dir.path()), before, "a refused open changed the directory");
    }
    // An unwritten meta (what an older build's interrupted creation left) is no meta either.
    std::fs::write(dir.path().join(META_FILE), []).unwrap();
    assert!(matches!(Store::open(dir.path(), &strict()), Err(Error::Corrupt { .. })));
    // Put back, the meta finds every commit.
    std::fs::write(dir.path().join(META_FILE), meta).unwrap();
    assert_holds(&reopen(dir.path(), &strict()), &nodes);
}

/// A creation stopped before each of its steps leaves either no store (a directory that a
/// read-only open finds empty and a writable open creates a store in) or a whole, empty one.
#[test]
fn a_creation_stopped_at_any_step_leaves_no_store_or_a_whole_one() {
    for step in 1..=CREATION_STEPS {
        let dir = TempDir::new("creation");
        CREATION_CRASH_AT.with(|c| c.set(Some(step)));
        let stopped = Store::open(dir.path(), &strict());
        CREATION_CRASH_AT.with(|c| c.set(None));
        assert!(stopped.is_err(), "step {step}");
        let read_only = StoreOptions { read_only: true, ..strict() };
        let created = dir.path().join(META_FILE).exists();
        match Store::open(dir.path(), &read_only) {
            Ok(s) => assert!(created && s.stats().unwrap().live_nodes == 0, "step {step}"),
            Err(Error::NotFound(_)) => assert!(!created, "step {step}: the meta is there, but no store"),
            Err(e) => panic!("step {step}: a read-only open answered {e}"),
        }
        let s = reopen(dir.path(), &strict());
        assert_eq!(s.stats().unwrap().live_nodes, 0);
        let id = s.allocate(10, 1).unwrap().0;
        s.publish(id, b"after").unwrap();
        s.commit().unwrap();
        s.close().unwrap();
        assert_eq!(reopen(dir.path(), &strict()).read(id).unwrap(), b"after");
        assert!(!dir.path().join(META_CREATING_FILE).exists(), "step {step}: debris left behind");
    }
}

#[test]
fn the_debris_of_a_creation_is_replaced_but_a_log_with_commits_is_not() {
    // A torn temporary meta and an empty first log: a creation that never finished.
    let dir = TempDir::new("debris");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join(META_CREATING_FILE), [0x50, 0x43, 0x4f]).unwrap();
    std::fs::write(dir.path().join("wal-1.log"), []).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"the host's own file").unwrap();
    let s = reopen(dir.path(), &strict());
    s.close().unwrap();
    assert_eq!(std::fs::read(dir.path().join("notes.txt")).unwrap(), b"the host's own file");
    // A first log that holds commits is not debris, whatever else is missing.
    let dir = TempDir::new("debris-with-commits");
    store_with_history(dir.path());
    std::fs::remove_file(dir.path().join(META_FILE)).unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with("wal-") {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    assert!(matches!(Store::open(dir.path(), &strict()), Err(Error::Corrupt { .. })));
}

#[test]
fn a_creation_on_a_full_disk_leaves_debris_that_opens_later() {
    let dir = TempDir::new("creation-full");
    std::fs::create_dir_all(dir.path()).unwrap();
    crate::os::simulate_disk_limit(dir.path(), Some(100));
    let full = Store::open(dir.path(), &strict());
    crate::os::simulate_disk_limit(dir.path(), None);
    assert!(matches!(full, Err(Error::NoSpace(_))), "{:?}", full.map(|_| ()));
    assert!(!dir.path().join(META_FILE).exists());
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.stats().unwrap().live_nodes, 0);
}

#[test]
fn a_missing_checkpoint_is_corrupt_like_a_missing_log() {
    let dir = TempDir::new("no-checkpoint");
    store_with_history(dir.path());
    let name = |prefix: &str| {
        files(dir.path()).into_keys().find(|n| n.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} file"))
    };
    let (checkpoint, log) = (name("checkpoint-"), name("wal-"));
    let saved = std::fs::read(dir.path().join(&checkpoint)).unwrap();
    for missing in [&checkpoint, &log] {
        let bytes = std::fs::read(dir.path().join(missing)).unwrap_or_else(|_| saved.clone());
        std::fs::remove_file(dir.path().join(missing)).unwrap();
        match Store::open(dir.path(), &strict()) {
            Err(Error::Corrupt { file, what, .. }) => assert!(file == *missing && what.contains("missing"), "{what}"),
            other => panic!("without {missing}: {:?}", other.map(|_| "a store")),
        }
        std::fs::write(dir.path().join(missing), bytes).unwrap();
    }
}

/// The meta records how much of the log was synced: a log cut below that is lost commits,
/// not a torn tail, and is refused; a torn tail past it is still cut and recovered from.
#[test]
fn a_log_cut_below_what_was_synced_is_corrupt() {
    let dir = TempDir::new("log-cut");
    let opts = StoreOptions { meta_refresh_ms: 0, ..strict() };
    let s = reopen(dir.path(), &opts);
    let mut nodes = Vec::new();
    for i in 0..6u8 {
        let id = s.allocate(200, 1).unwrap().0;
        s.publish(id, &[i; 200]).unwrap();
        s.commit().unwrap();
        nodes.push((id, vec![i; 200]));
    }
    s.simulate_crash();
    let log = dir.path().join("wal-1.log");
    let synced = wal::cut_to_frames(&log);
    // Bytes past the synced end: a commit torn by the crash.
    let mut torn = synced.clone();
    torn.extend_from_slice(&[0xAB; 37]);
    std::fs::write(&log, &torn).unwrap();
    let s = reopen(dir.path(), &StoreOptions { read_only: true, ..opts.clone() });
    assert_holds(&s, &nodes);
    drop(s);
    std::fs::write(&log, &synced[..synced.len() / 2]).unwrap();
    for o in [opts.clone(), StoreOptions { read_only: true, ..opts.clone() }] {
        match Store::open(dir.path(), &o) {
            Err(Error::Corrupt { file, what, .. }) => assert!(file == "wal-1.log" && what.contains("synced"), "{what}"),
            other => panic!("a log cut below its synced length: {:?}", other.map(|_| "a store")),
        }
    }
    assert_eq!(std::fs::read(&log).unwrap(), &synced[..synced.len() / 2], "a refused open changed the log");
    std::fs::write(&log, &synced).unwrap();
    assert_holds(&reopen(dir.path(), &opts), &nodes);
}

/// The lock is the directory itself: there is no lock file to delete, and whatever is deleted
/// or created in the directory, a second writer is refused.
#[test]
fn deleting_files_does_not_let_a_second_writer_in() {
    let dir = TempDir::new("lock");
    let first = reopen(dir.path(), &strict());
    let _ = std::fs::remove_file(dir.path().join("LOCK"));
    assert!(!dir.path().join("LOCK").exists());
    assert!(matches!(Store::open(dir.path(), &strict()), Err(Error::Busy(_))));
    first.close().unwrap();
    reopen(dir.path(), &strict()).close().unwrap();
}

/// A commit does not sync a class file's size (that would write back the whole file): after a
/// power cut the file may end before a segment the last commits wrote to. Recovery extends it
/// when the log holds those nodes' bytes, and refuses the store when it does not.
#[test]
fn a_class_file_that_lost_its_growth_is_extended_from_the_log() {
    for logged in [true, false] {
        let dir = TempDir::new("lost-growth");
        let opts = StoreOptions { inline_payload_max_bytes: if logged { 8192 } else { 64 }, ..strict() };
        let s = reopen(dir.path(), &opts);
        let id = s.allocate(3000, 1).unwrap().0;
        s.publish(id, &[0x77; 3000]).unwrap();
        s.commit().unwrap();
        s.simulate_crash();
        let class_file = dir.path().join("class-06-4096.seg");
        std::fs::OpenOptions::new().write(true).open(&class_file).unwrap().set_len(0).unwrap();
        let read_only = StoreOptions { read_only: true, ..opts.clone() };
        if !logged {
            for o in [&read_only, &opts] {
                match Store::open(dir.path(), o) {
                    Err(Error::Corrupt { file, .. }) => assert_eq!(file, "class-06-4096.seg"),
                    other => panic!("a lost block whose bytes the log lacks: {:?}", other.map(|_| "a store")),
                }
            }
            continue;
        }
        let ro = reopen(dir.path(), &read_only);
        assert_eq!(ro.read(id).unwrap(), vec![0x77; 3000]);
        assert_eq!(std::fs::metadata(&class_file).unwrap().len(), 0, "a read-only open changes no file");
        drop(ro);
        let s = reopen(dir.path(), &opts);
        assert_eq!(s.read(id).unwrap(), vec![0x77; 3000]);
        s.verify().unwrap();
        assert!(s.check_checksums(1).unwrap().is_empty());
        s.close().unwrap();
        assert_eq!(reopen(dir.path(), &opts).read(id).unwrap(), vec![0x77; 3000]);
    }
}

/// A BALANCED store opened in a process forked from one that had opened a store starts no
/// flusher thread: a second thread there could hang in parking_lot's parking table, which the
/// fork copied (an outside tester's child hung or crashed in `close` about once in a few
/// hundred forks). Its commits are durable by the close all the same. Run in a process of its
/// own (the test starts this test binary again), so that the fork copies no other test's
/// threads or locks.
#[test]
fn a_balanced_store_in_a_forked_child_starts_no_thread() {
    const ALONE: &str = "PCORE_TEST_FORKED_CHILD_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let name = "store::edge_tests::a_balanced_store_in_a_forked_child_starts_no_thread";
        let out = std::process::Command::new(exe)
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let dir = TempDir::new("fork-balanced");
    let parent = Store::open(dir.path().join("parent"), &StoreOptions::default()).unwrap();
    let child_dir = dir.path().join("child");
    let code = crate::os::exit_code_of_forked(|| {
        let run = || -> Option<i32> {
            let s = Store::open(&child_dir, &StoreOptions::default()).ok()?;
            let threads = std::fs::read_dir("/proc/self/task").ok()?.count();
            let id = s.allocate(8, 1).ok()?.0;
            s.publish(id, &[7; 8]).ok()?;
            s.commit().ok()?;
            s.close().ok()?;
            Some(if threads == 1 { 0 } else { 10 + threads as i32 })
        };
        run().unwrap_or(99)
    });
    assert_eq!(code, Some(0), "10 + n: the child had n threads after opening a BALANCED store; 99: a call failed");
    parent.close().unwrap();
    let s = reopen(&child_dir, &StoreOptions::default());
    assert_eq!(s.stats().unwrap().live_nodes, 1, "the child's commit");
}

/// A version too large to log is synced in its block, the only copy of it. Once a commit
/// frees that block it is reused, and no state before that commit can be rebuilt: a log cut
/// below it must be refused, however recently the meta last recorded the log (an outside
/// tester's truncated log opened at an old commit and answered other nodes' bytes).
#[test]
fn a_log_cut_below_a_commit_that_freed_a_synced_version_is_refused() {
    let dir = TempDir::new("edge-sole-copy");
    let opts = StoreOptions { inline_payload_max_bytes: 100, meta_refresh_ms: 3_600_000, ..strict() };
    let s = reopen(dir.path(), &opts);
    let a = s.allocate(4096, 1).unwrap().0;
    s.publish(a, &[1; 4096]).unwrap();
    s.commit().unwrap();
    // Version 2 goes to another block; version 1's block is freed by this commit.
    s.publish(a, &[2; 4096]).unwrap();
    s.commit().unwrap();
    let b = s.allocate(4096, 1).unwrap().0;
    s.publish(b, &[3; 4096]).unwrap();
    s.commit().unwrap();
    let (a_loc, b_loc) = (s.read_addr(a).unwrap().0, s.read_addr(b).unwrap().0);
    s.simulate_crash();
    let log = super::tests::file_with_prefix(dir.path(), "wal-");
    let bytes = wal::cut_to_frames(&log);
    let ends = wal::frame_ends(&bytes);
    assert!(ends.len() >= 3 && a_loc != b_loc, "three commits logged");
    std::fs::write(&log, &bytes[..ends[ends.len() - 3] as usize]).unwrap();
    match Store::open(dir.path(), &opts) {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("synced"), "{what}"),
        Ok(s) => assert!(s.read(a).unwrap() == [1; 4096], "the first commit, rebuilt from other bytes"),
        Err(e) => panic!("{e}"),
    }
}
