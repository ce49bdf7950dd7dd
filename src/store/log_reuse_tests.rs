//! Reusing log space (docs/LOG.md, store format 5): a checkpoint renames the old log to the new
//! generation's name and later commits write over it from offset 0. A kill at any step of that
//! loses nothing and invents nothing: the old frames are never read as commits.

use super::api::{CheckpointStep, CHECKPOINT_HOOK};
use super::tests::{file_with_prefix, reopen, strict, TempDir};
use super::*;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(file_with_prefix(dir, "wal-")).unwrap().len()
}

/// Commits `n` versions of one node; returns it and its last bytes.
fn commit_versions(s: &Store, id: Option<NodeId>, n: u32, tag: u8) -> (NodeId, Vec<u8>) {
    let mut id = id.unwrap_or_else(|| s.allocate(200, 1).unwrap().0);
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes = (0..200u32).map(|b| (b * 3 + i * 7 + u32::from(tag)) as u8).collect();
        id = s.publish(id, &bytes).unwrap();
        s.commit().unwrap();
    }
    (id, bytes)
}

/// A kill just before the old log is renamed (the meta names the new generation, whose log is
/// empty) and just after (the new generation's log is the old file, every frame in it stale):
/// both reopen to the checkpoint's state, say nothing of a dropped commit, and go on committing.
#[test]
fn a_kill_between_the_rename_and_the_first_frame_loses_nothing() {
    for step in [CheckpointStep::BeforeLogReuse, CheckpointStep::AfterLogReuse] {
        let dir = TempDir::new("reuse-kill");
        let image = TempDir::new("reuse-kill-image");
        let s = reopen(dir.path(), &strict());
        let (id, bytes) = commit_versions(&s, None, 30, 1);
        let (from, to) = (dir.path().to_path_buf(), image.path().to_path_buf());
        CHECKPOINT_HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |at| {
                if at == step {
                    copy_dir(&from, &to)
                }
            }))
        });
        s.checkpoint().unwrap();
        CHECKPOINT_HOOK.with(|h| *h.borrow_mut() = None);
        s.simulate_crash();
        let names: Vec<String> =
            std::fs::read_dir(image.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().any(|n| n.starts_with("wal-2")), "{step:?}: {names:?}");
        if step == CheckpointStep::AfterLogReuse {
            assert!(log_len(image.path()) > 0, "the new generation's log holds the old frames");
        }
        let r = reopen(image.path(), &strict());
        assert_eq!(r.recovery_note(), None, "{step:?}: no commit replayed, none dropped");
        assert_eq!(r.read(id).unwrap(), bytes, "{step:?}");
        let (id, bytes) = commit_versions(&r, Some(id), 3, 2);
        r.simulate_crash();
        let r = reopen(image.path(), &strict());
        assert_eq!(r.read(id).unwrap(), bytes, "{step:?}: commits after the reopen");
        r.verify().unwrap();
    }
}

/// After a checkpoint, small commits write over the old log: the file does not grow, a kill
/// keeps exactly the commits made, and the old frames beyond them are neither replayed nor
/// reported.
#[test]
fn commits_after_a_checkpoint_write_over_the_old_log() {
    let dir = TempDir::new("reuse-over");
    let s = reopen(dir.path(), &strict());
    let (id, _) = commit_versions(&s, None, 50, 1);
    let grown = log_len(dir.path());
    s.checkpoint().unwrap();
    assert_eq!(log_len(dir.path()), grown, "the old log is the new one");
    assert_eq!(s.stats().unwrap().log_bytes, 0, "and empty");
    let (id, bytes) = commit_versions(&s, Some(id), 10, 2);
    assert_eq!(log_len(dir.path()), grown, "ten small commits wrote over it");
    s.simulate_crash();
    let r = reopen(dir.path(), &strict());
    let note = r.recovery_note().expect("the ten commits replayed");
    assert!(note.contains("10 commits replayed") && !note.contains("dropped"), "{note}");
    assert_eq!(r.read(id).unwrap(), bytes);
    r.verify().unwrap();
    // The open checkpointed the replayed commits; a clean close and reopen finds only old frames.
    r.close().unwrap();
    let r = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert_eq!(r.recovery_note(), None);
    assert_eq!(r.read(id).unwrap(), bytes);
}

