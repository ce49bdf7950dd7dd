//! A failure that leaves what is on disk unsure (a failed sync) stops the store, and the call
//! that met it says so: `Poisoned`, never an I/O error whose documented meaning is "nothing
//! committed" (an outside tester's `fdatasync` fault made a commit answer `IO_ERROR` that a
//! reopen then showed durable).

use super::api::{CheckpointStep, CHECKPOINT_HOOK};
use super::tests::{reopen, strict, TempDir};
use super::*;
use crate::error::Error;
use crate::os::{simulate_cut_failure, simulate_disk_limit, simulate_sync_failure};

fn node(s: &Store, byte: u8) -> (NodeId, Vec<u8>) {
    let id = s.allocate(200, 1).unwrap().0;
    s.publish(id, &[byte; 200]).unwrap();
    (id, vec![byte; 200])
}

/// After the sync fails: every call answers `Poisoned`, and a reopen finds the last commit
/// whole and the failed one either whole or absent.
fn expect_stopped_then_reopen(dir: &std::path::Path, s: Store, kept: &(NodeId, Vec<u8>), unsure: &(NodeId, Vec<u8>)) {
    assert!(matches!(s.commit(), Err(Error::Poisoned(_))), "a later commit");
    assert!(matches!(s.abort(), Err(Error::Poisoned(_))), "an abort");
    assert!(matches!(s.allocate(10, 1), Err(Error::Poisoned(_))), "an allocation");
    // Reads too, as the header says: memory may hold a commit the disk does not.
    assert!(matches!(s.read(kept.0), Err(Error::Poisoned(_))), "a read");
    assert!(matches!(s.snapshot().map(drop), Err(Error::Poisoned(_))), "a snapshot");
    assert!(matches!(s.stats().map(drop), Err(Error::Poisoned(_))), "stats");
    let copy = dir.with_extension("copy");
    assert!(matches!(s.backup(&copy, 0), Err(Error::Poisoned(_))), "a backup");
    assert!(!copy.exists(), "a refused backup leaves nothing");
    assert!(s.is_open(), "poisoned, not closed");
    simulate_sync_failure(dir, false);
    drop(s);
    let r = reopen(dir, &strict());
    assert_eq!(r.read(kept.0).unwrap(), kept.1);
    match r.read(unsure.0) {
        Ok(bytes) => assert_eq!(bytes, unsure.1, "the unsure commit, whole"),
        Err(e) => assert!(matches!(e, Error::NotFound(_)), "{e}"),
    }
    r.commit().unwrap();
}

#[test]
fn a_commit_whose_log_sync_fails_answers_poisoned() {
    let dir = TempDir::new("poison-commit");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 1);
    s.commit().unwrap();
    let unsure = node(&s, 2);
    simulate_sync_failure(dir.path(), true);
    match s.commit() {
        Err(Error::Poisoned(why)) => assert!(why.contains("log sync failed"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    expect_stopped_then_reopen(dir.path(), s, &kept, &unsure);
}

/// The directory sync after a checkpoint renamed the old log over the new generation's: the
/// meta names the new generation already, so the checkpoint cannot be undone.
#[test]
fn a_checkpoint_whose_directory_sync_fails_after_reusing_the_log_answers_poisoned() {
    let dir = TempDir::new("poison-checkpoint");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 3);
    s.commit().unwrap();
    checkpoint_failing_from(dir.path(), &s, CheckpointStep::BeforeLogReuse, "reusing the log");
    expect_stopped_then_reopen(dir.path(), s, &kept, &kept);
}

/// Runs a checkpoint whose syncs fail from `step` on, and expects it to answer `Poisoned`
/// with a reason containing `why`.
fn checkpoint_failing_from(dir: &std::path::Path, s: &Store, step: CheckpointStep, why: &str) {
    let path = dir.to_path_buf();
    CHECKPOINT_HOOK.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |at| {
            if at == step {
                simulate_sync_failure(&path, true);
            }
        }))
    });
    let result = s.checkpoint();
    CHECKPOINT_HOOK.with(|h| *h.borrow_mut() = None);
    match result {
        Err(Error::Poisoned(reason)) => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

/// After a failed sync Linux may have marked the class files' pages clean: a checkpoint tried
/// again would sync nothing and then drop the log that holds those pages (outsider10 F8: an
/// `ENOSPC` retried once answered OK).
#[test]
fn a_checkpoint_whose_class_file_sync_fails_answers_poisoned() {
    let dir = TempDir::new("poison-flush");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 8);
    s.commit().unwrap();
    checkpoint_failing_from(dir.path(), &s, CheckpointStep::BeforeFlush, "sync of the class files");
    expect_stopped_then_reopen(dir.path(), s, &kept, &kept);
}

/// The meta slot may hold the new checkpoint or not: going on would log commits into a
/// generation a crash might not open.
#[test]
fn a_checkpoint_whose_meta_sync_fails_answers_poisoned() {
    let dir = TempDir::new("poison-meta");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 9);
    s.commit().unwrap();
    checkpoint_failing_from(dir.path(), &s, CheckpointStep::BeforeMetaSwitch, "switching the meta");
    expect_stopped_then_reopen(dir.path(), s, &kept, &kept);
}

