//! Cursor tests: scans racing a writer, and the three ways of reading a range.

use super::*;
use crate::btree::TreeOptions;
use crate::store::{Store, StoreOptions};
use crate::Error;
use std::sync::atomic::{AtomicBool, Ordering};

/// Key k's value: the key repeated 1 to 6 times (above 32 bytes it lives in its own node).
fn value_of(key: &[u8], step: u64) -> Vec<u8> {
    key.repeat(1 + (step % 6) as usize)
}

/// Positions `cur` past `last` (or at `start` when nothing was read yet).
fn reposition(cur: &mut Cursor, start: &[u8], last: Option<&Vec<u8>>) {
    match last {
        Some(l) => cur.set_bounds(Bound::Excluded(l), Bound::Unbounded).unwrap(),
        None => cur.set_bounds(Bound::Included(start), Bound::Unbounded).unwrap(),
    }
    cur.first().expect("positioning is never stale and never reads a damaged page");
}

/// A bounded forward scan of up to 200 entries: strictly ordered, every value whole,
/// continuing past the last key after `StaleCursor`.
fn scan_while_changing(cur: &mut Cursor, start: &[u8]) {
    let mut last: Option<Vec<u8>> = None;
    reposition(cur, start, None);
    for _ in 0..200 {
        let (k, v) = match cur.current() {
            Ok(Some(entry)) => entry,
            Ok(None) => return,
            Err(Error::StaleCursor(_)) => {
                reposition(cur, start, last.as_ref());
                continue;
            }
            Err(e) => panic!("current: {e}"),
        };
        assert!(last.as_ref().is_none_or(|l| *l < k), "{k:?} after {last:?}");
        assert!(!v.is_empty() && v.chunks(k.len()).all(|c| c == k), "a torn value for {k:?}");
        last = Some(k);
        match cur.move_next() {
            Ok(()) => {}
            Err(Error::StaleCursor(_)) => reposition(cur, start, last.as_ref()),
            Err(e) => panic!("move_next: {e}"),
        }
    }
}

/// Writer steps of the race below; Miri (which checks the same run for data races) runs
/// some thousand times slower.
const RACE_STEPS: u64 = if cfg!(miri) { 300 } else { 30_000 };
const RACE_MIN_ROUNDS: u32 = if cfg!(miri) { 2 } else { 20 };

/// Readers racing a writer see whole versions of the tree: scans stay strictly ordered,
/// positioning never answers `StaleCursor`, and a Multi tree's `get_all` (a walk inside one
/// call) never does either. Before cursor calls held the tree's lock, a writer could change
/// a page between a cursor's version check and its read.
#[test]
fn readers_racing_a_writer_see_whole_versions() {
    let store = Store::in_memory(&StoreOptions::default()).unwrap();
    let small = |duplicates| TreeOptions { page_bytes: 512, duplicates, ..TreeOptions::default() };
    let kv = BTree::open(&store, b"kv", &small(Duplicates::Overwrite)).unwrap();
    let multi = BTree::open(&store, b"multi", &small(Duplicates::Multi)).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (1..=2u64)
            .map(|seed| {
                let (kv, multi, done) = (&kv, &multi, &done);
                s.spawn(move || {
                    let mut x = crate::test_rng::TestRng::new(seed);
                    let mut cur = Cursor::new(kv);
                    let mut rounds = 0;
                    while rounds < RACE_MIN_ROUNDS || !done.load(Ordering::Acquire) {
                        rounds += 1;
                        scan_while_changing(&mut cur, &(x.next() % 2000).to_be_bytes());
                        let values = multi.get_all(&(x.next() % 200).to_be_bytes()).expect("get_all");
                        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
                    }
                })
            })
            .collect();
        let mut x = crate::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
        for step in 0..RACE_STEPS {
            let r = x.next();
            let key = (r % 2000).to_be_bytes();
            let small_key = (r % 200).to_be_bytes();
            let result = match r >> 61 {
                0..=3 => kv.insert(&key, &value_of(&key, step)),
                4..=5 => kv.remove(&key).map(|_| ()),
                6 => multi.insert(&small_key, &(r % 8).to_be_bytes()).or_else(|e| match e {
                    Error::DuplicateKey(_) => Ok(()),
                    e => Err(e),
                }),
                _ => multi.remove_pair(&small_key, &(r % 8).to_be_bytes()).map(|_| ()),
            };
            result.unwrap();
        }
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
    });
    kv.verify().unwrap();
    multi.verify().unwrap();
}

