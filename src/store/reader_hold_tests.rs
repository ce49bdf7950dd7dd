//! A writer that opens while reader processes of older commits are registered holds exactly
//! the blocks freed after the oldest one's commit (the checkpoint's waiting frees and the
//! log's), not every block of the class files: a store whose writer reopens under readers
//! that come and go stays as small as one whose writer stays open, and a reader still reads
//! every byte of its commit, across a writer's kill too.

use super::snapshot_tests::{assert_round, nodes, rewrite};
use super::tests::{reopen, strict, TempDir};
use super::*;
use std::collections::VecDeque;
use std::path::Path;

fn read_only() -> StoreOptions {
    StoreOptions { read_only: true, verify_checksums: true, ..strict() }
}

/// Rounds of 3 commits rewriting 300 nodes; at each round a reader of the last commit opens
/// and the one opened two rounds before checks every byte of its commit and leaves, so a
/// reader older than the writer's last open is always registered. The writer closes and
/// reopens every round when `reopen_each_round`. Returns the class files' largest size.
fn churn_under_rolling_readers(dir: &Path, reopen_each_round: bool) -> u64 {
    let mut s = Store::open(dir, &strict()).unwrap();
    let mut ids = nodes(&s, 300);
    s.checkpoint().unwrap();
    let mut readers: VecDeque<(Store, Vec<NodeId>, u64)> = VecDeque::new();
    let (mut at, mut largest) = (0u64, 0u64);
    for _ in 0..30 {
        if reopen_each_round {
            s.close().unwrap();
            drop(s);
            s = reopen(dir, &strict());
        }
        readers.push_back((Store::open(dir, &read_only()).unwrap(), ids.clone(), at));
        if readers.len() > 2 {
            let (reader, seen, round) = readers.pop_front().unwrap();
            assert_round(&reader, &seen, round);
        }
        for _ in 0..3 {
            at += 1;
            rewrite(&s, &mut ids, at);
        }
        largest = largest.max(s.stats().unwrap().data_file_bytes);
    }
    for (reader, seen, round) in readers {
        assert_round(&reader, &seen, round);
    }
    s.verify().unwrap();
    largest
}

/// Found from outside: with short-lived readers always overlapping and the writer reopening
/// every 10 commits, the class files grew to 1.4 GB for 20.5 MB live, because each open held
/// every block (free ones too) until the readers older than it were gone, and by then the
/// next open held them again.
#[test]
fn a_writer_reopened_under_readers_that_come_and_go_keeps_its_files_bounded() {
    let steady = TempDir::new("hold-steady");
    let reopened = TempDir::new("hold-reopened");
    let without_reopens = churn_under_rolling_readers(steady.path(), false);
    let with_reopens = churn_under_rolling_readers(reopened.path(), true);
    assert!(
        with_reopens <= 2 * without_reopens,
        "{with_reopens} bytes of class files with a reopen per round, {without_reopens} without"
    );
}

/// Blocks freed after an older reader's commit stay unused while it lives, whether the
/// writer learns of them from its checkpoint's waiting frees or from the log frames after it
/// (a writer killed after commits that freed some); blocks free before that commit are
/// reused at once.
#[test]
fn a_block_freed_after_a_readers_commit_is_not_reused_while_it_lives_across_a_writer_kill() {
    let dir = TempDir::new("hold-kill");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 150);
    // Free space before the reader's commit: nobody reads it, a reopened writer reuses it.
    let spare: Vec<NodeId> = (0..200).map(|_| s.allocate(1000, 1).unwrap().0).collect();
    s.commit().unwrap();
    spare.iter().for_each(|&id| s.free(id).unwrap());
    s.commit().unwrap();
    s.checkpoint().unwrap();
    let reader = Store::open(dir.path(), &read_only()).unwrap();
    let (seen, round) = (ids.clone(), 0);
    for r in 1..=3 {
        rewrite(&s, &mut ids, r);
    }
    s.checkpoint().unwrap(); // these frees are the checkpoint's waiting ones
    for r in 4..=6 {
        rewrite(&s, &mut ids, r); // these only the log's
    }
    let before = s.stats().unwrap();
    s.simulate_crash();
    drop(s);
    let s = reopen(dir.path(), &strict());
    let after = s.stats().unwrap();
    assert!(
        after.pinned_bytes > 0 && after.pinned_bytes <= before.pinned_bytes + before.held_base_bytes,
        "held after the kill: {after:?}, before it: {before:?}"
    );
    for r in 7..=14 {
        rewrite(&s, &mut ids, r);
        assert_round(&reader, &seen, round);
    }
    s.close().unwrap();
    drop(s);
    let s = reopen(dir.path(), &strict());
    assert_round(&reader, &seen, round);
    finish(s, reader, ids, 14, (seen, round));
}