/// A log grown past `checkpoint_log_bytes` by one huge commit is cut back to it when reused.
#[test]
fn a_huge_log_is_cut_back_when_reused() {
    let dir = TempDir::new("reuse-cut");
    let opts = StoreOptions { checkpoint_log_bytes: 64 << 10, ..strict() };
    let s = reopen(dir.path(), &opts);
    for i in 0..60u32 {
        let id = s.allocate(4000, 1).unwrap().0;
        s.publish(id, &vec![i as u8 | 1; 4000]).unwrap();
    }
    s.commit().unwrap(); // one frame of ~240 KB, then a checkpoint
    assert_eq!(s.stats().unwrap().log_bytes, 0, "checkpointed after the commit");
    assert_eq!(log_len(dir.path()), 64 << 10);
}

/// After a reopen the log is empty (a close cuts it), so small commits would append, and an
/// append's sync also commits the file's size. The first of them writes zeros ahead instead,
/// and the next ones write over those: the file grows once for many commits. A kill keeps
/// every commit, the zeros are neither replayed nor reported, and a close gives them back.
#[test]
fn small_commits_after_a_reopen_write_over_zeros_written_ahead() {
    let dir = TempDir::new("reuse-ahead");
    let s = reopen(dir.path(), &strict());
    let (id, _) = commit_versions(&s, None, 5, 1);
    s.close().unwrap();
    assert_eq!(log_len(dir.path()), 0, "a close gives the log's space back");
    let s = reopen(dir.path(), &strict());
    let (id, _) = commit_versions(&s, Some(id), 1, 2);
    let grown = log_len(dir.path());
    assert!(grown > 32 << 10, "zeros written ahead of the first small commit: {grown} bytes");
    let (id, bytes) = commit_versions(&s, Some(id), 40, 3);
    assert_eq!(log_len(dir.path()), grown, "forty small commits wrote over the zeros");
    assert!(s.stats().unwrap().log_bytes < grown);
    s.simulate_crash();
    let r = reopen(dir.path(), &strict());
    let note = r.recovery_note().expect("the commits replayed");
    assert!(note.contains("41 commits replayed") && !note.contains("dropped"), "{note}");
    assert_eq!(r.read(id).unwrap(), bytes);
    r.verify().unwrap();
    r.close().unwrap();
    assert_eq!(log_len(dir.path()), 0);
    let r = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert_eq!(r.read(id).unwrap(), bytes);
}

/// The old log renamed over the new generation's name, then its cut to the space kept fails:
/// the store must go on logging into that file, not into the fresh one the rename unlinked
/// (a review found the fallback: the commits after such a checkpoint were lost at a crash).
#[test]
fn a_failed_cut_after_the_rename_keeps_logging_into_the_renamed_log() {
    let dir = TempDir::new("reuse-cut-fails");
    let s = reopen(dir.path(), &StoreOptions { idle_checkpoint_ms: u32::MAX, ..strict() });
    // ~3 MiB of log, more than the space a checkpoint keeps, for 800 KiB of nodes (under
    // the size whose footprint commits look at: no checkpoint meanwhile).
    let ids: Vec<NodeId> = (0..200).map(|_| s.allocate(4096, 1).unwrap().0).collect();
    for round in 0..4u8 {
        for &id in &ids {
            s.publish(id, &[round + 1; 4096]).unwrap();
        }
        s.commit().unwrap();
    }
    assert!(log_len(dir.path()) > 3 << 20, "{}", log_len(dir.path()));
    crate::os::simulate_cut_failure(dir.path(), true);
    let checkpointed = s.checkpoint();
    crate::os::simulate_cut_failure(dir.path(), false);
    checkpointed.unwrap();
    let (id, bytes) = commit_versions(&s, None, 3, 9);
    s.simulate_crash();
    drop(s);
    let r = reopen(dir.path(), &strict());
    assert_eq!(r.read(id).unwrap(), bytes, "a commit after the checkpoint");
}