/// Every entry of `tree` within the bounds, read three ways: current + move_next,
/// next_with, and take_while in batches of at most `batch` entries.
pub(crate) fn three_scans(
    tree: &BTree,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    batch: usize,
) -> [Vec<(Vec<u8>, Vec<u8>)>; 3] {
    let mut out: [Vec<(Vec<u8>, Vec<u8>)>; 3] = Default::default();
    let mut c = Cursor::new(tree);
    c.set_bounds(lower, upper).unwrap();
    c.first().unwrap();
    while let Some(e) = c.current().unwrap() {
        out[0].push(e);
        c.move_next().unwrap();
    }
    c.first().unwrap();
    if let Some(e) = c.current().unwrap() {
        out[1].push(e);
        while let Some(e) = c.next_with(|k, v| (k.to_vec(), v.to_vec())).unwrap() {
            out[1].push(e);
        }
    }
    c.first().unwrap();
    loop {
        let mut room = batch;
        let taken = c
            .take_while(|k, v| {
                if room == 0 {
                    return false;
                }
                room -= 1;
                out[2].push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(taken, batch - room);
        if taken == 0 {
            break;
        }
    }
    out
}

/// Every entry of `tree` within the bounds, read in place: `current_entry`, then
/// `next_entry` until the end, and after each read `current_entry` again (it hands out the
/// same entry, and neither call moves the other's way).
pub(crate) fn in_place_scan(tree: &BTree, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut c = Cursor::new(tree);
    c.set_bounds(lower, upper).unwrap();
    c.first().unwrap();
    let mut entry = c.current_entry().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
    while let Some(e) = entry {
        let again = c.current_entry().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
        assert_eq!(again.as_ref(), Some(&e));
        out.push(e);
        entry = c.next_entry().unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
    }
    assert_eq!(c.next_entry().unwrap(), None, "past the end stays past the end");
    out
}

// Checks the scan logic over thousands of entries, no unsafe code of its own: under Miri
// (scripts/test.sh runs it on this module) it would take most of an hour.
#[test]
#[cfg_attr(miri, ignore)]
fn combined_and_batch_reads_see_what_a_stepped_scan_sees() {
    let store = Store::in_memory(&StoreOptions::default()).unwrap();
    for dup in [Duplicates::Unique, Duplicates::Multi] {
        let name = format!("{dup:?}");
        let opts = TreeOptions { page_bytes: 512, duplicates: dup, ..TreeOptions::default() };
        let tree = BTree::open(&store, name.as_bytes(), &opts).unwrap();
        for i in 0..1500u64 {
            let key = format!("{:05}", i / 2).into_bytes();
            // Some values live in their own node (Multi trees keep values inline).
            let value =
                if dup == Duplicates::Unique && i % 7 == 0 { vec![i as u8; 100] } else { i.to_le_bytes().to_vec() };
            match tree.insert(&key, &value) {
                Ok(()) | Err(Error::DuplicateKey(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let all = tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
        for (lower, upper) in [
            (Bound::Unbounded, Bound::Unbounded),
            (Bound::Included(&b"00100"[..]), Bound::Excluded(&b"00500"[..])),
            (Bound::Excluded(&b"00700"[..]), Bound::Included(&b"00700x"[..])),
        ] {
            let want = tree.range(lower, upper).unwrap();
            for batch in [1, 3, 64, 10_000] {
                let got = three_scans(&tree, lower, upper, batch);
                for (way, scan) in got.iter().enumerate() {
                    assert_eq!(scan, &want, "{name}: way {way}, batch {batch}, {lower:?}..{upper:?}");
                }
            }
            assert_eq!(in_place_scan(&tree, lower, upper), want, "{name}: in place, {lower:?}..{upper:?}");
        }
        assert!(all.len() >= 750);
        // A change makes the cursor stale for both calls.
        let mut c = Cursor::new(&tree);
        c.first().unwrap();
        tree.insert(b"zzz", b"v").unwrap();
        assert!(matches!(c.next_with(|_, _| ()), Err(Error::StaleCursor(_))));
        assert!(matches!(c.take_while(|_, _| true), Err(Error::StaleCursor(_))));
        assert!(matches!(c.next_entry(), Err(Error::StaleCursor(_))));
        assert!(matches!(c.current_entry(), Err(Error::StaleCursor(_))));
    }
}

/// Cells of every shape the quick step decodes or leaves to the general path (keys of 1 to 255
/// bytes, values of 0 to 1,000 bytes, inline with one- and two-byte lengths, or in their own
/// node) read the same through every scan.
#[test]
#[cfg_attr(miri, ignore)]
fn scans_read_cells_of_every_shape_alike() {
    let store = Store::in_memory(&StoreOptions::default()).unwrap();
    let tree = BTree::open(&store, b"shapes", &TreeOptions { page_bytes: 4096, ..TreeOptions::default() }).unwrap();
    let mut rng = crate::test_rng::TestRng::new(0x5ca9);
    for i in 0..3000u64 {
        let key_len = [1, 8, 16, 17 + (rng.next() % 239) as usize][i as usize % 4];
        let key: Vec<u8> = (0..key_len).map(|_| rng.next() as u8).collect();
        let value = vec![i as u8; [0, 8, 63, 64, 300, 1000][(rng.next() % 6) as usize]];
        match tree.insert(&key, &value) {
            Ok(()) | Err(Error::DuplicateKey(_)) => {} // a 1-byte key drawn twice
            Err(e) => panic!("{e}"),
        }
    }
    let want = tree.range(Bound::Unbounded, Bound::Unbounded).unwrap();
    assert!(want.len() > 2000);
    for batch in [1, 7, 10_000] {
        for (way, scan) in three_scans(&tree, Bound::Unbounded, Bound::Unbounded, batch).iter().enumerate() {
            assert_eq!(scan, &want, "way {way}, batch {batch}");
        }
    }
    assert_eq!(in_place_scan(&tree, Bound::Unbounded, Bound::Unbounded), want);
}