/// A payload over the inline maximum is synced in its block, not logged: a failed sync of it
/// cannot be tried again either.
#[test]
fn a_commit_whose_unlogged_payload_sync_fails_answers_poisoned() {
    let dir = TempDir::new("poison-payload");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 10);
    s.commit().unwrap();
    let len = strict().inline_payload_max_bytes as usize * 2;
    let id = s.allocate(len, 1).unwrap().0;
    s.publish(id, &vec![11; len]).unwrap();
    simulate_sync_failure(dir.path(), true);
    match s.commit() {
        Err(Error::Poisoned(why)) => assert!(why.contains("unlogged payloads"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    expect_stopped_then_reopen(dir.path(), s, &kept, &(id, vec![11; len]));
}

/// A log append that fails (the disk full) and whose cut-back fails too: the log may hold a
/// part of the frame in front of the next one, so the store stops rather than answer the
/// "nothing committed" of `NoSpace`.
#[test]
fn a_failed_append_that_cannot_be_cut_back_answers_poisoned() {
    let dir = TempDir::new("poison-append");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 4);
    s.commit().unwrap();
    let unsure = node(&s, 5);
    simulate_disk_limit(dir.path(), Some(0));
    simulate_cut_failure(dir.path(), true);
    let result = s.commit();
    simulate_disk_limit(dir.path(), None);
    simulate_cut_failure(dir.path(), false);
    match result {
        Err(Error::Poisoned(why)) => assert!(why.contains("could not be cut back"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    expect_stopped_then_reopen(dir.path(), s, &kept, &unsure);
}

/// The same failed append, cut back: nothing was committed, the store goes on.
#[test]
fn a_failed_append_that_is_cut_back_answers_no_space_and_the_store_goes_on() {
    let dir = TempDir::new("append-cut");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 6);
    s.commit().unwrap();
    let later = node(&s, 7);
    simulate_disk_limit(dir.path(), Some(0));
    let result = s.commit();
    simulate_disk_limit(dir.path(), None);
    assert!(matches!(result, Err(Error::NoSpace(_))), "{result:?}");
    s.commit().unwrap();
    drop(s);
    let r = reopen(dir.path(), &strict());
    assert_eq!(r.read(kept.0).unwrap(), kept.1);
    assert_eq!(r.read(later.0).unwrap(), later.1);
}

/// A close that compacts (the class files hold far more than the nodes) makes commits of its
/// own; when one of their syncs fails the store is poisoned inside the close, and the close
/// must say so (outsider11 G2/G3: it answered OK, and with the failed pages dropped the reopen
/// lost the commits since the last checkpoint).
#[test]
fn a_close_whose_compaction_poisons_the_store_answers_poisoned() {
    let dir = TempDir::new("poison-close");
    let s = reopen(dir.path(), &strict());
    let ids: Vec<NodeId> = (0..3000u32).map(|i| node(&s, (i % 251) as u8).0).collect();
    s.commit().unwrap();
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 10 != 0) {
        s.free(*id).unwrap_or_else(|e| panic!("node {i}: {e}"));
    }
    s.commit().unwrap();
    simulate_sync_failure(dir.path(), true);
    let closed = s.close();
    simulate_sync_failure(dir.path(), false);
    assert!(matches!(closed, Err(Error::Poisoned(_))), "{closed:?}");
    drop(s);
    let r = reopen(dir.path(), &strict());
    assert_eq!(r.read(ids[0]).unwrap(), vec![0; 200]);
}

/// The commit's record of how much of the log is synced (outsider11 G4): the log is synced,
/// but the meta slot whose sync failed may hold the record or not, and its page may be gone;
/// the commit answered OK and the store went on.
#[test]
fn a_commit_whose_meta_record_sync_fails_answers_poisoned() {
    let dir = TempDir::new("poison-meta-record");
    let opts = StoreOptions { meta_refresh_ms: 0, ..strict() };
    let s = reopen(dir.path(), &opts);
    let kept = node(&s, 12);
    s.commit().unwrap();
    let unsure = node(&s, 13);
    simulate_sync_failure(&dir.path().join(super::meta::META_FILE), true);
    match s.commit() {
        Err(Error::Poisoned(why)) => assert!(why.contains("recording the synced log"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    simulate_sync_failure(&dir.path().join(super::meta::META_FILE), false);
    expect_stopped_then_reopen(dir.path(), s, &kept, &unsure);
}

/// A commit whose log outgrew `checkpoint_log_bytes` checkpoints; when that checkpoint's sync
/// of the class files failed, the commit answered OK and only the host's next call learned
/// that the store had stopped (outsider11 G13).
#[test]
fn a_commit_whose_own_checkpoint_fails_to_sync_answers_poisoned() {
    let dir = TempDir::new("poison-auto-checkpoint");
    let opts = StoreOptions { checkpoint_log_bytes: 64 << 10, ..strict() };
    let s = reopen(dir.path(), &opts);
    let kept = node(&s, 14);
    s.commit().unwrap();
    let path = dir.path().to_path_buf();
    CHECKPOINT_HOOK.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |at| {
            if at == CheckpointStep::BeforeFlush {
                simulate_sync_failure(&path, true);
            }
        }))
    });
    let mut unsure = kept.clone();
    let mut result = Ok(0);
    for _ in 0..10_000 {
        unsure = node(&s, 15);
        result = s.commit();
        if result.is_err() {
            break;
        }
    }
    CHECKPOINT_HOOK.with(|h| *h.borrow_mut() = None);
    match result {
        Err(Error::Poisoned(why)) => assert!(why.contains("sync of the class files"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    expect_stopped_then_reopen(dir.path(), s, &kept, &unsure);
}

/// A meta file the checkpoint cannot open (a process out of descriptors, say) was a failed
/// switch and poisoned the store (review11); nothing was written, so the checkpoint is simply
/// not taken: the store goes on, and a reopen finds every commit.
#[test]
fn a_checkpoint_that_cannot_open_the_meta_fails_and_the_store_goes_on() {
    let dir = TempDir::new("unwritable-meta");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 16);
    s.commit().unwrap();
    super::meta::UNWRITABLE.with(|u| u.set(Some(libc::EMFILE)));
    let result = s.checkpoint();
    super::meta::UNWRITABLE.with(|u| u.set(None));
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
    let later = node(&s, 17);
    s.commit().unwrap();
    s.simulate_crash(); // the new generation's files are left as strays
    drop(s);
    let r = reopen(dir.path(), &strict());
    for (id, bytes) in [&kept, &later] {
        assert_eq!(&r.read(*id).unwrap(), bytes);
    }
    r.verify().unwrap();
    r.checkpoint().unwrap();
    let after = node(&r, 18);
    r.commit().unwrap();
    drop(r);
    let r = reopen(dir.path(), &strict());
    for (id, bytes) in [&kept, &later, &after] {
        assert_eq!(&r.read(*id).unwrap(), bytes);
    }
}

/// Poisoned by the background thread (BALANCED's log sync failed), the store told no one:
/// a close as the host's next call answered OK, and a reopen had lost commits the host was
/// told of (outsider12 R1; R3 the same for a rest checkpoint's sync). The close says it;
/// once a call has said it, the close no longer does.
#[test]
fn a_close_after_the_background_thread_poisoned_the_store_answers_poisoned() {
    for told_first in [false, true] {
        let dir = TempDir::new("poison-background");
        let opts = StoreOptions { durability: Durability::Balanced, balanced_interval_ms: 5, ..strict() };
        let s = reopen(dir.path(), &opts);
        node(&s, 20);
        s.commit().unwrap();
        simulate_sync_failure(dir.path(), true);
        node(&s, 21);
        s.commit().unwrap(); // answered before its sync, as BALANCED does
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !s.poisoned_quietly() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(s.poisoned_quietly(), "the background sync failed");
        if told_first {
            assert!(matches!(s.stats(), Err(Error::Poisoned(_))));
            s.close().unwrap();
        } else {
            assert!(matches!(s.close(), Err(Error::Poisoned(_))), "told{told_first}");
        }
        simulate_sync_failure(dir.path(), false);
    }
}

/// A full disk met writing the meta at a checkpoint's switch is `NoSpace`, naming the system's
/// error, and the store goes on (outsider15 F3: `IoError`, the error dropped).
#[test]
fn a_checkpoint_whose_meta_write_meets_a_full_disk_is_no_space() {
    let dir = TempDir::new("full-meta");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 16);
    s.commit().unwrap();
    super::meta::UNWRITABLE.with(|u| u.set(Some(libc::ENOSPC)));
    let result = s.checkpoint();
    super::meta::UNWRITABLE.with(|u| u.set(None));
    match result {
        Err(Error::NoSpace(why)) => assert!(why.contains("No space left on device"), "{why}"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    s.checkpoint().unwrap();
    assert_eq!(&s.read(kept.0).unwrap(), &kept.1);
}

/// After a checkpoint whose meta could not be opened, the next checkpoint in the same process
/// makes the same generation again over the strays the first one left (review12).
#[test]
fn a_checkpoint_after_one_that_could_not_open_the_meta_takes_its_generation() {
    let dir = TempDir::new("unwritable-meta-again");
    let s = reopen(dir.path(), &strict());
    let kept = node(&s, 16);
    s.commit().unwrap();
    super::meta::UNWRITABLE.with(|u| u.set(Some(libc::EMFILE)));
    assert!(s.checkpoint().is_err());
    super::meta::UNWRITABLE.with(|u| u.set(None));
    let later = node(&s, 17);
    s.commit().unwrap();
    s.checkpoint().unwrap();
    let last = node(&s, 18);
    s.commit().unwrap();
    s.simulate_crash();
    drop(s);
    let r = reopen(dir.path(), &strict());
    for (id, bytes) in [&kept, &later, &last] {
        assert_eq!(&r.read(*id).unwrap(), bytes);
    }
    r.verify().unwrap();
}