/// The rest of the kill test, on the writer reopened cleanly: more commits under the reader,
/// then the reader leaves and the held blocks become free.
fn finish(s: Store, reader: Store, mut ids: Vec<NodeId>, from: u64, (seen, round): (Vec<NodeId>, u64)) {
    for r in from + 1..=from + 20 {
        rewrite(&s, &mut ids, r);
        assert_round(&reader, &seen, round);
    }
    s.verify().unwrap();
    drop(reader);
    rewrite(&s, &mut ids, from + 21);
    assert_eq!(s.stats().unwrap().pinned_bytes, 0, "nothing pinned once the reader is gone");
    s.verify().unwrap();
    assert_round(&s, &ids, from + 21);
}

/// A format 6 store records no waiting frees: its first writable open under an older reader
/// holds every block, as before, and its checkpoint (format 7) lists those it holds, so the
/// next open goes on holding them while the reader lives.
#[test]
fn a_format_6_store_under_an_older_reader_is_converted_and_the_hold_carried_over() {
    let dir = TempDir::new("hold-format-6");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 120);
    s.checkpoint().unwrap();
    let reader = Store::open(dir.path(), &read_only()).unwrap();
    let seen = ids.clone();
    for r in 1..=4 {
        rewrite(&s, &mut ids, r);
    }
    s.close().unwrap();
    drop(s);
    let meta = super::meta::Meta::load(dir.path()).unwrap();
    let classes = crate::alloc::SizeClasses::new(meta.min_class_bytes, meta.max_class_bytes).unwrap();
    super::checkpoint::rewrite_as_format_6(dir.path(), meta.generation, &classes);
    super::checkpoint_tests::set_meta_format(dir.path(), 6);
    let s = reopen(dir.path(), &strict());
    let meta = super::meta::Meta::load(dir.path()).unwrap();
    assert_eq!(meta.format, super::meta::FORMAT_VERSION, "converted at the first writable open");
    let piece = std::fs::read(dir.path().join(super::checkpoint::file_name(meta.generation))).unwrap();
    assert_eq!(&piece[..8], b"PCORECK7");
    for r in 5..=10 {
        rewrite(&s, &mut ids, r);
        assert_round(&reader, &seen, 0);
    }
    s.close().unwrap();
    drop(s);
    let s = reopen(dir.path(), &strict());
    assert!(s.stats().unwrap().pinned_bytes > 0, "still held for the reader");
    for r in 11..=30 {
        rewrite(&s, &mut ids, r);
        assert_round(&reader, &seen, 0);
    }
    s.verify().unwrap();
    drop(reader);
    rewrite(&s, &mut ids, 31);
    assert_eq!(s.stats().unwrap().pinned_bytes, 0);
    s.verify().unwrap();
    assert_round(&s, &ids, 31);
}

/// Found from outside: with two readers opening in turn beside a busy writer, the writer's
/// pinned frees grew without bound, because a reader pinned everything (epoch 0) until its
/// open was done, and the open replays the log since the last checkpoint, its longest part.
/// It now pins the commit it recovers to once it has read the log, before the replay.
#[test]
fn a_read_only_open_pins_its_commit_not_everything_while_it_replays_the_log() {
    let dir = TempDir::new("hold-replay");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 100);
    s.checkpoint().unwrap();
    for r in 1..=5 {
        rewrite(&s, &mut ids, r);
    }
    let writer_view = super::readers::ReaderTable::open(dir.path(), false).unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let record = seen.clone();
    super::recovery::BEFORE_REPLAY.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || record.borrow_mut().push(writer_view.oldest_reader().unwrap())))
    });
    let reader = Store::open(dir.path(), &read_only());
    super::recovery::BEFORE_REPLAY.with(|h| h.borrow_mut().take());
    let reader = reader.unwrap();
    assert_eq!(*seen.borrow(), vec![Some(s.stats().unwrap().epoch)], "what the reader pinned while replaying");
    let at_open = ids.clone();
    for r in 6..=10 {
        rewrite(&s, &mut ids, r);
        assert_round(&reader, &at_open, 5);
    }
}

/// A read-only open that a writer's checkpoint overtakes (the log it read may be renamed and
/// written over by the next generation's frames) starts again, on the new checkpoint: it
/// reads what that holds, not what the old log showed before it was overwritten. (The crash
/// matrix once saw such an open come back to an older commit than one acknowledged before.)
#[test]
fn a_read_only_open_overtaken_by_a_checkpoint_starts_again_on_it() {
    let dir = TempDir::new("open-overtaken");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 50);
    s.checkpoint().unwrap();
    for r in 1..=3 {
        rewrite(&s, &mut ids, r);
    }
    let (writer, mut overtaken) = (s.clone(), false);
    let later = std::rc::Rc::new(std::cell::RefCell::new(ids.clone()));
    let moved = later.clone();
    super::recovery::BEFORE_REPLAY.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            if !std::mem::replace(&mut overtaken, true) {
                rewrite(&writer, &mut moved.borrow_mut(), 4);
                writer.checkpoint().unwrap();
            }
        }))
    });
    let reader = Store::open(dir.path(), &read_only());
    super::recovery::BEFORE_REPLAY.with(|h| h.borrow_mut().take());
    let reader = reader.unwrap();
    assert_eq!(reader.stats().unwrap().epoch, s.stats().unwrap().epoch, "the reader reads the new checkpoint's commit");
    assert_round(&reader, &later.borrow(), 4);
}

/// Whether this process maps `path` (a line of /proc/self/maps names it).
fn mapped(path: &Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| l.ends_with(path.to_str().unwrap()))
}

/// A writer maps the reader table only once it commits: one that opens, reads and closes has
/// no mapping of it to undo. A reader registered before the writer's open is seen all the same.
#[test]
fn a_writer_maps_the_reader_table_only_once_it_commits() {
    let dir = TempDir::new("readers-lazy");
    let table = dir.path().join(readers::READERS_FILE);
    let s = reopen(dir.path(), &strict());
    let id = nodes(&s, 1)[0];
    s.close().unwrap();

    let s = reopen(dir.path(), &strict());
    assert!(s.read(id).is_ok());
    assert!(!mapped(&table), "opened and read: not mapped");
    s.close().unwrap();

    let s = reopen(dir.path(), &strict());
    s.publish(id, &[7; 64]).unwrap();
    s.commit().unwrap();
    assert!(mapped(&table), "mapped once it commits");
    s.close().unwrap();
    assert!(!mapped(&table));

    let reader = Store::open(dir.path(), &read_only()).unwrap();
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.stats().unwrap().reader_processes, 1, "the writer sees the reader");
    s.publish(id, &[8; 64]).unwrap();
    s.commit().unwrap();
    assert_eq!(reader.read(id).unwrap(), vec![7; 64], "its commit kept");
    drop(reader);
    s.close().unwrap();
}

/// A read-only open whose replay rebuilds a version over a base the writer overwrote meanwhile
/// (a reused block: here a byte flipped while the open reads, back by its next try) found the
/// version damaged and handed it to the host with `PCORE_OK` (outsider15 F1). With the
/// writer's files changed meanwhile, the open now starts again.
#[test]
fn a_read_only_open_that_finds_a_base_overwritten_by_a_busy_writer_starts_again() {
    let dir = TempDir::new("open-base-overwritten");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let (id, other) = (s.allocate(4096, 1).unwrap().0, s.allocate(64, 1).unwrap().0);
    let old: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    s.publish(id, &old).unwrap();
    s.commit().unwrap();
    s.checkpoint().unwrap();
    let (file, base) = s
        .read_state(|c| {
            let (loc, _) = c.read_loc(id)?;
            Ok(c.space.file_position(loc))
        })
        .unwrap();
    let mut new = old.clone();
    new[100..110].fill(7);
    s.publish(id, &new).unwrap();
    s.commit().unwrap(); // logged over its base, the checkpointed block
    let flip = move |dir: &Path| {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(dir.join(&file)).unwrap();
        let mut byte = [0u8];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut byte, base + 3000).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, &[!byte[0]], base + 3000).unwrap();
    };
    let (writer, path, mut tries) = (s.clone(), dir.path().to_path_buf(), 0);
    super::recovery::BEFORE_REPLAY.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            tries += 1;
            flip(&path); // overwritten at the first try, as it was at the second
            if tries == 1 {
                writer.publish(other, &[tries as u8; 64]).unwrap();
                writer.commit().unwrap();
            }
        }))
    });
    let reader = Store::open(dir.path(), &read_only());
    super::recovery::BEFORE_REPLAY.with(|h| h.borrow_mut().take());
    let reader = reader.unwrap();
    assert_eq!(reader.read(id).unwrap(), new);
    assert_eq!(reader.check_checksums(10).unwrap().len(), 0, "a damaged version handed out");
}

/// A writer whose checkpoints overtake every try of a read-only open (one at nearly every
/// commit, on a fast disk) makes it answer `Busy`, try again, not `Corrupt` for a log that
/// a checkpoint renamed meanwhile (outsider15 F1).
#[test]
fn a_read_only_open_overtaken_at_every_try_is_busy() {
    let dir = TempDir::new("open-overtaken-always");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let mut ids = nodes(&s, 20);
    s.checkpoint().unwrap();
    rewrite(&s, &mut ids, 1);
    let writer = s.clone();
    super::recovery::BEFORE_REPLAY.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            writer.publish(ids[0], &[9; 64]).unwrap();
            writer.commit().unwrap();
            writer.checkpoint().unwrap();
        }))
    });
    let reader = Store::open(dir.path(), &read_only());
    super::recovery::BEFORE_REPLAY.with(|h| h.borrow_mut().take());
    match reader {
        Err(crate::Error::Busy(why)) => assert!(why.contains("overtook"), "{why}"),
        other => panic!("expected Busy, got {:?}", other.map(|_| "a store")),
    }
    assert!(Store::open(dir.path(), &read_only()).is_ok(), "opens once the writer pauses");
}
